"""STAND-IN for a Kubernetes component binary (kube-apiserver, kube-controller-manager,
kube-scheduler), for the lab only: the release binaries cannot be downloaded here. It is not
the component. The lab's release tarball (ksha_lab/standins/release.py) carries one copy per
component, named and placed as upstream's kubernetes/server/bin/<component>, with the
component's name, version and flag names (ksha/data/kubernetes-flags.yaml, the pinned
version's command-line reference) written in front of this text.

What it does, as the real binary would:
- ``--version`` prints ``Kubernetes <version>`` and exits 0;
- a flag that is not in the version's reference is refused: ``Error: unknown flag: --<name>``
  on stderr, exit 1 (cobra's message and code);
- kube-apiserver (``serve_apiserver``) serves with the files its flags name: TLS on
  --bind-address:--secure-port with --tls-cert-file/--tls-private-key-file (a key that does not
  match its certificate, or a missing file, stops it as it stops the real one); client
  certificates verified against --client-ca-file, their CN the user and O the groups (a request
  without one is ``system:anonymous``, allowed the health paths and /version only).
  Its objects live in the **real etcd** of --etcd-servers (TLS with --etcd-cafile/--etcd-certfile/
  --etcd-keyfile), through etcd's v3 JSON gateway, as JSON under the real layout
  (``/registry/leases/<namespace>/<name>``, ``/registry/minions/<node>``, ...): resourceVersion is
  the key's etcd revision, and an update naming an old one is refused (409), as leader election
  needs. Served: ``/livez``, ``/healthz``, ``/readyz`` (``ok`` only while etcd reports a leader,
  asked at most once a second, and the four system namespaces exist), ``/version``, discovery
  (``/api``, ``/apis``, each group version), and get, list, create, update, merge patch and
  delete of namespaces, configmaps, secrets, serviceaccounts, nodes, pods, services,
  endpointslices, leases, PodDisruptionBudgets, DaemonSets, Deployments, ClusterRoles,
  ClusterRoleBindings, CustomResourceDefinitions and the custom resources they define (served
  once created): stored, not acted on (no controller makes pods of a DaemonSet, no RBAC role
  grants anything); field selectors on pods (spec.nodeName, status.phase) and names; the pods'
  eviction subresource (listed in /api/v1's discovery, as kubectl drain looks for it), which
  PodDisruptionBudgets refuse as the real one does (``eviction_refusal``) and which deletes the
  pod at once (no kubelet stops containers here). Authorization is RBAC's bootstrap roles in
  short: ``system:masters`` may do anything; kube-controller-manager and kube-scheduler read
  everything and write their Leases in kube-system; a node (``system:node:<name>`` in
  ``system:nodes``) writes only its own Node and its Lease in kube-node-lease, and reads and
  writes the status of only the pods bound to it (the Node authorizer); anyone else gets 403. Not served (the requests say so, 404/405/415): watch,
  server-side apply, JSON patch, OpenAPI v2 and schemas (``/openapi/v3`` says only that the server
  validates, ``fieldValidation``: unknown top-level fields are refused), Services and the rest. It
  tells systemd it is ready (sd_notify) once it listens, and says what it is on stderr (the
  journal) and in /version (``gitCommit``: ``ksha-lab-stand-in``). SIGTERM ends it as it ends
  the real one: /readyz fails at once (``[-]shutdown failed``) while it serves for
  --shutdown-delay-duration (default 0), then it stops listening, lets the requests in flight
  finish and exits 0.
- kube-controller-manager and kube-scheduler (``run_elected``): read their kubeconfig (the
  controller-manager's --kubeconfig; the scheduler's from its --config file, a
  KubeSchedulerConfiguration, as the real one does) and run client-go's leader election on
  the ``kube-system`` Lease named after the component, with the configured lease duration,
  renew deadline and retry period (refused as client-go refuses them unless duration > deadline
  > 1.2 x retry). A leader that cannot renew within the deadline exits 1, ``leaderelection
  lost``, as the real ones do. They run no controllers and no scheduling.

Runs with the container's Python 3 standard library, and python3-yaml for kubeconfigs.
"""

import base64
import concurrent.futures
import datetime
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

SHORTHANDS = {"h": "help", "v": "v"}


def parse(argv, known):
    """{flag: value or None}, or the error the real binary prints (a str), as pflag and the
    components' cobra commands have them: an unknown flag, an unknown shorthand (a long name
    after one dash), a positional argument (they take none). Stricter than pflag in one way,
    which ksha never meets (it writes --name=value): a value must follow ``=``, since the
    stand-in does not know which flags are booleans (``--leader-elect true`` gives the
    positional argument ``true`` to the real binary too)."""
    flags, positional = {}, []
    for arg in argv:
        if arg == "--" or not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in known:
                return f"unknown flag: --{name}"
        else:
            short, eq, value = arg[1:].partition("=")
            if len(short) != 1 or short not in SHORTHANDS:
                return f"unknown shorthand flag: {short[0]!r} in {arg}"
            name = SHORTHANDS[short]
        flags[name] = value if eq else None
    if any(positional):
        return "{} does not take any arguments, got {}".format(
            json.dumps(COMMAND[0]), json.dumps([a for a in positional if a != "--"])
        )
    return flags


# the command's name, for the messages (set by main)
COMMAND = ["kube-component"]


def log(message):
    print(f"{COMMAND[0]}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# etcd, through its v3 JSON gateway (etcd >= 3.4: POST /v3/kv/...; keys and values base64)


class EtcdError(Exception):
    """etcd did not answer the request (no member reachable, or the request failed there)."""


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix):
    """etcd's range_end for every key under `prefix`: the prefix with its last byte plus one."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class Etcd:
    """The etcd client URLs of --etcd-servers, over TLS with the apiserver's etcd client
    certificate. A request goes to the member that answered last, then to the others."""

    def __init__(self, servers, cafile, certfile, keyfile, timeout=3.0):
        self.urls = [u.rstrip("/") for u in servers.split(",") if u]
        self.context = ssl.create_default_context(cafile=cafile)
        self.context.load_cert_chain(certfile, keyfile)
        self.timeout, self.good = timeout, 0
        # idle keep-alive connections per member, shared by the request threads (as the real
        # apiserver keeps its gRPC connections): no TLS handshake per etcd request
        self.idle, self.lock = {}, threading.Lock()

    def _post(self, at, path, data):
        """(status, body) of one POST to member `at`, on an idle connection if there is one."""
        with self.lock:
            pool = self.idle.get(at)
            conn = pool.pop() if pool else None
        fresh = conn is None
        while True:
            if conn is None:
                url = urllib.parse.urlsplit(self.urls[at])
                conn = http.client.HTTPSConnection(url.hostname, url.port, context=self.context, timeout=self.timeout)
            try:
                conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                # a member that closed an idle connection: ask again on a new one, but only a read
                # (a write it may have applied before closing is not sent twice: the caller goes on
                # to the next member, as it does for any error)
                if fresh or path != "/v3/kv/range":
                    raise
                conn, fresh = None, True
                continue
            except BaseException:
                conn.close()
                raise
            with self.lock:
                self.idle.setdefault(at, []).append(conn)
            return resp.status, body

    def call(self, path, body):
        errors = []
        data = json.dumps(body).encode()
        for i in range(len(self.urls)):
            at = (self.good + i) % len(self.urls)
            try:
                status, raw = self._post(at, path, data)
                if status != 200:
                    detail = raw.decode(errors="replace")
                    try:
                        detail = json.loads(detail).get("error", detail)
                    except ValueError:
                        pass
                    errors.append(f"{self.urls[at]}: {detail}")
                    continue
                answer = json.loads(raw)
            except (OSError, ValueError, http.client.HTTPException) as err:
                errors.append(f"{self.urls[at]}: {getattr(err, 'reason', err)}")
                continue
            self.good = at
            return answer
        raise EtcdError("; ".join(errors))

    def get(self, key):
        """(value, mod_revision) of `key`, or (None, 0)."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        if not kvs:
            return None, 0
        return base64.b64decode(kvs[0]["value"]).decode(), int(kvs[0]["mod_revision"])

    def list(self, prefix):
        """(revision, [(value, mod_revision)]) of every key under `prefix`."""
        answer = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        items = [(base64.b64decode(kv["value"]).decode(), int(kv["mod_revision"])) for kv in answer.get("kvs") or []]
        return int(answer["header"]["revision"]), items

    def put_if(self, key, value, mod_revision=None, exists=True):
        """Put `value` only if the key is as expected: absent (exists=False), or at
        `mod_revision`, or present (mod_revision None). The new revision, or None."""
        if not exists:
            compare = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        elif mod_revision is not None:
            compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}
        else:
            compare = {"key": _b64(key), "target": "VERSION", "result": "GREATER", "version": "0"}
        answer = self.call(
            "/v3/kv/txn", {"compare": [compare], "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}]}
        )
        return int(answer["header"]["revision"]) if answer.get("succeeded") else None

    def delete(self, key):
        """The deleted value, or None when there was none."""
        answer = self.call("/v3/kv/deleterange", {"key": _b64(key), "prev_kv": True})
        prev = answer.get("prev_kvs") or []
        return base64.b64decode(prev[0]["value"]).decode() if prev else None


ETCD_CHECK_EVERY_S = 1.0
APISERVER_NEEDS = (
    "bind-address", "tls-cert-file", "tls-private-key-file", "client-ca-file",
    "etcd-servers", "etcd-cafile", "etcd-certfile", "etcd-keyfile",
)  # fmt: skip


def etcd_healthy(servers, cafile, certfile, keyfile, timeout=2.0):
    """(healthy, why): whether any of the etcd client URLs says it is healthy (etcd's /health:
    a leader, so a quorum), over TLS with the apiserver's etcd client certificate. All are asked
    at once, as a client balancing over the endpoints would: a member that is gone does not hold
    up the answer of the others."""
    context = ssl.create_default_context(cafile=cafile)
    context.load_cert_chain(certfile, keyfile)

    def ask(url):
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", context=context, timeout=timeout) as resp:
                return json.loads(resp.read()).get("health") == "true", f"{url}: not healthy"
        except (OSError, ValueError) as err:
            return False, f"{url}: {getattr(err, 'reason', err)}"

    urls = servers.split(",")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(urls))
    why = []
    try:
        for done in concurrent.futures.as_completed([pool.submit(ask, url) for url in urls], timeout=timeout + 1):
            ok, reason = done.result()
            if ok:
                return True, ""
            why.append(reason)
    except concurrent.futures.TimeoutError:
        why.append("no answer in time")
    finally:
        pool.shutdown(wait=False)
    return False, "; ".join(why)


