"""The lab for tests: one session-wide lab, torn down at the end (also on failure
or interrupt), with helpers that run salt / salt-run against its master and
parse their JSON output.
"""

import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

from ksha.plan import PHASES
from ksha_lab import core

# Lab modules that leave the shared cluster changed at their end: they run after every other
# module that uses it, in this order, so that the orchestration putting it back is spent only
# when a later test needs the cluster (none does: the lab's life-cycle tests after them stop and
# kill hosts and take the lab down).
LAB_MODULES_LAST = ("test_reconfiguration.py",)


def pytest_collection_modifyitems(items):
    """Every test under tests/lab/ is marked ``lab``; the lab's tests stay one block, ordered by
    module as pytest found them but for ``LAB_MODULES_LAST``, then the lab's own life cycle
    (hosts stopped and killed, the lab taken down)."""
    lab = [item for item in items if "tests/lab/" in str(item.fspath)]
    if not lab:
        return
    for item in lab:
        item.add_marker(pytest.mark.lab)

    def rank(item):
        name = item.path.name
        if name in LAB_MODULES_LAST:
            return 1 + LAB_MODULES_LAST.index(name)
        return len(LAB_MODULES_LAST) + 1 if name in ("test_lifecycle.py", "test_teardown.py") else 0

    first = items.index(lab[0])
    others = [item for item in items if item not in lab]
    items[:] = others[:first] + sorted(lab, key=rank) + others[first:]  # sorted is stable


class LabSalt:
    """salt / salt-run against the lab master, JSON in and out."""

    def __init__(self, lab: core.Lab):
        self.lab = lab

    def _json(self, tool, *args, timeout=600):
        cmd = self.lab.salt_cmd(tool, "--out=json", *args)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            data = None
        _trace(tool, args, time.monotonic() - started, data)
        return proc.returncode, data, proc

    def salt(self, targets, fun, *args, timeout=600):
        """`fun` on a comma-separated list of minions: {minion: return}."""
        self.refresh_if_stale()
        rc, data, proc = self._json(
            "salt", "--static", f"--timeout={timeout}", "-L", targets, fun, *args, timeout=timeout + 30
        )
        return data or {}

    def run(self, fun, *args, timeout=600):
        if fun not in MASTER_SIDE_RUNNERS:
            self.refresh_if_stale()
        return self._json("salt-run", fun, *args, timeout=timeout)

    def orchestrate(self, *args, until=None):
        """state.orchestrate orch.ksha (up to phase ``until``): (exit code, {state ID: state return})."""
        if until:
            args = (*args, f'pillar={{"ksha_until": "{until}"}}')
        # no refresh before it: its preflight refreshes every minion's pillar before any state
        # runs, and its plan reads none of them (the master compiles the pillars it plans from)
        rc, data, proc = self._json("salt-run", "state.orchestrate", "orch.ksha", *args)
        assert data is not None and isinstance(data["data"], dict), (data, proc.stderr[-2000:])
        states = next(iter(data["data"].values()))
        assert isinstance(states, dict), states  # a list is a render error
        states = {key.split("_|-")[1]: value for key, value in states.items()}
        refreshed = (states.get(PILLAR_REFRESHED) or {}).get("changes", {}).get("ret") or {}
        # every lab host's refresh done (not just those of a pillar that left one out of ksha:hosts;
        # refresh_pillar answers False when it timed out)
        if all(refreshed.get(h) is True for h in self.lab.hosts):
            _STALE_PILLAR.discard(generation(self.lab))
        return rc, states

    def refresh_if_stale(self):
        """Every minion's pillar refreshed if the lab's pillar file changed since they last did,
        before any salt or salt-run call but orch.ksha (``orchestrate``: its preflight refreshes
        them) and the runners that read none (``MASTER_SIDE_RUNNERS``): functions read the minion's pillar in memory (so does the CA host's signing
        policies, read by x509_v2 in its peer job). A test's edit and put-back with no call
        between cost no refresh."""
        key = generation(self.lab)
        if key in _STALE_PILLAR:
            out = self._json("salt", "--static", "--timeout=600", "-L", ",".join(self.lab.hosts),
                             "saltutil.refresh_pillar", "wait=True")[1]  # fmt: skip
            assert out and all(v is True for v in out.values()), out
            _STALE_PILLAR.discard(key)


