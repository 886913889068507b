"""What the next coordinator step has to do: something now, or something by the clock.

Every decision a coordinator step takes because time passed, with no file changing:

| cause | the time | what the step does (engine/coordinator.py) |
|---|---|---|
| `limit_reset` | a parked agent's `resume_at` (the CLI's reset + grace, or a back-off) | `_handle_parked` resumes it in the same CLI session; a CLI stops counting as parked for hires |
| `retry` | a queued task's `retry_at` (a failed attempt's back-off) | `_assign` may give it out again (`continuation.is_due`) |
| `stall` | a live agent's last output + `stall_after_seconds` | `_handle_stalls` nudges, restarts or gives it up |
| `wall_time` | a live run's start + `run_wall_seconds` | `_handle_stalls` stops it and fails its task |
| `race_time` | a running race's deadline (`[race] time_limit_seconds`) | `Races.enforce_deadlines` stops candidates still building; the race is judged without them |

Only an active session steps on the clock: a paused one skips all five, a stopped one
does nothing until a person continues it. Everything else a step does answers a file
that changed (an exit, a denial, a command), which wakes a watcher by itself.

`orch wait` sleeps until the earliest of these (or an event) and the autopilot sleeps
with it; a test of invariant I3 reads them from `orch wait --json` (`due`).

Whether a step taken now would act at all is `criteria/advice.step_work` (the one predictor,
shared with every "Next:" orch prints): a waiter with nothing running returns at once only
when it would, and otherwise sleeps until a due time. A step that does less than predicted
writes no event, and a waiter never gives the same advice twice at the same point of the log
(runtime/watch.py), so a disagreement costs one step, never a loop.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Iterable, Optional

from ..core.models import Agent, Model, Session, SessionState, now
from ..safety.policy import Limits
from ..core.clock import STEP, clock_steps, json_time



class DueCause(str, Enum):
    LIMIT_RESET = "limit_reset"
    RETRY = "retry"
    STALL = "stall"
    WALL_TIME = "wall_time"
    RACE_TIME = "race_time"


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
    """Every clock-driven step ahead (or already reached), earliest first (core/clock.py, over
    what the rules read of the session and its agents)."""
    if session.state is not SessionState.ACTIVE:
        return []
    stored_session = {"state": session.state.value,
                      "tasks": [{"id": t.id, "state": t.state.value,
                                 "retry_at": json_time(t.retry_at) if t.retry_at else None} for t in session.tasks],
                      "races": [{"task": r.task, "state": r.state.value, "deadline": json_time(r.deadline)}
                                for r in session.races]}
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
    from ..safety.policy import load_limits

    try:
        return load_limits(store)
    except (OrchError, OSError, ValueError):
        return Limits()
