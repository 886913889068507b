"""Autopilot: the conductor loop without Claude Code (`orch run`, `orch resume`, `orch demo`).

    step → check → (criteria hold: report, done) → wait for something meaningful or due → step …

It stops when the criteria hold (exit 0), when the session is stopped or aborted (1), when
nothing can move without a person (blocked by policy, a failed hand-launched agent: 3),
or at its time limit (4). With nothing running and only clock-driven work ahead (a usage
limit's reset, a retry's back-off: engine/due.py) it says once what it waits for and
sleeps until then: one line per change, never a line per wake. It keeps one watcher for
its whole run. Every state lives on disk: kill it at any moment and `orch resume` carries on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .coordinator import finalize, step
from ..criteria.evaluate import evaluate
from .due import DueCause, due_steps, step_limits
from ..core.errors import WatchRefused
from ..core.models import SessionState, now
from ..notify.consumer import notify_new_events
from ..views.reports import write_report
from ..store.sessions import SessionStore
from ..runtime.watch import SessionWatcher
from .wait import wait_for_change

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
    watcher = SessionWatcher(store)
    try:
        watcher.start()
    except WatchRefused as e:  # before any step: nothing was started that nobody drives
        raise WatchRefused(f"{e.message}; nothing was lost: `orch resume {store.id}` carries the session on") from None
    try:
        return _drive(store, watcher, time_limit, wait_timeout, echo)
    finally:
        watcher.stop()
        notify_new_events(store)


def _drive(store: SessionStore, watcher: SessionWatcher, time_limit: Optional[float], wait_timeout: float,
           echo: Callable[[str], None]) -> AutopilotResult:
    started = time.monotonic()
    result = AutopilotResult(exit_code=EXIT_TIMEOUT, message="")
    stalled_steps = 0
    announced: Optional[str] = None  # the due last announced, so each is said once
    limits = step_limits(store)
    while True:
        outcome = step(store)
        notify_new_events(store)  # what the step decided (and its sync saw) is told now, not at the end
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
        agents = store.agents()
        criteria = evaluate(store, agents=agents)
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
        ahead = [d for d in due_steps(session, agents, limits) if d.at > now()]
        stalled_steps = stalled_steps + 1 if not outcome.actions and not criteria.live_agents and not ahead else 0
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
        if stalled_steps:
            continue  # look again at once rather than wait for events that may not come
        timeout = wait_timeout
        if ahead and not criteria.live_agents:  # only the clock (or a person) moves it now: sleep until then
            timeout = max(wait_timeout, ahead[0].seconds_left() + 1.0)
        if remaining is not None:
            timeout = max(min(timeout, remaining), 0.0)

        def say_once(due, parked=criteria.parked_agents) -> None:
            nonlocal announced
            if due is not None and due.key != announced:
                announced = due.key
                echo(_sleeping_line(due, parked))

        digest = wait_for_change(store, timeout=timeout, watcher=watcher, on_sleep=say_once)
        notify_new_events(store)
        for line in digest["happened"]:
            echo(f"  · {line}")


def _sleeping_line(first, parked: list[str]) -> str:
    """What the autopilot waits for, said once when it starts to sleep for it."""
    if first.cause is DueCause.LIMIT_RESET:
        return (f"- all remaining work is parked by a usage limit ({'; '.join(parked)}); sleeping until it "
                f"resets at {first.clock()}, then resuming the same CLI sessions")
    return f"- nothing to do until {first.clock()}: {first.what}; sleeping until then"
