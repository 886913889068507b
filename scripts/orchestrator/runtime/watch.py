"""Watch a session folder: wake whoever waits on it the moment a file in it changes.

A watchdog observer (inotify on Linux) wakes the waiter the moment an agent writes a byte
or a supervisor records an exit (`orch wait`'s loop is engine/wait.py). `StreamThrottle`
decides which changed agents to ingest now and which may wait a moment; `silence_deadline`
is when a live agent needs a look without any file changing.

One observer per process, started with the first watcher and stopped and joined at exit:
every SessionWatcher (each `orch wait` pass of the autopilot, `logs -f`, `monitor`, every
session the dashboard feeds) adds a watch to it and removes it when done, so a process
holds one inotify instance however many waits it makes. When the kernel refuses one, the
error names the limit and the fix.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any, Callable, Iterable, Optional

from watchdog.events import (
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from ..adapters.base import URGENT_WORDS
from ..core.errors import CorruptFile, OrchError, WatchRefused
from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..core.models import Agent, AgentState, now
from ..store.sessions import SessionStore, report_damaged
from .ingest import sync_agent
from .inotify import refused_message
from .runs import adapter_for

logging.getLogger("watchdog").setLevel(logging.CRITICAL)  # its shutdown chatter is not ours to print

LIVENESS_CHECK = 2.0  # seconds: catches a process whose supervisor died (no file event)
STREAM_REFRESH = 2.0  # seconds: how stale plain progress output may get under load
COALESCE = 0.015  # seconds: a wake handles every write of a burst, not one wake per line
PEEK_LIMIT = 1 << 20

def changed_path(event: FileSystemEvent) -> str:
    """The file a watchdog event is about (the destination of a rename: atomic writes end there)."""
    return str(getattr(event, "dest_path", "") or event.src_path)


def wakes_watchers(event: FileSystemEvent) -> bool:
    """True for a write worth waking a watcher; reads, locks, temp files and folder echoes are not."""
    name = changed_path(event).rsplit("/", 1)[-1]
    return not (event.is_directory or name.startswith(".") or event.event_type in ("opened", "closed_no_write"))


class _Changes(FileSystemEventHandler):
    """Collects the session-relative paths of meaningful writes and sets the wake flag."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") + "/"
        self.flag = threading.Event()
        self.lock = threading.Lock()
        self.paths: set[str] = set()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not wakes_watchers(event):
            return
        path = changed_path(event)
        if path.startswith(self.root):
            with self.lock:
                self.paths.add(path[len(self.root):])
        self.flag.set()


WATCH_EVENTS = [FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent]
#: What a waiter that leaves the ingest to the session's owner needs to see: the session
#: folder's files replaced or created (the bell, session.json) — no appends, no agent folder.
BATCH_EVENTS = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent]
ALL, BATCHES = "all", "batches"
_lock = threading.Lock()
_observer: Optional[Any] = None  # the process's one observer (one inotify instance), made on first use
_watches: dict[tuple[str, str], tuple[ObservedWatch, int]] = {}  # (folder, scope) -> (its watch, watchers using it)
_at_exit: list = []


def _process_observer() -> Any:
    global _observer
    if _observer is None:
        observer = Observer()
        observer.start()
        _observer = observer
        if not _at_exit:
            _at_exit.append(stop_watching)
            atexit.register(stop_watching)
    return _observer


def stop_watching() -> None:
    """Stop and join the process's observer, closing its inotify instance (at exit; a later
    watcher starts a new one)."""
    global _observer
    with _lock:
        observer, _observer = _observer, None
        _watches.clear()
    if observer is not None:
        observer.stop()
        if observer is not threading.current_thread():
            observer.join(timeout=5)


