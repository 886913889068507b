"""Settings that do what they say: a short stall limit nudges, abort leaves finished agents
alone, and a refused launch or start leaves no empty session behind."""

from __future__ import annotations

import time

from orchtest import orch_json, run_orch, wait_until


def test_a_stall_limit_below_the_silence_display_still_nudges(workspace_dir):
    env = {"ORCH_STALL_AFTER": "1"}  # ORCH_SILENT_AFTER stays at its 90 s default
    agent = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "think [sim: stall=60]",
                     check=True, env=env).stdout.split()[-1]
    wait_until(lambda: orch_json("status", agent)["state"] == "running", what="running")
    started = time.monotonic()

    def silent() -> bool:  # each wait returns on news (its launch first), then on the 1 s stall
        assert not orch_json("wait", "--timeout", "30", env=env)["timed_out"]
        return orch_json("status", agent, env=env)["state"] == "silent"

    wait_until(silent, timeout=60, interval=0, what="the stall limit to mark it silent")
    assert time.monotonic() - started < 20  # not the 90 s silence display, nor a 30 s timeout
    step = run_orch("step", check=True, env=env)
    assert f"{agent} was silent for" in step.stdout and "nudged" in step.stdout, step.stdout
    run_orch("abort", "--all", check=True)


def test_abort_on_a_finished_agent_changes_nothing_and_says_so(workspace_dir):
    agent = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hi", check=True).stdout.split()[-1]
    wait_until(lambda: orch_json("status", agent)["state"] == "idle", what="idle")
    before = (workspace_dir / ".orch").glob("sessions/*/events.jsonl")
    events = next(before).read_text()
    proc = run_orch("abort", agent)
    assert proc.returncode == 0 and "has already finished (idle, exit 0): nothing to abort" in proc.stdout
    assert orch_json("status", agent)["state"] == "idle"
    after = next((workspace_dir / ".orch").glob("sessions/*/events.jsonl")).read_text()
    assert "agent.aborted" not in after[len(events):]


def test_a_refused_launch_or_start_leaves_no_session(workspace_dir):
    missing = run_orch("launch", "--cli", "codex", "--role", "worker", "--prompt", "hi", env={"PATH": "/nonexistent"})
    assert missing.returncode != 0 and missing.stderr.startswith("orch: ")
    assert not list(workspace_dir.glob(".orch/sessions/*"))
    (workspace_dir / ".orch").mkdir(exist_ok=True)
    (workspace_dir / ".orch" / "policy.toml").write_text('[limits]\nstall_after_seconds = "soon"\n')
    for argv in (["start", "goal", "--architect", "sim", "--implementer", "sim", "--reviewer", "sim"],
                 ["launch", "--cli", "sim", "--role", "worker", "--prompt", "hi"]):
        proc = run_orch(*argv)
        assert proc.returncode != 0 and proc.stderr.startswith("orch: invalid policy"), proc.stderr
        assert proc.stderr.count("\n") == 1
    assert not list(workspace_dir.glob(".orch/sessions/*"))
