"""The cluster model: every fact ksha derives from the ``ksha`` pillar, computed once.

``build()`` takes the ``ksha`` pillar value (already valid: ``ksha.inventory.validate``
found no error) and returns plain data: the merged settings, every host with its
groups, roles and states, the API endpoint, the load balancer's hosts and backends,
the etcd members and their URLs, the CA host, each host's certificates and the CA's
signing policies. Nothing else derives these facts:

- the master's external pillar ``ksha_model`` (``salt/_pillar/ksha_model.py``) publishes
  the model to every minion as the pillar key ``ksha_model`` (plus ``me``: the minion's
  own host entry) and a CA's ``x509_signing_policies`` to its CA host;
- ``salt/top.sls``, ``salt/ksha/map.jinja`` and the states render from that pillar key;
- the execution modules read their settings from it;
- the runner (``salt-run ksha.plan``, ``ksha.status``) calls ``build()`` itself.

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import glob
import ipaddress
import shlex
from pathlib import Path
from typing import Any

import yaml

from ksha import inventory, network, qingcloud, release
from ksha.inventory import host_names, load_defaults, merge

OSFAMILY_FILE = Path(__file__).resolve().parent / "formula" / "osfamilymap.yaml"  # -> salt/ksha/

# The states each role gets in the highstate, in this order (the orchestration's phase
# order). `all` is every inventory host; the other roles are the seed's groups plus the
# derived roles of `roles()`.
ROLE_STATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all", ("ksha.common",)),
    ("loadbalancer-clean", ("ksha.loadbalancer.clean",)),
    ("loadbalancer", ("ksha.loadbalancer",)),
    ("loadbalancer-external", ("ksha.loadbalancer.external",)),
    ("etcd-ca", ("ksha.etcd.ca",)),
    ("kube-master", ("ksha.etcd.pki",)),
    ("etcd", ("ksha.etcd",)),
    ("etcd-clean", ("ksha.etcd.clean",)),
    ("kubernetes-ca", ("ksha.kubernetes.ca",)),
    (
        "kube-master",
        (
            "ksha.kubernetes.install",
            "ksha.kubernetes.pki",
            "ksha.kubernetes.service_account",
            "ksha.kubernetes.service",
        ),
    ),
    ("kubernetes-clean", ("ksha.kubernetes.clean",)),
    ("node", ("ksha.containerd", "ksha.node")),
    ("node-roles", ("ksha.node.roles",)),
    ("network", ("ksha.network",)),
)
GROUPS = ("kube-master", "kube-node", "etcd")

# x509_v2 signing policies of the etcd CA: policy -> (who may ask, extended key usage). Each is
# published once per minion that may ask (``policy_for``).
ETCD_POLICIES = {
    "ksha_etcd_server": ("members", "serverAuth, clientAuth"),
    "ksha_etcd_peer": ("members", "serverAuth, clientAuth"),
    "ksha_etcd_client": ("clients", "clientAuth"),
}
ETCD_ENV_FILE = "/etc/etcd/ksha-etcd.env"
ETCD_UNIT_FILE = "/etc/systemd/system/etcd.service"
# written only when orch.ksha bootstraps the cluster or a member joins it
ETCD_INITIAL_CLUSTER_FILE = "/etc/etcd/ksha-initial-cluster.env"


def policy_for(policy: str, minion: str) -> str:
    """The name of `policy` as minion `minion` asks for it: every signing policy is published
    once per minion that may use it, restricted to that minion's ID. x509_v2 then checks the
    requester with a local glob match on the CA host; a compound matcher (``L@a,b,c``) would cost
    a ``match.compound_matches`` runner on the Salt master (``peer_run``) for every certificate
    checked, in every highstate."""
    return f"{policy}__{minion}"


def apiserver_etcd_client(conf: dict) -> str:
    """The apiserver's etcd client certificate and key, without .crt/.key (kubeadm's name)."""
    return f"{conf['kubernetes']['pki']['dir']}/apiserver-etcd-client"


def load_osfamilymap() -> dict:
    with OSFAMILY_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def settings(pillar_ksha: dict, os_family: str | None = None, defaults: dict | None = None) -> dict:
    """defaults.yaml, then the os_family's values of osfamilymap.yaml, then the pillar.

    Merged recursively, lists replaced: the one merge rule (``ksha.inventory.merge``).
    """
    base = defaults if defaults is not None else load_defaults()
    family = (load_osfamilymap().get(os_family) or {}) if os_family else {}
    return merge(merge(base, family), pillar_ksha or {})


# the VRRP password; the QingCloud API key (its ID too: the brief counts cloud keys as secrets)
SECRET_KEYS = ("auth_pass", "access_key_id", "secret_access_key")


def without_secrets(value: Any) -> Any:
    """`value` with every secret (ksha:loadbalancer:keepalived:auth_pass, the QingCloud API key
    of ksha:loadbalancer:qingcloud) replaced by "***"."""
    if isinstance(value, dict):
        return {k: ("***" if k in SECRET_KEYS and v else without_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def url(ip: str, port: int, scheme: str = "https") -> str:
    """An URL to an address, with IPv6 in brackets."""
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return f"{scheme}://{host}:{port}"


def interface_of(ip: str, ip_interfaces: dict) -> str | None:
    """The interface holding `ip`, from a minion's ``ip4_interfaces``/``ip6_interfaces`` grains."""
    for name, addrs in sorted((ip_interfaces or {}).items()):
        if ip in (addrs or []):
            return name
    return None


def _groups(conf: dict, hosts: list[str]) -> dict[str, list[str]]:
    groups = conf.get("groups") or {}
    out = {g: [m for m in groups.get(g) or [] if m in hosts] for g in GROUPS}
    cluster = set(out["kube-master"]) | set(out["kube-node"])
    out["k8s-cluster"] = [h for h in hosts if h in cluster]
    return out


def _api(conf: dict, ip_of: dict[str, str], groups: dict[str, list[str]]) -> dict:
    """Where every client reaches the API: the LB domain, resolved (hosts file) to the LB address,
    or without an LB (mode none, a single master) to that master."""
    lb = conf["loadbalancer"]
    address = lb.get("address")
    if lb["mode"] == "none" and not address:
        address = ip_of[groups["kube-master"][0]] if groups["kube-master"] else None
    return {
        "domain": lb["domain"],
        "address": address,
        "port": lb["port"],
        "url": f"https://{lb['domain']}:{lb['port']}",
        "mode": lb["mode"],
    }


def _qingcloud(conf: dict, ip_of: dict[str, str], groups: dict[str, list[str]]) -> dict:
    """The QingCloud steps' arguments (``ksha.qingcloud``): ``present``, the load balancers and
    security group rules to keep (qingcloud mode); ``absent``, ksha's load balancers to delete
    (the console's without an EIP; both after a switch away from qingcloud mode, which needs the
    zone and the key still set: without them ksha cannot ask, and deletes nothing); ``api``:
    whether the preflight checks the API answers ksha's key (either of the two is planned).
    None of it holds the key: the states read it on the master."""
    qc = conf["loadbalancer"]["qingcloud"]
    on = conf["loadbalancer"]["mode"] == "qingcloud"
    keyed = bool(qc["credentials_file"] or (qc["access_key_id"] and qc["secret_access_key"]))
    askable = on or (bool(qc["zone"]) and keyed)
    gone = qingcloud.absent(conf)
    # the client's settings but the key (the states read that from the master's pillar, or the
    # file credentials_file names): defaults merged here, once
    connection = {"zone": qc["zone"], "api": dict(qc["api"]), "credentials_file": qc["credentials_file"]}
    present = None
    if on:
        present = {
            "loadbalancers": qingcloud.wanted(conf, ip_of, groups),
            "rules": qingcloud.wanted_rules(conf),
            "security_group": qc["security_group"],
            "rule_names": qingcloud.rule_names(conf),
            "job_timeout_s": qc["job_timeout_s"],
            "connection": connection,
        }
    absent = (
        {**gone, "job_timeout_s": qc["job_timeout_s"], "connection": connection}
        if askable and gone["loadbalancers"]
        else None
    )
    return {"api": bool(present or absent), "present": present, "absent": absent, "connection": connection}


