"""haproxy.cfg and keepalived.conf rendered outside the lab, from the pillar example and variants,
and checked by the daemons' own config checks (haproxy -c, keepalived --config-test): a template
bug fails here in seconds, not in the lab. The contexts are the ones salt/ksha/loadbalancer/config.sls
passes, from the cluster model."""

import copy
import json
import re
import subprocess

import jinja2
import pytest

from ksha import model
from tests.conftest import REPO

FILES = REPO / "salt" / "ksha" / "loadbalancer" / "files"


def an_interface():
    """A multicast interface of this machine: keepalived --config-test checks that it exists."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    for line in links.splitlines():
        name, flags = line.split(": ")[1].split("@")[0], line.split("<", 1)[1].split(">", 1)[0].split(",")
        if "MULTICAST" in flags and "LOOPBACK" not in flags:
            return name
    raise AssertionError(f"no multicast interface for keepalived --config-test:\n{links}")


def pillar_get(pillar, key, default=""):
    node = pillar
    for part in key.split(":"):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def render(name, context):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(FILES)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return env.get_template(name).render(**context)


def contexts(ksha, minion, check_script=None):
    """(haproxy context, keepalived context) as config.sls builds them for `minion`."""
    published = model.for_minion(model.build(ksha), minion, {"ip4_interfaces": {"lo": ["127.0.0.1"]}})["ksha_model"]
    me, lb = published["me"], published["config"]["loadbalancer"]
    haproxy = {
        "lb": lb,
        "backends": published["loadbalancer"]["backends"],
        "console_backends": published["loadbalancer"]["console_backends"],
        "check": published["loadbalancer"]["check"],
        "console_check": published["loadbalancer"]["console_check"],
        "names": published["loadbalancer"]["names"],
        "marker": published["loadbalancer"]["marker"],
    }
    keepalived = {
        "lb": lb,
        "me": me["name"],
        "my_ip": me["ip"],
        "iface": me["interface"] or an_interface(),
        "priority": me["lb_priority"],
        "peers": me["lb_peers"],
        "vrrp_version": published["loadbalancer"]["vrrp_version"],
        # keepalived --config-test wants the tracked script to exist and be safe (root's, not writable by others)
        "check_script": check_script or published["loadbalancer"]["check_script"],
        "vrrp_script": published["loadbalancer"]["vrrp_script"],
        "garp": published["loadbalancer"]["garp"],
        "marker": published["loadbalancer"]["marker"],
        # the template reads the VRRP password from the ksha pillar itself (the model has none)
        "salt": {"pillar.get": lambda key, default="": pillar_get({"ksha": ksha}, key, default)},
    }
    return haproxy, keepalived


VARIANTS = [
    ("the example in keepalived mode", {}),
    ("console frontend", {"console": {"enabled": True}}),
    ("VRRPv2 with a password, multicast, nopreempt",
     {"keepalived": {"auth_pass": "s3cret", "advert_int": 1, "unicast": False, "nopreempt": True}}),
    ("other haproxy numbers", {"haproxy": {"maxconn": 100, "check_inter_ms": 250, "retries": 0}}),
]  # fmt: skip


@pytest.fixture
def keepalived_ksha(example_ksha):
    example_ksha["loadbalancer"].update(mode="keepalived", address="192.168.0.100")
    return example_ksha


@pytest.mark.parametrize("case, lb_edits", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_rendered_configs_pass_the_daemons_checks(keepalived_ksha, tmp_path, case, lb_edits):
    ksha = copy.deepcopy(keepalived_ksha)
    for key, value in lb_edits.items():
        ksha["loadbalancer"][key] = value
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o700)
    haproxy, keepalived = contexts(ksha, "master2", str(script))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render("haproxy.cfg.jinja", haproxy))
    out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr + cfg.read_text()
    conf = tmp_path / "keepalived.conf"
    conf.write_text(render("keepalived.conf.jinja", keepalived))
    out = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr + conf.read_text()


def test_rendered_configs_carry_the_model(keepalived_ksha):
    haproxy, keepalived = contexts(keepalived_ksha, "master2")
    cfg = render("haproxy.cfg.jinja", haproxy)
    assert "    bind 192.168.0.100:6443" in cfg
    assert [line.split()[1:] for line in cfg.splitlines() if line.startswith("    server ")] == [
        ["master1", "192.168.0.1:6443"],
        ["master2", "192.168.0.2:6443"],
        ["master3", "192.168.0.3:6443"],
    ]
    assert "inter 500 fastinter 250 downinter 1000 fall 2 rise 2" in cfg
    conf = render("keepalived.conf.jinja", keepalived)
    assert "    priority 190" in conf and "vrrp_version 3" in conf
    assert conf.split("unicast_peer {", 1)[1].split("}", 1)[0].split() == ["192.168.0.1", "192.168.0.3"]


def test_the_vrrp_password_reaches_keepalived_conf_and_nothing_else(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"auth_pass": "s3cr3t!", "advert_int": 1}
    published = model.for_minion(model.build(keepalived_ksha), "master1")
    assert "s3cr3t!" not in json.dumps(published)
    assert published["ksha_model"]["config"]["loadbalancer"]["keepalived"]["auth_pass"] == "***"
    _, keepalived = contexts(keepalived_ksha, "master1")
    conf = render("keepalived.conf.jinja", keepalived)
    assert "        auth_pass s3cr3t!" in conf and "vrrp_version 2" in conf


def test_a_broken_template_is_caught_by_the_check(keepalived_ksha, tmp_path):
    """The check is not a rubber stamp: a config haproxy would refuse fails it."""
    haproxy, _ = contexts(keepalived_ksha, "master1")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render("haproxy.cfg.jinja", haproxy).replace("mode tcp", "mode tpc"))
    out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode != 0


def test_the_contexts_here_are_the_ones_config_sls_passes(keepalived_ksha, tmp_path):
    """The keys each template gets from salt/ksha/loadbalancer/config.sls are the keys rendered here."""
    text = (REPO / "salt" / "ksha" / "loadbalancer" / "config.sls").read_text()
    passed = {
        template: re.findall(r"^ {8}(\w+):", block, re.MULTILINE)
        for template, block in re.findall(r"files/(\S+)\n(?:.*\n)*?    - context:\n((?: {8}.*\n)+)", text)
    }
    haproxy, keepalived = contexts(keepalived_ksha, "master1", str(tmp_path / "check.sh"))
    assert sorted(passed) == ["haproxy.cfg.jinja", "keepalived.conf.jinja"]
    assert sorted(passed["haproxy.cfg.jinja"]) == sorted(haproxy)
    # the template's `salt` is Salt's own (pillar.get of the VRRP password), not a context key
    assert sorted(passed["keepalived.conf.jinja"]) == sorted(k for k in keepalived if k != "salt")
