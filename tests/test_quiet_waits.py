"""Quiet when nothing is due (invariant I3): parks and back-offs are slept through, not spun.

`orch wait` returns before the earliest clock-driven step (engine/due.py) only for an event
or work a step would do now; `orch run` prints one line per change and sleeps; a process
holds one inotify instance however often it waits. The long test parks and backs off for
over 90 s, in four sessions at once, and measures the real processes: their output, their
CPU time from /proc and their `anon_inode:inotify` descriptors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from orchtest import kill_agents_left, orch_argv, orch_env, run_orch

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"
LONG = 95  # seconds: every park and back-off of the long test lasts at least 90 s
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- measuring processes
def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on; comm may hold spaces


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (and reaped children's) of a process and all its descendants."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat(int(name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    total = 0
    for pid in tree:
        try:
            f = _stat(pid)
            total += sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICK


def inotify_instances(pid: int) -> int:
    count = 0
    folder = f"/proc/{pid}/fd"
    for name in os.listdir(folder):
        try:
            count += os.readlink(f"{folder}/{name}") == "anon_inode:inotify"
        except OSError:
            continue
    return count


class Watched:
    """An `orch run` as a real process: its lines with arrival times, and samples of its
    process tree's CPU seconds and its inotify instances, once a second."""

    def __init__(self, ws: Path, goal: str, env: dict[str, str]):
        self.ws = ws
        self.proc = subprocess.Popen(orch_argv("run", goal, *SIM_TEAM), cwd=ws, env=orch_env(env),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self.samples: list[tuple[float, float, int]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._reader.start()
        self._sampler.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _sample(self) -> None:
        while self.proc.poll() is None:
            try:
                self.samples.append((time.monotonic(), tree_cpu_seconds(self.proc.pid),
                                     inotify_instances(self.proc.pid)))
            except OSError:
                return  # it exited between the poll and the read
            time.sleep(1.0)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def park(self, marker: str) -> tuple[float, float]:
        """The sleep the autopilot announced: from its line to the next line."""
        at = next(i for i, (_, line) in enumerate(self.lines) if marker in line)
        return self.lines[at][0], self.lines[at + 1][0]

    def check_quiet(self, marker: str, at_least: float) -> None:
        out = self.text()
        start, end = self.park(marker)
        assert end - start >= at_least, f"the sleep lasted {end - start:.0f} s\n{out}"
        inside = [line for t, line in self.lines if start < t < end]
        assert inside == [], f"lines printed while asleep: {inside}\n{out}"
        window = [(t, cpu) for t, cpu, _ in self.samples if start + 1 <= t <= end - 1]
        (t0, cpu0), (t1, cpu1) = window[0], window[-1]
        share = (cpu1 - cpu0) / (t1 - t0)
        assert t1 - t0 >= at_least - 5 and share < 0.05, f"{share:.1%} of a core over {t1 - t0:.0f} s asleep"
        counts = [n for _, _, n in self.samples if n]
        assert counts and set(counts) == {1}, f"inotify instances over the run: {counts}"
        assert len(self.lines) < 60, out  # one line per change, not per wake


def _workspace(root: Path, name: str, policy: str = "") -> tuple[Path, dict[str, str]]:
    ws = root / name
    (ws / ".orch").mkdir(parents=True)
    if policy:
        (ws / ".orch" / "policy.toml").write_text(policy)
    # Each session's sim counts its own `runs=`: two sessions with one goal must not share a count,
    # wherever the scratch folder lies (its parents may hold a repository).
    return ws, {"ORCH_HOME": str(ws / ".orch"), "ORCH_SIM_HOME": str(root / f"{name}-sim")}


def _events(ws: Path) -> list[dict]:
    log = next((ws / ".orch" / "sessions").glob("*/events.jsonl"))
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _orch_json(ws: Path, env: dict, *args: str, timeout: float = 700) -> dict:
    proc = run_orch(*args, "--json", cwd=ws, env=env, timeout=timeout)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def follow_the_advice(ws: Path, env: dict, limit: int = 60) -> list[dict]:
    """A conductor that does exactly what `orch wait` advises, until the criteria hold. Each
    wait is returned with the wall-clock times it started and ended."""
    waits = []
    for _ in range(limit):
        started = time.time()
        digest = _orch_json(ws, env, "wait", "--timeout", "600")
        digest["_started"], digest["_ended"] = started, time.time()
        waits.append(digest)
        advice = digest["next"][0].split("#")[0].split()
        if advice[:2] == ["orch", "report"]:
            run_orch("report", cwd=ws, env=env, check=True)
            return waits
        if advice[:2] == ["orch", "step"]:
            run_orch("step", cwd=ws, env=env, check=True)
        else:
            assert advice[:2] == ["orch", "wait"], digest["next"]
    raise AssertionError(f"not finished after {limit} waits: {waits[-1]}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_parks_and_back_offs_of_90_s_are_slept_through_quietly_and_the_work_finishes(tmp_path):
    """Four sessions at once: `orch run` parked by a usage limit that resets 95 s ahead, one
    whose failed task backs off 95 s, one parked by a 429 quota error (`[sim: fail=quota]`,
    a 60 s back-off with no reset time), and a conductor following `orch wait`'s advice
    through a 95 s park."""
    no_grace = "[limits]\nlimit_grace_seconds = 0\n"
    park_ws, park_env = _workspace(tmp_path, "park", no_grace)
    retry_ws, retry_env = _workspace(tmp_path, "retry")
    retry_env["ORCH_RETRY_BACKOFF"] = str(LONG)
    quota_ws, quota_env = _workspace(tmp_path, "quota", no_grace)
    conductor_ws, conductor_env = _workspace(tmp_path, "conductor", no_grace)
    runs: list[Watched] = []
    conducted: dict = {}
    try:
        runs = [Watched(park_ws, f"{GOAL} [sim@implementer: limit={LONG} runs=1]", park_env),
                Watched(retry_ws, f"{GOAL} [sim: exit=2 role=implementer runs=1]", retry_env),
                Watched(quota_ws, f"{GOAL} [sim@implementer: fail=quota runs=1]", quota_env)]
        run_orch("start", f"{GOAL} [sim@implementer: limit={LONG} runs=1]", *SIM_TEAM, cwd=conductor_ws,
                 env=conductor_env, check=True)

        def conduct() -> None:
            try:
                conducted["waits"] = follow_the_advice(conductor_ws, conductor_env)
            except BaseException as e:  # re-raised in the test's thread
                conducted["error"] = e

        conductor = threading.Thread(target=conduct)
        conductor.start()
        codes = [w.finish(timeout=600) for w in runs]
        conductor.join(timeout=600)
    finally:
        for w in runs:
            if w.proc.poll() is None:
                w.proc.kill()
        for ws in (park_ws, retry_ws, quota_ws, conductor_ws):
            kill_agents_left(ws / ".orch")
    park, retry, quota = runs
    for w, code in zip(runs, codes):
        assert code == 0 and "all completion criteria hold" in w.text(), w.text()
        assert "orch step" not in w.text() and "Traceback" not in w.text(), w.text()  # it drives itself

    park.check_quiet("sleeping until it resets", at_least=LONG - 15)
    resumed = next(e for e in _events(park_ws) if "has reset after" in e.get("reason", ""))
    parked = next(e for e in _events(park_ws) if e["kind"] == "agent.parked")
    assert _ts(resumed["ts"]) >= _ts(parked["data"]["resume_at"])  # finished after the reset, not before

    retry.check_quiet("back-off ends", at_least=LONG - 15)
    assert f"retried in {LONG} s" in retry.text()
    assigned = [e for e in _events(retry_ws) if e["kind"] == "task.assigned" and e["task"] == "T-2"]
    failed = next(e for e in _events(retry_ws) if "queued again, retried in" in e.get("reason", ""))
    assert len(assigned) == 2 and _ts(assigned[1]["ts"]) - _ts(failed["ts"]) >= LONG

    quota.check_quiet("sleeping until it resets", at_least=45)
    assert "rate limit" in quota.text()

    assert "error" not in conducted, conducted.get("error")
    waits = conducted["waits"]
    parked = next(e for e in _events(conductor_ws) if e["kind"] == "agent.parked")
    resume_at = _ts(parked["data"]["resume_at"])
    # While parked: the wait that reports the park, then one wait, which returns when the reset is due.
    during = [w for w in waits if w["_ended"] > _ts(parked["ts"]) and w["_started"] < resume_at]
    told = [w for w in during if w["woke"]["why"] == "event" and any("parked" in h for h in w["happened"])]
    asleep = [w for w in during if w not in told]
    assert len(told) <= 1 and len(asleep) == 1, [(w["woke"], w["waited_seconds"]) for w in during]
    slept = asleep[0]
    assert slept["woke"]["why"] == "due" and slept["due"]["cause"] == "limit_reset", slept
    assert slept["_ended"] >= resume_at and slept["waited_seconds"] >= 60, slept
    assert slept["next"][0].startswith("orch step"), slept["next"]
    # Every wait that returned early said why: an event, or work a step would do at once.
    for w in waits:
        assert w["woke"]["why"] in ("event", "work", "due", "done"), w["woke"]
        if w["woke"]["why"] == "event":
            assert w["happened"], w
    report = json.loads(next(conductor_ws.glob(".orch/sessions/*/reports/session-report.json")).read_text())
    assert report["finalized"]


# ---------------------------------------------------------------------------- every clock-driven step wakes it
def _started_conductor(ws: Path, env: dict, goal: str) -> None:
    run_orch("start", goal, *SIM_TEAM, cwd=ws, env=env, check=True)
    run_orch("step", cwd=ws, env=env, check=True)


def test_wait_sleeps_through_a_back_off_and_returns_when_the_retry_is_due(tmp_path):
    ws, env = _workspace(tmp_path, "w")
    env["ORCH_RETRY_BACKOFF"] = "6"
    _started_conductor(ws, env, f"{GOAL} [sim: exit=2 role=implementer runs=1]")
    try:
        for _ in range(12):  # to the implementer's failure, following the advice
            digest = _orch_json(ws, env, "wait", "--timeout", "60")
            if any("queued again, retried in" in e.get("reason", "") for e in _events(ws)):
                break
            run_orch("step", cwd=ws, env=env, check=True)
        retry = next(e for e in _events(ws) if "queued again, retried in" in e.get("reason", ""))
        session = json.loads(next(ws.glob(".orch/sessions/*/session.json")).read_text())
        retry_at = _ts(next(t for t in session["tasks"] if t["id"] == retry["task"])["retry_at"])
        digest = _orch_json(ws, env, "wait", "--timeout", "60")
        while digest["woke"]["why"] != "due":  # events of the failure itself come first
            assert digest["woke"]["why"] in ("event", "work"), digest
            if digest["woke"]["why"] == "work":
                run_orch("step", cwd=ws, env=env, check=True)
            digest = _orch_json(ws, env, "wait", "--timeout", "60")
        assert time.time() >= retry_at and digest["due"]["cause"] == "retry" and digest["due"]["task"] == retry["task"]
        assert digest["next"][0].startswith("orch step")
        assert "assigned to" in run_orch("step", cwd=ws, env=env, check=True).stdout
    finally:
        kill_agents_left(ws / ".orch")


def _due_waits(ws: Path, env: dict, cause: str) -> dict:
    """Follow the advice (wait, step) until a wait returns for a clock-driven step of this cause."""
    for _ in range(8):
        digest = _orch_json(ws, env, "wait", "--timeout", "120")
        if digest["woke"]["why"] == "due" and digest["due"]["cause"] == cause:
            return digest
        assert digest["woke"]["why"] in ("event", "work", "due"), digest
        if digest["next"][0].startswith("orch step"):
            run_orch("step", cwd=ws, env=env, check=True)
    raise AssertionError(f"no wait returned for a due {cause}")


def test_wait_wakes_for_a_stall_past_the_silence_display(tmp_path):
    """Shown silent at 2 s (an event), nudged at the 8-s stall limit: a wait returns then, not at its timeout."""
    ws, env = _workspace(tmp_path, "w", "[limits]\nstall_after_seconds = 8\n")
    env["ORCH_SILENT_AFTER"] = "2"
    _started_conductor(ws, env, f"{GOAL} [sim: stall=100 role=architect]")
    try:
        digest = _due_waits(ws, env, "stall")
        agent = _orch_json(ws, env, "status")["agents"][0]
        assert time.time() >= _ts(digest["due"]["at"]) and digest["waited_seconds"] < 60, digest
        assert digest["next"][0].startswith("orch step"), digest["next"]
        assert "nudged" in run_orch("step", cwd=ws, env=env, check=True).stdout, agent
    finally:
        kill_agents_left(ws / ".orch")


def test_wait_wakes_for_a_runs_wall_time(tmp_path):
    """An agent printing steadily is never silent; its run's wall-time limit is still a due step."""
    ws, env = _workspace(tmp_path, "w", "[limits]\nrun_wall_seconds = 6\n")
    _started_conductor(ws, env, f"{GOAL} [sim: lines=3000 interval=0.1 role=architect]")
    try:
        digest = _due_waits(ws, env, "wall_time")
        assert time.time() >= _ts(digest["due"]["at"]) and digest["waited_seconds"] < 60, digest
        assert "past the wall-time limit: stopped" in run_orch("step", cwd=ws, env=env, check=True).stdout
    finally:
        kill_agents_left(ws / ".orch")


# ---------------------------------------------------------------------------- one watcher per process
def test_a_process_keeps_one_inotify_instance_however_many_waits_and_sessions_it_watches(workspace_dir):
    from orchestrator.engine.wait import wait_for_change
    from orchestrator.runtime.watch import SessionWatcher, stop_watching
    from orchestrator.store.sessions import Workspace

    for _ in range(3):
        run_orch("start", GOAL, *SIM_TEAM, check=True)
    ws = Workspace(workspace_dir / ".orch")
    stores = [ws.open(s) for s in ws.session_ids()]
    assert len(stores) == 3
    me = os.getpid()
    stop_watching()  # an earlier test in this process (a pytest-xdist worker runs many) may have started it
    base = inotify_instances(me)
    for _ in range(40):
        wait_for_change(stores[0], timeout=0)
    assert inotify_instances(me) - base == 1  # one for all forty waits
    watchers = [SessionWatcher(s).start() for s in stores] + [SessionWatcher(stores[0]).start()]
    assert inotify_instances(me) - base == 1
    watchers[0].stop()  # its twin on the same folder still hears writes
    (stores[0].path / "agents" / "poke.txt").write_text("x")
    assert watchers[-1].sleep(10), "the remaining watcher of the folder was not woken"
    for w in watchers[1:]:
        w.stop()
    stop_watching()
    assert inotify_instances(me) == base
    assert not [t for t in threading.enumerate() if "Inotify" in type(t).__name__ or "Observer" in type(t).__name__]


def _without_inotify(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """orch in a user namespace whose inotify instance limit is 0: the kernel refuses the first."""
    script = "echo 0 > /proc/sys/user/max_inotify_instances && exec \"$@\""
    return subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh", *orch_argv(*args)],
                          cwd=cwd, env=orch_env(env), capture_output=True, text=True, timeout=120)


def test_a_refused_inotify_instance_is_one_line_naming_the_limit_and_the_session_resumes(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "sh", "-c", "echo 0 > /proc/sys/user/max_inotify_instances"],
            capture_output=True).returncode != 0:
        pytest.skip("needs user namespaces (unshare --user) to lower the inotify limit for one process")
    ws, env = _workspace(tmp_path, "w")
    run = _without_inotify("run", GOAL, *SIM_TEAM, cwd=ws, env=env)
    sid = next((ws / ".orch" / "sessions").iterdir()).name
    err = [line for line in run.stderr.splitlines() if line.startswith("orch:")]
    assert run.returncode == 2 and len(err) == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert err[0].startswith("orch: the kernel refused an inotify instance")
    assert "fs.inotify.max_user_instances" in err[0] and "sysctl" in err[0] and f"orch resume {sid}" in err[0]
    waited = _without_inotify("wait", "--timeout", "5", cwd=ws, env=env)
    assert waited.returncode == 2 and waited.stderr.startswith("orch: ") and waited.stderr.count("\n") == 1
    assert "max_user_instances = 0" in waited.stderr
    resumed = run_orch("resume", sid, cwd=ws, env=env, timeout=300)
    assert resumed.returncode == 0 and "all completion criteria hold" in resumed.stdout, resumed.stdout
