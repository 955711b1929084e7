"""etcd through a leader loss, in the lab: the election, the longest write gap, acknowledged writes lost.

Usage (root): .venv/bin/python bench/etcd_failover.py [--runs 5] [--bootstrap-runs 3]
              [--attempt-timeout 0.25] [--keep]

For each bootstrap run the lab is brought up from scratch and orch.ksha takes the bare hosts to
a healthy TLS etcd; bootstrap_s is the time of its etcd phase (CA, certificates, members,
healthy). Then, per run: a writer on this machine (outside the cluster) puts a numbered key
every 10 ms (100/s) and a watcher asks the survivors for their leader every 20 ms. After 2 s the
leader's container is killed; 10 s later the writer stops and every acknowledged key is read
back (a linearizable range read on a survivor).

The client model is this script's, not etcd's Go client (clientv3): an HTTP/1.1 JSON client of
etcd's gRPC gateway (POST /v3/kv/put over TLS with ksha's admin client certificate) holding one
member at a time, starting on the leader (the worst case). Each attempt has a deadline
(--attempt-timeout, 0.25 s, for the connection and for the answer); a member it cannot connect
to in time is set aside for 5 s; an attempt with no answer in time is sent again to the next
member; a member that answers with an HTTP error (no leader yet) is asked again after 20 ms. A
put is re-sent until acknowledged (or 10 s): at-least-once, so a put that reached a member before
its deadline may be applied twice (harmless here: the same key and value). clientv3 does not do
this: it keeps a gRPC connection with the endpoints' balancer, has no per-attempt deadline (the
caller's context is the only one), and retries a Put only when it was certainly not sent
(Unavailable with no connection/address available): at-most-once, so after a timeout the
caller gets the error. The write gap is therefore this client model's figure; the election
(the watcher's figure) is etcd's own part, whatever the client.

  election_s        kill -> a survivor names a new leader (the headline figure);
  write_resume_s    the longest time without an acknowledged write from 1 s before the kill to
                    the end of the window, the stretch from the last acknowledgement to the
                    window's end included (writes that never resume give about 10 s, not 0);
  lost_acked_writes acknowledged keys missing when read back (summed over the runs);
  failed_writes     writes given up (no acknowledgement in 10 s) / writes sent.

A run fails when its writer or watcher thread raised, when writes were not acknowledged again
after the kill (through the end of the window), when no survivor named a new leader, or when the
keys could not be read back. Per run it prints the election, the gap, the counts, every failed
attempt after the kill and FAILED with the reasons. The killed host is booted again and the
cluster is healthy before the next run. Last line (medians; a failed run counts as +inf):
  runs=N election_s=E write_resume_s=X lost_acked_writes=L failed_writes=a/b bootstrap_s=B failed_runs=F
ending in FAILED, and the exit code 1, when a run failed. The lab is taken down at the end unless --keep.
"""

import argparse
import base64
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import verdict  # bench/verdict.py, next to this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ksha_lab import core  # noqa: E402

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
    """An HTTP/JSON client of etcd's gRPC gateway (/v3/*) over TLS with a client certificate,
    failing over between members (this bench's client model, not clientv3's: see the module doc).

    It keeps one member until that fails. Each attempt has a deadline, `timeout`: a member that
    cannot be connected to in it is set aside for `quarantine_s`; a request with no answer in it
    is sent again to the next member (at-least-once: the first one may have been applied); a
    member that answers with an error (no leader yet) is alive, so the request is retried on it
    after 20 ms. Every attempt is logged as (start, end, address, outcome) for the run's breakdown.
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
    retry is harmless) until acknowledged or the gateway's 10 s deadline: then it is given up
    (counted in `failed`) and the next key is put. Anything else that a put raises ends the
    thread with `error` (and `trace`) set: the run is then a failed run, not a short gap."""

    def __init__(self, gateway, prefix, interval=0.01):
        super().__init__(daemon=True)
        self.gateway, self.prefix, self.interval = gateway, prefix, interval
        self.acked = []  # (time acknowledged, key)
        self.failed = []  # keys given up
        self.sent = 0
        self.error = self.trace = None
        self.stop_event = threading.Event()

    def run(self):
        try:
            self._loop()
        except Exception as exc:  # recorded, the run fails on it (a dead writer's silence is no gap)
            self.error, self.trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()

    def _loop(self):
        seq = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            key = f"{self.prefix}{seq:07d}"
            seq += 1
            self.sent += 1
            try:
                self.gateway.put(key, "v")
                self.acked.append((time.monotonic(), key))
            except (OSError, http.client.HTTPException, ValueError, Unanswered):
                self.failed.append(key)  # no acknowledgement before the put's deadline
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            time.sleep(max(0.0, next_at - time.monotonic()))


