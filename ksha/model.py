"""The cluster model: every fact ksha derives from the ``ksha`` pillar, computed once.

``build()`` takes the ``ksha`` pillar value (already valid: ``ksha.inventory.validate``
found no error) and returns plain data: the merged settings, every host with its
groups, roles and states, the API endpoint, the load balancer's hosts and backends,
the etcd members and their URLs, the CA host, each host's certificates and the CA's
signing policies. Nothing else derives these facts:

- the master's external pillar ``ksha_model`` (``salt/_pillar/ksha_model.py``) publishes
  the model to every minion as the pillar key ``ksha_model`` (plus ``me``: the minion's
  own host entry) and the etcd CA's ``x509_signing_policies`` to the CA host;
- ``salt/top.sls``, ``salt/ksha/map.jinja`` and the states render from that pillar key;
- the execution modules read their settings from it;
- the runner (``salt-run ksha.plan``, ``ksha.status``) calls ``build()`` itself.

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

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
)
GROUPS = ("kube-master", "kube-node", "etcd")

# x509_v2 signing policies of the etcd CA: policy -> (who may ask, extended key usage).
ETCD_POLICIES = {
    "ksha_etcd_server": ("members", "serverAuth, clientAuth"),
    "ksha_etcd_peer": ("members", "serverAuth, clientAuth"),
    "ksha_etcd_client": ("clients", "clientAuth"),
}
APISERVER_ETCD_CLIENT = "/etc/kubernetes/pki/apiserver-etcd-client"
ETCD_ENV_FILE = "/etc/etcd/ksha-etcd.env"
ETCD_UNIT_FILE = "/etc/systemd/system/etcd.service"
# written only when orch.ksha bootstraps the cluster or a member joins it
ETCD_INITIAL_CLUSTER_FILE = "/etc/etcd/ksha-initial-cluster.env"


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


SECRET_KEYS = ("auth_pass",)


def without_secrets(value: Any) -> Any:
    """`value` with every secret (ksha:loadbalancer:keepalived:auth_pass) replaced by "***"."""
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


def _loadbalancer(conf: dict, hosts: list[str], ip_of: dict[str, str], groups: dict[str, list[str]]) -> dict:
    lb = conf["loadbalancer"]
    mode = lb["mode"]
    running = [h for h in (lb.get("hosts") or groups["kube-master"]) if h in ip_of] if mode == "keepalived" else []
    apiserver_port = conf["kubernetes"]["apiserver_port"]
    return {
        "mode": mode,
        # haproxy + keepalived (keepalived mode), in priority order
        "hosts": running,
        # every other host: a former LB host has ksha's haproxy/keepalived removed
        "clean": [h for h in hosts if h not in running],
        # external mode: every host checks it reaches the LB before anything changes
        "external_check": list(hosts) if mode == "external" else [],
        "backends": [{"name": h, "ip": ip_of[h], "port": apiserver_port} for h in groups["kube-master"]],
        "console_backends": [
            {"name": h, "ip": ip_of[h], "port": conf["kubesphere"]["console_port"]} for h in groups["k8s-cluster"]
        ],
        # haproxy's apiserver checks: a server changing state is checked twice as often,
        # a server that is down half as often
        "check": {
            "inter": lb["haproxy"]["check_inter_ms"],
            "fastinter": lb["haproxy"]["check_inter_ms"] // 2,
            "downinter": lb["haproxy"]["check_inter_ms"] * 2,
            "fall": lb["haproxy"]["check_fall"],
            "rise": lb["haproxy"]["check_rise"],
        },
        # keepalived tracks haproxy with this script (haproxy answers, an apiserver is UP)
        "check_script": "/etc/keepalived/ksha-check-haproxy.sh",
        # the files ksha manages on an LB host; ksha.loadbalancer.clean removes the configs
        # only where they carry the marker
        "haproxy_cfg": "/etc/haproxy/haproxy.cfg",
        "keepalived_conf": "/etc/keepalived/keepalived.conf",
        "sysctl_file": "/etc/sysctl.d/60-ksha-loadbalancer.conf",
        "marker": "Managed by Salt (ksha.loadbalancer)",
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
        "ca_host": etcd["pki"]["ca_host"] or (names[0] if names else None),
        # who gets etcd certificates: the members, and the masters (the apiserver's client certificate)
        "pki_hosts": names + [m for m in groups["kube-master"] if m not in names],
        "others": [h for h in hosts if h not in names],
        # every member's server certificate (ksha.status shows its days left)
        "server_cert": f"{pki_dir}/server.crt",
        "env_file": ETCD_ENV_FILE,
        "unit_file": ETCD_UNIT_FILE,
        "cert_dirs": [pki_dir, APISERVER_ETCD_CLIENT.rsplit("/", 1)[0]],
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
            certs.append(
                {"id": cert_id, "path": f"{pki_dir}/{path}", "policy": policy, "cn": host, "sans": sans,
                 "user": etcd["user"]}
            )  # fmt: skip
        certs.append(
            {"id": "admin-client", "path": f"{pki_dir}/admin", "policy": "ksha_etcd_client", "cn": "ksha-etcd-admin",
             "sans": None, "user": "root"}
        )  # fmt: skip
    if host in groups["kube-master"]:
        certs.append(
            {"id": "apiserver-client", "path": APISERVER_ETCD_CLIENT, "policy": "ksha_etcd_client",
             "cn": "kube-apiserver-etcd-client", "sans": None, "user": "root"}
        )  # fmt: skip
    return certs


def _signing_policies(conf: dict, etcd: dict, groups: dict[str, list[str]]) -> dict:
    """The etcd CA's x509_v2 signing policies (published to the CA host only)."""
    pki = conf["etcd"]["pki"]
    allowed = {"members": etcd["names"], "clients": etcd["pki_hosts"]}
    return {
        policy: {
            "minions": "L@" + ",".join(allowed[who]),
            "signing_private_key": etcd["ca"]["key"],
            "signing_cert": etcd["ca"]["cert"],
            "basicConstraints": "critical, CA:false",
            "keyUsage": "critical, digitalSignature, keyEncipherment",
            "extendedKeyUsage": usage,
            "subjectKeyIdentifier": "hash",
            "authorityKeyIdentifier": "keyid:always",
            "days_valid": pki["days_valid"],
        }
        for policy, (who, usage) in ETCD_POLICIES.items()
    }


