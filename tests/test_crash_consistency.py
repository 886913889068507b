"""SIGKILL at random points across launch, resume, ingest and step: nothing lost, nothing twice.

A sim team works through a real session while `orch run`/`orch resume` (the step loop, which
launches and resumes agents) and `orch status`/`wait`/`step` (the ingest) are killed again and
again at random moments — with the session's ingest owner ingesting beside them — and, in a
second test, while the ingest owner itself is. Then the events are compared with the truth on
disk: a fresh parse of every run's raw output, the runs in every agent's meta.json, and the
agents' states.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter
from orchestrator.core.models import Agent, FailureKind
from orchestrator.store.tail import iter_lines
from orchtest import orch_argv, orch_env, run_orch

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"
KILLS = 50
HANG_GUARD = 900  # seconds; a guard against a hang, not a timing assertion
ENV = {"ORCH_SIM_PACE": "0.02"}


def _events(root: Path) -> list[dict]:
    path = root / "events.jsonl"
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _agents(root: Path) -> list[tuple[Agent, Path]]:
    return [(Agent.model_validate_json(p.read_bytes()), p.parent) for p in root.glob("agents/*/meta.json")]


def _slice(path: Path, start: int, end) -> list[bytes]:
    lines, pos = [], 0
    for line in iter_lines(path):
        if pos >= start and (end is None or pos < end):
            lines.append(line)
        pos += len(line) + 1
    return lines


def _parsed_kinds(agent: Agent, folder: Path) -> dict[int, Counter]:
    """Per run: the normalized event kinds a fresh parser makes of that run's raw output."""
    out = {}
    for i, run in enumerate(agent.runs):
        nxt = agent.runs[i + 1] if i + 1 < len(agent.runs) else None
        parser = get_adapter(agent.cli, agent.sim_format).new_parser()
        events = []
        for stream, name, start, end in (
                ("stdout", "stdout.jsonl", run.stdout_start, nxt.stdout_start if nxt else None),
                ("stderr", "stderr.log", run.stderr_start, nxt.stderr_start if nxt else None)):
            for line in _slice(folder / name, start, end):
                if line.strip():
                    events += parser.feed(stream, line)
        events += parser.finish(run.exit_code)
        out[run.n] = Counter(e.kind.value for e in events)
        out[-run.n] = Counter(e.outcome.value for e in events if e.kind.value == "run_finished" and e.stream != "exit")
    return out


