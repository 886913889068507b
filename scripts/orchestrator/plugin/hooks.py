"""Claude Code hooks: the conductor's Stop gate, its todo, and its memory after a compaction.

The plugin's hooks/hooks.json runs `orch hook EVENT` with Claude Code's JSON on stdin:

    stop     while the session's completion criteria fail: {"decision": "block", "reason":
             what remains + the next command}, at most `stop_limit()` times per orch
             session; then the stop is let through (with a note to the user)
    todo     after TodoWrite / TaskCreate / TaskUpdate: the one item in progress → session.todo
    context  after a compaction or a resume: the session's state as additional context

A hook only concerns the Claude Code session that conducts an orch session: the one that
ran `orch hook claim` (orchestrate.md does, right after `orch start`). Other Claude Code
sessions in the same project — or an `orch run` autopilot — are never held back.

A hook must never break Claude's session: bad input or any failure → no decision (exit 0)
and one line on stderr. Every decision is recorded as a `hook` event in events.jsonl.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import Field

from ..criteria.evaluate import CriteriaResult, evaluate
from ..criteria.advice import at_round_limit, continue_steps, more_rounds
from ..notify.consumer import notify_new_events
from ..runtime.ingest import refresh_session
from ..core.errors import InvalidInput, OrchError
from ..core.models import Event, EventKind, Model, Session, SessionState, now
from ..store.sessions import SessionStore, Workspace, atomic_write_model, file_lock, read_model, state_root

CONDUCTOR_FILE = "conductor.json"
LIMIT_ENV = "ORCH_STOP_HOOK_LIMIT"
DEFAULT_STOP_LIMIT = 25
TODO_TOOLS = ("TodoWrite", "TaskCreate", "TaskUpdate")
CONTEXT_SOURCES = ("compact", "resume")
# The launcher every command and hook calls (scripts/orch beside this package).
LAUNCHER = Path(__file__).resolve().parents[2] / "orch"


class ConductorState(Model):
    """<session>/conductor.json: the Claude Code session conducting, and the Stop gate's count."""

    claude_session: str
    claimed_at: datetime = Field(default_factory=now)
    continuations: int = 0  # stops the hook has blocked for this orch session
    last_block_at: Optional[datetime] = None
    task_subjects: dict[str, str] = Field(default_factory=dict)  # Task tools: task id → subject


@dataclass
class HookAnswer:
    """What the hook prints (a JSON object, or nothing: no decision) and its note for stderr."""

    output: Optional[dict[str, Any]] = None
    note: str = ""


# --------------------------------------------------------------------------- conductor.json


def conductor_path(store: SessionStore) -> Path:
    return store.path / CONDUCTOR_FILE


def read_conductor(store: SessionStore) -> Optional[ConductorState]:
    path = conductor_path(store)
    return read_model(path, ConductorState) if path.is_file() else None


@contextmanager
def edit_conductor(store: SessionStore) -> Iterator[ConductorState]:
    """Read-modify-write conductor.json under its own lock (it must exist)."""
    with file_lock(store.path / ".conductor.lock"):
        state = read_model(conductor_path(store), ConductorState)
        yield state
        atomic_write_model(conductor_path(store), state)


def conductor_from_env() -> Optional[str]:
    """The Claude Code session a Bash tool call runs in ($CLAUDE_CODE_SESSION_ID, set by 2.1.197)."""
    return os.environ.get("CLAUDE_CODE_SESSION_ID") or None


def claim(store: SessionStore, claude_session: str) -> ConductorState:
    """Make a Claude Code session the conductor (a new conductor starts a fresh stop budget)."""
    claude_session = claude_session.strip()
    if not claude_session or any(c.isspace() for c in claude_session):
        raise InvalidInput(f"not a Claude Code session id: {claude_session!r}")
    with file_lock(store.path / ".conductor.lock"):
        old = read_conductor(store)
        if old is not None and old.claude_session == claude_session:
            return old
        state = ConductorState(claude_session=claude_session)
        atomic_write_model(conductor_path(store), state)
    store.append_event(Event(kind=EventKind.HOOK, reason=f"conducted by Claude Code session {claude_session}",
                             data={"hook": "claim", "claude_session": claude_session,
                                   "previous": old.claude_session if old else None}))
    return state


# --------------------------------------------------------------------------- finding the session


def candidate_roots(payload: dict[str, Any]) -> list[Path]:
    """State roots to look in: the hook's cwd, the project dir, the process cwd (deduplicated)."""
    dirs = [payload.get("cwd"), os.environ.get("CLAUDE_PROJECT_DIR"), os.getcwd()]
    roots: list[Path] = []
    for d in dirs:
        if isinstance(d, str) and d and Path(d).is_dir():
            root = state_root(Path(d))
            if root not in roots:
                roots.append(root)
    return roots


