"""Sync: bring agents' records up to date with what their processes wrote and how they ended.

`sync_agent` reads only the bytes an agent wrote since the last sync (offsets in the
`ingest` cursor of its meta.json), feeds them to the CLI's parser, folds the events into
the agent, reconciles the process (alive? exited? with what?), moves the agent's state
through its lifecycle, and appends what it saw to events.jsonl. The append is exactly-once
across a SIGKILL at any point: the batch is recorded in the agent's lock file before the
append (store.AgentLock), and whoever takes the lock next finishes or forgets it.

This is the one place that turns raw output into state. While agents are live, the
session's ingest owner (daemon.py) calls it as they write; commands that need fresh state
call `refresh_session` (nothing to do while the owner is current) or `sync_session` /
`sync_agent` once, explicitly; criteria, reports, digests and views never sync: they are
functions of what they are given.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from ...core.lifecycle import LIVE_AGENT_STATES, transition
from ...core.models import (
    Agent, AgentState, FailureKind, EndRequest, Event, EventKind, LimitNotice, Outcome, Run, RunAccumulator, Usage, now,
)
from ...safety.redaction import one_environment, redact, redact_text
from ...core.errors import CorruptFile
from ...store.sessions import AgentLock, SessionStore, agent_bytes, report_damaged
from ...store.tail import line_limit
from .plain import plain_stdout_tail
from ..owner import anything_live, ensure_owner, owner_current, stored_agents
from ..procs import is_same_process
from ..runners import reattach
from ..runs import adapter_for, read_run_record
from .classify import classify_run
from .fold import Batch
from .read import feed_side_file, feed_stream
from .resident import Resident

STDERR_TAIL_BYTES = 4096
COMPACTING_GRACE = 300.0  # an agent compacting its context is quiet for minutes: not a stall
NEVER_STARTED_AFTER = 30.0  # a run recorded but with no supervisor record after this long


def silent_after_default() -> float:
    """Seconds without output before a live agent is shown as silent (ORCH_SILENT_AFTER, 90 s;
    a shorter ORCH_STALL_AFTER wins: one setting governs, see runtime/stall.py)."""
    try:
        silent = float(os.environ.get("ORCH_SILENT_AFTER", "90"))
    except ValueError:
        silent = 90.0
    try:
        return min(silent, float(os.environ["ORCH_STALL_AFTER"]))
    except (KeyError, ValueError):
        return silent


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


def _set_state(batch: Batch, new: AgentState, reason: str) -> None:
    event = transition(batch.agent, new, redact_text(reason))
    if event is not None:
        batch.events.append(event)


def _finish_run(batch: Batch, store: SessionStore, run: Run, record: dict) -> None:
    """The run's process is gone: read its verdict, move the agent's state, record the exit."""
    a, c = batch.agent, batch.cursor
    parser = batch.parser
    exit_code = record.get("exit_code")
    for ev in parser.finish(exit_code):
        batch.fold(ev, run)
    acc = c.run_acc
    run.ended_at = run.ended_at or _record_time(record) or now()
    run.exit_code = exit_code
    run.signal = record.get("signal")
    outcome = acc.outcome or Outcome.INCOMPLETE
    run.outcome = outcome
    run.final_text = redact_text(acc.final_text)
    run.files_changed, run.tool_calls = list(acc.files), acc.tool_calls
    denials = [d for d in a.stats.denials if d.run == run.n]
    malformed = parser.malformed_lines
    tail = stderr_tail(store, a.id, run.stderr_start)
    if malformed and not acc.output:  # no stream at all: the CLI's plain words say why
        tail = "\n".join(x for x in (tail, plain_stdout_tail(store, a.id, run.stdout_start)) if x)
    verdict = classify_run(run, acc, denials, exit_code, malformed, tail, aborted=a.state is AgentState.ABORTED,
                           lost=record.get("lost"))
    run.exit_unknown = exit_code is None and verdict.state is AgentState.IDLE
    if run.exit_unknown:
        run.end_request, run.note = None, "exit code unknown (no supervisor record); its result was complete"
    run.failure = verdict.failure if verdict.state is not AgentState.IDLE else None
    run.lost = record.get("lost") if verdict.failure is FailureKind.LOST else None
    a.exit_code = exit_code
    a.ended_at = run.ended_at
    failure = verdict.failure.value if verdict.failure and verdict.state is AgentState.FAILED else None
    if verdict.state is AgentState.DENIED:
        failure = None
    elif verdict.state is AgentState.ABORTED:
        failure = "aborted"
    batch.events.append(Event(
        kind=EventKind.AGENT_EXITED, agent=a.id, task=run.task, reason=verdict.reason,
        data={"run": run.n, "exit_code": exit_code, "signal": run.signal, "outcome": outcome.value,
              "denials": len(denials), "failure": failure, "final_text": acc.final_text[-1000:],
              "stderr_tail": tail if verdict.state in (AgentState.FAILED, AgentState.DENIED) else ""},
    ))
    if verdict.state is AgentState.PARKED:
        _park(batch, store, run, acc.limit, verdict.reason)
    _set_state(batch, verdict.state, verdict.reason)
    _close_books(batch, malformed, run)


def _park(batch: Batch, store: SessionStore, run: Run, limit: Optional[LimitNotice], reason: str) -> None:
    """A limit refused the run: keep the work and say when to resume (its reset, or a backoff)."""
    from ...safety.policy import load_policy, workspace_of  # only when parking: rare

    a = batch.agent
    limits = load_policy(workspace_of(store)).limits
    limit = limit or LimitNotice(hit=True, message=reason[:300])
    if limit.resets_at is not None:
        resume_at = max(limit.resets_at, now()) + timedelta(seconds=limits.limit_grace_seconds)
        a.parks = 0
    else:
        resume_at = now() + timedelta(seconds=min(60 * 2 ** a.parks, limits.limit_backoff_max_seconds))
        a.parks += 1
    a.limit, a.resume_at = limit, resume_at
    batch.events.append(Event(
        kind=EventKind.AGENT_PARKED, agent=a.id, task=run.task,
        reason=f"{reason} — parked until {resume_at.strftime('%H:%M:%S')} UTC",
        data={"run": run.n, "cli": a.cli, "variant": a.sim_format, "resume_at": resume_at.isoformat(),
              "resets_at": limit.resets_at.isoformat() if limit.resets_at else None, "limit_kind": limit.kind,
              "limit_scope": limit.scope, "message": limit.message, "on_usage_limit": limits.on_usage_limit},
    ))


def _record_time(record: dict) -> Optional[datetime]:
    value = record.get("ended_at")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _close_books(batch: Batch, malformed: int, run: Run) -> None:
    """Carry the finished run's usage and malformed count into the agent's totals."""
    a, c = batch.agent, batch.cursor
    acc = c.run_acc
    if acc.cumulative is not None:
        c.thread_base = acc.cumulative
    c.closed_usage = c.closed_usage.plus(acc.usage or Usage())
    c.closed_malformed += malformed
    a.stats.usage = c.closed_usage
    a.stats.malformed_lines = c.closed_malformed
    c.finished_runs = (c.finished_runs + [run.n])[-50:]
    c.run_acc = RunAccumulator()
    c.parser_state = {}


def _live_state(batch: Batch, silent_after: float) -> None:
    """A running process: running, still starting, or silent for too long."""
    a, acc = batch.agent, batch.cursor.run_acc
    quiet = (now() - a.last_activity_at).total_seconds() if a.last_activity_at else 0.0
    limit = silent_after
    if str(acc.status or "").lower().startswith("compact"):
        limit = max(silent_after, COMPACTING_GRACE)
    if quiet >= limit:
        said = "nothing yet" if not acc.output else "nothing new"
        _set_state(batch, AgentState.SILENT, f"running but printed {said} for {int(quiet)} s")
    elif acc.output or batch.saw_bytes:
        _set_state(batch, AgentState.RUNNING, "working")
    # else: no new bytes. A run that printed (even lines that make no event, such as the
    # first partial deltas) stays running; one that printed nothing is still starting.


def _signature(agent: Agent) -> tuple:
    """What a sync can change; equal before and after means nothing to write."""
    c, last = agent.ingest, agent.runs[-1]
    return (c.stdout_offset, c.stderr_offset, c.run, len(c.finished_runs), agent.state, agent.pid,
            last.pid, last.note, last.end_request, last.ended_at, len(agent.runs))


def _run_ended(store: SessionStore, agent_id: str, run: Run, record: dict, has_next: bool) -> tuple[bool, dict]:
    """Whether the run's process is gone (and its record, re-read if it just ended)."""
    never_started = not record and (now() - run.started_at).total_seconds() > NEVER_STARTED_AFTER
    if never_started and run.end_request is None and run.note is None:
        run.end_request = EndRequest.NEVER_STARTED
        run.note = "never started (orch was stopped while starting it)"
    # Gone means: the supervisor recorded the exit, or both the agent and its supervisor
    # are dead (a zombie waiting for its supervisor is not gone yet).
    gone = (bool(record.get("pid")) and not is_same_process(record["pid"], record.get("proc_start"))
            and not is_same_process(record.get("supervisor_pid"), record.get("supervisor_start")))
    if gone and "ended_at" not in record and not has_next and reattach(store.agent_dir(agent_id), run.n, record):
        return False, record  # its supervisor was restarted: the run goes on elsewhere
    ended = "exit_code" in record or "ended_at" in record or has_next or never_started or gone
    if ended and "exit_code" not in record:  # a process can exit between two reads
        record = read_run_record(store, agent_id, run.n) or record
    return ended, record


