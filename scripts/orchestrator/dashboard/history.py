"""Pages of a session's event log for the dashboard: forward from an offset, backward from one.

An event's id is its byte offset in events.jsonl, so a page is a byte range and a cursor
is an offset: `from` starts at an event (inclusive), `before` ends just before one. Reading
backward goes chunk by chunk from the end, so the newest page of a 100,000-event log costs
the same as that of a 10-event log. Every event served is redacted again here, because
the server's environment may hold secrets the writer's did not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from pydantic import ValidationError

from ..core.models import Event
from ..safety.redaction import redact
from ..store.sessions import SessionStore

MAX_PAGE = 5000
DEFAULT_PAGE = 500
BACKWARD_CHUNK = 64 << 10
FORWARD_BYTES = 8 << 20  # one forward page reads at most this much of the file


@dataclass
class EventFilter:
    """Which events a page keeps: one agent's, some kinds, or everything."""

    agent: Optional[str] = None
    kinds: frozenset[str] = frozenset()

    def might_keep(self, line: bytes) -> bool:
        """A cheap byte test that rules a raw line out before it is parsed."""
        # Lines are compact JSON written by store.event_line: a byte search rules most out
        # before the (much dearer) model validation.
        return self.agent is None or f'"agent":{json.dumps(self.agent)}'.encode() in line

    def keep(self, event: Event) -> bool:
        if self.agent is not None and event.agent != self.agent:
            return False
        return not self.kinds or event.kind.value in self.kinds


@dataclass
class EventPage:
    events: list[dict[str, Any]] = field(default_factory=list)
    prev: Optional[int] = None  # pass as `before` for the older page; None at the start of the log
    next: int = 0  # pass as `from` for the newer page (the end of what was read)
    end: int = 0  # the end of the log's complete lines when the page was read

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "prev": self.prev, "next": self.next, "end": self.end}


def served_event(offset: int, event: Event) -> dict[str, Any]:
    """An event as the API and the stream serve it: its id first, redacted."""
    fields = event.model_dump(mode="json", exclude_none=True)
    # ts (a datetime) and kind (an EventKind) were validated as such and cannot hold a
    # secret; skipping them saves two of the regex passes that dominate serving an event.
    head = {"id": offset, "ts": fields.pop("ts"), "kind": fields.pop("kind")}
    return head | redact(fields)


def _parse(line: bytes) -> Optional[Event]:
    try:
        return Event.model_validate_json(line)
    except (ValidationError, ValueError):
        return None  # a line torn by a crash in an earlier life


def complete_end(store: SessionStore) -> int:
    """The offset just past the last complete line (a line being written is not there yet)."""
    path = store.events_path
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                start = max(pos - BACKWARD_CHUNK, 0)
                f.seek(start)
                chunk = f.read(pos - start)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    return start + nl + 1
                pos = start
            return 0
    except FileNotFoundError:
        return 0


def _lines_backward(store: SessionStore, before: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the lines that start before `before` (a line boundary), newest first."""
    try:
        f = open(store.events_path, "rb")
    except FileNotFoundError:
        return
    with f:
        pos = before
        carry = b""  # the bytes from pos on of a line that starts before pos
        while pos > 0:
            start = max(pos - BACKWARD_CHUNK, 0)
            f.seek(start)
            parts = (f.read(pos - start) + carry).split(b"\n")
            offsets, o = [], start
            for part in parts:
                offsets.append(o)
                o += len(part) + 1
            # Below `start`, parts[0] may be the cut end of a longer line: finish it next round.
            first = 0 if start == 0 else 1
            for i in range(len(parts) - 1, first - 1, -1):
                if parts[i].strip():
                    yield offsets[i], parts[i]
            carry = parts[0] + b"\n" if start > 0 else b""
            pos = start


def read_page_backward(store: SessionStore, before: Optional[int], limit: int, flt: EventFilter) -> EventPage:
    """Up to `limit` kept events that start before `before` (default: the end), oldest first."""
    end = complete_end(store)
    stop = end if before is None else max(min(before, end), 0)
    found: list[tuple[int, Event]] = []
    more = False
    for offset, line in _lines_backward(store, stop):
        if not flt.might_keep(line):
            continue
        event = _parse(line)
        if event is None or not flt.keep(event):
            continue
        if len(found) == limit:
            more = True
            break
        found.append((offset, event))
    found.reverse()
    page = EventPage(events=[served_event(o, e) for o, e in found], end=end, next=stop)
    page.prev = found[0][0] if found and more else None
    return page


def read_page_forward(store: SessionStore, start: int, limit: int, flt: EventFilter) -> EventPage:
    """Up to `limit` kept events from offset `start` on; `next` continues where this stopped."""
    end = complete_end(store)
    start = max(min(start, end), 0)
    out: list[dict[str, Any]] = []
    pos = start
    try:
        f = open(store.events_path, "rb")
    except FileNotFoundError:
        return EventPage(end=end, next=start, prev=start or None)
    with f:
        f.seek(start)
        while pos < end and len(out) < limit and pos - start < FORWARD_BYTES:
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset, pos = pos, pos + len(line)
            if not line.strip() or not flt.might_keep(line):
                continue
            event = _parse(line)
            if event is not None and flt.keep(event):
                out.append(served_event(offset, event))
    return EventPage(events=out, end=end, next=pos, prev=start or None)


def offset_after(store: SessionStore, event_id: int) -> int:
    """The offset just past the event whose id is event_id (a reconnect resumes there)."""
    try:
        with open(store.events_path, "rb") as f:
            f.seek(event_id)
            line = f.readline()
    except FileNotFoundError:
        return 0
    return event_id + len(line) if line.endswith(b"\n") else event_id