# ---------------------------------------------------------------------------------------------
# The API: resources, paths, authorization


# {(group, version): {plural: (kind, namespaced, short names)}}; custom resources come from the
# CustomResourceDefinitions in etcd
BUILTIN = {
    ("", "v1"): {
        "configmaps": ("ConfigMap", True, ["cm"]),
        "namespaces": ("Namespace", False, ["ns"]),
        "nodes": ("Node", False, ["no"]),
        "pods": ("Pod", True, ["po"]),
        "secrets": ("Secret", True, []),
        "serviceaccounts": ("ServiceAccount", True, ["sa"]),
        "services": ("Service", True, ["svc"]),
    },
    ("apps", "v1"): {"daemonsets": ("DaemonSet", True, ["ds"]), "deployments": ("Deployment", True, ["deploy"])},
    ("rbac.authorization.k8s.io", "v1"): {
        "clusterrolebindings": ("ClusterRoleBinding", False, []),
        "clusterroles": ("ClusterRole", False, []),
    },
    ("coordination.k8s.io", "v1"): {"leases": ("Lease", True, [])},
    ("discovery.k8s.io", "v1"): {"endpointslices": ("EndpointSlice", True, [])},
    ("policy", "v1"): {"poddisruptionbudgets": ("PodDisruptionBudget", True, ["pdb"])},
    ("apiextensions.k8s.io", "v1"): {"customresourcedefinitions": ("CustomResourceDefinition", False, ["crd", "crds"])},
}
VERBS = ["create", "delete", "get", "list", "patch", "update"]
# the groups whose objects the real apiserver keeps under /registry/<plural>/ (the others under
# /registry/<group>/<plural>/)
BARE_KEYS = ("", "apps", "coordination.k8s.io", "discovery.k8s.io", "policy", "rbac.authorization.k8s.io")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRDS = "/registry/apiextensions.k8s.io/customresourcedefinitions/"
# a DNS-1123 subdomain: the names of most objects
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONTROL_PLANE_USERS = ("system:kube-controller-manager", "system:kube-scheduler")


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short = namespaced, list(short)

    @property
    def group_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        """``leases.coordination.k8s.io``: how the real apiserver's messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def key(self, namespace, name=""):
        """The etcd key (or, without a name, the prefix) of the real apiserver's layout."""
        if self.group in BARE_KEYS:
            base = "/registry/" + {"nodes": "minions"}.get(self.plural, self.plural)
        else:
            base = f"/registry/{self.group}/{self.plural}"
        parts = [base] + ([namespace] if self.namespaced and namespace else []) + [name]
        return "/".join(parts)

    def discovery(self):
        return {"name": self.plural, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "verbs": VERBS, "shortNames": self.short}  # fmt: skip


def custom_resources(etcd):
    """The resources the CustomResourceDefinitions in etcd define: {(group, version): {plural: Resource}}."""
    out = {}
    for value, _ in etcd.list(CRDS)[1]:
        spec = json.loads(value).get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            if version.get("served"):
                out.setdefault((spec.get("group"), version.get("name")), {})[names.get("plural")] = Resource(
                    spec.get("group"), version["name"], names.get("plural"), names.get("kind"),
                    spec.get("scope") == "Namespaced", names.get("shortNames", []),
                )  # fmt: skip
    return out


def resources(etcd, with_custom=True):
    out = {
        gv: {plural: Resource(gv[0], gv[1], plural, *spec) for plural, spec in plurals.items()}
        for gv, plurals in BUILTIN.items()
    }
    if with_custom:
        for gv, plurals in custom_resources(etcd).items():
            out.setdefault(gv, {}).update(plurals)
    return out