def roles(conf: dict, host: str, groups: dict[str, list[str]], lb: dict, etcd: dict) -> list[str]:
    """The seed's groups `host` is in, then its derived roles, in ROLE_STATES order."""
    derived = {
        "all": True,
        "loadbalancer": host in lb["hosts"],
        "loadbalancer-clean": host in lb["clean"],
        "loadbalancer-external": host in lb["external_check"],
        "etcd-ca": host == etcd["ca_host"],
        "etcd-clean": host in etcd["others"],
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
    hosts = []
    for name in names:
        host_roles = roles(conf, name, groups, lb, etcd)
        hosts.append(
            {
                "name": name,
                "ip": ip_of[name],
                "addresses": list(entries[name].get("addresses") or []),
                "groups": [g for g in GROUPS if name in groups[g]],
                "roles": host_roles,
                "states": states(host_roles),
                "etcd_member": next((m for m in etcd["members"] if m["name"] == name), None),
                "certificates": {"etcd": _etcd_certificates(conf, name, ip_of[name], groups)},
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
        "signing_policies": {"etcd": _signing_policies(conf, etcd, groups)},
    }


def host(model: dict, name: str) -> dict:
    """`name`'s entry of ``model["hosts"]``, or ``{}``."""
    return next((h for h in model["hosts"] if h["name"] == name), {})


def for_minion(model: dict, minion_id: str, grains: dict | None = None) -> dict:
    """What the external pillar publishes to `minion_id`: ``{"ksha_model": model + me}``, and
    the etcd CA's signing policies when it is the CA host.

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
    out: dict[str, Any] = {"ksha_model": {**model, "me": me}}
    if me and "etcd-ca" in me["roles"]:
        out["x509_signing_policies"] = model["signing_policies"]["etcd"]
    return out
