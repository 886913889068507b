"""Budgets and concurrency caps that hold, with real orch processes and real sim agents."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from orchestrator.core.models import (
    AgentState, EventKind, RoundRecord, SessionState, Task, TaskKind, TaskState, Team, Role,
)
from orchestrator.plugin.hooks import decide_stop
from orchestrator.spend.budget import BudgetPolicy, Spend, measure
from orchestrator.spend.raise_budget import parse_raise, set_budget_lines
from orchestrator.store.sessions import Workspace
from orchtest import orch_json, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"


def _events(state_root: Path) -> list[dict]:
    path = next(state_root.glob("sessions/*/events.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def _report(state_root: Path) -> dict:
    return json.loads(next(state_root.glob("sessions/*/reports/session-report.json")).read_text())


def test_a_budget_below_the_natural_cost_pauses_then_completes_once_raised(workspace_dir):
    state = workspace_dir / ".orch"
    state.mkdir()
    (state / "policy.toml").write_text("[budget]\nsession_usd = 0.005\n")
    proc = run_orch("run", GOAL, *SIM_TEAM, timeout=180)
    # The autopilot stops for a person, saying why.
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "paused: budget reached ($" in proc.stdout and "of $0.0050)" in proc.stdout
    sid = next(state.glob("sessions/*")).name
    store = Workspace(state).open(sid)
    session = store.read_session()
    assert session.state is SessionState.PAUSED and session.stop_reason.startswith("budget reached ($")

    # Nothing started after the pause.
    events = _events(state)
    paused_at = next(i for i, e in enumerate(events) if e["kind"] == EventKind.BUDGET_REACHED.value)
    assert not [e for e in events[paused_at:] if e["kind"] in ("agent.launched", "agent.resumed")]
    # Another step while paused starts nothing either.
    run_orch("step", check=True)
    assert not [e for e in _events(state)[paused_at:] if e["kind"] in ("agent.launched", "agent.resumed")]

    # Visible as paused everywhere a person or the conductor looks.
    check = run_orch("check")
    assert check.returncode == 1 and "paused: budget reached ($" in check.stdout
    assert "orch budget --raise" in check.stdout
    digest = orch_json("wait", "--timeout", "0")
    assert digest["session_state"] == "paused"
    assert any(m.startswith("paused: budget reached") for m in digest["missing"])
    status = run_orch("status", check=True).stdout
    assert "paused: budget reached ($" in status
    shown = orch_json("budget")
    assert shown["state"] == "paused" and shown["limits"][0]["reached"]
    text = run_orch("budget", check=True).stdout  # REACHED, and the command that raises it
    assert "session_usd: $" in text and "REACHED" in text
    assert f"Next: orch budget --raise session_usd=N --session {sid}" in text and f"orch resume {sid}" in text

    # Raise the budget: recorded in the audit, and the session completes.
    raised = run_orch("budget", "--raise", "session_usd=1", check=True)
    assert "session_usd: 0.005 -> 1" in raised.stdout
    audit = orch_json("audit")
    assert [a["action"] for a in audit if a["agent"] == "session"][:2] == ["budget_paused", "budget_raised"]
    done = run_orch("resume", sid, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert store.read_session().state is SessionState.COMPLETE
    assert "budget_resumed" in [a["action"] for a in orch_json("audit")]
    r = _report(state)
    total = sum(a["usage"]["cost_usd"] for a in r["agents"])
    assert r["usage_total"]["cost_usd"] == pytest.approx(total) and total > 0.005


def test_warn_at_warns_once_and_agent_limits_pause(workspace_dir):
    state = workspace_dir / ".orch"
    state.mkdir()
    # The architect's first run uses about 1200 tokens (past warn_at of its 1500-token agent
    # limit, not past the limit); its next run, or the implementer's (about $0.006 a run, past
    # warn_at of a $0.01 session budget), reaches a limit.
    (state / "policy.toml").write_text("[budget]\nsession_usd = 0.01\nagent_tokens = 1500\nwarn_at = 0.5\n")
    proc = run_orch("run", GOAL, *SIM_TEAM, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    events = _events(state)
    warnings = [e for e in events if e["kind"] == "budget.warning"]
    assert warnings and len({e["reason"] for e in warnings}) == len(warnings)
    reached = next(e for e in events if e["kind"] == "budget.reached")
    assert "tokens" in reached["reason"] and "agent " in reached["reason"]


def test_on_budget_stop_stops_running_agents(workspace_dir):
    state = workspace_dir / ".orch"
    state.mkdir()
    (state / "policy.toml").write_text('[budget]\nsession_tokens = 1500\non_budget = "stop"\n')
    proc = run_orch("run", GOAL, *SIM_TEAM, "--implementers", "2", env={"ORCH_SIM_PACE": "0.3"}, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    store = Workspace(state).open(next(state.glob("sessions/*")).name)
    assert store.read_session().state is SessionState.PAUSED
    assert not [a for a in store.agents() if a.state in (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT)]


def test_the_stop_hook_lets_the_conductor_stop_with_the_reason(workspace_dir):
    from orchestrator.plugin.hooks import claim

    store = Workspace().create(workspace_dir, goal="g", coordinated=True)
    claim(store, "cc-1")
    with store.edit_session() as s:
        s.state = SessionState.PAUSED
        s.stop_reason = "budget reached ($0.0300 of $0.0200)"
    answer = decide_stop({"session_id": "cc-1", "cwd": str(workspace_dir)})
    assert "decision" not in answer.output
    assert "paused: budget reached ($0.0300 of $0.0200)" in answer.output["systemMessage"]


def test_bad_budget_input_is_one_line_and_changes_nothing(workspace_dir):
    Workspace().create(workspace_dir, goal="g", coordinated=True)
    for bad in ("session_usd=-1", "dollars=3", "session_usd=lots", "agent_tokens=1.5"):
        proc = run_orch("budget", "--raise", bad)
        assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1
    assert not (workspace_dir / ".orch" / "policy.toml").exists()
    (workspace_dir / ".orch" / "policy.toml").write_text("[budget]\nwarn_at = 7\n")
    proc = run_orch("budget")
    assert proc.returncode == 2 and "warn_at" in proc.stderr


def test_raising_edits_only_the_budget_lines():
    text = "# mine\n[limits]\nmax_agents = 2\n\n[budget]\nsession_usd = 1 # old\nwarn_at = 0.5\n"
    out = set_budget_lines(text, {"session_usd": 5.0, "agent_tokens": 100})
    assert out == "# mine\n[limits]\nmax_agents = 2\n\n[budget]\nagent_tokens = 100\nsession_usd = 5\nwarn_at = 0.5\n"
    assert set_budget_lines("", {"session_usd": 2.5}) == "[budget]\nsession_usd = 2.5\n"
    assert parse_raise("3") == ("session_usd", 3.0)
    assert parse_raise("session_tokens=100000") == ("session_tokens", 100000)


def test_measure_names_every_limit():
    b = BudgetPolicy(session_usd=1, agent_tokens=10)
    assert measure(b, []) == [Spend("session_usd", "session_usd", 0.0, 1.0)]
    assert Spend("x", "agent_usd", 0.5, 0.25, "a-1").text() == "agent a-1: $0.5000 of $0.2500"


# --------------------------------------------------------------------------- concurrency caps


def _sim_processes(workspace: Path) -> int:
    """How many sim agent processes are running in this workspace (from the process table)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            # the agent itself (`python -m orchestrator.sim …`), not its supervisor (`sh supervise.sh …`)
            if argv[1:3] != [b"-m", b"orchestrator.sim"]:
                continue
            if os.readlink(f"/proc/{pid}/cwd") == str(workspace):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    n += 1
        except OSError:
            continue
    return n