class LeaderWatch(threading.Thread):
    """Asks each survivor for its leader every 20 ms: when did one first name a new leader?"""

    def __init__(self, addresses, certs, old_leader_id):
        super().__init__(daemon=True)
        self.gateways = [Gateway([a], certs, timeout=0.2) for a in addresses]
        self.old = str(old_leader_id)
        self.elected_at = None
        self.error = self.trace = None
        self.stop_event = threading.Event()

    def run(self):
        try:
            self._loop()
        except Exception as exc:  # recorded, the run fails on it
            self.error, self.trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()

    def _loop(self):
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


def health(lab, host):
    """ksha_etcd.health on `host` through the lab's `salt --out=json --static` ({} when no answer)."""
    out = lab.salt_json(host, "ksha_etcd.health", timeout=60).get(host)
    return out if isinstance(out, dict) else {}


def bootstrap(log):
    """A fresh lab and orch.ksha from bare hosts: (lab, seconds of the etcd phase)."""
    core.down(log=lambda m: None)
    lab = core.up("seed", log=lambda m: None)
    rc, _ = lab.salt_run_json("saltutil.sync_all")
    rc, out = lab.salt_run_json("state.orchestrate", "orch.ksha", timeout=1200)
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

    runs, boots = [], []
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
            if leader not in lab.hosts:
                raise RuntimeError(f"no member named a leader before run {run} (got {leader!r})")
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
            window_end = time.monotonic()
            writer.stop_event.set()
            watch.stop_event.set()
            writer.join()
            watch.join()
            acks = [t for t, _ in writer.acked]
            lost = readback_error = None
            try:  # a linearizable range read on a survivor
                present = Gateway(survivors, certs, timeout=5).keys(f"/ksha/bench/{run}/")
                lost = sum(1 for _, k in writer.acked if k not in present)
            except (OSError, http.client.HTTPException, ValueError, Unanswered) as exc:
                readback_error = f"{type(exc).__name__}: {exc}"
            record = verdict.etcd_run(
                f"run {run}", acks, t0, window_end, watch.elected_at, writer_error=writer.error,
                watch_error=watch.error, lost=lost, readback_error=readback_error, writes=writer.sent,
                given_up=len(writer.failed),
            )  # fmt: skip
            runs.append(record)
            failed_attempts = sum(1 for attempt in gateway.attempts if attempt[3] != "ok")
            first_ack = min((t for t in acks if watch.elected_at and t >= watch.elected_at), default=float("nan"))
            names = {lab.hosts[m].ip: m for m in MEMBERS}
            trail = ", ".join(
                f"{names[address]} {outcome} {end - t0:+.2f}"
                for start, end, address, outcome in gateway.attempts
                if end >= t0 and (outcome != "ok" or start < first_ack <= end + 0.001)
            )
            log(f"run {run}: leader {leader} killed; new leader named {verdict.fmt(record.figures['elected'])} s "
                f"after the kill; longest write gap {verdict.fmt(record.figures['write_gap'])} s; "
                f"{len(writer.acked)} acked of {writer.sent} writes ({len(writer.failed)} given up), "
                f"{failed_attempts}/{len(gateway.attempts)} attempts failed; "
                f"{'-' if lost is None else lost} acked writes lost"
                + (f"; FAILED: {'; '.join(record.failures)}" if record.failed else ""))  # fmt: skip
            for thread in (writer, watch):
                if thread.trace:
                    log(thread.trace.rstrip())
            log(f"  attempts after the kill (member, outcome, seconds after the kill): {trail}")
            lab.boot(lab.hosts[leader])
            deadline = time.monotonic() + 120
            while not health(lab, [m for m in MEMBERS if m != leader][0]).get("healthy"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{leader} did not rejoin in 120 s")
                time.sleep(2)
    except Exception:  # the runs not done count as failed runs; the summary still says so
        log(f"bench stopped after {len(runs)} of {args.runs} runs:\n{traceback.format_exc().rstrip()}")
    finally:
        if not args.keep:
            core.down(log=lambda m: None)
    line, code = verdict.etcd_summary(runs, args.runs, boots)
    print(line, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
