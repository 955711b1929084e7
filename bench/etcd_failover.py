"""etcd through a leader loss, in the lab: the longest write gap and acknowledged writes lost.

Usage (root): .venv/bin/python bench/etcd_failover.py [--runs 5] [--bootstrap-runs 3]
              [--attempt-timeout 0.25] [--keep]

For each bootstrap run the lab is brought up from scratch and orch.ksha takes the bare hosts to
a healthy TLS etcd; bootstrap_s is the time of its etcd phase (CA, certificates, members,
healthy). Then, per run: a writer on this machine (outside the cluster) puts a numbered key
every 10 ms (100/s) through etcd's gRPC gateway over TLS with ksha's admin client certificate.
It starts on the leader (the worst case) and fails over like etcd's client does: a request with
no answer in --attempt-timeout goes to the next member, a member it cannot connect to is set
aside, a member that answers "no leader" is asked again. After 2 s the leader's container is
killed; 10 s later the writer stops and every key is read back. Meanwhile a watcher asks the
survivors for their leader every 20 ms, to separate the election from the client's part.

  write_resume_s    the longest time between two acknowledged writes (around the kill);
  lost_acked_writes acknowledged keys missing when read back (summed over the runs).

Per run it prints the time until a survivor named a new leader and every failed attempt after
the kill. The killed host is booted again and the cluster is healthy before the next run. Last line:
  runs=N write_resume_s=X lost_acked_writes=N bootstrap_s=Y
(write_resume_s and bootstrap_s are medians). The lab is taken down at the end unless --keep.
"""

import argparse
import base64
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ksha.lab import core  # noqa: E402

MEMBERS = ["master1", "master2", "master3"]
ETCD_PHASE = (
    "ksha-phase-etcd-ca-ready",
    "ksha-phase-etcd-certificates-issued",
    "ksha-phase-etcd-members-bootstrapped",
    "ksha-phase-etcd-cluster-healthy",
)


class Unanswered(Exception):
    """The member answered, but with an error: it is alive and cannot take the request now."""


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Gateway:
    """etcd's JSON gateway (/v3/*) over TLS with a client certificate, failing over between members.

    Like etcd's own client it keeps one member until that fails: a member that cannot be
    connected to in `timeout` is set aside for `quarantine_s`; a request with no answer in
    `timeout` moves to the next member; a member that answers with an error (no leader yet) is
    alive, so the request is retried on it after 20 ms. Every attempt is logged as
    (start, end, address, outcome) for the run's breakdown.
    """

    def __init__(self, addresses, certs, timeout=0.25, quarantine_s=5.0):
        self.addresses = list(addresses)
        self.current = self.addresses[0]
        self.timeout = timeout
        self.quarantine_s = quarantine_s
        self.down_until = {}
        self.context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        self.context.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
        self.conn = None
        self.attempts = []  # (start, end, address, "ok" | error text)

    def _pick(self):
        now = time.monotonic()
        i = self.addresses.index(self.current)
        ring = self.addresses[i:] + self.addresses[:i]
        alive = [a for a in ring if self.down_until.get(a, 0) <= now]
        self.current = alive[0] if alive else min(ring, key=lambda a: self.down_until.get(a, 0))
        return self.current

    def _next(self):
        self.current = self.addresses[(self.addresses.index(self.current) + 1) % len(self.addresses)]

    def _fail(self, start, address, outcome):
        self.conn.close()
        self.conn = None
        self.attempts.append((start, time.monotonic(), address, outcome))

    def call_once(self, path, body):
        address = self._pick()
        start = time.monotonic()
        if self.conn is None or self.conn.host != address:
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPSConnection(address, 2379, context=self.context, timeout=self.timeout)
            try:
                self.conn.connect()
            except OSError as exc:
                # no connection (or no TLS session) in time: the member is set aside for a while
                self.down_until[address] = time.monotonic() + self.quarantine_s
                self._fail(start, address, f"connect {type(exc).__name__}")
                self._next()
                raise
        try:
            self.conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # connected, but no answer in time (a dead member, or one still forwarding to a dead
            # leader): try the next member; it is not set aside, it may be alive
            self._fail(start, address, f"request {type(exc).__name__}")
            self._next()
            raise
        if response.status != 200:
            # the member answered: alive, but it could not take the request (e.g. no leader yet)
            self.attempts.append((start, time.monotonic(), address, f"HTTP {response.status}"))
            raise Unanswered(f"{address}: HTTP {response.status}: {data[:200]!r}")
        self.attempts.append((start, time.monotonic(), address, "ok"))
        return json.loads(data)

    def call(self, path, body, deadline_s=10.0):
        """Retries until an answer or `deadline_s`; the caller sees one result, like a client's request."""
        give_up = time.monotonic() + deadline_s
        while True:
            try:
                return self.call_once(path, body)
            except Unanswered:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.02)
            except (OSError, http.client.HTTPException):
                if time.monotonic() > give_up:
                    raise

    def put(self, key, value, deadline_s=10.0):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)}, deadline_s)

    def keys(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True})
        return {base64.b64decode(kv["key"]).decode() for kv in out.get("kvs", [])}

    def leader(self):
        """This member's view of the leader's id (0 or None while it has none)."""
        return self.call_once("/v3/maintenance/status", {}).get("leader")


