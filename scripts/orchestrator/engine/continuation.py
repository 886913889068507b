"""Failed work can be continued: back-off between attempts, login failures, `orch retry`.

A task that fails its attempts stops its session with the CLI's own last words. This
module names what continues it (`orch retry TASK [--cli OTHER]`, or `orch resume ID`),
re-queues it, and spaces automatic retries so the same failure does not fire again a
second later. A CLI that is not logged in, or whose account is out of credit, is told
apart from a flaky run: retrying it cannot help, so the session stops at its first such
error and says to log in (add credit) or pick another CLI.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Optional

from ..adapters import ADAPTERS, get_adapter
from ..adapters.login import says_not_logged_in
from ..core.errors import CliMissing, InvalidInput
from ..core.lifecycle import transition
from ..core.models import Event, Session, SessionState, Task, TaskKind, TaskState, now
from ..store.sessions import SessionStore

BACKOFF_ENV = "ORCH_RETRY_BACKOFF"
BACKOFF_BASE = 10.0  # seconds before the first automatic retry; doubled for each further one
BACKOFF_CAP = 300.0


def needs_login(reason: str) -> bool:
    """True when a run's failure says the CLI is not logged in (retrying cannot help)."""
    return says_not_logged_in(reason)


def backoff_seconds(attempts: int) -> float:
    """How long a task that failed `attempts` times waits before it is assigned again."""
    try:
        base = float(os.environ.get(BACKOFF_ENV, BACKOFF_BASE))
    except ValueError:
        base = BACKOFF_BASE
    return min(base * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def schedule_retry(task: Task) -> float:
    """Set the task's back-off after a failed attempt; returns the seconds it waits."""
    wait = backoff_seconds(task.attempts)
    task.retry_at = now() + timedelta(seconds=wait) if wait > 0 else None
    return wait


def is_due(task: Task) -> bool:
    """A queued task may be assigned (its back-off, if any, is over)."""
    return task.retry_at is None or task.retry_at <= now()


def seconds_until_due(session: Session) -> Optional[float]:
    """Seconds until the first backed-off queued task may be assigned (None: none waits)."""
    waits = [(t.retry_at - now()).total_seconds() for t in session.tasks
             if t.state is TaskState.QUEUED and t.retry_at is not None]
    return max(min(waits), 0.0) if waits else None


def login_stop_reason(task: Task, cli: str, reason: str) -> str:
    """The stop reason for a CLI that is not logged in: its words, and the two ways on."""
    others = [c for c in installed_clis() if c != cli]
    return (f"{task.id} ({task.title}): {cli} is not logged in — \"{reason[:200]}\"; log in to {cli} and run "
            f"`orch retry {task.id}`, or pick another CLI: `orch retry {task.id} --cli {others[0] if others else 'OTHER'}`")


def billing_stop_reason(task: Task, cli: str, reason: str) -> str:
    """The stop reason for a CLI whose account is out of credit: no wait helps, so a person decides."""
    others = [c for c in installed_clis() if c != cli]
    return (f"{task.id} ({task.title}): {cli}'s account is out of credit — \"{reason[:200]}\"; add credit and run "
            f"`orch retry {task.id}`, or pick another CLI: `orch retry {task.id} --cli {others[0] if others else 'OTHER'}` "
            f"(with [limits] on_usage_limit = \"fallback\" orch hands such work on by itself)")


def installed_clis() -> list[str]:
    """The CLIs whose executable is here (the offline sim always is)."""
    found = []
    for name in ADAPTERS:
        try:
            get_adapter(name).executable()
            found.append(name)
        except CliMissing:
            continue
    return found


def failed_tasks(session: Session) -> list[Task]:
    return [t for t in session.tasks if t.state is TaskState.FAILED]


def _requeue(session: Session, task: Task, cli: Optional[str], why: str) -> list[Event]:
    events: list[Event] = []
    event = transition(task, TaskState.QUEUED, why)
    if event is not None:
        events.append(event)
    if task.kind is not TaskKind.ADHOC:  # an ad-hoc task runs again on the agent launched for it
        task.agent = None  # the failed agent is retired by the next step: a new one takes its place
    task.attempts, task.retry_at = 0, None
    task.unchanged, task.avoid_agents = 0, []
    if cli:
        task.cli = cli
    return events


def reactivate(session: Session, why: str) -> list[Event]:
    """A stopped session goes back to active; its stop reason stays in the event log and report."""
    if session.state is not SessionState.STOPPED:
        return []
    event = transition(session, SessionState.ACTIVE, why)
    if event is not None:
        event.data["stop_reason"] = session.stop_reason
    session.stop_reason = ""
    session.continued_at = now()
    return [event] if event is not None else []


def retry_task(store: SessionStore, task_id: str, cli: Optional[str] = None) -> str:
    """`orch retry`: re-queue a failed task (optionally on another CLI) and reactivate its session."""
    if cli is not None:
        if cli not in ADAPTERS:
            raise InvalidInput(f"unknown CLI {cli!r}: one of {', '.join(ADAPTERS)}")
        get_adapter(cli).executable()  # a missing CLI is a one-line error before anything changes
    with store.edit_session() as session:
        task = session.task(task_id)
        if task is None:
            known = ", ".join(t.id for t in failed_tasks(session)) or "none"
            raise InvalidInput(f"no task {task_id} in session {session.id} (failed tasks: {known})")
        if session.state in (SessionState.COMPLETE, SessionState.ABORTED):
            raise InvalidInput(f"session {session.id} is {session.state.value}; nothing to retry")
        if task.state is not TaskState.FAILED and not (cli and task.state is TaskState.QUEUED):
            raise InvalidInput(f"{task.id} is {task.state.value}, not failed: nothing to retry")
        if cli and task.kind is TaskKind.ADHOC:
            raise InvalidInput(f"{task.id} was launched by hand on its own agent ({task.agent}): launch another "
                               f"with `orch launch --cli {cli} …` instead of --cli")
        on = f" on {cli}" if cli else ""
        events = _requeue(session, task, cli, f"retried{on} by `orch retry`")
        events += reactivate(session, f"continued: `orch retry {task.id}{' --cli ' + cli if cli else ''}`")
    store.append_events(events)
    return f"{task.id} ({task.title}) is queued again{on}"


def requeue_failed(store: SessionStore, why: str) -> list[str]:
    """`orch resume` of a stopped session: every failed task goes back to the queue."""
    lines: list[str] = []
    with store.edit_session() as session:
        events: list[Event] = []
        for task in failed_tasks(session):
            events += _requeue(session, task, None, why)
            lines.append(f"{task.id} ({task.title}) is queued again")
        events += reactivate(session, why)
    store.append_events(events)
    return lines
