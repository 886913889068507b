"""Failed work can be continued: one named command, back-off, login failures, the report keeps both.

Real `orch` subprocesses drive real sim agents whose implementer fails its first runs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from orchtest import orch_json, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
# Three failing runs: T-2 fails, T-3 (started meanwhile on a new agent: a failed one frees its place)
# fails, T-2 fails again — its second attempt, so the session stops.
FAILING_GOAL = "Build a small text utilities library [sim: exit=2 role=implementer runs=3]"
FAST_RETRY = {"ORCH_RETRY_BACKOFF": "0.3"}


def _stopped_session() -> tuple[str, str]:
    """An `orch run` whose implementer fails both attempts: (session id, what run printed)."""
    proc = run_orch("run", FAILING_GOAL, *SIM_TEAM, env=FAST_RETRY)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sid = orch_json("sessions")[0]["id"]
    return sid, proc.stdout


def _report(workspace: Path) -> dict:
    return json.loads(next(workspace.glob(".orch/sessions/*/reports/session-report.json")).read_text())


def test_the_command_the_digest_names_continues_a_failed_session_to_completion(workspace_dir):
    sid, printed = _stopped_session()
    assert "failed 2 times" in printed and "exiting with 2" in printed and f"orch resume {sid}" in printed
    retried = [line for line in printed.splitlines() if "queued again, retried in" in line]
    assert retried, printed  # the first failure backs off instead of firing again at once

    check = run_orch("check")
    assert check.returncode == 1
    assert "the session is stopped" in check.stdout and "Next: orch retry T-2" in check.stdout
    step = run_orch("step")
    assert "is stopped" in step.stdout and "Next: orch retry T-2" in step.stdout

    digest = orch_json("wait", "--timeout", "5")
    assert digest["next"][0].startswith("orch retry T-2") and "exiting with 2" in digest["next"][0]
    continuation = digest["next"][1].split("#")[0].split()
    assert continuation == ["orch", "resume", sid]

    done = run_orch(*continuation[1:], env=FAST_RETRY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "T-2 (Implement component core) is queued again" in done.stdout
    report = _report(workspace_dir)
    assert report["finalized"] and report["state"] == "complete"
    moves = [(h["from"], h["to"]) for h in report["session_history"]]
    assert moves == [("active", "stopped"), ("stopped", "active"), ("active", "complete")]
    assert "failed 2 times" in report["session_history"][0]["why"]
    assert f"orch resume {sid}" in report["session_history"][1]["why"]
    md = next(workspace_dir.glob(".orch/sessions/*/reports/session-report.md")).read_text()
    assert "Stops and continuations" in md and "stopped → active" in md


def test_orch_retry_requeues_the_task_and_starts_it_in_the_conductor_loop(workspace_dir):
    _stopped_session()
    bad = run_orch("retry", "T-99")
    assert bad.returncode != 0 and bad.stderr.startswith("orch: no task T-99") and "T-2" in bad.stderr
    retried = run_orch("retry", "T-2", env=FAST_RETRY)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "queued again" in retried.stdout and re.search(r"T-2 (was waiting: reassigned|assigned to)", retried.stdout)
    assert "Next: orch wait" in retried.stdout

    def finished() -> bool:  # the conductor's cycle: wait → check → step
        run_orch("wait", "--timeout", "10")
        if run_orch("check").returncode == 0:
            return True
        run_orch("step", env=FAST_RETRY)
        return False

    wait_until(finished, timeout=90, interval=0, what="the retried session to meet its criteria")
    assert run_orch("report").returncode == 0
    report = _report(workspace_dir)
    assert report["finalized"]
    assert any("orch retry T-2" in h["why"] for h in report["session_history"])


def test_a_cli_that_is_not_logged_in_stops_at_its_first_error_with_its_own_words(workspace_dir):
    proc = run_orch("run", "Build a small text utilities library [sim: login role=implementer]", *SIM_TEAM)
    assert proc.returncode == 1
    assert "is not logged in" in proc.stdout and "Not logged in · Please run /login" in proc.stdout
    assert "queued again" not in proc.stdout  # no second attempt at a CLI without credentials
    check = run_orch("check")
    assert "Not logged in · Please run /login" in check.stdout and "orch retry T-2" in check.stdout
    missing = run_orch("retry", "T-2", "--cli", "codex", env={"PATH": "/nonexistent"})
    assert missing.returncode != 0 and missing.stderr.startswith("orch: ") and "codex" in missing.stderr
    after = json.loads(run_orch("check", "--json").stdout)  # the refused retry changed nothing
    assert after["session_state"] == "stopped" and after["failed_tasks"][0].startswith("T-2")


def test_allow_on_a_failed_agent_names_the_retry(workspace_dir):
    run_orch("run", FAILING_GOAL, *SIM_TEAM, env=FAST_RETRY)
    failed = [a for a in orch_json("status")["agents"] if a["state"] == "failed"]
    assert failed
    proc = run_orch("allow", failed[0]["id"])
    assert proc.returncode != 0 and "orch retry T-2" in proc.stderr


def test_backoff_keeps_the_autopilot_waiting_not_stuck(workspace_dir):
    started = time.monotonic()
    proc = run_orch("run", "Build a small text utilities library [sim: exit=2 role=implementer runs=1]", *SIM_TEAM,
                    env={"ORCH_RETRY_BACKOFF": "1.5"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "retried in 1.5 s" in proc.stdout and "nothing can move" not in proc.stdout
    assert time.monotonic() - started >= 1.5


def test_the_stop_hook_names_the_failed_task_and_its_retry(workspace_dir):
    from test_plugin_hook import CONDUCTOR, answer, claim, run_hook, stop_payload

    sid, _ = _stopped_session()
    claim(CONDUCTOR)
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    message = out["systemMessage"]
    assert f"session {sid} stopped" in message and "exiting with 2" in message
    assert "`orch retry T-2` continues it" in message and f"orch resume {sid}" in message
