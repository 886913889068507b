"""`orch wait` returns at once when waiting cannot help; Ctrl-C on `orch run` strands nobody."""

from __future__ import annotations

import signal
import subprocess

from orchtest import orch_argv, orch_env, orch_json, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


def test_wait_returns_at_once_when_nothing_runs_and_the_next_step_has_work(workspace_dir):
    run_orch("start", "Build a small text utilities library", *SIM_TEAM, check=True)
    digest = orch_json("wait", "--timeout", "300")  # returns for a reason, long before its timeout
    assert not digest["timed_out"]
    # (the start's note on git — this plain folder is shared — is in the log but wakes no one)
    assert digest["happened"] == [], digest
    assert digest["woke"]["why"] == "work" and digest["woke"]["detail"].endswith(": orch step"), digest
    assert digest["next"][0].startswith("orch step"), digest


def test_wait_returns_at_once_when_the_criteria_hold(workspace_dir):
    run_orch("run", "Build a small text utilities library", *SIM_TEAM, check=True)
    # an active, finished session: criteria hold, nothing runs (a report was not asked for)
    digest = orch_json("wait", "--timeout", "300")
    assert not digest["timed_out"]


def test_ctrl_c_on_run_leaves_agents_running_and_names_resume_and_abort(workspace_dir):
    proc = subprocess.Popen(orch_argv("run", "Build a small text utilities library [sim: hang role=architect]",
                                      *SIM_TEAM), env=orch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: (workspace_dir / ".orch").is_dir() and orch_json("sessions") and any(
            a["state"] == "running" for a in orch_json("status")["agents"]), timeout=60, what="a running architect")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    sid = orch_json("sessions")[0]["id"]
    assert proc.returncode == 130, out + err
    assert "agents keep running" in err and f"orch resume {sid}" in err and "orch abort --all" in err
    assert "Traceback" not in err
    assert [a["state"] for a in orch_json("status")["agents"]] == ["running"]
    run_orch("abort", "--all", check=True)
    wait_until(lambda: all(a["state"] == "aborted" for a in orch_json("status")["agents"]), what="aborted")
