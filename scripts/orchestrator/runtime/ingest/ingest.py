"""Ingest: raw agent output → normalized events → agent state, incrementally.

`refresh_agent` reads only the bytes each agent wrote since the last call (offsets in
the `ingest` cursor of its meta.json), feeds them to the CLI's parser, folds the events into the agent's stats,
reconciles the process (alive? exited? with what?), moves the agent's state, and appends
what it saw to events.jsonl. The append is exactly-once across a SIGKILL at any point:
the batch is recorded in the agent's lock file before the append (store.AgentLock), and
whoever takes the lock next finishes or forgets it.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ...adapters import Adapter, StreamParser
from ...core.models import (
    Agent, AgentEvent, AgentEventKind, AgentState, Denial, Event, EventKind, IngestCursor, Outcome, Run, Usage, now,
)
from ..procs import is_same_process
from ...safety.redaction import redact, redact_text, scrub_file, scrub_literals, scrub_range, secret_literals
from ...store.sessions import AgentLock, SessionStore, agent_bytes
from ...store.tail import read_new_lines
from ..workers import adapter_for, read_run_record

READ_CHUNK = 8 << 20
STDERR_TAIL_BYTES = 4096
COMPACTING_GRACE = 300.0  # an agent compacting its context is quiet for minutes: not a stall
NEVER_STARTED_AFTER = 30.0  # a run recorded but with no supervisor record after this long
LIVE = (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT)
QUOTA_WORDS = ("429", "rate limit", "rate_limit", "quota", "resource_exhausted", "too many requests",
               "usage limit", "insufficient_quota")


def silent_after_default() -> float:
    """Seconds without output before a live agent is shown as silent (ORCH_SILENT_AFTER)."""
    try:
        return float(os.environ.get("ORCH_SILENT_AFTER", "90"))
    except ValueError:
        return 90.0


def _mtime(path: Path) -> Optional[datetime]:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except FileNotFoundError:
        return None


def stderr_tail(store: SessionStore, agent_id: str, start: int = 0, lines: int = 5) -> str:
    """The last lines of an agent's stderr since byte `start`, redacted."""
    path = store.agent_dir(agent_id) / "stderr.log"
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(start, size - STDERR_TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").strip().splitlines()
    return redact_text("\n".join(text[-lines:]))


_STDERR_NOISE = re.compile(
    r"^(reading additional input from stdin|warning: 256-color|ripgrep is not available|\[startup\]|"
    r"at |[\s{}\[\](),;]*$)", re.I)
_STDERR_TELLING = re.compile(r"error|fail|denied|refused|not found|no such|exception|invalid|unauthori|"
                             r"forbidden|quota|rate.limit|cannot|could not|exiting", re.I)


def telling_line(tail: str) -> str:
    """The stderr line that best says why a run failed (not a banner, not a stack frame)."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    useful = [line for line in lines if not _STDERR_NOISE.match(line)]
    for line in reversed(useful):
        if _STDERR_TELLING.search(line):
            return line
    return useful[-1] if useful else ""


def _usage_from(d: Optional[dict[str, Any]]) -> Usage:
    return Usage.model_validate(d) if d else Usage()


def _minus(a: Usage, b: Usage) -> Usage:
    return a.minus(b)


class _Batch:
    """What one refresh of one agent produced, before it is written."""

    def __init__(self, agent: Agent, cursor: IngestCursor, adapter: Adapter):
        self.agent = agent
        self.cursor = cursor
        self.adapter = adapter
        self.events: list[Event] = []
        self.saw_bytes = False
        self.seen_text: list[str] = []  # normalized text and targets, searched for split secrets
        self.folder: Path = Path()

    # -- folding normalized events into the agent
    def fold(self, ev: AgentEvent, run: Run) -> None:
        a, acc, c = self.agent, self.cursor.run_acc, self.cursor
        k = ev.kind
        acc["events"] = acc.get("events", 0) + 1
        data = ev.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        data["kind"] = k.value
        data["run"] = run.n
        self.events.append(Event(kind=EventKind.AGENT_OUTPUT, agent=a.id, task=run.task, data=data))
        for value in (ev.text, ev.target):
            if value and len(value) >= 8:
                self.seen_text.append(value)
        if k is AgentEventKind.SESSION_STARTED and ev.session_id:
            if ev.session_id != c.thread_id:
                c.thread_id, c.thread_base = ev.session_id, Usage()
            a.cli_session_id = ev.session_id
        elif k is AgentEventKind.TEXT and ev.text:
            a.stats.last_text = ev.text[-500:]
        elif k is AgentEventKind.TOOL_STARTED:
            a.stats.tool_calls += 1
        elif k is AgentEventKind.FILE_CHANGED and ev.path:
            path = ev.path
            try:
                path = str(Path(ev.path).resolve().relative_to(Path(a.cwd)))
            except (ValueError, OSError):
                pass
            if path not in a.stats.files_changed:
                a.stats.files_changed.append(path)
        elif k is AgentEventKind.DENIAL:
            key = ev.tool_id or f"{ev.tool}:{ev.target}"
            seen = acc.setdefault("denial_keys", [])
            if key not in seen:
                seen.append(key)
                d = Denial(tool=ev.tool or "unknown", target=redact_text(ev.target) if ev.target else None,
                           message=redact_text((ev.message or "")[:500]), at=now(), run=run.n, tool_id=ev.tool_id)
                a.stats.denials.append(d)
                self.events.append(Event(kind=EventKind.DENIAL, agent=a.id, task=run.task,
                                         reason=f"{d.tool} {d.target or ''}".strip(),
                                         data=d.model_dump(mode="json", exclude_none=True)))
        elif k is AgentEventKind.USAGE and ev.usage:
            self._usage(ev.usage, ev.usage_cumulative)
        elif k is AgentEventKind.ERROR and ev.message:
            message = redact_text(ev.message[:500])
            acc.setdefault("errors", []).append(message)
            a.stats.errors = (a.stats.errors + [message])[-20:]
        elif k is AgentEventKind.STATUS:
            acc["status"] = ev.status or ev.message
        elif k is AgentEventKind.UNKNOWN:
            a.stats.unknown_events += 1
        elif k is AgentEventKind.RUN_FINISHED:
            acc["outcome"] = (ev.outcome or Outcome.SUCCESS).value
            if ev.text is not None:
                acc["final_text"] = ev.text[-20000:]
            if ev.usage:
                self._usage(ev.usage, ev.usage_cumulative, replace=True)
        if ev.stream in ("stdout", "rollout") and k not in (AgentEventKind.STATUS, AgentEventKind.UNKNOWN):
            acc["output"] = True  # what the CLI itself said, not what orch inferred at exit

    def _usage(self, u: Usage, cumulative: bool, replace: bool = False) -> None:
        acc, c = self.cursor.run_acc, self.cursor
        if cumulative:
            run_usage = _minus(u, c.thread_base)
            acc["cumulative"] = u.model_dump()
        elif replace:
            run_usage = u
        else:
            run_usage = _usage_from(acc.get("usage")).plus(u)
        acc["usage"] = run_usage.model_dump()
        self.agent.stats.usage = c.closed_usage.plus(run_usage)


def _feed(batch: _Batch, parser: StreamParser, store: SessionStore, run: Run, stream: str, end: Optional[int],
          final: bool) -> None:
    """Feed the stream's new complete lines (and, when final, a trailing partial line)."""
    c = batch.cursor
    name = "stdout.jsonl" if stream == "stdout" else "stderr.log"
    path = batch.folder / name
    attr = "stdout_offset" if stream == "stdout" else "stderr_offset"
    offset = getattr(c, attr)
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=READ_CHUNK, end=end)
        if new == offset:
            break
        batch.saw_bytes = True
        for line in lines:
            if line.strip():
                for ev in parser.feed(stream, line):
                    batch.fold(ev, run)
        scrub_range(path, offset, b"\n".join(lines) + b"\n")  # the raw copy must not keep a secret either
        offset = new
    if final:
        # The writer is gone: an unterminated last line will never be completed.
        limit = end if end is not None else (path.stat().st_size if path.exists() else offset)
        if limit > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                rest = f.read(limit - offset)
            if rest.strip():
                batch.saw_bytes = True
                for ev in parser.feed(stream, rest.rstrip(b"\n")):
                    batch.fold(ev, run)
                if end is None and not rest.endswith(b"\n"):
                    with open(path, "ab") as f:  # close the torn line so it can be scrubbed
                        f.write(b"\n")
                    limit += 1
                scrub_file(path, offset, limit)
            offset = limit
    setattr(c, attr, offset)


