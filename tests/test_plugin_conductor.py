"""A scripted conductor: the command files' own steps, run as the model would run them.

It reads orchestrate.md, renders it as Claude Code does for a plugin, and executes its
orch lines with bash in the order the file gives — start (with claim), then the cycle
Monitor → Check → Assign until Check exits 0, then Finalize — against an offline sim team,
keeping the todo list the file asks for (one item in progress) through the plugin's todo
hook, and asking the Stop hook at every turn of the cycle. The thin commands are run the
same way, with and without a session.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.core.models import BlockerState, SessionState
from orchestrator.store.sessions import Workspace
from orchtest import orch_env
from test_plugin_files import LAUNCHER, THIN, orch_lines, read_command, to_run
from test_plugin_hook import CONDUCTOR, CYCLE, answer, run_hook, stop_payload, todowrite

TEAM = "--architect sim --implementer sim --reviewer sim"
DEADLINE = 240.0


def bash(command: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run one command line as the Bash tool does."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=orch_env(), capture_output=True, text=True,
                          timeout=timeout)


def conductor_script(goal: str) -> dict[str, list[str]]:
    """The orch lines of orchestrate.md by phase, as the model would send them to the Bash tool."""
    _, body = read_command("orchestrate")
    start_part = body.split("## 2.")[0]
    cycle_part, finalize_part = body.split("## 2.")[1].split("## 3.")
    cycle = dict(re.findall(r"^\d\. \*\*(\w+)\*\* — `([^`]+)`$", cycle_part, re.M))
    render = lambda line: to_run(line, body, "plugin", arguments=goal, session=CONDUCTOR)  # noqa: E731
    start = render(orch_lines(start_part)[0])
    # "pass team options after the quoted goal" — the rule the file gives for the user's options
    start = start.replace(f'start "{goal}"', f'start "{goal}" {TEAM}', 1)
    return {"start": [start], "Monitor": [render(cycle["Monitor"])], "Check": [render(cycle["Check"])],
            "Assign": [render(cycle["Assign"])], "Finalize": [render(orch_lines(finalize_part)[0])]}


def set_todo(ws: Path, doing: int) -> None:
    """The conductor's todo update (exactly one item in progress), through the plugin's hook."""
    todos = todowrite(doing)["todos"]
    assert sum(t["status"] == "in_progress" for t in todos) == (1 if doing < len(CYCLE) else 0)
    payload = {"session_id": CONDUCTOR, "cwd": str(ws), "hook_event_name": "PostToolUse", "tool_name": "TodoWrite",
               "tool_input": {"todos": todos}, "tool_response": {}}
    proc = run_hook("PostToolUse", payload, cwd=ws)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_command_file_drives_a_sim_session_to_a_passing_check(workspace_dir):
    script = conductor_script("Build a small text utilities library")
    assert script["start"][0].startswith(f"{LAUNCHER} start ") or script["start"][0].startswith(f'"{LAUNCHER}" start ')
    proc = bash(script["start"][0], workspace_dir)
    assert proc.returncode == 0, proc.stderr
    store = Workspace().resolve(None)
    assert f"conducted by Claude Code session {CONDUCTOR}" in proc.stdout
    set_todo(workspace_dir, 0)

    started, cycles, blocked_on_blocker = time.monotonic(), 0, False
    while True:
        assert time.monotonic() - started < DEADLINE, f"no passing check after {cycles} cycles"
        cycles += 1
        for line in script["Monitor"]:
            waited = bash(line, workspace_dir, timeout=75)
            assert waited.returncode == 0, waited.stderr
        set_todo(workspace_dir, 1)
        check = bash(script["Check"][0], workspace_dir)
        assert check.returncode in (0, 1), check.stderr
        if check.returncode == 0:
            break
        # the conductor would like to stop here: the Stop hook sends it back with what remains
        session = store.read_session()
        hook = answer(run_hook("Stop", stop_payload(workspace_dir, active=cycles > 1), cwd=workspace_dir,
                               env={"ORCH_STOP_HOOK_LIMIT": "500"}))
        assert hook["decision"] == "block", hook
        open_blockers = [b.id for b in session.blockers if b.state is not BlockerState.VERIFIED]
        if open_blockers and all(b in hook["reason"] for b in open_blockers):
            blocked_on_blocker = True
        set_todo(workspace_dir, 2)
        assert bash(script["Assign"][0], workspace_dir).returncode == 0
        set_todo(workspace_dir, 0)

    set_todo(workspace_dir, 3)
    report = bash(script["Finalize"][0], workspace_dir)
    assert report.returncode == 0, report.stderr
    set_todo(workspace_dir, 4)
    session = store.read_session()
    assert session.state is SessionState.COMPLETE
    assert bash(script["Check"][0], workspace_dir).returncode == 0
    assert "report: " in report.stdout and (store.reports_dir / "session-report.md").is_file()
    # finished: the Stop hook lets the conductor go, saying only where the result is
    final = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert "decision" not in final and final["systemMessage"].startswith(f"orch: session {session.id} is complete")
    # the sim reviewer files blockers in round 1: the hook named them while they were open,
    # and let go once every one was verified
    assert session.blockers and all(b.state is BlockerState.VERIFIED for b in session.blockers)
    assert blocked_on_blocker, "the Stop hook must name the open blockers while they are open"
    events = [e for _, e in store.read_events() if e.kind.value == "hook"]
    todos = [e.data["todo"] for e in events if e.data["hook"] == "todo"]
    assert todos[:3] == ["Monitor agents…", "Check completion criteria…", "Assign work…"]
    assert todos[-1] == "Finalize…" and session.todo is None  # nothing is in progress once it is complete


# --------------------------------------------------------------------------- the thin commands


@pytest.mark.parametrize("name", sorted(THIN))
def test_thin_commands_without_a_session_print_the_one_line_the_model_relays(name, workspace_dir):
    _, body = read_command(name)
    args = {"orch-logs": "worker-1 --tail 40", "orch-abort": "worker-1"}.get(name, "")
    proc = bash(to_run(orch_lines(body)[0], body, "plugin", arguments=args), workspace_dir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("orch: no active orch session in ") and proc.stderr.count("\n") == 1
    assert "`orch start GOAL`" in proc.stderr


@pytest.mark.parametrize("mode", ["plugin", "project"])
def test_thin_commands_with_a_session_print_plain_markdown(mode, workspace_dir):
    bash(conductor_script("a tiny goal")["start"][0], workspace_dir)
    launched = subprocess.run([str(LAUNCHER), "launch", "--cli", "sim", "--role", "worker", "--prompt",
                               "say hello"], cwd=workspace_dir, env=orch_env(), capture_output=True, text=True,
                              timeout=60)
    assert launched.returncode == 0, launched.stderr
    args = {"orch-logs": "worker-1 --tail 40", "orch-status": "worker-1", "orch-abort": "worker-1"}
    outputs = {}
    for name in ("orch-status", "orch-list", "orch-monitor", "orch-logs", "orch-report", "orch-abort"):
        _, body = read_command(name)
        proc = bash(to_run(orch_lines(body)[0], body, mode, arguments=args.get(name, "")), workspace_dir)
        assert proc.returncode == 0, (name, proc.stderr)
        assert "\x1b[" not in proc.stdout + proc.stderr, f"{name}: colour codes outside a terminal"
        outputs[name] = proc.stdout
    assert any(line.startswith("worker-1  worker  sim") for line in outputs["orch-list"].splitlines())  # one each
    assert "| worker-1 | worker | sim" in outputs["orch-status"]
    assert outputs["orch-monitor"].startswith("orch monitor — session ")
    assert "report: " in outputs["orch-report"] and "not finalized" in outputs["orch-report"]
    # it said hello and may have finished already: then abort changes nothing and says so
    assert outputs["orch-abort"].startswith(("worker-1: aborted", "worker-1 has already finished"))
    assert outputs["orch-logs"].strip(), "the agent's events"
