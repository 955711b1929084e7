"""salt/_pillar/ksha_model.py: what the master's external pillar publishes to a minion."""

from tests.conftest import load_salt_module

ext = load_salt_module("pillar", "ksha_model")
GRAINS = {"os_family": "Debian", "ip4_interfaces": {"lo": ["127.0.0.1"], "eth1": ["192.168.0.1"]}}


def publish(minion, pillar, monkeypatch):
    monkeypatch.setattr(ext, "__grains__", GRAINS, raising=False)
    return ext.ext_pillar(minion, pillar)


def test_the_ca_host_gets_the_model_and_the_signing_policies(example_ksha, monkeypatch):
    out = publish("master1", {"ksha": example_ksha}, monkeypatch)
    assert sorted(out) == ["ksha_model", "x509_signing_policies"]
    me = out["ksha_model"]["me"]
    assert (me["name"], me["interface"]) == ("master1", "eth1")
    # the os_family's values come from this minion's grains
    assert out["ksha_model"]["config"]["common"]["pkgs"][:2] == ["ca-certificates", "iproute2"]


def test_another_host_gets_the_model_only(example_ksha, monkeypatch):
    out = publish("node1", {"ksha": example_ksha}, monkeypatch)
    assert list(out) == ["ksha_model"]
    assert out["ksha_model"]["me"]["states"][0] == "ksha.common"


def test_an_invalid_pillar_publishes_the_findings(example_ksha, monkeypatch):
    example_ksha["loadbalancer"]["port"] = 0
    out = publish("master1", {"ksha": example_ksha}, monkeypatch)
    assert out == {
        "ksha_model": {
            "errors": ["ERROR ksha:loadbalancer:port: 0 is not a port: use an integer from 1 to 65535 (e.g. 6443)"]
        }
    }


def test_a_minion_without_the_ksha_pillar_gets_nothing(monkeypatch):
    assert publish("other", {"something": 1}, monkeypatch) == {}
