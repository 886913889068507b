"""An agent's runs as the supervisor recorded them, and the adapter that reads them."""

from __future__ import annotations

import json
from typing import Optional

from ..adapters import Adapter, Grant, get_adapter
from ..core.errors import NotFound
from ..core.models import Agent, Run
from ..store.sessions import SessionStore
from .procs import is_same_process


def adapter_for(agent: Agent) -> Adapter:
    """The adapter that builds and parses this agent's runs."""
    return get_adapter(agent.cli, agent.sim_format)


def agent_grant(agent: Agent) -> Grant:
    return Grant(level=agent.permission, tools=tuple(agent.allowed_tools), dangerous=agent.dangerous)


def read_run_record(store: SessionStore, agent_id: str, n: int) -> dict:
    """What the supervisor recorded for run n ({} before it has started, or when damaged)."""
    path = store.agent_file(agent_id, f"run-{n}.json")
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(record, dict):
        return {}
    # Written by a shell script, readable by anyone: keep only fields of the right type.
    return {k: v for k, v in record.items()
            if (k in _INT_FIELDS and type(v) is int) or (k in (_TIME_FIELDS | _TEXT_FIELDS) and isinstance(v, str))}


_INT_FIELDS = {"n", "supervisor_pid", "supervisor_start", "pid", "pgid", "proc_start", "exit_code", "signal"}
_TIME_FIELDS = {"started_at", "ended_at"}
_TEXT_FIELDS = {"runner", "address", "actor", "node", "lost"}  # remote runners' own fields


def live_run(agent: Agent) -> Optional[Run]:
    """The agent's current run if its process is still the one that was started."""
    if not agent.runs:
        return None
    run = agent.runs[-1]
    return run if run.ended_at is None and is_same_process(run.pid, run.proc_start) else None


def require_agent(store: SessionStore, agent_id: str) -> Agent:
    try:
        return store.read_agent(agent_id)
    except NotFound:
        known = ", ".join(store.agent_ids()) or "none yet"
        raise NotFound(f"no agent {agent_id!r} in session {store.id} (agents: {known})") from None
