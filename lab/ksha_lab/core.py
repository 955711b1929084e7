"""The ksha lab: systemd-nspawn hosts booting real systemd on a private bridge,
each with a salt-minion, and a salt-master on this machine bound to the
bridge address only. Nothing routes off the machine: the hosts get no
gateway and this machine no NAT.

State lives in one place per machine (``/var/lib/ksha-lab``, or
``$KSHA_LAB_STATE``), so ``down`` and the next ``up`` find and remove what an
earlier lab left, whichever checkout started it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ksha import importer, inventory, model
from ksha.saltconf import QUIET_SALT_LOGGERS, REPO, file_roots
from ksha_lab import base
from ksha_lab.standins import release

STATE = Path(os.environ.get("KSHA_LAB_STATE", "/var/lib/ksha-lab"))
CACHE = Path(os.environ.get("KSHA_LAB_CACHE", "/var/cache/ksha-lab"))
BRIDGE = os.environ.get("KSHA_LAB_BRIDGE", "ksha-br0")
DEFAULT_SUBNET = "10.239.0.0/24"
FIRST_HOST_OFFSET = 11  # .11, .12, ... in topology order
VIP_OFFSET = 100
CONTAINER_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
BIN = Path(sys.executable).parent

TOPOLOGIES = {
    # The seed's: 3 x (kube-master + etcd), 3 x kube-node.
    "seed": [
        ("master1", ["kube-master", "etcd"]),
        ("master2", ["kube-master", "etcd"]),
        ("master3", ["kube-master", "etcd"]),
        ("node1", ["kube-node"]),
        ("node2", ["kube-node"]),
        ("node3", ["kube-node"]),
    ],
    # Enough for LB and etcd quorum work at half the memory.
    "small": [
        ("master1", ["kube-master", "etcd"]),
        ("master2", ["kube-master", "etcd"]),
        ("master3", ["kube-master", "etcd"]),
    ],
}


LabError = base.LabError


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(cmd: list, check: bool = True, timeout: float | None = 120, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(str(c) for c in cmd)}: exit {proc.returncode}\n{proc.stderr.strip()[-2000:]}")
    return proc


def topology_from(spec: str) -> list[tuple[str, list[str]]]:
    """A named topology, or a hosts.ini in the seed's format (its names and groups; the lab assigns addresses)."""
    if spec in TOPOLOGIES:
        return TOPOLOGIES[spec]
    parsed = importer.parse_hosts_ini(importer.read_text(spec, "topology hosts.ini"), spec)
    ksha, _ = importer.to_pillar(parsed)
    groups = ksha["groups"]
    return [(name, [g for g in model.GROUPS if name in groups.get(g, [])]) for name in parsed["order"]]


@dataclass
class Host:
    name: str
    ip: str
    groups: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return STATE / "hosts" / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def veth(self) -> str:
        # systemd-nspawn names the host side of --network-bridge "vb-" + machine name.
        return ("vb-" + self.name)[:15]


