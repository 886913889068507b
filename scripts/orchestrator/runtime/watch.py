"""Block until something worth acting on happens in a session (`orch wait`).

A watchdog observer (inotify on Linux) wakes the waiter the moment an agent writes a byte
or a supervisor records an exit; between file events the waiter sleeps until the next
time-based deadline (an agent crossing its silence threshold, an idle agent to report, a
liveness check for processes whose supervisor was killed) — never a fixed polling loop.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any, Iterable, Optional

from watchdog.events import (
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler,
)
from watchdog.observers import Observer

from ..core.models import Agent, AgentState, Event, EventKind, WaitCursor, now
from ..views.digest import build_digest, describe
from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from .ingest import sync_agent
from .procs import is_same_process
from ..core.errors import CorruptFile
from ..store.sessions import SessionStore, report_damaged
from .quiet import quiet_verdict
from .stall import silence_threshold

logging.getLogger("watchdog").setLevel(logging.CRITICAL)  # its shutdown chatter is not ours to print

LIVENESS_CHECK = 2.0  # seconds: catches a process whose supervisor died (no file event)
STREAM_REFRESH = 2.0  # seconds: how stale plain progress output may get under load
COALESCE = 0.015  # seconds: a wake handles every write of a burst, not one wake per line
MAX_HAPPENED = 200  # lines of a digest's "what happened"; the rest is counted
PEEK_LIMIT = 1 << 20
URGENT = re.compile(
    rb"denied|denial|permission|approval|not.registered|not found|rejected|read-only|policy_violation|"
    rb"error|fail|quota|rate.limit|\"result\"|turn\.completed|thread\.started|\"init\"|\"subtype\":\"init\"|"
    rb"exceeded|exhausted|compact", re.I)

MEANINGFUL_STATES = {
    AgentState.SILENT.value, AgentState.IDLE.value, AgentState.DENIED.value, AgentState.FAILED.value,
    AgentState.BLOCKED_BY_POLICY.value, AgentState.ABORTED.value, AgentState.DONE.value, AgentState.PARKED.value,
}
MEANINGFUL_KINDS = {
    EventKind.AGENT_EXITED, EventKind.AGENT_ABORTED, EventKind.DENIAL, EventKind.POLICY_BLOCKED,
    EventKind.BLOCKER_FILED, EventKind.BLOCKER_STATE, EventKind.REVIEW_RECORDED, EventKind.SESSION_STATE,
    EventKind.TASK_FINISHED, EventKind.ROUND_CLOSED, EventKind.AGENT_LAUNCHED, EventKind.RECOVERY,
    EventKind.AGENT_PARKED,
    EventKind.BUDGET_WARNING, EventKind.BUDGET_REACHED,
}


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


class SessionWatcher:
    """The one watcher of a session folder, used by `orch wait`, `logs --follow`, `monitor` and
    the dashboard's feed: a watchdog observer (inotify) that collects which files changed and
    wakes whoever sleeps on it. As a context manager it starts and stops with the block."""

    def __init__(self, store: SessionStore):
        self.store = store
        self._changes = _Changes(str(store.path))
        self.flag = self._changes.flag
        self.observer = Observer()
        self._started = False

    def start(self) -> "SessionWatcher":
        # Only writes, creations, moves and deletions: asking the kernel for opens and
        # closes too would wake watchdog for every read orch itself makes.
        self.observer.schedule(self._changes, str(self.store.path), recursive=True,
                               event_filter=[FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent])
        self.observer.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop watching and wake any sleeper (see join)."""
        self.flag.set()
        if self._started:
            self.observer.stop()

    def join(self, timeout: float = 2.0) -> None:
        if self._started:
            self.observer.join(timeout=timeout)

    def __enter__(self) -> "SessionWatcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        # Stop, but do not wait for watchdog's threads to wind down (up to its 1 s read
        # timeout): they are daemons, and a waiting conductor should get its answer now.
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

    def _urgent_bytes(self, agent_id: str) -> bool:
        found = False
        folder = os.path.join(self.agents_dir, agent_id)
        for name in ("stdout.jsonl", "stderr.log"):
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
                found = found or bool(URGENT.search(f.read(size - start)))
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


def is_meaningful(event: Event) -> bool:
    """Events that should end an `orch wait`: exits, denials, state changes worth a decision."""
    if event.kind in MEANINGFUL_KINDS:
        return True
    if event.kind is EventKind.AGENT_STATE:
        return event.data.get("to") in MEANINGFUL_STATES
    if event.kind is EventKind.AGENT_OUTPUT:
        return event.data.get("kind") in ("denial", "error")
    return False


def _idle_alerts(agents: list[Agent], cursor: WaitCursor, idle_after: float) -> tuple[list[str], Optional[float]]:
    """Agents idle for idle_after seconds not yet reported, and seconds until the next one is due."""
    alerts, soonest = [], None
    for agent in agents:
        if agent.state is not AgentState.IDLE:
            continue
        since = agent.state_since.isoformat()
        if cursor.idle_reported.get(agent.id) == since:
            continue
        waited = (now() - agent.state_since).total_seconds()
        if waited >= idle_after:
            alerts.append(f"{agent.id} has been idle for {int(waited)} s with nothing assigned")
            cursor.idle_reported[agent.id] = since
        else:
            due = idle_after - waited
            soonest = due if soonest is None else min(soonest, due)
    return alerts, soonest


