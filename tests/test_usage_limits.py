"""Usage limits park an agent: no failed attempt, the same CLI session resumed after the reset,
one limit per CLI, a fallback to another CLI when the policy says so, and a conductor that is
told — with the sim's genuine limit shapes (`[sim@ROLE: limit=SECONDS]`), real processes."""

from __future__ import annotations

import json
from pathlib import Path

from orchtest import run_orch
from test_plugin_hook import answer, claim, run_hook, stop_payload

SIM_TEAM = ("--architect", "sim", "--implementer", "sim", "--reviewer", "sim")
GOAL = "Build a small text utilities library"


def _policy(workspace: Path, text: str) -> None:
    state = workspace / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text(text)


def _session(workspace: Path) -> Path:
    return next((workspace / ".orch" / "sessions").iterdir())


def _events(session: Path) -> list[dict]:
    return [json.loads(line) for line in (session / "events.jsonl").read_text().splitlines() if line.strip()]


def _meta(session: Path, agent: str) -> dict:
    return json.loads((session / "agents" / agent / "meta.json").read_text())


def test_a_limit_parks_the_agent_and_the_same_cli_session_carries_on_after_the_reset(workspace_dir):
    _policy(workspace_dir, "[limits]\nlimit_grace_seconds = 0\n")
    proc = run_orch("run", f"{GOAL} [sim@implementer: limit=2]", *SIM_TEAM, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(workspace_dir)
    events = _events(session)
    parked = [e for e in events if e["kind"] == "agent.parked"]
    assert parked and all(e["agent"] == "implementer-1" for e in parked)
    assert "session limit" in parked[0]["reason"] and parked[0]["data"]["resets_at"]
    assert not any(e["kind"] == "agent.exited" and e["data"].get("failure") for e in events), "a limit is no failure"
    meta = _meta(session, "implementer-1")
    runs = meta["runs"]
    # The run after the limit resumed the same CLI session, with the continuation prompt.
    after = next(r for r in runs if "limit that stopped you has reset" in r["prompt"])
    assert after["argv"].count("--resume") == 1 and meta["cli_session_id"] in after["argv"]
    assert meta["parked_seconds"] > 0
    report = json.loads((session / "reports" / "session-report.json").read_text())
    assert report["finalized"] and report["limits"]
    assert all(t["attempts"] == 1 for t in report["tasks"] if t["agent"] == "implementer-1")
    assert "resumed in the same CLI session" in proc.stdout
    assert "sleeping until it resets" in proc.stdout


def test_with_fallback_the_task_of_a_parked_agent_is_finished_by_another_cli(workspace_dir):
    _policy(workspace_dir, '[limits]\non_usage_limit = "fallback"\n')
    # claude's five-hour window, three hours from its reset: nobody waits for that.
    proc = run_orch("run", f"{GOAL} [sim@implementer/claude: limit=10800]", *SIM_TEAM, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(workspace_dir)
    limited = _meta(session, "implementer-1")
    assert limited["sim_format"] == "claude" and len(limited["runs"]) == 1
    assert limited["state"] == "done" and limited["limit"]["scope"] == "five_hour"
    stand_in = _meta(session, "implementer-2")
    reviewer = _meta(session, "reviewer-1")
    assert stand_in["sim_format"] not in ("claude", reviewer["sim_format"]), "a reviewer never reviews its own vendor"
    report = json.loads((session / "reports" / "session-report.json").read_text())
    t2 = next(t for t in report["tasks"] if t["id"] == "T-2")
    assert t2["state"] == "done" and t2["agent"] == "implementer-2" and t2["attempts"] == 1
    assert any(x.get("fallback_from") == "sim/claude" for x in report["limits"])


def test_when_only_parked_work_is_left_the_conductor_may_stop_and_resume_finishes_later(workspace_dir):
    _policy(workspace_dir, '[limits]\non_usage_limit = "ask"\nlimit_grace_seconds = 0\n')
    sid = run_orch("start", f"{GOAL} [sim@architect: limit=3]", *SIM_TEAM, check=True).stdout.split()[-1]
    claim()
    run_orch("step", check=True)
    run_orch("wait", "--timeout", "60", check=True)  # the architect's run ends: parked
    check = run_orch("check")
    assert check.returncode == 1 and "parked by a usage or rate limit" in check.stdout
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert out is not None and "decision" not in out, out  # not held: nothing can move before the reset
    message = out["systemMessage"]
    assert "waiting for a usage limit" in message and "UTC" in message and f"orch resume {sid}" in message
    resumed = run_orch("resume", sid, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "all completion criteria hold" in resumed.stdout


def test_out_of_credit_is_never_waited_out_it_stops_for_a_person(workspace_dir):
    # The implementer's account is out of credit (`[sim: billing]`: a 429 insufficient_quota in claude's
    # shape); the policy waits for limits, but no wait lifts this one.
    proc = run_orch("run", f"{GOAL} [sim@implementer: billing]", *SIM_TEAM, timeout=300)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    session = _session(workspace_dir)
    events = _events(session)
    assert not [e for e in events if e["kind"] == "agent.parked"], "no timed retry: out of credit is no rate limit"
    (exited, *_) = [e for e in events if e["kind"] == "agent.exited" and e["data"].get("failure") == "billing"]
    assert exited["reason"].startswith("out of credit (billing): ")
    state = json.loads((session / "session.json").read_text())
    assert state["state"] == "stopped"
    task = next(t for t in state["tasks"] if t["agent"] == exited["agent"])
    reason = state["stop_reason"]
    assert "out of credit" in reason and f"orch retry {task['id']}" in reason and "--cli" in reason
    assert len(_meta(session, exited["agent"])["runs"]) == 1  # stopped at its first such error


def test_with_fallback_out_of_credit_goes_to_another_cli_at_once(workspace_dir):
    _policy(workspace_dir, '[limits]\non_usage_limit = "fallback"\n')
    proc = run_orch("run", f"{GOAL} [sim@implementer/claude: billing]", *SIM_TEAM, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(workspace_dir)
    events = _events(session)
    assert not [e for e in events if e["kind"] == "agent.parked"]
    handed = [e for e in events if e["kind"] == "decision" and e["data"].get("fallback_from") == "sim/claude"]
    assert handed and "out of credit" in handed[0]["reason"]
    report = json.loads((session / "reports" / "session-report.json").read_text())
    task = next(t for t in report["tasks"] if t["id"] == handed[0]["task"])
    assert task["state"] == "done" and _meta(session, task["agent"])["sim_format"] != "claude"