def _feed_side_file(batch: _Batch, parser: StreamParser, run: Run, path: Path) -> None:
    """Feed what a side file gained since the previous run read it.

    A side file belongs to the CLI session, not to one run: `codex exec resume` appends
    the new turn to the thread's rollout, which still holds every earlier turn. Read whole
    again, a resumed run would report the earlier runs' denials as its own.
    """
    offsets = batch.cursor.side_offsets
    offset = offsets.get(str(path), 0)
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=READ_CHUNK)
        if new == offset:
            break
        for line in lines:
            if line.strip():
                for ev in parser.feed("rollout", line):
                    batch.fold(ev, run)
        offset = new
    offsets[str(path)] = offset


def _scrub_split_secrets(batch: _Batch, store: SessionStore, run: Run) -> None:
    """Mask, in the run's raw output, secrets that only the joined text of several lines shows."""
    if not batch.seen_text:
        return
    literals = secret_literals("\n".join(batch.seen_text))
    batch.seen_text = []
    if literals:
        d = store.agent_dir(batch.agent.id)
        scrub_literals(d / "stdout.jsonl", literals, run.stdout_start, batch.cursor.stdout_offset)
        scrub_literals(d / "stderr.log", literals, run.stderr_start, batch.cursor.stderr_offset)


def _finish_run(batch: _Batch, store: SessionStore, run: Run, parser: StreamParser, record: dict) -> None:
    """The run's process is gone: read its verdict, move the agent's state, record the exit."""
    a, c = batch.agent, batch.cursor
    acc = c.run_acc
    exit_code = record.get("exit_code")
    for ev in parser.finish(exit_code):
        batch.fold(ev, run)
    run.ended_at = run.ended_at or (datetime.fromisoformat(record["ended_at"]) if record.get("ended_at") else now())
    run.exit_code = exit_code
    run.signal = record.get("signal")
    outcome = Outcome(acc.get("outcome", Outcome.INCOMPLETE.value))
    run.outcome = outcome
    run.final_text = redact_text(acc.get("final_text", ""))
    denials = [d for d in a.stats.denials if d.run == run.n]
    malformed = parser.malformed_lines
    errors = acc.get("errors", [])
    tail = stderr_tail(store, a.id, run.stderr_start)
    kind = ""
    if run.note and run.note.startswith("never started"):
        new_state, reason, kind = AgentState.FAILED, run.note, "never_started"
    elif run.note and run.note.startswith("nudge"):
        new_state, reason, kind = AgentState.FAILED, run.note, "stalled"
    elif run.note and run.note.startswith("limit"):
        new_state, reason, kind = AgentState.FAILED, run.note, "wall_time"
    elif run.note == "abort requested" or a.state is AgentState.ABORTED:
        new_state, reason, kind = AgentState.ABORTED, run.note or "aborted", "aborted"
    elif denials:
        what = "; ".join(f"{d.tool} {d.target or ''}".strip() for d in denials[:3])
        new_state, reason, kind = AgentState.DENIED, f"{len(denials)} denied call(s): {what}", "denied"
    elif exit_code == 0 and outcome is Outcome.SUCCESS:
        new_state, reason = AgentState.IDLE, "finished its task"
    else:
        new_state = AgentState.FAILED
        blob = " ".join(errors + [acc.get("final_text", ""), tail]).lower()
        code = "unknown (its supervisor was lost)" if exit_code is None else str(exit_code)
        if any(w in blob for w in QUOTA_WORDS):
            kind, reason = "quota", f"out of quota or rate-limited: {(errors or [tail])[0][:200]}"
        elif not acc.get("output") and malformed:
            kind, reason = "garbage", f"printed no valid output ({malformed} malformed lines), exit {code}"
        elif not acc.get("output"):
            kind, reason = "no_output", f"exited with code {code} without printing anything"
        elif outcome is Outcome.MAX_TURNS:
            kind, reason = "max_turns", "stopped at its turn limit"
        elif outcome is Outcome.ERROR:
            kind, reason = "error", f"error: {(errors or [acc.get('final_text', '')])[0][:200]}"
        elif exit_code is None:
            kind, reason = "lost", "the process is gone and its exit code is unknown (its supervisor was killed)"
        else:
            kind, reason = "crash", f"exited with code {code} before finishing"
        telling = telling_line(tail)
        if telling and kind in ("garbage", "no_output", "crash", "lost", "error"):
            reason += f" — stderr: {telling[:200]}"
    a.exit_code = exit_code
    a.ended_at = run.ended_at
    batch.events.append(Event(
        kind=EventKind.AGENT_EXITED, agent=a.id, task=run.task, reason=reason,
        data={"run": run.n, "exit_code": exit_code, "signal": run.signal, "outcome": outcome.value,
              "denials": len(denials), "failure": kind or None, "final_text": acc.get("final_text", "")[-1000:],
              "stderr_tail": tail if new_state in (AgentState.FAILED, AgentState.DENIED) else ""},
    ))
    _set_state(batch, new_state, reason)
    # close the run's books
    if acc.get("cumulative"):
        c.thread_base = _usage_from(acc["cumulative"])
    c.closed_usage = c.closed_usage.plus(_usage_from(acc.get("usage")))
    c.closed_malformed += malformed
    a.stats.usage = c.closed_usage
    a.stats.malformed_lines = c.closed_malformed
    c.finished_runs = (c.finished_runs + [run.n])[-50:]
    c.run_acc = {}
    c.parser_state = {}


