"""ksha_lb: the load balancer as a host sees it: VIP holder, haproxy backends, a probe.

Settings default to the cluster model's (``ksha.model``): the API endpoint and
``ksha:loadbalancer``.
"""

import csv
import http.client
import io
import socket
import ssl
import time

__virtualname__ = "ksha_lb"


def __virtual__():
    return __virtualname__


def _api():
    """The API endpoint (domain, address, port) and the LB settings, from the cluster model."""
    model = __salt__["ksha.model"]()
    return model["api"], model["config"]["loadbalancer"]


def vip_holder(address=None):
    """Whether this host holds the LB address (the VIP) right now.

    CLI Example:

    .. code-block:: bash

        salt -L master1,master2,master3 ksha_lb.vip_holder
    """
    vip = address or _api()[0]["address"]
    if not vip:
        return {"vip": None, "held": False, "comment": "no ksha:loadbalancer:address"}
    held = vip in __salt__["network.ip_addrs"](include_loopback=False) + __salt__["network.ip_addrs6"]()
    return {"vip": vip, "held": held}


def _stats(socket_path, timeout=2):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(b"show stat\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_stats(text, backend):
    """The servers of `backend` from haproxy's ``show stat`` CSV: name, state, last check."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    out = []
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        out.append(
            {
                "name": row["svname"],
                "state": row.get("status", ""),
                "check": row.get("check_status", ""),
                "last_check": row.get("last_chk", ""),
            }
        )
    return out


def backends(socket_path=None, backend=None):
    """The servers of an haproxy backend as this host's haproxy sees them (from its stats socket).

    backend
        the apiserver backend (default: ``ksha-apiserver``), or ``ksha-console`` for the
        console frontend's nodes (the model's ``loadbalancer.names``).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_lb.backends
    """
    path = socket_path or _api()[1]["haproxy"]["stats_socket"]
    backend = backend or __salt__["ksha.model"]()["loadbalancer"]["names"]["apiserver"]
    try:
        return {"result": True, "backends": parse_stats(_stats(path), backend)}
    except OSError as exc:
        return {"result": False, "backends": [], "comment": f"haproxy stats socket {path}: {exc}"}


def reach(address=None, port=None, timeout=3):
    """Whether the LB address answers on its port from this host, at the TCP level.

    ``answered`` is true when a connection was accepted or actively refused:
    the address is routed and not silently firewalled. ``listening`` is true
    only for an accepted connection.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha_lb.reach
    """
    api = _api()[0]
    address = address or api["address"]
    port = int(port or api["port"])
    start = time.monotonic()
    out = {"address": address, "port": port}
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
    except ConnectionRefusedError as exc:
        out.update(answered=True, listening=False, error=str(exc))
    except OSError as exc:
        out.update(answered=False, listening=False, error=str(exc) or type(exc).__name__)
    else:
        out.update(answered=True, listening=True)
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def probe(address=None, port=None, domain=None, cafile=None, path="/readyz", timeout=3):
    """A TLS GET through the LB: connect to the LB address, with the LB domain as server name.

    With ``cafile`` the server certificate is verified against it (name included);
    without, only reachability and the HTTP status are checked (``verified: False``).

    CLI Example:

    .. code-block:: bash

        salt '*' ksha_lb.probe cafile=/etc/kubernetes/pki/ca.crt
    """
    api = _api()[0]
    address = address or api["address"]
    port = int(port or api["port"])
    domain = domain or api["domain"]
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=domain) as tls:
                conn = http.client.HTTPConnection(domain, port, timeout=timeout)
                conn.sock = tls
                conn.request("GET", path, headers={"Host": f"{domain}:{port}"})
                response = conn.getresponse()
                status = response.status
                response.read()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return {"ok": False, "status": None, "error": str(exc), "seconds": round(time.monotonic() - start, 3)}
    return {
        "ok": status == 200,
        "status": status,
        "verified": bool(cafile),
        "seconds": round(time.monotonic() - start, 3),
    }
