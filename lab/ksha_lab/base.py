"""The lab's base tree: Debian bookworm with systemd, the distro's haproxy,
keepalived and etcd, and salt-minion in a venv, built once by debootstrap and
cached under a key of its inputs. Hosts are overlays on it; it is never
changed while mounted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ksha.saltconf import REPO

SUITE = "bookworm"
SALT_VERSION = "3008.4"
# Bump when the build steps below change: it is part of the cache key.
BUILD_REVISION = 3
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "curl",
    "openssh-server",
    "python3",
    "python3-venv",
    "haproxy",
    "keepalived",
    "etcd-server",
    "etcd-client",
    # the Kubernetes stand-ins (ksha_lab/standins) read kubeconfigs and the scheduler's
    # configuration file with it; the real binaries need nothing of the host
    "python3-yaml",
    # ksha.common's base packages (salt/ksha/osfamilymap.yaml): the lab has no
    # network to the package mirror, so everything the formula installs is here.
    "conntrack",
    "socat",
    "ipset",
    # ksha.containerd's packages (phase 6, nodes): the container runtime, its OCI
    # runtime and the CNI plugin binaries, as the formula names them for Debian;
    # ipvsadm for kube-proxy's ipvs mode (the seed's kube_proxy_mode)
    "containerd",
    "runc",
    "containernetworking-plugins",
    "ipvsadm",
)
# Units the distro enables on install; the formula decides whether they run.
DISABLED_UNITS = ("etcd.service", "haproxy.service", "keepalived.service", "containerd.service")
# Units with no job in a container: the network generator reads ip= from the
# kernel command line (the lab's addresses are networkd files) and failed now
# and then at boot, leaving a host "degraded".
MASKED_UNITS = ("systemd-network-generator.service",)
CONSTRAINTS = REPO / "requirements" / "constraints.txt"

SALT_MINION_UNIT = """\
[Unit]
Description=Salt minion (ksha lab, venv /opt/salt)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=all
ExecStart=/opt/salt/bin/salt-minion
KillMode=process
TimeoutStopSec=5
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""
SSH_KEYGEN_DROPIN = """\
# Host keys are made per host at first boot, not shared through the base tree;
# before Debian's own `sshd -t` check, which needs them.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
MINION_BASE_CONF = """\
# ksha lab: fast reconnects; per-host settings are in lab.conf.
acceptance_wait_time: 1
acceptance_wait_time_max: 5
random_reauth_delay: 0
recon_default: 500
recon_max: 3000
auth_timeout: 10
log_level: warning
log_level_logfile: info
# Salt's loader looks for a name it does not find (e.g. `x509.mod_run_check`, asked for every state
# with an `unless` or `onlyif`) in every module file, running each one's __virtual__: 0.7 s of
# CPU in every job that applies such a state. Strict matching looks in the files whose name holds
# the module's (docs/ARCHITECTURE.md, "Minion settings"; ksha's modules are all so named).
lazy_loader_strict_matching: true
"""


class LabError(RuntimeError):
    """A lab operation failed; the message says what and where to look."""


def require_checkout() -> None:
    """The lab runs from ksha's checkout: the master serves its salt/ and the hosts get Salt pinned
    by its requirements/. It is found as the ksha package's parent (``ksha.saltconf.REPO``), so ksha
    must be installed editable from the checkout (``make venv``: pip install -e . -e ./lab)."""
    missing = [str(p) for p in (REPO / "salt" / "top.sls", CONSTRAINTS) if not p.is_file()]
    if missing:
        raise LabError(f"ksha is not installed from a checkout ({', '.join(missing)} missing): run make venv")


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the lab adds none of its own)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                candidates.append(next(p for p in parts[1:] if not p.startswith("[")))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise LabError("no Debian mirror found in /etc/apt/sources.list(.d); set KSHA_LAB_MIRROR")


def cache_key() -> str:
    inputs = {
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "disabled": sorted(DISABLED_UNITS),
        "masked": sorted(MASKED_UNITS),
        "salt": SALT_VERSION,
        "revision": BUILD_REVISION,
        "units": [SALT_MINION_UNIT, SSH_KEYGEN_DROPIN, MINION_BASE_CONF],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def _run(cmd: list, log: Callable[[str], None], **kwargs) -> None:
    log("  $ " + " ".join(str(c) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise LabError(f"{cmd[0]} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _in_root(root: Path, *cmd: str) -> list:
    """A command run inside `root` with systemd-nspawn (proper /proc, /dev, /sys)."""
    return ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", root, "--pipe", *cmd]


def wheelhouse(cache: Path, log: Callable[[str], None]) -> Path:
    """Salt's wheels, built on this machine (timelib needs a compiler) once."""
    target = cache / f"wheels-salt-{SALT_VERSION}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", f"salt=={SALT_VERSION}", "-c", CONSTRAINTS, "-w", target], log)
    (target / ".complete").touch()
    return target


def ensure_base(cache: Path, log: Callable[[str], None], mirror: str | None = None) -> Path:
    """Return the root of the cached base tree, building it first when needed."""
    final = cache / f"base-{cache_key()}"
    if (final / ".complete").exists():
        log(f"base tree: cached {final}")
        return final / "root"
    log(f"base tree: building {final} (debootstrap {SUITE}, salt {SALT_VERSION}); takes a few minutes once")
    wheels = wheelhouse(cache, log)
    work = cache / f".building-{cache_key()}"
    root = work / "root"
    if not (work / ".debootstrapped").exists():  # a failed later step does not redo this minute
        shutil.rmtree(work, ignore_errors=True)
        root.mkdir(parents=True)
        _run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, root,
             mirror or debian_mirror()],
            log,
        )  # fmt: skip
        (work / ".debootstrapped").touch()
    # /tmp is a fresh tmpfs inside systemd-nspawn: the wheels go to /var/tmp.
    shutil.rmtree(root / "var/tmp/wheels", ignore_errors=True)
    shutil.copytree(wheels, root / "var/tmp/wheels")
    _run(_in_root(root, "/usr/bin/python3", "-m", "venv", "/opt/salt"), log)
    _run(
        _in_root(
            root,
            "/opt/salt/bin/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            "/var/tmp/wheels",
            f"salt=={SALT_VERSION}",
        ),
        log,
    )
    shutil.rmtree(root / "var/tmp/wheels")
    _configure(root, log)
    (work / ".complete").touch()
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    for stale in cache.glob("base-*"):
        if stale != final:
            log(f"base tree: removing stale {stale}")
            shutil.rmtree(stale, ignore_errors=True)
    return final / "root"


def _configure(root: Path, log: Callable[[str], None]) -> None:
    # Per-host identity is written into each overlay, never shared.
    for path in ("etc/hostname", "etc/machine-id", "var/lib/dbus/machine-id", "etc/resolv.conf"):
        (root / path).unlink(missing_ok=True)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "ksha-lab-hostkeys.conf").write_text(SSH_KEYGEN_DROPIN)
    (root / "etc/systemd/system/salt-minion.service").write_text(SALT_MINION_UNIT)
    (root / "etc/salt/minion.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/salt/minion.d/00-ksha-lab.conf").write_text(MINION_BASE_CONF)
    _run(_in_root(root, "systemctl", "disable", *DISABLED_UNITS), log)
    _run(_in_root(root, "systemctl", "mask", *MASKED_UNITS), log)
    _run(
        _in_root(
            root,
            "systemctl",
            "enable",
            "salt-minion.service",
            "systemd-networkd.service",
            "systemd-networkd-wait-online.service",
        ),
        log,
    )
