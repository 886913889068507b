"""What a notification says: what happened, where (session and project), what orch waits for,
and the exact command that answers it (with the dashboard's address when `orch serve` is up)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.models import Event, EventKind, Session
from ..criteria.advice import after_failure, continue_steps


@dataclass
class Message:
    what: str  # the `on` name: blocked_by_policy, budget, limit_parked, failed, complete, stalled
    headline: str
    waiting_for: str
    command: str
    key: Optional[str] = None  # a happening that must be told once (e.g. complete)


FAILURES_NOT_FAILED = (None, "aborted", "denied", "quota")


def may_notify(event: Event) -> bool:
    """A cheap first look (no file read): could this event call for a message?"""
    d, k = event.data, event.kind
    if k is EventKind.DECISION:
        return bool(d.get("stalled"))
    if k is EventKind.SESSION_STATE:
        return d.get("state") in ("stopped", "complete")
    if k is EventKind.AGENT_EXITED:
        return d.get("failure") not in (None, "aborted", "denied")
    return True


def message_for(event: Event, session: Session, root: Optional[Path] = None) -> Optional[Message]:
    """The notification an event calls for, or None."""
    sid, d, agent = session.id, event.data, event.agent
    s = f" --session {sid}"
    k = event.kind
    if k is EventKind.POLICY_BLOCKED:
        return Message("blocked_by_policy", f"{agent} is blocked by policy: {event.reason or ''}".strip(),
                       f"your decision on what {agent} asked for",
                       f"orch allow {agent}{s}   (or: orch deny {agent}{s})")
    if k is EventKind.BUDGET_REACHED:
        return Message("budget", f"session paused: {session.stop_reason or event.reason}",
                       "a higher budget (nothing new starts until then)",
                       f"orch budget --raise session_usd=N{s}   then: orch resume {sid}")
    if k is EventKind.BUDGET_WARNING:
        return Message("budget", event.reason or "budget warning", "nothing yet: the session goes on",
                       f"orch budget{s}")
    if k is EventKind.AGENT_PARKED:
        until = f" (orch resumes it at {d['resume_at']})" if d.get("resume_at") else ""
        return Message("limit_parked", f"{agent} hit a usage or rate limit and is parked{until}",
                       "the limit to reset; orch resumes it by itself", f"orch status{s}")
    if k is EventKind.AGENT_EXITED and d.get("failure") == "quota":
        return None  # the parked event tells it
    if k is EventKind.AGENT_EXITED and d.get("failure") not in FAILURES_NOT_FAILED:
        task = session.task(event.task) if event.task else None
        then = after_failure(session.model_dump(mode="json"), task.model_dump(mode="json") if task else None,
                             event.reason or "", _max_attempts(root))
        command = f"orch status{s}"
        if then.startswith("you:") and task is not None:
            command = f"orch retry {task.id}{s}"
        return Message("failed", f"{agent} failed: {event.reason or ''}".strip(), then, command)
    if k is EventKind.SESSION_STATE and d.get("state") == "stopped":
        steps = continue_steps(session.model_dump(mode="json")) or [f"orch resume {sid}"]
        return Message("failed", f"session stopped: {session.stop_reason or event.reason}",
                       "you: fix the cause, then continue", steps[0].partition("#")[0].strip())
    if k is EventKind.SESSION_STATE and d.get("state") == "complete":
        return Message("complete", "the session is complete: every criterion holds", "nothing",
                       f"orch report{s}", key=f"complete:{sid}")
    if k is EventKind.DECISION and d.get("stalled"):
        return Message("stalled", event.reason or f"{agent} stalled", "nothing yet: orch nudges, then restarts",
                       f"orch logs {agent}{s}" if agent else f"orch status{s}")
    return None


def _max_attempts(root: Optional[Path]) -> int:
    """The policy's max_task_attempts (2, the default, when it cannot be read)."""
    try:
        from ..safety.policy import load_policy
        from ..store.sessions import Workspace

        return load_policy(Workspace(root)).limits.max_task_attempts if root is not None else 2
    except Exception:  # a notification never fails over the policy: the step reports that
        return 2


def dashboard_link(root: Path, session_id: str) -> Optional[str]:
    """The running dashboard's page for the session (`orch serve` records its address), or None.

    The link carries no token: a notification may pass through third parties, and the
    token lets its holder allow or deny actions.
    """
    try:
        info = json.loads((root / "serve.json").read_text())
        pid, base = int(info["pid"]), str(info["url"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"{base}?session={session_id}"


def render(m: Message, session: Session, root: Path) -> tuple[str, str]:
    """(title, body) of a message."""
    title = f"orch: {m.headline}"[:200]
    lines = [f"What happened: {m.headline}",
             f"Session: {session.id} — {session.goal or 'no goal'}",
             f"Project: {session.workspace}",
             f"Waiting for: {m.waiting_for}",
             f"Answer: cd {session.workspace} && {m.command}"]
    link = dashboard_link(root, session.id)
    if link:
        lines.append(f"Dashboard: {link}")
    return title, "\n".join(lines)
