"""The digest `orch wait` prints: what changed since the previous wait, where every agent
stands, and what to do next. A view: it reads what it is given and the store, never writes."""

from __future__ import annotations

from typing import Any, Optional

from ..core.models import Event
from ..criteria.completion import judge, raw_sizes
from ..store.sessions import SessionStore
from . import digest_form as form


def describe(e: Event) -> str:
    """One line a conductor can act on."""
    return form.describe(e.model_dump(mode="json", exclude_none=True))


def build_digest(store: SessionStore, counts: dict[str, int], triggers: list[str], waited: float,
                 timed_out: bool, woke: Optional[Any] = None, due: Optional[Any] = None,
                 agents: Optional[list] = None) -> dict[str, Any]:
    """What changed since the previous wait (`counts`: how many events of each kind), where
    every agent stands, and what to do next (views/digest_form.py, over the stored form).
    `agents`: every agent as stored now, when the caller has just read them (else read here).

    `woke`: why the wait returned (engine.quiet.Quiet); `due`: the clock-driven step it
    reached, or the earliest one ahead (engine.due.Due) — so a caller can tell an early
    return (an event, work for a step) from one at the due time."""
    session = store.read_session().model_dump(mode="json")
    read = store.agents() if agents is None else agents  # as they stand now, deferred progress included
    agents = [a.model_dump(mode="json") for a in read]
    damaged = [i for i in store.agent_ids() if i not in {a.id for a in read}]
    verdict = judge(session, agents, raw_sizes(store.path), damaged=damaged)
    return form.digest(session, agents, verdict, counts, triggers, waited, timed_out,
                       (woke.woke.value, woke.why, woke.command) if woke is not None else None,
                       _due_form(due) if due is not None else None)


def _due_form(due: Any) -> dict[str, Any]:
    return {"at": due.at, "cause": due.cause.value, "what": due.what, "command": due.command, "agent": due.agent,
            "task": due.task}
