"""API failover through the LB: ksha's keepalived + haproxy against the kubeadm guide's, in the lab.

Usage (root): .venv/bin/python bench/failover.py [--runs 5] [--configs ksha,anchor] [--deadline 2]
                                                 [--scenarios holder-killed,haproxy-killed,backend-killed] [--keep]

Brings up the seed lab if it is not up, converges it with orch.ksha (LB, etcd, the control
plane: the kube-apiserver STAND-IN, ksha_lab/standins, run by ksha's unit with the model's flags
on the masters), and deploys the LB. A client on this
machine (the lab bridge) sends an HTTPS GET /readyz through the VIP every 50 ms (each with a
--deadline, 2 s by default, for connection, TLS and answer; certificate and LB domain verified).
Per scenario and run it records

  vip takeover  fault -> the VIP is on another LB host (scenarios that move the VIP);
  unavailable   the start of the first failed request -> the start of the first successful
                one after the last failure (0 when no request failed);
  failed requests / requests sent, from 1 s before the fault to the end of the run.

A run ends once requests have succeeded for 5 s in a row, or 90 s after the fault. It is a
failed run when the VIP did not move (in a scenario that moves it) or the API was not back
(5 s of successes) within those 90 s; such a run enters the medians as +inf, never as a figure.
The deadline matters for the comparison: haproxy gives up a connection to a dead apiserver
after its `timeout connect` (ksha 1 s, the guide 5 s) and only then redispatches it, so with a
2 s deadline the guide's redispatched requests count as failed where ksha's succeed late.

Configurations, on the same lab hosts, one after the other:
  ksha    orch.ksha (salt/ksha/loadbalancer): VRRPv3 advert 0.2 s, unicast, a check of haproxy's
          own view every 1 s (fall 2), haproxy TLS /readyz checks every 0.5 s (fall 2), redispatch.
  anchor  the kubeadm project's "High Availability Considerations" guide (docs/ha-considerations.md,
          keepalived + haproxy as services): keepalived defaults (VRRPv2, advert 1 s, multicast),
          auth PASS, priorities 101/100, vrrp_script check_apiserver.sh (curl to the local haproxy
          port and, on the holder, the VIP) with interval 3, weight -2, fall 10, rise 2; haproxy
          `option httpchk GET /healthz` over TLS with default check timings (inter 2 s, fall 3,
          rise 2), `option redispatch`, `retries 1`, `timeout connect 5s`, listening on *:8443.

Scenarios: holder-killed (SIGKILL to the VIP holder's container), haproxy-killed (SIGKILL to
haproxy on the holder, kept down), backend-killed (SIGKILL to the apiserver of a master that
does not hold the VIP). Prints a line per run (FAILED with the reasons), a table of medians with
the failed runs and the failed requests per scenario and configuration, and a last line:
  scenarios=N vip_takeover_s=X worst_api_unavailable_s=Y worst_vs_anchor_ratio=Z failed_runs=F
vip_takeover_s is the worst scenario median of ksha; worst_api_unavailable_s the worst scenario
median of ksha's outage; the ratio is that over the anchor's median in the same scenario (nan
when the anchor's is 0 or infinite). Any failed run, of either configuration, ends the last line
with FAILED and the exit code is 1. The lab is taken down at the end unless --keep.
"""

import argparse
import concurrent.futures
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import verdict  # bench/verdict.py, next to this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ksha_lab import core  # noqa: E402
from ksha_lab.standins import apiservers as standin  # noqa: E402

MASTERS = ["master1", "master2", "master3"]
SCENARIOS = ("holder-killed", "haproxy-killed", "backend-killed")
INTERVAL = 0.05
DEADLINE = 2.0  # the client's default deadline per request (--deadline)
SETTLE = 5.0  # the API is back once requests have succeeded for this long in a row
LIMIT = 90.0  # a run gives up on the VIP moving and the API coming back this long after the fault
ANCHOR_PORT = 8443  # the guide's APISERVER_DEST_PORT: haproxy on the masters next to the apiserver

# The guide's files, with its placeholders filled for the lab (STATE/PRIORITY per host).
ANCHOR_KEEPALIVED = """! kubeadm ha-considerations anchor (bench/failover.py)
global_defs {{
    router_id LVS_DEVEL
}}
vrrp_script check_apiserver {{
  script "/etc/keepalived/check_apiserver.sh"
  interval 3
  weight -2
  fall 10
  rise 2
}}

vrrp_instance VI_1 {{
    state {state}
    interface host0
    virtual_router_id 51
    priority {priority}
    authentication {{
        auth_type PASS
        auth_pass 42
    }}
    virtual_ipaddress {{
        {vip}
    }}
    track_script {{
        check_apiserver
    }}
}}
"""

ANCHOR_CHECK = """#!/bin/sh
errorExit() {{
    echo "*** $*" 1>&2
    exit 1
}}
curl --silent --max-time 2 --insecure https://localhost:{port}/ -o /dev/null || errorExit "Error GET https://localhost:{port}/"
if ip addr | grep -q {vip}; then
    curl --silent --max-time 2 --insecure https://{vip}:{port}/ -o /dev/null || errorExit "Error GET https://{vip}:{port}/"
fi
"""

