"""One agent as `orch status --json`, the digest and the dashboard show it."""

from __future__ import annotations

from typing import Any

from ..core.models import Agent, now
from ..safety.redaction import redact


def agent_summary(agent: Agent) -> dict[str, Any]:
    """The status of one agent as `orch status --json` prints it."""
    last = agent.last_activity_at
    return redact({
        "id": agent.id, "role": agent.role.value, "cli": agent.cli, "state": agent.state.value,
        "reason": agent.state_reason, "task": agent.current_task, "permission": agent.permission.value,
        "rung": agent.rung, "cli_session_id": agent.cli_session_id, "pid": agent.pid,
        "exit_code": agent.exit_code, "runs": len(agent.runs),
        "last_activity_at": last.isoformat() if last else None,
        "seconds_since_activity": round((now() - last).total_seconds(), 1) if last else None,
        "tool_calls": agent.stats.tool_calls, "files_changed": agent.stats.files_changed,
        "denials": [d.model_dump(mode="json", exclude_none=True) for d in agent.stats.denials],
        "usage": agent.stats.usage.model_dump(mode="json"),
        "malformed_lines": agent.stats.malformed_lines, "errors": agent.stats.errors[-3:],
        "recoveries": agent.recoveries, "pending_action": agent.pending_action.model_dump(mode="json")
        if agent.pending_action else None,
        "resume_at": agent.resume_at.isoformat() if agent.resume_at else None,
        "limit": agent.limit.model_dump(mode="json", exclude_none=True) if agent.limit else None,
        "parked_seconds": round(agent.parked_seconds, 1),
        "branch": agent.branch, "cwd": agent.cwd,
    })
