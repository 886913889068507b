"""Budgets: the policy's `[budget]` limits, and what the session and each agent spent against them.

Spend is read from the agents' own books (agent.stats.usage, folded by the ingest), so
the figure a budget is judged on is the figure the report sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..core.models import Agent, Usage

LIMIT_KEYS = ("session_usd", "agent_usd", "session_tokens", "agent_tokens")


#: The largest limit: dollars and tokens a JSON reader still holds exactly.
LIMIT_MAX = 2 ** 53


class BudgetPolicy(BaseModel):
    """`[budget]` in the policy: any subset of the limits; none set means no budget.

    Strict like the rest of the policy: numbers are numbers (`session_usd = "20"` is an
    error, not 20), finite (`inf` is refused: `orch budget --json` must stay JSON) and positive."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    session_usd: Optional[float] = Field(None, gt=0, le=LIMIT_MAX)
    agent_usd: Optional[float] = Field(None, gt=0, le=LIMIT_MAX)
    session_tokens: Optional[int] = Field(None, gt=0, le=LIMIT_MAX)
    agent_tokens: Optional[int] = Field(None, gt=0, le=LIMIT_MAX)
    warn_at: float = Field(0.8, gt=0, le=1)  # share of a limit at which orch warns once
    on_budget: Literal["finish", "stop"] = "finish"  # running agents finish their task, or are stopped


@dataclass(frozen=True)
class Spend:
    """One limit and what was spent against it."""

    key: str  # e.g. "session_usd", "agent_usd:implementer-1"
    limit_key: str  # the policy key: session_usd, agent_usd, session_tokens, agent_tokens
    spent: float
    limit: float
    agent: Optional[str] = None

    @property
    def share(self) -> float:
        return self.spent / self.limit if self.limit else 0.0

    @property
    def reached(self) -> bool:
        return self.spent >= self.limit

    def text(self) -> str:
        """'$0.0300 of $0.0200' or '12000 of 10000 tokens', prefixed with the agent when per agent."""
        if self.limit_key.endswith("_usd"):
            figure = f"${self.spent:.4f} of ${self.limit:.4f}"
        else:
            figure = f"{int(self.spent)} of {int(self.limit)} tokens"
        return f"agent {self.agent}: {figure}" if self.agent else figure


def total_usage(agents: Iterable[Agent]) -> Usage:
    """The session's spend: the sum of its agents' usage (the report's total)."""
    total = Usage()
    for a in agents:
        total = total.plus(a.stats.usage)
    return total


def measure(budget: BudgetPolicy, agents: list[Agent]) -> list[Spend]:
    """Every configured limit with the spend against it, session limits first."""
    out: list[Spend] = []
    total = total_usage(agents)
    if budget.session_usd is not None:
        out.append(Spend("session_usd", "session_usd", total.cost_usd, budget.session_usd))
    if budget.session_tokens is not None:
        out.append(Spend("session_tokens", "session_tokens", total.input_tokens + total.output_tokens,
                         budget.session_tokens))
    for a in agents:
        u = a.stats.usage
        if budget.agent_usd is not None:
            out.append(Spend(f"agent_usd:{a.id}", "agent_usd", u.cost_usd, budget.agent_usd, a.id))
        if budget.agent_tokens is not None:
            out.append(Spend(f"agent_tokens:{a.id}", "agent_tokens", u.input_tokens + u.output_tokens,
                             budget.agent_tokens, a.id))
    return out


def pause_reason(reached: list[Spend]) -> str:
    """The session's pause reason: 'budget reached ($0.0300 of $0.0200)'."""
    return "budget reached (" + "; ".join(s.text() for s in reached[:3]) + ")"


def is_budget_pause(reason: str) -> bool:
    return reason.startswith("budget reached")


def agent_over(budget: BudgetPolicy, agent: Agent) -> Optional[Spend]:
    """The first of the agent's own limits (agent_usd, agent_tokens) it has reached, or None."""
    return next((s for s in measure(budget.model_copy(update={"session_usd": None, "session_tokens": None}), [agent])
                 if s.reached), None)