class Writer(threading.Thread):
    """Puts a numbered key every `interval`; each put is retried (same key, same value, so a
    retry is harmless) until acknowledged."""

    def __init__(self, gateway, prefix, interval=0.01):
        super().__init__(daemon=True)
        self.gateway, self.prefix, self.interval = gateway, prefix, interval
        self.acked = []  # (time acknowledged, key)
        self.failed = []
        self.stop_event = threading.Event()

    def run(self):
        seq = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            key = f"{self.prefix}{seq:07d}"
            seq += 1
            try:
                self.gateway.put(key, "v")
                self.acked.append((time.monotonic(), key))
            except (OSError, http.client.HTTPException, ValueError):
                self.failed.append(key)
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            time.sleep(max(0.0, next_at - time.monotonic()))


class LeaderWatch(threading.Thread):
    """Asks each survivor for its leader every 20 ms: when did one first name a new leader?"""

    def __init__(self, addresses, certs, old_leader_id):
        super().__init__(daemon=True)
        self.gateways = [Gateway([a], certs, timeout=0.2) for a in addresses]
        self.old = str(old_leader_id)
        self.elected_at = None
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set() and self.elected_at is None:
            for gateway in self.gateways:
                try:
                    leader = gateway.leader()
                except (OSError, http.client.HTTPException, ValueError, Unanswered):
                    continue
                if leader and str(leader) not in ("0", self.old):
                    self.elected_at = time.monotonic()
                    break
            time.sleep(0.02)


def salt_json(lab, *args, timeout=600):
    proc = subprocess.run(lab.salt_cmd(*args), capture_output=True, text=True, timeout=timeout)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, None


def health(lab, host):
    _, out = salt_json(lab, "salt", "--out=json", "--static", host, "ksha_etcd.health", timeout=60)
    return (out or {}).get(host) or {}