def route(path):
    """What a path names: ("public", path), ("discovery", group or None, version or None),
    ("resource", group, version, namespace, plural, name, subresource), or None."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[1:]
        if not rest:
            return ("discovery", None, None)
    elif parts[:1] == ["apis"]:
        if len(parts) == 1:
            return ("discovery", None, None)
        if len(parts) == 2:
            return ("discovery", parts[1], None)
        group, rest = parts[1], parts[2:]
    else:
        return None
    version, rest = rest[0], rest[1:]
    if not rest:
        return ("discovery", group, version)
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, plural, rest = rest[1], rest[2], rest[3:]
    else:
        namespace, plural, rest = "", rest[0], rest[1:]
    name = rest[0] if rest else ""
    return ("resource", group, version, namespace, plural, name, "/".join(rest[1:]))


def allowed(user, groups, verb, resource, namespace, name, sub=""):
    """RBAC's bootstrap roles and the Node authorizer, in short (see the module text). A node's
    read or status write of a pod is allowed here; the handler then refuses a pod not bound to
    it (``bound_elsewhere``)."""
    if "system:masters" in groups:
        return True
    if user in CONTROL_PLANE_USERS:
        if verb in ("get", "list"):
            return True
        # the controller-manager's node lifecycle controller (its node-controller service account,
        # with --use-service-account-credentials) marks a silent node's Ready condition Unknown
        if user == "system:kube-controller-manager" and resource.plural == "nodes" and verb in ("update", "patch"):
            return True
        return resource.plural == "leases" and namespace == "kube-system"
    if user == "system:kube-proxy":  # system:node-proxier
        return verb in ("get", "list") and resource.plural in ("nodes", "services", "endpointslices")
    if user.startswith("system:node:") and "system:nodes" in groups:
        node = user[len("system:node:") :]
        if resource.plural == "nodes":
            return verb in ("get", "list") or (name == node and verb in ("create", "update", "patch", "get"))
        if resource.plural == "leases" and namespace == "kube-node-lease":
            return name == node or verb == "list"  # a create names its Lease in the body
        if resource.plural == "pods":
            return verb in ("get", "list") or (sub == "status" and verb in ("update", "patch"))
        return False
    return False


def openapi_v3(known, group_version):
    """The OpenAPI v3 documents kubectl reads before it writes: the index (``/openapi/v3``), and
    per group version the PATCH operations that take ``fieldValidation`` (so kubectl leaves the
    validation to the server, ``fieldValidation=Strict``). No schemas: the stand-in's checks are
    its own (``Api.check``)."""
    paths = {(f"apis/{g}/{v}" if g else f"api/{v}"): (g, v) for g, v in known}
    if not group_version:
        return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash=ksha-lab"} for p in sorted(paths)}}
    if group_version not in paths:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    ops = {}
    for plural, r in sorted(known[paths[group_version]].items()):
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        ops[f"/{group_version}{scope}/{plural}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}}}}  # fmt: skip
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (ksha-lab stand-in)", "version": "unversioned"},
            "paths": ops}  # fmt: skip


# the top-level fields each kind has (fieldValidation=Strict refuses others); a custom resource: any
FIELDS = {
    "ConfigMap": {"data", "binaryData", "immutable"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "Namespace": {"spec", "status"},
    "Node": {"spec", "status"},
    "Lease": {"spec"},
    "CustomResourceDefinition": {"spec", "status"},
    "Service": {"spec", "status"},
    "EndpointSlice": {"addressType", "endpoints", "ports"},
    "Pod": {"spec", "status"},
    "PodDisruptionBudget": {"spec", "status"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "DaemonSet": {"spec", "status"},
    "Deployment": {"spec", "status"},
    "ClusterRole": {"rules", "aggregationRule"},
    "ClusterRoleBinding": {"subjects", "roleRef"},
}
# the Eviction subresource of pods, as the real /api/v1 discovery lists it (kubectl drain evicts
# only when it finds it: CheckEvictionSupport)
EVICTION = {"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy", "version": "v1",
            "kind": "Eviction", "verbs": ["create"]}  # fmt: skip
# the field selectors the real apiserver takes for pods (a few of them) and for every resource
FIELD_LABELS = {"Pod": ("spec.nodeName", "status.phase"), "*": ("metadata.name", "metadata.namespace")}


# the real apiserver's node printer: its columns (priority 1: -o wide only)
NODE_COLUMNS = [
    ("Name", "string", "name", 0), ("Status", "string", "", 0), ("Roles", "string", "", 0),
    ("Age", "string", "", 0), ("Version", "string", "", 0), ("Internal-IP", "string", "", 1),
    ("External-IP", "string", "", 1), ("OS-Image", "string", "", 1), ("Kernel-Version", "string", "", 1),
    ("Container-Runtime", "string", "", 1),
]  # fmt: skip


def age(timestamp):
    """A creation time as the real printers show it (``translateTimestampSince``, in short)."""
    try:
        then = datetime.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    s = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= 2 * size:
            return f"{s // size}{unit}"
    return f"{max(s, 0)}s"


def node_table(nodes, revision):
    """Nodes as a meta.k8s.io/v1 Table, what kubectl asks for (``Accept: ...;as=Table``) to print
    ``get nodes``: Status from the Ready condition (Unknown and False are NotReady), Roles from the
    node-role.kubernetes.io/ labels."""
    rows = []
    for node in nodes:
        meta, status = node["metadata"], node.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        state = "Ready" if ready.get("status") == "True" else "NotReady"
        if (node.get("spec") or {}).get("unschedulable"):
            state += ",SchedulingDisabled"
        prefix = "node-role.kubernetes.io/"
        roles = sorted(k[len(prefix) :] for k in (meta.get("labels") or {}) if k.startswith(prefix))
        info = status.get("nodeInfo") or {}
        address = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        cells = [meta["name"], state, ",".join(roles) or "<none>", age(meta.get("creationTimestamp")),
                 info.get("kubeletVersion", ""), address.get("InternalIP", "<none>"),
                 address.get("ExternalIP", "<none>"), info.get("osImage", ""), info.get("kernelVersion", ""),
                 info.get("containerRuntimeVersion", "")]  # fmt: skip
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(revision)},
        "columnDefinitions": [{"name": n, "type": t, "format": f, "description": n, "priority": p}
                              for n, t, f, p in NODE_COLUMNS],
        "rows": rows,
    }  # fmt: skip


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (a strategic merge patch is taken as one: the same for maps)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def now_rfc3339():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code, reason, message, causes=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes


def fields_match(obj, selector, kind):
    """Whether `obj` passes a field selector (``a.b=v``, ``a.b==v``, ``a.b!=v``, comma-joined);
    a field the real apiserver does not index for `kind` is refused, as it refuses it (400)."""
    for term in filter(None, selector.split(",")):
        parsed = re.match(r"^([^!=]+)(!=|==|=)(.*)$", term)
        if not parsed:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term}")
        field, op, want = parsed.groups()
        if field not in FIELD_LABELS.get(kind, ()) + FIELD_LABELS["*"]:
            raise ApiError(400, "BadRequest", f'"{field}" is not a known field selector: only '
                           f'"{", ".join(FIELD_LABELS.get(kind, ()) + FIELD_LABELS["*"])}"')  # fmt: skip
        value = obj
        for part in field.split("."):
            value = (value or {}).get(part) if isinstance(value, dict) else None
        if (str(value or "") == want) != (op != "!="):
            return False
    return True


def label_selected(selector, labels):
    """A metav1.LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) on
    `labels`; an empty selector selects everything, as a PodDisruptionBudget's does in policy/v1."""
    selector, labels = selector or {}, labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for term in selector.get("matchExpressions") or []:
        key, op, values = term.get("key"), term.get("operator"), term.get("values") or []
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}.get(op, False):  # fmt: skip
            return False
    return True


def pod_ready(pod):
    status = pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return status.get("phase") == "Running" and ready.get("status") == "True"


# one eviction's budget check and deletion at a time (within one stand-in apiserver)
EVICTIONS = threading.Lock()


def eviction_refusal(pod, budgets, pods):
    """None when `pod` may be evicted, else the ApiError the eviction subresource answers (pure):
    its PodDisruptionBudget check, in short (pkg/registry/core/pod/storage/eviction.go). A pod
    that is Pending, Succeeded or Failed, or being deleted, goes whatever the budgets say; a pod
    two budgets select is refused; otherwise the budget's healthy pods (Running and Ready) must
    stay at least an integer minAvailable after it goes, and a pod that is not Ready goes while
    the budget is met (unhealthyPodEvictionPolicy IfHealthyBudget, the default). A budget of
    maxUnavailable or a percentage allows none (stricter than the real one with workload
    controllers, which the stand-in does not serve; as the real one without them). Unlike the
    real one, the pod is deleted at once (no kubelet confirms it), and there is no disruption
    controller: the budget's status is not kept."""
    meta, phase = pod.get("metadata") or {}, (pod.get("status") or {}).get("phase", "Pending")
    if phase in ("Pending", "Succeeded", "Failed") or meta.get("deletionTimestamp"):
        return None
    labels = meta.get("labels") or {}
    mine = [b for b in budgets if label_selected((b.get("spec") or {}).get("selector"), labels)]
    if not mine:
        return None
    if len(mine) > 1:
        return ApiError(500, "InternalError",
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")  # fmt: skip
    spec = mine[0].get("spec") or {}
    members = [p for p in pods if label_selected(spec.get("selector"), (p.get("metadata") or {}).get("labels"))]
    healthy = sum(1 for p in members if pod_ready(p))
    if isinstance(spec.get("minAvailable"), int):
        desired, allowed = spec["minAvailable"], healthy - spec["minAvailable"]
    else:
        # maxUnavailable or a percentage: the real disruption controller reads the expected
        # count from the pods' controllers' scale; the stand-in serves no workload controllers,
        # and the real one, finding none, allows no disruption
        desired, allowed = len(members), 0
    # a pod that is not Ready goes while the budget is met (IfHealthyBudget, the default)
    if allowed > 0 or (not pod_ready(pod) and desired > 0 and healthy >= desired):
        return None
    name = mine[0]["metadata"]["name"]
    return ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                    [{"type": "DisruptionBudget",
                      "message": f"The disruption budget {name} needs {desired} healthy pods and has {healthy} currently"}])  # fmt: skip


def not_found(resource, name):
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found')