def _set_state(batch: _Batch, new: AgentState, reason: str) -> None:
    a = batch.agent
    if a.state is new:
        return
    old = a.state
    reason = redact_text(reason)
    a.state, a.state_reason, a.state_since = new, reason, now()
    batch.events.append(Event(kind=EventKind.AGENT_STATE, agent=a.id, task=a.current_task, reason=reason,
                              data={"from": old.value, "to": new.value}))


def _live_state(batch: _Batch, silent_after: float) -> None:
    """A running process: running, still starting, or silent for too long."""
    a, acc = batch.agent, batch.cursor.run_acc
    quiet = (now() - a.last_activity_at).total_seconds() if a.last_activity_at else 0.0
    limit = silent_after
    if str(acc.get("status", "")).lower().startswith("compact"):
        limit = max(silent_after, COMPACTING_GRACE)
    if quiet >= limit:
        said = "nothing yet" if not acc.get("output") else "nothing new"
        _set_state(batch, AgentState.SILENT, f"running but printed {said} for {int(quiet)} s")
    elif acc.get("output") or batch.saw_bytes:
        _set_state(batch, AgentState.RUNNING, "working")
    elif a.state is not AgentState.STARTING:
        _set_state(batch, AgentState.STARTING, "started, no output yet")


def _signature(agent: Agent) -> tuple:
    """What a refresh can change; equal before and after means nothing to write."""
    c, last = agent.ingest, agent.runs[-1]
    return (c.stdout_offset, c.stderr_offset, c.run, len(c.finished_runs), agent.state, agent.pid,
            last.pid, last.note, last.ended_at, len(agent.runs))