ANCHOR_HAPROXY = """# kubeadm ha-considerations anchor (bench/failover.py)
global
    log /dev/log local0
    daemon

defaults
    mode                    http
    log                     global
    option                  httplog
    option                  dontlognull
    option http-server-close
    option forwardfor       except 127.0.0.0/8
    option                  redispatch
    retries                 1
    timeout http-request    10s
    timeout queue           20s
    timeout connect         5s
    timeout client          20s
    timeout server          20s
    timeout http-keep-alive 10s
    timeout check           10s

frontend apiserver
    bind *:{port}
    mode tcp
    option tcplog
    default_backend apiserver

backend apiserver
    option httpchk GET /healthz
    http-check expect status 200
    mode tcp
    balance     roundrobin
{servers}
"""


class Client:
    """A request through the LB every 50 ms, each on its own thread; records (start, ok)."""

    def __init__(self, address, port, domain, cafile, deadline=DEADLINE):
        self.address, self.port, self.domain, self.deadline = address, port, domain, deadline
        self.context = ssl.create_default_context(cafile=cafile)
        self.records = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(deadline / INTERVAL) + 8)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _one(self, started):
        ok = False
        try:
            with socket.create_connection((self.address, self.port), timeout=self.deadline) as raw:
                raw.settimeout(max(0.01, started + self.deadline - time.monotonic()))
                with self.context.wrap_socket(raw, server_hostname=self.domain) as tls:
                    tls.sendall(f"GET /readyz HTTP/1.1\r\nHost: {self.domain}\r\nConnection: close\r\n\r\n".encode())
                    head = tls.recv(64)
                    ok = head.startswith(b"HTTP/1.") and head.split(b" ", 2)[1:2] == [b"200"]
        except (OSError, ssl.SSLError):
            ok = False
        ok = ok and time.monotonic() - started <= self.deadline
        with self.lock:
            self.records.append((started, ok))

    def _loop(self):
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self.pool.submit(self._one, next_at)
            next_at += INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
        self.pool.shutdown(wait=True)

    def since(self, t0):
        with self.lock:
            return sorted(r for r in self.records if r[0] >= t0)