class Api:
    """The objects in etcd, as the apiserver's REST storage keeps them."""

    def __init__(self, etcd):
        self.etcd = etcd

    def decode(self, resource, value, revision):
        obj = json.loads(value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
        obj["apiVersion"], obj["kind"] = resource.group_version, resource.kind
        return obj

    def get(self, resource, namespace, name):
        value, revision = self.etcd.get(resource.key(namespace, name))
        if value is None:
            raise not_found(resource, name)
        return self.decode(resource, value, revision)

    def list(self, resource, namespace, selector="", fields=""):
        revision, items = self.etcd.list(resource.key(namespace))
        objects = [self.decode(resource, value, rev) for value, rev in items]
        wanted = [tuple(term.split("=", 1)) for term in selector.split(",") if "=" in term]
        objects = [o for o in objects if all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted)]
        objects = [o for o in objects if fields_match(o, fields, resource.kind)]
        return {"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                "metadata": {"resourceVersion": str(revision)}, "items": objects}  # fmt: skip

    def check(self, resource, namespace, obj, name=None, strict=False):
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        unknown = sorted(set(obj) - {"apiVersion", "kind", "metadata"} - FIELDS[resource.kind]) if (
            isinstance(obj, dict) and strict and resource.kind in FIELDS) else []  # fmt: skip
        if unknown:
            raise ApiError(400, "BadRequest", f'strict decoding error: unknown field "{unknown[0]}"')
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ApiError(400, "BadRequest", "metadata.name: Required value: name or generateName is required")
        if obj.get("kind") != resource.kind or obj.get("apiVersion") != resource.group_version:
            raise ApiError(400, "BadRequest", f"the object is not a {resource.group_version} {resource.kind}")
        if name is not None and meta["name"] != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if resource.namespaced and meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest",
                           "the namespace of the provided object does not match the namespace sent on the request")  # fmt: skip
        if not NAME.match(meta["name"]) or len(meta["name"]) > 253:
            raise ApiError(422, "Invalid", f'{resource.kind} "{meta["name"]}" is invalid: metadata.name: Invalid value')
        if resource.namespaced:
            meta["namespace"] = namespace
            if self.etcd.get(f"/registry/namespaces/{namespace}")[0] is None:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')

    def create(self, resource, namespace, obj, strict=False):
        self.check(resource, namespace, obj, strict=strict)
        meta = obj["metadata"]
        meta.pop("resourceVersion", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if resource.plural == "customresourcedefinitions":
            obj["status"] = {"acceptedNames": obj.get("spec", {}).get("names", {}), "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]}  # fmt: skip
        revision = self.etcd.put_if(resource.key(namespace, meta["name"]), json.dumps(obj), exists=False)
        if revision is None:
            raise ApiError(409, "AlreadyExists", f'{resource.qualified} "{meta["name"]}" already exists')
        return self.decode(resource, json.dumps(obj), revision)

    def update(self, resource, namespace, name, obj, old=None, strict=False):
        """Replace the object; a resourceVersion in `obj` must be the stored one (409 else)."""
        self.check(resource, namespace, obj, name, strict)
        old = old or self.get(resource, namespace, name)
        meta = obj["metadata"]
        wanted = meta.pop("resourceVersion", None)
        meta.update(uid=old["metadata"].get("uid"), creationTimestamp=old["metadata"].get("creationTimestamp"))
        revision = self.etcd.put_if(resource.key(namespace, name), json.dumps(obj), int(wanted) if wanted else None)
        if revision is None:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource.qualified} "{name}": the '
                                            "object has been modified; please apply your changes to the latest "
                                            "version and try again")  # fmt: skip
        return self.decode(resource, json.dumps(obj), revision)

    def patch(self, resource, namespace, name, patch, strict=False):
        for _ in range(5):  # a concurrent writer: read again, as the real one does
            old = self.get(resource, namespace, name)
            new = merge_patch(old, patch)
            new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
            try:
                return self.update(resource, namespace, name, new, old, strict)
            except ApiError as err:
                if err.code != 409:
                    raise
        raise ApiError(409, "Conflict", f'{resource.qualified} "{name}": too many concurrent writers')

    def delete(self, resource, namespace, name):
        value = self.etcd.delete(resource.key(namespace, name))
        if value is None:
            raise not_found(resource, name)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": resource.plural}}  # fmt: skip

    def evict(self, pods, namespace, name):
        """The eviction subresource: `name` deleted unless a PodDisruptionBudget refuses
        (``eviction_refusal``). Deleted at once: no kubelet stops containers in the lab."""
        with EVICTIONS:  # kubectl drain evicts in parallel: one check-and-delete at a time
            pod = self.get(pods, namespace, name)
            budgets = resources(self.etcd, with_custom=False)[("policy", "v1")]["poddisruptionbudgets"]
            found = self.list(budgets, namespace)["items"]
            refusal = eviction_refusal(pod, found, self.list(pods, namespace)["items"])
            if refusal:
                raise refusal
            self.delete(pods, namespace, name)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def bootstrap(self):
        """The system namespaces, as the real apiserver's post-start hook makes them."""
        namespaces = resources(self.etcd, with_custom=False)[("", "v1")]["namespaces"]
        for ns in SYSTEM_NAMESPACES:
            try:
                self.create(namespaces, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            except ApiError as err:
                if err.code != 409:
                    raise


class TLSServer(http.server.ThreadingHTTPServer):
    """TLS per connection, in the connection's own thread: a client that never says hello (a TCP
    health check) holds up nobody else."""

    daemon_threads = True

    def __init__(self, address, handler, context, settings):
        super().__init__(address, handler)
        self.context, self.settings = context, settings
        self.lock = threading.Lock()
        self.checked = (float("-inf"), (False, "not checked yet"))
        self.etcd = Etcd(*(settings[k] for k in ("etcd-servers", "etcd-cafile", "etcd-certfile", "etcd-keyfile")))
        self.api = Api(self.etcd)
        self.bootstrapped = threading.Event()
        # graceful termination (SIGTERM): /readyz fails from then on; requests in flight finish.
        # Each connection's thread: (state, since), state "new" (accepted, its first request not
        # read yet: TLS, headers), "active" (a request being served) or "idle" (kept alive)
        self.terminating = threading.Event()
        self.flight = threading.Condition()
        self.states = {}

    def etcd_health(self):
        """etcd's health, asked at most once a second (the LB's checks come several a second)."""
        with self.lock:
            at, result = self.checked
            if time.monotonic() - at >= ETCD_CHECK_EVERY_S:
                keys = ("etcd-servers", "etcd-cafile", "etcd-certfile", "etcd-keyfile")
                result = etcd_healthy(*(self.settings[k] for k in keys))
                self.checked = (time.monotonic(), result)
            return result

    def bootstrap_until_done(self):
        while True:
            try:
                self.api.bootstrap()
            except (EtcdError, ApiError, KeyError, ValueError) as err:
                log(f"creating the system namespaces: {err}; trying again")
                time.sleep(1)
                continue
            self.bootstrapped.set()
            return

    def terminate(self, delay):
        """What the real apiserver does on SIGTERM: /readyz fails at once while it keeps serving
        for --shutdown-delay-duration; then it stops listening (serve_forever returns) and the
        requests in flight finish (``drain``)."""
        self.terminating.set()
        log(f"received SIGTERM: /readyz fails; serving {delay:g} s more (--shutdown-delay-duration), then draining")
        time.sleep(delay)
        # the listener closes now, as Go's Shutdown closes it: the LB's next connections are
        # refused (and sent elsewhere). shutdown() first: a close alone leaves the socket
        # listening while serve_forever's poll() holds it (up to its 0.5 s poll interval), and
        # the connections it takes meanwhile are reset at exit
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.socket.close()
        self.shutdown()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return  # a client gone mid-answer (haproxy's checks hang up after the status line)
        super().handle_error(request, client_address)

    def set_state(self, state):
        """This connection's (thread's) state; None: closed."""
        with self.flight:
            if state is None:
                self.states.pop(threading.get_ident(), None)
            else:
                self.states[threading.get_ident()] = (state, time.monotonic())
            self.flight.notify_all()

    def drain(self, timeout=60):
        """Wait until no request is being served and every new connection has sent its request
        (one silent for NEW_CONNECTION_GRACE_S is given up), as Go's http.Server.Shutdown waits;
        idle kept-alive connections are closed at exit. Whether it drained in `timeout` s."""
        deadline = time.monotonic() + timeout

        def busy():
            now = time.monotonic()
            return any(s == "active" or (s == "new" and now - t < NEW_CONNECTION_GRACE_S)
                       for s, t in self.states.values())  # fmt: skip

        with self.flight:
            while busy():
                if time.monotonic() >= deadline:
                    return False
                self.flight.wait(0.1)
        return True

    def finish_request(self, request, client_address):
        request.settimeout(10)
        self.set_state("new")
        try:
            try:
                tls = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            try:
                self.RequestHandlerClass(tls, client_address, self)
            finally:
                tls.close()
        finally:
            self.set_state(None)


PUBLIC = ("/livez", "/healthz", "/readyz", "/version")
NEW_CONNECTION_GRACE_S = 5  # Go's http.Server.Shutdown: a new connection silent this long counts as idle


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body, content_type="text/plain; charset=utf-8"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def json(self, code, obj):
        self.reply(code, json.dumps(obj), "application/json")

    def status(self, code, reason, message, causes=None):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "code": code}  # fmt: skip
        if causes:
            body["details"] = {"causes": causes}
        self.json(code, body)

    def identity(self):
        """(user, groups) of the client certificate: CN and O, as the x509 authenticator maps them."""
        cert = self.connection.getpeercert()
        if not cert:
            return "system:anonymous", ["system:unauthenticated"]
        subject = [attr for rdn in cert.get("subject", ()) for attr in rdn]
        user = next((v for k, v in subject if k == "commonName"), "")
        return user, [v for k, v in subject if k == "organizationName"] + ["system:authenticated"]

    def public(self, path):
        settings = self.server.settings
        if path in ("/livez", "/healthz"):
            self.reply(200, "ok")
        elif path == "/readyz":
            ok, why = self.server.etcd_health()
            if self.server.terminating.is_set():
                self.reply(500, "[-]shutdown failed: reason withheld\nreadyz check failed\n")
            elif not ok:
                self.reply(500, f"[-]etcd failed: {why}\nreadyz check failed\n")
            elif not self.server.bootstrapped.is_set():
                self.reply(500, "[-]poststarthook/bootstrap-namespaces failed: not finished\nreadyz check failed\n")
            else:
                self.reply(200, "ok")
        else:
            major, minor = settings["version"].lstrip("v").split(".")[:2]
            self.json(200, {"major": major, "minor": minor, "gitVersion": settings["version"],
                            "gitCommit": "ksha-lab-stand-in", "platform": "linux/amd64"})  # fmt: skip

    def discovery(self, group, version):
        known = resources(self.server.etcd)
        if group is None:
            if self.path.split("?")[0].rstrip("/") == "/api":
                settings = self.server.settings
                address = f"{settings.get('advertise-address') or settings['bind-address']}:{settings.get('secure-port') or 6443}"
                return self.json(200, {"kind": "APIVersions", "versions": ["v1"],
                                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                       "serverAddress": address}]})  # fmt: skip
            groups = {}
            for g, v in sorted(known):
                if g:
                    groups.setdefault(g, []).append({"groupVersion": f"{g}/{v}", "version": v})
            return self.json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": vs, "preferredVersion": vs[0]} for g, vs in groups.items()]})  # fmt: skip
        if version is None:
            vs = [{"groupVersion": f"{group}/{v}", "version": v} for g, v in sorted(known) if g == group]
            if not vs:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs,
                                   "preferredVersion": vs[0]})  # fmt: skip
        if (group, version) not in known:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = f"{group}/{version}" if group else version
        listed = [r.discovery() for _, r in sorted(known[(group, version)].items())]
        self.json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                        "resources": listed + ([EVICTION] if gv == "v1" else [])})  # fmt: skip

    def bound_elsewhere(self, user, groups, resource, namespace, name):
        """A node asking for one pod that is not bound to it (the Node authorizer's graph, in short)."""
        if resource.plural != "pods" or not name or not user.startswith("system:node:") or "system:masters" in groups:
            return False
        try:
            pod = self.server.api.get(resource, namespace, name)
        except ApiError:
            return True  # the real one knows no relationship to a pod it has not seen
        return (pod.get("spec") or {}).get("nodeName") != user[len("system:node:") :]

    def body(self):
        try:
            return json.loads(self.raw or b"null")
        except ValueError as err:
            raise ApiError(400, "BadRequest", f"the body is not JSON: {err}") from None

    def handle_api(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        path = url.path.rstrip("/") or "/"
        if method == "GET" and path in PUBLIC:
            return self.public(path)
        user, groups = self.identity()
        target = route(path)
        if user == "system:anonymous":
            raise ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {method.lower()} path "{path}"')
        if method == "GET" and (path == "/openapi/v3" or path.startswith("/openapi/v3/")):
            return self.json(200, openapi_v3(resources(self.server.etcd), path[len("/openapi/v3/") :]))
        if target is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource (ksha-lab stand-in)")
        if target[0] == "discovery":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on discovery")
            return self.discovery(target[1], target[2])
        _, group, version, namespace, plural, name, sub = target
        resource = resources(self.server.etcd).get((group, version), {}).get(plural)
        evicting = sub == "eviction" and plural == "pods" and bool(name)
        if resource is None or (sub not in ("", "status") and not evicting):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if evicting:
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on pods/eviction")
            if not allowed(user, groups, "create", resource, namespace, name, sub):
                raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: User "{user}" cannot create resource '
                                                 f'"pods/eviction" in API group "" in the namespace "{namespace}"')  # fmt: skip
            return self.json(201, self.server.api.evict(resource, namespace, name))
        if query.get("watch", ["false"])[0] in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "watch is not served by the ksha-lab stand-in")
        verb = {("GET", True): "get", ("GET", False): "list", ("POST", False): "create", ("PUT", True): "update",
                ("PATCH", True): "patch", ("DELETE", True): "delete"}.get((method, bool(name)))  # fmt: skip
        if verb is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")
        # a create names its object in the body (NodeRestriction: a node creates only its own Node)
        obj = self.body() if verb == "create" else None
        named = str((obj.get("metadata") or {}).get("name", "")) if isinstance(obj, dict) else name
        if not allowed(user, groups, verb, resource, namespace, named, sub) or self.bound_elsewhere(
            user, groups, resource, namespace, name
        ):
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            subject = f'{resource.qualified} "{name}"' if name else resource.qualified
            raise ApiError(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot {verb} resource '
                                             f'"{plural}" in API group "{group}"{where}')  # fmt: skip
        api = self.server.api
        strict = query.get("fieldValidation", [""])[0] == "Strict"
        table = resource.plural == "nodes" and "as=Table" in (self.headers.get("Accept") or "")
        if verb == "get":
            found = api.get(resource, namespace, name)
            return self.json(200, node_table([found], found["metadata"]["resourceVersion"]) if table else found)
        if verb == "list":
            listed = api.list(resource, namespace, query.get("labelSelector", [""])[0],
                              query.get("fieldSelector", [""])[0])  # fmt: skip
            return self.json(
                200, node_table(listed["items"], listed["metadata"]["resourceVersion"]) if table else listed
            )
        if verb == "create":
            return self.json(201, api.create(resource, namespace, self.body(), strict))
        if verb == "update":
            return self.json(200, api.update(resource, namespace, name, self.body(), strict=strict))
        if verb == "delete":
            return self.json(200, api.delete(resource, namespace, name))
        kind = (self.headers.get("Content-Type") or "").split(";")[0]
        if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the ksha-lab stand-in takes merge patches only, not {kind}")
        return self.json(200, api.patch(resource, namespace, name, self.body(), strict))

    def parse_request(self):
        self.server.set_state("active")  # its request line is read
        return super().parse_request()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            if self.server.terminating.is_set():
                self.close_connection = True  # no keep-alive past termination
            self.server.set_state("idle")

    def serve(self, method):
        # every request's body is read, used or not (a DELETE's options): the connection is kept
        self.raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.handle_api(method)
        except ApiError as err:
            self.status(err.code, err.reason, err.message, err.causes)
        except EtcdError as err:
            self.status(500, "InternalError", f"etcd: {err}")

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.serve("GET")

    def do_POST(self):  # noqa: N802
        self.serve("POST")

    def do_PUT(self):  # noqa: N802
        self.serve("PUT")

    def do_PATCH(self):  # noqa: N802
        self.serve("PATCH")

    def do_DELETE(self):  # noqa: N802
        self.serve("DELETE")

    def log_message(self, *args):
        pass


