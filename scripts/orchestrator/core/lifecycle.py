"""Every lifecycle in one place: the legal transitions of agents, tasks, blockers, sessions.

A state is never implied by a combination of flags; code changes a state only through
`move`, which raises on a transition the table does not list.
"""

from __future__ import annotations

from enum import Enum
from typing import Mapping, TypeVar

from .models import AgentState as A
from .models import BlockerState as B
from .models import SessionState as S
from .models import TaskState as T

E = TypeVar("E", bound=Enum)


class IllegalTransition(RuntimeError):
    """A state change the lifecycle's table does not allow."""


AGENT: Mapping[A, frozenset[A]] = {
    A.STARTING: frozenset({A.RUNNING, A.SILENT, A.IDLE, A.DENIED, A.FAILED, A.ABORTED}),
    A.RUNNING: frozenset({A.SILENT, A.IDLE, A.DENIED, A.FAILED, A.ABORTED}),
    A.SILENT: frozenset({A.RUNNING, A.IDLE, A.DENIED, A.FAILED, A.ABORTED}),
    A.IDLE: frozenset({A.STARTING, A.DONE, A.ABORTED}),
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
    B.FOUND: frozenset({B.ASSIGNED}),
    B.ASSIGNED: frozenset({B.FIXED, B.FOUND}),
    B.FIXED: frozenset({B.VERIFIED, B.REOPENED}),
    B.REOPENED: frozenset({B.ASSIGNED}),
    B.VERIFIED: frozenset({B.REOPENED}),
}

SESSION: Mapping[S, frozenset[S]] = {
    S.ACTIVE: frozenset({S.COMPLETE, S.STOPPED, S.ABORTED, S.PAUSED}),
    S.PAUSED: frozenset({S.ACTIVE, S.ABORTED, S.STOPPED}),
    S.STOPPED: frozenset({S.ACTIVE, S.ABORTED}),
    S.COMPLETE: frozenset(),
    S.ABORTED: frozenset(),
}

_TABLES: dict[type, Mapping] = {A: AGENT, T: TASK, B: BLOCKER, S: SESSION}


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
