"""An agent that has already finished is not aborted: its history stays as it happened."""

from __future__ import annotations

from typing import Optional

from ..core.models import Agent, AgentState
from .runs import live_run

FINISHED = (AgentState.DONE, AgentState.ABORTED, AgentState.IDLE)


def nothing_to_abort(agent: Agent) -> Optional[str]:
    """Why aborting this agent would change nothing (None: it may be aborted)."""
    if live_run(agent) is not None or agent.state not in FINISHED:
        return None
    code = f", exit {agent.exit_code}" if agent.exit_code is not None else ""
    return f"{agent.id} has already finished ({agent.state.value}{code}): nothing to abort"