def sd_notify(message):
    """Tell systemd (Type=notify units) what the real components tell it; nothing outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def serve_apiserver(version, flags):
    missing = [f"--{name}" for name in APISERVER_NEEDS if not flags.get(name)]
    if missing:
        print(f"Error: ksha-lab stand-in kube-apiserver needs {', '.join(missing)}", file=sys.stderr)
        return 1
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(flags["tls-cert-file"], flags["tls-private-key-file"])
        context.load_verify_locations(flags["client-ca-file"])
    except (OSError, ssl.SSLError) as err:
        print(f"Error: failed to load the serving certificate or client CA: {err}", file=sys.stderr)
        return 1
    context.verify_mode = ssl.CERT_OPTIONAL
    address = (flags["bind-address"], int(flags.get("secure-port") or 6443))
    try:
        server = TLSServer(address, ApiHandler, context, {**flags, "version": version})
    except (OSError, ssl.SSLError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    threading.Thread(target=server.bootstrap_until_done, daemon=True).start()
    print(f"ksha-lab STAND-IN kube-apiserver {version} (not the real one) serving on {address[0]}:{address[1]}",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        delay = seconds(flags.get("shutdown-delay-duration") or "0s")
    except ValueError as err:
        print(f"Error: invalid argument for --shutdown-delay-duration: {err}", file=sys.stderr)
        return 1
    # the handler runs in this (the main) thread, which serve_forever holds: terminate elsewhere
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.terminate, args=(delay,)).start())
    sd_notify("READY=1")
    server.serve_forever()
    drained = server.drain()
    log("terminated" + ("" if drained else " with requests still in flight after 60 s"))
    return 0


# ---------------------------------------------------------------------------------------------
# kube-controller-manager and kube-scheduler: client-go's leader election on a Lease


class Client:
    """An API client from a kubeconfig (its current context), as client-go builds one."""

    def __init__(self, path, timeout):
        import yaml  # python3-yaml: kubeconfigs are YAML

        with open(path) as f:
            conf = yaml.safe_load(f)
        base = os.path.dirname(os.path.abspath(path))
        current = conf["current-context"]
        context = next(c["context"] for c in conf["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in conf["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in conf["users"] if u["name"] == context["user"])
        self.server, self.timeout = cluster["server"].rstrip("/"), timeout
        self._local = threading.local()  # each thread its own kept-alive connection
        self.context = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            self.context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        else:
            self.context.load_verify_locations(os.path.join(base, cluster["certificate-authority"]))
        with tempfile.TemporaryDirectory(prefix="ksha-standin-") as scratch:  # embedded data: gone once loaded
            cert, key = (self._file(user, base, field, scratch) for field in ("client-certificate", "client-key"))
            self.context.load_cert_chain(cert, key)

    @staticmethod
    def _file(user, base, field, scratch):
        if user.get(f"{field}-data"):
            path = os.path.join(scratch, field)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                out.write(base64.b64decode(user[f"{field}-data"]))
            return path
        return os.path.join(base, user[field])

    def request(self, method, path, body=None):
        """(status, object or None); status 0 when the apiserver did not answer. Over one kept-alive
        connection per thread, as client-go keeps its connections (no TLS handshake per request);
        one that the other end closed while idle is opened again once."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if fresh:
                url = urllib.parse.urlsplit(self.server)
                conn = self._local.conn = http.client.HTTPSConnection(
                    url.hostname, url.port or 443, context=self.context, timeout=self.timeout
                )
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                self.close()
                if fresh or attempt == 2:
                    log(f"error talking to {self.server}: {err}")
                    return 0, None
                continue  # an idle connection the other end had closed: once more on a new one
            except (OSError, http.client.HTTPException) as err:
                self.close()
                log(f"error talking to {self.server}: {getattr(err, 'reason', err)}")
                return 0, None
            if resp.will_close:
                self.close()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, None
        return 0, None

    def close(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


JITTER = 1.2  # client-go's JitterFactor


def micro_time():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(text):
    """A Go duration in seconds: ``0``, or numbers with units ms, s, m, h (``500ms``, ``1m30s``)."""
    text = str(text)
    if text == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


class Elector:
    """client-go's LeaseLock leader election: a standby takes the Lease once it has seen the same
    holder and renewTime for a whole lease duration (its own clock, not the holder's)."""

    def __init__(self, client, namespace, name, identity, duration, deadline, retry):
        if duration <= deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if deadline <= JITTER * retry:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        self.client, self.identity = client, identity
        self.duration, self.deadline, self.retry = duration, deadline, retry
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name, self.observed, self.observed_at = name, None, 0.0
        self.leading = False  # while it holds the Lease: its controllers run (their own threads)

    def try_acquire_or_renew(self):
        now = micro_time()
        status, lease = self.client.request("GET", f"{self.path}/{self.name}")
        if status == 404:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}  # fmt: skip
            status, _ = self.client.request("POST", self.path, body)
            if status == 201:
                self.observed, self.observed_at = (self.identity, now), time.monotonic()
                return True
            return False
        if status != 200:
            return False
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"))
        if record != self.observed:
            self.observed, self.observed_at = record, time.monotonic()
        holder = spec.get("holderIdentity")
        mine = holder == self.identity
        if (
            holder
            and not mine
            and self.observed_at + spec.get("leaseDurationSeconds", self.duration) > time.monotonic()
        ):
            return False
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "acquireTime": spec.get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": spec.get("leaseTransitions", 0) + (0 if mine or not holder else 1),
        }
        status, _ = self.client.request("PUT", f"{self.path}/{self.name}", lease)
        if status == 200:
            self.observed, self.observed_at = (self.identity, now), time.monotonic()
            return True
        return False

    def run(self):
        """Acquire (retrying with client-go's jitter), then renew every retry period; returns when
        a renewal did not succeed within the renew deadline (leadership lost)."""
        where = f"{self.path.split('/namespaces/')[1].split('/')[0]}/{self.name}"
        log(f"attempting to acquire leader lease {where}...")
        while not self.try_acquire_or_renew():
            time.sleep(self.retry + random.random() * JITTER * self.retry)
        log(f"successfully acquired lease {where} as {self.identity}")
        self.leading = True
        while True:
            time.sleep(self.retry)
            give_up = time.monotonic() + self.deadline
            while not self.try_acquire_or_renew():
                if time.monotonic() >= give_up:
                    self.leading = False
                    log(f"failed to renew lease {where}: timed out waiting for the condition")
                    return
                time.sleep(self.retry)