def bootstrap(log):
    """A fresh lab and orch.ksha from bare hosts: (lab, seconds of the etcd phase)."""
    core.down(log=lambda m: None)
    lab = core.up("seed", log=lambda m: None)
    rc, _ = salt_json(lab, "salt-run", "--out=json", "saltutil.sync_all")
    rc, out = salt_json(lab, "salt-run", "--out=json", "state.orchestrate", "orch.ksha", timeout=1200)
    states = next(iter((out or {}).get("data", {}).values()), {}) if out else {}
    if rc != 0 or not isinstance(states, dict):
        raise RuntimeError(f"orch.ksha failed (exit {rc})")
    seconds = sum(v["duration"] for k, v in states.items() if k.split("_|-")[1] in ETCD_PHASE) / 1000
    log(f"bootstrap: etcd phase {seconds:.1f} s")
    return lab, seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bootstrap-runs", type=int, default=3)
    parser.add_argument("--attempt-timeout", type=float, default=0.25, help="seconds a write waits for an answer")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    log = lambda message: print(message, flush=True)  # noqa: E731

    gaps, elections, lost_total, boots = [], [], 0, []
    try:
        for _ in range(max(1, args.bootstrap_runs)):
            lab, seconds = bootstrap(log)
            boots.append(seconds)
        certs = Path(tempfile.mkdtemp(prefix="ksha-bench-etcd-"))
        for name in ("ca.crt", "admin.crt", "admin.key"):
            (certs / name).write_bytes((lab.hosts["master1"].root / "etc/etcd/pki" / name).read_bytes())
        addresses = [lab.hosts[m].ip for m in MEMBERS]
        for run in range(1, args.runs + 1):
            leader = health(lab, "master1").get("leader") or health(lab, "master2").get("leader")
            order = [lab.hosts[leader].ip] + [a for a in addresses if a != lab.hosts[leader].ip]
            old_id = Gateway([lab.hosts[leader].ip], certs, timeout=2).leader()
            gateway = Gateway(order, certs, timeout=args.attempt_timeout)
            writer = Writer(gateway, f"/ksha/bench/{run}/")  # starts on the leader
            survivors = [lab.hosts[m].ip for m in MEMBERS if m != leader]
            watch = LeaderWatch(survivors, certs, old_id)
            writer.start()
            time.sleep(2)
            watch.start()
            t0 = time.monotonic()
            lab.kill(lab.hosts[leader])
            time.sleep(10)
            writer.stop_event.set()
            watch.stop_event.set()
            writer.join()
            watch.join()
            acks = [t for t, _ in writer.acked]
            window = [t0 - 1.0] + [t for t in acks if t >= t0 - 1.0]
            gap = max(b - a for a, b in zip(window, window[1:], strict=False)) if len(window) > 1 else float("inf")
            present = Gateway(survivors, certs, timeout=5).keys(f"/ksha/bench/{run}/")
            lost = [k for _, k in writer.acked if k not in present]
            lost_total += len(lost)
            gaps.append(gap)
            elected = watch.elected_at - t0 if watch.elected_at else float("nan")
            elections.append(elected)
            first_ack = min((t for t in acks if watch.elected_at and t >= watch.elected_at), default=float("nan"))
            names = {lab.hosts[m].ip: m for m in MEMBERS}
            trail = ", ".join(
                f"{names[address]} {outcome} {end - t0:+.2f}"
                for start, end, address, outcome in gateway.attempts
                if end >= t0 and (outcome != "ok" or start < first_ack <= end + 0.001)
            )
            log(f"run {run}: leader {leader} killed; new leader named {elected:.2f} s after the kill; "
                f"longest write gap {gap:.2f} s; {len(writer.acked)} acked in {len(gateway.attempts)} attempts, "
                f"{len(writer.failed)} given up, {len(lost)} acked writes lost")  # fmt: skip
            log(f"  attempts after the kill (member, outcome, seconds after the kill): {trail}")
            lab.boot(lab.hosts[leader])
            deadline = time.monotonic() + 120
            while not health(lab, [m for m in MEMBERS if m != leader][0]).get("healthy"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{leader} did not rejoin in 120 s")
                time.sleep(2)
    finally:
        if not args.keep:
            core.down(log=lambda m: None)
    print(f"new leader named after the kill, median {statistics.median(elections):.2f} s", flush=True)
    print(
        f"runs={len(gaps)} write_resume_s={statistics.median(gaps):.2f} lost_acked_writes={lost_total} "
        f"bootstrap_s={statistics.median(boots):.1f}"
    )


if __name__ == "__main__":
    main()
