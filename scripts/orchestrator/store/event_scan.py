"""The event log read as a stream: one event at a time from a byte offset, all or one agent's (or some kinds).

Readers that look at a whole log (`orch logs`, `orch wait`, the report) go through it so
that their memory stays that of one event, however long the log has grown. A line of
another agent (or of another kind) is ruled out by a byte test before it is parsed (lines are compact JSON,
written by store.sessions.event_line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, Optional

from pydantic import ValidationError

from ..core.models import Event


class EventScan:
    """Iterate (offset, event) from `offset` on; `end` is the offset just past the last complete line read."""

    def __init__(self, path: Path, offset: int = 0, agent: Optional[str] = None, limit: Optional[int] = None,
                 kinds: Optional[Iterable[str]] = None):
        self.path = path
        self.end = offset
        self.agent = agent
        self.limit = limit
        self.kinds = None if kinds is None else [f'"kind":{json.dumps(k)}'.encode() for k in kinds]

    def __iter__(self) -> Iterator[tuple[int, Event]]:
        needle = f'"agent":{json.dumps(self.agent)}'.encode() if self.agent is not None else None
        kinds = self.kinds
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        count = 0
        with f:
            f.seek(self.end)
            for line in f:
                if not line.endswith(b"\n"):
                    return  # a line being written: the next scan reads it
                start = self.end
                self.end += len(line)
                if (needle is not None and needle not in line) or not line.strip():
                    continue
                if kinds is not None and not any(k in line for k in kinds):
                    continue
                try:
                    event = Event.model_validate_json(line)
                except (ValidationError, ValueError):
                    continue  # a line torn by a crash in an earlier life
                if self.agent is not None and event.agent != self.agent:
                    continue
                yield start, event
                count += 1
                if self.limit is not None and count >= self.limit:
                    return
