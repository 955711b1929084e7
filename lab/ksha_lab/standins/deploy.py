"""Put the kube-apiserver STAND-IN on the lab's masters (tests, benchmarks and `make demo`).

There is no control plane in ksha yet, and the real kube-apiserver cannot be downloaded
here. This starts ksha_lab/standins/kube_apiserver.py on each master's node address:6443,
with a certificate from a throw-away test CA that names the LB domain, the VIP and the
node. Everything it writes is under /etc/ksha-standin and /usr/local/lib/ksha-standin
inside the lab hosts, and its units are named kube-apiserver-standin-*.
"""

import time
from pathlib import Path

from ksha_lab.standins import pki

STANDIN = Path(__file__).resolve().parent / "kube_apiserver.py"
DOMAIN = "lb.kubesphere.local"
CA_FILE = "/etc/ksha-standin/ca.crt"


def stop(lab, host):
    lab.exec(host, "systemctl", "stop", "kube-apiserver-standin-*", check=True)


def kill(lab, host):
    """SIGKILL the stand-in (an apiserver crash); its transient unit is collected."""
    lab.exec(host, "systemctl", "kill", "--signal=SIGKILL", "kube-apiserver-standin-*", check=True)


def start(lab, host):
    stop(lab, host)
    # A fresh unit name each time: a stopped transient unit keeps its name loaded.
    cmd = [
        "systemd-run", f"--unit=kube-apiserver-standin-{time.monotonic_ns()}", "--collect", "--service-type=notify",
        "--property=NotifyAccess=all", "/usr/bin/python3", "/usr/local/lib/ksha-standin/kube_apiserver.py",
        f"--bind-address={host.ip}", "--secure-port=6443",
        "--tls-cert-file=/etc/ksha-standin/apiserver.crt", "--tls-private-key-file=/etc/ksha-standin/apiserver.key",
        f"--expect-san={DOMAIN}", f"--expect-san={lab.vip}", f"--expect-san={host.ip}",
    ]  # fmt: skip
    run = lab.exec(host, *cmd)
    if run.returncode != 0:
        raise RuntimeError(f"stand-in on {host.name} did not start: {run.stderr}")


def deploy(lab, masters) -> bytes:
    """A fresh test CA on every lab host, a stand-in on each of `masters`; returns the CA (PEM)."""
    ca_key, ca_cert = pki.make_ca()
    ca_pem = pki.ca_pem(ca_cert)
    for host in lab.hosts.values():
        (host.root / "etc/ksha-standin").mkdir(parents=True, exist_ok=True)
        (host.root / CA_FILE.lstrip("/")).write_bytes(ca_pem)
    for host in masters:
        key, cert = pki.make_server_cert(ca_key, ca_cert, host.name, [DOMAIN, lab.vip, host.ip, host.name])
        (host.root / "etc/ksha-standin/apiserver.key").write_bytes(key)
        (host.root / "etc/ksha-standin/apiserver.crt").write_bytes(cert)
        (host.root / "usr/local/lib/ksha-standin").mkdir(parents=True, exist_ok=True)
        (host.root / "usr/local/lib/ksha-standin/kube_apiserver.py").write_bytes(STANDIN.read_bytes())
        start(lab, host)
    return ca_pem