def _trace(tool, args, seconds, data):
    """With KSHA_LAB_TRACE=FILE: one JSON line per salt / salt-run call (the test, the command,
    its wall time and, for an orchestration, each step's duration), to see where the lab's
    time goes."""
    path = os.environ.get("KSHA_LAB_TRACE")
    if not path:
        return
    line = {"test": os.environ.get("PYTEST_CURRENT_TEST", ""), "tool": tool, "args": [str(a)[:80] for a in args[:6]]}
    line["s"], line["at"] = round(seconds, 2), round(time.time(), 1)
    if args and args[0] == "state.orchestrate" and isinstance(data, dict) and isinstance(data.get("data"), dict):
        states = next(iter(data["data"].values()), None)
        if isinstance(states, dict):
            line["steps"] = {k.split("_|-")[1]: round(v.get("duration", 0) / 1000, 2) for k, v in states.items()}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


def _lab_ready():
    lab = core.Lab.load()
    if lab is None or not all(lab.nspawn_pid(h) for h in lab.hosts.values()):
        return None
    return lab if all(lab.ping(list(lab.hosts), timeout=5).values()) else None


@pytest.fixture(scope="session")
def _lab_session():
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("debootstrap"):
        pytest.fail("lab tests need root, systemd-nspawn and debootstrap (make setup); skip them with -m 'not lab'")
    try:
        yield core.up("seed")
    finally:
        core.down()


@pytest.fixture
def lab(_lab_session):
    """The seed lab, brought up again if a test took it down."""
    return _lab_ready() or core.up("seed")


@pytest.fixture
def lab_salt(lab):
    return LabSalt(lab)


class LabPillar:
    """The lab's ksha pillar (``ksha.sls``) as a test changes it; the ``lab_pillar`` fixture puts
    the original back after the test. Every minion's pillar is refreshed before the next salt call
    after a change (``LabSalt.refresh_if_stale``)."""

    def __init__(self, lab, salt):
        self.lab, self.salt = lab, salt
        self.path = lab.pillar_dir / "ksha.sls"
        self.original = self.path.read_text()
        self.applied = False
        # the furthest phase an ``apply`` of this test ran with a changed pillar: the phases
        # after it never saw the change, so they are still converged to the original pillar
        self.reached = PHASES[0]

    def write(self, text):
        """The lab's pillar file; the minions refresh their pillars before the next salt call
        (``LabSalt.refresh_if_stale``)."""
        if self.path.read_text() != text:
            self.path.write_text(text)
            _STALE_PILLAR.add(generation(self.lab))

    def edit(self, change):
        """``change(ksha)`` mutates a fresh copy of the original ``ksha`` dict, which is then written:
        each edit starts from the pillar the test began with, not from the previous edit."""
        pillar = yaml.safe_load(self.original)
        change(pillar["ksha"])
        self.write(yaml.safe_dump(pillar))
        return pillar

    def restore(self):
        self.write(self.original)

    def apply(self, change, until=None):
        """Edit the pillar (as ``edit``) and run orch.ksha once, up to phase ``until`` (a test of
        the LB or etcd phases need not wait for the later phases): (exit code, {state ID: return}).
        The ``lab_pillar`` fixture restores the pillar afterwards and, unless the last ``apply``
        set the original pillar back and converged every phase an ``apply`` of the test reached,
        leaves the cluster to be converged again (up to that phase) before the next test that
        uses it (``_converged_first``)."""
        pillar = self.edit(change)
        back = _pruned(pillar) == _pruned(yaml.safe_load(self.original))
        before = self.reached
        # until the run below shows otherwise (it may raise, having run any phase up to `until`)
        self.ran(until)
        rc, states = self.salt.orchestrate(until=until)
        self.reached, converged = after_apply(before, until, back, rc)
        self.applied = not converged
        return rc, states

    def ran(self, until=None):
        """The test ran states of the phases up to `until` (None: every phase) with an edited
        pillar itself (not through ``apply``): the cluster is converged again up to there after it."""
        self.reached = furthest(self.reached, until)
        self.applied = True

    def converged(self):
        """The test put the cluster back itself (the original pillar, applied to every host it
        changed): nothing to converge after it."""
        self.applied = False

    def put_back(self):
        """The original pillar again; after an ``apply`` that left the cluster elsewhere, the
        cluster is marked to be converged to it, up to the furthest phase an apply reached, by
        the next test that uses it (none may: the last test of a run leaves the orchestration
        to nobody)."""
        if self.applied:
            self.applied = False
            mark_elsewhere(self.lab, self.reached)
        self.restore()