def conducted_session(payload: dict[str, Any]) -> Optional[SessionStore]:
    """The orch session this Claude Code session conducts: an active one first, else the newest."""
    claude_session = payload.get("session_id")
    if not isinstance(claude_session, str) or not claude_session:
        return None
    found: list[tuple[bool, str, SessionStore]] = []
    for root in candidate_roots(payload):
        ws = Workspace(root)
        for sid in ws.session_ids():
            store = ws.open(sid)
            try:
                state = read_conductor(store)
            except OrchError:  # another session's damaged file is no reason to fail this one
                continue
            if state is not None and state.claude_session == claude_session:
                active = store.read_session().state is SessionState.ACTIVE
                found.append((active, sid, store))
    if not found:
        return None
    return max(found, key=lambda f: (f[0], f[1]))[2]  # session ids sort by creation time


# --------------------------------------------------------------------------- the limit


def stop_limit(store: SessionStore) -> tuple[int, str]:
    """How many stops the hook may block per orch session — $ORCH_STOP_HOOK_LIMIT, else the
    policy's [limits] stop_hook_limit, else 25 — and a note when a setting cannot be used."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    note = ""
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value >= 0:
            return value, ""
        note = f"{LIMIT_ENV}={raw!r} is not a whole number >= 0"
    try:
        from ..safety.policy import load_policy, workspace_of

        value = load_policy(workspace_of(store)).limits.stop_hook_limit
    except OrchError as e:
        value, note = DEFAULT_STOP_LIMIT, (f"{note}; " if note else "") + e.message
    return value, (f"{note}; using {value}" if note else "")


# --------------------------------------------------------------------------- stop


def launcher() -> str:
    """The launcher spelled as the commands spell it — "${CLAUDE_PLUGIN_ROOT}/scripts/orch",
    which Claude Code exports to hooks — so the allowed-tools rule that lets the model run it
    matches the text handed over (an installed plugin's root can end with a slash)."""
    root = os.environ.get("CLAUDE_PLUGIN_ROOT")
    return '"' + (f"{root}/scripts/orch" if root else str(LAUNCHER)) + '"'


def launcher_command(step: str) -> str:
    """A criteria step (`orch wait …   # why`) with the launcher's path, so it runs as given."""
    command, _, why = step.partition("#")
    command = command.strip()
    if command.startswith("orch "):
        command = launcher() + command[len("orch"):]
    return f"{command}   # {why.strip()}" if why.strip() else command


def stop_reason(session: Session, r: CriteriaResult, count: int, limit: int) -> str:
    """What Claude reads when it may not stop: what remains and what to run next."""
    lines = [f"orch session {session.id} is not finished ({session.goal or 'no goal'}). "
             "You are its conductor: do not stop.", "Completion criteria not met:"]
    lines += [f"- {m}" for m in r.missing]
    details = [("Running agents", r.live_agents), ("Denied agents (recover them with orch step)", r.denied_agents),
               ("Blocked by policy (orch allow/deny when the user's intent is clear, else ask)", r.blocked_agents),
               ("Idle while work remains", r.idle_with_work), ("Open blockers", r.open_blockers),
               ("Open tasks", r.open_tasks)]
    for title, items in details:
        if items:
            lines.append(f"{title}:")
            lines += [f"- {i}" for i in items[:8]] + ([f"- … and {len(items) - 8} more"] if len(items) > 8 else [])
    if r.next_command:
        lines.append("Run next: " + launcher_command(r.next_command))
    lines.append("Then keep the cycle — wait (at most 60 s) → check → step — with exactly one todo in progress, "
                 "re-reading state from orch each time; finalize with orch report only when orch check passes.")
    lines.append(f"(stop hook continuation {count} of {limit} for this session)")
    return "\n".join(lines)


def record(store: SessionStore, hook: str, reason: str, **data: Any) -> None:
    store.append_event(Event(kind=EventKind.HOOK, reason=reason, data={"hook": hook, **data}))


def decide_stop(payload: dict[str, Any]) -> HookAnswer:
    """The Stop hook: block while the conducted session has work left, within the limit."""
    store = conducted_session(payload)
    if store is None:
        return HookAnswer()
    limit, note = stop_limit(store)
    session = store.read_session()
    common = {"event": "Stop", "claude_session": payload.get("session_id"),
              "stop_hook_active": bool(payload.get("stop_hook_active")), "limit": limit}
    if session.state is not SessionState.ACTIVE:
        record(store, "stop", f"stop allowed: the session is {session.state.value}", decision="allow", **common)
        if session.state is SessionState.STOPPED:
            data = session.model_dump(mode="json")
            steps = [step.partition("#")[0].strip() for step in continue_steps(data)]
            how = f"`{steps[0]}` continues it" + (f" (or `{steps[-1]}` under the autopilot)" if len(steps) > 1 else "")
            if at_round_limit(data):  # more rounds are a person's call; so is taking what is done
                how = f"`{more_rounds(data)}` continues it (or `orch land {session.id} --anyway` takes what is done)"
            message = f"orch: session {session.id} stopped ({session.stop_reason or 'no reason given'}); {how}"
            return HookAnswer(output={"systemMessage": message}, note=note)
        if session.state is SessionState.PAUSED:  # a person must raise the budget: let the conductor stop
            message = (f"orch: session {session.id} paused: {session.stop_reason}; `orch budget --raise …` "
                       f"(or edit the policy), then `orch resume {session.id}` continues it")
            return HookAnswer(output={"systemMessage": message}, note=note)
        if session.state is SessionState.COMPLETE:
            return HookAnswer(output={"systemMessage": landing_message(session)}, note=note)
        return HookAnswer(note=note)
    refresh_session(store)  # the hook judges what agents have written by now
    notify_new_events(store)
    result = evaluate(store)
    if result.ok:
        record(store, "stop", "stop allowed: every completion criterion holds", decision="allow", **common)
        message = (f"orch: every completion criterion of session {session.id} holds; `orch report` finalizes it"
                   + (f", then `orch land {session.id}` takes the result into your working tree"
                      if session.git is not None and session.git.mode == "worktrees" else ""))
        return HookAnswer(output={"systemMessage": message}, note=note)
    parked = parked_stop_message(store, result)
    if parked:
        record(store, "stop", "stop allowed: the remaining work is parked by a usage limit", decision="allow",
               parked=result.parked_agents, resume_at=result.resume_at, **common)
        return HookAnswer(output={"systemMessage": parked}, note=note)
    with edit_conductor(store) as state:
        over = state.continuations >= limit
        if not over:
            state.continuations += 1
            state.last_block_at = now()
        count = state.continuations
    missing = result.missing
    if over:
        message = (f"orch: the stop hook let Claude stop after {limit} continuation(s) (the limit: "
                   f"{LIMIT_ENV} or the policy's stop_hook_limit); session {session.id} still has work: "
                   f"{'; '.join(missing)}")
        record(store, "stop", f"stop allowed: limit of {limit} continuation(s) reached",
               decision="allow", continuations=count, missing=missing, **common)
        return HookAnswer(output={"systemMessage": message}, note=note)
    reason = stop_reason(session, result, count, limit)
    record(store, "stop", f"stop blocked ({count}/{limit}): {'; '.join(missing)}", decision="block",
           continuations=count, missing=missing, next=result.next_command, **common)
    return HookAnswer(output={"decision": "block", "reason": reason}, note=note)


def landing_message(session: Session) -> str:
    """The final word on a complete session: where its result is and how to take it."""
    git = session.git
    if git is None or git.mode != "worktrees":
        return f"orch: session {session.id} is complete; its work is in {session.workspace}"
    if git.landings:
        last = git.landings[-1]
        where = f"commit {last.commit[:12]} on {last.branch}" if last.commit else "your working tree"
        return f"orch: session {session.id} is complete and landed (`orch land --{last.mode}`): in {where}"
    return (f"orch: session {session.id} is complete; its result is on {git.integration_branch}. "
            f"`orch land {session.id}` takes it into your working tree (your own uncommitted edits kept; "
            f"`--commit` also commits it); nothing was pushed")


PARKED_STOP_AFTER = 300.0  # seconds: parked for less than this, the conductor waits it out


def parked_stop_message(store: SessionStore, result: CriteriaResult) -> str:
    """When the only work left waits for a usage limit to reset for more than a few minutes
    (or the policy says to ask), the conductor may stop: this says until when and how to go on.
    Holding it would only burn the conductor's own quota for hours."""
    if not result.parked_agents or result.live_agents or not result.resume_at:
        return ""
    from datetime import datetime

    resume_at = datetime.fromisoformat(result.resume_at.replace("Z", "+00:00"))
    wait = (resume_at - now()).total_seconds()
    if wait < PARKED_STOP_AFTER and not _ask_on_limit(store):
        return ""
    session_id = store.id
    return (f"orch: session {session_id} is waiting for a usage limit: {'; '.join(result.parked_agents)}. "
            f"Nothing can move before {resume_at.strftime('%H:%M')} UTC; then run `/orchestrate` with no goal, "
            f"or `orch resume {session_id}`, to carry on (or ask the user whether to switch CLIs).")


def _ask_on_limit(store: SessionStore) -> bool:
    try:
        from ..safety.policy import load_policy, workspace_of

        return load_policy(workspace_of(store)).limits.on_usage_limit == "ask"
    except OrchError:
        return False


# --------------------------------------------------------------------------- todo


def _task_id(tool_input: dict[str, Any], tool_response: Any) -> Optional[str]:
    for key in ("taskId", "id", "task_id"):  # Claude Code repairs near-miss key names itself
        if tool_input.get(key):
            return str(tool_input[key])
    task = tool_response.get("task") if isinstance(tool_response, dict) else None
    return str(task["id"]) if isinstance(task, dict) and task.get("id") is not None else None


def new_todo(tool: str, tool_input: dict[str, Any], tool_response: Any, state: ConductorState,
             current: Optional[str]) -> tuple[bool, Optional[str]]:
    """(changed, todo) after one todo-tool call; Task tools remember subjects by id in `state`."""
    if tool == "TodoWrite":
        todos = [t for t in tool_input.get("todos") or [] if isinstance(t, dict)]
        doing = [t for t in todos if t.get("status") == "in_progress"]
        todo = (doing[0].get("activeForm") or doing[0].get("content")) if doing else None
        return todo != current, todo
    task_id = _task_id(tool_input, tool_response)
    subject = tool_input.get("subject")
    if task_id and isinstance(subject, str) and subject:
        state.task_subjects[task_id] = subject
    if tool != "TaskUpdate" or not task_id:
        return False, current
    label = tool_input.get("activeForm") or state.task_subjects.get(task_id) or f"task {task_id}"
    status = tool_input.get("status")
    if status == "in_progress":
        return label != current, label
    if status in ("completed", "deleted") and current in (label, state.task_subjects.get(task_id)):
        return True, None
    return False, current


def record_todo(payload: dict[str, Any]) -> HookAnswer:
    """PostToolUse on a todo tool: the conductor's item in progress becomes session.todo."""
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if tool not in TODO_TOOLS or not isinstance(tool_input, dict):
        return HookAnswer()
    store = conducted_session(payload)
    if store is None:
        return HookAnswer()
    with edit_conductor(store) as state, store.edit_session() as session:
        changed, todo = new_todo(tool, tool_input, payload.get("tool_response"), state, session.todo)
        if changed:
            session.todo = todo[:300] if todo else None
    if changed:
        record(store, "todo", f"conductor's todo: {session.todo or '(none in progress)'}", todo=session.todo,
               tool=tool)
    return HookAnswer()


# --------------------------------------------------------------------------- context


def context_text(store: SessionStore) -> str:
    """The session's state, as facts, for a conductor whose earlier context was compacted away."""
    session = store.read_session()
    r = evaluate(store)
    lines = [f"This Claude Code session conducts orch session {session.id} (goal: {session.goal or 'none'}; "
             f"state {session.state.value}, round {session.round} of at most {session.max_rounds}).",
             f"The orch launcher is {launcher()}. The conductor's todo in progress: "
             f"{session.todo or 'none recorded'}.",
             "Agents now: " + (", ".join(f"{a.id} {a.state.value}" for a in store.agents()) or "none yet") + "."]
    if r.ok:
        lines.append("Every completion criterion holds" + ("; the report is not written yet." if
                                                            session.state is SessionState.ACTIVE else "."))
    else:
        lines.append("Completion criteria not met: " + "; ".join(r.missing) + ".")
    if r.next_command:
        lines.append("Next command: " + launcher_command(r.next_command))
    lines.append("The conductor loop is: wait (at most 60 s) → check → step, with exactly one todo in progress; "
                 "state comes from orch status and orch check, not from memory.")
    return "\n".join(lines)


def restore_context(payload: dict[str, Any]) -> HookAnswer:
    """SessionStart after a compaction or resume: give the conductor its session's state back."""
    if payload.get("source") not in CONTEXT_SOURCES:
        return HookAnswer()
    store = conducted_session(payload)
    if store is None or store.read_session().state is not SessionState.ACTIVE:
        return HookAnswer()
    refresh_session(store)  # the facts it restores are what agents have done by now
    notify_new_events(store)
    text = context_text(store)
    record(store, "context", f"state given back to the conductor after {payload.get('source')}",
           source=payload.get("source"))
    return HookAnswer(output={"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text}})


# --------------------------------------------------------------------------- entry


HANDLERS = {"stop": decide_stop, "todo": record_todo, "context": restore_context}


def parse_payload(raw: str) -> dict[str, Any]:
    """The hook's JSON input; InvalidInput when it is not a JSON object."""
    try:
        payload = json.loads(raw)
    except ValueError as e:
        raise InvalidInput(f"the hook input is not JSON ({e})") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the hook input is not a JSON object (got {type(payload).__name__})")
    return payload


def run_hook(name: str, raw: str) -> HookAnswer:
    """Answer one hook call; any failure becomes no decision plus a one-line note."""
    try:
        return HANDLERS[name](parse_payload(raw))
    except Exception as e:  # noqa: BLE001 - a hook must never break Claude's session
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        return HookAnswer(note=f"{name} hook: no decision ({message.splitlines()[0]})")
