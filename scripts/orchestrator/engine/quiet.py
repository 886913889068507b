"""With nothing running, should a waiter return now, and why?

With no live agent the only things that can change a session are the conductor's next
step, a person, or the clock. So a waiter asks: do the criteria already hold, must a
person decide, or would a step taken now act? Then it says so and returns. When none of
these holds, a step now would do nothing: the waiter sleeps until the earliest due time
(engine/due.py) or an event, instead of returning at once to be called again.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple, Optional

from ..core.models import Agent, AgentState, SessionState, now
from ..criteria.evaluate import evaluate
from ..criteria.advice import step_work
from ..safety.policy import Limits
from ..store.sessions import SessionStore


class Woke(str, Enum):
    """Why `orch wait` returned (its JSON's `woke.why`)."""

    EVENT = "event"  # something meaningful happened (the digest's `happened`)
    DUE = "due"  # a clock-driven step is due (the digest's `due`)
    WORK = "work"  # nothing runs and a step taken now would act
    DECISION = "decision"  # nothing runs and nothing moves without a person (or the session is stopped)
    DONE = "done"  # nothing runs and every completion criterion holds
    ENDED = "ended"  # the session is complete or aborted
    TIMEOUT = "timeout"  # nothing of the above before --timeout


class Quiet(NamedTuple):
    woke: Woke
    why: str
    command: str = ""  # the command that acts on it, when one does

    @property
    def detail(self) -> str:
        return f"{self.why}: {self.command}" if self.command else self.why


def quiet_verdict(store: SessionStore, agents: list[Agent], limits: Limits, due_ahead: bool) -> Optional[Quiet]:
    """Why a waiter with no live agent should return now; None: sleep until a due time or an event.

    `due_ahead`: a clock-driven step lies ahead, so a session with nothing to do now is
    waiting for it, not stuck."""
    session = store.read_session()
    result = evaluate(store, agents=agents)
    if result.ok:
        return Quiet(Woke.DONE, "nothing is running and every completion criterion holds", result.next_command)
    if session.state is SessionState.STOPPED:
        return Quiet(Woke.DECISION, f"nothing is running and the session is stopped: "
                                    f"{session.stop_reason or 'no reason given'}", result.next_command)
    if session.state is SessionState.PAUSED:
        return Quiet(Woke.DECISION, f"nothing is running and the session is paused: {session.stop_reason}",
                     result.next_command)
    if session.state is not SessionState.ACTIVE:
        return None
    read = {a.id for a in agents}
    work = step_work(session.model_dump(mode="json"), [a.model_dump(mode="json") for a in agents], now(),
                     limits.on_usage_limit, damaged=[i for i in store.agent_ids() if i not in read])
    if work:
        return Quiet(Woke.WORK, f"nothing is running and the next step has work ({'; '.join(work)})", "orch step")
    blocked = [a.id for a in agents if a.state is AgentState.BLOCKED_BY_POLICY]
    if blocked:
        return Quiet(Woke.DECISION, f"nothing is running and {', '.join(blocked)} waits for a person",
                     result.next_command)
    if due_ahead:
        return None
    return Quiet(Woke.DECISION, "nothing is running, nothing is due and a step has nothing to do — "
                 + "; ".join(result.missing[:3]), result.next_command)