def _loadbalancer(conf: dict, hosts: list[str], ip_of: dict[str, str], groups: dict[str, list[str]]) -> dict:
    lb = conf["loadbalancer"]
    mode = lb["mode"]
    running = [h for h in (lb.get("hosts") or groups["kube-master"]) if h in ip_of] if mode == "keepalived" else []
    apiserver_port = conf["kubernetes"]["apiserver_port"]
    inter = lb["haproxy"]["check_inter_ms"]
    check = {
        "inter": inter,
        "fastinter": inter // 2,
        "downinter": inter * 2,
        "fall": lb["haproxy"]["check_fall"],
        "rise": lb["haproxy"]["check_rise"],
    }
    # qingcloud mode: ksha sets QingCloud's checks (inter|timeout|fall|rise, seconds and counts):
    # a stopped apiserver is seen down within fall checks, each up to inter + timeout apart, and
    # a started one up within rise checks inter apart, plus one inter for the check in flight
    cloud_up = cloud_down = 0
    if mode == "qingcloud":
        inter, timeout, fall, rise = (int(x) for x in lb["qingcloud"]["healthy_check_option"].split("|"))
        cloud_down, cloud_up = fall * (inter + timeout) + inter, (rise + 1) * inter
    # the files ksha manages on an LB host; ksha.loadbalancer.clean removes the configs only
    # where they carry the marker, and ksha's own files
    files = {
        "haproxy_cfg": "/etc/haproxy/haproxy.cfg",
        "keepalived_conf": "/etc/keepalived/keepalived.conf",
        # keepalived tracks haproxy with this script (haproxy answers, an apiserver is UP)
        "check_script": "/etc/keepalived/ksha-check-haproxy.sh",
        "sysctl_file": "/etc/sysctl.d/60-ksha-loadbalancer.conf",
    }
    return {
        **files,
        "mode": mode,
        # haproxy + keepalived (keepalived mode), in priority order
        "hosts": running,
        # every other host: a former LB host has ksha's haproxy/keepalived removed
        "clean": [h for h in hosts if h not in running],
        # external mode: every host checks it reaches the LB before anything changes; qingcloud
        # mode: once ksha's load balancers are there, before the LB domain points at them
        "external_check": list(hosts) if mode in ("external", "qingcloud") else [],
        # what the orchestration's master-side QingCloud steps are given (ksha_qingcloud)
        "qingcloud": _qingcloud(conf, ip_of, groups),
        "backends": [{"name": h, "ip": ip_of[h], "port": apiserver_port} for h in groups["kube-master"]],
        "console_backends": [
            {"name": h, "ip": ip_of[h], "port": conf["kubesphere"]["console_port"]} for h in groups["k8s-cluster"]
        ],
        # haproxy's apiserver checks: a server changing state is checked twice as often,
        # a server that is down half as often
        "check": check,
        # haproxy's frontend and backend names (the check script and ksha_lb read them too)
        "names": {"apiserver": "ksha-apiserver", "console": "ksha-console"},
        # the console's NodePorts are checked at the TCP level, every 2 s (no KubeSphere, no hurry)
        "console_check": {"inter": 2000, "fall": 2, "rise": 2},
        # keepalived mode: at most how long haproxy takes to see a ready apiserver UP again (a DOWN
        # server is checked every downinter, then rise checks every fastinter); a rolling restart
        # on a master that is no LB host waits this long before the next master may go down
        "settle_s": (check["downinter"] + check["rise"] * check["fastinter"]) / 1000
        if mode == "keepalived"
        else cloud_up,
        # keepalived mode: how long the rolling restart waits between stopping an apiserver and
        # starting it, so that every haproxy has seen it DOWN: its next check comes within inter,
        # then fall - 1 more fastinter apart (inter + (fall - 1) x fastinter), plus one fastinter
        # of margin. Seen DOWN, it gets no request until rise checks of /readyz pass.
        "down_s": (check["inter"] + check["fall"] * check["fastinter"]) / 1000 if mode == "keepalived" else cloud_down,
        # the check script runs every second, is given a second, two failures take the VIP away
        # and two successes give it back
        "vrrp_script": {"interval": 1, "timeout": 1, "fall": 2, "rise": 2},
        # a new VIP holder announces the VIP (gratuitous ARP) 1 s after taking it, 3 times, so
        # switches and peers that missed the first learn it
        "garp": {"delay": 1, "repeat": 3},
        "marker": "Managed by Salt (ksha.loadbalancer)",
        # what ksha.loadbalancer.clean removes: a host with none of it is not cleaned (ksha.plan)
        "leftovers": {
            "marked": [files["keepalived_conf"], files["haproxy_cfg"]],
            "owned": [files["check_script"], files["sysctl_file"]],
        },
        # VRRPv3 has no authentication: a VRRP password means VRRPv2
        "vrrp_version": 2 if lb["keepalived"]["auth_pass"] else 3,
        # keepalived priorities follow the LB hosts' order
        "priority": {h: 200 - 10 * i for i, h in enumerate(running)},
        "peers": {h: [ip_of[p] for p in running if p != h] for h in running},
    }


def _etcd(conf: dict, hosts: list[str], ip_of: dict[str, str], groups: dict[str, list[str]]) -> dict:
    etcd = conf["etcd"]
    pki_dir = etcd["pki"]["dir"]
    # the files a member's etcd serves and checks TLS with
    tls = {
        "ca": f"{pki_dir}/ca.crt",
        **{f"{cert}_{ext}": f"{pki_dir}/{cert}.{ext}" for cert in ("server", "peer") for ext in ("crt", "key")},
    }
    # what a member's etcd reads at start: a change restarts it (one member at a time)
    watched = [ETCD_ENV_FILE, ETCD_UNIT_FILE, *tls.values()]
    release_dir = f"/opt/etcd-{etcd['archive']['version']}"
    bin_dir = "/usr/local/bin" if etcd["source"] == "archive" else "/usr/bin"
    members = [
        {
            "name": m,
            "ip": ip_of[m],
            "client_url": url(ip_of[m], etcd["client_port"]),
            "peer_url": url(ip_of[m], etcd["peer_port"]),
            "watched": watched,
        }
        for m in groups["etcd"]
    ]
    names = [m["name"] for m in members]
    backup_files = {
        "script": "/usr/local/sbin/ksha-etcd-backup",
        "service": "/etc/systemd/system/ksha-etcd-backup.service",
        "timer": "/etc/systemd/system/ksha-etcd-backup.timer",
    }
    return {
        "members": members,
        "names": names,
        "client_urls": {m["name"]: m["client_url"] for m in members},
        "peer_urls": {m["name"]: m["peer_url"] for m in members},
        "initial_cluster": ",".join(f"{m['name']}={m['peer_url']}" for m in members),
        "local_client_url": url("127.0.0.1", etcd["client_port"]),
        "token": f"ksha-{conf['cluster_name']}",
        "bin_dir": bin_dir,
        "binary": f"{bin_dir}/etcd",
        # source archive: the release is extracted here and its binaries linked into /usr/local/bin
        "release_dir": release_dir,
        "release_links": {
            name: {"link": f"/usr/local/bin/{name}", "target": f"{release_dir}/{name}"} for name in ("etcd", "etcdctl")
        },  # fmt: skip
        "tls": tls,
        "metrics_url": url("127.0.0.1", etcd["metrics_port"], "http") if etcd["metrics_port"] else None,
        "initial_cluster_file": ETCD_INITIAL_CLUSTER_FILE,
        "ca": {
            "key": f"{etcd['pki']['ca_dir']}/ca.key",
            "cert": f"{etcd['pki']['ca_dir']}/ca.crt",
            "cn": f"ksha etcd CA ({conf['cluster_name']})",
        },
        # the backup timer fires within this of its period
        "backup_accuracy_s": min(etcd["backup"]["period_minutes"] * 6, 30),
        # ksha.etcd.backup's script and units, each carrying the marker; ksha.etcd.clean stops
        # the timer and removes them on a host that is no member (the snapshots stay)
        "backup_units": {"service": "ksha-etcd-backup.service", "timer": "ksha-etcd-backup.timer"},
        "backup_files": backup_files,
        "backup_marker": "Managed by Salt (ksha.etcd.backup)",
        "ca_host": etcd["pki"]["ca_host"] or (names[0] if names else None),
        # who gets etcd certificates: the members, and the masters (the apiserver's client certificate)
        "pki_hosts": names + [m for m in groups["kube-master"] if m not in names],
        "others": [h for h in hosts if h not in names],
        # every member's server certificate (ksha.status shows its days left)
        "server_cert": f"{pki_dir}/server.crt",
        "env_file": ETCD_ENV_FILE,
        "unit_file": ETCD_UNIT_FILE,
        # ksha.etcd.clean touches a unit carrying this marker only; a host with no such unit (and
        # no bootstrap grain) is not cleaned (ksha.plan.with_leftovers)
        "marker": "Managed by Salt (ksha.etcd)",
        # the unit's TimeoutStopSec and TimeoutStartSec: a rolling restart counts their sum
        "stop_timeout_s": 15,
        "start_timeout_s": 120,
        # the grain that records a bootstrapped cluster (ksha.etcd.healthy sets it; the plan reads it)
        "bootstrap_grain": "ksha_etcd_cluster_id",
        # (and the backup timer, carrying the backup's marker: a member cleaned before ksha.etcd.clean
        # removed the timer still has one firing)
        "leftovers": {"marked": [ETCD_UNIT_FILE, backup_files["timer"]], "owned": []},
        "cert_dirs": [pki_dir, conf["kubernetes"]["pki"]["dir"]],
        "admin": {
            "cacert": f"{pki_dir}/ca.crt",
            "cert": f"{pki_dir}/admin.crt",
            "key": f"{pki_dir}/admin.key",
        },
    }


