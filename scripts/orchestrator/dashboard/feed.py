"""The live feed of one session: the session watcher, the ingest, and fan-out to every client.

A feed runs one thread per session, shared by all its stream clients. The observer wakes
it the moment a file in the session folder changes; it then ingests the agents whose raw
output changed (runtime.ingest.sync_agent: the server is what turns an agent's lines into
events while the page is open), reads the new lines of events.jsonl, and notes which
agent or session snapshots changed. Each change is encoded once as an SSE frame and handed
to the event loop, which appends the same bytes to every subscriber: 100 clients cost 100
list appends, not 100 reads or encodings.

Between file events the thread sleeps until the next time-based deadline (an agent
crossing its silence threshold, the liveness check of a process whose supervisor died),
with the same SessionWatcher and deadline as `orch wait` (runtime/watch.py); with no live
agent it sleeps until a file changes.

A subscriber that falls too far behind is not buffered without bound: it is marked
lagging and catches up from the file by offset, which is always possible because an
event's id is its offset.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..store.jsonsafe import dumps_text
from ..core.errors import OrchError
from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import Agent
from ..notify.consumer import notify_new_events
from ..runtime.ingest import silent_after_default, sync_agent
from .history import complete_end, served_event
from .views import agent_card, session_view
from ..store.sessions import SessionStore, Workspace
from ..runtime.watch import SessionWatcher, silence_deadline

log = logging.getLogger("orch.server")

MAX_PENDING = 5000  # frames queued for one subscriber before it must catch up from the file
READ_BATCH = 2000  # events read from the log per publish, so one huge burst streams in pieces
RAW_FILES = ("stdout.jsonl", "stderr.log")


def sse_frame(event: str, data: Any, event_id: Optional[int] = None) -> bytes:
    """One Server-Sent Events message; data is one line of compact JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = dumps_text(data, compact=True)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


@dataclass
class Frame:
    """A message ready to send: events carry their offset, snapshots do not."""

    data: bytes
    offset: Optional[int] = None


@dataclass(eq=False)  # compared by identity: subscribers live in a set
class Subscriber:
    """One stream client's inbox, filled on the event loop by the feed."""

    pending: list[Frame] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagging: bool = False
    ended: bool = False  # the server is stopping: the stream ends cleanly

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def push(self, frames: list[Frame]) -> None:
        if self.lagging:
            return
        if len(self.pending) + len(frames) > MAX_PENDING:
            self.lagging = True  # it will re-read the file from where it stands
            self.pending.clear()
        else:
            self.pending.extend(frames)
        self.wake.set()

    def take(self) -> list[Frame]:
        frames, self.pending = self.pending, []
        self.wake.clear()
        return frames


