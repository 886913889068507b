"""Which events a waiter acts on: what ends an `orch wait`, and what rings the session's bell.

Every append to the event log goes through one function (store.sessions.append_events);
when a batch holds one of these events it also rings the session's bell (`bell`, a file
replaced on each ring), so a waiter that leaves the ingest to the session's owner watches
that one file instead of every line the agents print.
"""

from __future__ import annotations

from .models import AgentState, Event, EventKind

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
#: The kinds of agent output that end a wait (an agent.output event's `data.kind`).
MEANINGFUL_OUTPUT = ("denial", "error")


def is_meaningful(event: Event) -> bool:
    """Events that should end an `orch wait`: exits, denials, state changes worth a decision."""
    if event.kind in MEANINGFUL_KINDS:
        return True
    if event.kind is EventKind.AGENT_STATE:
        return event.data.get("to") in MEANINGFUL_STATES
    if event.kind is EventKind.AGENT_OUTPUT:
        return event.data.get("kind") in MEANINGFUL_OUTPUT
    return False
