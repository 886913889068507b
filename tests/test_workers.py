"""Supervised agents: detached processes, recorded exits, aborts, pid identity — real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from orchestrator.core.models import AgentState
from orchestrator.runtime.procs import is_same_process, proc_start_time
from orchestrator.store.sessions import Workspace
from orchtest import orch_json, run_orch, wait_until


def _store():
    return Workspace().resolve(None)


def _launch(prompt: str, *extra: str, role: str = "worker") -> str:
    proc = run_orch("launch", "--cli", "sim", "--role", role, "--prompt", prompt, *extra, check=True)
    return proc.stdout.strip().splitlines()[-1]


def _record(agent_id: str, n: int = 1) -> dict:
    path = _store().agent_dir(agent_id) / f"run-{n}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_launch_prints_the_agent_id_last_and_the_agent_outlives_the_command(workspace_dir):
    agent_id = _launch("work quietly [sim: stall=60]")
    assert agent_id == "worker-1"
    rec = _record(agent_id)
    pid = rec["pid"]
    # The command that started it is gone; the agent is alive, alone in its own process group and session.
    assert is_same_process(pid, rec["proc_start"])
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
    run_orch("abort", agent_id, "--grace", "2", check=True)
    assert not is_same_process(pid, rec["proc_start"])


def test_exit_code_and_end_time_are_recorded_with_no_orch_process_alive(workspace_dir):
    agent_id = _launch("[sim: exit=7]")
    # Nothing of orch runs now; only the agent's own supervisor can record its end.
    rec = wait_until(lambda: _record(agent_id) if "exit_code" in _record(agent_id) else None, what="exit record")
    assert rec["exit_code"] == 7 and rec["ended_at"]
    status = orch_json("status", agent_id)
    assert status["state"] == "failed" and status["exit_code"] == 7
    assert "exiting with 7" in status["reason"]  # the stderr tail says why


def test_output_goes_straight_to_files_in_the_agents_folder(workspace_dir):
    agent_id = _launch("say something")
    wait_until(lambda: "exit_code" in _record(agent_id), what="exit")
    d = _store().agent_dir(agent_id)
    lines = (d / "stdout.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "system" and json.loads(lines[-1])["type"] == "result"
    status = orch_json("status", agent_id)
    assert status["state"] == "idle" and status["exit_code"] == 0
    assert status["cli_session_id"] == json.loads(lines[0])["session_id"]
    assert status["usage"]["cost_usd"] > 0


def test_abort_terms_then_kills_a_process_group_that_ignores_term(workspace_dir):
    agent_id = _launch("[sim: ignore-term hang]")
    rec = wait_until(lambda: _record(agent_id).get("pid") and _record(agent_id), what="pid")
    started = time.monotonic()
    out = orch_json("abort", agent_id, "--grace", "1")
    elapsed = time.monotonic() - started
    assert not is_same_process(rec["pid"], rec["proc_start"])
    assert elapsed >= 1.0  # it waited the grace period before the KILL
    assert out[0]["state"] == "aborted"
    final = wait_until(lambda: _record(agent_id) if "exit_code" in _record(agent_id) else None, what="exit")
    assert final.get("signal") == signal.SIGKILL


def test_abort_all_ends_every_live_agent(workspace_dir):
    ids = [_launch("[sim: hang]") for _ in range(3)]
    run_orch("abort", "--all", "--grace", "1", check=True)
    states = {a["id"]: a["state"] for a in orch_json("list")}
    assert all(states[i] == "aborted" for i in ids)
    for i in ids:
        r = _record(i)
        assert not is_same_process(r["pid"], r["proc_start"])


def test_a_pid_is_never_trusted_alone():
    child = subprocess.Popen(["sleep", "30"])
    try:
        start = proc_start_time(child.pid)
        assert is_same_process(child.pid, start)
        assert not is_same_process(child.pid, start + 1)  # same pid, another process's start time
    finally:
        child.kill()
        child.wait()
    assert not is_same_process(child.pid, start)


def test_silent_garbage_and_instant_exit_are_reported_not_hidden(workspace_dir):
    quiet = _launch("[sim: stall=30]")
    garbage = _launch("[sim: garbage=4]")
    instant = _launch("[sim: exit=3]")
    mute = _launch("[sim: silent=0.1]")

    def settled():
        agents = {a["id"]: a for a in orch_json("list")}
        return agents if all(agents[i]["state"] != "starting" and agents[i]["state"] != "running"
                             for i in (garbage, instant, mute)) else None

    agents = wait_until(settled, what="agents to settle")
    assert agents[garbage]["state"] == "failed"
    assert "no valid output" in agents[garbage]["reason"] and agents[garbage]["malformed_lines"] == 4
    assert agents[instant]["state"] == "failed" and "without printing anything" in agents[instant]["reason"]
    assert "exiting with 3" in agents[instant]["reason"]
    assert agents[mute]["state"] == "failed" and "without printing anything" in agents[mute]["reason"]
    # a running agent that goes quiet is shown as silent, with how long
    digest = json.loads(run_orch("wait", "--timeout", "5", "--silent-after", "0.5", "--json", check=True).stdout)
    wait_until(lambda: orch_json("status", quiet, env={"ORCH_SILENT_AFTER": "0.5"})["state"] == "silent",
               what="silent")
    assert digest["agents"]
    run_orch("abort", quiet, "--grace", "1")


def test_missing_cli_is_one_line_and_nothing_is_launched(workspace_dir, tmp_path):
    proc = run_orch("launch", "--cli", "codex", "--role", "implementer", "--prompt", "hi",
                    env={"PATH": str(tmp_path), "ORCH_CODEX_BIN": "codex-not-installed"})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "codex" in proc.stderr and "npm install" in proc.stderr
    assert not list((workspace_dir / ".orch").glob("sessions/*/agents/*"))


@pytest.mark.parametrize("args,needle", [
    (["--prompt", ""], "empty"),
    (["--prompt", "x", "--prompt-file", "y"], "exactly one"),
    (["--prompt-file", "/nonexistent/prompt.txt"], "cannot read"),
    (["--prompt", "x", "--cwd", "/nonexistent/dir"], "does not exist"),
])
def test_bad_launch_input_is_a_clear_error(workspace_dir, args, needle):
    proc = run_orch("launch", "--cli", "sim", "--role", "worker", *args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_logs_show_normalized_events_and_raw_lines(workspace_dir):
    agent_id = _launch("Write the spec [sim: write=notes.txt]")
    wait_until(lambda: orch_json("status", agent_id)["state"] == "idle", what="idle")
    text = run_orch("logs", agent_id, check=True).stdout
    assert "tool Write" in text and "notes.txt" in text and "run finished: success" in text
    raw = run_orch("logs", agent_id, "--raw", "--tail", "1", check=True).stdout
    assert json.loads(raw)["type"] == "result"
    follow = run_orch("logs", agent_id, "--follow", check=True)
    assert "is idle" in follow.stderr


def test_agent_states_follow_the_lifecycle(workspace_dir):
    agent_id = _launch("[sim: deny=write]", role="reviewer")
    status = wait_until(lambda: (s := orch_json("status", agent_id))["state"] == "denied" and s, what="denied")
    assert status["denials"][0]["tool"] == "Write"
    assert AgentState(status["state"]) is AgentState.DENIED


def test_wait_returns_when_a_running_agent_goes_silent(workspace_dir):
    agent_id = _launch("think hard [sim: stall=30]")
    wait_until(lambda: orch_json("status", agent_id)["state"] == "running", what="running")
    run_orch("wait", "--timeout", "0")  # the launch itself is old news now
    started = time.monotonic()
    digest = json.loads(run_orch("wait", "--timeout", "20", "--silent-after", "1", "--json", check=True).stdout)
    assert not digest["timed_out"] and time.monotonic() - started < 10
    assert any(f"{agent_id} is now silent" in h for h in digest["happened"]), digest["happened"]
    run_orch("abort", agent_id, "--grace", "1")


def test_a_run_whose_first_lines_make_no_event_stays_running_across_syncs(workspace_dir, tmp_path, monkeypatch):
    """claude's first partial deltas normalize to nothing: the run has printed, so a later sync
    with no new bytes keeps it running (it once tried to move it back to starting and failed)."""
    exe = tmp_path / "claude"
    delta = {"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": "Hi"}}}
    gate = tmp_path / "go"
    exe.write_text(f"#!/bin/sh\nprintf '%s\\n' '{json.dumps(delta)}'\n"
                   f"while [ ! -e {gate} ]; do sleep 0.05; done\n")
    exe.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(exe))
    agent_id = run_orch("launch", "--cli", "claude", "--role", "worker", "--prompt", "hi",
                        check=True).stdout.split()[-1]
    try:
        wait_until(lambda: orch_json("status", agent_id)["state"] == "running", 30, "the first line to be read")
        for _ in range(3):  # syncs with nothing new
            again = run_orch("status", agent_id)
            assert again.returncode == 0 and not again.stderr, again.stderr
        assert orch_json("status", agent_id)["state"] == "running"
    finally:
        gate.touch()