# the files a controller-manager flag names that it reads at start (a missing one stops it)
CONTROLLER_MANAGER_FILES = (
    "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "root-ca-file",
    "service-account-private-key-file", "requestheader-client-ca-file",
)  # fmt: skip


def election_settings(component, flags):
    """(kubeconfig, lease namespace, lease name, duration, deadline, retry, elect) from the
    component's flags (the scheduler's from its --config file), or an error (a str)."""
    if component == "kube-scheduler":
        if not flags.get("config"):
            return "ksha-lab stand-in kube-scheduler needs --config (ksha writes one)"
        import yaml

        try:
            with open(flags["config"]) as f:
                conf = yaml.safe_load(f)
        except OSError as err:
            return f"open {flags['config']}: {(err.strerror or str(err)).lower()}"
        if (
            conf.get("apiVersion") != "kubescheduler.config.k8s.io/v1"
            or conf.get("kind") != "KubeSchedulerConfiguration"
        ):
            return f'no kind "{conf.get("kind")}" is registered for version "{conf.get("apiVersion")}"'
        election = conf.get("leaderElection") or {}
        kubeconfig = (conf.get("clientConnection") or {}).get("kubeconfig")
        values = (election.get("leaseDuration", "15s"), election.get("renewDeadline", "10s"),
                  election.get("retryPeriod", "2s"))  # fmt: skip
        where = (election.get("resourceNamespace", "kube-system"), election.get("resourceName", component))
        elect = election.get("leaderElect", True)
    else:
        for name in CONTROLLER_MANAGER_FILES:
            if flags.get(name) and not os.access(flags[name], os.R_OK):
                return f"open {flags[name]}: no such file or directory"
        kubeconfig = flags.get("kubeconfig")
        values = (flags.get("leader-elect-lease-duration", "15s"), flags.get("leader-elect-renew-deadline", "10s"),
                  flags.get("leader-elect-retry-period", "2s"))  # fmt: skip
        where = (flags.get("leader-elect-resource-namespace", "kube-system"),
                 flags.get("leader-elect-resource-name", component))  # fmt: skip
        elect = flags.get("leader-elect", "true") in (None, "true")
    if not kubeconfig:
        return "invalid configuration: no configuration has been provided"
    try:
        duration, deadline, retry = (seconds(v) for v in values)
    except ValueError as err:
        return str(err)
    return kubeconfig, where[0], where[1], duration, deadline, retry, elect


def run_elected(component, version, flags):
    settings = election_settings(component, flags)
    if isinstance(settings, str):
        print(f"Error: {settings}", file=sys.stderr)
        return 1
    kubeconfig, namespace, name, duration, deadline, retry, elect = settings
    try:
        client = Client(kubeconfig, timeout=deadline)
    except (OSError, KeyError, StopIteration, ssl.SSLError, ValueError) as err:
        print(f"Error: invalid kubeconfig {kubeconfig}: {err}", file=sys.stderr)
        return 1
    what = (
        "leader election and, as leader, the node lifecycle's Unknown"
        if component == "kube-controller-manager"
        else "leader election only"
    )
    log(f"ksha-lab STAND-IN {component} {version} (not the real one): {what}")
    if not elect:
        while True:
            time.sleep(3600)
    identity = f"{socket.gethostname()}_{uuid.uuid4()}"
    try:
        elector = Elector(client, namespace, name, identity, duration, deadline, retry)
    except ValueError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    if component == "kube-controller-manager":
        try:
            monitor = NodeMonitor(client, seconds(flags.get("node-monitor-grace-period") or "40s"),
                                  seconds(flags.get("node-monitor-period") or "5s"))  # fmt: skip
        except ValueError as err:
            print(f"Error: {err}", file=sys.stderr)
            return 1
        threading.Thread(target=monitor.run, args=(elector,), daemon=True).start()
    elector.run()
    log("leaderelection lost")
    return 1


