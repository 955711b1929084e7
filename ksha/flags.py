"""The control-plane components' flags: which the pinned Kubernetes version accepts, which ksha sets.

``ksha/data/kubernetes-flags.yaml`` holds every flag name of kube-apiserver,
kube-controller-manager and kube-scheduler for one Kubernetes minor version, taken from
that version's command-line reference (kubernetes/website; the file and
``kubernetes-flags.SOURCES.md`` say which commit). The validator checks
``ksha:kubernetes:*:extra_args`` against it; the lab's stand-ins accept exactly these flags.

MANAGED: the flags ksha sets from the cluster model (``ksha.model.kube_flags``, or the scheduler's
configuration file) and the pillar key that drives each: such a flag in ``extra_args`` is refused
(change the key instead).
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

FLAGS_FILE = Path(__file__).resolve().parent / "data" / "kubernetes-flags.yaml"
# the kubelet's and kube-proxy's configuration file fields, from the same version's reference
FIELDS_FILE = Path(__file__).resolve().parent / "data" / "kubernetes-config-fields.yaml"

_MODEL = "the cluster model (docs/ARCHITECTURE.md, Control plane)"
_K = "ksha:kubernetes"
_LEADER = {
    "leader-elect": f"{_K}:leader_election",
    "leader-elect-lease-duration": f"{_K}:leader_election:lease_duration_s",
    "leader-elect-renew-deadline": f"{_K}:leader_election:renew_deadline_s",
    "leader-elect-retry-period": f"{_K}:leader_election:retry_period_s",
}
_KUBECONFIGS = {
    "kubeconfig": _MODEL,
    "authentication-kubeconfig": _MODEL,
    "authorization-kubeconfig": _MODEL,
    "bind-address": _MODEL,
}
MANAGED: dict[str, dict[str, str]] = {
    "kube-apiserver": {
        "advertise-address": "ksha:hosts (the master's ip)",
        "bind-address": "ksha:hosts (the master's ip)",
        "secure-port": f"{_K}:apiserver_port",
        "etcd-servers": "ksha:groups:etcd",
        "etcd-cafile": "ksha:etcd:pki:dir",
        "etcd-certfile": _MODEL,
        "etcd-keyfile": _MODEL,
        "endpoint-reconciler-type": _MODEL,
        "authorization-mode": _MODEL,
        "enable-admission-plugins": _MODEL,
        "allow-privileged": _MODEL,
        "client-ca-file": f"{_K}:pki:dir",
        "tls-cert-file": f"{_K}:pki:dir",
        "tls-private-key-file": f"{_K}:pki:dir",
        "kubelet-client-certificate": f"{_K}:pki:dir",
        "kubelet-client-key": f"{_K}:pki:dir",
        "kubelet-preferred-address-types": _MODEL,
        "requestheader-client-ca-file": f"{_K}:pki:dir",
        "requestheader-allowed-names": _MODEL,
        "requestheader-extra-headers-prefix": _MODEL,
        "requestheader-group-headers": _MODEL,
        "requestheader-username-headers": _MODEL,
        "proxy-client-cert-file": f"{_K}:pki:dir",
        "proxy-client-key-file": f"{_K}:pki:dir",
        "service-account-issuer": f"{_K}:cluster_domain",
        "service-account-key-file": f"{_K}:pki:dir",
        "service-account-signing-key-file": f"{_K}:pki:dir",
        "service-cluster-ip-range": f"{_K}:service_cidr",
    },
    "kube-controller-manager": {
        **_KUBECONFIGS,
        **_LEADER,
        "allocate-node-cidrs": _MODEL,
        "cluster-cidr": f"{_K}:pod_cidr",
        "service-cluster-ip-range": f"{_K}:service_cidr",
        "cluster-name": "ksha:cluster_name",
        "root-ca-file": f"{_K}:pki:dir",
        "service-account-private-key-file": f"{_K}:pki:dir",
        "use-service-account-credentials": _MODEL,
        "requestheader-client-ca-file": f"{_K}:pki:dir",
    },
    "kube-scheduler": {
        **_KUBECONFIGS,
        # the kubeconfig and the leader election are in this file (ksha:kubernetes:leader_election);
        # --kubeconfig would be ignored next to it, and the leader-elect flags would override it
        "config": f"{_K}:leader_election",
        **_LEADER,
    },
}


@functools.cache
def reference() -> dict:
    with FLAGS_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def version() -> str:
    """The Kubernetes minor version ksha deploys and knows the flags of, e.g. "1.31"."""
    return str(reference()["version"])


def known(component: str) -> frozenset[str]:
    """Every flag name `component` of that version accepts (without dashes)."""
    return frozenset(reference()["flags"][component])


def source(component: str) -> str:
    """Where `component`'s flag list comes from (the reference page at a commit)."""
    return reference()["sources"][component]


# The configuration file fields ksha sets on every node (ksha.model._node) and the pillar key
# that drives each: such a field in ksha:kubernetes:kubelet:extra_config (kube_proxy:extra_config)
# is refused.
MANAGED_FIELDS: dict[str, dict[str, str]] = {
    "KubeletConfiguration": {
        "apiVersion": _MODEL,
        "kind": _MODEL,
        "authentication": f"{_K}:pki:dir (x509 with the cluster CA, webhook, no anonymous requests)",
        "authorization": _MODEL,
        "cgroupDriver": "ksha:containerd:cgroup_driver",
        "clusterDNS": f"{_K}:service_cidr (its third address)",
        "clusterDomain": f"{_K}:cluster_domain",
        "containerRuntimeEndpoint": "ksha:containerd:socket",
        "rotateCertificates": f"{_K}:pki:days_remaining (Salt renews the kubelet's certificates)",
        "serverTLSBootstrap": f"{_K}:pki:days_remaining (Salt renews the kubelet's certificates)",
        "tlsCertFile": f"{_K}:pki (the kubelet's serving certificate)",
        "tlsPrivateKeyFile": f"{_K}:pki (the kubelet's serving certificate)",
    },
    "KubeProxyConfiguration": {
        "apiVersion": _MODEL,
        "kind": _MODEL,
        "clientConnection": _MODEL,
        "clusterCIDR": f"{_K}:pod_cidr",
        "hostnameOverride": "ksha:hosts (the node's name)",
        "mode": f"{_K}:kube_proxy:mode",
    },
}


@functools.cache
def _fields() -> dict:
    with FIELDS_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def config_fields(kind: str) -> dict:
    """`kind`'s fields in the pinned version's reference: {apiVersion, fields (top level),
    nested ({dotted field: its struct's fields}), maps (fields that take any key)}."""
    return _fields()["kinds"][kind]


def config_source(kind: str) -> str:
    return _fields()["sources"][kind]
