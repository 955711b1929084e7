"""The Kubernetes release the lab serves: upstream's kubernetes-server-linux-amd64.tar.gz layout
and names (kubernetes/server/bin/<binary>), holding STAND-INS for the components
(ksha_lab/standins/kube_component.py; the real binaries cannot be downloaded here) and this
machine's real kubectl. ksha installs it through the same archive path a user takes with the
real tarball: a URL and its sha256 in the pillar.

The lab serves it over HTTP on its bridge (``serve``; the lab's salt-master's address), under
``/<version>/kubernetes-server-linux-amd64.tar.gz`` as dl.k8s.io does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ksha import flags, model

COMPONENT = Path(__file__).resolve().parent / "kube_component.py"
TARBALL = "kubernetes-server-linux-amd64.tar.gz"
NODE_TARBALL = "kubernetes-node-linux-amd64.tar.gz"
PORT = 8780
# the configuration file each node component reads, and its kind (ksha/data/kubernetes-config-fields.yaml)
CONFIG_KINDS = {"kubelet": "KubeletConfiguration", "kube-proxy": "KubeProxyConfiguration"}


def standin(component: str, version: str) -> bytes:
    """The stand-in executable of `component`: its name, version and flags, then kube_component.py."""
    head = (
        "#!/usr/bin/python3\n"
        f"# ksha-lab STAND-IN for {component} {version}: not the real binary (see the text below).\n"
        f"COMPONENT = {json.dumps(component)}\n"
        f"VERSION = {json.dumps(version)}\n"
        f"KNOWN_FLAGS = {json.dumps(sorted(flags.known(component)))}\n"
    )
    if component in CONFIG_KINDS:
        head += f"KNOWN_FIELDS = {json.dumps(flags.config_fields(CONFIG_KINDS[component]))}\n"
    return head.encode() + COMPONENT.read_bytes()


def real_kubectl() -> Path:
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("the lab's release carries this machine's kubectl, and there is none (make apt)")
    return Path(os.path.realpath(found))


def build(www: Path, version: str, kind: str = "server") -> Path:
    """Write <www>/<version>/kubernetes-<kind>-linux-amd64.tar.gz; return its path. `kind`:
    ``server`` (kubernetes/server/bin/: the control plane's components) or ``node``
    (kubernetes/node/bin/: kubelet and kube-proxy), each with the real kubectl, as upstream's."""
    out = www / version / (TARBALL if kind == "server" else NODE_TARBALL)
    components = model.KUBE_COMPONENTS if kind == "server" else model.NODE_COMPONENTS
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for directory in ("kubernetes", f"kubernetes/{kind}", f"kubernetes/{kind}/bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for component in components:
            data = standin(component, version)
            info = tarfile.TarInfo(f"kubernetes/{kind}/bin/{component}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        tar.add(real_kubectl(), arcname=f"kubernetes/{kind}/bin/kubectl")
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def serve(www: Path, address: str, log: Path, port: int = PORT) -> subprocess.Popen:
    """Start a detached HTTP server of `www` on address:port, its requests and errors logged to
    `log` (`down` stops it: its command line names the lab's state directory)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(www), str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
