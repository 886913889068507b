"""The digest `orch wait` prints: what changed since the previous wait, where every agent
stands, and what to do next. A view: it reads what it is given and the store, never writes."""

from __future__ import annotations

from typing import Any, Optional

from ..core.models import Event, EventKind, now
from ..criteria.evaluate import evaluate
from ..store.sessions import SessionStore
from .summary import agent_summary


def describe(e: Event) -> str:
    """One line a conductor can act on."""
    who = e.agent or "session"
    k = e.kind
    if k is EventKind.AGENT_EXITED:
        code = e.data.get("exit_code")
        return f"{who} exited (code {code}): {e.reason}"
    if k is EventKind.AGENT_STATE:
        return f"{who} is now {e.data.get('to')}: {e.reason}"
    if k is EventKind.DENIAL:
        return f"{who} was denied: {e.reason}"
    if k is EventKind.AGENT_OUTPUT:
        return f"{who} reported {e.data.get('kind')}: {(e.data.get('message') or e.data.get('text') or '')[:160]}"
    if k is EventKind.AGENT_LAUNCHED:
        return f"{who} launched ({e.data.get('cli')}, {e.data.get('role')}, {e.data.get('rung')})"
    detail = e.reason or e.data.get("message") or ""
    return f"{who}: {k.value}{' — ' + detail if detail else ''}"


def build_digest(store: SessionStore, counts: dict[str, int], triggers: list[str], waited: float,
                 timed_out: bool, woke: Optional[Any] = None, due: Optional[Any] = None,
                 agents: Optional[list] = None) -> dict[str, Any]:
    """What changed since the previous wait (`counts`: how many events of each kind), where
    every agent stands, and what to do next. `agents`: every agent as stored now, when the
    caller has just read them (else they are read here).

    `woke`: why the wait returned (engine.quiet.Quiet); `due`: the clock-driven step it
    reached, or the earliest one ahead (engine.due.Due) — so a caller can tell an early
    return (an event, work for a step) from one at the due time."""
    session = store.read_session()
    if agents is None:
        agents = store.agents()  # as they stand now, deferred progress included
    result = evaluate(store, agents=agents)
    at = now()
    steps = list(result.next_steps)
    if due is not None and due.at <= at:  # a step is due by the clock: that comes first
        steps = [f"{due.command}   # {due.what}"] + [s for s in steps if not s.startswith(due.command)]
    elif woke is not None and woke.woke.value == "work":
        steps = [f"{woke.command}   # {woke.why}"] + [s for s in steps if not s.startswith(woke.command)]
    return {
        "session": store.id,
        "session_state": session.state.value,
        "round": session.round,
        "waited_seconds": round(waited, 3),
        "timed_out": timed_out,
        "woke": {"why": woke.woke.value, "detail": woke.detail} if woke is not None else None,
        "due": due.view(at) if due is not None else None,
        "happened": triggers,
        "event_counts": counts,
        "events_seen": sum(counts.values()),
        "agents": [agent_summary(a) for a in agents],
        "criteria_ok": result.ok,
        "missing": result.missing,
        "next": steps,
    }
