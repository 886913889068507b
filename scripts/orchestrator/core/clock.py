"""The clock-driven steps ahead, over a session and its agents as stored (their JSON): pure and
free of pydantic, so a reader of the stored form and `orch wait` see the same due times.

The causes and what a step does about each are engine/due.py's (`Due`, `due_steps`,
which build on this); a due here is a dict with the fields of `Due`, its `at` a datetime.
"""

from __future__ import annotations

from datetime import datetime, timedelta

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional

STEP = "orch step"
LIVE = ("starting", "running", "silent")


def parse_time(value: Optional[str]) -> Optional[datetime]:
    """A stored time ("…Z" or "…+00:00") as a datetime; None stays None."""
    if not value:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def json_time(at: datetime) -> str:
    """A time as the models write it ("…Z" for UTC)."""
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def clock_steps(session: dict[str, Any], agents: Iterable[dict[str, Any]], stall_after: float,
                run_wall: float) -> list[dict[str, Any]]:
    """Every clock-driven step ahead (or already reached), earliest first (engine/due.py says which)."""
    if session.get("state") != "active":
        return []
    out: list[dict[str, Any]] = []
    for a in agents:
        state, task = a.get("state"), a.get("current_task")
        resume_at = parse_time(a.get("resume_at"))
        if state == "parked" and resume_at is not None:
            out.append(_due(resume_at, "limit_reset", a["id"], task,
                            f"{a['id']}'s {a['cli']} limit resets: the step resumes it in the same CLI session"))
        if state not in LIVE:
            continue
        last = parse_time(a.get("last_activity_at"))
        if last is not None:
            out.append(_due(last + timedelta(seconds=stall_after), "stall", a["id"], task,
                            f"{a['id']} has been quiet for {stall_after:g} s "
                            f"(stall_after_seconds): the step nudges, restarts or gives it up"))
        runs = a.get("runs") or []
        if runs:
            out.append(_due(parse_time(runs[-1]["started_at"]) + timedelta(seconds=run_wall), "wall_time", a["id"],
                            task, f"{a['id']}'s run reaches run_wall_seconds ({run_wall}): the step stops it"))
    for t in session.get("tasks") or []:
        retry_at = parse_time(t.get("retry_at"))
        if t.get("state") == "queued" and retry_at is not None:
            out.append(_due(retry_at, "retry", None, t["id"], f"{t['id']}'s back-off ends: the step may assign it again"))
    for r in session.get("races") or []:
        if r.get("state") == "running":
            out.append(_due(parse_time(r["deadline"]), "race_time", None, r["task"],
                            f"race {r['task']}'s time limit: the step stops candidates still building and judges "
                            "the race with those that finished"))
    return sorted(out, key=lambda d: d["at"])


def _due(at: datetime, cause: str, agent: Optional[str], task: Optional[str], what: str) -> dict[str, Any]:
    return {"at": at, "cause": cause, "what": what, "command": STEP, "agent": agent, "task": task}


def due_key(due: dict[str, Any]) -> str:
    """Identifies a due across waits: reported once, however often it is looked at."""
    return f"{due['cause']}:{due['agent'] or due['task']}:{due['at'].isoformat()}"


def due_clock(due: dict[str, Any]) -> str:
    return due["at"].strftime("%H:%M:%S") + " UTC"


def due_view(due: dict[str, Any], at: datetime) -> dict[str, Any]:
    """As `orch wait --json` shows it."""
    return {**due, "at": json_time(due["at"]), "in_seconds": round((due["at"] - at).total_seconds(), 3)}
