"""The event kinds that may send a notification: the consumer reads only lines of these kinds."""

from __future__ import annotations

from ..core.models import EventKind

#: Usage-limit parking (another part of orch) announces a parked agent with its own event;
#: where it exists, it is what says "limit_parked" (an exit for a usage limit then does not).
AGENT_PARKED = getattr(EventKind, "AGENT_PARKED", None)

TRIGGER_KINDS = frozenset({
    EventKind.POLICY_BLOCKED, EventKind.BUDGET_WARNING, EventKind.BUDGET_REACHED, EventKind.AGENT_EXITED,
    EventKind.SESSION_STATE, EventKind.DECISION,
} | ({AGENT_PARKED} if AGENT_PARKED is not None else set()))