def _etcd_certificates(conf: dict, host: str, ip: str, groups: dict[str, list[str]]) -> list[dict]:
    """The etcd CA's certificates `host` holds: subject, SANs, signing policy, owner."""
    etcd = conf["etcd"]
    pki_dir = etcd["pki"]["dir"]
    certs = []
    if host in groups["etcd"]:
        sans = f"DNS:{host}, DNS:localhost, IP:{ip}, IP:127.0.0.1"
        for cert_id, path, policy in (
            ("member-server", "server", "ksha_etcd_server"),
            ("member-peer", "peer", "ksha_etcd_peer"),
        ):
            # owned by etcd's user, which the package (ksha.etcd.install) makes: issued after it
            certs.append(
                {"id": cert_id, "path": f"{pki_dir}/{path}", "policy": policy_for(policy, host), "cn": host,
                 "sans": sans, "user": etcd["user"], "after_install": True}
            )  # fmt: skip
        certs.append(
            {"id": "admin-client", "path": f"{pki_dir}/admin", "policy": policy_for("ksha_etcd_client", host),
             "cn": "ksha-etcd-admin", "sans": None, "user": "root", "after_install": False}
        )  # fmt: skip
    if host in groups["kube-master"]:
        certs.append(
            {"id": "apiserver-client", "path": apiserver_etcd_client(conf),
             "policy": policy_for("ksha_etcd_client", host), "cn": "kube-apiserver-etcd-client", "sans": None,
             "user": "root", "after_install": False}
        )  # fmt: skip
    return certs


def leaf_policy(minion: str, ca: dict, usage: str, days_valid: int) -> dict:
    """An x509_v2 signing policy for leaf certificates of `ca` ({key, cert}), asked for by `minion`
    only (a glob that matches its ID alone), with the extended key `usage` and nothing more."""
    return {
        "minions": glob.escape(minion),
        "signing_private_key": ca["key"],
        "signing_cert": ca["cert"],
        "basicConstraints": "critical, CA:false",
        "keyUsage": "critical, digitalSignature, keyEncipherment",
        "extendedKeyUsage": usage,
        "subjectKeyIdentifier": "hash",
        "authorityKeyIdentifier": "keyid:always",
        "days_valid": days_valid,
    }


def _signing_policies(conf: dict, etcd: dict, groups: dict[str, list[str]]) -> dict:
    """The etcd CA's x509_v2 signing policies (published to the CA host only)."""
    pki = conf["etcd"]["pki"]
    allowed = {"members": etcd["names"], "clients": etcd["pki_hosts"]}
    return {
        policy_for(policy, minion): leaf_policy(minion, etcd["ca"], usage, pki["days_valid"])
        for policy, (who, usage) in ETCD_POLICIES.items()
        for minion in allowed[who]
    }


# --- the control plane --------------------------------------------------------------------

# The Kubernetes CAs (kubeadm's file names) and the x509_v2 signing policies each signs with:
# policy -> (CA, extended key usage). Every policy is for the masters only.
KUBE_CAS = {"kubernetes": "ca", "front-proxy": "front-proxy-ca"}
KUBE_POLICIES = {
    "ksha_kube_apiserver": ("kubernetes", "serverAuth"),
    "ksha_kube_client": ("kubernetes", "clientAuth"),
    "ksha_kube_front_proxy_client": ("front-proxy", "clientAuth"),
}
KUBE_CONF_DIR = "/etc/kubernetes"
KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# what a control-plane component's kubeconfig is for: component -> (file, CN, O)
KUBECONFIGS = {
    "admin": ("admin.conf", "kubernetes-admin", "system:masters"),
    "controller-manager": ("controller-manager.conf", "system:kube-controller-manager", None),
    "scheduler": ("scheduler.conf", "system:kube-scheduler", None),
}


def first_ip(cidr: str) -> str:
    """The network's address plus one: the apiserver's own Service IP (``kubernetes.default``)."""
    return str(ipaddress.ip_network(cidr, strict=False).network_address + 1)


def _kubernetes(conf: dict, ip_of: dict[str, str], groups: dict[str, list[str]], api: dict, etcd: dict) -> dict:
    """The control plane's shared facts: release, CAs, SANs, kubeconfig endpoints, certificates' paths."""
    k8s = conf["kubernetes"]
    version = k8s["version"]
    masters = groups["kube-master"]
    pki_dir = k8s["pki"]["dir"]
    domain = k8s["cluster_domain"]
    service_ip = first_ip(k8s["service_cidr"])
    release_dir = f"/opt/kubernetes-{version}"
    url = k8s["archive"]["url"] or release.upstream_url(version)
    # The apiserver's serving certificate, the same on every master: every name and address a
    # client may use to reach any apiserver, so a master added or the LB moved re-issues it on
    # every master in the same run.
    dns = [*masters, api["domain"], "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{domain}"]  # fmt: skip
    ips = [*(ip_of[m] for m in masters), *([api["address"]] if api["address"] else []), "127.0.0.1", service_ip]
    for extra in k8s["apiserver"]["extra_sans"]:
        (ips if _is_ip(extra) else dns).append(extra)
    sans = [f"DNS:{n}" for n in dict.fromkeys(dns)] + [f"IP:{a}" for a in dict.fromkeys(ips)]
    cas = {
        name: {
            "key": f"{k8s['pki']['ca_dir']}/{stem}.key",
            "cert": f"{k8s['pki']['ca_dir']}/{stem}.crt",
            # where every master (and later every node) finds the CA certificate
            "installed": f"{pki_dir}/{stem}.crt",
            "cn": f"ksha {name} CA ({conf['cluster_name']})",
        }
        for name, stem in KUBE_CAS.items()
    }
    release_links = {
        name: {"link": f"/usr/local/bin/{name}", "target": f"{release_dir}/kubernetes/server/bin/{name}"}
        for name in (*KUBE_COMPONENTS, "kubectl")
    }
    unit_files = {c: f"/etc/systemd/system/{c}.service" for c in KUBE_COMPONENTS}
    return {
        "version": version,
        "masters": masters,
        "ca_host": k8s["pki"]["ca_host"] or (masters[0] if masters else None),
        "cas": cas,
        "pki_dir": pki_dir,
        "service_ip": service_ip,
        "apiserver_sans": sans,
        "archive": {
            "url": url,
            "sha256": k8s["archive"]["sha256"],
            # why the release cannot be installed (None: it can): the plan refuses the run before
            # any host is touched, and ksha.kubernetes.install fails with it on a highstate
            "problem": None if k8s["archive"]["sha256"] else release.checksum_missing(version),
        },
        # the tarball's kubernetes/server/bin/<binary>, extracted here and linked into /usr/local/bin
        "release_dir": release_dir,
        "release_links": release_links,
        "unit_files": unit_files,
        # the apiserver's rolling restart (ksha_kube.running_with_current_config): one master at a
        # time under this etcd lock, each waiting for every other apiserver to be ready first and
        # for its own to be ready (and UP in its haproxy, on an LB host) after
        # (every master's apiserver, as the others probe its /readyz: loadbalancer.backends)
        "apiserver": {
            "unit": "kube-apiserver",
            "lock": "ksha-kube-apiserver-rolling-restart",
            # the unit's TimeoutStopSec and TimeoutStartSec: a restart takes at most their sum
            "stop_timeout_s": 15,
            "start_timeout_s": 120,
        },
        "marker": "Managed by Salt (ksha.kubernetes)",
        # masters that get etcdctl from etcd.client_pkgs (the rolling lock): the members have etcd's
        "etcdctl_hosts": [m for m in masters if m not in etcd["names"]],
        "etcd_servers": ",".join(etcd["client_urls"][m] for m in etcd["names"]),
        # The service account token keys, kubeadm's names: each master signs tokens with its own
        # sa.key (made there; no private key leaves its host) and every apiserver verifies them with
        # sa.pub, the public keys of every master in master order, which each master publishes to
        # the Salt mine under `mine` (ksha.publish_service_account_key, an orchestration step).
        "service_account": {
            "key": f"{pki_dir}/sa.key",
            "pub": f"{pki_dir}/sa.pub",
            "mine": "ksha_kube_service_account_key",
        },
        "service_account_issuer": f"https://kubernetes.default.svc.{domain}",
        "scheduler_config": f"{KUBE_CONF_DIR}/kube-scheduler.yaml",
        # ksha.kubernetes.clean, on a host that is not (or no longer) a master: only where a unit
        # carries the marker (`leftovers`), it stops the components (scheduler, controller-manager,
        # then apiserver), removes what ksha wrote for a master (`files`: leaf certificates and
        # keys, the service account keys, kubeconfigs, the scheduler's configuration; not the CA
        # certificates, which the nodes keep), the links into the release and the release, then
        # the units. A host with no such unit is not cleaned (ksha.plan.with_leftovers).
        "clean": {
            "hosts": [h for h in ip_of if h not in masters],
            "components": list(reversed(KUBE_COMPONENTS)),
            "files": [],  # _clean_files, once the rest is known
            "links": [link["link"] for link in release_links.values()],
            "release_dir": release_dir,
        },
        "leftovers": {"marked": [unit_files[c] for c in KUBE_COMPONENTS], "owned": []},
    }


