"""The event kinds that may send a notification: the store checks this set (cheaply) on every append."""

from __future__ import annotations

from ..core.models import EventKind

TRIGGER_KINDS = frozenset({
    EventKind.POLICY_BLOCKED, EventKind.BUDGET_WARNING, EventKind.BUDGET_REACHED, EventKind.AGENT_EXITED,
    EventKind.SESSION_STATE, EventKind.DECISION,
})
