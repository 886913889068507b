"""What the dashboard serves about sessions and agents: JSON shapes, redacted, read-only.

The API and the live stream send the same shapes, so a card drawn from a page load and
one redrawn from a pushed change cannot disagree. Values that change by themselves with
time (seconds since the last activity) are left out: the page computes them from the
timestamps, which keeps a pushed card unchanged until the agent really changes.
"""

from __future__ import annotations

from typing import Any, Optional

from ..review.blocker_ledger import ledger_rows
from ..core.errors import OrchError
from ..core.models import Agent, Session
from ..views.summary import agent_summary
from ..safety.redaction import redact
from ..store.sessions import SessionStore, Workspace


def _iso(value) -> Any:
    return value.isoformat() if value is not None else None


def agent_card(agent: Agent) -> dict[str, Any]:
    """One agent as a card: who, doing what, since when, at what cost."""
    card = agent_summary(agent)
    card.pop("seconds_since_activity", None)
    card.update({
        "session": agent.session,
        "state_since": _iso(agent.state_since),
        "started_at": _iso(agent.started_at),
        "ended_at": _iso(agent.ended_at),
        "last_text": agent.stats.last_text[-300:],
        "sim_format": agent.sim_format,
    })
    return redact(card)


def agent_detail(agent: Agent) -> dict[str, Any]:
    """A card plus the agent's runs (argv and prompts were redacted when recorded; again here)."""
    return agent_card(agent) | {"runs": redact([r.model_dump(mode="json") for r in agent.runs])}


def session_view(session: Session) -> dict[str, Any]:
    """The session as the page's header, rounds timeline, task list and blocker ledger need it."""
    return redact({
        "id": session.id,
        "goal": session.goal,
        "state": session.state.value,
        "workspace": session.workspace,
        "coordinated": session.coordinated,
        "round": session.round,
        "max_rounds": session.max_rounds,
        "rounds": [r.model_dump(mode="json") for r in session.rounds],
        "todo": session.todo,
        "stop_reason": session.stop_reason,
        "team": session.team.model_dump(mode="json"),
        "tasks": [{"id": t.id, "kind": t.kind.value, "role": t.role.value, "title": t.title, "round": t.round,
                   "state": t.state.value, "agent": t.agent, "blockers": t.blockers, "waiting": t.waiting,
                   "merged": t.merged, "conflicts": t.conflicts}
                  for t in session.tasks],
        "git": session.git.model_dump(mode="json", exclude_none=True) if session.git else None,
        "verification": verification_view(session),
        "blockers": ledger_rows(session),
        **panel_and_races(session),
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "ended_at": _iso(session.ended_at),
    })


def panel_and_races(session: Session) -> dict[str, Any]:
    """The review panel's verdicts side by side and each race's candidates (views/panel.py); the
    page takes each reviewer's cost from its agent card."""
    from ..views.panel import panel_summary, race_rows

    stored = session.model_dump(mode="json")
    return {"panel": panel_summary(stored, []) or None, "races": race_rows(stored)}


def verification_view(session: Session) -> Optional[dict[str, Any]]:
    """The project's tests as the page shows them: the final commit's result in words, and each run."""
    from ..criteria.completion import verification_line

    line, _ = verification_line(session.model_dump(mode="json"))
    v = session.verification
    if not line and v is None:
        return None
    runs = [{"id": r.id, "commit": r.commit, "purpose": r.purpose, "state": r.state.value, "exit_code": r.exit_code,
             "failing": r.failing[:10], "command": r.command, "seconds": r.seconds} for r in (v.runs if v else [])]
    return {"final": line, "enabled": bool(v and v.enabled), "runs": runs,
            "known_failures": [k.test for k in v.known_failures] if v else []}


def session_row(ws: Workspace, session_id: str, active: bool) -> dict[str, Any]:
    """One line of the session list."""
    store = ws.open(session_id)
    s = store.read_session()
    return redact({"id": s.id, "active": active, "state": s.state.value, "round": s.round,
                   "max_rounds": s.max_rounds, "goal": s.goal, "created_at": _iso(s.created_at),
                   "updated_at": _iso(s.updated_at), "agents": len(store.agent_ids())})


def session_rows(ws: Workspace) -> list[dict[str, Any]]:
    """Every session of the workspace, newest first; a damaged one is listed as unreadable."""
    active = ws.active_id()
    rows = []
    for sid in ws.session_ids():
        try:
            rows.append(session_row(ws, sid, sid == active))
        except OrchError as e:
            rows.append(redact({"id": sid, "active": sid == active, "state": "unreadable", "round": 0,
                                "max_rounds": 0, "goal": e.message, "created_at": None, "updated_at": None,
                                "agents": 0}))
    return sorted(rows, key=lambda r: r["created_at"] or "", reverse=True)


def unreadable_card(store: SessionStore, agent_id: str, error: OrchError) -> dict[str, Any]:
    """A card for an agent whose meta.json cannot be read: the rest of the team still shows."""
    return redact({"id": agent_id, "session": store.id, "state": "unreadable", "reason": error.message,
                   "role": "?", "cli": "?", "tool_calls": 0, "usage": {"input_tokens": 0, "output_tokens": 0,
                                                                   "cost_usd": 0.0}})


def agent_cards(store: SessionStore) -> list[dict[str, Any]]:
    cards = []
    for agent_id in store.agent_ids():
        try:
            cards.append(agent_card(store.read_agent(agent_id)))
        except OrchError as e:
            cards.append(unreadable_card(store, agent_id, e))
    return cards