# ---------------------------------------------------------------------------------------------
# kube-controller-manager's node lifecycle controller, in short


class NodeMonitor:
    """What the node lifecycle controller does to a node whose kubelet went silent: once neither
    its Lease in kube-node-lease nor its Ready condition was renewed within
    --node-monitor-grace-period, the Ready condition becomes Unknown (NodeStatusUnknown, "Kubelet
    stopped posting node status."). Run by the leader only, every --node-monitor-period. It
    evicts nothing and taints nothing."""

    def __init__(self, client, grace, period):
        self.client, self.grace, self.period = client, grace, period

    def run(self, elector):
        """Every period while `elector` leads (its own thread: the Lease's renewals never wait for it)."""
        while True:
            time.sleep(self.period)
            if elector.leading:
                self.tick()

    def tick(self):
        status, nodes = self.client.request("GET", "/api/v1/nodes")
        lstatus, leases = self.client.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        if status != 200 or lstatus != 200:
            return
        renewed = {x["metadata"]["name"]: parse_time((x.get("spec") or {}).get("renewTime")) for x in leases["items"]}
        now = time.time()
        for node in nodes["items"]:
            name = node["metadata"]["name"]
            conditions = (node.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "Unknown":
                continue
            heard = max(renewed.get(name) or 0.0, parse_time(ready.get("lastHeartbeatTime")) or 0.0)
            if now - heard <= self.grace:
                continue
            ready.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                         lastTransitionTime=now_rfc3339())  # fmt: skip
            code, _ = self.client.request("PUT", f"/api/v1/nodes/{name}/status", node)
            log(f"node {name}: no status for {now - heard:.0f}s, Ready=Unknown ({code})")


def parse_time(text):
    """An RFC 3339 time (with or without fractions) as a Unix time, or None."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# kubelet and kube-proxy: their configuration files, as the real ones decode them


def config_problem(conf, kind):
    """What the stand-in refuses in a component's configuration file (None: nothing): another
    kind or apiVersion, or a field that is not in the pinned version's reference (KNOWN_FIELDS,
    written in front by release.py from ksha/data/kubernetes-config-fields.yaml). The real
    kubelet and kube-proxy refuse another kind; for an unknown field both fall back to lenient
    decoding and only log it: the stand-in is stricter and refuses it, so that a misspelt field
    in ksha's files never passes the lab unnoticed (ksha's validator refuses one in pillar too)."""
    spec = KNOWN_FIELDS  # noqa: F821 - written in front by release.py
    if not isinstance(conf, dict):
        return f"the configuration is not a {kind}"
    if conf.get("kind") != kind or conf.get("apiVersion") != spec["apiVersion"]:
        return f'no kind "{conf.get("kind")}" is registered for version "{conf.get("apiVersion")}"'
    maps = set(spec.get("maps", ()))

    def walk(obj, fields, where):
        for key in obj:
            if key not in fields:
                return f'strict decoding error: unknown field "{where}{key}"'
            path = f"{where}{key}"
            nested = spec.get("nested", {}).get(path)
            if nested is not None and isinstance(obj[key], dict) and path not in maps:
                problem = walk(obj[key], set(nested), path + ".")
                if problem:
                    return problem
        return None

    return walk(conf, set(spec["fields"]), "")


def load_config(path, kind):
    """(the configuration, None) or (None, the error the component prints)."""
    import yaml

    try:
        with open(path) as f:
            conf = yaml.safe_load(f)
    except OSError as err:
        return None, f"failed to load {path}: open {path}: {(err.strerror or str(err)).lower()}"
    except yaml.YAMLError as err:
        return None, f"failed to load {path}: {err}"
    problem = config_problem(conf, kind)
    return (None, f"failed to load {path}: {problem}") if problem else (conf, None)


def serve_http(address, port, handler_fn, context=None):
    """A threaded HTTP(S) server in the background: handler_fn(handler) -> (code, body)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            code, body = handler_fn(self)
            data = body.encode()
            self.send_response(code)
            self.send_header(
                "Content-Type", "text/plain; charset=utf-8" if not body.startswith("{") else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def cri_ready(endpoint):
    """(whether containerd's CRI plugin answers on the configured socket, why not), asked with
    containerd's own client: ``ctr --address <socket> plugins ls``."""
    if not endpoint.startswith("unix://"):
        return False, f"unsupported container runtime endpoint {endpoint}"
    socket_path = endpoint[len("unix://") :]
    try:
        out = subprocess.run(["ctr", "--address", socket_path, "--connect-timeout", "2s", "plugins", "ls"],
                             capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"container runtime is down: {err}"
    if out.returncode != 0:
        return False, "container runtime is down: " + (out.stderr.strip().splitlines() or ["no answer"])[-1]
    for line in out.stdout.splitlines():
        cols = line.split()
        if cols[:2] == ["io.containerd.grpc.v1", "cri"]:
            return (cols[-1] == "ok"), ("" if cols[-1] == "ok" else f"container runtime not ready: cri {cols[-1]}")
    return False, "container runtime not ready: no CRI plugin"


def runtime_version(socket_path):
    """``containerd://<version>`` as containerd answers it, "" while it does not."""
    try:
        out = subprocess.run(["ctr", "--address", socket_path, "--connect-timeout", "2s", "version"],
                             capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = re.search(r"Server:\s+Version:\s+(\S+)", out.stdout)
    return f"containerd://{found[1]}" if found else ""


class Kubelet:
    """The stand-in kubelet's work: register the Node, post its status (Ready while the CRI plugin
    answers), renew its Lease in kube-node-lease."""

    def __init__(self, client, name, ip, version, conf):
        self.client, self.name, self.ip, self.version, self.conf = client, name, ip, version, conf
        self.endpoint = conf.get("containerRuntimeEndpoint") or "unix:///run/containerd/containerd.sock"
        self.lease_s = int(conf.get("nodeLeaseDurationSeconds", 40))
        self.port = int(conf.get("port", 10250))
        # as the real one: it computes its status every nodeStatusUpdateFrequency, posts it when it
        # changed or nodeStatusReportFrequency has passed; the Lease is the heartbeat in between
        self.report_s = seconds(conf.get("nodeStatusReportFrequency", "5m"))
        self.registered, self.ready, self.posted = False, None, float("-inf")

    def node(self, ready, why, now):
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}  # fmt: skip
        return {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": labels},
            "spec": {},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "nodeInfo": {"kubeletVersion": self.version, "kubeProxyVersion": self.version,
                             "containerRuntimeVersion": runtime_version(self.endpoint[len("unix://"):]),
                             "operatingSystem": "linux", "architecture": "amd64",
                             "osImage": "ksha-lab stand-in kubelet"},
                "conditions": [self.condition(ready, why, now, now)],
            },
        }  # fmt: skip

    @staticmethod
    def condition(ready, why, heartbeat, transition):
        return {"type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else why,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition}  # fmt: skip

    def sync_status(self):
        ready, why = cri_ready(self.endpoint)
        now = now_rfc3339()
        path = f"/api/v1/nodes/{self.name}"
        if not self.registered:
            status, _ = self.client.request("POST", "/api/v1/nodes", self.node(ready, why, now))
            if status == 201:
                log(f"Successfully registered node {self.name}")
            elif status != 409:
                log(f"Unable to register node {self.name} with API server: {status}")
                return
            self.registered = True
            if status == 201:
                self.ready, self.posted = ready, time.monotonic()
                return
        status, node = self.client.request("GET", path)
        if status == 404:
            self.registered = False  # deleted from the API: register again, as the real one does
            return
        if status != 200:
            log(f"Error updating node status, will retry: {status}")
            return
        conditions = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") != "Ready"]
        old = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
        same = old.get("status") == ("True" if ready else "False")
        info = dict((node.get("status") or {}).get("nodeInfo") or {})
        want = {**info, "kubeletVersion": self.version, "kubeProxyVersion": self.version}
        # the runtime's version, asked when the runtime comes (back) up: one ctr process less per
        # status check (the lab's idle load)
        if ready and (self.ready is not True or not info.get("containerRuntimeVersion")):
            want["containerRuntimeVersion"] = runtime_version(self.endpoint[len("unix://") :]) or info.get(
                "containerRuntimeVersion", ""
            )
        addresses = [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}]
        unchanged = same and want == info and node["status"].get("addresses") == addresses
        if unchanged and time.monotonic() - self.posted < self.report_s:
            return  # what the API holds is what it would post (another writer's Unknown is not)
        node["status"]["nodeInfo"] = want
        node.setdefault("status", {})["conditions"] = conditions + [
            self.condition(ready, why, now, old.get("lastTransitionTime", now) if same else now)
        ]
        node["status"]["addresses"] = addresses
        status, _ = self.client.request("PUT", path + "/status", node)
        if status != 200:
            log(f"Error updating node status, will retry: {status}")
            return
        if ready != self.ready:
            log(f"Node {self.name} is {'Ready' if ready else 'NotReady'}{'' if ready else ': ' + why}")
        self.ready, self.posted = ready, time.monotonic()

    def sync_pods(self):
        """The pods bound to this node reported Running and Ready while the node is Ready. No
        container is started: no image can be pulled in the lab (the stand-in says so)."""
        if not self.ready:
            return
        status, listed = self.client.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.name}")
        if status != 200:
            return
        for pod in listed.get("items") or []:
            if (pod.get("status") or {}).get("phase") == "Running":
                continue
            meta, now = pod["metadata"], now_rfc3339()
            pod["status"] = {
                "phase": "Running", "hostIP": self.ip, "startTime": now,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            }  # fmt: skip
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            status, _ = self.client.request("PUT", path, pod)
            if status == 200:
                log(f"pod {meta['namespace']}/{meta['name']} reported Running (stand-in: no container started)")

    def renew_lease(self):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": self.lease_s, "renewTime": micro_time()}
        status, lease = self.client.request("GET", path)
        if status == 404:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-node-lease"}, "spec": spec}  # fmt: skip
            status, _ = self.client.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
            )
        elif status == 200:
            lease["spec"] = spec
            status, _ = self.client.request("PUT", path, lease)
        if status not in (200, 201):
            log(f"failed to update lease {self.name}: {status}")


