"""The pod network's objects (``ksha:network``), rendered from the cluster's settings, and
their offline check against the pinned Kubernetes version's schemas.

calico (``plugin: calico``), written for ksha after calico's own manifest for the Kubernetes
API datastore (``calico.yaml`` of the pinned release): its CustomResourceDefinitions, the
RBAC of its three service accounts, the ``calico-config`` ConfigMap (the CNI configuration
``install-cni`` writes on every node), the ``calico-node`` DaemonSet (the pod CIDR becomes
its default IP pool: ``CALICO_IPV4POOL_CIDR``) and the ``calico-kube-controllers``
Deployment. Two differences from upstream's file, both said where they are made: the
CustomResourceDefinitions carry no field schemas (their custom resources are not checked by
the apiserver), and ``install-cni`` skips the standard plugins the distro's CNI package
already put in the node's CNI directory.

Every object carries ksha's labels (``MANAGED_BY``, ``SET_LABEL``): the state that applies
them (``ksha_kube.objects_applied``) deletes an object of the set that is no longer rendered,
and nothing else. Pure functions; the only I/O is kubernetes-validate reading its schemas.
"""

from __future__ import annotations

import json
from typing import Any

from ksha.checks.base import Finding

# the labels of every object ksha applies through the API, and the set each belongs to
MANAGED_BY = {"app.kubernetes.io/managed-by": "ksha"}
SET_LABEL = "ksha/manifest"
# calico's CustomResourceDefinitions of the pinned release (crd.projectcalico.org/v1):
# (kind, plural, namespaced)
CALICO_CRDS = (
    ("BGPConfiguration", "bgpconfigurations", False),
    ("BGPFilter", "bgpfilters", False),
    ("BGPPeer", "bgppeers", False),
    ("BlockAffinity", "blockaffinities", False),
    ("CalicoNodeStatus", "caliconodestatuses", False),
    ("ClusterInformation", "clusterinformations", False),
    ("FelixConfiguration", "felixconfigurations", False),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", False),
    ("GlobalNetworkSet", "globalnetworksets", False),
    ("HostEndpoint", "hostendpoints", False),
    ("IPAMBlock", "ipamblocks", False),
    ("IPAMConfig", "ipamconfigs", False),
    ("IPAMHandle", "ipamhandles", False),
    ("IPPool", "ippools", False),
    ("IPReservation", "ipreservations", False),
    ("KubeControllersConfiguration", "kubecontrollersconfigurations", False),
    ("NetworkPolicy", "networkpolicies", True),
    ("NetworkSet", "networksets", True),
)
CALICO_GROUP = "crd.projectcalico.org"
# the resources the objects are of: where the state looks for the set's objects to delete
RESOURCES = (
    "customresourcedefinitions.apiextensions.k8s.io", "serviceaccounts", "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io", "configmaps", "daemonsets.apps", "deployments.apps",
    "poddisruptionbudgets.policy",
)  # fmt: skip
NAMESPACE = "kube-system"
# the plugins of the distro's CNI package (containernetworking-plugins), which calico's image
# carries copies of too: install-cni leaves the package's in place and adds calico's own
STANDARD_PLUGINS = (
    "bandwidth", "bridge", "dhcp", "dummy", "firewall", "flannel", "host-device", "host-local", "ipvlan",
    "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tap", "tuning", "vlan", "vrf",
)  # fmt: skip


def _meta(name: str, set_name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**(labels or {}), **MANAGED_BY, SET_LABEL: set_name}
    return meta


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict:
    rule = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


READ = ["get", "list", "watch"]
IPAM = ["blockaffinities", "ipamblocks", "ipamhandles"]