def batches(names: list[str], size: int) -> list[list[str]]:
    """`names` in runs of at most `size`, in order: what one orchestration step changes at once."""
    return [names[i : i + size] for i in range(0, len(names), size)]


def dns_service_ip(cidr: str) -> str:
    """The cluster DNS Service's address: the third of the Service range, as the seed's
    installer (kubespray's ``skydns_server``) gives CoreDNS (10.233.0.3 in 10.233.0.0/18)."""
    return str(ipaddress.ip_network(cidr, strict=False).network_address + 3)


# The node components (the node tarball's kubernetes/node/bin/<binary>), their units' words.
NODE_COMPONENTS = ("kubelet", "kube-proxy")
NODE_UNIT_KINDS = {"kubelet": ("Kubernetes node agent", "simple"), "kube-proxy": ("Kubernetes network proxy", "simple")}
# x509_v2 signing policies of kubernetes-ca for each node: policy -> (extended key usage, the
# subject it fixes: {field: template}). The policy sets the subject itself, so a node can get a
# certificate for its own identity only, whatever it asks (the Node authorizer trusts that).
NODE_POLICIES = {
    "ksha_kube_kubelet_client": ("clientAuth", {"subject": "CN=system:node:{host},O=system:nodes"}),
    "ksha_kube_kubelet_server": ("serverAuth", {"subject": "CN={host}", "subjectAltName": "DNS:{host}, IP:{ip}"}),
    "ksha_kube_proxy_client": ("clientAuth", {"subject": "CN=system:kube-proxy"}),
}
# What x509_v2 takes from a node policy whatever the node asks (salt.utils.x509.merge_signing_policy:
# the policy's keys override the request's): the whole subject as one RFC 4514 string (a policy
# naming CN alone would let the request add O=system:masters), and the validity from days_valid
# (a request's not_before/not_after would win over it).
NODE_POLICY_PINNED = {"not_before": None, "not_after": None}
KUBELET_DIR = "/var/lib/kubelet"
ROLE_LABEL = "node-role.kubernetes.io/"
KUBE_PROXY_DIR = "/var/lib/kube-proxy"


def _nodes(conf: dict, names: list[str], groups: dict[str, list[str]], k8s: dict) -> dict:
    """Phase 6's shared facts: which hosts are nodes, their batches, the node release, the
    runtime's settings."""
    nodes = conf["nodes"]
    masters = groups["kube-master"]
    wanted = set(groups["kube-node"]) | (set(masters) if nodes["masters_run_kubelet"] else set())
    hosts = [n for n in names if n in wanted]  # inventory order
    ctd = conf["containerd"]
    mirrors = ctd["registry_mirrors"]
    insecure = list(dict.fromkeys(ctd["insecure_registries"]))
    version = k8s["version"]
    archive = conf["kubernetes"]["node_archive"]
    release_dir = f"/opt/kubernetes-node-{version}"
    links = {
        c: {"link": f"/usr/local/bin/{c}", "target": f"{release_dir}/kubernetes/node/bin/{c}"} for c in NODE_COMPONENTS
    }
    return {
        "hosts": hosts,
        "workers": [n for n in hosts if n not in masters],
        "batch": nodes["batch"],
        "batch_timeout_s": nodes["batch_timeout_s"],
        # a host that is no node (any more): before its host is cleaned, the first master cordons
        # and drains it (kubectl drain, at most drain_timeout_s), and deletes its Node after
        "api_host": masters[0] if masters else None,
        "drain_timeout_s": nodes["drain_timeout_s"],
        "batches": batches(hosts, nodes["batch"]),
        "dns_ip": dns_service_ip(conf["kubernetes"]["service_cidr"]),
        "marker": "Managed by Salt (ksha.node)",
        # kubernetes-node-linux-amd64.tar.gz of the masters' version, as the server tarball
        "release": {
            "dir": release_dir,
            "archive": {
                "url": archive["url"] or release.upstream_url(version, "node"),
                "sha256": archive["sha256"],
                "problem": None if archive["sha256"] else release.checksum_missing(version, "node"),
            },
            "links": links,
        },
        "unit_files": {c: f"/etc/systemd/system/{c}.service" for c in NODE_COMPONENTS},
        # ksha.node.clean, on a host that is not (or no longer) a node, once the API has drained it:
        # only where a unit carries ksha.node's marker it stops kube-proxy and the kubelet, and
        # removes what ksha.node wrote (the host's ``node_clean``: configuration files, certificates
        # and keys, kubeconfigs, the CA certificate where no master needs it), the links, the
        # release and the units; only where config.toml carries ksha.containerd's marker it stops
        # containerd and removes the file (the packages stay). A host with neither is not cleaned
        # (ksha.plan.with_leftovers).
        "clean": {
            "hosts": [n for n in names if n not in wanted],
            "components": list(reversed(NODE_COMPONENTS)),
            "links": [link["link"] for link in links.values()],
            "release_dir": release_dir,
        },
        "leftovers": {
            "marked": [*(f"/etc/systemd/system/{c}.service" for c in NODE_COMPONENTS), ctd["config_file"]],
            "owned": [],
        },
        # the role labels and taints each node gets through the API, set from the first master
        # (admin.conf): a master is control-plane and, unless it is in kube-node too, tainted
        # NoSchedule; a kube-node host is worker (KubeSphere's label)
        "roles_host": masters[0] if masters and hosts else None,
        "roles": {
            n: {
                "labels": {
                    **({f"{ROLE_LABEL}control-plane": ""} if n in masters else {}),
                    **({f"{ROLE_LABEL}worker": ""} if n in groups["kube-node"] else {}),
                },
                "taints": (
                    [{"key": f"{ROLE_LABEL}control-plane", "effect": "NoSchedule"}]
                    if n in masters and n not in groups["kube-node"]
                    else []
                ),
            }
            for n in hosts
        },
        "kubelet": {
            "dir": KUBELET_DIR,
            "config": f"{KUBELET_DIR}/config.yaml",
            "pki_dir": f"{KUBELET_DIR}/pki",
            "kubeconfig": f"{KUBE_CONF_DIR}/kubelet.conf",
        },
        "kube_proxy": {
            "dir": KUBE_PROXY_DIR,
            "config": f"{KUBE_PROXY_DIR}/config.yaml",
            "pki_dir": f"{KUBE_PROXY_DIR}/pki",
            "kubeconfig": f"{KUBE_CONF_DIR}/proxy.conf",
        },
        "containerd": {
            "marker": "Managed by Salt (ksha.containerd)",
            "unit": "containerd",
            "pkgs": [*ctd["pkgs"], *ctd["cni_pkgs"]],
            "config_file": ctd["config_file"],
            "socket": ctd["socket"],
            # what config.toml says, ready to render (salt/ksha/containerd/files/config.toml.jinja)
            "config": {
                "root": ctd["root"],
                "state": "/run/containerd",
                "socket": ctd["socket"],
                "systemd_cgroup": ctd["cgroup_driver"] == "systemd",
                "snapshotter": ctd["snapshotter"],
                "sandbox_image": ctd["sandbox_image"],
                "cni_bin_dir": ctd["cni_bin_dir"],
                "cni_conf_dir": ctd["cni_conf_dir"],
                # registry -> endpoints, in the order containerd tries them: docker.io's mirrors
                # (then docker.io itself), each insecure registry over HTTP, then HTTPS unverified
                "mirrors": {
                    **({"docker.io": [*mirrors, "https://registry-1.docker.io"]} if mirrors else {}),
                    **{r: [f"http://{r}", f"https://{r}"] for r in insecure},
                },
                "insecure": insecure,
            },
        },
    }


