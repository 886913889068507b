"""Text views of agents and events for terminals and for Claude Code (plain when piped)."""

from __future__ import annotations

from typing import Any, Iterable

from ..core.models import Agent, AgentState, Event, EventKind, now
from ..spend.pricing import cost_label

STATE_COLOURS = {
    AgentState.STARTING: "cyan", AgentState.RUNNING: "green", AgentState.SILENT: "yellow",
    AgentState.IDLE: "blue", AgentState.DENIED: "red", AgentState.BLOCKED_BY_POLICY: "red",
    AgentState.DONE: "bright_black", AgentState.FAILED: "red", AgentState.ABORTED: "magenta",
}


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s ago"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table (reads well in Claude Code and in a terminal)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return "\n".join(out)


def agent_rows(agents: Iterable[Agent], colour=None) -> list[list[str]]:
    rows = []
    for a in agents:
        last = (now() - a.last_activity_at).total_seconds() if a.last_activity_at else None
        state = a.state.value
        if colour:
            state = colour(state, fg=STATE_COLOURS.get(a.state))
        u = a.stats.usage
        rows.append([
            a.id, a.role.value, a.cli + (f"/{a.sim_format}" if a.sim_format else ""), state,
            a.current_task or "-", ago(last), str(a.stats.tool_calls), str(len(a.stats.files_changed)),
            str(len(a.stats.denials)), f"{u.input_tokens + u.output_tokens}", cost_label(u),
            "-" if a.exit_code is None else str(a.exit_code),
        ])
    return rows


AGENT_HEADER = ["agent", "role", "cli", "state", "task", "last activity", "tools", "files", "denials",
                "tokens", "cost", "exit"]


def event_line(e: Event, offset: int | None = None) -> str:
    """One readable line for an event of the log."""
    t = e.ts.strftime("%H:%M:%S")
    who = e.agent or "orch"
    d: dict[str, Any] = e.data
    if e.kind is EventKind.AGENT_OUTPUT:
        k = d.get("kind")
        if k == "text":
            body = f"says: {d.get('text', '')}"
        elif k == "tool_started":
            body = f"tool {d.get('tool')}: {d.get('target') or ''}"
        elif k == "tool_finished":
            body = f"tool {d.get('tool') or ''} {'ok' if d.get('ok', True) else 'FAILED'}"
        elif k == "file_changed":
            body = f"changed {d.get('path')} ({d.get('change') or 'write'})"
        elif k == "denial":
            body = f"DENIED {d.get('tool')} {d.get('target') or ''}: {d.get('message', '')}"
        elif k == "session_started":
            body = f"CLI session {d.get('session_id')}"
        elif k == "usage":
            u = d.get("usage") or {}
            body = f"usage in={u.get('input_tokens', 0)} out={u.get('output_tokens', 0)} ${u.get('cost_usd', 0)}"
        elif k == "run_finished":
            body = f"run finished: {d.get('outcome')} — {str(d.get('text') or '')[:200]}"
        elif k == "error":
            body = f"ERROR {d.get('message', '')}"
        else:
            body = f"{k} {d.get('raw_type') or d.get('status') or d.get('message') or ''}"
    else:
        body = f"{e.kind.value}{': ' + e.reason if e.reason else ''}"
    return f"{t} {who:<14} {body}".rstrip()
