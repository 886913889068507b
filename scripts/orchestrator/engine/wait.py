"""Block until something worth acting on happens in a session: `orch wait`, and the autopilot's wait.

While agents are live the session's ingest owner (runtime/ingest/daemon.py) ingests their
output, and the waiter reads what it commits, woken by its batches (the bell the event log
rings for events a waiter acts on, session.json); with no owner running (or for --any) the
session's watcher (runtime/watch.py) wakes the waiter the moment an agent writes a byte or
a supervisor records an exit, and it ingests for itself; between file events it sleeps until the next
time-based deadline (an agent crossing its silence threshold, an idle agent to report, a
liveness check for processes whose supervisor was killed, a clock-driven step coming due:
engine/due.py) — never a fixed polling loop. With nothing running it asks engine/quiet.py
whether to return at once; it ends with a digest (views/digest.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Optional

from ..core.errors import CorruptFile
from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..core.meaningful import is_meaningful
from ..core.models import Agent, AgentState, Session, WaitCursor, now
from ..runtime.ingest import sync_agent
from ..runtime.owner import anything_live, ensure_owner, owner_running, stored_agents
from ..runtime.procs import is_same_process
from ..runtime.stall import silence_threshold
from ..runtime.watch import ALL, BATCHES, COALESCE, LIVENESS_CHECK, SessionWatcher, StreamThrottle, silence_deadline
from ..store.reread import Reread
from ..store.sessions import SessionStore, report_damaged
from ..core.clock import json_time
from ..views.digest import build_digest, describe
from ..views.digest_form import idle_alerts
from .due import Due, due_steps, step_limits
from .quiet import Quiet, Woke, quiet_verdict

MAX_HAPPENED = 200  # lines of a digest's "what happened"; the rest is counted
#: When the fast path of `orch wait` (fastwait.py) began a wait it handed over to this one
#: (monotonic): the full command goes on for the time left, and counts it all.
handed_over_at: Optional[float] = None


def _idle_alerts(agents: list[Agent], cursor: WaitCursor, idle_after: float) -> tuple[list[str], Optional[float]]:
    """Agents idle for idle_after seconds not yet reported, and seconds until the next one is due
    (views/digest_form.idle_alerts, which the fast path uses too)."""
    stored = [{"id": a.id, "state": a.state.value, "state_since": json_time(a.state_since)} for a in agents]
    return idle_alerts(stored, cursor.idle_reported, idle_after, now())


def _silence_reached(agents, silent_after: float) -> set[str]:
    """Live agents whose quiet has just crossed the threshold: ingesting them marks them silent."""
    out = set()
    for agent in agents:
        if agent.state in (AgentState.STARTING, AgentState.RUNNING) and agent.last_activity_at \
                and (now() - agent.last_activity_at).total_seconds() >= silent_after:
            out.add(agent.id)
    return out


def _owner_for(store: SessionStore, agents: Optional[Iterable[Agent]] = None) -> bool:
    """Whether the session's ingest owner does the ingest for this waiter: it runs — or, with
    an agent live and none running, one was just started (until it is up, the waiter ingests
    for itself, and looks again at its next liveness check)."""
    if owner_running(store.path):
        return True
    live = any(a.state in LIVE for a in agents) if agents is not None else _any_live(store)
    if live:
        ensure_owner(store.path)
    return False


def _any_live(store: SessionStore) -> bool:
    return anything_live(stored_agents(store.path))


class _StoredAgents:
    """The agents as stored, each read again only when its meta.json was replaced: a waiter
    whose ingest the owner does reads state, and reads it only where it changed."""

    def __init__(self, store: SessionStore):
        self.store = store
        self.files = Reread()

    def changed(self) -> dict[str, Agent]:
        out = {}
        for agent_id in self.store.agent_ids():
            if not self.files.replaced(agent_id, self.store.agent_file(agent_id, "meta.json")):
                continue
            try:
                out[agent_id] = self.store.read_agent(agent_id)
            except CorruptFile as e:  # skipped, not fatal: the others are still read (reported once)
                report_damaged(e)
        return out

    def read_all(self) -> dict[str, Agent]:
        self.files.forget()
        return self.changed()


class _SessionSnapshot:
    """session.json, parsed again only when it was replaced: a waiter looks at it on every
    wake, and with many agents streaming that is many wakes a second."""

    def __init__(self, store: SessionStore):
        self.store = store
        self.files = Reread()

    def read(self) -> Session:
        session = self.files.get("session", self.store.session_path, lambda _: self.store.read_session())
        if session is None:  # gone: read_session says so, in its words
            return self.store.read_session()
        return session


def wait_for_change(
    store: SessionStore, timeout: float = 60.0, idle_after: float = 30.0, silent_after: Optional[float] = None,
    any_event: bool = False, ready: Optional[threading.Event] = None, watcher: Optional[SessionWatcher] = None,
    on_sleep: Optional[Callable[[Optional[Due]], None]] = None, since: Optional[float] = None,
) -> dict[str, Any]:
    """Block until a meaningful event, a clock-driven step coming due, or the timeout; with
    nothing running, return at once only when a step now would act or a person must decide.
    Returns a digest since the previous wait, saying why it woke (`woke`) and what is due next
    (`due`). `watcher`: one the caller keeps across waits (the autopilot), else one for this call.
    `on_sleep`: called once, before the first sleep, with the due step it sleeps toward when
    nothing is running (None otherwise) — after whatever made it return at once, never before.
    `since`: when the wait began (monotonic), if before this call (the fast path handed it over)."""
    silent_after = silence_threshold(store) if silent_after is None else silent_after
    limits = step_limits(store)
    started = time.monotonic() if since is None else since
    cursor = store.read_wait_cursor()
    before = cursor.model_dump()
    since_offset = cursor.events_offset
    if since_offset > store.events_size():
        since_offset = 0
    triggers: list[str] = []
    counts: dict[str, int] = {}  # kinds of the events seen, not the events: a backlog costs no memory
    hits: list[str] = []
    more_hits = 0
    end = since_offset
    verdict: Optional[Quiet] = None
    dues: list[Due] = []
    shown: Optional[Due] = None
    own = watcher is None
    # With the session's ingest owner running, a waiter reads what the owner commits and is
    # woken by its batches (the bell); without one (or for --any), it ingests for itself.
    owned = not any_event and _owner_for(store)
    watcher = watcher or SessionWatcher(store, BATCHES if owned else ALL).start()
    watcher.set_scope(BATCHES if owned else ALL)
    try:
        full_at = 0.0
        known: dict[str, Agent] = {}
        stored = _StoredAgents(store)
        throttle = StreamThrottle(store)
        snapshot = _SessionSnapshot(store)
        while True:
            # Only agents whose files changed are re-read; everyone is re-checked now and
            # then, for processes that die without a file event (their supervisor killed).
            if not full_at:
                watcher.take_dirty()
                known = stored.read_all() if owned else throttle.catch_up(silent_after)
                full_at = time.monotonic()
            else:
                look = _silence_reached(known.values(), silent_after)
                if time.monotonic() - full_at >= LIVENESS_CHECK:
                    full_at = time.monotonic()
                    if not any_event and owned != _owner_for(store, known.values()):
                        owned = not owned  # the owner ended, was killed, or came up: switch
                        watcher.set_scope(BATCHES if owned else ALL)
                        known = stored.read_all() if owned else throttle.catch_up(silent_after)
                    elif not owned:  # a process whose supervisor was killed dies without a file event
                        look |= {a.id for a in known.values() if a.state in LIVE and a.runs
                                 and not is_same_process(a.runs[-1].pid, a.runs[-1].proc_start)}
                dirty, urgent = watcher.take_dirty()
                if owned:
                    known.update(stored.changed())
                    chosen: set[str] = set()
                else:
                    chosen = dirty | urgent if any_event else throttle.choose(dirty, urgent)
                for agent_id in sorted(chosen | look):
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
            session = snapshot.read()
            # An idle agent is the conductor's to employ only where it assigns work by hand;
            # in a coordinated session the step does, and the wait says when it has work.
            idle, idle_due = ([], None) if session.coordinated else _idle_alerts(agents, cursor, idle_after)
            triggers = hits + ([f"… and {more_hits} more"] if more_hits else []) + idle
            at = now()
            dues = due_steps(session, agents, limits)
            reached = [d for d in dues if d.at <= at and d.key not in cursor.dues_told]
            ahead = [d for d in dues if d.at > at]
            shown = reached[0] if reached else (ahead[0] if ahead else None)
            if triggers:
                verdict = Quiet(Woke.EVENT, f"{len(triggers)} thing(s) happened")
                break
            if reached:
                verdict = Quiet(Woke.DUE, f"due at {reached[0].clock()}: {reached[0].what}", reached[0].command)
                break
            live = any(a.state in LIVE for a in agents)
            if not live and session.state.value in ("complete", "aborted"):
                verdict = Quiet(Woke.ENDED, "the session has ended")
                triggers = [verdict.why]
                break
            if not any_event and not live:
                # Said once at each point of the log: the previous wait's digest already told
                # the conductor what this state needs, and a step that found nothing to do
                # wrote nothing; saying it again would only send the conductor round in a loop.
                quiet = quiet_verdict(store, agents, limits, due_ahead=bool(ahead)) if end != cursor.told_at else None
                if quiet is not None:
                    verdict = quiet
                    break
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                verdict = Quiet(Woke.TIMEOUT, "timed out, nothing new")
                break
            if on_sleep is not None:
                on_sleep(ahead[0] if ahead and not live else None)
                on_sleep = None
            waits = [remaining]
            if live:
                waits.append(max(LIVENESS_CHECK - (time.monotonic() - full_at), 0.05))
            if ahead:
                waits.append(ahead[0].seconds_left() + 0.01)
            for deadline in (idle_due, silence_deadline(agents, silent_after), None if owned else throttle.next_due()):
                if deadline is not None:
                    waits.append(deadline)
            if watcher.sleep(min(waits)) and not owned and not any_event and not watcher.exit_pending():
                time.sleep(COALESCE)  # let a burst of writes land: one pass handles them all
    finally:
        if own:
            watcher.stop()
    cursor.events_offset = end
    at = now()
    current = {d.key for d in dues}
    cursor.dues_told = sorted({k for k in cursor.dues_told if k in current} | {d.key for d in dues if d.at <= at})
    cursor.told_at = end
    if verdict.woke is not Woke.TIMEOUT:
        cursor.told = verdict.detail
    if cursor.model_dump() != before:  # nothing new: nothing written
        cursor.at = now()
        store.write_wait_cursor(cursor)
    # Read by this wait just now when the owner does the ingest (and only what changed since);
    # else some may hold deferred progress: the digest reads them all.
    fresh = [known[i] for i in store.agent_ids() if i in known] if owned else None
    return build_digest(store, counts, triggers, time.monotonic() - started, timed_out=verdict.woke is Woke.TIMEOUT,
                        woke=verdict, due=shown, agents=fresh)