def _calico_rbac() -> dict[str, list[dict]]:
    """The rules of calico's three service accounts (upstream's, grouped)."""
    c = [CALICO_GROUP]
    return {
        "calico-node": [
            _rule([""], ["pods", "nodes", "namespaces", "services", "endpoints", "serviceaccounts"], READ),
            _rule([""], ["configmaps"], ["get"]),
            _rule([""], ["nodes/status"], ["patch", "update"]),
            _rule([""], ["serviceaccounts/token"], ["create"], ["calico-cni-plugin"]),
            _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
            _rule(["networking.k8s.io"], ["networkpolicies"], ["list", "watch"]),
            _rule(c, [plural for _, plural, _ in CALICO_CRDS], READ),
            _rule(c, ["ippools", "felixconfigurations", "clusterinformations"], ["create", "update"]),
            _rule(c, ["caliconodestatuses"], ["update"]),
            _rule(c, IPAM, ["get", "list", "create", "update", "delete"]),
            _rule(c, ["ipamconfigs"], ["get", "create"]),
            _rule(["apps"], ["daemonsets"], ["get"]),
        ],
        "calico-cni-plugin": [
            _rule([""], ["pods", "nodes", "namespaces"], ["get"]),
            _rule([""], ["pods/status"], ["patch"]),
            _rule(
                c,
                [*IPAM, "clusterinformations", "ippools", "ipreservations", "ipamconfigs"],
                ["get", "list", "create", "update", "delete"],
            ),  # fmt: skip
        ],
        "calico-kube-controllers": [
            _rule([""], ["nodes"], READ),
            _rule([""], ["pods"], ["get", "list", "watch"]),
            _rule(c, ["ipreservations", "ippools"], ["list", "watch"]),
            _rule(c, [*IPAM, "ipamconfigs"], ["get", "list", "create", "update", "delete", "watch"]),
            _rule(c, ["hostendpoints"], ["get", "list", "create", "update", "delete"]),
            _rule(
                c,
                ["clusterinformations", "kubecontrollersconfigurations"],
                ["get", "list", "create", "update", "watch"],
            ),
        ],
    }


def cni_network_config() -> str:
    """The CNI configuration install-cni writes on every node (its placeholders it fills in)."""
    return json.dumps(
        {
            "name": "k8s-pod-network",
            "cniVersion": "0.3.1",
            "plugins": [
                {
                    "type": "calico",
                    "log_level": "info",
                    "log_file_path": "/var/log/calico/cni/cni.log",
                    "datastore_type": "kubernetes",
                    "nodename": "__KUBERNETES_NODE_NAME__",
                    "mtu": "__CNI_MTU__",
                    "ipam": {"type": "calico-ipam"},
                    "policy": {"type": "k8s"},
                    "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"},
                },
                {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
                {"type": "bandwidth", "capabilities": {"bandwidth": True}},
            ],
        },
        indent=2,
    ).replace('"__CNI_MTU__"', "__CNI_MTU__")  # a number once filled in


def _env(name: str, value: str | None = None, field: str | None = None, config_key: str | None = None) -> dict:
    if field:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}
    if config_key:
        return {"name": name, "valueFrom": {"configMapKeyRef": {"name": "calico-config", "key": config_key}}}
    return {"name": name, "value": value}


def _host_path(name: str, path: str, kind: str | None = None) -> dict:
    host = {"path": path, **({"type": kind} if kind else {})}
    return {"name": name, "hostPath": host}


def _probe(command: list[str], initial: int = 0) -> dict:
    probe: dict[str, Any] = {"exec": {"command": command}, "periodSeconds": 10, "timeoutSeconds": 10}
    if initial:
        probe.update(initialDelaySeconds=initial, failureThreshold=6)
    return probe