def _parked_alerts(agents: list[Agent]) -> tuple[list[str], Optional[float]]:
    """Parked agents whose limit has reset (the conductor should step), and seconds until the next one."""
    alerts, soonest = [], None
    at = now()
    for agent in agents:
        if agent.state is not AgentState.PARKED or agent.resume_at is None:
            continue
        left = (agent.resume_at - at).total_seconds()
        if left <= 0:
            alerts.append(f"{agent.id}'s usage limit has reset: `orch step` resumes it in the same CLI session")
        else:
            soonest = left if soonest is None else min(soonest, left)
    return alerts, soonest


def _silence_reached(agents, silent_after: float) -> set[str]:
    """Live agents whose quiet has just crossed the threshold: ingesting them marks them silent."""
    out = set()
    for agent in agents:
        if agent.state in (AgentState.STARTING, AgentState.RUNNING) and agent.last_activity_at \
                and (now() - agent.last_activity_at).total_seconds() >= silent_after:
            out.add(agent.id)
    return out


def wait_for_change(
    store: SessionStore, timeout: float = 60.0, idle_after: float = 30.0, silent_after: Optional[float] = None,
    any_event: bool = False, ready: Optional[threading.Event] = None,
) -> dict[str, Any]:
    """Block until a meaningful event (or the timeout); return a digest since the previous wait."""
    silent_after = silence_threshold(store) if silent_after is None else silent_after
    started = time.monotonic()
    cursor = store.read_wait_cursor()
    before = (cursor.events_offset, dict(cursor.idle_reported))
    since_offset = cursor.events_offset
    if since_offset > store.events_size():
        since_offset = 0
    triggers: list[str] = []
    counts: dict[str, int] = {}  # kinds of the events seen, not the events: a backlog costs no memory
    hits: list[str] = []
    more_hits = 0
    end = since_offset
    with SessionWatcher(store) as watcher:
        full_at = 0.0
        known: dict[str, Agent] = {}
        throttle = StreamThrottle(store)
        while True:
            # Only agents whose files changed are re-read; everyone is re-checked now and
            # then, for processes that die without a file event (their supervisor killed).
            if not full_at:
                watcher.take_dirty()
                known = throttle.catch_up(silent_after)
                full_at = time.monotonic()
            else:
                due = _silence_reached(known.values(), silent_after)
                if time.monotonic() - full_at >= LIVENESS_CHECK:
                    # a process whose supervisor was killed dies without a file event
                    due |= {a.id for a in known.values() if a.state in LIVE and a.runs
                            and not is_same_process(a.runs[-1].pid, a.runs[-1].proc_start)}
                    full_at = time.monotonic()
                dirty, urgent = watcher.take_dirty()
                chosen = dirty | urgent if any_event else throttle.choose(dirty, urgent)
                for agent_id in sorted(chosen | due):
                    if (store.path / "agents" / agent_id / "meta.json").is_file():
                        try:
                            known[agent_id] = sync_agent(store, agent_id, silent_after)[1]
                        except CorruptFile as e:
                            report_damaged(e)
            if ready is not None:
                ready.set()
            agents = list(known.values())
            scan = store.scan_events(end)
            for _, e in scan:
                counts[e.kind.value] = counts.get(e.kind.value, 0) + 1
                if any_event or is_meaningful(e):
                    if len(hits) < MAX_HAPPENED:
                        hits.append(describe(e))
                    else:
                        more_hits += 1
            end = scan.end
            idle, idle_due = _idle_alerts(agents, cursor, idle_after)
            resumable, parked_due = _parked_alerts(agents)
            triggers = hits + ([f"… and {more_hits} more"] if more_hits else []) + idle + resumable
            remaining = timeout - (time.monotonic() - started)
            if triggers or remaining <= 0:
                break
            if not any(a.state in LIVE for a in agents) and _session_over(store):
                triggers = ["the session has ended"]
                break
            retry_due = None
            if not any_event and not any(a.state in LIVE for a in agents):
                why, retry_due = quiet_verdict(store, agents)  # waiting longer cannot help
                if why:
                    triggers = [why]
                    break
            waits = [remaining, max(LIVENESS_CHECK - (time.monotonic() - full_at), 0.05)]
            if retry_due is not None:
                waits.append(retry_due + 0.01)
            for due in (idle_due, parked_due, silence_deadline(agents, silent_after), throttle.next_due()):
                if due is not None:
                    waits.append(due)
            if watcher.sleep(min(waits)) and not any_event and not watcher.exit_pending():
                time.sleep(COALESCE)  # let a burst of writes land: one pass handles them all
    cursor.events_offset = end
    if (cursor.events_offset, cursor.idle_reported) != before:  # nothing new: nothing written
        cursor.at = now()
        store.write_wait_cursor(cursor)
    return build_digest(store, counts, triggers, time.monotonic() - started, timed_out=not triggers)


def _session_over(store: SessionStore) -> bool:
    return store.read_session().state.value in ("complete", "aborted")