def _kill_later(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL proc after delay unless it ended; True when the kill landed mid-command."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


@pytest.mark.timeout(HANG_GUARD + 600)
def test_fifty_sigkills_lose_no_event_and_no_result_and_repeat_none(workspace_dir):
    root = workspace_dir / ".orch"
    rng = random.Random(2026)
    env = orch_env(ENV)
    sides = [("status",), ("wait", "--timeout", "0.5", "--any"), ("step",), ("list",), ("check",)]
    sessions: list[str] = []
    kills, started = 0, time.monotonic()
    # The count of kills that landed is what the test needs, not a pace: a slow or loaded
    # machine takes longer to reach it. The bound only stops a run that never lands a kill.
    while kills < KILLS and time.monotonic() - started < HANG_GUARD:
        if not sessions or _state(root, sessions[-1]) == "complete":  # keep every kill on live work
            sessions.append(run_orch("start", GOAL, *SIM_TEAM, env=ENV, check=True).stdout.split()[-1])
        # Python needs most of a second to start here: kill late enough that the commands
        # are at work (stepping, launching, resuming, ingesting), and at no fixed point.
        procs = [subprocess.Popen(orch_argv(*args), env=env, cwd=workspace_dir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
                 for args in [("resume", sessions[-1]), rng.choice(sides), rng.choice(sides)]]
        delays = [rng.uniform(0.8, 4.0), rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0)]
        t0 = time.monotonic()
        for proc, delay in sorted(zip(procs, delays), key=lambda x: x[1]):
            kills += _kill_later(proc, max(0.0, delay - (time.monotonic() - t0)))
    assert kills >= KILLS, f"only {kills} kills landed"
    killing = time.monotonic() - started
    finals = [run_orch("resume", s, env=ENV, timeout=180) for s in sessions if _state(root, s) != "complete"]
    for session_id in sessions:
        _check_session(root / "sessions" / session_id)
    for final in finals:  # every task done in the end, nothing lost
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr
    print(f"{kills} kills over {len(sessions)} session(s) in {killing:.0f} s, checked after "
          f"{time.monotonic() - started:.0f} s")


OWNER_KILLS = 30


def _owner(root: Path, session_id: str) -> dict:
    try:
        return json.loads((root / "sessions" / session_id / "ingest.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.timeout(HANG_GUARD + 600)
def test_sigkills_of_the_ingest_owner_lose_no_event_and_repeat_none(workspace_dir):
    """The session's ingest owner, SIGKILLed again and again at random moments while a sim team
    streams, is started again (by the autopilot's launches and waits) and nothing is lost or
    appended twice: the events against a fresh parse of every run, as above."""
    from orchestrator.runtime.procs import is_same_process

    root = workspace_dir / ".orch"
    rng = random.Random(27)
    env = orch_env(ENV)
    sessions: list[str] = []
    kills, started = 0, time.monotonic()
    while kills < OWNER_KILLS and time.monotonic() - started < HANG_GUARD:
        if not sessions or _state(root, sessions[-1]) == "complete":
            sessions.append(run_orch("start", GOAL, *SIM_TEAM, env=ENV, check=True).stdout.split()[-1])
        runner = subprocess.Popen(orch_argv("resume", sessions[-1]), env=env, cwd=workspace_dir,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while runner.poll() is None and kills < OWNER_KILLS:
            try:  # at no fixed point: the kill lands wherever the owner is (between batches, or in one)
                runner.wait(timeout=rng.uniform(0.1, 1.2))
                break
            except subprocess.TimeoutExpired:
                pass
            owner = _owner(root, sessions[-1])
            if owner.get("state") in ("starting", "watching") and is_same_process(owner["pid"], owner.get("proc_start")):
                os.kill(owner["pid"], signal.SIGKILL)
                kills += 1
        if runner.poll() is None:
            runner.send_signal(signal.SIGKILL)
            runner.wait()
    assert kills >= OWNER_KILLS, f"only {kills} kills of the owner landed"
    finals = [run_orch("resume", s, env=ENV, timeout=180) for s in sessions if _state(root, s) != "complete"]
    for session_id in sessions:
        _check_session(root / "sessions" / session_id)
    for final in finals:
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr


def _state(root: Path, session_id: str) -> str:
    try:
        return json.loads((root / "sessions" / session_id / "session.json").read_text())["state"]
    except (FileNotFoundError, ValueError):
        return ""


def _check_session(root: Path) -> None:
    events = _events(root)
    # No batch appended twice.
    tokens = Counter(e["data"].get(k) for e in events for k in ("ingest", "batch") if e.get("data", {}).get(k))
    assert not [t for t, n in tokens.items() if n > 1]
    for agent, folder in _agents(root):
        mine = [e for e in events if e.get("agent") == agent.id]
        # Every recorded run has exactly one launch or resume event.
        starts = Counter(e["data"].get("run") for e in mine if e["kind"] in ("agent.launched", "agent.resumed"))
        assert starts == Counter(r.n for r in agent.runs), f"{agent.id}: run starts logged {dict(starts)}"
        # Every state change has its event: the chain of from → to is unbroken and ends where meta.json is.
        state = "starting"
        for e in (e for e in mine if e["kind"] == "agent.state"):
            assert e["data"]["from"] == state, f"{agent.id}: a state event is missing before {e}"
            state = e["data"]["to"]
        assert state == agent.state.value, f"{agent.id}: log ends at {state}, meta.json says {agent.state.value}"
        # Every line of every run normalized exactly once, and no complete result lost.
        parsed = _parsed_kinds(agent, folder)
        for run in agent.runs:
            logged = Counter(e["data"]["kind"] for e in mine if e["kind"] == "agent.output" and e["data"].get("run") == run.n)
            assert logged == parsed[run.n], f"{agent.id} run {run.n}: logged {dict(logged)} != parsed {dict(parsed[run.n])}"
            if parsed[-run.n]["success"]:
                # (a run whose calls were refused is recovered, not failed: its failure says denied)
                assert run.outcome.value == "success" and run.failure in (None, FailureKind.DENIED), \
                    f"{agent.id} run {run.n} lost its result: {run.failure}"