def calico_objects(settings: dict) -> list[dict]:
    """calico's objects, in the order they are created. `settings`: ``version``, ``registry``,
    ``ipip_mode``, ``mtu`` (ksha:network:calico), ``pod_cidr``, ``cni_bin_dir``,
    ``cni_conf_dir``."""
    s = "calico"
    image = f"{settings['registry']}/calico/{{}}:{settings['version']}"
    objects: list[dict] = []
    for kind, plural, namespaced in CALICO_CRDS:
        objects.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": _meta(f"{plural}.{CALICO_GROUP}", s),
                "spec": {
                    "group": CALICO_GROUP,
                    "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
                    "scope": "Namespaced" if namespaced else "Cluster",
                    # upstream's CRDs carry calico's field schemas; these keep any field
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    ],
                },
            }
        )
    for account, rules in _calico_rbac().items():
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, s, NAMESPACE)})
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": _meta(account, s),
                "rules": rules,
            }  # fmt: skip
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": _meta(account, s),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
            }
        )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("calico-config", s, NAMESPACE),
            "data": {
                "typha_service_name": "none",
                "calico_backend": "bird",
                "veth_mtu": str(settings["mtu"]),
                "cni_network_config": cni_network_config(),
            },
        }
    )
    node_labels = {"k8s-app": "calico-node"}
    services_endpoint = [{"configMapRef": {"name": "kubernetes-services-endpoint", "optional": True}}]
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("calico-node", s, NAMESPACE, node_labels),
            "spec": {
                "selector": {"matchLabels": node_labels},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": node_labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "hostNetwork": True,
                        "tolerations": [
                            {"effect": "NoSchedule", "operator": "Exists"},
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"effect": "NoExecute", "operator": "Exists"},
                        ],
                        "serviceAccountName": "calico-node",
                        "terminationGracePeriodSeconds": 0,
                        "priorityClassName": "system-node-critical",
                        "initContainers": [
                            {
                                "name": "install-cni",
                                "image": image.format("cni"),
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["/opt/cni/bin/install"],
                                "envFrom": services_endpoint,
                                "env": [
                                    _env("CNI_CONF_NAME", "10-calico.conflist"),
                                    _env("CNI_NETWORK_CONFIG", config_key="cni_network_config"),
                                    _env("KUBERNETES_NODE_NAME", field="spec.nodeName"),
                                    _env("CNI_MTU", config_key="veth_mtu"),
                                    _env("SLEEP", "false"),
                                    # the distro package's plugins stay; calico adds calico and calico-ipam
                                    _env("SKIP_CNI_BINARIES", ",".join(STANDARD_PLUGINS)),
                                ],
                                "volumeMounts": [
                                    {"mountPath": "/host/opt/cni/bin", "name": "cni-bin-dir"},
                                    {"mountPath": "/host/etc/cni/net.d", "name": "cni-net-dir"},
                                ],
                                "securityContext": {"privileged": True},
                            }
                        ],
                        "containers": [
                            {
                                "name": "calico-node",
                                "image": image.format("node"),
                                "imagePullPolicy": "IfNotPresent",
                                "envFrom": services_endpoint,
                                "env": [
                                    _env("DATASTORE_TYPE", "kubernetes"),
                                    _env("WAIT_FOR_DATASTORE", "true"),
                                    _env("NODENAME", field="spec.nodeName"),
                                    _env("CALICO_NETWORKING_BACKEND", config_key="calico_backend"),
                                    _env("CLUSTER_TYPE", "k8s,bgp"),
                                    _env("IP", "autodetect"),
                                    _env("CALICO_IPV4POOL_CIDR", settings["pod_cidr"]),
                                    _env("CALICO_IPV4POOL_IPIP", settings["ipip_mode"]),
                                    _env("CALICO_IPV4POOL_VXLAN", "Never"),
                                    _env("CALICO_IPV6POOL_VXLAN", "Never"),
                                    _env("FELIX_IPINIPMTU", config_key="veth_mtu"),
                                    _env("FELIX_VXLANMTU", config_key="veth_mtu"),
                                    _env("FELIX_WIREGUARDMTU", config_key="veth_mtu"),
                                    _env("CALICO_DISABLE_FILE_LOGGING", "true"),
                                    _env("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT"),
                                    _env("FELIX_IPV6SUPPORT", "false"),
                                    _env("FELIX_HEALTHENABLED", "true"),
                                ],
                                "securityContext": {"privileged": True},
                                "resources": {"requests": {"cpu": "250m"}},
                                "livenessProbe": _probe(["/bin/calico-node", "-felix-live", "-bird-live"], 10),
                                "readinessProbe": _probe(["/bin/calico-node", "-felix-ready", "-bird-ready"]),
                                "volumeMounts": [
                                    {"mountPath": "/host/etc/cni/net.d", "name": "cni-net-dir"},
                                    {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": True},
                                    {"mountPath": "/run/xtables.lock", "name": "xtables-lock"},
                                    {"mountPath": "/var/run/calico", "name": "var-run-calico"},
                                    {"mountPath": "/var/lib/calico", "name": "var-lib-calico"},
                                    {"mountPath": "/var/run/nodeagent", "name": "policysync"},
                                    {"mountPath": "/var/log/calico/cni", "name": "cni-log-dir", "readOnly": True},
                                ],
                            }
                        ],
                        "volumes": [
                            _host_path("lib-modules", "/lib/modules"),
                            _host_path("var-run-calico", "/var/run/calico", "DirectoryOrCreate"),
                            _host_path("var-lib-calico", "/var/lib/calico", "DirectoryOrCreate"),
                            _host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                            _host_path("cni-bin-dir", settings["cni_bin_dir"], "DirectoryOrCreate"),
                            _host_path("cni-net-dir", settings["cni_conf_dir"]),
                            _host_path("cni-log-dir", "/var/log/calico/cni"),
                            _host_path("policysync", "/var/run/nodeagent", "DirectoryOrCreate"),
                        ],
                    },
                },
            },
        }
    )
    controller_labels = {"k8s-app": "calico-kube-controllers"}
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("calico-kube-controllers", s, NAMESPACE, controller_labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": controller_labels},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": controller_labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                        ],
                        "serviceAccountName": "calico-kube-controllers",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "calico-kube-controllers",
                                "image": image.format("kube-controllers"),
                                "imagePullPolicy": "IfNotPresent",
                                "env": [_env("ENABLED_CONTROLLERS", "node"), _env("DATASTORE_TYPE", "kubernetes")],
                                "livenessProbe": _probe(["/usr/bin/check-status", "-l"], 10),
                                "readinessProbe": _probe(["/usr/bin/check-status", "-r"]),
                            }
                        ],
                    },
                },
            },
        }
    )
    objects.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("calico-kube-controllers", s, NAMESPACE, controller_labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": controller_labels}},
        }
    )
    return objects


