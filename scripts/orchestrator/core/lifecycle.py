"""Every lifecycle in one place: the legal transitions of agents, tasks, blockers, sessions,
verification runs, races and the session's ingest owner.

A state is never implied by a combination of flags, and no code assigns a state by hand:
`transition(obj, new, reason)` checks the table, sets the state (and its reason and time
where the object keeps them) and returns the event that records the change, for the
caller to append together with the object. An illegal transition is an `orch: …` error.
"""

from __future__ import annotations

from enum import Enum
from typing import Mapping, Optional, TypeVar, Union

from .errors import OrchError
from .models import Agent, Event, EventKind, Race, Session, Task, VerifyRun, now
from .models import OwnerState as O
from .models import AgentState as A
from .models import BlockerState as B
from .models import RaceState as R
from .models import SessionState as S
from .models import TaskState as T
from .models import VerifyRunState as V

E = TypeVar("E", bound=Enum)


class IllegalTransition(OrchError):
    """A state change the lifecycle's table does not allow (exit 2, one line, no traceback)."""


AGENT: Mapping[A, frozenset[A]] = {
    A.STARTING: frozenset({A.RUNNING, A.SILENT, A.IDLE, A.DENIED, A.FAILED, A.ABORTED, A.PARKED}),
    A.RUNNING: frozenset({A.SILENT, A.IDLE, A.DENIED, A.FAILED, A.ABORTED, A.PARKED}),
    A.SILENT: frozenset({A.RUNNING, A.IDLE, A.DENIED, A.FAILED, A.ABORTED, A.PARKED}),
    A.IDLE: frozenset({A.STARTING, A.DONE, A.ABORTED, A.PARKED}),
    A.PARKED: frozenset({A.STARTING, A.IDLE, A.DONE, A.ABORTED}),
    A.DENIED: frozenset({A.STARTING, A.BLOCKED_BY_POLICY, A.IDLE, A.DONE, A.FAILED, A.ABORTED}),
    A.BLOCKED_BY_POLICY: frozenset({A.STARTING, A.IDLE, A.DONE, A.ABORTED}),
    A.DONE: frozenset({A.STARTING, A.ABORTED}),
    A.FAILED: frozenset({A.STARTING, A.DONE, A.ABORTED}),
    A.ABORTED: frozenset({A.STARTING, A.DONE}),
}

TASK: Mapping[T, frozenset[T]] = {
    T.QUEUED: frozenset({T.RUNNING, T.CANCELLED}),
    T.RUNNING: frozenset({T.DONE, T.FAILED, T.QUEUED, T.CANCELLED}),
    T.FAILED: frozenset({T.QUEUED, T.CANCELLED}),
    T.DONE: frozenset(),
    T.CANCELLED: frozenset(),
}

BLOCKER: Mapping[B, frozenset[B]] = {
    # found/reopened → fixed: only the verifier's blockers, when a green run shows later work fixed
    # them without a fix task of their own (review/blocker_ledger.resolve_by_tests)
    B.FOUND: frozenset({B.ASSIGNED, B.FIXED}),
    B.ASSIGNED: frozenset({B.FIXED, B.FOUND}),
    B.FIXED: frozenset({B.VERIFIED, B.REOPENED}),
    B.REOPENED: frozenset({B.ASSIGNED, B.FIXED}),
    B.VERIFIED: frozenset({B.REOPENED}),
}

SESSION: Mapping[S, frozenset[S]] = {
    S.ACTIVE: frozenset({S.COMPLETE, S.STOPPED, S.ABORTED, S.PAUSED}),
    S.PAUSED: frozenset({S.ACTIVE, S.ABORTED, S.STOPPED}),
    S.STOPPED: frozenset({S.ACTIVE, S.ABORTED}),
    S.COMPLETE: frozenset(),
    S.ABORTED: frozenset(),
}

VERIFY_RUN: Mapping[V, frozenset[V]] = {
    V.PENDING: frozenset({V.RUNNING, V.ERROR}),
    V.RUNNING: frozenset({V.FINISHED, V.ERROR}),
    V.FINISHED: frozenset(),
    V.ERROR: frozenset(),
}

