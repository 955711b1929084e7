"""Run the kube-apiserver STAND-IN on the lab's masters (tests, benchmarks and `make demo`), until
ksha's own kube-apiserver unit exists.

The stand-in is the one ksha installs from the lab's release tarball (``ksha.kubernetes.install``
links it as /usr/local/bin/kube-apiserver; ksha_lab/standins/kube_component.py), started with
exactly the flags the cluster model gives that master (``ksha.host`` on it: the formula's
certificates, its etcd client certificate, its node address and port), so the LB's backends serve the formula's apiserver certificate and
are ready only while etcd is. It needs the cluster converged up to the control plane's PKI first.
Its units are transient systemd units named kube-apiserver-standin-*. For the clients on hosts
that have no cluster CA yet (the workers, until phase 6), the CA is copied to
/etc/ksha-standin/ca.crt on every lab host; nothing else is written.
"""

import time

DOMAIN = "lb.kubesphere.local"
BINARY = "/usr/local/bin/kube-apiserver"
# the cluster CA every master trusts (ksha.kubernetes.pki): clients verify the apiservers with it
CA_FILE = "/etc/kubernetes/pki/ca.crt"
# its copy for the clients in the tests, on every lab host
CLIENT_CA_FILE = "/etc/ksha-standin/ca.crt"


def stop(lab, host):
    lab.exec(host, "systemctl", "stop", "kube-apiserver-standin-*", check=True)


def kill(lab, host):
    """SIGKILL the stand-in (an apiserver crash); its transient unit is collected."""
    lab.exec(host, "systemctl", "kill", "--signal=SIGKILL", "kube-apiserver-standin-*", check=True)


def flags(lab, host, wait_s=90) -> list[str]:
    """The kube-apiserver flags the model gives `host` (``ksha.host`` there: its pillar's model),
    waiting up to `wait_s` for its minion to answer (a host just booted again)."""
    deadline = time.monotonic() + wait_s
    while not isinstance(entry := lab.salt_json(host.name, "ksha.host").get(host.name), dict):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    given = entry.get("flags", {}).get("kube-apiserver") if isinstance(entry, dict) else None
    if not given:
        raise RuntimeError(f"{host.name}: the model gives it no kube-apiserver flags (is it a master?): {entry!r}")
    return [f"--{name}={value}" for name, value in sorted(given.items())]


def start(lab, host):
    stop(lab, host)
    # A fresh unit name each time: a stopped transient unit keeps its name loaded.
    cmd = [
        "systemd-run", f"--unit=kube-apiserver-standin-{time.monotonic_ns()}", "--collect",
        "--service-type=notify", BINARY, *flags(lab, host),
    ]  # fmt: skip
    run = lab.exec(host, *cmd)
    if run.returncode != 0:
        raise RuntimeError(f"stand-in on {host.name} did not start: {run.stderr}")


def deploy(lab, masters) -> bytes:
    """The stand-in on each of `masters` (converged up to the control plane's PKI); returns the
    cluster CA (PEM) that verifies them."""
    for host in masters:
        if lab.exec(host, "test", "-x", BINARY).returncode != 0:
            raise RuntimeError(f"{host.name}: no {BINARY}: run orch.ksha up to the control plane first")
    ca = (masters[0].root / CA_FILE.lstrip("/")).read_bytes()
    for host in lab.hosts.values():
        (host.root / CLIENT_CA_FILE.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (host.root / CLIENT_CA_FILE.lstrip("/")).write_bytes(ca)
    for host in masters:
        start(lab, host)
    return ca
