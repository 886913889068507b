"""A review panel: several reviewers of different CLIs on the same merged commit, one ledger.

    review   one review task per member, each on its member's seat (its CLI, `Task.seat`), all
             queued in the same step once the tests have judged the integration branch: they
             read the same commit, in parallel
    ledger   their blockers go into one ledger: review/blocker_ledger.py de-duplicates reports
             of different reviewers (same place, or near-identical words) and records who filed
             each blocker and by which rule it was matched
    verify   each fixed blocker is verified by a reviewer that filed it — the first filer still
             available, else any member that is; a member is unavailable while parked by a usage
             limit, failed or aborted, benched, or over its own budget
    budget   a member over its own agent limit (agent_usd, agent_tokens) leaves the panel
             instead of pausing the session, as long as another member can still work

A session without a panel (`Team.reviewers` with fewer than two members) takes none of these
paths: one reviewer, as before. The functions read and return; the coordinator queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..core.models import Agent, AgentState, Blocker, Role, Session, TaskKind, TaskState
from ..review.blocker_ledger import filers
from ..spend.budget import BudgetPolicy, agent_over
from ..criteria.advice import SLOT_STATES


def seat_of(agent: Agent) -> str:
    """The seat an agent fills: its CLI, with the stream shape of a sim member (cli/variant)."""
    return f"{agent.cli}/{agent.sim_format}" if agent.sim_format else agent.cli


def members(session: Session) -> list[str]:
    """The panel's seats, in the order given (empty: no panel)."""
    return list(session.team.reviewers) if is_panel(session) else []


def is_panel(session: Session) -> bool:
    return len(session.team.reviewers) >= 2


def member_agent(session: Session, agents: Iterable[Agent], seat: str) -> Optional[Agent]:
    """The reviewer that holds a seat: a benched one keeps it (the panel goes on without that
    seat), else the latest that can still take work (a failed, aborted or retired one never
    does again: its seat's next task hires a new one — None until then)."""
    mine = [a for a in sorted(agents, key=lambda a: a.created_at) if a.role is Role.REVIEWER and seat_of(a) == seat]
    gone = next((a for a in mine if a.id in session.benched), None)
    if gone is not None:
        return gone
    holding = [a for a in mine if a.state.value in SLOT_STATES or a.state is AgentState.PARKED]
    return holding[-1] if holding else None


def unavailable(session: Session, agent: Optional[Agent], budget: Optional[BudgetPolicy]) -> str:
    """Why a member cannot take a task now ("" when it can; a seat with no agent yet can)."""
    if agent is None:
        return ""
    if agent.id in session.benched:
        return session.benched[agent.id]
    if agent.state is AgentState.PARKED:
        return f"parked by a usage limit until {agent.resume_at.strftime('%H:%M:%S') + ' UTC' if agent.resume_at else 'its reset'}"
    if agent.state in (AgentState.FAILED, AgentState.ABORTED):
        return f"{agent.state.value}: {agent.state_reason[:120]}"
    over = agent_over(budget, agent) if budget is not None else None
    if over is not None:
        return f"over its budget ({over.text()})"
    return ""


def out_of_panel(session: Session, agent: Optional[Agent], budget: Optional[BudgetPolicy]) -> str:
    """Why a member takes no more panel work at all ("" when it may): benched, or over its own
    budget. (Parked or failing for now is not out: its task waits for the reset, or is retried.)"""
    if agent is None:
        return ""
    if agent.id in session.benched:
        return session.benched[agent.id]
    over = agent_over(budget, agent) if budget is not None else None
    return f"over its budget ({over.text()})" if over is not None else ""


@dataclass
class VerifyAsk:
    """One verify task of a panel: the seat that verifies, the blockers, and why that seat."""

    seat: str
    prefer: Optional[str]  # the member's agent, when hired
    blockers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "B-2 for reviewer-1 (over its budget …)"


def review_seats(session: Session, agents: list[Agent], budget: Optional[BudgetPolicy]) -> list[tuple[str, Optional[str]]]:
    """(seat, the member's agent) for each member that reviews now: every available one (all of
    them when none is, so the session waits or pauses rather than go unreviewed)."""
    seats = []
    for seat in members(session):
        agent = member_agent(session, agents, seat)
        seats.append((seat, agent.id if agent else None, unavailable(session, agent, budget)))
    ready = [(s, a) for s, a, why in seats if not why]
    return ready or [(s, a) for s, a, _ in seats]


def verify_asks(session: Session, agents: list[Agent], ids: list[str], budget: Optional[BudgetPolicy]) -> list[VerifyAsk]:
    """Who verifies each fixed blocker: its first filer that is available, else the first
    available member (the reason is noted), else its first filer all the same (it waits)."""
    by_seat: dict[str, VerifyAsk] = {}
    seat_agent = {seat: member_agent(session, agents, seat) for seat in members(session)}
    why_not = {seat: unavailable(session, agent, budget) for seat, agent in seat_agent.items()}
    agent_seat = {a.id: seat_of(a) for a in agents if a.role is Role.REVIEWER}
    for blocker_id in ids:
        blocker = session.blocker(blocker_id)
        filed = [agent_seat[r] for r in filers(blocker) if r in agent_seat] if blocker is not None else []
        chosen = next((s for s in filed if s in why_not and not why_not[s]), None)
        note = ""
        if chosen is None:
            chosen = next((s for s in members(session) if not why_not[s]), None)
            if chosen is not None and filed:
                who = seat_agent[filed[0]].id if seat_agent.get(filed[0]) else filed[0]
                note = f"{blocker_id} for {who} ({why_not.get(filed[0]) or 'not a member'})"
        if chosen is None:
            chosen = filed[0] if filed else members(session)[0]
        ask = by_seat.setdefault(chosen, VerifyAsk(chosen, seat_agent[chosen].id if seat_agent.get(chosen) else None))
        ask.blockers.append(blocker_id)
        if note:
            ask.notes.append(note)
    return list(by_seat.values())


def times_asked(session: Session, blocker_id: str) -> int:
    """How many verify tasks of the current round asked about a blocker since a person last
    continued the session (`orch resume`, `orch retry`: the count starts again)."""
    return sum(1 for t in session.tasks if t.round == session.round and t.kind is TaskKind.VERIFY
               and blocker_id in t.blockers
               and (session.continued_at is None or t.created_at > session.continued_at))


def another_member(session: Session, agents: list[Agent], seat: str, budget: Optional[BudgetPolicy]) -> Optional[str]:
    """An available member other than seat (None: the panel has no one else now)."""
    for other in members(session):
        if other != seat and not unavailable(session, member_agent(session, agents, other), budget):
            return other
    return None


def may_leave(session: Session, agents: list[Agent], agent: Agent, budget: Optional[BudgetPolicy]) -> bool:
    """A member over its own budget leaves the panel rather than pause the session, while
    another member can still work."""
    if not is_panel(session) or agent.role is not Role.REVIEWER or seat_of(agent) not in members(session):
        return False
    return another_member(session, agents, seat_of(agent), budget) is not None


def open_seat_tasks(session: Session, seat: str) -> list:
    return [t for t in session.tasks if t.seat == seat and t.state in (TaskState.QUEUED, TaskState.RUNNING)]


def blocker_seats(blocker: Blocker, agents: list[Agent]) -> list[str]:
    seats = {a.id: seat_of(a) for a in agents}
    return [seats.get(r, r) for r in filers(blocker)]