def after_apply(reached, until, back, rc):
    """After one ``apply`` up to phase `until` (None: every phase) that set the original pillar
    back (`back`) or not, with exit code `rc` (None: not run yet), when the test's applies so far
    changed phases up to `reached`: (the furthest phase changed now, whether the cluster is
    converged to the original pillar). Converged: this apply set the original pillar back and
    succeeded up to a phase no earlier apply went beyond; the phases after it only ever ran with
    the original pillar. This holds while a phase's states depend on the pillar only, not on what
    an earlier phase left on the hosts (true of every phase so far; a phase that reads the live
    cluster, as the etcd phase reads its members, is itself among those converged again)."""
    if not back:
        reached = furthest(reached, until)
    return reached, rc == 0 and back and furthest(reached, until) == phase_or_last(until)


def phase_or_last(until):
    return until or PHASES[-1]


def furthest(*phases):
    """The latest of phases (None: every phase, the last), as a phase name."""
    return max((phase_or_last(p) for p in phases), key=PHASES.index)


def _pruned(value):
    """``value`` without empty mappings (``etcd: {}`` means the defaults, as no ``etcd`` does)."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v != {}}
    return value


@pytest.fixture
def lab_pillar(_lab_session):
    """Change the lab's ksha pillar for one test: ``lab_pillar.edit(fn)`` (pillar only) or
    ``lab_pillar.apply(fn)`` (pillar, then one orch.ksha). Afterwards the original pillar comes
    back and, after an ``apply``, the next test that uses the shared converged cluster gets it
    converged again first (``_converged_first``). It edits the lab that is up; it never brings
    one up."""
    lab = core.Lab.load()
    assert lab is not None, "no lab is up"
    pillar = LabPillar(lab, LabSalt(lab))
    yield pillar
    pillar.put_back()


def failed_states(out):
    """The states that did not succeed, as {state ID: comment}, for one state run ({key: state
    return}: a minion's highstate, the orchestration's states); for salt's per-minion output
    ({minion: state run}), {minion: that} for every minion with one (or the minion's error as is)."""
    if all(isinstance(v, dict) and "result" in v for v in out.values()):
        return {s.get("__id__", key): _why(s) for key, s in out.items() if s["result"] is not True}
    failed = {}
    for minion, states in out.items():
        if not isinstance(states, dict):
            failed[minion] = states
        elif bad := failed_states(states):
            failed[minion] = bad
    return failed


def leaf_pki(states, comment):
    """The IDs of a state run's leaf key and certificate states (x509_v2's) that ended with `comment`."""
    return sorted(
        s["__id__"]
        for key, s in states.items()
        if key.startswith("x509_|-") and s["__id__"].endswith(("-key-present", "-certificate-issued"))
        and s["comment"] == comment
    )  # fmt: skip


def _why(state):
    """A failed state's comment; for an orchestration step, with its minions' failed states too
    ("Run failed on minions: X" alone does not say why)."""
    minions = (state.get("changes") or {}).get("ret")
    if not isinstance(minions, dict):
        return state["comment"]
    runs = {m: r for m, r in minions.items() if isinstance(r, dict) and r}  # salt.state steps' state runs
    failed = {m: f for m, r in runs.items() if (f := failed_states(r))}
    return f"{state['comment']}: {failed}" if failed else state["comment"]


def wait_for(predicate, timeout, step=0.2):
    """The predicate's first truthy value within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def orchestrate_ok(salt, *args, until=None):
    """orch.ksha (up to phase ``until``), which must succeed: {state ID: return}."""
    rc, states = salt.orchestrate(*args, until=until)
    if rc != 0:  # whole, on the test's output: pytest shortens an assertion's message
        print("orch.ksha failed:", json.dumps(failed_states(states), indent=1, default=str))
    assert rc == 0, failed_states(states)
    return states


# The runners that read no minion's pillar (they compile the pillars on the master, and ksha.plan
# asks etcd with the master's model): no refresh before them.
MASTER_SIDE_RUNNERS = ("ksha.plan", "ksha.validate")
# orch.ksha's preflight step that refreshes every minion's pillar (ksha/plan.py)
PILLAR_REFRESHED = "ksha-preflight-pillar-refreshed"
# The lab generations whose pillar file changed since their minions last refreshed their pillars.
_STALE_PILLAR: set[str] = set()
# The lab's generation (its master's pid: a new lab, a new master) -> the states of the
# orchestration that converged it from bare hosts.
_CONVERGED: dict[str, dict] = {}
# The generations whose cluster a test left elsewhere (its pillar is the original again) -> the
# furthest phase that must be converged again (the later ones never saw the change).
_ELSEWHERE: dict[str, str] = {}
# The module fixtures that hand out the shared converged cluster (they call converged_lab):
# a test using one gets the cluster converged first. A new lab test module adds its own.
CONVERGED_FIXTURES = ("etcd_lab", "members_lab", "converged", "keepalived_lab", "cp_lab", "nodes_lab", "reconf_lab")
# (cloud_lab, test_loadbalancer_qingcloud.py's, holds the cluster as the test before left it)


def generation(lab):
    return (lab.master_dir / "salt-master.pid").read_text().strip()


def mark_elsewhere(lab, until=None):
    """The cluster of `lab` is not converged to the original pillar up to phase `until` (None:
    any phase): the next test that uses it converges it first."""
    key = generation(lab)
    _ELSEWHERE[key] = furthest(_ELSEWHERE.get(key, PHASES[0]), until)


@pytest.fixture(autouse=True)
def _converged_first(request):
    """Before a test that uses the shared converged cluster: if the test before it left the
    cluster elsewhere (an ``apply`` of ``lab_pillar``), one orch.ksha converges it to the
    original pillar. Deferred to here, not done in that test's teardown, so that a run whose
    last tests do not use the cluster spends no orchestration on it."""
    if request.node.get_closest_marker("converges"):
        return  # its own first orchestration converges the cluster (``converge``)
    if _ELSEWHERE and set(CONVERGED_FIXTURES) & set(request.fixturenames):
        # the lab the test gets (brought up again if a test took it down: a new lab is
        # converged from bare hosts by converged_lab)
        _converge_if_elsewhere(_lab_ready() or core.up("seed"))


def converge(lab, salt):
    """orch.ksha of the original pillar, every phase, run by a test marked ``converges`` as its
    first orchestration: (exit code, {state ID: return}). Once it succeeds the cluster is
    converged, whatever a test before left (the run's plan cleans what another pillar left)."""
    rc, states = salt.orchestrate()
    if rc == 0:
        _ELSEWHERE.pop(generation(lab), None)
    return rc, states


def converged_again(lab, until):
    """A test converged the cluster to the original pillar's hosts' states itself, every phase up
    to `until` (one orch.ksha of a pillar that differs from the original in nothing any host's
    states read): a mark that a test before left, no further than `until`, is cleared."""
    key = generation(lab)
    if key in _ELSEWHERE and PHASES.index(_ELSEWHERE[key]) <= PHASES.index(until):
        del _ELSEWHERE[key]


def _converge_if_elsewhere(lab):
    if generation(lab) in _ELSEWHERE:
        until = _ELSEWHERE[generation(lab)]
        orchestrate_ok(LabSalt(lab), until=None if until == PHASES[-1] else until)
        del _ELSEWHERE[generation(lab)]


def converged_lab(as_left=False):
    """For module fixtures: the seed lab converged by orch.ksha (LB + TLS etcd), shared by every
    lab test module. The first module of a lab runs the orchestration from bare hosts; the
    next ones reuse that cluster without orchestrating again, unless the lab was brought up
    anew since. Tests that change the cluster put it back (``lab_pillar``, their own cleanup).
    `as_left`: a cluster converged once, as the test before left it (not converged to the
    original pillar again): for a test that holds whatever a test before it changed, which
    saves that orchestration (its fixture is not among CONVERGED_FIXTURES).
    Returns (lab, salt, the states of the orchestration from bare hosts)."""
    lab = _lab_ready() or core.up("seed")
    current = generation(lab)
    if current in _CONVERGED:  # synced and converged already
        if not as_left:
            _converge_if_elsewhere(lab)  # a module fixture may use the cluster before _converged_first
        return lab, LabSalt(lab), _CONVERGED[current]
    salt = LabSalt(lab)
    # a fresh lab's master has not synced ksha's runner and external pillar yet
    rc, _, proc = salt.run("saltutil.sync_all")
    assert rc == 0, proc.stderr
    t0 = time.monotonic()
    _CONVERGED[current] = orchestrate_ok(salt)
    print(f"orch.ksha from bare hosts to LB + healthy TLS etcd: {time.monotonic() - t0:.1f} s")
    return lab, salt, _CONVERGED[current]