def run_kubelet(version, flags):
    if not flags.get("config"):
        print("Error: ksha-lab stand-in kubelet needs --config (ksha writes one)", file=sys.stderr)
        return 1
    conf, error = load_config(flags["config"], "KubeletConfiguration")
    if error:
        print(f'E "Failed to load kubelet config file" err="{error}" path="{flags["config"]}"', file=sys.stderr)
        return 1
    if not flags.get("kubeconfig"):
        print("Error: ksha-lab stand-in kubelet runs with --kubeconfig only (no standalone mode)", file=sys.stderr)
        return 1
    x509 = ((conf.get("authentication") or {}).get("x509") or {}).get("clientCAFile")
    cert, key = conf.get("tlsCertFile"), conf.get("tlsPrivateKeyFile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
        if x509:
            context.load_verify_locations(x509)
            context.verify_mode = ssl.CERT_OPTIONAL
        client = Client(flags["kubeconfig"], timeout=10)
    except (OSError, KeyError, StopIteration, ssl.SSLError, ValueError, TypeError) as err:
        print(f"E run.go: failed to run Kubelet: {err}", file=sys.stderr)
        return 1
    name = (flags.get("hostname-override") or socket.gethostname()).lower()
    ip = flags.get("node-ip") or socket.gethostbyname(socket.gethostname())
    kubelet = Kubelet(client, name, ip, version, conf)

    def api(handler):
        if handler.path.split("?")[0] == "/healthz":
            return 200, "ok"
        peer = handler.connection.getpeercert() if hasattr(handler.connection, "getpeercert") else None
        if not peer:
            return 401, "Unauthorized"
        return 200, json.dumps({"kind": "PodList", "apiVersion": "v1", "items": []})

    try:
        serve_http(conf.get("address", "0.0.0.0"), kubelet.port, api, context)
        serve_http(conf.get("healthzBindAddress", "127.0.0.1"), int(conf.get("healthzPort", 10248)),
                   lambda handler: (200, "ok"))  # fmt: skip
    except OSError as err:
        print(f"E run.go: failed to listen: {err}", file=sys.stderr)
        return 1
    log(
        f"ksha-lab STAND-IN kubelet {version} (not the real one): node {name}, pods bound to it are reported Running, no container is started"
    )
    sd_notify("READY=1")
    period = seconds(conf.get("nodeStatusUpdateFrequency", "10s"))
    renew = kubelet.lease_s * 0.25  # the real kubelet's renew interval

    def heartbeat():  # its own thread, as the real one's lease controller: a slow runtime check never delays it
        while True:
            if kubelet.registered:
                kubelet.renew_lease()
            time.sleep(renew)

    threading.Thread(target=heartbeat, daemon=True).start()
    while True:
        started = time.monotonic()
        kubelet.sync_status()
        kubelet.sync_pods()
        time.sleep(max(0.2, period - (time.monotonic() - started)))


def run_kube_proxy(version, flags):
    if not flags.get("config"):
        print("Error: ksha-lab stand-in kube-proxy needs --config (ksha writes one)", file=sys.stderr)
        return 1
    conf, error = load_config(flags["config"], "KubeProxyConfiguration")
    if error:
        print(f"E server.go: Error running ProxyServer: {error}", file=sys.stderr)
        return 1
    mode = conf.get("mode") or "iptables"
    gates = conf.get("featureGates") or {}
    if mode == "nftables" and not gates.get("NFTablesProxyMode"):
        print(
            'E "Invalid kube-proxy configuration" err="mode: Invalid value: \\"nftables\\": '
            "feature gate 'NFTablesProxyMode' must be enabled\"",
            file=sys.stderr,
        )  # alpha in 1.30
        return 1
    if mode not in ("iptables", "ipvs", "nftables"):
        print(f'E "Invalid kube-proxy configuration" err="mode: Invalid value: \\"{mode}\\""', file=sys.stderr)
        return 1
    kubeconfig = (conf.get("clientConnection") or {}).get("kubeconfig")
    try:
        client = Client(kubeconfig, timeout=10)
    except (OSError, KeyError, StopIteration, ssl.SSLError, ValueError, TypeError) as err:
        print(f"E server.go: Error running ProxyServer: invalid kubeconfig {kubeconfig}: {err}", file=sys.stderr)
        return 1
    sync = seconds((conf.get(mode) or {}).get("syncPeriod") or "30s")  # the mode's own section
    last = [0.0]

    def healthz(handler):
        fresh = time.time() - last[0] <= 2 * sync
        body = json.dumps({"lastUpdated": last[0], "currentTime": time.time(), "nodeEligible": True})
        return (200 if fresh else 503), body

    host, _, port = (conf.get("healthzBindAddress") or "0.0.0.0:10256").rpartition(":")
    try:
        serve_http(host or "0.0.0.0", int(port), healthz)
    except OSError as err:
        print(f"E server.go: failed to listen: {err}", file=sys.stderr)
        return 1
    log(f"ksha-lab STAND-IN kube-proxy {version} (not the real one): mode {mode}, reads Services and "
        "EndpointSlices, programs no rules")  # fmt: skip
    seen = None
    while True:
        services, s = client.request("GET", "/api/v1/services")
        slices, e = client.request("GET", "/apis/discovery.k8s.io/v1/endpointslices")
        if services == 200 and slices == 200:
            last[0] = time.time()
            counts = (len(s["items"]), len(e["items"]))
            if counts != seen:
                log(f"synced {counts[0]} services, {counts[1]} endpoint slices")
                seen = counts
        else:
            log(f"failed to list services ({services}) or endpoint slices ({slices})")
        time.sleep(sync)


def main(component, version, known, argv):
    COMMAND[0] = component
    flags = parse(argv, set(known))
    if isinstance(flags, str):
        print(f"Error: {flags}", file=sys.stderr)
        return 1
    if "version" in flags and flags["version"] in (None, "true", "raw"):
        print(f"Kubernetes {version}")
        return 0
    if component == "kube-apiserver":
        return serve_apiserver(version, flags)
    if component == "kubelet":
        return run_kubelet(version, flags)
    if component == "kube-proxy":
        return run_kube_proxy(version, flags)
    return run_elected(component, version, flags)


if __name__ == "__main__":
    sys.exit(main(COMPONENT, VERSION, KNOWN_FLAGS, sys.argv[1:]))  # noqa: F821 - written in front by release.py
