"""Nothing is lost: odd agent output, lost supervisors, damaged or unwritable files.

Each class of failure found by the adversarial trials has a test here that drives the real
CLI against real files (and real processes where one is involved).
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.models import Agent, AgentStats, Permission, Role, Usage
from orchestrator.runtime.procs import is_same_process
from orchestrator.store.jsonsafe import model_json
from orchestrator.store.sessions import Workspace
from orchtest import kill_agents_left, orch_json, run_orch, wait_until


@pytest.fixture(autouse=True)
def _no_agent_left_behind(workspace_dir):
    """A failing test must not leave its hanging sim agents running."""
    yield
    kill_agents_left(workspace_dir / ".orch")


def _store():
    return Workspace().resolve(None)


def _launch(prompt: str) -> str:
    return run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", prompt, check=True).stdout.split()[-1]


def _strict_json(path: Path):
    """Parse as a strict JSON reader would: no NaN, no Infinity, valid UTF-8."""
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")
    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=refuse)


def _one_orch_line(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(line.startswith("orch: ") for line in lines), proc.stderr


# --------------------------------------------------------------------------- 4. odd output


ODD_LINES = [
    # an emoji cut in half, as a CLI that truncates text emits it
    '{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"text","text":"cut \\ud83d"}]}}',
    '{"type":"assistant","message":{"id":"m2","role":"assistant","content":[{"type":"tool_use","id":"t\\udc00",'
    '"name":"Bash","input":{"command":"echo \\udfff"}}]}}',
    '{"type":"result","subtype":"success","is_error":false,"result":"half \\ud83d","total_cost_usd":NaN,'
    '"usage":{"input_tokens":1e999,"output_tokens":3}}',
]


def test_lone_surrogates_and_non_finite_numbers_are_stored_readable_and_recorded(workspace_dir):
    odd = _launch("[sim: hang]")
    other = _launch("hello")
    d = _store().agent_dir(odd)
    wait_until(lambda: (d / "stdout.jsonl").exists() and (d / "stdout.jsonl").stat().st_size, what="first line")
    with open(d / "stdout.jsonl", "a") as f:
        f.write("\n".join(ODD_LINES) + "\n")
    for args in (("status",), ("list",), ("status", odd), ("logs", odd, "-n", "5"), ("check",),
                 ("abort", odd), ("status", other), ("wait", "--timeout", "0.2", "--any")):
        proc = run_orch(*args)
        assert proc.returncode in (0, 1), f"orch {' '.join(args)}: {proc.stderr}"
        _one_orch_line(proc)
    meta = _strict_json(d / "meta.json")
    assert meta["state"] == "aborted"
    assert meta["stats"]["repaired_values"] >= 3
    assert "\ufffd" in meta["stats"]["last_text"] or "\ufffd" in meta["runs"][0]["final_text"]
    assert meta["stats"]["usage"]["cost_usd"] == 0.0
    events = [json.loads(line) for line in (d.parents[1] / "events.jsonl").read_bytes().decode().splitlines()]
    assert any("repaired" in (e.get("data") or {}) for e in events)
    # The other agent, and new work, are not blocked by it.
    again = _launch("hello again")
    wait_until(lambda: {a["id"]: a["state"] for a in orch_json("list")}.get(again) == "idle", what="new agent idle")


def test_a_meta_json_with_a_null_cost_still_loads(workspace_dir):
    # What the previous orch wrote for a cost of NaN: every command then refused this file.
    agent_id = _launch("hello")
    wait_until(lambda: {a["id"]: a["state"] for a in orch_json("list")}.get(agent_id) == "idle", what="idle")
    path = _store().agent_dir(agent_id) / "meta.json"
    meta = json.loads(path.read_text())
    meta["stats"]["usage"]["cost_usd"] = None
    meta["ingest"]["closed_usage"]["cost_usd"] = None
    path.write_text(json.dumps(meta))
    proc = run_orch("status", agent_id)
    assert proc.returncode == 0, proc.stderr
    _one_orch_line(proc)


def test_one_damaged_meta_does_not_block_commands_on_the_others(workspace_dir):
    broken = _launch("hello")
    other = _launch("[sim: hang]")
    path = _store().agent_dir(broken) / "meta.json"
    wait_until(lambda: json.loads(path.read_text())["runs"][0].get("pid"), what="pid")
    path.write_bytes(b'{"id": "' + broken.encode() + b'", "runs": [1, 2]')
    damaged = path.read_bytes()
    for args in (("status",), ("list",), ("check",), ("wait", "--timeout", "0.2", "--any"), ("step",),
                 ("status", other), ("abort", other)):
        proc = run_orch(*args)
        assert proc.returncode in (0, 1), f"orch {' '.join(args)}: {proc.stdout} {proc.stderr}"
        _one_orch_line(proc)
    assert {a["id"]: a["state"] for a in orch_json("list")}[other] == "aborted"
    check = run_orch("check")
    assert check.returncode == 1 and broken in check.stdout  # a damaged agent is never "done"
    assert path.read_bytes() == damaged  # reads never rewrite a damaged file


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=40),
       st.floats(allow_nan=True, allow_infinity=True))
def test_any_text_and_any_float_serialize_to_json_that_reads_back(text, number):
    agent = Agent(id="a-1", session="s", role=Role.WORKER, cli="sim", permission=Permission.EDIT, cwd="/",
                  stats=AgentStats(last_text=text, usage=Usage(cost_usd=number)),
                  ingest={"parser_state": {"partial": text, "n": number}})
    data = model_json(agent)
    back = Agent.model_validate_json(data)
    assert math.isfinite(back.stats.usage.cost_usd)
    json.loads(data.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))


# --------------------------------------------------------------------------- 5. lost supervisor


def _run_record(agent_id: str, n: int = 1) -> dict:
    try:
        return json.loads((_store().agent_dir(agent_id) / f"run-{n}.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_a_complete_result_is_a_success_when_the_supervisor_was_killed(workspace_dir):
    agent_id = _launch("[sim: stall=1.5] say hello")
    record = wait_until(lambda: _run_record(agent_id).get("pid") and _run_record(agent_id), what="pid record")
    os.kill(record["supervisor_pid"], signal.SIGKILL)  # before the CLI finishes
    wait_until(lambda: not is_same_process(record["pid"], record.get("proc_start")), timeout=30,
               what="the CLI to finish on its own")
    assert "exit_code" not in _run_record(agent_id)  # nobody recorded the exit
    listed = {a["id"]: a for a in orch_json("list")}
    assert listed[agent_id]["state"] == "idle", listed[agent_id]
    run = json.loads((_store().agent_dir(agent_id) / "meta.json").read_text())["runs"][0]
    assert run["exit_unknown"] is True and run["failure"] is None and run["outcome"] == "success"
    assert run["exit_code"] is None
    run_orch("step", check=True)
    session = _store().read_session()
    assert [t.state.value for t in session.tasks] == ["done"]  # not re-queued, not run again
    events = [e for _, e in _store().read_events()]
    assert sum(e.kind.value in ("agent.launched", "agent.resumed") for e in events) == 1
    exited = [e for e in events if e.kind.value == "agent.exited"]
    assert len(exited) == 1 and "exit code unknown" in exited[0].reason


def test_a_run_without_a_result_is_still_lost_when_its_supervisor_dies(workspace_dir):
    agent_id = _launch("[sim: hang]")
    record = wait_until(lambda: _run_record(agent_id).get("pid") and _run_record(agent_id), what="pid record")
    out = _store().agent_dir(agent_id) / "stdout.jsonl"
    wait_until(lambda: out.stat().st_size > 0, what="its opening line")
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    os.killpg(record["pid"], signal.SIGKILL)
    wait_until(lambda: not is_same_process(record["pid"], record.get("proc_start")), what="the CLI gone")
    meta_run = None
    for _ in range(2):
        run_orch("status", check=True)
        meta_run = json.loads((_store().agent_dir(agent_id) / "meta.json").read_text())["runs"][0]
    assert meta_run["failure"] == "lost" and meta_run["exit_unknown"] is False


def test_a_never_started_mark_gives_way_to_a_complete_result():
    from orchestrator.core.models import EndRequest, Outcome, Run, RunAccumulator
    from orchestrator.runtime.ingest.classify import classify_run

    run = Run(n=1, argv=["x"], cwd="/", permission=Permission.EDIT, started_at="2026-01-01T00:00:00Z",
              end_request=EndRequest.NEVER_STARTED, note="never started")
    done = RunAccumulator(output=True, outcome=Outcome.SUCCESS, final_text="ok")
    assert classify_run(run, done, [], None, 0, "", aborted=False).state.value == "idle"
    assert classify_run(run, RunAccumulator(output=True), [], None, 0, "", aborted=False).state.value == "failed"