class SessionFeed:
    """Watches one session, ingests, and publishes frames to its subscribers."""

    def __init__(self, store: SessionStore, loop: asyncio.AbstractEventLoop, silent_after: Optional[float] = None):
        self.store = store
        self.loop = loop
        self.silent_after = silent_after_default() if silent_after is None else silent_after
        self.subscribers: set[Subscriber] = set()
        self.offset = 0  # how far events.jsonl has been published
        self.catch_ups = 0  # subscribers sent back to the file for falling behind
        self.wakeups = 0  # cycles run: file events and deadlines (a busy loop would show here)
        self._agents: dict[str, Agent] = {}
        self._cards: dict[str, bytes] = {}
        self._session: bytes = b""
        self._watcher = SessionWatcher(store)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"orch-feed-{store.id}", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Ingest what is pending, then watch; returns once the feed is live."""
        self._watcher.start()
        try:
            # Ingest before the first client reads anything, so the first page is current.
            for agent_id in self.store.agent_ids():
                self._refresh(agent_id)
            self.offset = complete_end(self.store)
            self._snapshot_agents(self.store.agent_ids())
            self._snapshot_session()
        except BaseException:  # a damaged session file: no feed, and no watcher left behind
            self._watcher.stop()
            self._watcher.join(timeout=2)
            raise
        self._thread.start()

    def stop(self) -> None:
        """Ask the observer and the thread to end (see join)."""
        self._stop.set()
        self._watcher.stop()

    def join(self) -> None:
        self._watcher.join(timeout=2)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ subscribers (event loop only)
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _fan_out(self, frames: list[Frame]) -> None:
        for sub in tuple(self.subscribers):
            was_lagging = sub.lagging
            sub.push(frames)
            if sub.lagging and not was_lagging:
                self.catch_ups += 1

    def _publish(self, frames: list[Frame]) -> None:
        if frames and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._fan_out, frames)
            except RuntimeError:
                pass  # the loop closed while the server was shutting down

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._watcher.sleep(silence_deadline(self._agents.values(), self.silent_after))
            if self._stop.is_set():
                return
            self.wakeups += 1
            try:
                self._cycle(self._watcher.drain(), timed_out=not woke)
            except Exception:  # one bad file must not end the feed every client depends on
                log.exception("dashboard feed of session %s", self.store.id)

    def _cycle(self, paths: set[str], timed_out: bool) -> None:
        raw, metas, session_changed = _classify(paths)
        if timed_out:
            raw |= {a.id for a in self._agents.values() if a.state in LIVE_AGENT_STATES}
            raw |= set(self.store.agent_ids()) - set(self._agents)
        for agent_id in sorted(raw):
            self._refresh(agent_id)
        frames = self._read_events()
        if frames:  # the log grew (its ingest, a step, an action): tell a person what calls for it
            notify_new_events(self.store)
        frames += self._snapshot_agents(sorted(metas | raw))  # unchanged cards are not re-sent
        if session_changed:
            frames += self._snapshot_session()
        self._publish(frames)

    def _refresh(self, agent_id: str) -> None:
        """Ingest one agent's new output (its events land in events.jsonl, read next)."""
        try:
            sync_agent(self.store, agent_id, self.silent_after)
        except (OrchError, OSError, ValueError) as e:
            log.warning("ingest of %s/%s: %s", self.store.id, agent_id, e)

    def _read_events(self) -> list[Frame]:
        frames: list[Frame] = []
        while True:
            events, end = self.store.read_events_to_end(self.offset, limit=READ_BATCH)
            frames += [Frame(sse_frame("event", served_event(o, e), o), o) for o, e in events]
            if end == self.offset:
                return frames
            self.offset = end
            if len(events) < READ_BATCH:
                return frames
            self._publish(frames)
            frames = []

    def _snapshot_agents(self, agent_ids: list[str]) -> list[Frame]:
        frames = []
        for agent_id in agent_ids:
            try:
                agent = self.store.read_agent(agent_id)
            except (OrchError, OSError):
                continue  # being created, or damaged: the next change will tell
            self._agents[agent_id] = agent
            frame = sse_frame("agent", agent_card(agent))
            if self._cards.get(agent_id) != frame:
                self._cards[agent_id] = frame
                frames.append(Frame(frame))
        return frames

    def _snapshot_session(self) -> list[Frame]:
        try:
            frame = sse_frame("session", session_view(self.store.read_session()))
        except (OrchError, OSError):
            return []
        if frame == self._session:
            return []
        self._session = frame
        return [Frame(frame)]


def _classify(paths: set[str]) -> tuple[set[str], set[str], bool]:
    """Split changed paths (relative to the session folder) into what each one calls for."""
    raw: set[str] = set()
    metas: set[str] = set()
    session_changed = False
    for rel in paths:
        parts = rel.split("/")
        if parts == ["session.json"]:
            session_changed = True
        elif len(parts) == 3 and parts[0] == "agents":
            agent_id, name = parts[1], parts[2]
            if name in RAW_FILES or (name.startswith("run-") and name.endswith(".json")):
                raw.add(agent_id)  # new output, or a supervisor recorded a start or an exit
            elif name == "meta.json":
                metas.add(agent_id)
    return raw, metas, session_changed


class FeedRegistry:
    """One feed per session, started on first use and kept for the server's life."""

    def __init__(self, workspace: Workspace, silent_after: Optional[float] = None):
        self.workspace = workspace
        self.silent_after = silent_after
        self._feeds: dict[str, SessionFeed] = {}
        self._starting: dict[str, asyncio.Future] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    async def feed_for(self, session_id: str, run_blocking: Callable) -> SessionFeed:
        """The session's feed, started if needed (the start's ingest runs off the event loop)."""
        feed = self._feeds.get(session_id)
        if feed is not None:
            return feed
        pending = self._starting.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._starting[session_id] = fut
        try:
            store = self.workspace.open(session_id)
            feed = SessionFeed(store, loop, self.silent_after)
            await run_blocking(feed.start)
            self._feeds[session_id] = feed
            fut.set_result(feed)
            return feed
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._starting.pop(session_id, None)

    def stats(self) -> dict[str, Any]:
        feeds = self._feeds.values()
        return {"feeds": len(feeds), "clients": sum(len(f.subscribers) for f in feeds),
                "catch_ups": sum(f.catch_ups for f in feeds), "wakeups": sum(f.wakeups for f in feeds)}

    def end_streams_soon(self) -> None:
        """Ask every open stream to finish (safe from a signal handler or another thread).

        Streams never end by themselves; without this a stopping server would wait out its
        grace period and then cancel them mid-response."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        for feed in self._feeds.values():
            for sub in tuple(feed.subscribers):
                sub.end()

    def close(self) -> None:
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:  # all asked first, then waited for: a watchdog observer takes up to 1 s
            feed.stop()
        for feed in feeds:
            feed.join()
