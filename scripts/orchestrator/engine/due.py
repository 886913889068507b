"""What the next coordinator step has to do: something now, or something by the clock.

Every decision a coordinator step takes because time passed, with no file changing:

| cause | the time | what the step does (engine/coordinator.py) |
|---|---|---|
| `limit_reset` | a parked agent's `resume_at` (the CLI's reset + grace, or a back-off) | `_handle_parked` resumes it in the same CLI session; a CLI stops counting as parked for hires |
| `retry` | a queued task's `retry_at` (a failed attempt's back-off) | `_assign` may give it out again (`continuation.is_due`) |
| `stall` | a live agent's last output + `stall_after_seconds` | `_handle_stalls` nudges, restarts or gives it up |
| `wall_time` | a live run's start + `run_wall_seconds` | `_handle_stalls` stops it and fails its task |

Only an active session steps on the clock: a paused one skips all four, a stopped one
does nothing until a person continues it. Everything else a step does answers a file
that changed (an exit, a denial, a command), which wakes a watcher by itself.

`orch wait` sleeps until the earliest of these (or an event) and the autopilot sleeps
with it; a test of invariant I3 reads them from `orch wait --json` (`due`).

`step_work` says whether a step taken now would act at all, by the same rules as the
coordinator's harvest, parking, assignment, advance and retirement: a waiter with nothing
running returns at once only when it would, and otherwise sleeps until a due time. Keep
the two in step with engine/coordinator.py; a step that does less than predicted writes no
event, and a waiter never gives the same advice twice at the same point of the log
(runtime/watch.py), so a disagreement costs one step, never a loop.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Iterable, Optional

from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..core.models import Agent, AgentState, Model, Role, Session, SessionState, TaskKind, TaskState, now
from ..review.blocker_ledger import open_blockers
from ..safety.policy import Limits
from .clock import STEP, clock_steps, json_time
from .completion import ROLE_CAN_DO
from .continuation import is_due
from .integration import WRITING_KINDS, takes_turns



class DueCause(str, Enum):
    LIMIT_RESET = "limit_reset"
    RETRY = "retry"
    STALL = "stall"
    WALL_TIME = "wall_time"


class Due(Model):
    """One clock-driven step: when, why, about whom, and the command that acts on it."""

    at: datetime
    cause: DueCause
    what: str
    command: str = STEP
    agent: Optional[str] = None
    task: Optional[str] = None

    @property
    def key(self) -> str:
        """Identifies this due across waits: reported once, however often it is looked at."""
        return f"{self.cause.value}:{self.agent or self.task}:{self.at.isoformat()}"

    def seconds_left(self, at: Optional[datetime] = None) -> float:
        return (self.at - (at or now())).total_seconds()

    def clock(self) -> str:
        return self.at.strftime("%H:%M:%S") + " UTC"

    def view(self, at: Optional[datetime] = None) -> dict:
        """As `orch wait --json` shows it."""
        return {**self.model_dump(mode="json"), "in_seconds": round(self.seconds_left(at), 3)}


def due_steps(session: Session, agents: Iterable[Agent], limits: Limits) -> list[Due]:
    """Every clock-driven step ahead (or already reached), earliest first (engine/clock.py, over
    what the rules read of the session and its agents)."""
    if session.state is not SessionState.ACTIVE:
        return []
    stored_session = {"state": session.state.value,
                      "tasks": [{"id": t.id, "state": t.state.value,
                                 "retry_at": json_time(t.retry_at) if t.retry_at else None} for t in session.tasks]}
    stored_agents = [{"id": a.id, "cli": a.cli, "state": a.state.value, "current_task": a.current_task,
                      "resume_at": json_time(a.resume_at) if a.resume_at else None,
                      "last_activity_at": json_time(a.last_activity_at) if a.last_activity_at else None,
                      "runs": [{"started_at": json_time(a.runs[-1].started_at)}] if a.runs else []} for a in agents]
    return [Due(**d) for d in clock_steps(stored_session, stored_agents, limits.stall_after_seconds,
                                         limits.run_wall_seconds)]


def step_limits(store) -> Limits:
    """The `[limits]` the step judges by (the policy, ORCH_STALL_AFTER); the defaults when the
    policy cannot be read — the step itself reports that, a waiter only needs the times."""
    from ..core.errors import OrchError
    from .coordinator import load_limits

    try:
        return load_limits(store)
    except (OrchError, OSError, ValueError):
        return Limits()


# ------------------------------------------------------------------ work a step would do now
OPEN = (TaskState.QUEUED, TaskState.RUNNING, TaskState.FAILED)


def step_work(session: Session, agents: list[Agent], limits: Limits, damaged: Iterable[str] = ()) -> Optional[str]:
    """What a step taken now would do with no agent live (None: nothing until a due time or an
    event). `damaged`: agents whose meta.json cannot be read (the step leaves their tasks)."""
    from .coordinator import DOER_ORDER, HOME_ROLE, cli_key, parked_keys

    if session.state is not SessionState.ACTIVE:
        return None
    by_id = {a.id: a for a in agents}
    for a in agents:
        if a.state is AgentState.DENIED:
            return f"{a.id} was denied: recover it"
    parked = parked_keys(agents)
    for a in agents:
        if a.state is AgentState.IDLE and cli_key(a) in parked:
            return f"{a.id}'s CLI is parked by a limit: park it too"
    running = [t for t in session.tasks if t.state is TaskState.RUNNING]
    for t in running:
        a = by_id.get(t.agent or "")
        if a is None and t.agent in set(damaged):
            continue
        if a is None or not a.runs or (a.current_task != t.id and a.state not in LIVE):
            return f"{t.id} was assigned but never started: start it"
        if a.current_task != t.id:
            continue
        if a.state in (AgentState.IDLE, AgentState.FAILED):
            return f"{a.id} ended {t.id}: close it"
        if a.state is AgentState.PARKED and limits.on_usage_limit == "fallback":
            return f"{a.id} is parked: hand {t.id} to another CLI"
    busy = {t.agent for t in running if t.agent}
    writing = any(t.kind in WRITING_KINDS for t in running)
    for t in session.tasks:
        if t.state is not TaskState.QUEUED or t.kind is TaskKind.ADHOC or not is_due(t):
            continue
        if writing and takes_turns(session, t):
            continue  # writers take turns in a shared folder: it waits for the running one
        if _someone_takes(session, t, agents, busy, parked, limits, DOER_ORDER, HOME_ROLE, cli_key):
            return f"{t.id} is queued and can start"
    open_tasks = [t for t in session.tasks if t.state in OPEN]
    complete = bool(session.rounds) and session.rounds[-1].ended_at is not None and not open_blockers(session)
    if session.coordinated and not open_tasks and not complete:
        return "the current phase is over: plan the next"
    work_left = bool(open_tasks) or bool(open_blockers(session)) or (session.coordinated and not complete)
    holding = {t.agent for t in open_tasks if t.agent}
    for a in agents:
        if a.state not in (AgentState.IDLE, AgentState.FAILED, AgentState.PARKED) or a.id in holding:
            continue
        if a.state is AgentState.FAILED and not session.coordinated:
            continue
        if work_left and a.state is not AgentState.FAILED:
            continue
        return f"{a.id} has nothing left: retire it"
    return None


def _someone_takes(session, task, agents, busy, parked, limits, doer_order, home_role, cli_key) -> bool:
    """An idle (or retired) agent able to do the task, or a hire on a CLI that is not parked."""
    for a in agents:
        if a.state not in (AgentState.IDLE, AgentState.DONE) or a.id in busy:
            continue
        if a.role in doer_order[task.kind] and task.kind.value in ROLE_CAN_DO.get(a.role.value, frozenset()) \
                and cli_key(a) not in task.avoid_clis and (task.cli is None or a.cli == task.cli) \
                and not (a.state is AgentState.IDLE and cli_key(a) in parked):
            return True
    role = home_role[task.kind]
    if limits.on_usage_limit == "fallback" or task.avoid_clis or task.cli:
        return True  # another CLI may take it: only the step knows which
    if any(a.role is role and a.state is AgentState.PARKED and cli_key(a) in parked for a in agents):
        return False  # no agent is hired on a parked CLI: the task waits for the reset
    have = sum(1 for a in agents if a.role is role and a.state is not AgentState.PARKED)
    return have < (session.team.implementers if role is Role.IMPLEMENTER else 1)
