"""The session's ingest owner: one small process per session that turns the agents' raw
output into events and state while any agent is live.

    python -m orchestrator.runtime.ingest.daemon SESSION_DIR

Started by the first launch or resume, and by any command that finds it gone while an agent
is live (runtime/owner.py); elected by an exclusive flock on the session's `.ingest.lock` —
a second starter exits at once, or, when the holder is on its way out (`ending`), waits
for it and takes over. It records itself in `ingest.json` (pid and start time, as a run's
supervisor does), holds one inotify instance (runtime/inotify.py) that watches each
agent's folder (files created or renamed into it: run records, meta.json) and its two raw
files (appends), and syncs each agent with `sync.sync_agent` — the same code and the same
exactly-once commit as any command's sync:

- plain progress at most once per batch window (`ORCH_INGEST_WINDOW`, 0.25 s): one append
  to events.jsonl and one meta.json write per agent per window, however many lines came;
- at once when new bytes may hold something the conductor acts on (the adapter's
  `urgent_bytes`: a refusal, an error, a limit, a result), when a supervisor records a
  start or an exit, when another process rewrote the agent's meta.json (a launch, a
  resume, an abort);
- on the clock: a live agent whose process died without a record (checked every
  LIVENESS_CHECK seconds), one reaching its silence threshold.

It exits when nothing is live and nothing is pending. A SIGKILL at any moment loses
nothing: the next holder of an agent's lock settles a half-committed batch (AgentLock),
and the next owner, or any command, reads on from the cursor on disk. What it keeps in
memory between batches is what it wrote (runtime/ingest/resident.py): redacted, never a
raw line or a parser's working state.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Optional

from ...core.errors import CorruptFile, NotFound, OrchError, WatchRefused
from ...core.lifecycle import LIVE_AGENT_STATES, move
from ...core.models import Agent, AgentState, IngestOwner, OwnerLimits, OwnerState, now
from ...safety.redaction import redact_text
from ...store.paths import agent_ids
from ...store.sessions import SessionStore, atomic_write_model
from .. import inotify
from ..owner import (
    LOCK, RECORD, anything_live, host_name, ingest_window, limit_settings, owner_wanted, policy_stamp, stored_agents,
)
from ..procs import is_same_process, proc_start_time
from ..runs import adapter_for
from .resident import Resident
from .sync import COMPACTING_GRACE, sync_agent

LIVENESS_CHECK = 2.0  # seconds: a process that died with its supervisor leaves no file event
#: Plain progress is committed at most this many agent-batches a second in all: with many agents
#: streaming, each one's window stretches (20 agents: 4 s, 100 agents: 20 s) instead of the
#: owner's CPU growing. A batch's fixed cost (the lock, the meta write, the append) is most of
#: what a line of plain progress costs: with 100 agents at 1 line/s, 10 batches a second cost the
#: owner 4.4 % of a core and 5 cost 2.7 % (alternating 30-s runs). What the conductor acts on
#: (urgent lines, exits, other writers) is never held.
BATCHES_PER_SECOND = 5.0
#: While appends come densely (more than DENSE_APPENDS a second), the owner reads what the kernel
#: reports at most once per WAKE_GAP seconds: with 100 agents at 10 lines/s each append would
#: otherwise be a wake of its own (a poll, a read, a look at the clock), most a millisecond
#: apart. An urgent line waits at most WAKE_GAP. Sparser appends are read as they come: a pause
#: before each would only add a wake.
WAKE_GAP = 0.005
DENSE_APPENDS = 200
POLICY_REREAD = 30.0  # seconds: the silence threshold follows a changed policy
TAKEOVER_WAIT = 10.0  # seconds a starter waits for an owner on its way out
RETRY_AFTER_REFUSAL = 60  # seconds before a command starts another owner the kernel refused
RAW = {b"stdout.jsonl": "stdout.jsonl", b"stderr.log": "stderr.log"}
STREAMS = {"stdout.jsonl": "stdout", "stderr.log": "stderr"}
PEEK_LIMIT = 1 << 20  # of an agent's new bytes, at most this much is searched for urgent lines
PEEK_CHUNK = 1 << 16  # an append is read whole in one pread up to this size

DIR_MASK = inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_ONLYDIR
RAW_MASK = inotify.IN_MODIFY


def _log(session_dir: Path, message: str) -> None:
    """One line in ingest.log (stderr is that file), redacted."""
    sys.stderr.write(f"{now().isoformat()} orch ingest: {redact_text(message)}\n")
    sys.stderr.flush()


class _Agent:
    """What the owner tracks of one agent between batches."""

    __slots__ = ("id", "folder", "wd_dir", "wd_raw", "agent", "peeked", "failing_until", "adapter", "fds")

    def __init__(self, agent_id: str, folder: str):
        self.id = agent_id
        self.folder = folder
        self.wd_dir: Optional[int] = None
        self.wd_raw: dict[str, int] = {}  # file name → watch descriptor
        self.agent: Optional[Agent] = None  # as last synced (for the clock: live? silent when?)
        self.peeked: dict[str, int] = {}  # raw file → offset searched up to
        self.failing_until = 0.0  # after an unexpected error, not before this (monotonic)
        self.adapter = None  # the agent's adapter, once known (its urgent_bytes)
        self.fds: dict[str, int] = {}  # raw file → a descriptor kept open while the agent is live

    def raw_fd(self, name: str) -> Optional[int]:
        """A descriptor of a raw file, opened once (an append is peeked with fstat and pread)."""
        fd = self.fds.get(name)
        if fd is None:
            try:
                fd = self.fds[name] = os.open(os.path.join(self.folder, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
        return fd

    def close_raw(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class IngestDaemon:
    """One session's ingest owner (see the module's docstring)."""

    def __init__(self, session_dir: Path, window: float):
        self.dir = session_dir
        self.agents_dir = str(session_dir / "agents")
        self.store = SessionStore(session_dir)
        self.base_window = window  # ORCH_INGEST_WINDOW
        self.window = window  # stretched while many agents stream (BATCHES_PER_SECOND)
        self.resident = Resident()
        self.agents: dict[str, _Agent] = {}
        self.by_wd: dict[int, tuple[_Agent, Optional[str]]] = {}  # wd → (agent, raw file name or None)
        self.dirty: dict[str, float] = {}  # agent id → monotonic time of its first unsynced change
        self.urgent: set[str] = set()  # agents to sync now
        self.live: set[str] = set()  # agents live as last synced
        self.notify: Optional[inotify.Inotify] = None
        self.wd_agents: Optional[int] = None
        self.wd_session: Optional[int] = None
        self.silent_after = 90.0
        self.policy_read_at = 0.0
        self.liveness_at = 0.0
        self.clock_at = 0.0  # monotonic time the clock next needs a look
        self.stop = False
        me = os.getpid()
        self.record = IngestOwner(pid=me, proc_start=proc_start_time(me), host=host_name(),
                                  started_at=now(), state=OwnerState.STARTING, window=window)

    # ------------------------------------------------------------------ the record
    def _set(self, state: OwnerState, reason: str = "") -> None:
        self.record.state = move(self.record.state, state, "ingest owner")
        if state is OwnerState.ENDED:
            self.record.ended_at, self.record.reason = now(), reason
        atomic_write_model(self.dir / RECORD, self.record)

    # ------------------------------------------------------------------ watching
    def _watch_agent(self, agent_id: str) -> _Agent:
        tracked = self.agents.get(agent_id)
        if tracked is None:
            tracked = self.agents[agent_id] = _Agent(agent_id, os.path.join(self.agents_dir, agent_id))
        if tracked.wd_dir is None:
            tracked.wd_dir = self.notify.watch(tracked.folder, DIR_MASK)
            if tracked.wd_dir is not None:
                self.by_wd[tracked.wd_dir] = (tracked, None)
        for name in STREAMS:
            if name not in tracked.wd_raw:
                wd = self.notify.watch(os.path.join(tracked.folder, name), RAW_MASK)
                if wd is not None:
                    tracked.wd_raw[name] = wd
                    self.by_wd[wd] = (tracked, name)
        return tracked

    def _forget(self, tracked: _Agent) -> None:
        """Its folder is gone (the kernel dropped its watches): stop tracking it."""
        self.agents.pop(tracked.id, None)
        for wd in [tracked.wd_dir, *tracked.wd_raw.values()]:
            if wd is not None:
                self.by_wd.pop(wd, None)
        self.dirty.pop(tracked.id, None)
        self.urgent.discard(tracked.id)
        self.live.discard(tracked.id)
        self.resident.forget(tracked.id)
        tracked.close_raw()

    def _mark(self, agent_id: str, urgent: bool = False) -> None:
        self.dirty.setdefault(agent_id, time.monotonic())  # so `dirty` runs oldest first
        if urgent:
            self.urgent.add(agent_id)

    def _due(self, at: float) -> list[str]:
        """The agents to sync now: the urgent ones, then those whose window is over (oldest
        first, so the look stops at the first one still inside its window)."""
        due = dict.fromkeys(a for a in self.urgent if a in self.dirty)
        for agent_id, since in self.dirty.items():
            if at - since < self.window:
                break
            due[agent_id] = None
        return list(due)

    def _note(self, changes: list[inotify.Change]) -> None:
        """Turn what the kernel reported into agents to sync, now or at their window's end."""
        appended: dict[str, tuple[_Agent, set[str]]] = {}  # agent id → (it, raw files appended to)
        for change in changes:
            mask = change.mask
            if mask & inotify.IN_Q_OVERFLOW:  # events were lost: look at everything now
                for agent_id in agent_ids(self.dir):
                    self._watch_agent(agent_id)
                    self._mark(agent_id, urgent=True)
                continue
            where = self.by_wd.get(change.wd)
            if where is None:
                if change.wd == self.wd_session:
                    if mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_IGNORED):
                        self.stop = True
                elif change.wd == self.wd_agents and mask & inotify.IN_ISDIR:
                    agent_id = change.name.decode(errors="replace")
                    self._watch_agent(agent_id)
                    self._mark(agent_id, urgent=True)
                continue
            tracked, raw = where
            if mask & inotify.IN_IGNORED:  # the file or folder is gone
                self.by_wd.pop(change.wd, None)
                if raw is None:
                    tracked.wd_dir = None
                    if not os.path.isdir(tracked.folder):
                        self._forget(tracked)
                else:
                    tracked.wd_raw.pop(raw, None)
                    fd = tracked.fds.pop(raw, None)
                    if fd is not None:
                        os.close(fd)
                continue
            if raw is not None:
                appended.setdefault(tracked.id, (tracked, set()))[1].add(raw)
                continue
            name = change.name
            if name in RAW:  # a raw file appeared: watch it, and read what came before the watch
                self._watch_agent(tracked.id)
                self._mark(tracked.id, urgent=True)
            elif name.startswith(b"run-") and name.endswith(b".json"):  # a supervisor's start or exit
                self._mark(tracked.id, urgent=True)
            elif name == b"meta.json" and not self.resident.written_by_me(self.store, tracked.id):
                self._mark(tracked.id, urgent=True)  # a launch, a resume, an abort: another writer
        for agent_id, (tracked, names) in appended.items():
            self._mark(agent_id, urgent=agent_id not in self.urgent and self._urgent_bytes(tracked, names))

    def _urgent_bytes(self, tracked: _Agent, names: set[str]) -> bool:
        """Whether an agent's new bytes in the raw files appended to (whole lines, each searched
        once) may hold something to act on now."""
        agent, adapter = tracked.agent, tracked.adapter
        if agent is None or adapter is None:
            return True
        found = False
        cursor = agent.ingest
        for name in names:
            stream = STREAMS[name]
            start = max(tracked.peeked.get(name, 0), cursor.stdout_offset if stream == "stdout" else cursor.stderr_offset)
            fd = tracked.raw_fd(name)
            if fd is None:
                continue
            data = os.pread(fd, PEEK_CHUNK, start)  # what came since (no fstat: a pread says how much)
            if not data:
                continue
            if len(data) == PEEK_CHUNK:  # a burst: its last PEEK_LIMIT bytes are searched
                size = os.fstat(fd).st_size
                start = max(start, size - PEEK_LIMIT)
                data = os.pread(fd, size - start, start)
            cut = data.rfind(b"\n") + 1  # a line still being written is searched when it is whole
            if cut and not found:
                found = adapter.urgent_bytes(stream, data[:cut])
            tracked.peeked[name] = start + cut
        return found

    # ------------------------------------------------------------------ syncing
    def _sync(self, agent_id: str) -> None:
        self.dirty.pop(agent_id, None)
        self.urgent.discard(agent_id)
        tracked = self.agents.get(agent_id)
        if tracked is None or time.monotonic() < tracked.failing_until:
            return
        try:
            _, agent = sync_agent(self.store, agent_id, self.silent_after, resident=self.resident)
        except NotFound:
            return  # a folder made before its meta.json: the meta's arrival is the next change
        except CorruptFile as e:  # left as it is, as every command leaves it; the others go on
            tracked.agent = None
            self.live.discard(agent_id)
            tracked.failing_until = time.monotonic() + LIVENESS_CHECK
            _log(self.dir, f"skipped {e.format_message()}")
            return
        except OrchError as e:
            tracked.failing_until = time.monotonic() + LIVENESS_CHECK
            _log(self.dir, f"{agent_id}: {e.format_message()}")
            return
        except OSError as e:
            if not os.path.isdir(tracked.folder):
                self._forget(tracked)  # its folder went away
                return
            tracked.failing_until = time.monotonic() + LIVENESS_CHECK
            _log(self.dir, f"{agent_id}: {e}")
            return
        tracked.agent = agent
        if tracked.adapter is None:
            try:
                tracked.adapter = adapter_for(agent)
            except OrchError:
                pass  # an unknown CLI: every change is looked at at once
        if agent.state in LIVE_AGENT_STATES:
            self.live.add(agent_id)
        else:
            self.live.discard(agent_id)
            tracked.close_raw()  # opened again if it is resumed
        self._stretch()

    def _stretch(self) -> None:
        """The window for the number of live agents; recorded when it changes (readers allow for it)."""
        window = round(max(self.base_window, len(self.live) / BATCHES_PER_SECOND), 2)
        if window != self.window:
            self.window = self.record.window = window
            if self.record.state is OwnerState.WATCHING:
                atomic_write_model(self.dir / RECORD, self.record)
    def _clock(self, at: float) -> float:
        """Mark the agents the clock says to look at; the monotonic time of the next such look."""
        if at - self.policy_read_at >= POLICY_REREAD:
            self._read_threshold()
        liveness_due = at - self.liveness_at >= LIVENESS_CHECK
        if liveness_due:
            self.liveness_at = at
        soonest = self.liveness_at + LIVENESS_CHECK
        wall = now()
        for agent_id in list(self.live):
            tracked = self.agents.get(agent_id)
            agent = tracked.agent if tracked is not None else None
            if agent is None or agent_id in self.dirty:
                continue
            run = agent.runs[-1] if agent.runs else None
            if liveness_due and run is not None and (run.pid is None or not is_same_process(run.pid, run.proc_start)):
                self._mark(agent_id, urgent=True)  # its process is gone (or never recorded one)
                continue
            if agent.state is AgentState.SILENT or agent.last_activity_at is None:
                continue
            limit = self.silent_after
            if str(agent.ingest.run_acc.status or "").lower().startswith("compact"):
                limit = max(limit, COMPACTING_GRACE)
            left = limit - (wall - agent.last_activity_at).total_seconds()
            if left <= 0:
                self._mark(agent_id, urgent=True)
            else:
                soonest = min(soonest, at + left)
        return soonest

    def _read_threshold(self) -> None:
        """The silence threshold (the policy's stall threshold governs it too), and the limits a
        waiter needs, recorded when they change (runtime/owner.py: waiter_limits)."""
        from ...safety.policy import load_limits
        from ..stall import silence_threshold

        self.policy_read_at = time.monotonic()
        try:
            self.silent_after = silence_threshold(self.store)
            limits = load_limits(self.store)
        except (OrchError, OSError, ValueError):
            return
        known = OwnerLimits(stall_after_seconds=limits.stall_after_seconds, run_wall_seconds=limits.run_wall_seconds,
                            silent_after=self.silent_after, on_usage_limit=limits.on_usage_limit,
                            policy_stamp=policy_stamp(self.dir),
                            settings=limit_settings())
        if known != self.record.limits:
            self.record.limits = known
            if self.record.state is OwnerState.WATCHING:
                atomic_write_model(self.dir / RECORD, self.record)

    # ------------------------------------------------------------------ ending
    def _may_end(self) -> bool:
        """Nothing live and nothing a sync would settle, as the files say now (a launch may
        have come): no live agent, no run whose end is not ingested, no batch left in a lock."""
        stored = stored_agents(self.dir)
        if anything_live(stored):
            return False
        for folder, agent in stored:
            cursor = agent.get("ingest") or {}
            runs = agent.get("runs") or []
            if runs and runs[-1].get("n") not in (cursor.get("finished_runs") or []):
                return False
            try:
                if (folder / ".lock").stat().st_size:
                    return False
            except FileNotFoundError:
                pass
        return True

    def _try_end(self) -> bool:
        """Say it is ending, then look once more: a launch that wrote its agent before this look
        is seen here; one after it finds `ending` and starts the next owner, which waits for
        this one's lock."""
        self._set(OwnerState.ENDING)
        if self._may_end():
            self._set(OwnerState.ENDED, "nothing live")
            return True
        self._set(OwnerState.WATCHING)
        for agent_id in agent_ids(self.dir):
            self._watch_agent(agent_id)
            self._mark(agent_id, urgent=True)
        return False

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        atomic_write_model(self.dir / RECORD, self.record)  # starting: elected, catching up
        try:
            self.notify = inotify.Inotify(str(self.dir))
            self.wd_session = self.notify.watch(str(self.dir), inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF)
            self.wd_agents = self.notify.watch(self.agents_dir, DIR_MASK)
            if self.wd_session is None or self.wd_agents is None:
                self._set(OwnerState.ENDED, "the session folder is gone")
                return 0
            self._read_threshold()
            for agent_id in agent_ids(self.dir):
                self._watch_agent(agent_id)
                self._sync(agent_id)  # catch up (and settle what a kill left)
        except WatchRefused as e:
            self.record.retry_after = now() + timedelta(seconds=RETRY_AFTER_REFUSAL)
            self._set(OwnerState.ENDED, f"refused: {e.format_message()}")
            _log(self.dir, e.format_message())
            return 1
        self._set(OwnerState.WATCHING)
        self.liveness_at = end_check_at = woke_at = counted_since = time.monotonic()
        counted, dense = 0, False
        self.clock_at = self.liveness_at + LIVENESS_CHECK
        while not self.stop:
            at = time.monotonic()
            if at >= self.clock_at:
                self.clock_at = self._clock(at)
            for agent_id in self._due(at):
                self._sync(agent_id)
            if not self.live and not self.dirty and at >= end_check_at:
                if self._try_end():
                    return 0
                end_check_at = at + LIVENESS_CHECK  # something is still pending: look again later
            at = time.monotonic()
            deadline = self.clock_at
            if self.urgent:
                deadline = at
            elif self.dirty:
                deadline = min(deadline, next(iter(self.dirty.values())) + self.window)  # the oldest
            if not self.live and not self.dirty:
                deadline = min(deadline, end_check_at)
            if dense and not self.urgent:  # let the appends of the next few milliseconds come in one read
                gap = woke_at + WAKE_GAP - at
                if gap > 0:
                    time.sleep(gap)
                    at = time.monotonic()
            changes = self.notify.read(max(0.0, deadline - at))
            self._note(changes)
            woke_at = time.monotonic()
            counted += len(changes)
            if woke_at - counted_since >= 0.25:  # how dense the appends are, over the last quarter second
                dense = counted > DENSE_APPENDS * (woke_at - counted_since)
                counted, counted_since = 0, woke_at
        self._set(OwnerState.ENDED, "the session folder is gone")
        return 0


