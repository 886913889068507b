"""The completion criteria over a session as stored (session.json and the agents' meta.json):
pure, and free of pydantic, so `orch check`'s fast read path and every caller of
`criteria.evaluate` judge by the same code.

ALL agents done, ALL outputs parsed, ALL blockers resolved and verified, NO agent idle
while work remains, NO work remaining — and, in worktrees, the project's tests passed on the
final integration commit (or verification is off, or the tree has no test command).
"""

from __future__ import annotations

from pathlib import Path

from ..verify.failures import effective_failures, known_names
from .advice import clock, continue_steps, is_live, next_steps, tip_of, ts as _ts, utcnow

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Callable

    RawSize = Callable[[str, str], int]  # (agent id, file name) → bytes on disk

__all__ = ["ROLE_CAN_DO", "judge", "raw_sizes", "unparsed", "check_text", "continue_steps", "parked_line", "clock"]

LIVE_STATES = ("starting", "running", "silent")
FINISHED_AGENT_STATES = ("done", "aborted")
OPEN_TASK_STATES = ("queued", "running", "failed")

#: Which roles can take which kind of task (the architect implements when it would idle).
ROLE_CAN_DO: dict[str, frozenset[str]] = {
    "architect": frozenset({"spec", "implement", "fix", "merge", "adhoc"}),
    "implementer": frozenset({"implement", "fix", "merge", "adhoc"}),
    "worker": frozenset({"implement", "fix", "merge", "adhoc"}),
    "reviewer": frozenset({"review", "verify", "adhoc"}),
    "verifier": frozenset(),  # orch's own test runner: it takes no task (engine/verification.py)
}



def raw_sizes(session_dir: Path) -> RawSize:
    """The size of an agent's raw file in this session folder (0 when there is none)."""
    def size(agent_id: str, name: str) -> int:
        try:
            return (session_dir / "agents" / agent_id / name).stat().st_size
        except FileNotFoundError:
            return 0
    return size


def unparsed(agent: dict[str, Any], size: RawSize) -> bool:
    """True while raw output exists that the ingest has not normalized yet."""
    cursor = agent.get("ingest") or {}
    runs = agent.get("runs") or []
    if runs and runs[-1]["n"] not in (cursor.get("finished_runs") or []):
        return True
    return (size(agent["id"], "stdout.jsonl") > cursor.get("stdout_offset", 0)
            or size(agent["id"], "stderr.log") > cursor.get("stderr_offset", 0))


def judge(session: dict[str, Any], agents: list[dict[str, Any]], size: RawSize,
          damaged: list[str] = ()) -> dict[str, Any]:
    """Every criterion, as the fields of `orch check --json` (criteria.CriteriaResult)."""
    r: dict[str, Any] = {"session": session["id"], "ok": False, "session_state": session["state"], "missing": [],
                         "live_agents": [], "not_done_agents": [], "idle_with_work": [], "denied_agents": [],
                         "blocked_agents": [], "unparsed_agents": [], "open_blockers": [], "open_tasks": [],
                         "parked_agents": [], "resume_at": None, "failed_tasks": [],
                         "stop_reason": session.get("stop_reason") or "", "next_steps": [], "next_command": "",
                         "verification": ""}
    tasks = session.get("tasks") or []
    open_tasks = [t for t in tasks if t["state"] in OPEN_TASK_STATES]
    at = utcnow()
    # Work an idle agent could take now: not backing off after a failure, not held back
    # (its `waiting` reason: a concurrency cap, or writers taking turns).
    queued_kinds = {t["kind"] for t in open_tasks if t["state"] == "queued" and not t.get("waiting")
                    and not (t.get("retry_at") and _ts(t["retry_at"]) > at)}
    r["open_tasks"] = [f"{t['id']} ({t['kind']}, {t['state']}{', ' + t['agent'] if t.get('agent') else ''}"
                       f"{' — ' + t['waiting'] if t.get('waiting') and t['state'] == 'queued' else ''}): "
                       f"{t['title']}" for t in open_tasks]
    r["open_blockers"] = [f"{b['id']} [{b['severity']}] {b.get('file', '')}{':' + str(b['line']) if b.get('line') else ''}"
                          f" — {b['state']}: {b['description'][:120]}"
                          for b in session.get("blockers") or [] if b["state"] != "verified"]
    r["failed_tasks"] = [f"{t['id']} ({t['title']}) failed {t.get('attempts', 0)} time(s), last: "
                         f"{(t.get('result') or '?').splitlines()[0][:200]}" for t in tasks if t["state"] == "failed"]
    for a in agents:
        state = a["state"]
        if is_live(a):
            r["live_agents"].append(a["id"])
        if state not in FINISHED_AGENT_STATES:
            r["not_done_agents"].append(f"{a['id']} ({state})")
        if state == "idle" and queued_kinds & ROLE_CAN_DO.get(a["role"], frozenset()):
            r["idle_with_work"].append(a["id"])
        if state == "denied":
            r["denied_agents"].append(a["id"])
        if state == "blocked-by-policy":
            r["blocked_agents"].append(a["id"])
        if unparsed(a, size):
            r["unparsed_agents"].append(a["id"])
        if state == "parked":
            r["parked_agents"].append(parked_line(a))
            if a.get("resume_at") and (r["resume_at"] is None or _ts(a["resume_at"]) < _ts(r["resume_at"])):
                r["resume_at"] = a["resume_at"]

    for agent_id in damaged:
        r["not_done_agents"].append(f"{agent_id} (its meta.json is damaged)")
    missing = r["missing"]
    if r["not_done_agents"]:
        missing.append(f"{len(r['not_done_agents'])} agent(s) not done: {', '.join(r['not_done_agents'])}")
    if r["unparsed_agents"]:
        missing.append(f"output not fully parsed yet for: {', '.join(r['unparsed_agents'])}")
    if r["open_blockers"]:
        missing.append(f"{len(r['open_blockers'])} blocker(s) not verified: "
                       + "; ".join(b.split(' —')[0] for b in r["open_blockers"]))
    if r["parked_agents"]:
        missing.append(f"{len(r['parked_agents'])} agent(s) parked by a usage or rate limit: "
                       + "; ".join(r["parked_agents"]))
    if r["idle_with_work"]:
        missing.append(f"idle while work remains: {', '.join(r['idle_with_work'])}")
    if open_tasks:
        missing.append(f"{len(open_tasks)} task(s) remain: " + "; ".join(
            f"{t['id']} ({t['kind']}, {t['state']})" for t in open_tasks))
    if session.get("coordinated") and not tasks:
        missing.append("no work has been planned yet")
    r["verification"], tests_missing = verification_line(session)
    if tests_missing:
        missing.append(tests_missing)
    if session["state"] == "aborted":
        missing.append("the session was aborted")
    if session["state"] == "paused":
        missing.insert(0, f"paused: {session.get('stop_reason', '')}")
    r["ok"] = not missing
    if session["state"] == "stopped":
        missing.append(f"the session is stopped: {r['stop_reason'] or 'no reason recorded'}")
        r["ok"] = False
    r["next_steps"] = next_steps(session, agents, r, damaged=list(damaged))
    r["next_command"] = r["next_steps"][0] if r["next_steps"] else ""
    return r


