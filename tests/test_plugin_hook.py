"""The plugin's hooks, run the way Claude Code runs them: the command from hooks/hooks.json
through `sh -c`, real JSON on stdin, the project folder as cwd, CLAUDE_* in the environment,
against sessions in every state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

from orchestrator.core import lifecycle
from orchestrator.core.models import AgentState, Blocker, BlockerState, Event, SessionState
from orchestrator.store.sessions import SessionStore, Workspace
from orchtest import orch_json, run_orch, wait_until
from test_plugin_files import LAUNCHER, ROOT

HOOKS = json.loads((ROOT / "hooks" / "hooks.json").read_text())["hooks"]
CONDUCTOR = "5b0f3c1e-9a7d-4c55-8d1e-2f6a0b9c7e41"


def hook_command(event: str, plugin_root: Path = ROOT) -> str:
    (group,) = HOOKS[event]
    (handler,) = group["hooks"]
    return handler["command"].replace("${CLAUDE_PLUGIN_ROOT}", str(plugin_root))


def run_hook(event: str, payload: Any, *, cwd: Path, env: Optional[dict[str, str]] = None,
             plugin_root: Path = ROOT, raw: Optional[str] = None) -> subprocess.CompletedProcess:
    """One hook call as Claude Code makes it (shell form: sh -c, JSON on stdin)."""
    full = dict(os.environ)
    full.update({"CLAUDE_PROJECT_DIR": str(cwd), "CLAUDE_PLUGIN_ROOT": str(plugin_root),
                 "CLAUDE_PLUGIN_DATA": str(cwd.parent / "plugin-data")})
    full.update(env or {})
    data = raw if raw is not None else json.dumps(payload)
    return subprocess.run(["sh", "-c", hook_command(event, plugin_root)], input=data, cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


def stop_payload(cwd: Path, session: str = CONDUCTOR, active: bool = False) -> dict[str, Any]:
    return {"session_id": session, "transcript_path": str(cwd / "t.jsonl"), "cwd": str(cwd),
            "permission_mode": "default", "hook_event_name": "Stop", "stop_hook_active": active,
            "last_assistant_message": "I will stop here.", "background_tasks": [], "session_crons": []}


def answer(proc: subprocess.CompletedProcess) -> Optional[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def store() -> SessionStore:
    return Workspace().resolve(None)


def hook_events(s: SessionStore) -> list[Event]:
    return [e for _, e in s.read_events() if e.kind.value == "hook"]


def new_session(goal: str = "a tiny text utility") -> SessionStore:
    run_orch("start", goal, "--architect", "sim", "--implementer", "sim", "--reviewer", "sim", check=True)
    return store()


def claim(session: str = CONDUCTOR) -> None:
    run_orch("hook", "claim", session, check=True)


def launch(prompt: str, *extra: str) -> str:
    proc = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", prompt, *extra, check=True)
    return proc.stdout.strip().splitlines()[-1]


def set_session_state(s: SessionStore, state: SessionState, reason: str = "") -> None:
    with s.edit_session() as session:
        session.state = lifecycle.move(session.state, state, session.id)
        session.stop_reason = reason
        if reason.startswith("round limit"):  # it stopped because it used its last round
            session.round = session.max_rounds


@pytest.fixture
def abort_all(workspace_dir):
    yield
    if Workspace().active_id():
        run_orch("abort", "--all", "--grace", "1")


# --------------------------------------------------------------------------- who is held back


def test_no_orch_state_means_no_decision_without_starting_python(tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "hooks").mkdir(parents=True)
    (plugin / "scripts").mkdir()
    shutil.copy2(ROOT / "hooks" / "orch-hook", plugin / "hooks" / "orch-hook")
    marker = tmp_path / "launcher-ran"
    fake = plugin / "scripts" / "orch"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho \"$@\" > {marker}\n")
    fake.chmod(0o755)
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "src").mkdir(parents=True)
    elsewhere.mkdir()
    env = {"ORCH_HOME": ""}
    proc = run_hook("Stop", stop_payload(project), cwd=project, env=env, plugin_root=plugin)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "") and not marker.exists()
    # orch state in the project: found from the JSON's cwd alone (a subfolder, from elsewhere)
    (project / ".orch" / "sessions").mkdir(parents=True)
    proc = run_hook("Stop", stop_payload(project / "src"), cwd=elsewhere,
                    env={**env, "CLAUDE_PROJECT_DIR": str(elsewhere)}, plugin_root=plugin)
    assert proc.returncode == 0 and marker.read_text().split() == ["hook", "stop"]


def test_a_session_nobody_claimed_never_holds_claude_back(workspace_dir):
    new_session()
    proc = run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir)
    assert answer(proc) is None and proc.stderr == ""
    assert hook_events(store()) == []


def test_blocks_its_conductor_while_an_agent_runs_and_no_other_claude_session(workspace_dir, abort_all):
    agent = launch("keep working [sim: hang]")
    claim()
    wait_until(lambda: orch_json("status", agent)["state"] in ("starting", "running"), what="agent alive")
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert out["decision"] == "block"
    reason = out["reason"]
    assert f"orch session {store().id} is not finished" in reason
    assert "Running agents:\n- worker-1" in reason
    assert f'Run next: "{LAUNCHER}" wait --timeout 60' in reason
    assert "(stop hook continuation 1 of 25 for this session)" in reason
    # Claude Code says stop_hook_active on the stop after a block: still blocked, still counted
    again = answer(run_hook("Stop", stop_payload(workspace_dir, active=True), cwd=workspace_dir))
    assert again["decision"] == "block" and "continuation 2 of 25" in again["reason"]
    # another Claude Code session in the same project is never held back
    assert answer(run_hook("Stop", stop_payload(workspace_dir, session="someone-else"), cwd=workspace_dir)) is None
    events = hook_events(store())
    assert [e.data.get("decision") for e in events if e.data["hook"] == "stop"] == ["block", "block"]
    assert events[-1].data["stop_hook_active"] is True and events[-1].data["continuations"] == 2
    assert not (workspace_dir.parent / "plugin-data" / "venv").exists(), "hooks share the commands' venv"


def test_a_denied_agent_blocks_with_the_recovery_step(workspace_dir, abort_all):
    agent = launch("write the notes [sim: deny=write]", "--permission", "read")
    claim()
    wait_until(lambda: orch_json("status", agent)["state"] == AgentState.DENIED.value, timeout=60,
               what="a denied agent")
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert out["decision"] == "block"
    assert "Denied agents (recover them with orch step):\n- worker-1" in out["reason"]
    assert f'Run next: "{LAUNCHER}" step' in out["reason"]


def test_blocks_while_a_blocker_is_open_and_lets_go_once_it_is_verified(workspace_dir):
    s = Workspace().create(workspace_dir, goal="fix the parser")
    with s.edit_session() as session:
        session.blockers.append(Blocker(id="B-1", file="parser.py", line=12, description="crashes on empty input"))
    claim()
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert out["decision"] == "block"
    assert "Open blockers:\n- B-1 [high] parser.py:12 — found: crashes on empty input" in out["reason"]
    assert "1 blocker(s) not verified: B-1" in out["reason"]
    for state in (BlockerState.ASSIGNED, BlockerState.FIXED):  # fixed is not enough
        with s.edit_session() as session:
            b = session.blocker("B-1")
            b.state = lifecycle.move(b.state, state, b.id)
        assert answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))["decision"] == "block"
    with s.edit_session() as session:
        b = session.blocker("B-1")
        b.state = lifecycle.move(b.state, BlockerState.VERIFIED, b.id)
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert "decision" not in out
    assert out["systemMessage"] == (f"orch: every completion criterion of session {s.id} holds; "
                                    "`orch report` finalizes it")  # a shared folder: nothing to land
    assert hook_events(s)[-1].reason == "stop allowed: every completion criterion holds"


@pytest.mark.parametrize("state,message", [(SessionState.COMPLETE, None), (SessionState.ABORTED, None),
                                           (SessionState.STOPPED, "a CLI is not logged in"),
                                           (SessionState.STOPPED, "round limit 3 reached with 1 blocker(s) open")])
def test_a_finished_session_lets_claude_stop(workspace_dir, state, message):
    s = new_session()
    claim()
    set_session_state(s, state, message or "")
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    if message and message.startswith("round limit"):  # resume alone would refuse: it needs more rounds
        assert out == {"systemMessage": f"orch: session {s.id} stopped ({message}); `orch resume {s.id} --max-rounds "
                                        f"4` continues it (or `orch land {s.id} --anyway` takes what is done)"}
    elif message:
        assert out == {"systemMessage": f"orch: session {s.id} stopped ({message}); `orch resume {s.id}` continues it"}
    elif state is SessionState.COMPLETE:
        assert out == {"systemMessage": f"orch: session {s.id} is complete; its work is in {s.read_session().workspace}"}
    else:
        assert out is None
    last = hook_events(s)[-1]
    assert last.data["decision"] == "allow" and last.reason == f"stop allowed: the session is {state.value}"


def test_the_final_word_on_a_session_in_worktrees_names_orch_land(workspace_dir):
    from orchestrator.core.models import GitRecord, LandRecord

    s = new_session()
    claim()
    with s.edit_session() as session:
        session.git = GitRecord(mode="worktrees", repo=str(workspace_dir), base="0" * 40,
                                integration_branch=f"orch/{s.id}", worktrees_dir=str(workspace_dir / "wt"))
    set_session_state(s, SessionState.COMPLETE, "")
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert f"`orch land {s.id}` takes it into your working tree" in out["systemMessage"]
    assert "nothing was pushed" in out["systemMessage"]
    with s.edit_session() as session:
        session.git.landings.append(LandRecord(mode="commit", result="1" * 40, branch="main", commit="2" * 40))
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))
    assert out["systemMessage"] == (f"orch: session {s.id} is complete and landed (`orch land --commit`): "
                                    f"in commit {'2' * 12} on main")


# --------------------------------------------------------------------------- the limit


def test_the_limit_lets_claude_stop_and_says_so(workspace_dir):
    s = new_session()
    claim()
    env = {"ORCH_STOP_HOOK_LIMIT": "2"}
    for n, active in ((1, False), (2, True)):
        out = answer(run_hook("Stop", stop_payload(workspace_dir, active=active), cwd=workspace_dir, env=env))
        assert out["decision"] == "block" and f"continuation {n} of 2" in out["reason"]
    out = answer(run_hook("Stop", stop_payload(workspace_dir, active=True), cwd=workspace_dir, env=env))
    assert "decision" not in out
    assert out["systemMessage"].startswith("orch: the stop hook let Claude stop after 2 continuation(s) (the "
                                           "limit: ORCH_STOP_HOOK_LIMIT or the policy's stop_hook_limit); session")
    assert "no work has been planned yet" in out["systemMessage"]
    assert json.loads((s.path / "conductor.json").read_text())["continuations"] == 2
    assert [e.data["decision"] for e in hook_events(s) if e.data["hook"] == "stop"] == ["block", "block", "allow"]
    # a new conductor (the user ran /orchestrate again) gets a fresh budget; the same one does not
    claim()
    assert "decision" not in answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir, env=env))
    claim("a-new-claude-session")
    out = answer(run_hook("Stop", stop_payload(workspace_dir, "a-new-claude-session"), cwd=workspace_dir, env=env))
    assert out["decision"] == "block" and "continuation 1 of 2" in out["reason"]


def test_limit_zero_never_blocks_and_a_bad_limit_falls_back_with_a_note(workspace_dir):
    new_session()
    claim()
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir, env={"ORCH_STOP_HOOK_LIMIT": "0"}))
    assert "decision" not in out and "after 0 continuation(s)" in out["systemMessage"]
    proc = run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir, env={"ORCH_STOP_HOOK_LIMIT": "many"})
    assert answer(proc)["decision"] == "block" and "continuation 1 of 25" in answer(proc)["reason"]
    assert proc.stderr == "orch: ORCH_STOP_HOOK_LIMIT='many' is not a whole number >= 0; using 25\n"


def test_the_policy_file_sets_the_limit_and_the_environment_overrides_it(workspace_dir):
    s = new_session()
    claim()
    (workspace_dir / ".orch" / "policy.toml").write_text("[limits]\nstop_hook_limit = 1\n")
    assert answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir))["decision"] == "block"
    out = answer(run_hook("Stop", stop_payload(workspace_dir, active=True), cwd=workspace_dir))
    assert "after 1 continuation(s)" in out["systemMessage"]
    out = answer(run_hook("Stop", stop_payload(workspace_dir, active=True), cwd=workspace_dir,
                          env={"ORCH_STOP_HOOK_LIMIT": "3"}))
    assert out["decision"] == "block" and "continuation 2 of 3" in out["reason"]
    # a policy orch cannot read: the default, and one line saying why
    (workspace_dir / ".orch" / "policy.toml").write_text("[limits]\nstop_hook_limit = -4\n")
    proc = run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir)
    assert answer(proc)["decision"] == "block" and "continuation 3 of 25" in answer(proc)["reason"]
    assert proc.stderr.startswith("orch: invalid policy ") and proc.stderr.endswith("; using 25\n")
    assert json.loads((s.path / "conductor.json").read_text())["continuations"] == 3


# --------------------------------------------------------------------------- never breaks Claude


@pytest.mark.parametrize("raw,note", [("not json at all", "the hook input is not JSON"),
                                      ("[1, 2]", "the hook input is not a JSON object (got list)"),
                                      ("", "the hook input is not JSON")])
def test_bad_input_is_no_decision_with_one_line_on_stderr(workspace_dir, raw, note):
    new_session()
    claim()
    proc = run_hook("Stop", None, cwd=workspace_dir, raw=raw)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.startswith(f"orch: stop hook: no decision ({note}") and proc.stderr.count("\n") == 1


def test_no_session_id_or_a_damaged_session_is_no_decision(workspace_dir):
    s = new_session()
    claim()
    assert answer(run_hook("Stop", {"cwd": str(workspace_dir)}, cwd=workspace_dir)) is None
    (s.path / "session.json").write_text("{ torn")
    proc = run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.startswith("orch: stop hook: no decision (") and "session.json" in proc.stderr


# --------------------------------------------------------------------------- claim


def test_claim_takes_the_session_id_from_the_bash_tool_environment(workspace_dir):
    new_session()
    proc = run_orch("hook", "claim", env={"CLAUDE_CODE_SESSION_ID": "from-env-1"})
    assert proc.returncode == 0 and "conducted by Claude Code session from-env-1" in proc.stdout
    proc = run_orch("hook", "claim", env={"CLAUDE_CODE_SESSION_ID": ""})
    assert proc.returncode == 2 and proc.stderr.startswith("orch: name the Claude Code session")


def test_claim_without_a_session_says_how_to_start_one(workspace_dir):
    proc = run_orch("hook", "claim", CONDUCTOR)
    assert proc.returncode == 2 and proc.stderr.startswith("orch: no active orch session in")
    assert proc.stderr.count("\n") == 1


# --------------------------------------------------------------------------- todo and context


def todo_payload(cwd: Path, tool: str, tool_input: dict, tool_response: Any = None,
                 session: str = CONDUCTOR) -> dict[str, Any]:
    return {"session_id": session, "cwd": str(cwd), "hook_event_name": "PostToolUse", "tool_name": tool,
            "tool_input": tool_input, "tool_response": tool_response or {}, "tool_use_id": "toolu_1"}


CYCLE = ["Monitor agents (orch wait)", "Check completion criteria (orch check)", "Assign work (orch step)",
         "Finalize (orch report)"]


def todowrite(doing: int) -> dict[str, Any]:
    return {"todos": [{"content": c, "activeForm": c.split(" (")[0] + "…",
                       "status": "completed" if i < doing else "in_progress" if i == doing else "pending"}
                      for i, c in enumerate(CYCLE)]}


def test_todowrite_records_the_item_in_progress_for_the_monitor(workspace_dir):
    s = new_session()
    claim()
    run_hook("PostToolUse", todo_payload(workspace_dir, "TodoWrite", todowrite(1)), cwd=workspace_dir)
    assert s.read_session().todo == "Check completion criteria…"
    frame = run_orch("monitor", "--once", check=True).stdout
    assert "in progress: Check completion criteria…" in frame
    # another Claude Code session's todos are not the conductor's
    run_hook("PostToolUse", todo_payload(workspace_dir, "TodoWrite", todowrite(2), session="other"), cwd=workspace_dir)
    assert s.read_session().todo == "Check completion criteria…"
    run_hook("PostToolUse", todo_payload(workspace_dir, "TodoWrite", todowrite(4)), cwd=workspace_dir)
    assert s.read_session().todo is None
    assert [e.data["todo"] for e in hook_events(s) if e.data["hook"] == "todo"] == ["Check completion criteria…", None]


def test_task_tools_record_the_item_in_progress_by_its_subject(workspace_dir):
    # the shapes claude 2.1.197 sends (PostToolUse on TaskCreate / TaskUpdate)
    s = new_session()
    claim()
    created = todo_payload(workspace_dir, "TaskCreate", {"subject": CYCLE[0], "description": "wait"},
                           {"task": {"id": "1", "subject": CYCLE[0]}})
    run_hook("PostToolUse", created, cwd=workspace_dir)
    assert s.read_session().todo is None
    update = {"taskId": "1", "status": "in_progress"}
    response = {"success": True, "taskId": "1", "updatedFields": ["status"],
                "statusChange": {"from": "pending", "to": "in_progress"}}
    run_hook("PostToolUse", todo_payload(workspace_dir, "TaskUpdate", update, response), cwd=workspace_dir)
    assert s.read_session().todo == CYCLE[0]
    run_hook("PostToolUse", todo_payload(workspace_dir, "TaskUpdate", {"taskId": "1", "status": "completed"}),
             cwd=workspace_dir)
    assert s.read_session().todo is None


def test_after_a_compaction_the_conductor_gets_its_session_back(workspace_dir):
    s = new_session()
    claim()
    payload = {"session_id": CONDUCTOR, "cwd": str(workspace_dir), "hook_event_name": "SessionStart",
               "source": "compact"}
    out = answer(run_hook("SessionStart", payload, cwd=workspace_dir))
    context = out["hookSpecificOutput"]["additionalContext"]
    assert out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert f"This Claude Code session conducts orch session {s.id} (goal: a tiny text utility" in context
    assert f'The orch launcher is "{LAUNCHER}".' in context
    assert "Completion criteria not met: no work has been planned yet." in context
    assert f'Next command: "{LAUNCHER}" step' in context
    for other in ({**payload, "source": "startup"}, {**payload, "session_id": "someone-else"}):
        assert answer(run_hook("SessionStart", other, cwd=workspace_dir)) is None


def test_the_next_command_spells_the_launcher_as_the_commands_do(workspace_dir):
    # An installed plugin's root can end with "/" (claude 2.1.197 lists "/path/"): the commands
    # then say "/path//scripts/orch" and their allowed-tools rule matches exactly that text.
    new_session()
    claim()
    out = answer(run_hook("Stop", stop_payload(workspace_dir), cwd=workspace_dir,
                          env={"CLAUDE_PLUGIN_ROOT": f"{ROOT}/"}))
    assert f'Run next: "{ROOT}//scripts/orch" step' in out["reason"]