def test_max_per_cli_runs_one_sim_agent_at_a_time_and_every_task_completes(workspace_dir):
    state = workspace_dir / ".orch"
    state.mkdir()
    (state / "policy.toml").write_text("[limits]\nmax_per_cli = { sim = 1 }\n")
    store = Workspace(state).create(workspace_dir, goal="g", coordinated=True,
                                    team=Team(architect="sim", implementer="sim", reviewer="sim", implementers=3))
    with store.edit_session() as s:
        s.round = 1
        s.rounds = [RoundRecord(n=1, note="implementation")]
        s.tasks = [Task(id="T-1", kind=TaskKind.SPEC, role=Role.ARCHITECT, title="spec", state=TaskState.DONE)]
        s.tasks += [Task(id=f"T-{n}", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title=f"part {n}",
                         prompt=f"say hello from part {n} [sim: duration=1]") for n in (2, 3, 4)]
        s.next_seq = {"T": 4}
    counts: list[int] = []
    waiting_seen: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            counts.append(_sim_processes(workspace_dir))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        def three_done():
            run_orch("step", check=True)
            shown = orch_json("status")["waiting"]
            waiting_seen.extend(shown.values())
            tasks = store.read_session().tasks
            return all(t.state is TaskState.DONE for t in tasks if t.id in ("T-2", "T-3", "T-4"))
        wait_until(three_done, timeout=90, interval=0.2, what="the three tasks done")
    finally:
        stop.set()
        sampler.join()
    assert max(counts) == 1, "never more than one sim agent process at a time"
    assert counts.count(1) > 10, "the sampler saw agents running"
    # The run spans on disk agree: no two runs overlapped.
    spans = sorted((r.started_at, r.ended_at) for a in store.agents() for r in a.runs)
    assert all(end <= nxt_start for (_, end), (nxt_start, _) in zip(spans, spans[1:]))
    waiting = [e for e in _events(state) if e["kind"] == "task.waiting"]
    assert waiting and "max_per_cli.sim is 1" in waiting[0]["reason"]
    assert waiting_seen and "max_per_cli.sim is 1" in waiting_seen[0], "status showed the waiting task"


def test_a_bad_cap_is_refused_in_one_line(workspace_dir):
    (workspace_dir / ".orch").mkdir()
    (workspace_dir / ".orch" / "policy.toml").write_text("[limits]\nmax_per_cli = { sim = 0 }\n")
    proc = run_orch("policy", "check")
    assert proc.returncode == 2 and "max_per_cli.sim must be at least 1" in proc.stderr