def refresh_agent(store: SessionStore, agent_id: str, silent_after: Optional[float] = None) -> list[Event]:
    """Ingest an agent's new output and reconcile its process; returns the events appended."""
    return ingest_agent(store, agent_id, silent_after)[0]


def ingest_agent(store: SessionStore, agent_id: str, silent_after: Optional[float] = None) -> tuple[list[Event], Agent]:
    """refresh_agent, also returning the agent as it now stands (saves a re-read)."""
    silent_after = silent_after_default() if silent_after is None else silent_after
    with store.agent_lock(agent_id) as lock:
        agent = store.read_agent(agent_id)
        if not agent.runs:
            return [], agent
        cursor = agent.ingest
        before = _signature(agent)
        adapter = adapter_for(agent)
        batch = _Batch(agent, cursor, adapter)
        batch.folder = store.agent_dir(agent_id)
        if cursor.run == 0:
            cursor.run = 1
            cursor.stdout_offset = agent.runs[0].stdout_start
            cursor.stderr_offset = agent.runs[0].stderr_start
        d = store.agent_dir(agent_id)
        while True:
            run = agent.runs[cursor.run - 1]
            nxt = agent.runs[cursor.run] if cursor.run < len(agent.runs) else None
            if run.n in cursor.finished_runs:
                if nxt is None:
                    break
                cursor.run += 1
                cursor.stdout_offset, cursor.stderr_offset = nxt.stdout_start, nxt.stderr_start
                continue
            record = read_run_record(store, agent_id, run.n)
            if record.get("pid") and not run.pid:
                run.pid, run.proc_start = record["pid"], record.get("proc_start")
                agent.pid = run.pid
            never_started = not record and (now() - run.started_at).total_seconds() > NEVER_STARTED_AFTER
            if never_started and run.note is None:
                run.note = "never started (orch was stopped while starting it)"
            # Gone means: the supervisor recorded the exit, or both the agent and its
            # supervisor are dead (a zombie waiting for its supervisor is not gone yet).
            ended = "exit_code" in record or nxt is not None or never_started or (
                bool(record.get("pid")) and not is_same_process(record["pid"], record.get("proc_start"))
                and not is_same_process(record.get("supervisor_pid"), record.get("supervisor_start")))
            if ended and "exit_code" not in record:  # a process can exit between two reads
                record = read_run_record(store, agent_id, run.n) or record
            parser = adapter.new_parser(cursor.parser_state)
            _feed(batch, parser, store, run, "stdout", nxt.stdout_start if nxt else None, final=ended)
            _feed(batch, parser, store, run, "stderr", nxt.stderr_start if nxt else None, final=ended)
            side = adapter.side_files(agent.cli_session_id, os.environ)
            for path in side:  # e.g. codex's rollout: read once the run ends
                if ended and path.is_file():
                    _feed_side_file(batch, parser, run, path)
            _scrub_split_secrets(batch, store, run)
            if batch.saw_bytes:
                stamps = [t for t in (_mtime(d / "stdout.jsonl"), _mtime(d / "stderr.log")) if t]
                agent.last_activity_at = max(stamps + [agent.last_activity_at or run.started_at])
            agent.stats.malformed_lines = cursor.closed_malformed + parser.malformed_lines
            if ended:
                _finish_run(batch, store, run, parser, record)
                _scrub_split_secrets(batch, store, run)
                if nxt is None:
                    break
                cursor.run += 1
                cursor.stdout_offset, cursor.stderr_offset = nxt.stdout_start, nxt.stderr_start
                continue
            cursor.parser_state = parser.state()
            if agent.state in LIVE:
                _live_state(batch, silent_after)
            break
        if not batch.events and _signature(agent) == before:
            return [], agent
        agent.stats.last_text = redact_text(agent.stats.last_text)  # once per batch, not per line
        _commit(store, lock, agent, batch.events)
        return batch.events, agent


