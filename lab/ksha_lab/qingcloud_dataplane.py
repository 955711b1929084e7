"""The QingCloud emulator's data plane (lab only): a real haproxy serving what the emulator's load
balancers have applied (``qingcloud_api.Cloud.applied``), as QingCloud's load balancers, which
are haproxy too, serve theirs.

What it is: the stand-in for QingCloud's load balancer instances, which cannot run here. Each
load balancer listens on its addresses (the internal one's private IP in its VxNet, the
external one's EIP address), one haproxy proxy per listener: TCP or HTTP as the listener says,
its balance mode, its health check (``healthy_check_method``: ``tcp`` or ``http|/path``;
``healthy_check_option`` ``inter|timeout|fall|rise`` in seconds and counts), each backend an
instance's private IP and port. Only what an UpdateLoadBalancers job applied is served: a
listener or backend added without one is not, as on QingCloud.

``render`` is pure (tested with ``haproxy -c``); ``DataPlane`` writes the file, checks it with
``haproxy -c``, makes the addresses exist (``add_address``: the lab puts them on its bridge; on
loopback, 127.0.0.0/8 needs none) and starts haproxy, or reloads it (a new process taking over
from the old one, ``-sf``), or stops it when nothing is served.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

MARKER = "# ksha lab: the QingCloud emulator's data plane (lab/ksha_lab/qingcloud_dataplane.py)"


def _check(method: str, option: str) -> tuple[list[str], str]:
    """(the proxy's check lines, the server's check arguments) of a listener's health check."""
    inter, timeout, fall, rise = (int(x) for x in option.split("|"))
    lines = [f"timeout check {timeout}s"]
    if method.startswith("http|"):
        parts = method.split("|")
        host = f" hdr Host {parts[2]}" if len(parts) > 2 and parts[2] else ""
        lines += ["option httpchk", f"http-check send meth GET uri {parts[1]}{host}"]
    return lines, f"check inter {inter}s fall {fall} rise {rise}"


def render(applied: dict[str, dict]) -> str:
    """haproxy.cfg for every load balancer's applied listeners (``Cloud.applied``); a listener
    with no backend answers nothing (haproxy has no server to send to)."""
    out = [
        MARKER,
        "global",
        "    maxconn 2000",
        "",
        "defaults",
        "    timeout connect 2s",
        "    timeout client 1h",
        "    timeout server 1h",
        "",
    ]
    for lb_id in sorted(applied):
        lb = applied[lb_id]
        for x in lb["listeners"]:
            mode = "tcp" if x["listener_protocol"] == "tcp" else "http"
            checks, server_check = _check(x["healthy_check_method"], x["healthy_check_option"])
            out.append(f"listen {lb_id}-{x['listener_port']}")
            out += [f"    bind {address}:{x['listener_port']}" for address in lb["addresses"]]
            out += [f"    mode {mode}", f"    balance {x['balance_mode']}"]
            out += [f"    {line}" for line in checks]
            out += [
                f"    server {b['name']} {b['address']}:{b['port']} weight {b['weight']} {server_check}"
                for b in x["backends"]
            ]
            out.append("")
    return "\n".join(out)


def listens(applied: dict[str, dict]) -> bool:
    return any(lb["listeners"] and lb["addresses"] for lb in applied.values())


class DataPlane:
    """``Cloud(on_applied=DataPlane(dir))``: haproxy serving the applied load balancers."""

    def __init__(
        self,
        workdir: Path,
        haproxy: str = "haproxy",
        add_address: Callable[[str], None] | None = None,
        remove_address: Callable[[str], None] | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cfg, self.pidfile = self.workdir / "haproxy.cfg", self.workdir / "haproxy.pid"
        self.haproxy, self.add_address, self.remove_address = haproxy, add_address, remove_address
        self.addresses: set[str] = set()
        self.lock = threading.Lock()
        self.errors: list[str] = []  # a config haproxy refused: kept, the last good one served

    def __call__(self, applied: dict[str, dict]) -> None:
        """Serve `applied` (the emulator calls this under its lock, from a request): a failure is
        kept in ``errors`` (the last good config goes on being served), never raised into it."""
        try:
            self._serve(applied)
        except Exception as err:  # noqa: BLE001 - an address, haproxy missing: kept, shown by tests
            self.errors.append(f"{type(err).__name__}: {err}")

    def _serve(self, applied: dict[str, dict]) -> None:
        with self.lock:
            wanted = {a for lb in applied.values() for a in lb["addresses"]}
            for address in sorted(wanted - self.addresses):
                if self.add_address:
                    self.add_address(address)
                self.addresses.add(address)
            if not self._haproxy(applied):
                return  # the haproxy serving still binds what it served: its addresses stay
            for address in sorted(self.addresses - wanted):  # a deleted load balancer's address
                if self.remove_address:
                    self.remove_address(address)
                self.addresses.discard(address)

    def _haproxy(self, applied: dict[str, dict]) -> bool:
        """haproxy serving `applied` (started, reloaded or stopped); False when it could not be:
        the haproxy running serves what it served."""
        if not listens(applied):
            self.stop()
            return True
        candidate = self.workdir / "haproxy.cfg.new"
        candidate.write_text(render(applied))
        checked = subprocess.run([self.haproxy, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
        if checked.returncode != 0:
            self.errors.append(checked.stderr.strip() or checked.stdout.strip())
            return False
        candidate.replace(self.cfg)
        old = self.pid()
        cmd = [self.haproxy, "-D", "-f", str(self.cfg), "-p", str(self.pidfile)]
        if old:
            cmd += ["-sf", str(old)]
        started = subprocess.run(cmd, capture_output=True, text=True)
        if started.returncode != 0:
            self.errors.append(started.stderr.strip())
            return False
        return True

    def pid(self) -> int | None:
        """The running haproxy's pid (the pidfile's, if that process is haproxy with our config)."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"haproxy" in cmdline and str(self.cfg).encode() in cmdline else None

    def processes(self) -> list[int]:
        """Every haproxy of this data plane: the one serving, and those a reload (``-sf``) left
        finishing their connections (a client's kept-alive connection keeps one alive)."""
        mine = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(self.haproxy.encode()) or b"/haproxy\0" in cmdline[:64]:
                if str(self.cfg).encode() in cmdline:
                    mine.append(int(proc.name))
        return mine

    def stop(self, timeout: float = 5.0) -> None:
        """Every haproxy of this data plane stopped (SIGTERM: listeners and connections closed at
        once, so a client's kept-alive connection ends now rather than hanging on an address that
        is gone), waited for up to `timeout` s, then killed."""
        pids = self.processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if Path(f"/proc/{pid}").exists():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pidfile.unlink(missing_ok=True)