def _network(conf: dict, nodes: dict) -> dict:
    """The pod network (ksha:network): which objects the first master applies through the API
    (admin.conf) once the nodes have joined, rendered here (ksha/network.py) from the pod CIDR
    and the nodes' CNI directories. ``objects`` reaches only that host's pillar (``for_minion``:
    ``me.network_objects``); ``refs`` names them for everyone else."""
    plugin = conf["network"]["plugin"]
    host = nodes["roles_host"] if plugin != "none" else None
    objects: list[dict] = []
    if host and plugin == "calico":
        calico, ctd = conf["network"]["calico"], conf["containerd"]
        objects = network.calico_objects(
            {
                **{k: calico[k] for k in ("version", "registry", "ipip_mode", "mtu")},
                "pod_cidr": conf["kubernetes"]["pod_cidr"],
                "cni_bin_dir": ctd["cni_bin_dir"],
                "cni_conf_dir": ctd["cni_conf_dir"],
            }
        )
    return {
        "plugin": plugin,
        "host": host,
        # the label ksha_kube.objects_applied keeps the set by: an object of the set that is no
        # longer rendered is deleted (plugin none applies nothing and deletes nothing)
        "set": plugin,
        "set_label": network.SET_LABEL,
        "managed_by": dict(network.MANAGED_BY),
        "resources": list(network.RESOURCES),
        "refs": [network.ref(o) for o in objects],
        "objects": objects,
    }


def _node_policies(conf: dict, k8s: dict, nodes: dict, ip_of: dict[str, str]) -> dict:
    """kubernetes-ca's signing policies for the nodes' certificates, one per node and policy, each
    fixing the subject (and the serving certificate's names) to that node's."""
    days = conf["kubernetes"]["pki"]["days_valid"]
    ca = k8s["cas"]["kubernetes"]
    out = {}
    for host in nodes["hosts"]:
        for policy, (usage, subject) in NODE_POLICIES.items():
            fixed = {k: v.format(host=host, ip=ip_of[host]) for k, v in subject.items()}
            out[policy_for(policy, host)] = {**leaf_policy(host, ca, usage, days), **fixed, **NODE_POLICY_PINNED}
    return out


def _node_clean(host: str, k8s: dict, nodes: dict) -> dict | None:
    """What ksha.node.clean removes from `host` once it is no node (None: it is one): the files
    ksha.node wrote, but the cluster CA's certificate on a master (ksha.kubernetes.pki's there)."""
    if host not in nodes["clean"]["hosts"]:
        return None
    kubelet, proxy = nodes["kubelet"], nodes["kube_proxy"]
    files = [kubelet["config"], kubelet["pki_dir"], kubelet["kubeconfig"],
             proxy["config"], proxy["pki_dir"], proxy["kubeconfig"]]  # fmt: skip
    if host not in k8s["masters"]:
        files.append(k8s["cas"]["kubernetes"]["installed"])
    files += [NODE_SYSCTL_FILE, NODE_MODULES_FILE]  # the settings stay until the next boot
    return {"files": files + nodes["clean"]["links"] + [nodes["clean"]["release_dir"]]}


def _node(conf: dict, host: str, ip: str, api: dict, k8s: dict, nodes: dict) -> dict | None:
    """What node `host` runs (None: it is no node): its certificates, kubeconfigs (through the API
    endpoint, the LB domain: never a master's address), the kubelet's and kube-proxy's
    configuration files and units."""
    if host not in nodes["hosts"]:
        return None
    kube = conf["kubernetes"]
    kubelet, proxy = nodes["kubelet"], nodes["kube_proxy"]
    certs = [
        {"id": "kubelet-client", "path": f"{kubelet['pki_dir']}/kubelet-client", "policy": "ksha_kube_kubelet_client",
         "cn": f"system:node:{host}", "o": "system:nodes", "sans": None},
        {"id": "kubelet-server", "path": f"{kubelet['pki_dir']}/kubelet", "policy": "ksha_kube_kubelet_server",
         "cn": host, "o": None, "sans": f"DNS:{host}, IP:{ip}"},
        {"id": "kube-proxy-client", "path": f"{proxy['pki_dir']}/kube-proxy-client", "policy": "ksha_kube_proxy_client",
         "cn": "system:kube-proxy", "o": None, "sans": None},
    ]  # fmt: skip
    certs = [
        {
            **c,
            "policy": policy_for(c["policy"], host),
            "ca": "kubernetes",
            "user": "root",
            "dir": c["path"].rsplit("/", 1)[0],
        }
        for c in certs
    ]
    ca_file = k8s["cas"]["kubernetes"]["installed"]
    kubeconfigs = {}
    for name, cert, path in (
        ("kubelet", certs[0], kubelet["kubeconfig"]),
        ("kube-proxy", certs[2], proxy["kubeconfig"]),
    ):
        entry = {"path": path, "server": api["url"], "ca": ca_file, "cert": cert["path"] + ".crt",
                 "key": cert["path"] + ".key", "user": cert["cn"]}  # fmt: skip
        kubeconfigs[name] = {**entry, "content": kubeconfig(entry, conf["cluster_name"])}
    ctd = conf["containerd"]
    kubelet_config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": ca_file},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": ctd["cgroup_driver"],
        "clusterDNS": [nodes["dns_ip"]],
        "clusterDomain": kube["cluster_domain"],
        "containerRuntimeEndpoint": f"unix://{ctd['socket']}",
        # Salt renews the kubelet's certificates (days_remaining), not the kubelet
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "tlsCertFile": certs[1]["path"] + ".crt",
        "tlsPrivateKeyFile": certs[1]["path"] + ".key",
        **kube["kubelet"]["extra_config"],
    }
    proxy_config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": proxy["kubeconfig"]},
        "clusterCIDR": kube["pod_cidr"],
        "hostnameOverride": host,
        "mode": kube["kube_proxy"]["mode"],
        **kube["kube_proxy"]["extra_config"],
    }
    flags = {
        "kubelet": {"config": kubelet["config"], "kubeconfig": kubelet["kubeconfig"], "hostname-override": host,
                    "node-ip": ip},
        "kube-proxy": {"config": proxy["config"], "hostname-override": host},
    }  # fmt: skip
    # what each reads at start: a change of one restarts it
    reads = {
        "kubelet": [kubelet["config"], kubelet["kubeconfig"], ca_file, *(c["path"] + e for c in certs[:2] for e in (".crt", ".key"))],
        "kube-proxy": [proxy["config"], proxy["kubeconfig"], ca_file, certs[2]["path"] + ".crt", certs[2]["path"] + ".key"],
    }  # fmt: skip
    units = {}
    for component in NODE_COMPONENTS:
        binary = nodes["release"]["links"][component]["link"]
        description, kind = NODE_UNIT_KINDS[component]
        path = nodes["unit_files"][component]
        units[component] = {
            "path": path,
            "binary": binary,
            "exec_start": [binary] + [systemd_quoted(f"--{k}={v}") for k, v in sorted(flags[component].items())],
            "watched": [path, *sorted(set(reads[component]))],
            "description": f"{description} (ksha node {host})",
            "type": kind,
            "stop_timeout_s": 15,
            "start_timeout_s": 60,
            # the kubelet talks to containerd from its start
            "after": ["containerd.service"] if component == "kubelet" else [],
        }
    return {
        # the directories ksha.node.pki makes, and the cluster CA's certificate it installs (None on a
        # master: ksha.kubernetes.pki installs it there)
        "dirs": list(dict.fromkeys([k8s["pki_dir"], *(c["dir"] for c in certs)])),
        "ca_certificate": None if host in k8s["masters"] else ca_file,
        # packages of kube-proxy's mode (ipvs: ipvsadm; ipset and conntrack come with ksha.common)
        "pkgs": kube["kube_proxy"]["pkgs"] if kube["kube_proxy"]["mode"] == "ipvs" else [],
        "certificates": certs,
        "kubeconfigs": kubeconfigs,
        "configs": {
            "kubelet": {"path": kubelet["config"], "content": kubelet_config},
            "kube-proxy": {"path": proxy["config"], "content": proxy_config},
        },  # fmt: skip
        "flags": flags,
        "units": units,
        "kernel": node_kernel(conf),
    }


