"""The budget gate of a coordinator step: warn at warn_at, pause at a limit, resume once raised.

A paused session starts nothing new: no task is assigned, no agent is hired, resumed,
recovered or nudged. Running agents finish their current run (`on_budget = "finish"`) or
are stopped (`"stop"`). Raising the limit (`orch budget --raise`, or editing the policy)
lets the next step resume the session.

An agent over its own limit (agent_usd, agent_tokens) that the session can do without — a
panel reviewer while another member can work, a race candidate, a race's loser (the caller's
`exempt` says which) — does not pause the session: it takes no more work (with "stop" its
run is stopped), and the session goes on without it.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..core.lifecycle import transition
from ..core.models import Agent, EndRequest, AuditEntry, EventKind, SessionState
from ..store.sessions import SessionStore
from .budget import BudgetPolicy, Spend, measure, is_budget_pause, pause_reason
from .caps import LIVE

Decide = Callable[..., None]
Exempt = Callable[[Agent, Spend], bool]  # may this agent's own limit be passed without pausing the session?


def load_budget(store: SessionStore) -> BudgetPolicy:
    from ..safety.policy import load_policy, workspace_of

    return load_policy(workspace_of(store)).budget


def apply_budget(store: SessionStore, decide: Decide, exempt: Optional[Exempt] = None,
                 agents: Optional[list[Agent]] = None) -> bool:
    """Judge the session's spend against the policy's budget; True while the session is paused.
    `agents`: the session's agents as the caller just read them (else they are read here)."""
    session = store.read_session()
    if session.state not in (SessionState.ACTIVE, SessionState.PAUSED):
        return False
    budget = load_budget(store)
    agents = {a.id: a for a in (store.agents() if agents is None else agents)}
    spends = measure(budget, list(agents.values()))
    over_alone = [s for s in spends if s.reached and s.agent and exempt is not None and exempt(agents[s.agent], s)]
    reached = [s for s in spends if s.reached and s not in over_alone]
    stop_agents = False
    with store.edit_session() as session:
        for s in over_alone:
            mark = f"alone:{s.key}@{s.limit:g}"
            if mark not in session.spend_warned:
                session.spend_warned.append(mark)
                decide(f"{s.agent} is over its own budget ({s.text()}): it takes no more work, and the session goes "
                       "on without it", agent=s.agent, kind=EventKind.BUDGET_WARNING, limit_key=s.limit_key,
                       spent=s.spent, limit=s.limit, alone=True)
        for s in spends:
            mark = f"{s.key}@{s.limit:g}"
            if not s.reached and s.share >= budget.warn_at and mark not in session.spend_warned:
                session.spend_warned.append(mark)
                text = f"budget warning: {s.text()} ({s.share:.0%}, warn_at {budget.warn_at:g})"
                decide(text, agent=s.agent, kind=EventKind.BUDGET_WARNING, limit_key=s.limit_key,
                       spent=s.spent, limit=s.limit)
        if session.state is SessionState.ACTIVE and reached:
            reason = pause_reason(reached)
            transition(session, SessionState.PAUSED, reason)  # recorded by the budget.reached event below
            session.stop_reason = reason
            how = "running agents are stopped" if budget.on_budget == "stop" else "running agents finish their task"
            decide(f"session paused: {reason}; nothing new starts, {how} — `orch budget --raise` to continue",
                   kind=EventKind.BUDGET_REACHED, state="paused",
                   limits=[{"key": s.key, "spent": s.spent, "limit": s.limit} for s in reached])
            store.append_audit(AuditEntry(agent="session", action="budget_paused",
                                          denied_tool=", ".join(s.limit_key for s in reached),
                                          rung_before="active", rung_after="paused", rule=reason))
            stop_agents = budget.on_budget == "stop"
        elif session.state is SessionState.PAUSED and is_budget_pause(session.stop_reason):
            if reached:
                session.stop_reason = pause_reason(reached)  # the figures grow while agents finish
            else:
                old = session.stop_reason
                transition(session, SessionState.ACTIVE, "the budget allows more work")  # recorded below
                session.stop_reason = ""
                decide(f"session resumed: the budget allows more work (was {old})", kind=EventKind.SESSION_STATE,
                       state="active")
                store.append_audit(AuditEntry(agent="session", action="budget_resumed", rung_before="paused",
                                              rung_after="active", rule=f"budget now allows it (was {old})"))
        paused = session.state is SessionState.PAUSED
        reason = session.stop_reason
    if stop_agents:
        from ..runtime.workers import end_current_run

        for a in store.agents():
            if a.state in LIVE:
                end_current_run(store, a.id, EndRequest.BUDGET, f"limit: {reason} (on_budget = stop)")
                decide(f"{a.id} stopped: {reason}", agent=a.id, task=a.current_task)
    if budget.on_budget == "stop" and not paused:
        from ..runtime.workers import end_current_run

        for s in over_alone:  # over its own limit, and the session goes on without it
            if agents[s.agent].state in LIVE:
                end_current_run(store, s.agent, EndRequest.BUDGET, f"limit: its own budget ({s.text()}, on_budget = stop)")
                decide(f"{s.agent} stopped: over its own budget ({s.text()}, on_budget = stop)", agent=s.agent,
                       task=agents[s.agent].current_task)
    return paused  # the budget events are told by whoever reads the log next (notify/consumer.py)