def _elect(session_dir: Path) -> Optional[int]:
    """Take the session's owner lock: its descriptor, or None when another owner holds it.

    A holder whose record says `ending` or `ended` is on its way out (it looked once more
    for live agents before a launch wrote one): wait for it to go, then take over. Any
    other holder does the work: leave at once."""
    from ..owner import read_owner

    fd = os.open(session_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + TAKEOVER_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        if read_owner(session_dir).get("state") not in ("ending", "ended") or time.monotonic() > deadline:
            os.close(fd)
            return None
        time.sleep(0.02)


class _Stopped(Exception):
    """SIGTERM or SIGINT: end now (a batch cut short is settled by the next holder of its lock)."""


def _stop(*_) -> None:
    raise _Stopped()


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m orchestrator.runtime.ingest.daemon SESSION_DIR\n")
        return 2
    session_dir = Path(args[0]).resolve()
    if not (session_dir / "session.json").is_file() or not owner_wanted():
        return 0
    try:
        window = ingest_window()
    except ValueError as e:
        _log(session_dir, str(e))
        return 2
    fd = _elect(session_dir)
    if fd is None:
        return 0  # another owner runs
    daemon = IngestDaemon(session_dir, window)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return daemon.run()
    except _Stopped:
        daemon.record.state, daemon.record.ended_at, daemon.record.reason = OwnerState.ENDED, now(), "stopped"
        atomic_write_model(session_dir / RECORD, daemon.record)
        return 0
    except Exception as e:  # a bug: one line in the log, the record says so, commands take over
        _log(session_dir, f"stopped by an internal error: {type(e).__name__}: {e}; "
                          f"{traceback.format_exc(limit=-3).strip().splitlines()[-3:]}")
        try:
            daemon.record.state = OwnerState.ENDED
            daemon.record.ended_at, daemon.record.reason = now(), f"internal error ({type(e).__name__})"
            atomic_write_model(session_dir / RECORD, daemon.record)
        except OSError:
            pass
        return 1
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
