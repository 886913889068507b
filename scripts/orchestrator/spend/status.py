"""A session's spend against its budget, as `orch budget --json` and the dashboard show it."""

from __future__ import annotations

from typing import Any

from ..store.sessions import SessionStore
from .budget import measure, total_usage
from .gate import load_budget


def budget_status(store: SessionStore) -> dict[str, Any]:
    """State, pause reason, total spend, the limits, and each limit's spend and share."""
    session = store.read_session()
    agents = store.agents()
    limits = load_budget(store)
    spends = measure(limits, agents)
    return {"session": session.id, "state": session.state.value, "reason": session.stop_reason,
            "spent": total_usage(agents).model_dump(mode="json"), "budget": limits.model_dump(mode="json"),
            "limits": [{"key": s.key, "text": s.text(), "spent": s.spent, "limit": s.limit,
                        "share": round(s.share, 4), "reached": s.reached} for s in spends],
            "agents": [{"id": a.id, "cli": a.cli, "usage": a.stats.usage.model_dump(mode="json")} for a in agents]}
