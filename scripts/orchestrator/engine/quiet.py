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

from ..core.models import Agent, now
from ..criteria.advice import quiet_reason
from ..criteria.completion import judge, raw_sizes
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
    session = store.read_session().model_dump(mode="json")
    stored = [a.model_dump(mode="json") for a in agents]
    read = {a.id for a in agents}
    damaged = [i for i in store.agent_ids() if i not in read]  # a meta.json that cannot be read is never "done"
    verdict = judge(session, stored, raw_sizes(store.path), damaged=damaged)
    found = quiet_reason(session, stored, verdict, now(), limits.on_usage_limit, due_ahead, damaged)
    return None if found is None else Quiet(Woke(found[0]), found[1], found[2])
