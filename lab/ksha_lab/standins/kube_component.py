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
- kube-apiserver serves (``serve_apiserver``), with the files its flags name: TLS on
  --bind-address:--secure-port with --tls-cert-file/--tls-private-key-file (a key that does not
  match its certificate, or a missing file, stops it as it stops the real one); client
  certificates verified against --client-ca-file (a request without one is anonymous);
  ``/livez`` and ``/healthz`` answer ``ok``; ``/readyz`` answers ``ok`` only while etcd
  (--etcd-servers, over TLS with --etcd-cafile/--etcd-certfile/--etcd-keyfile) reports itself
  healthy (it has a leader; asked at most once a second), else 500; ``/version`` the version as JSON (``gitCommit``: ``ksha-lab-stand-in``; it says what it is on
  stderr, the journal, when it starts); any other path 401
  without a client certificate, 404 with one (this stand-in stores no objects yet). It tells
  systemd it is ready (sd_notify) once it listens;
- the other components: it says it is a stand-in that does not serve (yet) and exits 1, so that
  nothing mistakes it for a running component.

Runs with the container's Python 3 standard library only.
"""

import concurrent.futures
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.request

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


class TLSServer(http.server.ThreadingHTTPServer):
    """TLS per connection, in the connection's own thread: a client that never says hello (a TCP
    health check) holds up nobody else."""

    daemon_threads = True

    def __init__(self, address, handler, context, settings):
        super().__init__(address, handler)
        self.context, self.settings = context, settings
        self.lock = threading.Lock()
        self.checked = (float("-inf"), (False, "not checked yet"))

    def etcd_health(self):
        """etcd's health, asked at most once a second (the LB's checks come several a second)."""
        with self.lock:
            at, result = self.checked
            if time.monotonic() - at >= ETCD_CHECK_EVERY_S:
                keys = ("etcd-servers", "etcd-cafile", "etcd-certfile", "etcd-keyfile")
                result = etcd_healthy(*(self.settings[k] for k in keys))
                self.checked = (time.monotonic(), result)
            return result

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body, content_type="text/plain; charset=utf-8"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, message):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}  # fmt: skip
        self.reply(code, json.dumps(body), "application/json")

    def do_GET(self):  # noqa: N802 - http.server's naming
        settings = self.server.settings
        path = self.path.split("?")[0]
        if path in ("/livez", "/healthz"):
            self.reply(200, "ok")
        elif path == "/readyz":
            ok, why = self.server.etcd_health()
            if ok:
                self.reply(200, "ok")
            else:
                self.reply(500, f"[-]etcd failed: {why}\nreadyz check failed\n")
        elif path == "/version":
            major, minor = settings["version"].lstrip("v").split(".")[:2]
            self.reply(200, json.dumps({"major": major, "minor": minor, "gitVersion": settings["version"],
                                        "gitCommit": "ksha-lab-stand-in", "platform": "linux/amd64"}),
                       "application/json")  # fmt: skip
        elif not self.connection.getpeercert():
            self.status(401, "Unauthorized", "Unauthorized")
        else:
            self.status(404, "NotFound", "the server could not find the requested resource (ksha-lab stand-in)")

    def log_message(self, *args):
        pass


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
    server = TLSServer(address, ApiHandler, context, {**flags, "version": version})
    print(f"ksha-lab STAND-IN kube-apiserver {version} (not the real one) serving on {address[0]}:{address[1]}",
          file=sys.stderr, flush=True)  # fmt: skip
    sd_notify("READY=1")
    server.serve_forever()
    return 0


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
    print(
        f"{component} {version}: ksha-lab STAND-IN; every flag is one of {version}'s, but this stand-in does not serve",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(COMPONENT, VERSION, KNOWN_FLAGS, sys.argv[1:]))  # noqa: F821 - written in front by release.py