NODE_SYSCTL_FILE = "/etc/sysctl.d/60-ksha-node.conf"
NODE_MODULES_FILE = "/etc/modules-load.d/ksha-node.conf"


def node_kernel(conf: dict) -> dict:
    """A node's kernel settings: the modules it loads now and at boot (ksha:nodes:kernel_modules,
    and kube_proxy:ipvs_modules in ipvs mode), then the sysctls (ksha:nodes:sysctl), which may
    need a module (net.bridge.* needs br_netfilter). Each with the commands that set it and
    check it: a module is there when /sys/module has it or the kernel has it built in
    (modules.builtin; kmod.present would fail on one, lsmod does not list it); a sysctl when
    ``sysctl -n`` shows the value (blanks as one space)."""
    kube_proxy = conf["kubernetes"]["kube_proxy"]
    names = [*conf["nodes"]["kernel_modules"], *(kube_proxy["ipvs_modules"] if kube_proxy["mode"] == "ipvs" else [])]
    modules = []
    for name in dict.fromkeys(names):
        sysfs = name.replace("-", "_")  # modprobe takes either; /sys/module has underscores
        files = "|".join(dict.fromkeys([sysfs, name]))
        modules.append({
            "name": name,
            "load": f"modprobe {name}",
            "loaded": f"test -d /sys/module/{sysfs} || grep -qsE '/({files})\\.ko$' /lib/modules/$(uname -r)/modules.builtin",
        })  # fmt: skip
    sysctl = {}
    for name, value in sorted(conf["nodes"]["sysctl"].items()):
        shown = " ".join(str(value).split())
        sysctl[name] = {
            "value": shown,
            "set": f"sysctl -q -w {shlex.quote(f'{name}={shown}')}",
            "current": f'test "$(sysctl -n {name} | xargs)" = {shlex.quote(shown)}',
        }
    return {
        "modules": modules,
        "sysctl": sysctl,
        # what each file holds (after ksha's marker); a file with no line is removed
        "files": [
            {"path": NODE_MODULES_FILE, "lines": [m["name"] for m in modules]},
            {"path": NODE_SYSCTL_FILE, "lines": [f"{name} = {s['value']}" for name, s in sysctl.items()]},
        ],
    }


def _clean_files(conf: dict, k8s: dict) -> list[str]:
    """What ksha writes for a master and ksha.kubernetes.clean removes from a former one: the
    leaf certificates and keys (the etcd client certificate too), the service account keys,
    the kubeconfigs and the scheduler's configuration; not the CA certificates."""
    certs = [c["path"] for c in _kube_leaves(k8s)] + [apiserver_etcd_client(conf)]
    return sorted(
        [f"{path}.{ext}" for path in certs for ext in ("crt", "key")]
        + [k8s["service_account"]["key"], k8s["service_account"]["pub"], k8s["scheduler_config"]]
        + [f"{KUBE_CONF_DIR}/{file}" for file, _, _ in KUBECONFIGS.values()]
    )


def scheduler_configuration(conf: dict, kubeconfig: str) -> dict:
    """kube-scheduler's configuration file (``--config``): with it, the scheduler ignores its
    ``--kubeconfig`` flag, so the kubeconfig is here; and its leader election."""
    election = conf["kubernetes"]["leader_election"]
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "leaderElection": {
            "leaderElect": True,
            "leaseDuration": f"{election['lease_duration_s']}s",
            "renewDeadline": f"{election['renew_deadline_s']}s",
            "retryPeriod": f"{election['retry_period_s']}s",
            "resourceLock": "leases",
            "resourceNamespace": "kube-system",
            "resourceName": "kube-scheduler",
        },
    }


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _kube_certificates(conf: dict, host: str, k8s: dict) -> list[dict]:
    """The Kubernetes CAs' leaf certificates `host` (a master) holds: kubeadm's names and subjects,
    each with the signing policy `host` asks with."""
    if host not in k8s["masters"]:
        return []
    return [{**c, "policy": policy_for(c["policy"], host)} for c in _kube_leaves(k8s)]


def _ca_policies(host: str, etcd: dict, k8s: dict, nodes: dict) -> dict[str, str]:
    """The signing policy `host` fetches each CA's certificate with from its CA host, for the CAs
    that sign certificates for it: {"etcd" | "kubernetes" | "front-proxy": policy}."""
    out = {}
    if host in etcd["pki_hosts"]:
        out["etcd"] = policy_for("ksha_etcd_client", host)
    if host in k8s["masters"]:
        # a policy of each CA (the first that CA signs with): the CA certificate comes with it
        for name in k8s["cas"]:
            out[name] = policy_for(next(p for p, (ca, _) in KUBE_POLICIES.items() if ca == name), host)
    elif host in nodes["hosts"]:
        out["kubernetes"] = policy_for(next(iter(NODE_POLICIES)), host)
    return out


def _kube_leaves(k8s: dict) -> list[dict]:
    """The Kubernetes CAs' leaf certificates every master holds (the same on each: one SAN list)."""
    pki = k8s["pki_dir"]
    certs = [
        {"id": "apiserver", "path": f"{pki}/apiserver", "policy": "ksha_kube_apiserver", "cn": "kube-apiserver",
         "o": None, "sans": ", ".join(k8s["apiserver_sans"])},
        {"id": "apiserver-kubelet-client", "path": f"{pki}/apiserver-kubelet-client", "policy": "ksha_kube_client",
         "cn": "kube-apiserver-kubelet-client", "o": "system:masters", "sans": None},
        {"id": "front-proxy-client", "path": f"{pki}/front-proxy-client", "policy": "ksha_kube_front_proxy_client",
         "cn": "front-proxy-client", "o": None, "sans": None},
    ]  # fmt: skip
    # the kubeconfigs' client certificates (referenced by path from the kubeconfig files)
    for name, (_, cn, org) in KUBECONFIGS.items():
        certs.append(
            {"id": f"{name}-client", "path": f"{pki}/{name}-client", "policy": "ksha_kube_client", "cn": cn,
             "o": org, "sans": None}
        )  # fmt: skip
    return [{**c, "ca": KUBE_POLICIES[c["policy"]][0], "user": "root"} for c in certs]


def _kubeconfigs(conf: dict, host: str, ip: str, api: dict, k8s: dict) -> dict:
    """Where each kubeconfig on a master points. admin.conf: the API endpoint (the LB domain), for
    people and tools. controller-manager and scheduler: this master's own apiserver (its node
    address: it binds there), as kubeadm does, so they need no LB, and when their apiserver is
    down they lose their lease and another master's take over."""
    if host not in k8s["masters"]:
        return {}
    local = url(ip, conf["kubernetes"]["apiserver_port"])
    out = {}
    for name, (file, cn, _) in KUBECONFIGS.items():
        entry = {
            "path": f"{KUBE_CONF_DIR}/{file}",
            "server": api["url"] if name == "admin" else local,
            "ca": k8s["cas"]["kubernetes"]["installed"],
            "cert": f"{k8s['pki_dir']}/{name}-client.crt",
            "key": f"{k8s['pki_dir']}/{name}-client.key",
            "user": cn,
        }
        out[name] = {**entry, "content": kubeconfig(entry, conf["cluster_name"])}
    return out


