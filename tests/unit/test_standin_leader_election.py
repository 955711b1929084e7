"""The lab's kube-controller-manager and kube-scheduler stand-ins run client-go's leader election
on kube-system Leases through their kubeconfigs, against the kube-apiserver stand-in and a real
etcd: one holds the Lease, a standby takes it over once the holder is gone, a holder that cannot
renew exits, and what client-go or the real component refuses at start is refused. The Leases are
read with the real kubectl."""

import json
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import load_salt_module
from tests.unit.test_standin_kubectl import kubeconfig

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="needs kubectl (make apt)")

# short durations for the test: client-go's rule duration > deadline > 1.2 x retry holds
DURATION, DEADLINE, RETRY = 3.0, 2.0, 0.5
ELECTION = [f"--leader-elect-lease-duration={DURATION}s", f"--leader-elect-renew-deadline={DEADLINE}s",
            f"--leader-elect-retry-period={int(RETRY * 1000)}ms"]  # fmt: skip


@pytest.fixture
def cluster(standin_apiserver, tmp_path):
    """(start(component, *args) -> Popen, holder(lease) -> (holderIdentity, transitions), etcd)."""
    port, files, etcd = standin_apiserver
    procs = []
    admin = kubeconfig(files, port, "client", tmp_path / "admin.conf")

    def start(component, *args):
        proc = subprocess.Popen(
            [str(files / f"kubernetes/server/bin/{component}"), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        return proc

    def holder(lease):
        out = subprocess.run(
            ["kubectl", "--kubeconfig", str(admin), "--request-timeout=5s", "get", "lease", lease, "-n",
             "kube-system", "-o", "json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if out.returncode:
            return None, None
        spec = json.loads(out.stdout)["spec"]
        return spec.get("holderIdentity"), spec.get("leaseTransitions")

    try:
        yield start, holder, (port, files, etcd, tmp_path)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    return None


def controller_manager_args(files, conf):
    return [f"--kubeconfig={conf}", "--leader-elect=true", *ELECTION, f"--root-ca-file={files / 'ca.crt'}"]


def test_a_standby_controller_manager_takes_the_lease_when_the_holder_is_killed(cluster):
    start, holder, (port, files, _, tmp) = cluster
    conf = kubeconfig(files, port, "controller-manager", tmp / "controller-manager.conf")
    first = start("kube-controller-manager", *controller_manager_args(files, conf))
    held = until(lambda: holder("kube-controller-manager")[0], 15)
    assert held, first.stderr.read() if first.poll() is not None else "no holder"
    second = start("kube-controller-manager", *controller_manager_args(files, conf))
    time.sleep(2 * DURATION)  # the standby only watches: the holder renews
    assert holder("kube-controller-manager") == (held, 0)
    assert second.poll() is None
    first.kill()
    killed = time.monotonic()
    taken = until(lambda: (holder("kube-controller-manager")[0] or held) != held, 3 * DURATION)
    took = time.monotonic() - killed
    assert taken, "the standby never took the lease"
    new, transitions = holder("kube-controller-manager")
    assert transitions == 1 and new.split("_")[0] == held.split("_")[0]  # <hostname>_<uuid>, as client-go's
    # client-go: the standby takes it once it has seen the same renewTime for a lease duration,
    # polling every retry period plus up to 1.2 x of jitter: at most duration + 2 x 2.2 retry
    # periods after the holder's last renewal (the stand-in's algorithm; slack for a busy machine)
    assert took <= DURATION + 2 * 2.2 * RETRY + 2, took


def test_a_holder_that_cannot_renew_within_the_deadline_exits(cluster):
    start, holder, (port, files, etcd, tmp) = cluster
    conf = kubeconfig(files, port, "controller-manager", tmp / "controller-manager.conf")
    proc = start("kube-controller-manager", *controller_manager_args(files, conf))
    assert until(lambda: holder("kube-controller-manager")[0], 15)
    etcd.kill()  # the apiserver cannot read or write the Lease any more
    assert proc.wait(timeout=DEADLINE + 10 * RETRY + 10) == 1
    err = proc.stderr.read()
    assert "failed to renew lease kube-system/kube-controller-manager" in err and "leaderelection lost" in err, err


def test_the_scheduler_elects_with_its_configuration_file(cluster):
    start, holder, (port, files, _, tmp) = cluster
    conf = kubeconfig(files, port, "controller-manager", tmp / "scheduler.conf")  # a control-plane identity
    config = tmp / "kube-scheduler.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": str(conf)},
                "leaderElection": {"leaderElect": True, "leaseDuration": "3s", "renewDeadline": "2s",
                                   "retryPeriod": "500ms", "resourceNamespace": "kube-system",
                                   "resourceName": "kube-scheduler"},
            }
        )
    )  # fmt: skip
    proc = start("kube-scheduler", f"--config={config}", "--bind-address=127.0.0.1")
    assert until(lambda: holder("kube-scheduler")[0], 15), proc.stderr.read() if proc.poll() is not None else ""
    assert holder("kube-controller-manager") == (None, None)  # its own Lease only
    # ksha.status reads the Leases from the real kubectl's output (ksha.parse_leases)
    asked = time.time()
    listed = subprocess.run(
        ["kubectl", "--kubeconfig", str(tmp / "admin.conf"), "get", "leases", "-n", "kube-system", "-o", "json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    now = time.time()
    leases = load_salt_module("modules").parse_leases(listed, [socket.gethostname()], now)
    assert leases["kube-controller-manager"] is None
    row = leases["kube-scheduler"]
    assert (row["master"], row["duration_s"], row["expired"]) == (socket.gethostname(), 3, False)
    # renewed at most a retry period (and 1 s of a loaded machine's lateness) before kubectl read
    # it, which was at most `now - asked` ago
    assert 0 <= row["renewed_s_ago"] <= (now - asked) + RETRY + 1


REFUSED = [
    # client-go's NewLeaderElector refuses these before it starts
    ("kube-controller-manager", ["--leader-elect-lease-duration=10s", "--leader-elect-renew-deadline=10s"],
     "leaseDuration must be greater than renewDeadline"),
    ("kube-controller-manager", ["--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=2s"],
     "renewDeadline must be greater than retryPeriod*JitterFactor"),
    ("kube-controller-manager", ["--root-ca-file=/nonexistent/ca.crt"], "open /nonexistent/ca.crt: no such file"),
]  # fmt: skip


@pytest.mark.parametrize("component, args, refused", REFUSED)
def test_what_client_go_or_the_component_refuses_stops_it(cluster, component, args, refused):
    start, _, (port, files, _, tmp) = cluster
    conf = kubeconfig(files, port, "controller-manager", tmp / "controller-manager.conf")
    proc = start(component, f"--kubeconfig={conf}", *args)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read().splitlines()[-1].startswith(f"Error: {refused}")


@pytest.mark.parametrize(
    "document, refused",
    [
        ({"apiVersion": "kubescheduler.config.k8s.io/v1beta1", "kind": "KubeSchedulerConfiguration"},
         'no kind "KubeSchedulerConfiguration" is registered for version "kubescheduler.config.k8s.io/v1beta1"'),
        ({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration"},
         "invalid configuration: no configuration has been provided"),  # no clientConnection.kubeconfig
    ],
)  # fmt: skip
def test_a_scheduler_configuration_the_real_one_refuses_stops_it(cluster, document, refused):
    start, _, (_, _, _, tmp) = cluster
    config = tmp / "kube-scheduler.yaml"
    config.write_text(json.dumps(document))
    proc = start("kube-scheduler", f"--config={config}")
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read() == f"Error: {refused}\n"
