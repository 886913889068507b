"""The agent table, from an agent as stored (meta.json's JSON): pure, and free of pydantic
and click, so the full commands and the fast read path (fastpath.py) print the same bytes."""

from __future__ import annotations

from datetime import datetime, timezone

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Optional

STATE_COLOURS = {
    "starting": "cyan", "running": "green", "silent": "yellow", "idle": "blue", "denied": "red",
    "blocked-by-policy": "red", "done": "bright_black", "failed": "red", "aborted": "magenta",
}
_ANSI = {"black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37,
         "bright_black": 90}
AGENT_HEADER = ["agent", "role", "cli", "state", "task", "last activity", "tools", "files", "denials",
                "tokens", "cost", "exit"]
#: Agent states that need a look at the bottom of `orch status`.
ALERT_STATES = ("denied", "failed", "silent", "blocked-by-policy", "parked")


def style(text: str, fg: str) -> str:
    """Coloured text, byte for byte what click.style(text, fg=fg) gives."""
    return f"\x1b[{_ANSI[fg]}m{text}\x1b[0m"


def ago(seconds: Optional[float]) -> str:
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


def cost_label(usage: Any) -> str:
    """'$0.0123', '~$0.0123 (estimated)' or 'price unknown' — how people read a cost (a Usage or its stored form)."""
    if isinstance(usage, dict):
        cost = float(usage.get("cost_usd") or 0.0)
        known, estimated = usage.get("price_known", True) is not False, bool(usage.get("cost_estimated"))
    else:
        cost, known, estimated = usage.cost_usd, usage.price_known, usage.cost_estimated
    if not known:
        return f"${cost:.4f} + price unknown" if cost else "price unknown"
    if estimated:
        return f"~${cost:.4f} (estimated)"
    return f"${cost:.4f}"


def parse_time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def agent_row(a: dict[str, Any], colour: bool = False, at: Optional[datetime] = None) -> list[str]:
    """One row of the agent table from the agent's stored form."""
    at = at or datetime.now(timezone.utc)
    last = parse_time(a.get("last_activity_at"))
    state = a["state"]
    shown = style(state, STATE_COLOURS[state]) if colour and state in STATE_COLOURS else state
    stats = a.get("stats") or {}
    u = stats.get("usage") or {}
    cli = a["cli"] + (f"/{a['sim_format']}" if a.get("sim_format") else "")
    return [
        a["id"], a["role"], cli, shown, a.get("current_task") or "-",
        ago((at - last).total_seconds() if last else None), str(stats.get("tool_calls", 0)),
        str(len(stats.get("files_changed") or [])), str(len(stats.get("denials") or [])),
        f"{u.get('input_tokens', 0) + u.get('output_tokens', 0)}", cost_label(u),
        "-" if a.get("exit_code") is None else str(a["exit_code"]),
    ]


def status_text(session: dict[str, Any], agents: list[dict[str, Any]], colour: bool = False,
                ingest: Optional[str] = None) -> str:
    """What `orch status` prints for a whole session (`ingest`: who ingests it, runtime/owner.py)."""
    lines = [f"Session {session['id']} ({session['state']}, round {session.get('round', 0)}) — "
             f"{session.get('goal') or 'no goal set'}"]
    if session.get("stop_reason"):  # paused: budget reached ($X of $Y); stopped: why
        text = f"{session['state']}: {session['stop_reason']}"
        lines.append(style(text, "yellow") if colour else text)
    for task in session.get("tasks") or []:
        if task.get("waiting") and task["state"] == "queued":
            lines.append(f"- {task['id']} {task['waiting']}")
    if not agents:
        lines.append("No agents yet.")
        return "\n".join(lines)
    lines.append(table([agent_row(a, colour) for a in agents], AGENT_HEADER))
    for a in agents:
        if a["state"] in ALERT_STATES:
            text = f"- {a['id']} {a['state']}: {a.get('state_reason', '')}"
            if a["state"] == "parked" and a.get("resume_at"):
                text += f" (resumes at {a['resume_at'][11:19]} UTC)"
            lines.append(style(text, "red") if colour else text)
    from .panel import panel_lines, race_lines  # what the review panel found, what each race decided

    lines += panel_lines(session, agents) + race_lines(session)
    if ingest:
        lines.append(ingest)
    return "\n".join(lines)


def list_text(session_id: str, agents: list[dict[str, Any]], colour: bool = False) -> str:
    """What `orch list` prints: one line per agent (the table is `orch status`)."""
    if not agents:
        return f"Session {session_id} has no agents yet. Start one with `orch launch` or `orch step`."
    lines = []
    for a in agents:
        reason = f"  — {a['state_reason'][:100]}" if a.get("state_reason") else ""
        state = f"\x1b[1m{a['state']}\x1b[0m" if colour else a["state"]  # click.style(bold=True)
        cli = a["cli"] + (f"/{a['sim_format']}" if a.get("sim_format") else "")
        lines.append(f"{a['id']}  {a['role']}  {cli}  {state}  {a.get('current_task') or '-'}{reason}")
    return "\n".join(lines)