def verification_line(session: dict[str, Any]) -> tuple[str, str]:
    """(what the gate says about the final integration commit, the missing criterion or "")."""
    git, v = session.get("git") or {}, session.get("verification")
    if git.get("mode") != "worktrees" or not session.get("coordinated"):
        return "off: no integration branch (the agents shared one folder)" if git else "", ""
    if v is None:
        return "not set up yet", ""
    if not v.get("enabled"):
        return v.get("reason") or "off", ""
    tip = tip_of(git)
    last = next((r for r in reversed(v.get("runs") or []) if r.get("state") == "finished"
                 and r.get("purpose") in ("base", "tip")), None)
    if last is None or last.get("commit") != tip:
        return (f"not run yet on the final commit {tip[:12]}",
                f"the project's tests have not run on the final integration commit {tip[:12]} yet")
    if not last.get("command"):
        return f"no test command exists on the final commit {tip[:12]} ({last.get('command_source', '')})", ""
    known = known_names(v)
    failing = effective_failures(last, known)
    cmd = " ".join(last["command"])
    if failing:
        return (f"`{cmd}` FAILS on the final commit {tip[:12]} ({last.get('id')})",
                f"the project's tests fail on the final integration commit {tip[:12]}: "
                + ", ".join(failing[:5]) + (f" and {len(failing) - 5} more" if len(failing) > 5 else ""))
    let_through = [t for t in last.get("failing") or [] if t not in failing]
    extra = f", known failures let through: {', '.join(let_through[:5])}" if let_through and last.get("exit_code") else ""
    return f"`{cmd}` passed on the final commit {tip[:12]} ({last.get('id')}{extra})", ""


def parked_line(a: dict[str, Any]) -> str:
    """`implementer-1 (claude) until 14:05:00 UTC: usage limit, five-hour window`."""
    cli = a["cli"] + (f"/{a['sim_format']}" if a.get("sim_format") else "")
    limit = a.get("limit") or {}
    what = {"usage": "usage limit", "rate": "rate limit"}.get(limit.get("kind") or "", "usage or rate limit")
    scope = f", {limit['scope'].replace('_', '-')} window" if limit.get("scope") else ""
    until = f" until {clock(a['resume_at'])}" if a.get("resume_at") else ""
    return f"{a['id']} ({cli}){until}: {what}{scope}"


def check_text(r: dict[str, Any]) -> str:
    """What `orch check` prints (without --json)."""
    if r["ok"]:
        lines = [f"Session {r['session']}: all completion criteria hold."]
    else:
        lines = [f"Session {r['session']}: completion criteria NOT met:"] + [f"- {m}" for m in r["missing"]]
    if r["next_steps"]:
        lines.append("Next: " + r["next_steps"][0])
    return "\n".join(lines)
