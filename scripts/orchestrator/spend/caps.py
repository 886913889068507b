"""Concurrency caps: `[limits] max_agents` and `max_per_cli` bound how many agent processes run.

The coordinator asks before it gives a queued task to an agent or hires one; a task that
would pass a cap stays queued with the reason (Task.waiting) and starts when a slot frees.
Counted: agents whose process is live, plus the starts this step already decided.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

from ..core.models import Agent, AgentState

LIVE = (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT)


class ConcurrencyCaps:
    """The caps of one step: reserve a slot per start, or say why a task must wait."""

    def __init__(self, max_agents: Optional[int], max_per_cli: dict[str, int], agents: Iterable[Agent],
                 planned_clis: Iterable[str] = ()):
        self.max_agents = max_agents
        self.max_per_cli = dict(max_per_cli)
        self.running: Counter[str] = Counter(a.cli for a in agents if a.state in LIVE)
        self.running.update(planned_clis)

    @classmethod
    def of_store(cls, store, agents: Iterable[Agent], planned_clis: Iterable[str] = ()) -> "ConcurrencyCaps":
        """The caps of the workspace's policy."""
        from ..safety.policy import load_policy, workspace_of

        limits = load_policy(workspace_of(store)).limits
        return cls(limits.max_agents, limits.max_per_cli, agents, planned_clis)

    def full(self, cli: str) -> Optional[str]:
        """Why one more agent of this CLI may not start now, or None when it may."""
        total = sum(self.running.values())
        if self.max_agents is not None and total >= self.max_agents:
            return f"waiting: {total} agent(s) running, the policy's max_agents is {self.max_agents}"
        cap = self.max_per_cli.get(cli)
        if cap is not None and self.running[cli] >= cap:
            return f"waiting: {self.running[cli]} {cli} agent(s) running, the policy's max_per_cli.{cli} is {cap}"
        return None

    def reserve(self, cli: str) -> None:
        self.running[cli] += 1