class SessionWatcher:
    """A watch on one session folder, used by `orch wait`, `logs --follow`, `monitor`, the
    autopilot (one for its whole run) and the dashboard's feed: it collects which files
    changed and wakes whoever sleeps on it. It lives on the process's one observer; as a
    context manager it starts and stops with the block.

    Its scope is ALL (every write anywhere in the session folder: an agent's every line) or
    BATCHES (only files replaced or created in the session folder itself — the bell the
    ingest rings after a batch a waiter acts on, session.json): a waiter whose ingest the
    session's owner does is woken by the owner's batches, never by an agent's bytes."""

    def __init__(self, store: SessionStore, scope: str = ALL):
        self.store = store
        self.scope = scope
        self._changes = _Changes(str(store.path))
        self.flag = self._changes.flag
        self._watch: Optional[ObservedWatch] = None

    def start(self) -> "SessionWatcher":
        """Watch writes, creations, moves and deletions (asking the kernel for opens and closes
        too would wake watchdog for every read orch itself makes). WatchRefused when the kernel
        refuses."""
        if self._watch is not None:
            return self
        folder = str(self.store.path)
        key = (folder, self.scope)
        with _lock:
            try:
                observer = _process_observer()
                held = _watches.get(key)
                if held is None:
                    if self.scope == BATCHES:
                        watch = observer.schedule(self._changes, folder, recursive=False, event_filter=BATCH_EVENTS)
                    else:
                        watch = observer.schedule(self._changes, folder, recursive=True, event_filter=WATCH_EVENTS)
                    _watches[key] = (watch, 1)
                else:
                    watch = held[0]
                    observer.add_handler_for_watch(self._changes, watch)
                    _watches[key] = (watch, held[1] + 1)
            except OSError as e:
                raise WatchRefused(refused_message(e, folder)) from None
        self._watch = watch
        return self

    def set_scope(self, scope: str) -> None:
        """Watch ALL writes or only BATCHES from now on (a change of scope wakes the sleeper)."""
        if scope == self.scope:
            return
        running = self._watch is not None
        if running:
            self.stop()
        self.scope = scope
        if running:
            self.start()

    def stop(self) -> None:
        """Stop watching and wake any sleeper; the process's observer stays for the next watcher."""
        self.flag.set()
        watch, self._watch = self._watch, None
        if watch is None:
            return
        key = (str(self.store.path), self.scope)
        with _lock:
            held = _watches.get(key)
            if _observer is None or held is None or held[0] != watch:
                return  # stop_watching already ended it
            try:
                if held[1] > 1:
                    _observer.remove_handler_for_watch(self._changes, watch)
                    _watches[key] = (watch, held[1] - 1)
                else:
                    del _watches[key]
                    _observer.unschedule(watch)
            except (KeyError, OSError):
                pass  # the folder is gone: so is its watch

    def join(self, timeout: float = 2.0) -> None:
        """Nothing to wait for: the observer is the process's, stopped and joined at exit."""

    def __enter__(self) -> "SessionWatcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def exit_pending(self) -> bool:
        """True when a supervisor recorded a start or an exit since the last drain (no coalescing then)."""
        with self._changes.lock:
            return any(p.startswith("agents/") and p.rsplit("/", 1)[-1].startswith("run-") for p in self._changes.paths)

    def wake(self) -> None:
        self.flag.set()

    def sleep(self, seconds: Optional[float]) -> bool:
        """Sleep until a file changes or `seconds` pass (None: until a change); True when woken."""
        woke = self.flag.wait(None if seconds is None else max(seconds, 0.0))
        self.flag.clear()
        return woke

    def drain(self) -> set[str]:
        """Session-relative paths written since the last call."""
        with self._changes.lock:
            paths, self._changes.paths = self._changes.paths, set()
        return paths

    def take_dirty(self) -> tuple[set[str], set[str]]:
        """Agents whose files changed since the last call, and those whose run record did."""
        dirty: set[str] = set()
        urgent: set[str] = set()
        for rel in self.drain():
            parts = rel.split("/")
            if len(parts) != 3 or parts[0] != "agents" or parts[2] == "meta.json":
                continue  # meta.json is our own bookkeeping, not something an agent did
            dirty.add(parts[1])
            if parts[2].startswith("run-"):
                urgent.add(parts[1])  # a supervisor recorded a start or an exit
        return dirty, urgent


def silence_deadline(agents: Iterable[Agent], silent_after: float) -> Optional[float]:
    """Seconds until the next live agent needs a look without any file changing; None: none live.

    The liveness check catches a process whose supervisor died (no file event); an agent
    already past its threshold (silent, or compacting with a longer grace) is left to it:
    waking at once again would be a busy loop.
    """
    live = [a for a in agents if a.state in LIVE]
    if not live:
        return None
    due = [LIVENESS_CHECK]
    for a in live:
        if a.last_activity_at is not None and a.state is not AgentState.SILENT:
            left = silent_after - (now() - a.last_activity_at).total_seconds()
            if left > 0:
                due.append(left)
    return max(min(due), 0.01)