class Lab:
    """The lab as recorded in STATE/lab.json."""

    def __init__(self, subnet: str, hosts: list[Host], vip: str):
        self.subnet = ipaddress.ip_network(subnet)
        self.hosts = {h.name: h for h in hosts}
        self.vip = vip

    # --- addresses, files -------------------------------------------------

    @property
    def master_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def master_dir(self) -> Path:
        return STATE / "master"

    @property
    def pillar_dir(self) -> Path:
        return STATE / "pillar"

    @classmethod
    def plan(cls, topology: str = "seed", subnet: str = DEFAULT_SUBNET) -> Lab:
        net = ipaddress.ip_network(subnet)
        if net.version != 4 or net.prefixlen > 24:
            raise LabError(f"--subnet {subnet}: use an IPv4 network of /24 or larger")
        hosts = [
            Host(name, str(net.network_address + FIRST_HOST_OFFSET + i), groups)
            for i, (name, groups) in enumerate(topology_from(topology))
        ]
        return cls(str(net), hosts, str(net.network_address + VIP_OFFSET))

    @classmethod
    def load(cls) -> Lab | None:
        path = STATE / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(data["subnet"], [Host(**h) for h in data["hosts"]], data["vip"])

    def save(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        data = {
            "subnet": str(self.subnet),
            "vip": self.vip,
            "bridge": BRIDGE,
            "master": self.master_ip,
            "hosts": [{"name": h.name, "ip": h.ip, "groups": h.groups} for h in self.hosts.values()],
        }
        (STATE / "lab.json").write_text(json.dumps(data, indent=2))

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise LabError(f"no lab host {name!r} (hosts: {', '.join(self.hosts)})")
        return self.hosts[name]

    def hosts_ini(self) -> str:
        """The lab's inventory in the seed's hosts.ini format (the demo imports it like a user would)."""
        lines = ["[all]"]
        lines += [f"{h.name}  ansible_host={h.ip}  ip={h.ip}" for h in self.hosts.values()]
        for group in model.GROUPS:
            lines += ["", f"[{group}]"] + [h.name for h in self.hosts.values() if group in h.groups]
        lines += ["", "[k8s-cluster:children]", "kube-node", "kube-master", ""]
        return "\n".join(lines)

    def common_yaml(self) -> str:
        return f"loadbalancer_apiserver:\n  address: {self.vip}\n  port: 6443\n"

    def write_pillar(self) -> None:
        seed = STATE / "seed"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "hosts.ini").write_text(self.hosts_ini())
        (seed / "common.yaml").write_text(self.common_yaml())
        ksha, roster, _ = importer.import_files(seed / "hosts.ini", seed / "common.yaml")
        self.pillar_dir.mkdir(parents=True, exist_ok=True)
        (self.pillar_dir / "top.sls").write_text((REPO / "pillar" / "top.sls.example").read_text())
        # The seed's LB is a cloud LB; the lab has none, so it runs ksha's own: keepalived + haproxy
        # on the masters holding the VIP (the one edit to what the importer wrote).
        ksha["loadbalancer"]["mode"] = "keepalived"
        # The Kubernetes release: the lab's own tarball of stand-ins, served on the bridge.
        k8s = ksha.setdefault("kubernetes", {})
        version = k8s.get("version") or inventory.load_defaults()["kubernetes"]["version"]
        tarball = release.build(self.www, version)
        k8s["archive"] = {"url": self.release_url(version), "sha256": release.sha256(tarball)}
        node_tarball = release.build(self.www, version, "node")
        k8s["node_archive"] = {"url": self.release_url(version, "node"), "sha256": release.sha256(node_tarball)}
        # Lab-only timings, so a node's change shows in seconds, not the tens of seconds of the
        # defaults: the kubelet checks its runtime every 4 s (10 s) and renews its Lease every 3 s (a
        # quarter of 12 s; 10 s of 40 s), the controller-manager marks a node silent for 12 s
        # Unknown (40 s), checking every 2 s (5 s).
        k8s["kubelet"] = {"extra_config": {"nodeStatusUpdateFrequency": "4s", "nodeLeaseDurationSeconds": 12}}
        k8s["controller_manager"] = {"extra_args": {"node-monitor-grace-period": "12s", "node-monitor-period": "2s"}}
        # No kernel module can be loaded in a lab host (systemd-nspawn gives no CAP_SYS_MODULE, and
        # the hosts have no /lib/modules): the ones a node needs are this machine's kernel's, or
        # missing (overlay loaded, br_netfilter built in; no IP_VS at all, so kube-proxy's ipvs
        # mode could not run here: the stand-in kube-proxy programs nothing). The sysctls are set
        # for real, in each host's own network namespace.
        k8s.setdefault("kube_proxy", {})["ipvs_modules"] = []
        ksha.setdefault("nodes", {})["kernel_modules"] = []
        # An etcd snapshot every minute (30 by default), so that a test sees the backup timer fire
        # within the time its other checks take rather than waiting a period of its own.
        ksha.setdefault("etcd", {}).setdefault("backup", {})["period_minutes"] = 1
        header = (
            f"# The lab's pillar, imported by ksha from {seed / 'hosts.ini'} and common.yaml,\n"
            "# with ksha:loadbalancer:mode set to keepalived (the lab has no cloud LB) and\n"
            "# ksha:kubernetes:archive and node_archive the lab's release tarballs of stand-ins\n"
            "# (ksha_lab/standins/release.py), lab-only node timings, no kernel modules to load\n"
            "# (a container cannot load them) and an etcd snapshot every minute.\n"
        )
        (self.pillar_dir / "ksha.sls").write_text(header + importer.dump_yaml({"ksha": ksha}))
        importer.write_roster(roster, STATE / "roster")

    # --- salt master ------------------------------------------------------

    def master_config(self) -> str:
        d = self.master_dir
        config = {
            "interface": self.master_ip,
            "root_dir": str(d),
            "pki_dir": str(d / "pki"),
            "cachedir": str(d / "cache"),
            "sock_dir": str(d / "sock"),
            "pidfile": str(d / "salt-master.pid"),
            "log_file": str(d / "master.log"),
            "key_logfile": str(d / "key.log"),
            "log_level_logfile": "info",
            # Salt's own "unclosed MasterEvent/Runner/MasterMinion" warnings (ksha.saltconf)
            "log_granular_levels": QUIET_SALT_LOGGERS,
            "user": "root",
            # x509 remote signing holds a worker while the CA host signs (peer publish): with every
            # etcd member and master asking at once, 4 workers starve the CA's own return.
            "worker_threads": 12,
            "auto_accept": False,
            "timeout": 10,
            # The CLI waits this long for absent minions after `timeout`; a local bridge needs little.
            "gather_job_timeout": 5,
            "file_roots": file_roots(REPO),
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            # the cluster model (ksha/model.py) for every minion, and the etcd CA's signing policies
            "ext_pillar": [{"ksha_model": {}}],
            # certificates: any minion may ask a CA host to sign (x509_v2 remote signing, within the
            # signing policies' `minions`, each one minion ID that the CA host matches itself)
            "peer": {".*": ["x509.sign_remote_certificate"]},
        }
        return json.dumps(config, indent=2)  # JSON is YAML

    def salt_cmd(self, tool: str, *args: str) -> list[str]:
        return [str(BIN / tool), "-c", str(self.master_dir), *args]

    @property
    def www(self) -> Path:
        return STATE / "www"

    def release_url(self, version: str, kind: str = "server") -> str:
        tarball = release.TARBALL if kind == "server" else release.NODE_TARBALL
        return f"http://{self.master_ip}:{release.PORT}/{version}/{tarball}"

    def serve_release(self) -> None:
        """The release tarball over HTTP on the bridge (see release.serve), answering before this returns."""
        log = STATE / "release-server.log"
        proc = release.serve(self.www, self.master_ip, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://{self.master_ip}:{release.PORT}/", timeout=2):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            time.sleep(0.5)  # a second server on the port would have failed to bind by now
            if proc.poll() is None:  # this server answered, not another one holding the port
                return
        why = log.read_text(errors="replace").strip()[-500:] if proc.poll() is not None else "no answer in 30 s"
        proc.kill()
        raise LabError(f"the release server on {self.master_ip}:{release.PORT} did not start: {why}")

    def start_master(self) -> None:
        d = self.master_dir
        (d / "pki" / "minions").mkdir(parents=True, exist_ok=True)
        (d / "master").write_text(self.master_config())
        run(self.salt_cmd("salt-master", "-d"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # The master's event publisher exists once it serves (salt-key -L would answer without a master).
            if any((d / "sock").glob("master_event_pub*")):
                return
            time.sleep(0.5)
        raise LabError(f"salt-master did not come up in 60 s; see {d / 'master.log'}")

    def preseed_minion_key(self, host: Host) -> None:
        """Make the minion's key pair and accept it on the master before the host boots."""
        import salt.crypt  # the lab runs in the project's venv, which has Salt

        keydir = host.root / "etc/salt/pki/minion"
        keydir.mkdir(parents=True, exist_ok=True)
        salt.crypt.write_keys(str(keydir), "minion", 2048)
        os.chmod(keydir / "minion.pem", 0o400)
        shutil.copy(keydir / "minion.pub", self.master_dir / "pki" / "minions" / host.name)

    # --- network ----------------------------------------------------------

    def create_bridge(self) -> None:
        prefix = self.subnet.prefixlen
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.master_ip}/{prefix}", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])

    # --- hosts ------------------------------------------------------------

    def prepare_host(self, host: Host, base_root: Path) -> None:
        for sub in ("upper", "work", "root"):
            (host.dir / sub).mkdir(parents=True, exist_ok=True)
        run(
            [
                "mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={base_root},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
                host.root,
            ]
        )  # fmt: skip
        root = host.root
        (root / "etc/hostname").write_text(host.name + "\n")
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        peers = "\n".join(f"{h.ip} {h.name}" for h in self.hosts.values())
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{self.master_ip} salt\n{peers}\n"
        )
        network = root / "etc/systemd/network/10-host0.network"
        network.parent.mkdir(parents=True, exist_ok=True)
        network.write_text(
            "[Match]\nName=host0\n\n[Network]\n"
            f"Address={host.ip}/{self.subnet.prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
        (root / "etc/salt/minion.d/lab.conf").write_text(f"id: {host.name}\nmaster: {self.master_ip}\n")
        self.preseed_minion_key(host)

    def boot(self, host: Host) -> int:
        if self.init_pid(host):
            return self.init_pid(host)
        self._veth_gone(host)
        log = open(host.dir / "console.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "-q",
                "-D", str(host.root), f"--machine={host.name}", f"--hostname={host.name}",
                f"--network-bridge={BRIDGE}", "--console=read-only",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        (host.dir / "nspawn.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid = self.init_pid(host)
            if pid:
                return pid
            if proc.poll() is not None:
                # its last words: the lab's state (console.log with it) is gone once the lab is down
                said = (host.dir / "console.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise LabError(
                    f"{host.name}: systemd-nspawn exited {proc.returncode}; {host.dir / 'console.log'} ends: "
                    + " | ".join(said)
                )
            time.sleep(0.1)
        raise LabError(f"{host.name}: container init did not start in 30 s")

    @staticmethod
    def nspawn_pid(host: Host) -> int | None:
        try:
            pid = int((host.dir / "nspawn.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"systemd-nspawn" in cmdline and str(host.root).encode() in cmdline else None

    def init_pid(self, host: Host) -> int | None:
        """PID (on this machine) of the container's systemd: the nspawn process's child."""
        pid = self.nspawn_pid(host)
        if not pid:
            return None
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            kids = children.read_text().split()
            if kids:
                return int(kids[0])
        return None

    def exec_argv(self, host: Host, *cmd: str) -> list[str]:
        """The command line that runs `cmd` inside the host, with the host's environment, not ours."""
        pid = self.init_pid(host)
        if not pid:
            raise LabError(f"{host.name} is not running (ksha-lab start {host.name})")
        return ["nsenter", "-t", str(pid), "-a", "env", "-i", CONTAINER_PATH, *cmd]

    def exec(self, host: Host, *cmd: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        return run(self.exec_argv(host, *cmd), check=check, timeout=timeout)

    def system_state(self, host: Host, wait: bool = False) -> str:
        if not self.init_pid(host):
            return "off"
        args = ["systemctl", "is-system-running"] + (["--wait"] if wait else [])
        try:
            state = self.exec(host, *args, timeout=90).stdout.strip() or "unknown"
        except subprocess.TimeoutExpired:
            return "starting"
        if state == "degraded":
            state += f" (failed: {', '.join(self.failed_units(host))})"
        return state

    def failed_units(self, host: Host) -> list[str]:
        failed = self.exec(host, "systemctl", "--failed", "--no-legend", "--plain").stdout.split("\n")
        return [line.split()[0] for line in failed if line.strip()]

    def unit_log(self, host: Host, unit: str, lines: int = 6) -> str:
        return self.exec(host, "journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat", "-n", str(lines)).stdout

    def stop(self, host: Host, timeout: float = 30) -> None:
        """Clean poweroff: SIGTERM to systemd-nspawn makes the container shut down."""
        pid = self.nspawn_pid(host)
        if not pid:
            return
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            self.kill(host)

    def kill(self, host: Host, wait: bool = True) -> int | None:
        """Abrupt: SIGKILL to the container's init takes every process in it down at once.
        Returns the nspawn process's pid; ``wait=False`` does not wait for it to go."""
        pid, init = self.nspawn_pid(host), self.init_pid(host)
        for target in (init, pid):
            if target:
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if pid and wait:
            _wait_gone(pid, 10)
        return pid

    @staticmethod
    def _veth_gone(host: Host, timeout: float = 10.0) -> None:
        """The host end of the veth of a killed container of this name gone (the kernel removes it
        once the container's network namespace is, a moment after its processes: ``kill`` returns
        before that), deleted if it outlives `timeout`: systemd-nspawn cannot start a container
        while it is there ("Failed to add new veth interfaces ...: File exists", exit 1)."""
        link = Path(f"/sys/class/net/{host.veth}")
        deadline = time.monotonic() + timeout
        while link.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if link.exists():
            run(["ip", "link", "delete", host.veth], check=False)

    def wipe(self, host: Host) -> None:
        """A replaced machine: the host is killed and comes back empty (the base only) under the same
        name and address, with a new minion key the master accepts."""
        self.kill(host)
        if run(["umount", str(host.root)], check=False).returncode != 0:
            run(["umount", "-l", str(host.root)], check=False)
        for sub in ("upper", "work"):
            shutil.rmtree(host.dir / sub, ignore_errors=True)
        self.prepare_host(host, base.ensure_base(CACHE, lambda message: None, os.environ.get("KSHA_LAB_MIRROR")))
        self.boot(host)

    def partition(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "down"])

    def heal(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "up"])

    # --- salt -------------------------------------------------------------

    def salt_json(self, *args: str, timeout: float = 300) -> dict:
        proc = run(self.salt_cmd("salt", "--out=json", "--static", *args), check=False, timeout=timeout)
        try:
            return json.loads(proc.stdout or "{}")
        except json.JSONDecodeError:
            return {}

    def salt_run_json(self, *args: str, timeout: float = 600) -> tuple[int, object]:
        """salt-run against the lab master with JSON output: (exit code, parsed output or None)."""
        proc = run(self.salt_cmd("salt-run", "--out=json", *args), check=False, timeout=timeout)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError:
            return proc.returncode, None

    def ping(self, names: list[str], timeout: int = 5) -> dict[str, bool]:
        out = self.salt_json("-L", ",".join(names), "test.ping", f"--timeout={timeout}")
        return {name: out.get(name) is True for name in names}

    def minion_ready(self, host: Host) -> bool:
        """The minion logged that it is connected and ready (read from the host's overlay)."""
        try:
            return b"Minion is ready to receive requests" in (host.root / "var/log/salt/minion").read_bytes()
        except OSError:
            return False

    def wait_minions(self, names: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        # Cheap local signal first: a ping round with absent minions costs timeout + gather_job_timeout.
        while time.monotonic() < deadline and not all(self.minion_ready(self.hosts[n]) for n in names):
            time.sleep(0.2)
        answered: dict[str, bool] = {}
        while time.monotonic() < deadline:
            answered = self.ping(names, timeout=3)
            if all(answered.values()):
                return
            time.sleep(1)
        missing = [n for n, ok in answered.items() if not ok]
        raise LabError(f"minions did not answer within {timeout:.0f} s: {', '.join(missing)}")


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited and only waits for its parent to reap it (a process the lab
    started in another process, the test session's, is reaped only when that one does)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Reap it if it is our child; another process's exited child is gone for us.
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            if _zombie(pid):
                return True
        time.sleep(0.1)
    return False


# --- whole-lab operations ----------------------------------------------------


def ensure_base(log: Callable[[str], None] = _say) -> Path:
    """The hosts' base tree, built first when it is not cached (``base.ensure_base``)."""
    base.require_checkout()
    return base.ensure_base(CACHE, log, os.environ.get("KSHA_LAB_MIRROR"))


# how many times a unit that failed at boot is started again (see up)
BOOT_UNIT_RETRIES = 3


def up(topology: str = "seed", subnet: str = DEFAULT_SUBNET, log: Callable[[str], None] = _say) -> Lab:
    """Bring a fresh lab up (cleaning whatever an earlier one left) and wait until it is ready."""
    base.require_checkout()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    down(log=lambda m: None)
    lab = Lab.plan(topology, subnet)
    base_root = ensure_base(log)
    timings["base"] = time.monotonic() - t0
    STATE.mkdir(parents=True, exist_ok=True)
    lab.save()
    lab.write_pillar()
    lab.create_bridge()
    lab.serve_release()
    lab.start_master()
    for host in lab.hosts.values():
        lab.prepare_host(host, base_root)
    t_boot = time.monotonic()
    for host in lab.hosts.values():
        lab.boot(host)
    log(f"lab: {len(lab.hosts)} hosts booting on {BRIDGE} ({lab.subnet}); master {lab.master_ip}")
    lab.wait_minions(list(lab.hosts))
    timings["minions"] = time.monotonic() - t_boot
    problems = []
    retried = []
    for host in lab.hosts.values():
        state = lab.system_state(host, wait=True)
        if state.startswith("degraded"):
            # Seen now and then (3 of ~8 boots on 2026-12-07, not reproduced on demand): one
            # early-boot oneshot of systemd's own (tmpfiles-setup, sysctl, remount-fs) failing,
            # status 219/CGROUP: its cgroup could not be made while the six hosts boot at once on
            # this cgroup v1 host. Show why, then start it again (its failed state reset first), up
            # to three times a second apart: a transient cgroup error passes, anything else stays.
            for unit in lab.failed_units(host):
                log(
                    f"lab: {host.name}: {unit} failed at boot:\n  "
                    + lab.unit_log(host, unit).strip().replace("\n", "\n  ")
                )
                for _ in range(BOOT_UNIT_RETRIES):
                    lab.exec(host, "systemctl", "reset-failed", unit)
                    if lab.exec(host, "systemctl", "restart", unit).returncode == 0:
                        break
                    time.sleep(1)
                retried.append(f"{host.name}:{unit}")
            state = lab.system_state(host)
            log(f"lab: {host.name} after starting its failed units again: {state}")
        if not state.startswith(("running", "degraded")):
            problems.append(f"{host.name}: {state}")
    timings["boot_unit_retries"] = retried
    if problems:
        raise LabError("hosts not up: " + "; ".join(problems))
    timings["total"] = time.monotonic() - t0
    (STATE / "timings.json").write_text(json.dumps(timings))
    log(
        f"lab: up in {timings['total']:.1f} s (base {timings['base']:.1f} s, "
        f"boot to all minions answering {timings['minions']:.1f} s)"
    )
    return lab


def leftovers() -> dict[str, list]:
    """What a lab (this one or an earlier one) left on this machine."""
    procs = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(cmdline)
        # the hosts, the master, the release server, the QingCloud emulator's haproxy (qingcloud_lab)
        lab_made = (b"systemd-nspawn", b"salt-master", b"http.server", b"haproxy")
        if str(STATE).encode() in text and any(p in text for p in lab_made):
            procs.append(int(proc.name))
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(STATE) + "/")
    ]
    bridges = [BRIDGE] if Path(f"/sys/class/net/{BRIDGE}").exists() else []
    # the host ends of the lab hosts' veths (Host.veth): the kernel removes one when its
    # container's network namespace is gone, a moment after the container's processes, and a new
    # lab's host of that name cannot start while it is there ("Failed to add new veth interfaces
    # ...: File exists"). The hosts of the lab that is up, else of every topology the lab knows.
    lab = Lab.load()
    names = lab.hosts if lab else {n for hosts in TOPOLOGIES.values() for n, _ in hosts}
    links = sorted(v for v in {Host(n, "", []).veth for n in names} if Path(f"/sys/class/net/{v}").exists())
    return {"processes": procs, "mounts": mounts, "bridges": bridges, "links": links}


# How long `down` lets the hosts (then the lab's salt-master) stop cleanly before it kills them:
# the lab is thrown away (its overlays are deleted), so a clean stop buys nothing but its time.
DOWN_GRACE_S = 3.0


def down(log: Callable[[str], None] = _say) -> dict[str, float]:
    """Stop everything the lab started, unmount, delete the bridge and the lab state. Safe to run twice."""
    t0 = time.monotonic()
    lab = Lab.load()
    if lab:
        for host in lab.hosts.values():
            if lab.nspawn_pid(host):
                os.kill(lab.nspawn_pid(host), signal.SIGTERM)
        deadline = time.monotonic() + DOWN_GRACE_S
        killed = []
        for host in lab.hosts.values():
            pid = lab.nspawn_pid(host)
            if pid and not _wait_gone(pid, max(deadline - time.monotonic(), 0.1)):
                killed.append(lab.kill(host, wait=False))  # all at once, then wait for them
        for pid in killed:
            if pid:
                _wait_gone(pid, 10)
    hosts_s = time.monotonic() - t0
    left = leftovers()
    for pid in left["processes"]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + DOWN_GRACE_S
    for pid in left["processes"]:
        if not _wait_gone(pid, max(deadline - time.monotonic(), 0.1)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, 5)
    for mount in sorted(leftovers()["mounts"], key=len, reverse=True):
        if run(["umount", mount], check=False).returncode != 0:
            run(["umount", "-l", mount], check=False)
    for bridge in leftovers()["bridges"]:
        run(["ip", "link", "delete", bridge, "type", "bridge"], check=False)
    deadline = time.monotonic() + DOWN_GRACE_S
    while leftovers()["links"] and time.monotonic() < deadline:
        time.sleep(0.1)
    for link in leftovers()["links"]:
        run(["ip", "link", "delete", link], check=False)
    left = leftovers()
    if any(left.values()):
        raise LabError(f"lab down: still left after cleanup: {left}")
    if STATE.exists():
        shutil.rmtree(STATE)
    took = time.monotonic() - t0
    log(f"lab: down in {took:.1f} s (hosts {hosts_s:.1f} s); no process, mount or bridge left")
    return {"down_s": took}
