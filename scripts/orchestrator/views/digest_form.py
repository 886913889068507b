"""The digest `orch wait` prints, built from the session, its agents and its events as stored
(their JSON): pure and free of pydantic and click, so the full command (views/digest.py,
commands/waiting.py) and its fast path (fastwait.py) print the same bytes.

A view: it reads what it is given, never writes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..core.clock import due_view, json_time, parse_time
from ..safety.redaction import redact, redact_all
from .table import table

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Optional

#: How a waiter's wake is described (engine/quiet.py's Woke values).
TIMEOUT, EVENT, WORK = "timeout", "event", "work"


def iso(value: Optional[str]) -> Optional[str]:
    """A stored time as datetime.isoformat() writes it ("…+00:00")."""
    at = parse_time(value)
    return at.isoformat() if at is not None else None


def describe(e: dict[str, Any]) -> str:
    """One line a conductor can act on, for an event as stored."""
    who = e.get("agent") or "session"
    k = e["kind"]
    data = e.get("data") or {}
    if k == "agent.exited":
        return f"{who} exited (code {data.get('exit_code')}): {e.get('reason')}"
    if k == "agent.state":
        return f"{who} is now {data.get('to')}: {e.get('reason')}"
    if k == "denial":
        return f"{who} was denied: {e.get('reason')}"
    if k == "agent.output":
        return f"{who} reported {data.get('kind')}: {(data.get('message') or data.get('text') or '')[:160]}"
    if k == "agent.launched":
        return f"{who} launched ({data.get('cli')}, {data.get('role')}, {data.get('rung')})"
    detail = e.get("reason") or data.get("message") or ""
    return f"{who}: {k}{' — ' + detail if detail else ''}"


def _no_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def summary(a: dict[str, Any], at: Optional[datetime] = None) -> dict[str, Any]:
    """One agent as `orch status --json`, the digest and the dashboard show it, from its stored form."""
    return redact(_summary(a, at))


def _summary(a: dict[str, Any], at: Optional[datetime] = None) -> dict[str, Any]:
    """summary, not yet redacted."""
    at = at or datetime.now(timezone.utc)
    last = parse_time(a.get("last_activity_at"))
    stats = a.get("stats") or {}
    pending, limit = a.get("pending_action"), a.get("limit")
    return {
        "id": a["id"], "role": a["role"], "cli": a["cli"], "state": a["state"],
        "reason": a.get("state_reason", ""), "task": a.get("current_task"), "permission": a["permission"],
        "rung": a.get("rung"), "cli_session_id": a.get("cli_session_id"), "pid": a.get("pid"),
        "exit_code": a.get("exit_code"), "runs": len(a.get("runs") or []),
        "last_activity_at": last.isoformat() if last else None,
        "seconds_since_activity": round((at - last).total_seconds(), 1) if last else None,
        "tool_calls": stats.get("tool_calls", 0), "files_changed": stats.get("files_changed", []),
        "denials": [_no_none(d) for d in stats.get("denials") or []],
        "usage": stats.get("usage"),
        "malformed_lines": stats.get("malformed_lines", 0), "errors": (stats.get("errors") or [])[-3:],
        "recoveries": a.get("recoveries", 0), "pending_action": pending,
        "resume_at": iso(a.get("resume_at")),
        "limit": _no_none(limit) if limit else None,
        "parked_seconds": round(a.get("parked_seconds", 0.0), 1),
        "branch": a.get("branch"), "cwd": a["cwd"],
    }


def idle_alerts(agents: list[dict[str, Any]], reported: dict[str, str], idle_after: float,
                at: datetime) -> tuple[list[str], Optional[float]]:
    """Agents idle for idle_after seconds not yet reported (noted in `reported`), and seconds until
    the next one is due."""
    alerts, soonest = [], None
    for agent in agents:
        if agent["state"] != "idle":
            continue
        since = parse_time(agent["state_since"])
        key = since.isoformat()
        if reported.get(agent["id"]) == key:
            continue
        waited = (at - since).total_seconds()
        if waited >= idle_after:
            alerts.append(f"{agent['id']} has been idle for {int(waited)} s with nothing assigned")
            reported[agent["id"]] = key
        else:
            due = idle_after - waited
            soonest = due if soonest is None else min(soonest, due)
    return alerts, soonest


def digest(session: dict[str, Any], agents: list[dict[str, Any]], verdict: dict[str, Any], counts: dict[str, int],
           triggers: list[str], waited: float, timed_out: bool, woke: Optional[tuple[str, str, str]],
           due: Optional[dict[str, Any]], at: Optional[datetime] = None) -> dict[str, Any]:
    """What changed since the previous wait (`counts`: how many events of each kind), where every
    agent stands, and what to do next. `verdict`: the completion criteria (criteria/completion.judge);
    `woke`: why the wait returned (engine/quiet.py's Quiet: the reason, in words, the command); `due`: the clock-driven
    step it reached, or the earliest one ahead (core/clock.py)."""
    at = at or datetime.now(timezone.utc)
    steps = list(verdict["next_steps"])
    if due is not None and due["at"] <= at:  # a step is due by the clock: that comes first
        steps = [f"{due['command']}   # {due['what']}"] + [s for s in steps if not s.startswith(due["command"])]
    elif woke is not None and woke[0] == WORK:
        steps = [f"{woke[2]}   # {woke[1]}"] + [s for s in steps if not s.startswith(woke[2])]
    return {
        "session": session["id"],
        "session_state": session["state"],
        "round": session.get("round", 0),
        "waited_seconds": round(waited, 3),
        "timed_out": timed_out,
        "woke": {"why": woke[0], "detail": f"{woke[1]}: {woke[2]}" if woke[2] else woke[1]} if woke is not None else None,
        "due": due_view(due, at) if due is not None else None,
        "happened": triggers,
        "event_counts": counts,
        "events_seen": sum(counts.values()),
        "agents": redact_all([_summary(a, at) for a in agents]),  # one scan of all (redact_all)
        "criteria_ok": verdict["ok"],
        "missing": verdict["missing"],
        "next": steps,
    }


def digest_text(d: dict[str, Any]) -> str:
    """The digest as `orch wait` prints it for a person or the conductor."""
    woke = d.get("woke") or {"why": TIMEOUT if d["timed_out"] else EVENT, "detail": ""}
    if woke["why"] == TIMEOUT:
        head = "timed out, nothing new"
    elif woke["why"] == EVENT:
        head = f"{len(d['happened'])} thing(s) happened"
    else:
        head = woke["detail"]
    out = [f"orch wait: {head} — after {d['waited_seconds']:.1f} s, session {d['session']} "
           f"({d['session_state']}, round {d['round']})"]
    due = d.get("due")
    if due and woke["why"] != "due":
        when = "now" if due["in_seconds"] <= 0 else f"at {due['at'][11:19]} UTC (in {int(due['in_seconds'])} s)"
        out.append(f"Next due {when}: {due['what']}")
    if d["happened"]:
        out += ["", "What happened:"] + [f"- {line}" for line in d["happened"]]
    if d["agents"]:
        rows = [[a["id"], a["role"], a["cli"], a["state"], a["task"] or "-",
                 "-" if a["seconds_since_activity"] is None else f"{int(a['seconds_since_activity'])}s ago",
                 a["reason"][:60]] for a in d["agents"]]
        out += ["", "Agents:", table(rows, ["agent", "role", "cli", "state", "task", "last activity", "why"])]
    out += ["", "Completion criteria: " + ("MET" if d["criteria_ok"] else "not met")]
    out += [f"- {m}" for m in d["missing"]]
    if d["next"]:
        out += ["", "Next:"] + [f"- {n}" for n in d["next"]]
    return "\n".join(out)


__all__ = ["describe", "digest", "digest_text", "idle_alerts", "iso", "json_time", "summary"]