class StreamThrottle:
    """Decides which changed agents to ingest now.

    A line that could change what the conductor does (a denial, an error, a result, a
    session id) is ingested at once; plain progress (text, tool calls) from an agent that
    was ingested less than STREAM_REFRESH seconds ago waits for that deadline. A peek at
    the new bytes costs a read and a C-speed regex; an ingest costs a parse, a write of
    the meta and an append: with a hundred agents streaming, that difference is the CPU.
    """

    def __init__(self, store: SessionStore):
        self.store = store
        self.agents_dir = str(store.path / "agents")
        self.peeked: dict[tuple[str, str], int] = {}
        self.last: dict[str, float] = {}
        self.deferred: set[str] = set()
        self.adapters: dict[str, Any] = {}  # agent id -> its adapter (whose urgent_bytes says)

    def _urgent_test(self, agent_id: str) -> Callable[[str, bytes], bool]:
        adapter = self.adapters.get(agent_id)
        if adapter is None:
            return lambda stream, data: URGENT_WORDS.search(data) is not None
        return adapter.urgent_bytes

    def _urgent_bytes(self, agent_id: str) -> bool:
        found = False
        urgent = self._urgent_test(agent_id)
        folder = os.path.join(self.agents_dir, agent_id)
        for name, stream in (("stdout.jsonl", "stdout"), ("stderr.log", "stderr")):
            path = os.path.join(folder, name)
            key = (agent_id, name)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            start = self.peeked.get(key, 0)
            if size <= start:
                self.peeked[key] = size
                continue
            start = max(start, size - PEEK_LIMIT)
            with open(path, "rb") as f:
                f.seek(start)
                found = found or urgent(stream, f.read(size - start))
            self.peeked[key] = size
        return found

    def catch_up(self, silent_after: float) -> dict[str, Agent]:
        """Bring every agent up to date when a wait starts, deferring (as choose would) a
        live agent whose only news is progress and whose last ingest is recent."""
        known: dict[str, Agent] = {}
        now_wall, now_mono = time.time(), time.monotonic()
        for agent_id in self.store.agent_ids():
            folder = os.path.join(self.agents_dir, agent_id)
            try:
                agent = self.store.read_agent(agent_id)
            except CorruptFile as e:  # skipped, not fatal: the others are still watched
                report_damaged(e)
                continue
            self._remember(agent)
            try:
                ingested = os.stat(os.path.join(folder, "meta.json")).st_mtime
                record = os.stat(os.path.join(folder, f"run-{len(agent.runs)}.json")).st_mtime if agent.runs else 0
            except FileNotFoundError:
                ingested = record = 0
            c = agent.ingest
            fresh = agent.state in LIVE and c.run == len(agent.runs) and record <= ingested \
                and now_wall - ingested < STREAM_REFRESH
            if fresh:
                self.peeked[(agent_id, "stdout.jsonl")] = c.stdout_offset
                self.peeked[(agent_id, "stderr.log")] = c.stderr_offset
                fresh = not self._urgent_bytes(agent_id)
            if fresh:
                known[agent_id] = agent
                self.deferred.add(agent_id)
                self.last[agent_id] = now_mono - (now_wall - ingested)
            else:
                known[agent_id] = sync_agent(self.store, agent_id, silent_after)[1]
                self.last[agent_id] = now_mono
        return known

    def _remember(self, agent: Agent) -> None:
        if agent.id not in self.adapters:
            try:
                self.adapters[agent.id] = adapter_for(agent)
            except OrchError:
                pass  # an unknown CLI: the generic words decide

    def choose(self, dirty: set[str], urgent: set[str]) -> set[str]:
        """The agents to ingest now; the rest are kept for their deadline."""
        now = time.monotonic()
        chosen = set(urgent)
        for agent_id in dirty | self.deferred:
            if agent_id in chosen:
                continue
            if now - self.last.get(agent_id, 0.0) >= STREAM_REFRESH:
                chosen.add(agent_id)
            elif agent_id in dirty and self._urgent_bytes(agent_id):  # only new bytes are peeked
                chosen.add(agent_id)
        self.deferred = (dirty | self.deferred) - chosen
        for agent_id in chosen:
            self.last[agent_id] = now
        return chosen

    def next_due(self) -> Optional[float]:
        if not self.deferred:
            return None
        now = time.monotonic()
        return max(min(self.last.get(a, 0.0) + STREAM_REFRESH - now for a in self.deferred), 0.0)
