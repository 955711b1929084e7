"""STAND-IN for kube-apiserver, for the lab only (Kubernetes release binaries cannot be
downloaded here). It is not an apiserver. It checks what it can:

- it takes the real flags it needs (--bind-address, --secure-port, --tls-cert-file,
  --tls-private-key-file) and refuses unknown ones;
- it refuses to start unless its serving certificate covers every name in --expect-san
  (the LB domain, the VIP, the node address: what clients through the LB will verify);
- it serves TLS only, on the node address (not the wildcard), and answers GET /readyz and
  /healthz with 200 "ok", anything else 404, as the apiserver's health endpoints do.

Runs with the container's Python 3 standard library only.
"""

import argparse
import http.server
import ipaddress
import ssl
import subprocess
import sys


def cert_sans(cert_file):
    """Subject alternative names of the certificate, via the stdlib's own decoder."""
    info = ssl._ssl._test_decode_cert(cert_file)  # noqa: SLF001 - stdlib helper, no third-party parser here
    return {value for kind, value in info.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] in ("/readyz", "/healthz", "/livez"):
            body = b"ok"
            self.send_response(200)
        else:
            body = b"not found (kube-apiserver stand-in)"
            self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kube-apiserver (ksha-lab stand-in)", allow_abbrev=False)
    parser.add_argument("--bind-address", required=True)
    parser.add_argument("--secure-port", type=int, default=6443)
    parser.add_argument("--tls-cert-file", required=True)
    parser.add_argument("--tls-private-key-file", required=True)
    parser.add_argument("--expect-san", action="append", default=[], help="stand-in only: names the cert must cover")
    args = parser.parse_args(argv)

    ipaddress.ip_address(args.bind_address)  # a concrete node address, never 0.0.0.0 by accident
    if args.bind_address in ("0.0.0.0", "::"):
        sys.exit("stand-in: --bind-address must be the node address, so haproxy can bind the VIP on the same port")
    missing = set(args.expect_san) - cert_sans(args.tls_cert_file)
    if missing:
        sys.exit(f"stand-in: serving certificate does not cover {sorted(missing)}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.tls_cert_file, args.tls_private_key_file)
    server = http.server.ThreadingHTTPServer((args.bind_address, args.secure_port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    subprocess.run(["systemd-notify", "--ready"], check=False)
    server.serve_forever()


if __name__ == "__main__":
    main()
