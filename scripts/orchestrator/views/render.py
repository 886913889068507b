"""Text views of agents and events for terminals and for Claude Code (plain when piped)."""

from __future__ import annotations

from typing import Any, Iterable

from ..core.models import Agent, Event, EventKind, now
from .table import AGENT_HEADER, STATE_COLOURS, ago, agent_row, table

__all__ = ["AGENT_HEADER", "STATE_COLOURS", "ago", "agent_row", "agent_rows", "event_line", "table"]


def agent_rows(agents: Iterable[Agent], colour=None) -> list[list[str]]:
    """Rows of the agent table (views/table.py renders them from the stored form)."""
    at = now()
    return [agent_row(a.model_dump(mode="json"), colour=bool(colour), at=at) for a in agents]


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
        elif k in ("limit_hit", "limit_warning"):
            what = " ".join(str(v) for v in (d.get("limit_kind"), d.get("limit_scope")) if v)
            resets = f" resets {d['resets_at']}" if d.get("resets_at") else ""
            label = "LIMIT HIT" if k == "limit_hit" else "near a limit"
            body = f"{label}{' (' + what + ')' if what else ''}{resets}: {d.get('message', '')}"
        elif k == "unknown" and d.get("message"):  # orch's own note on a line it could not take (one too long)
            body = f"{k} {d.get('raw_type') or ''}: {d['message']}"
        else:
            body = f"{k} {d.get('raw_type') or d.get('status') or d.get('message') or ''}"
    else:
        body = f"{e.kind.value}{': ' + e.reason if e.reason else ''}"
    return f"{t} {who:<14} {body}".rstrip()
