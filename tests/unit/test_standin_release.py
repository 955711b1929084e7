"""The lab's Kubernetes release: upstream's tarball layout, stand-ins that refuse what the pinned
version's binaries would refuse, and a real kubectl."""

import json
import subprocess
import tarfile

import pytest

from ksha_lab.standins import release

VERSION = "v1.30.8"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    tarball = release.build(www, VERSION)
    assert tarball == www / VERSION / "kubernetes-server-linux-amd64.tar.gz"
    with tarfile.open(tarball) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
    (www / "x").mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(www / "x")], check=True)  # as Salt's archive.extracted
    assert names == [
        "kubernetes/server/bin/kube-apiserver",
        "kubernetes/server/bin/kube-controller-manager",
        "kubernetes/server/bin/kube-scheduler",
        "kubernetes/server/bin/kubectl",
    ]
    return www / "x" / "kubernetes" / "server" / "bin"


def run(path, *args):
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("component", ["kube-apiserver", "kube-controller-manager", "kube-scheduler"])
def test_each_stand_in_says_its_version_and_what_it_is(extracted, component):
    out = run(extracted / component, "--version")
    assert (out.returncode, out.stdout) == (0, f"Kubernetes {VERSION}\n")
    assert "STAND-IN" in (extracted / component).read_text().splitlines()[1]


# (component, arguments) -> what the real binary prints refusing them, or None: every flag is the version's
FLAGS = [
    ("kube-apiserver", ["--secure-port=6443", "--etcd-servers=https://10.0.0.1:2379"], None),
    ("kube-apiserver", ["--insecure-port=8080"], "unknown flag: --insecure-port"),  # removed in 1.24
    ("kube-apiserver", ["--secure-port=6443", "--no-such-flag"], "unknown flag: --no-such-flag"),
    ("kube-apiserver", ["-bind-address=10.0.0.1"], "unknown shorthand flag: 'b' in -bind-address=10.0.0.1"),
    ("kube-controller-manager", ["--leader-elect=true", "--cluster-cidr=10.233.64.0/18"], None),
    ("kube-scheduler", ["--cluster-cidr=10.233.64.0/18"], "unknown flag: --cluster-cidr"),  # the controller-manager's
    ("kube-scheduler", ["--config=/nonexistent/kube-scheduler.yaml", "-v=2"], None),
    ("kube-scheduler", ["--leader-elect", "true"], '"kube-scheduler" does not take any arguments, got ["true"]'),
]


@pytest.mark.parametrize("component, args, refused", FLAGS)
def test_flags_not_in_the_pinned_reference_are_refused(extracted, component, args, refused):
    out = run(extracted / component, *args)
    assert out.returncode == 1
    if refused:
        assert out.stderr == f"Error: {refused}\n"
    elif component == "kube-apiserver":  # its flags accepted, it needs the files it serves with
        assert out.stderr.startswith("Error: ksha-lab stand-in kube-apiserver needs --bind-address, ")
    elif component == "kube-controller-manager":  # its flags accepted, it needs a kubeconfig
        assert out.stderr == "Error: invalid configuration: no configuration has been provided\n"
    else:  # the scheduler's flags accepted, it reads its --config file
        assert out.stderr == "Error: open /nonexistent/kube-scheduler.yaml: no such file or directory\n"


def test_kubectl_is_this_machines_real_one(extracted):
    out = run(extracted / "kubectl", "version", "--client", "-o", "json")  # Debian's 1.20 prints no "v1.x" line
    assert out.returncode == 0, out
    assert json.loads(out.stdout)["clientVersion"]["gitVersion"].startswith("v1."), out
