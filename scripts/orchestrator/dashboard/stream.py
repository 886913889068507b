"""One client's Server-Sent Events stream: where to start, replay from the log, then live.

Message types (every `data:` is one line of JSON):

    event: session   the session snapshot (header, rounds, tasks, blocker ledger)
    event: agent     one agent's card, whenever its meta changes
    id: <offset>
    event: event     one line of events.jsonl; its id is its byte offset
    event: ready     the replay is over; from here on messages are live

Snapshots are sent on connect (and after a catch-up), so a reconnecting page is current
without replaying state changes; events are replayed from the log strictly after the
client's Last-Event-ID, so it misses none and gets none twice. The client subscribes to
the feed before it reads the log, and drops live events below the end of its replay.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, Optional

from ..core.errors import describe_os_error
from ..core.errors import InvalidInput, OrchError
from ..safety.redaction import redact_text
from .feed import READ_BATCH, SessionFeed, Subscriber, sse_frame
from .history import complete_end, offset_after, served_event
from .views import agent_cards, session_view
from ..store.sessions import SessionStore

HEARTBEAT = 15.0  # seconds: a comment line keeps proxies and the browser from timing out
RETRY_MS = 1000  # how long the browser waits before it reconnects

RunBlocking = Callable[..., Awaitable]


def parse_offset(value: Optional[str], what: str) -> Optional[int]:
    """A non-negative integer offset from a header or query parameter, or None when absent."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput(f"{what} must be an event id (a non-negative integer), not {value[:40]!r}")
    return int(value)


def start_offset(store: SessionStore, last_event_id: Optional[int], from_offset: Optional[int]) -> int:
    """Where a stream starts reading the log: after the client's last event, at `from`, or at the end."""
    end = complete_end(store)
    if last_event_id is not None:
        if last_event_id >= end:
            return 0  # no event starts there: the log was replaced, so replay all of it
        return offset_after(store, last_event_id)
    if from_offset is not None:
        return min(from_offset, end)
    return end


def _snapshots(store: SessionStore) -> bytes:
    frames = [sse_frame("session", session_view(store.read_session()))]
    frames += [sse_frame("agent", card) for card in agent_cards(store)]
    return b"".join(frames)


def _replay_chunk(store: SessionStore, pos: int) -> tuple[bytes, int, bool]:
    """Encoded events from pos on (one batch), the offset reached, and whether the log's end was."""
    events, end = store.read_events_to_end(pos, limit=READ_BATCH)
    data = b"".join(sse_frame("event", served_event(o, e), o) for o, e in events)
    return data, end, len(events) < READ_BATCH


class _Position:
    """What this client has been sent: events below `threshold`, and the last live id."""

    def __init__(self, pos: int):
        self.threshold = pos
        self.resume_at = pos  # a line boundary the next catch-up reads from
        self.last_live: Optional[int] = None


async def _replay(store: SessionStore, pos: _Position, run_blocking: RunBlocking) -> AsyncIterator[bytes]:
    if pos.last_live is not None:
        pos.resume_at = await run_blocking(offset_after, store, pos.last_live)
        pos.last_live = None
    while True:
        data, end, finished = await run_blocking(_replay_chunk, store, pos.resume_at)
        pos.resume_at = max(end, pos.resume_at)
        pos.threshold = max(pos.threshold, pos.resume_at)
        if data:
            yield data
        if finished:
            return


def _live(frames, pos: _Position) -> bytes:
    out = []
    for f in frames:
        if f.offset is None:
            out.append(f.data)
        elif f.offset >= pos.threshold:
            out.append(f.data)
            pos.threshold = f.offset + 1
            pos.last_live = f.offset
    return b"".join(out)


async def event_stream(feed: SessionFeed, start: Optional[int], last_event_id: Optional[int],
                       run_blocking: RunBlocking, heartbeat: float = HEARTBEAT) -> AsyncIterator[bytes]:
    """The bytes of one SSE response, until the client goes away."""
    sub: Subscriber = feed.subscribe()
    try:
        async for chunk in _frames(feed, sub, start, last_event_id, run_blocking, heartbeat):
            yield chunk
    except (OrchError, OSError, ValueError) as e:
        # A damaged session.json or events.jsonl: the stream says so in one frame and ends, never a
        # traceback and never a response closed after 0 bytes (the page shows the error).
        message = e.message if isinstance(e, OrchError) else (
            describe_os_error(e) if isinstance(e, OSError) else f"a file of the session could not be read: {e}")
        yield sse_frame("damaged", {"error": redact_text(message.splitlines()[0][:500] if message else "error")})
    finally:
        feed.unsubscribe(sub)


async def _frames(feed: SessionFeed, sub: Subscriber, start: Optional[int], last_event_id: Optional[int],
                  run_blocking: RunBlocking, heartbeat: float) -> AsyncIterator[bytes]:
    """Snapshots, the replay from where the client stands, `ready`, then live frames."""
    store = feed.store
    first = await run_blocking(start_offset, store, last_event_id, start)
    pos = _Position(first)
    yield f"retry: {RETRY_MS}\n\n".encode() + await run_blocking(_snapshots, store)
    async for chunk in _replay(store, pos, run_blocking):
        yield chunk
    yield sse_frame("ready", {"session": store.id, "end": pos.threshold})
    while True:
        if sub.lagging:
            sub.take()
            sub.lagging = False
            yield await run_blocking(_snapshots, store)
            async for chunk in _replay(store, pos, run_blocking):
                yield chunk
            continue
        try:
            await asyncio.wait_for(sub.wake.wait(), heartbeat)
        except asyncio.TimeoutError:
            yield b": keep-alive\n\n"
            continue
        if sub.ended:
            return  # the browser reconnects to the next server with Last-Event-ID
        data = _live(sub.take(), pos)
        if data:
            yield data