def ref(obj: dict) -> str:
    """``DaemonSet kube-system/calico-node``: how findings and state output name an object."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def schema_version(kubernetes_version: str) -> str:
    """kubernetes-validate's schema version of a release: v1.30.8 -> 1.30.0 (a patch release
    changes no API)."""
    major, minor = kubernetes_version.lstrip("v").split(".")[:2]
    return f"{major}.{minor}.0"


def problems(objects: list[dict], kubernetes_version: str) -> list[tuple[str, str]]:
    """What kubernetes-validate (strict: unknown fields too) finds wrong in `objects` against the
    schemas of `kubernetes_version`: (the pillar key it is about, the message), [] when they are
    valid. An object the schemas refuse is ``ksha:network``'s, one line each; a check that cannot
    be made (no kubernetes-validate, or none with that version's schemas) is said once."""
    try:
        import kubernetes_validate  # noqa: PLC0415 - only where manifests are checked
    except ImportError:
        return [("ksha", "the Python package kubernetes-validate is not importable by the salt-master's Python: "
                         "install ksha's requirements there (pip install /srv/ksha), then run this again")]  # fmt: skip
    version = schema_version(kubernetes_version)
    errors = kubernetes_validate.utils
    found: dict[tuple[str, str], None] = {}
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except errors.VersionNotSupportedError:
            cannot = (f"kubernetes-validate {kubernetes_validate.__version__} has no schemas of Kubernetes {version} "
                      f"({kubernetes_version}), so the network objects cannot be checked: install one that has them "
                      "(pip install 'kubernetes-validate>=" + version + "')")  # fmt: skip
            found[("ksha:kubernetes:version", cannot)] = None
        except errors.SchemaNotFoundError as err:
            found[("ksha:kubernetes:version", f"{ref(obj)}: {err.message}; its API is not in Kubernetes {version}")] = (
                None
            )
        except errors.ValidationError as err:
            path = ".".join(str(p) for p in err.path) or "(top)"
            found[("ksha:network", f"{ref(obj)}: {path}: {err.message}")] = None
        except errors.InvalidSchemaError as err:
            found[("ksha", f"{ref(obj)}: kubernetes-validate's schema is invalid: {err.message}; reinstall it")] = None
    return list(found)


def findings(cluster: dict) -> list[Finding]:
    """The preflight's check of the network's objects (``cluster``: ``ksha.model.build``'s):
    one ERROR finding per object the pinned Kubernetes version's schemas refuse, and one per
    reason the check could not be made."""
    objects = cluster["network"]["objects"]
    version = cluster["kubernetes"]["version"]
    out = []
    for key, message in problems(objects, version) if objects else []:
        if key == "ksha:network":
            message += (
                f" (checked offline against Kubernetes {version}'s schemas; the objects are rendered from "
                "ksha:network:calico and ksha:kubernetes:pod_cidr: fix those keys, or report a ksha bug if they are right)"
            )
        out.append(Finding("ERROR", key, message))
    return out
