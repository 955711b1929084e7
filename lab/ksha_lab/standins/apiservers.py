"""The lab's apiservers, for the LB tests, the control-plane tests, ``bench/failover.py`` and
``make demo``: the kube-apiserver STAND-IN (ksha_lab/standins/kube_component.py) that ksha
installs from the lab's release tarball (``ksha.kubernetes.install`` links it as
/usr/local/bin/kube-apiserver) and runs with its own unit, ``kube-apiserver``, and the model's
flags (``ksha.kubernetes.service``). Here: stop, kill and start that unit as a test's fault, and
copy the cluster CA to /etc/ksha-standin/ca.crt on every lab host, for the clients on hosts that
have no cluster CA yet (the workers, until phase 6); nothing else is written.
"""

DOMAIN = "lb.kubesphere.local"
UNIT = "kube-apiserver"
# the cluster CA every master trusts (ksha.kubernetes.pki): clients verify the apiservers with it
CA_FILE = "/etc/kubernetes/pki/ca.crt"
# its copy for the clients in the tests, on every lab host
CLIENT_CA_FILE = "/etc/ksha-standin/ca.crt"


def stop(lab, host):
    lab.exec(host, "systemctl", "stop", UNIT, check=True)


def kill(lab, host):
    """SIGKILL the apiserver (a crash): its unit starts it again after RestartSec, as systemd
    would the real one."""
    lab.exec(host, "systemctl", "kill", "--signal=SIGKILL", UNIT, check=True)


def start(lab, host):
    run = lab.exec(host, "systemctl", "start", UNIT)
    if run.returncode != 0:
        status = lab.exec(host, "systemctl", "status", "--no-pager", "-n", "10", UNIT).stdout
        raise RuntimeError(f"{UNIT} on {host.name} did not start: {run.stderr}\n{status}")


def share_ca(lab, masters) -> bytes:
    """Check ksha's apiserver unit is active on each of `masters` (orch.ksha converged the control
    plane) and copy the cluster CA to every lab host; returns the CA (PEM) that verifies them."""
    for host in masters:
        if lab.exec(host, "systemctl", "is-active", "--quiet", UNIT).returncode != 0:
            raise RuntimeError(f"{host.name}: {UNIT} is not active: run orch.ksha up to the control plane first")
    ca = (masters[0].root / CA_FILE.lstrip("/")).read_bytes()
    for host in lab.hosts.values():
        (host.root / CLIENT_CA_FILE.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (host.root / CLIENT_CA_FILE.lstrip("/")).write_bytes(ca)
    return ca
