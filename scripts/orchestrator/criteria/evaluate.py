"""The completion criteria: the objective test that gates finalizing a session.

ALL agents done, ALL outputs parsed, ALL blockers resolved and verified, NO agent idle
while work remains, NO work remaining. `evaluate` says which of them fail, by name, and
the one command that moves the session forward.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from ..core.models import Agent, Model
from ..store.sessions import SessionStore
from .completion import ROLE_CAN_DO, judge, raw_sizes

__all__ = ["CriteriaResult", "ROLE_CAN_DO", "evaluate"]


class CriteriaResult(Model):
    """What `orch check --json` prints."""

    session: str
    ok: bool
    session_state: str
    missing: list[str] = Field(default_factory=list)
    live_agents: list[str] = Field(default_factory=list)
    not_done_agents: list[str] = Field(default_factory=list)
    idle_with_work: list[str] = Field(default_factory=list)
    denied_agents: list[str] = Field(default_factory=list)
    blocked_agents: list[str] = Field(default_factory=list)
    unparsed_agents: list[str] = Field(default_factory=list)
    open_blockers: list[str] = Field(default_factory=list)
    open_tasks: list[str] = Field(default_factory=list)
    parked_agents: list[str] = Field(default_factory=list)  # waiting for a usage or rate limit to reset
    resume_at: Optional[str] = None  # the earliest time a parked agent resumes (ISO, UTC)
    failed_tasks: list[str] = Field(default_factory=list)
    stop_reason: str = ""
    next_steps: list[str] = Field(default_factory=list)
    next_command: str = ""
    verification: str = ""  # the project's tests on the final integration commit, in words


def evaluate(store: SessionStore, agents: Optional[list[Agent]] = None) -> CriteriaResult:
    """Check every criterion on the session as it stands on disk (pure: it reads, never syncs
    or writes; a caller that wants fresh state syncs first). `agents`, when the caller has
    just read them, saves reading them again. The judging itself is criteria/completion.py,
    over the stored form, shared with `orch check`'s fast read path."""
    session = store.read_session()
    agents = store.agents() if agents is None else agents
    read = {a.id for a in agents}
    damaged = [i for i in store.agent_ids() if i not in read]  # a meta.json that cannot be read is never "done"
    verdict = judge(session.model_dump(mode="json"), [a.model_dump(mode="json") for a in agents],
                    raw_sizes(store.path), damaged=damaged)
    return CriteriaResult.model_validate(verdict)