RACE: Mapping[R, frozenset[R]] = {
    R.RUNNING: frozenset({R.TESTING, R.FAILED}),
    R.TESTING: frozenset({R.REVIEWING, R.DECIDED, R.FAILED}),
    R.REVIEWING: frozenset({R.DECIDED}),
    R.DECIDED: frozenset({R.MERGED}),
    R.MERGED: frozenset(),
    R.FAILED: frozenset(),
}

#: The session's ingest owner (runtime/ingest/daemon.py): it records its own state; no event.
OWNER: Mapping[O, frozenset[O]] = {
    O.STARTING: frozenset({O.WATCHING, O.ENDING, O.ENDED}),
    O.WATCHING: frozenset({O.ENDING, O.ENDED}),
    O.ENDING: frozenset({O.WATCHING, O.ENDED}),
    O.ENDED: frozenset(),
}

_TABLES: dict[type, Mapping] = {A: AGENT, T: TASK, B: BLOCKER, S: SESSION, V: VERIFY_RUN, R: RACE, O: OWNER}

#: Agent states with a process that may still write (the one definition of "live").
LIVE_AGENT_STATES = frozenset({A.STARTING, A.RUNNING, A.SILENT})


def can_move(current: E, new: E) -> bool:
    """True when the lifecycle of `current` allows going to `new` (staying put is allowed)."""
    if current == new:
        return True
    table = _TABLES[type(current)]
    return new in table[current]


def move(current: E, new: E, what: str = "") -> E:
    """Return `new` if the transition is legal, else raise IllegalTransition."""
    if not can_move(current, new):
        label = f"{what}: " if what else ""
        raise IllegalTransition(
            f"{label}{type(current).__name__} cannot go from {current.value} to {new.value}"
        )
    return new


Transitional = Union[Agent, Task, Session, VerifyRun, Race]


def transition(obj: Transitional, new: Enum, reason: str = "") -> Optional[Event]:
    """Move an agent, task or session to `new` and return the event that records it.

    Checks the lifecycle's table (IllegalTransition otherwise), sets the state and, where the
    object keeps them, its reason and time. Staying in the same state returns None (and, for
    an agent, refreshes nothing). Blockers keep their own history (review/blocker_ledger).
    """
    old = obj.state
    if old == new:
        return None
    if isinstance(obj, Agent):
        obj.state = move(old, new, obj.id)
        obj.state_reason, obj.state_since = reason, now()
        return Event(kind=EventKind.AGENT_STATE, agent=obj.id, task=obj.current_task, reason=reason,
                     data={"from": old.value, "to": new.value})
    if isinstance(obj, Task):
        obj.state = move(old, new, obj.id)
        if reason and new is not T.RUNNING:  # why it ended or went back to the queue
            obj.result = reason[:2000]
        return Event(kind=EventKind.TASK_STATE, agent=obj.agent, task=obj.id, round=obj.round, reason=reason,
                     data={"from": old.value, "to": new.value, "kind": obj.kind.value})
    if isinstance(obj, Session):
        obj.state = move(old, new, obj.id)
        if new in (S.COMPLETE, S.ABORTED):
            obj.ended_at = obj.ended_at or now()
        return Event(kind=EventKind.SESSION_STATE, reason=reason, data={"from": old.value, "state": new.value})
    if isinstance(obj, VerifyRun):
        obj.state = move(old, new, obj.id)
        obj.state_reason = reason
        return Event(kind=EventKind.VERIFY_STATE, agent="verifier", reason=reason,
                     data={"run": obj.id, "from": old.value, "to": new.value, "commit": obj.commit,
                           "purpose": obj.purpose})
    if isinstance(obj, Race):
        obj.state = move(old, new, f"race {obj.task}")
        obj.state_reason = reason
        return Event(kind=EventKind.RACE_STATE, task=obj.task, reason=reason,
                     data={"race": obj.task, "from": old.value, "to": new.value})
    raise TypeError(f"no lifecycle for {type(obj).__name__}")