def sync_agent(store: SessionStore, agent_id: str, silent_after: Optional[float] = None,
               resident: Optional[Resident] = None) -> tuple[list[Event], Agent]:
    """Ingest an agent's new output and reconcile its process; the events appended (the last
    part's, when a large backlog was committed in parts), and the agent now.

    `resident`: a long-lived ingest's copies of the agents it wrote (read back only when
    another process wrote meta.json since)."""
    silent_after = silent_after_default() if silent_after is None else silent_after
    line_limit()  # a bad ORCH_MAX_LINE_BYTES is a one-line error before anything is read
    with store.agent_lock(agent_id) as lock, one_environment():
        agent = resident.read(store, agent_id) if resident is not None else store.read_agent(agent_id)
        try:
            return _sync_locked(store, lock, agent, silent_after, resident)
        except BaseException:
            if resident is not None:  # the copy may be half-changed: read the file next time
                resident.forget(agent_id)
            raise


def _sync_locked(store: SessionStore, lock: AgentLock, agent: Agent, silent_after: float,
                 resident: Optional[Resident]) -> tuple[list[Event], Agent]:
    """sync_agent's work, under the agent's lock."""
    agent_id = agent.id
    if not agent.runs:
        return [], agent
    cursor = agent.ingest
    before = _signature(agent)
    batch = Batch(agent, adapter_for(agent), store.agent_dir(agent_id),
                  flush=lambda b: _flush(store, lock, b, resident))
    if cursor.run == 0:
        cursor.run = 1
        cursor.stdout_offset = agent.runs[0].stdout_start
        cursor.stderr_offset = agent.runs[0].stderr_start
    live_parser = None  # (parser, run) a long-lived ingest may keep: its state was written unmasked
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
        ended, record = _run_ended(store, agent_id, run, record, nxt is not None)
        kept = resident.parser(agent_id, run.n) if resident is not None else None
        batch.parser = kept or batch.adapter.new_parser(cursor.parser_state)
        feed_stream(batch, run, "stdout", nxt.stdout_start if nxt else None, final=ended)
        feed_stream(batch, run, "stderr", nxt.stderr_start if nxt else None, final=ended)
        if ended:  # e.g. codex's rollout: read once the run ends
            for path in batch.adapter.side_files(agent.cli_session_id, os.environ):
                if path.is_file():
                    feed_side_file(batch, run, path)
        if batch.saw_bytes:
            stamps = [t for t in (_mtime(batch.folder / "stdout.jsonl"), _mtime(batch.folder / "stderr.log")) if t]
            agent.last_activity_at = max(stamps + [agent.last_activity_at or run.started_at])
        agent.stats.malformed_lines = cursor.closed_malformed + batch.parser.malformed_lines
        if ended:
            _finish_run(batch, store, run, record)
            if nxt is None:
                break
            cursor.run += 1
            cursor.stdout_offset, cursor.stderr_offset = nxt.stdout_start, nxt.stderr_start
            continue
        raw_state = batch.parser.state()
        cursor.parser_state = redact(raw_state)  # half-streamed text is on disk too: masked
        if agent.state in LIVE_AGENT_STATES:
            _live_state(batch, silent_after)
        live_parser = (batch.parser, run.n) if cursor.parser_state == raw_state else None
        break
    if not batch.events and not batch.flushed and _signature(agent) == before:
        _keep(resident, agent_id, live_parser)
        return [], agent
    _seal(batch)
    _commit(store, lock, agent, batch.events)
    if resident is not None:
        resident.wrote(store, agent)
        _keep(resident, agent_id, live_parser)
    return batch.events, agent