def _commit(store: SessionStore, lock: AgentLock, agent: Agent, events: list[Event]) -> None:
    """Append the batch and save the meta (with its ingest cursor), exactly once."""
    if not events:
        store.write_agent(agent)
        return
    token = uuid.uuid4().hex
    events[-1].data["ingest"] = token
    meta = agent_bytes(agent)  # serialized once: recorded in the lock, then written
    lock.hold(token, store.events_size(), meta)
    store.append_events(events)
    store.write_agent(agent, meta)
    lock.clear()


def refresh_session(store: SessionStore, silent_after: Optional[float] = None) -> list[Event]:
    """Refresh every agent of the session; returns all events appended."""
    out: list[Event] = []
    for agent_id in store.agent_ids():
        out.extend(refresh_agent(store, agent_id, silent_after))
    return out


def agent_summary(agent: Agent) -> dict[str, Any]:
    """The status of one agent as `orch status --json` prints it."""
    last = agent.last_activity_at
    return redact({
        "id": agent.id, "role": agent.role.value, "cli": agent.cli, "state": agent.state.value,
        "reason": agent.state_reason, "task": agent.current_task, "permission": agent.permission.value,
        "rung": agent.rung, "cli_session_id": agent.cli_session_id, "pid": agent.pid,
        "exit_code": agent.exit_code, "runs": len(agent.runs),
        "last_activity_at": last.isoformat() if last else None,
        "seconds_since_activity": round((now() - last).total_seconds(), 1) if last else None,
        "tool_calls": agent.stats.tool_calls, "files_changed": agent.stats.files_changed,
        "denials": [d.model_dump(mode="json", exclude_none=True) for d in agent.stats.denials],
        "usage": agent.stats.usage.model_dump(mode="json"),
        "malformed_lines": agent.stats.malformed_lines, "errors": agent.stats.errors[-3:],
        "recoveries": agent.recoveries, "pending_action": agent.pending_action.model_dump(mode="json")
        if agent.pending_action else None,
    })
