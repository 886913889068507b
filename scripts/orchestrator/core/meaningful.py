"""Which events a waiter acts on: what ends an `orch wait`, and what rings the session's bell.

Every append to the event log goes through one function (store.sessions.append_events);
when a batch holds one of these events it also rings the session's bell (`bell`, a file
replaced on each ring), so a waiter that leaves the ingest to the session's owner watches
that one file instead of every line the agents print. Plain values, free of pydantic: a
reader of the stored events (`meaningful`) judges them by the same sets.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any

    from .models import Event


#: Agent states whose arrival ends a wait (AgentState values).
MEANINGFUL_STATES = frozenset({"silent", "idle", "denied", "failed", "blocked-by-policy", "aborted", "done", "parked"})
#: Event kinds that end a wait (EventKind values).
MEANINGFUL_KINDS = frozenset({
    "agent.exited", "agent.aborted", "denial", "policy.blocked", "blocker.filed", "blocker.state",
    "review.recorded", "session.state", "task.finished", "round.closed", "agent.launched", "recovery",
    "agent.parked", "budget.warning", "budget.reached", "race.state", "race.picked",
})
#: The kinds of agent output that end a wait (an agent.output event's `data.kind`).
MEANINGFUL_OUTPUT = frozenset({"denial", "error"})


def is_meaningful(event: "Event") -> bool:
    """Events that should end an `orch wait`: exits, denials, state changes worth a decision."""
    return meaningful(event.kind.value, event.data)


def meaningful(kind: str, data: Any) -> bool:
    """The same judgement over an event's kind and data as stored."""
    if kind in MEANINGFUL_KINDS:
        return True
    if not isinstance(data, dict):
        return False
    if kind == "agent.state":
        return data.get("to") in MEANINGFUL_STATES
    if kind == "agent.output":
        return data.get("kind") in MEANINGFUL_OUTPUT
    return False


#: Event kinds that may send a notification (EventKind values; notify/kinds.py builds its
#: TRIGGER_KINDS from these): a reader of the stored log tells whether the consumer has work.
NOTIFY_KINDS = frozenset({
    "policy.blocked", "budget.warning", "budget.reached", "agent.exited", "session.state", "decision", "agent.parked",
})