def kubeconfig(entry: dict, cluster: str) -> dict:
    """A kubeconfig file's content: one cluster, one user, one context. The certificates are
    referenced by path, not embedded, so a renewed certificate needs no new kubeconfig."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": entry["server"], "certificate-authority": entry["ca"]}}],
        "users": [{"name": entry["user"], "user": {"client-certificate": entry["cert"], "client-key": entry["key"]}}],
        "contexts": [{"name": f"{entry['user']}@{cluster}", "context": {"cluster": cluster, "user": entry["user"]}}],
        "current-context": f"{entry['user']}@{cluster}",
        "preferences": {},
    }


def _kube_policies(conf: dict, k8s: dict) -> dict:
    """The Kubernetes CAs' x509_v2 signing policies (published to the Kubernetes CA host only)."""
    pki = conf["kubernetes"]["pki"]
    return {
        policy_for(policy, master): leaf_policy(master, k8s["cas"][ca], usage, pki["days_valid"])
        for policy, (ca, usage) in KUBE_POLICIES.items()
        for master in k8s["masters"]
    }


def kube_flags(conf: dict, host: str, ip: str, k8s: dict, kubeconfigs: dict, etcd: dict) -> dict[str, dict]:
    """Each control-plane component's flags on master `host`: {component: {flag: value}} (ksha's
    own, then the pillar's extra_args; the validator refuses an extra_args flag ksha sets)."""
    if host not in k8s["masters"]:
        return {}
    kube = conf["kubernetes"]
    pki = k8s["pki_dir"]
    election = kube["leader_election"]
    leader = {
        "leader-elect": "true",
        "leader-elect-lease-duration": f"{election['lease_duration_s']}s",
        "leader-elect-renew-deadline": f"{election['renew_deadline_s']}s",
        "leader-elect-retry-period": f"{election['retry_period_s']}s",
    }
    delegated = {
        name: {"authentication-kubeconfig": kubeconfigs[name]["path"],
               "authorization-kubeconfig": kubeconfigs[name]["path"]}
        for name in ("controller-manager", "scheduler")
    }  # fmt: skip
    flags = {
        "kube-apiserver": {
            "advertise-address": ip,
            "bind-address": ip,
            "secure-port": str(kube["apiserver_port"]),
            "etcd-servers": k8s["etcd_servers"],
            "etcd-cafile": etcd["tls"]["ca"],
            "etcd-certfile": f"{apiserver_etcd_client(conf)}.crt",
            "etcd-keyfile": f"{apiserver_etcd_client(conf)}.key",
            "endpoint-reconciler-type": "lease",
            "authorization-mode": "Node,RBAC",
            "enable-admission-plugins": "NodeRestriction",
            "allow-privileged": "true",
            "client-ca-file": k8s["cas"]["kubernetes"]["installed"],
            "tls-cert-file": f"{pki}/apiserver.crt",
            "tls-private-key-file": f"{pki}/apiserver.key",
            "kubelet-client-certificate": f"{pki}/apiserver-kubelet-client.crt",
            "kubelet-client-key": f"{pki}/apiserver-kubelet-client.key",
            "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
            "requestheader-client-ca-file": k8s["cas"]["front-proxy"]["installed"],
            "requestheader-allowed-names": "front-proxy-client",
            "requestheader-extra-headers-prefix": "X-Remote-Extra-",
            "requestheader-group-headers": "X-Remote-Group",
            "requestheader-username-headers": "X-Remote-User",
            "proxy-client-cert-file": f"{pki}/front-proxy-client.crt",
            "proxy-client-key-file": f"{pki}/front-proxy-client.key",
            "service-account-issuer": k8s["service_account_issuer"],
            "service-account-key-file": k8s["service_account"]["pub"],
            "service-account-signing-key-file": k8s["service_account"]["key"],
            "service-cluster-ip-range": kube["service_cidr"],
        },
        "kube-controller-manager": {
            "kubeconfig": kubeconfigs["controller-manager"]["path"],
            **delegated["controller-manager"],
            **leader,
            "bind-address": "127.0.0.1",
            "allocate-node-cidrs": "true",
            "cluster-cidr": kube["pod_cidr"],
            "service-cluster-ip-range": kube["service_cidr"],
            "cluster-name": conf["cluster_name"],
            "root-ca-file": k8s["cas"]["kubernetes"]["installed"],
            "service-account-private-key-file": k8s["service_account"]["key"],
            "use-service-account-credentials": "true",
            "requestheader-client-ca-file": k8s["cas"]["front-proxy"]["installed"],
        },
        # the scheduler's kubeconfig and leader election are in its configuration file
        # (scheduler_configuration: next to it, the scheduler ignores --kubeconfig)
        "kube-scheduler": {
            **delegated["scheduler"],
            "config": k8s["scheduler_config"],
            "bind-address": "127.0.0.1",
        },
    }
    extra = {
        "kube-apiserver": kube["apiserver"]["extra_args"],
        "kube-controller-manager": kube["controller_manager"]["extra_args"],
        "kube-scheduler": kube["scheduler"]["extra_args"],
    }
    return {c: {**flags[c], **{k: _flag_value(v) for k, v in (extra[c] or {}).items()}} for c in KUBE_COMPONENTS}


# The files kube-apiserver reads at start, by the flags ksha gives it: a change of one restarts it
# (one master at a time). A flag of extra_args naming a file is not watched: ksha does not know
# whether the apiserver reads or writes it (an audit log would restart it for ever).
APISERVER_FILE_FLAGS = (
    "client-ca-file", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "kubelet-client-certificate",
    "kubelet-client-key", "proxy-client-cert-file", "proxy-client-key-file", "requestheader-client-ca-file",
    "service-account-key-file", "service-account-signing-key-file", "tls-cert-file", "tls-private-key-file",
)  # fmt: skip


# The files kube-controller-manager reads at start, by the flags ksha gives it (and the client
# certificate its kubeconfig names): a change of one restarts it.
CONTROLLER_MANAGER_FILE_FLAGS = (
    "kubeconfig", "root-ca-file", "service-account-private-key-file", "requestheader-client-ca-file",
)  # fmt: skip