class Bench:
    def __init__(self, lab, log, deadline=DEADLINE):
        self.lab, self.log, self.deadline = lab, log, deadline
        self.ca_file = core.STATE / "bench-standin-ca.crt"

    def client(self, port):
        return Client(self.lab.vip, port, standin.DOMAIN, str(self.ca_file), self.deadline)

    def host(self, name):
        return self.lab.hosts[name]

    def sh(self, name, *cmd, check=False):
        return self.lab.exec(self.host(name), *cmd, check=check)

    def holders(self, names=MASTERS):
        out = []
        for name in names:
            if not self.lab.init_pid(self.host(name)):
                continue
            proc = subprocess.run(
                self.lab.exec_argv(self.host(name), "ip", "-4", "-o", "addr", "show"), capture_output=True, text=True
            )
            if f" {self.lab.vip}/" in proc.stdout:
                out.append(name)
        return out

    # --- configurations -------------------------------------------------------------

    def orchestrate(self, until):
        for args in (("saltutil.sync_all",), ("state.orchestrate", "orch.ksha", f'pillar={{"ksha_until": "{until}"}}')):
            rc, out = self.lab.salt_run_json(*args)
            if rc != 0:
                raise RuntimeError(f"salt-run {' '.join(args)} failed (exit {rc}): {str(out)[-3000:]}")
            if args[0] == "saltutil.sync_all":
                self.lab.salt_json("*", "saltutil.sync_all")

    def deploy_standins(self):
        """The apiserver stand-ins that ksha installs and runs, with the formula's certificates and
        etcd: the cluster converged up to the control plane."""
        self.orchestrate("control-plane")
        self.ca_file.write_bytes(standin.share_ca(self.lab, [self.host(n) for n in MASTERS]))

    def use_ksha(self):
        self.orchestrate("lb")
        for name in MASTERS:  # a clean start, as a fresh deployment would have
            self.sh(name, "systemctl", "restart", "haproxy", "keepalived", check=True)
        return 6443

    def use_anchor(self):
        vip = self.lab.vip
        servers = "\n".join(f"        server {n} {self.host(n).ip}:6443 check check-ssl verify none" for n in MASTERS)
        for index, name in enumerate(MASTERS):
            root = self.host(name).root
            state, priority = ("MASTER", 101) if index == 0 else ("BACKUP", 100)
            (root / "etc/keepalived/keepalived.conf").write_text(
                ANCHOR_KEEPALIVED.format(state=state, priority=priority, vip=vip)
            )
            check = root / "etc/keepalived/check_apiserver.sh"
            check.write_text(ANCHOR_CHECK.format(port=ANCHOR_PORT, vip=vip))
            check.chmod(0o755)
            (root / "etc/haproxy/haproxy.cfg").write_text(ANCHOR_HAPROXY.format(port=ANCHOR_PORT, servers=servers))
            self.sh(name, "haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg", check=True)
            # The guide sets no script security; keepalived 2.2's config test exits non-zero over that
            # (a warning: the daemon still runs the script, as root), so only haproxy's check gates here.
            self.sh(name, "keepalived", "--config-test", "-f", "/etc/keepalived/keepalived.conf")
        for name in MASTERS:
            self.sh(name, "systemctl", "restart", "haproxy", "keepalived", check=True)
        return ANCHOR_PORT

    # --- steady state ---------------------------------------------------------------

    def wait_steady(self, port, timeout=120):
        """VIP on master1 (highest priority) only, and 3 s of requests that all succeed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holders() == ["master1"]:
                with self.client(port) as client:
                    t0 = time.monotonic()
                    time.sleep(3)
                records = client.since(t0)
                if records and all(ok for _, ok in records) and self.holders() == ["master1"]:
                    return
            time.sleep(1)
        raise RuntimeError(f"the LB did not settle in {timeout} s (VIP holders: {self.holders()})")

    # --- scenarios ------------------------------------------------------------------

    def fault(self, scenario, holder):
        """Inject the fault; returns (hosts the VIP may move to or None, restore callable)."""
        others = [n for n in MASTERS if n != holder]
        if scenario == "holder-killed":
            self.lab.kill(self.host(holder))

            def restore():
                self.lab.boot(self.host(holder))
                deadline = time.monotonic() + 90
                while self.lab.system_state(self.host(holder)) not in ("running", "degraded"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{holder} did not boot again")
                    time.sleep(0.5)
                standin.start(self.lab, self.host(holder))

            return others, restore
        if scenario == "haproxy-killed":
            self.sh(holder, "systemctl", "kill", "--signal=SIGKILL", "haproxy")
            self.sh(holder, "systemctl", "stop", "haproxy")  # kept down, not restarted by systemd
            return others, lambda: self.sh(holder, "systemctl", "start", "haproxy", check=True)
        victim = others[0]
        standin.kill(self.lab, self.host(victim))
        return None, lambda: standin.start(self.lab, self.host(victim))

    def run(self, scenario, port, label, settle=SETTLE, limit=LIMIT):
        """One run: a verdict.Run (failed when the VIP did not move or the API was not back)."""
        [holder] = self.holders()
        with self.client(port) as client:
            time.sleep(2)
            t0 = time.monotonic()
            moves_to, restore = self.fault(scenario, holder)
            takeover = None
            if moves_to:
                while time.monotonic() - t0 < limit:
                    if self.holders(moves_to):
                        takeover = time.monotonic() - t0
                        break
                    time.sleep(0.02)
            # Until requests have succeeded for `settle` s in a row (checked at least once, also
            # when the VIP took the whole limit), or the limit.
            settled = False
            while True:
                recent = client.since(time.monotonic() - settle)
                if time.monotonic() - t0 > settle + self.deadline and recent and all(ok for _, ok in recent):
                    settled = True
                    break
                if time.monotonic() - t0 >= limit:
                    break
                time.sleep(0.25)
        records = client.since(t0 - 1.0)
        restore()
        return verdict.lb_run(label, records, bool(moves_to), takeover, settled, limit)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--configs", default="ksha,anchor")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds a request may take")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    configs = args.configs.split(",")
    scenarios = args.scenarios.split(",")

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    lab = core.Lab.load()
    if lab is None or not all(lab.nspawn_pid(h) for h in lab.hosts.values()):
        lab = core.up("seed", log=lambda m: None)
    bench = Bench(lab, log, deadline=args.deadline)
    results = {}
    try:
        bench.deploy_standins()
        for config in configs:
            port = bench.use_ksha() if config == "ksha" else bench.use_anchor()
            for scenario in scenarios:
                rows = results.setdefault((config, scenario), [])
                for run in range(1, args.runs + 1):
                    bench.wait_steady(port)
                    record = bench.run(scenario, port, f"{config:6} {scenario:15} run {run}")
                    rows.append(record)
                    figures = record.figures
                    takeover = verdict.fmt(figures["takeover"]) if "takeover" in figures else "-"
                    text = f"vip_takeover {takeover} s, unavailable {verdict.fmt(figures['unavailable'])} s"
                    print(verdict.run_line(record, text), flush=True)
        if "ksha" in configs:
            bench.use_ksha()  # leave the lab as ksha configures it
    except Exception:  # the runs not done count as failed runs; the summary still says so
        log(f"bench stopped:\n{traceback.format_exc().rstrip()}")
    finally:
        if not args.keep:
            core.down(log=lambda m: None)

    table, (line, code) = verdict.lb_summary(results, configs, scenarios, args.runs)
    print("\n" + "\n".join(table))
    print(f"client deadline {args.deadline:.1f} s per request", flush=True)
    print(line, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
