"""When nothing is running, waiting longer cannot help: `orch wait` returns at once.

With no live agent the only things that can change a session are the conductor's own
next step, a person, or the clock (a failed task's back-off). So a waiter asks: do the
criteria already hold, or does the next step have work? Then it says so and returns,
instead of sitting out its timeout.
"""

from __future__ import annotations

from typing import Optional

from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..core.models import Agent, SessionState, TaskState
from ..engine.continuation import seconds_until_due
from ..engine.criteria import evaluate
from ..store.sessions import SessionStore


def quiet_verdict(store: SessionStore, agents: list[Agent]) -> tuple[Optional[str], Optional[float]]:
    """(why to return now, or None; seconds until a backed-off task is due, or None) — no agent is live."""
    session = store.read_session()
    result = evaluate(store, agents=agents)
    if result.ok:
        return "nothing is running and every completion criterion holds", None
    if session.state is SessionState.STOPPED:
        return f"nothing is running and the session is stopped: {session.stop_reason or 'no reason given'}", None
    if session.state is not SessionState.ACTIVE:
        return None, None
    by_id = {a.id: a for a in agents}
    harvest = [t.id for t in session.tasks if t.state is TaskState.RUNNING
               and (t.agent not in by_id or by_id[t.agent].state not in LIVE)]
    if result.idle_with_work or result.denied_agents or harvest:
        return "nothing is running and the next step has work: " + (result.next_command or "orch step"), None
    due = seconds_until_due(session)
    if due is not None:
        return (None, due) if due > 0 else ("nothing is running and a retry is due: orch step", None)
    if session.coordinated and not result.blocked_agents:
        return "nothing is running and the next step has work: orch step", None
    return None, None
