"""The completion criteria: the objective test that gates finalizing a session.

ALL agents done, ALL outputs parsed, ALL blockers resolved and verified, NO agent idle
while work remains, NO work remaining. `evaluate` says which of them fail, by name, and
the one command that moves the session forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from ..core.lifecycle import LIVE_AGENT_STATES as LIVE_STATES
from ..core.models import Agent, AgentState, BlockerState, Model, SessionState, TaskState
from ..store.sessions import SessionStore
from .continuation import continue_steps, failed_tasks

FINISHED_AGENT_STATES = (AgentState.DONE, AgentState.ABORTED)
OPEN_TASK_STATES = (TaskState.QUEUED, TaskState.RUNNING, TaskState.FAILED)

#: Which roles can take which kind of task (the architect implements when it would idle).
ROLE_CAN_DO: dict[str, frozenset[str]] = {
    "architect": frozenset({"spec", "implement", "fix", "adhoc"}),
    "implementer": frozenset({"implement", "fix", "adhoc"}),
    "worker": frozenset({"implement", "fix", "adhoc"}),
    "reviewer": frozenset({"review", "verify", "adhoc"}),
}


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
    failed_tasks: list[str] = Field(default_factory=list)
    stop_reason: str = ""
    next_steps: list[str] = Field(default_factory=list)
    next_command: str = ""


def _unparsed(store: SessionStore, agent: Agent) -> bool:
    """True while raw output exists that the ingest has not normalized yet."""
    cursor = agent.ingest
    if agent.runs and agent.runs[-1].n not in cursor.finished_runs:
        return True
    d = store.agent_dir(agent.id)
    for name, offset in (("stdout.jsonl", cursor.stdout_offset), ("stderr.log", cursor.stderr_offset)):
        p: Path = d / name
        if p.exists() and p.stat().st_size > offset:
            return True
    return False


def evaluate(store: SessionStore, agents: Optional[list[Agent]] = None) -> CriteriaResult:
    """Check every criterion on the session as it stands on disk (pure: it reads, never syncs
    or writes; a caller that wants fresh state syncs first). `agents`, when the caller has
    just read them, saves reading them again."""
    session = store.read_session()
    agents = store.agents() if agents is None else agents
    r = CriteriaResult(session=session.id, ok=False, session_state=session.state.value)

    open_tasks = [t for t in session.tasks if t.state in OPEN_TASK_STATES]
    queued_kinds = {t.kind.value for t in open_tasks if t.state is TaskState.QUEUED}
    r.open_tasks = [f"{t.id} ({t.kind.value}, {t.state.value}{', ' + t.agent if t.agent else ''}): {t.title}"
                    for t in open_tasks]
    r.open_blockers = [f"{b.id} [{b.severity.value}] {b.file}{':' + str(b.line) if b.line else ''} — "
                       f"{b.state.value}: {b.description[:120]}"
                       for b in session.blockers if b.state is not BlockerState.VERIFIED]
    for a in agents:
        if a.state in LIVE_STATES:
            r.live_agents.append(a.id)
        if a.state not in FINISHED_AGENT_STATES:
            r.not_done_agents.append(f"{a.id} ({a.state.value})")
        if a.state is AgentState.IDLE and queued_kinds & ROLE_CAN_DO.get(a.role.value, frozenset()):
            r.idle_with_work.append(a.id)
        if a.state is AgentState.DENIED:
            r.denied_agents.append(a.id)
        if a.state is AgentState.BLOCKED_BY_POLICY:
            r.blocked_agents.append(a.id)
        if _unparsed(store, a):
            r.unparsed_agents.append(a.id)

    if r.not_done_agents:
        r.missing.append(f"{len(r.not_done_agents)} agent(s) not done: {', '.join(r.not_done_agents)}")
    if r.unparsed_agents:
        r.missing.append(f"output not fully parsed yet for: {', '.join(r.unparsed_agents)}")
    if r.open_blockers:
        r.missing.append(f"{len(r.open_blockers)} blocker(s) not verified: "
                         + "; ".join(b.split(' —')[0] for b in r.open_blockers))
    if r.idle_with_work:
        r.missing.append(f"idle while work remains: {', '.join(r.idle_with_work)}")
    if open_tasks:
        r.missing.append(f"{len(open_tasks)} task(s) remain: " + "; ".join(t.split(':')[0] for t in r.open_tasks))
    if session.coordinated and not session.tasks:
        r.missing.append("no work has been planned yet")
    if session.state is SessionState.ABORTED:
        r.missing.append("the session was aborted")
    r.ok = not r.missing
    r.failed_tasks = [f"{t.id} ({t.title}) failed {t.attempts} time(s), last: {(t.result or '?').splitlines()[0][:200]}"
                      for t in failed_tasks(session)]
    r.stop_reason = session.stop_reason
    if session.state is SessionState.STOPPED:
        r.missing.append(f"the session is stopped: {session.stop_reason or 'no reason recorded'}")
        r.ok = False
        r.next_steps = continue_steps(session) or [f"orch resume {session.id}   # carry on under the autopilot"]
    else:
        r.next_steps = next_steps(r, session.state)
    r.next_command = r.next_steps[0] if r.next_steps else ""
    return r


def next_steps(r: CriteriaResult, state: SessionState) -> list[str]:
    """The commands that move the session forward, most urgent first."""
    steps: list[str] = []
    for a in r.blocked_agents:
        steps.append(f"orch allow {a}   # or: orch deny {a} (policy blocked what it asked for)")
    if r.denied_agents or r.idle_with_work:
        steps.append("orch step   # recover denied agents and give idle agents their next task")
    if r.live_agents:
        steps.append("orch wait --timeout 60   # agents are working: " + ", ".join(r.live_agents))
    if not steps and not r.ok and state is not SessionState.ABORTED:
        steps.append("orch step   # close finished tasks, plan the next round, retire agents with nothing left")
    if r.ok and state is SessionState.ACTIVE:
        steps.append("orch report   # criteria hold: finalize the session")
    return steps