def systemd_quoted(arg: str) -> str:
    """`arg` as one word of a systemd unit's ExecStart: ``%`` and ``$`` doubled (no specifier or
    variable is expanded), in double quotes with ``\\`` and ``"`` escaped when it holds a blank or
    a quote."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if any(c in arg for c in " \t\"'\\;"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


# What each component's unit says of it: (Description, systemd Type). kube-apiserver tells
# systemd it is ready (sd_notify); the controller-manager and scheduler do not.
UNIT_KINDS = {
    "kube-apiserver": ("Kubernetes API server", "notify"),
    "kube-controller-manager": ("Kubernetes controller manager", "simple"),
    "kube-scheduler": ("Kubernetes scheduler", "simple"),
}


def _units(host: str, conf: dict, k8s: dict, flags: dict[str, dict], kubeconfigs: dict) -> dict:
    """The control-plane units `host` (a master) runs: {component: {path, binary, exec_start,
    watched, description, type, rolling, configuration}}. ``watched``: the unit and every file the component
    reads at start (a change restarts it). ``rolling``: its restart is gated (kube-apiserver:
    one master at a time, the others ready first); the controller-manager and scheduler restart
    where they changed, their leader election moving the lease."""
    if host not in k8s["masters"]:
        return {}
    reads = {
        "kube-apiserver": [flags["kube-apiserver"].get(f) for f in APISERVER_FILE_FLAGS],
        "kube-controller-manager": [
            *(flags["kube-controller-manager"].get(f) for f in CONTROLLER_MANAGER_FILE_FLAGS),
            kubeconfigs["controller-manager"]["cert"], kubeconfigs["controller-manager"]["key"],
        ],
        "kube-scheduler": [
            k8s["scheduler_config"], kubeconfigs["scheduler"]["path"],
            kubeconfigs["scheduler"]["cert"], kubeconfigs["scheduler"]["key"], kubeconfigs["scheduler"]["ca"],
        ],
    }  # fmt: skip
    out = {}
    for component in KUBE_COMPONENTS:
        given = flags[component]
        path = k8s["unit_files"][component]
        binary = k8s["release_links"][component]["link"]
        description, kind = UNIT_KINDS[component]
        out[component] = {
            "path": path,
            "binary": binary,
            # one word per line: the binary, then every flag in name order
            "exec_start": [binary] + [systemd_quoted(f"--{name}={value}") for name, value in sorted(given.items())],
            "watched": [path, *sorted({f for f in reads[component] if f})],
            "description": f"{description} (ksha master {host})",
            "type": kind,
            "rolling": component == k8s["apiserver"]["unit"],
            # the unit's TimeoutStopSec and TimeoutStartSec (the apiserver's rolling restart counts them)
            "stop_timeout_s": k8s["apiserver"]["stop_timeout_s"],
            "start_timeout_s": k8s["apiserver"]["start_timeout_s"],
            # a configuration file of its own, written next to the unit: {path, content} or None
            "configuration": (
                {
                    "path": k8s["scheduler_config"],
                    "content": scheduler_configuration(conf, kubeconfigs["scheduler"]["path"]),
                }
                if component == "kube-scheduler"
                else None
            ),
        }
    return out


def _flag_value(value: Any) -> str:
    """A pillar value as a flag's value: YAML's true/false as Go's."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def roles(
    conf: dict, host: str, groups: dict[str, list[str]], lb: dict, etcd: dict, k8s: dict, nodes: dict, net: dict
) -> list[str]:
    """The seed's groups `host` is in, then its derived roles, in ROLE_STATES order."""
    derived = {
        "all": True,
        "loadbalancer": host in lb["hosts"],
        "loadbalancer-clean": host in lb["clean"],
        "loadbalancer-external": host in lb["external_check"],
        "etcd-ca": host == etcd["ca_host"],
        "etcd-clean": host in etcd["others"],
        "kubernetes-ca": host == k8s["ca_host"],
        "kubernetes-clean": host in k8s["clean"]["hosts"],
        "node": host in nodes["hosts"],
        "node-roles": host == nodes["roles_host"],
        "network": host == net["host"] and bool(net["objects"]),
    }
    member_of = {g: host in groups[g] for g in GROUPS}
    return [g for g in GROUPS if member_of[g]] + [r for r, yes in derived.items() if yes]


def states(host_roles: list[str]) -> list[str]:
    """The highstate of a host with these roles: ROLE_STATES in order, each state once."""
    out: list[str] = []
    for role, role_states in ROLE_STATES:
        if role in host_roles:
            out += [s for s in role_states if s not in out]
    return out


def build(pillar_ksha: dict, os_family: str | None = None, defaults: dict | None = None) -> dict:
    """The cluster model of a valid ``ksha`` pillar value (see the module docstring)."""
    conf = settings(pillar_ksha, os_family, defaults)
    names = host_names(conf)
    entries = {h["name"]: h for h in conf["hosts"] if isinstance(h, dict) and h.get("name") in names}
    ip_of = {name: str(ipaddress.ip_address(entries[name]["ip"])) for name in names}
    groups = _groups(conf, names)
    api = _api(conf, ip_of, groups)
    lb = _loadbalancer(conf, names, ip_of, groups)
    etcd = _etcd(conf, names, ip_of, groups)
    k8s = _kubernetes(conf, ip_of, groups, api, etcd)
    k8s["clean"]["files"] = _clean_files(conf, k8s)
    nodes = _nodes(conf, names, groups, k8s)
    pod_network = _network(conf, nodes)
    hosts = []
    for name in names:
        host_roles = roles(conf, name, groups, lb, etcd, k8s, nodes, pod_network)
        kubeconfigs = _kubeconfigs(conf, name, ip_of[name], api, k8s)
        flags = kube_flags(conf, name, ip_of[name], k8s, kubeconfigs, etcd)
        hosts.append(
            {
                "name": name,
                "ip": ip_of[name],
                "addresses": list(entries[name].get("addresses") or []),
                "groups": [g for g in GROUPS if name in groups[g]],
                "roles": host_roles,
                "states": states(host_roles),
                "etcd_member": next((m for m in etcd["members"] if m["name"] == name), None),
                "certificates": {
                    "etcd": _etcd_certificates(conf, name, ip_of[name], groups),
                    "kubernetes": _kube_certificates(conf, name, k8s),
                },
                "ca_policies": _ca_policies(name, etcd, k8s, nodes),
                "kubeconfigs": kubeconfigs,
                "flags": flags,
                "units": _units(name, conf, k8s, flags, kubeconfigs),
                "node": _node(conf, name, ip_of[name], api, k8s, nodes),
                "node_clean": _node_clean(name, k8s, nodes),
            }
        )
    hosts_file = [[ip_of[n], n] for n in names]
    if api["address"]:
        hosts_file.append([api["address"], api["domain"]])
    return {
        # the settings without secrets (the VRRP password): no rendered SLS, function return
        # or output carries the model's copy; keepalived.conf's template reads the password
        # from the ksha pillar itself
        "config": without_secrets(conf),
        "hosts": hosts,
        "groups": groups,
        "api": api,
        "hosts_file": hosts_file,
        "loadbalancer": lb,
        "etcd": etcd,
        "kubernetes": k8s,
        "nodes": nodes,
        "network": pod_network,
        "signing_policies": {
            "etcd": _signing_policies(conf, etcd, groups),
            "kubernetes": {**_kube_policies(conf, k8s), **_node_policies(conf, k8s, nodes, ip_of)},
        },
        # Salt's retry of every x509_v2 state (keys and certificates, the CAs' too): Salt 3008.4's
        # x509_v2 states check their file through state.single, which builds a State and fetches
        # the pillar over a new tornado IOLoop, and that races with the job's other threads now
        # and then ("RuntimeError: dictionary keys changed during iteration" in tornado's
        # platform/asyncio.py, seen in this project's lab runs on private_key_managed and on
        # remotely signed certificate_managed; not reproduced on demand). A timing race: a second
        # attempt is expected to pass; a real failure (a policy that refuses) fails both, 3 s apart.
        "x509_retry": {"attempts": 2, "interval": 3, "until": True},
    }


def preflight_findings(pillar_ksha: Any) -> list:
    """What the preflight (``salt-run ksha.validate``, the ``ksha validate`` command) reports: the
    one validator's findings (``ksha.inventory.validate``) and, once they hold no error, the
    offline check of the objects ksha applies through the API (``ksha.network.findings``:
    kubernetes-validate against the pinned version's schemas). The external pillar runs only the
    validator: it compiles for every minion, the manifests' check once per preflight is enough."""
    found = inventory.validate(pillar_ksha)
    if inventory.has_errors(found):
        return found
    return found + network.findings(build(pillar_ksha))


def host(model: dict, name: str) -> dict:
    """`name`'s entry of ``model["hosts"]``, or ``{}``."""
    return next((h for h in model["hosts"] if h["name"] == name), {})


def for_minion(model: dict, minion_id: str, grains: dict | None = None) -> dict:
    """What the external pillar publishes to `minion_id`: ``{"ksha_model": model + me}``, and
    the signing policies of the CAs it holds (etcd's, the Kubernetes CAs').

    ``me`` adds this minion's runtime facts from its grains: the interface holding its ip
    (keepalived's, unless ``ksha:loadbalancer:keepalived:interface`` names one).
    """
    me = dict(host(model, minion_id))
    if me:
        grains = grains or {}
        found = interface_of(me["ip"], {**grains.get("ip6_interfaces", {}), **grains.get("ip4_interfaces", {})})
        me["interface"] = model["config"]["loadbalancer"]["keepalived"]["interface"] or found
        me["lb_priority"] = model["loadbalancer"]["priority"].get(minion_id)
        me["lb_peers"] = model["loadbalancer"]["peers"].get(minion_id, [])
        # the network's objects (tens of kilobytes) only where they are applied
        me["network_objects"] = model["network"]["objects"] if minion_id == model["network"]["host"] else []
    published = {**model, "network": {k: v for k, v in model["network"].items() if k != "objects"}}
    out: dict[str, Any] = {"ksha_model": {**published, "me": me}}
    # a CA host's signing policies (policy names differ between the CAs: one host may hold both)
    policies = {}
    for role, ca in (("etcd-ca", "etcd"), ("kubernetes-ca", "kubernetes")):
        if me and role in me["roles"]:
            policies.update(model["signing_policies"][ca])
    if policies:
        out["x509_signing_policies"] = policies
    return out
