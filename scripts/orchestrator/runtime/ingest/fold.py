"""Folding normalized events into an agent: its stats, its CLI session, the run's verdict so far.

A `Batch` is what one sync of one agent produced, before it is committed: the agent with its
cursor (and the typed run accumulator inside it) updated in memory, and the events to append.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ...adapters import Adapter, StreamParser
from ...core.models import (
    Agent, AgentEvent, AgentEventKind, Denial, Event, EventKind, IngestCursor, LimitNotice, Outcome, Run, Usage, now,
)
from ...safety.redaction import redact_text
from ...store.jsonsafe import clean_value

MAX_RUN_FILES = 200
_TEXT_FIELDS = ("session_id", "text", "tool", "tool_id", "target", "path", "change", "message", "status", "raw_type")


def storable(ev: AgentEvent) -> tuple[AgentEvent, list[str]]:
    """The event with what JSON cannot hold replaced (lone surrogates, NaN, infinities), and
    what was replaced: whatever a CLI prints, the meta and the log must read back."""
    notes: list[str] = []
    updates = {}
    for name in _TEXT_FIELDS:
        value = getattr(ev, name)
        if value is not None and not value.isascii():
            fixed = clean_value(value, notes, name)
            if fixed != value:
                updates[name] = fixed
    if ev.data:
        before = len(notes)
        data = clean_value(ev.data, notes, "data")
        if len(notes) > before:
            updates["data"] = data
    if ev.usage is not None and ev.usage.model_extra and ev.usage.model_extra.get("repaired"):
        notes.append(f"usage: {ev.usage.model_extra['repaired']}")
    return (ev.model_copy(update=updates) if updates else ev), notes


def usage_minus(a: Usage, b: Usage) -> Usage:
    return a.minus(b)


#: A batch this large is committed before the ingest goes on, so that a backlog of a
#: million lines costs the memory of a few thousand events, not of all of them.
FLUSH_EVENTS = 2000


class Batch:
    """What one sync of one agent produced, before it is written."""

    def __init__(self, agent: Agent, adapter: Adapter, folder: Path,
                 flush: Optional[Callable[["Batch"], None]] = None):
        self.agent = agent
        self.cursor: IngestCursor = agent.ingest
        self.adapter = adapter
        self.folder = folder
        self.events: list[Event] = []
        self.saw_bytes = False
        self.parser: StreamParser = None  # type: ignore[assignment]  # the run's, set by sync_agent
        self.flushed = 0  # events already committed by `flush`
        self._flush = flush

    def maybe_flush(self) -> None:
        """Commit what is queued when it has grown large (the cursor says how far it got)."""
        if self._flush is not None and len(self.events) >= FLUSH_EVENTS:
            self.flushed += len(self.events)
            self._flush(self)
            self.events = []

    def fold(self, ev: AgentEvent, run: Run) -> None:
        """Fold one normalized event of `run` into the agent and queue its event-log line."""
        a, c = self.agent, self.cursor
        acc = c.run_acc
        k = ev.kind
        acc.events += 1
        ev, repaired = storable(ev)
        data = ev.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        data["kind"] = k.value
        if repaired:
            data["repaired"] = repaired[:5]
            a.stats.repaired_values += len(repaired)
        data["run"] = run.n
        self.events.append(Event(kind=EventKind.AGENT_OUTPUT, agent=a.id, task=run.task, data=data))
        if k is AgentEventKind.SESSION_STARTED and ev.session_id:
            if ev.session_id != c.thread_id:
                c.thread_id, c.thread_base = ev.session_id, Usage()
            a.cli_session_id = ev.session_id
        elif k is AgentEventKind.TEXT and ev.text:
            a.stats.last_text = ev.text[-500:]
        elif k is AgentEventKind.TOOL_STARTED:
            a.stats.tool_calls += 1
            acc.tool_calls += 1
        elif k is AgentEventKind.FILE_CHANGED and ev.path:
            if ev.path not in acc.files and len(acc.files) < MAX_RUN_FILES:
                acc.files.append(ev.path)  # what this run wrote: a writing task that wrote nothing is not done
            if a.branch is None:  # with a branch, git says what the agent changed
                self._file_changed(ev.path)
        elif k is AgentEventKind.DENIAL:
            self._denial(ev, run)
        elif k is AgentEventKind.USAGE and ev.usage:
            self._usage(ev.usage, ev.usage_cumulative)
        elif k is AgentEventKind.ERROR and ev.message:
            message = redact_text(ev.message[:500])
            acc.errors.append(message)
            a.stats.errors = (a.stats.errors + [message])[-20:]
        elif k is AgentEventKind.STATUS:
            acc.status = ev.status or ev.message
        elif k is AgentEventKind.LIMIT_HIT:
            # One limit per run: the later notice keeps the reset time if the first had none.
            seen = acc.limit
            acc.limit = LimitNotice(hit=True, kind=ev.limit_kind or (seen.kind if seen else None),
                                    scope=ev.limit_scope or (seen.scope if seen else None),
                                    resets_at=ev.resets_at or (seen.resets_at if seen else None),
                                    message=redact_text((ev.message or (seen.message if seen else ""))[:300]))
        elif k is AgentEventKind.UNKNOWN:
            a.stats.unknown_events += 1
        elif k is AgentEventKind.RUN_FINISHED:
            acc.outcome = ev.outcome or Outcome.SUCCESS
            if ev.text is not None:
                acc.final_text = ev.text[-20000:]
            if ev.usage:
                self._usage(ev.usage, ev.usage_cumulative, replace=True)
        if ev.stream in ("stdout", "rollout") and k not in (AgentEventKind.STATUS, AgentEventKind.UNKNOWN):
            acc.output = True  # what the CLI itself said, not what orch inferred at exit

    def _file_changed(self, path: str) -> None:
        """The file as the agent's folder names it: a relative path is the agent's (its CLI runs
        there), never the ingesting process's — the ingest owner runs in the session folder."""
        a = self.agent
        try:
            path = str((Path(a.cwd) / path).resolve().relative_to(Path(a.cwd).resolve()))
        except (ValueError, OSError):
            pass
        if path not in a.stats.files_changed:
            a.stats.files_changed.append(path)

    def _denial(self, ev: AgentEvent, run: Run) -> None:
        """One denial per refused action, however many lines tell of it."""
        a, acc = self.agent, self.cursor.run_acc
        key = ev.tool_id or f"{ev.tool}:{ev.target}"
        if key in acc.denial_keys:
            return
        acc.denial_keys.append(key)
        d = Denial(tool=ev.tool or "unknown", target=redact_text(ev.target) if ev.target else None,
                   message=redact_text((ev.message or "")[:500]), at=now(), run=run.n, tool_id=ev.tool_id)
        a.stats.denials.append(d)
        self.events.append(Event(kind=EventKind.DENIAL, agent=a.id, task=run.task,
                                 reason=f"{d.tool} {d.target or ''}".strip(),
                                 data=d.model_dump(mode="json", exclude_none=True)))

    def _usage(self, u: Usage, cumulative: bool, replace: bool = False) -> None:
        acc, c = self.cursor.run_acc, self.cursor
        if cumulative:
            run_usage = usage_minus(u, c.thread_base)
            acc.cumulative = u
        elif replace:
            run_usage = u
        else:
            run_usage = (acc.usage or Usage()).plus(u)
        acc.usage = run_usage
        self.agent.stats.usage = c.closed_usage.plus(run_usage)
