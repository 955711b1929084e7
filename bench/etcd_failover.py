"""etcd through a leader loss, in the lab: the longest write gap and acknowledged writes lost.

Usage (root): .venv/bin/python bench/etcd_failover.py [--runs 5] [--bootstrap-runs 3] [--keep]

For each bootstrap run the lab is brought up from scratch and orch.ksha takes the bare hosts to
a healthy TLS etcd; bootstrap_s is the time of its etcd phase (CA, certificates, members,
healthy). Then, per run: a writer on this machine (outside the cluster) puts a numbered key
every 10 ms (100/s) through etcd's gRPC gateway over TLS with ksha's admin client certificate,
to one member, moving to the next member when a write fails (1 s deadline). After 2 s the
leader's container is killed; 10 s later the writer stops and every key is read back.

  write_resume_s    the longest time between two acknowledged writes (around the kill);
  lost_acked_writes acknowledged keys missing when read back (summed over the runs).

The killed host is booted again and the cluster is healthy before the next run. Last line:
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


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Gateway:
    """etcd's JSON gateway (/v3/kv/*) over TLS with a client certificate, failing over between members."""

    def __init__(self, addresses, certs, timeout=1.0):
        self.addresses = addresses
        self.index = 0
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        self.context.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
        self.conn = None

    def _connect(self):
        address = self.addresses[self.index % len(self.addresses)]
        self.conn = http.client.HTTPSConnection(address, 2379, context=self.context, timeout=self.timeout)

    def call(self, path, body):
        if self.conn is None:
            self._connect()
        try:
            self.conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise OSError(f"HTTP {response.status}: {data[:200]!r}")
            return json.loads(data)
        except (OSError, http.client.HTTPException, ValueError):
            self.conn.close()
            self.conn = None
            self.index += 1
            raise

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def keys(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True})
        return {base64.b64decode(kv["key"]).decode() for kv in out.get("kvs", [])}


class Writer(threading.Thread):
    def __init__(self, gateway, prefix, interval=0.01):
        super().__init__(daemon=True)
        self.gateway, self.prefix, self.interval = gateway, prefix, interval
        self.acked = []  # (time acknowledged, key)
        self.attempts = 0
        self.stop_event = threading.Event()

    def run(self):
        seq = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            key = f"{self.prefix}{seq:07d}"
            seq += 1
            self.attempts += 1
            try:
                self.gateway.put(key, "v")
                self.acked.append((time.monotonic(), key))
            except (OSError, http.client.HTTPException, ValueError):
                pass
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))


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
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    log = lambda message: print(message, flush=True)  # noqa: E731

    gaps, lost_total, boots = [], 0, []
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
            writer = Writer(Gateway(order, certs), f"/ksha/bench/{run}/")  # starts on the leader
            writer.start()
            time.sleep(2)
            t0 = time.monotonic()
            lab.kill(lab.hosts[leader])
            time.sleep(10)
            writer.stop_event.set()
            writer.join()
            acks = [t for t, _ in writer.acked]
            window = [t0 - 1.0] + [t for t in acks if t >= t0 - 1.0]
            gap = max(b - a for a, b in zip(window, window[1:], strict=False)) if len(window) > 1 else float("inf")
            survivors = [lab.hosts[m].ip for m in MEMBERS if m != leader]
            present = Gateway(survivors, certs, timeout=5).keys(f"/ksha/bench/{run}/")
            lost = [k for _, k in writer.acked if k not in present]
            lost_total += len(lost)
            gaps.append(gap)
            rate = len(writer.acked) / 12.0
            log(f"run {run}: leader {leader} killed; longest write gap {gap:.2f} s; "
                f"{len(writer.acked)} acked of {writer.attempts} ({rate:.0f}/s), {len(lost)} acked writes lost")  # fmt: skip
            lab.boot(lab.hosts[leader])
            deadline = time.monotonic() + 120
            while not health(lab, [m for m in MEMBERS if m != leader][0]).get("healthy"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{leader} did not rejoin in 120 s")
                time.sleep(2)
    finally:
        if not args.keep:
            core.down(log=lambda m: None)
    print(
        f"runs={len(gaps)} write_resume_s={statistics.median(gaps):.2f} lost_acked_writes={lost_total} "
        f"bootstrap_s={statistics.median(boots):.1f}"
    )


if __name__ == "__main__":
    main()
