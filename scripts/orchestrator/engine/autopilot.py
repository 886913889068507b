"""Autopilot: the conductor loop without Claude Code (`orch run`, `orch resume`, `orch demo`).

    step → check → (criteria hold: report, done) → wait for something meaningful → step …

It stops when the criteria hold (exit 0), when the session is stopped or aborted (1), when
nothing can move without a person (blocked by policy, a failed hand-launched agent: 3),
or at its time limit (4). Every state lives on disk: kill it at any moment and
`orch resume` carries on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .coordinator import finalize, step
from .continuation import seconds_until_due
from .criteria import evaluate
from ..core.models import SessionState
from ..views.reports import write_report
from ..store.sessions import SessionStore
from ..runtime.watch import wait_for_change

EXIT_DONE, EXIT_STOPPED, EXIT_STUCK, EXIT_TIMEOUT = 0, 1, 3, 4


@dataclass
class AutopilotResult:
    exit_code: int
    message: str
    report_path: Optional[str] = None
    steps: int = 0
    actions: list[str] = field(default_factory=list)


def run_autopilot(
    store: SessionStore, *, time_limit: Optional[float] = None, wait_timeout: float = 60.0,
    echo: Callable[[str], None] = lambda s: None,
) -> AutopilotResult:
    """Drive the session to its completion criteria (or a stop), reporting each decision."""
    started = time.monotonic()
    result = AutopilotResult(exit_code=EXIT_TIMEOUT, message="")
    stalled_steps = 0
    announced: Optional[str] = None  # the resume time last announced, so it is said once
    while True:
        outcome = step(store)
        result.steps += 1
        for a in outcome.actions:
            echo(f"- {a}")
        result.actions += outcome.actions
        session = store.read_session()
        if session.state in (SessionState.STOPPED, SessionState.ABORTED):
            _, path = write_report(store)
            result.exit_code, result.report_path = EXIT_STOPPED, path
            advice = evaluate(store).next_command  # e.g. at the round limit: resume ID --max-rounds N
            result.message = f"session {session.state.value}: {session.stop_reason or 'aborted'}" + \
                (f" — next: {advice}" if advice else "")
            return result
        # Judge on what this step saw: an agent finishing since is for the next step,
        # not a sign that nothing can move.
        criteria = evaluate(store)
        if session.state is SessionState.PAUSED and not criteria.live_agents:
            _, path = write_report(store)
            result.exit_code, result.report_path = EXIT_STUCK, path
            result.message = (f"paused: {session.stop_reason} — `orch budget --raise …` (or edit the policy), "
                              f"then `orch resume {store.id}`")
            return result
        if criteria.ok:
            finalize(store)
            _, path = write_report(store)
            result.exit_code, result.report_path = EXIT_DONE, path
            result.message = "all completion criteria hold"
            return result
        parked = bool(criteria.parked_agents) and not criteria.live_agents
        if parked and criteria.resume_at != announced:
            announced = criteria.resume_at
            echo(f"- all remaining work is parked by a usage limit ({'; '.join(criteria.parked_agents)}); "
                 f"sleeping until it resets, then resuming the same CLI sessions")
        backing_off = seconds_until_due(session)  # a failed task waits out its back-off: not stuck
        stalled_steps = stalled_steps + 1 if not outcome.actions and not criteria.live_agents \
            and not parked and backing_off is None else 0
        if stalled_steps >= 2:  # twice in a row, with a fresh look in between
            _, path = write_report(store)
            result.exit_code, result.report_path = EXIT_STUCK, path
            result.message = "nothing can move without you: " + "; ".join(criteria.missing) + \
                             (f" — next: {criteria.next_command}" if criteria.next_command else "")
            return result
        remaining = None if time_limit is None else time_limit - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            _, path = write_report(store)
            result.report_path = path
            result.message = f"time limit of {time_limit:.0f} s reached; `orch resume {store.id}` continues"
            return result
        timeout = wait_timeout if remaining is None else max(min(wait_timeout, remaining), 0.0)
        if stalled_steps:
            continue  # look again at once rather than wait for events that may not come
        if backing_off is not None and not criteria.live_agents:
            timeout = min(timeout, backing_off + 0.05)
        digest = wait_for_change(store, timeout=timeout)
        for line in digest["happened"]:
            echo(f"  · {line}")
