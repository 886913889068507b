"""One agent as `orch status --json`, the digest and the dashboard show it."""

from __future__ import annotations

from typing import Any

from ..core.models import Agent
from .digest_form import summary


def agent_summary(agent: Agent) -> dict[str, Any]:
    """The status of one agent as `orch status --json` prints it (views/digest_form.summary, over
    the stored form: the fast wait prints the same)."""
    return summary(agent.model_dump(mode="json"))