def _keep(resident: Optional[Resident], agent_id: str, live_parser) -> None:
    """A long-lived ingest keeps the run's parser whose state was written as it is (nothing masked)."""
    if resident is not None and live_parser is not None:
        resident.keep_parser(agent_id, live_parser[1], live_parser[0])


def _seal(batch: Batch) -> None:
    """What the batch keeps of the run so far, redacted once per batch (not per line)."""
    agent = batch.agent
    agent.stats.last_text = redact_text(agent.stats.last_text)
    agent.ingest.run_acc.final_text = redact_text(agent.ingest.run_acc.final_text)


def _flush(store: SessionStore, lock: AgentLock, batch: Batch, resident: Optional[Resident]) -> None:
    """Commit a large batch part-way: the cursor and the parser state say how far it got."""
    batch.cursor.parser_state = redact(batch.parser.state())
    _seal(batch)
    _commit(store, lock, batch.agent, batch.events)
    if resident is not None:
        resident.wrote(store, batch.agent)


def _commit(store: SessionStore, lock: AgentLock, agent: Agent, events: list[Event]) -> None:
    """Append the batch and save the meta (with its ingest cursor), exactly once."""
    if not events:
        store.write_agent(agent)
        return
    token = uuid.uuid4().hex
    events[-1].data["ingest"] = token
    meta = agent_bytes(agent)  # serialized once: recorded in the lock, then written
    lock.hold(token, store.events_size(), meta)
    store.append_events(events, ring=False)
    store.write_agent(agent, meta)
    store.ring(events)  # after the meta: a waiter it wakes reads both
    lock.clear()


def sync_session(store: SessionStore, silent_after: Optional[float] = None) -> list[Event]:
    """Sync every agent of the session; returns all events appended."""
    out: list[Event] = []
    for agent_id in store.agent_ids():
        try:
            out.extend(sync_agent(store, agent_id, silent_after)[0])
        except CorruptFile as e:  # one agent's damaged file must not stop the others' ingest
            report_damaged(e)
    return out


def refresh_session(store: SessionStore, silent_after: Optional[float] = None) -> list[Event]:
    """Make the stored state fresh enough to read, and the events that took: nothing to do while
    the session's ingest owner is current (it commits what agents write within its window,
    runtime/owner.py); else sync every agent here, and start an owner if an agent is live."""
    if owner_current(store.path, stored_agents(store.path)):
        return []
    events = sync_session(store, silent_after)
    if anything_live(stored_agents(store.path)):
        ensure_owner(store.path)
    return events
