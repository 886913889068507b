"""The coordinator: one step at a time over the session store (`orch step`).

Each step reads what agents did since the last one, decides, acts, and logs every
decision with its reason to events.jsonl:

    round 1   spec (architect) → implement tasks in parallel (implementers; an idle
              architect takes one) → review (a reviewer, preferably another vendor)
    round 2+  fix the open blockers (each by the agent that wrote the file) → verify
              (the reviewer, resumed) → verified blockers close; reopened or new ones
              start the next round, up to max_rounds
    done      every blocker verified, nothing queued → agents retired → `orch report`

Assignments are recorded before agents are started, and a task whose agent never
started is started by the next step: a step killed at any moment loses nothing and
does nothing twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..adapters import OFFLINE_CLI, get_adapter, installed_clis
from ..core.lifecycle import transition
from ..review.blocker_ledger import apply_review, assign_blockers, mark_fixed, open_blockers, reviewer_verifies
from .continuation import billing_stop_reason, is_due, login_stop_reason, needs_login, schedule_retry
from ..criteria.advice import HOME_ROLE as HOME_ROLE_NAMES, SLOT_STATES
from ..criteria.evaluate import ROLE_CAN_DO
from ..core.errors import OrchError
from ..core.models import (
    Agent, AgentState, BlockerState, EndRequest, Event, EventKind, FailureKind, Role, RoundRecord, Session,
    SessionState, Task, TaskKind, TaskState, VerdictRecord, now,
)
from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..runtime.ingest import refresh_session, sync_session
from . import integration, panel, verification
from .race import Races, held, open_race, placement, width as race_width
from .plan_prompts import (
    implement_prompt, limit_reset_prompt, merge_prompt, nudge_prompt, read_task_list, spec_prompt, unchanged_prompt,
)
from ..review.engine import record_review, review_from_verdict
from ..review.prompts import fix_prompt, reask_prompt, review_prompt, verify_prompt
from ..safety.policy import Limits, load_limits
from ..store.sessions import SessionStore
from ..review.verdicts import parse_verdict
from ..runtime.workers import end_current_run, launch_agent, resume_agent
from ..spend.caps import ConcurrencyCaps
from ..spend.gate import apply_budget
from ..worktrees.trust import WorktreeRefused

MAX_TASK_ATTEMPTS = 2
TAKE_TURNS = "waits: writers take turns in the shared folder (no worktrees)"
DOER_ORDER = {  # who takes a task, in order of preference; the architect fills in when idle
    TaskKind.SPEC: (Role.ARCHITECT,),
    TaskKind.IMPLEMENT: (Role.IMPLEMENTER, Role.WORKER, Role.ARCHITECT),
    TaskKind.FIX: (Role.IMPLEMENTER, Role.WORKER, Role.ARCHITECT),
    TaskKind.REVIEW: (Role.REVIEWER,),
    TaskKind.VERIFY: (Role.REVIEWER,),
    TaskKind.MERGE: (Role.IMPLEMENTER, Role.WORKER, Role.ARCHITECT),
    TaskKind.ADHOC: (),
}
HOME_ROLE = {TaskKind(kind): Role(role) for kind, role in HOME_ROLE_NAMES.items()}
CHANGING_KINDS = (TaskKind.IMPLEMENT, TaskKind.FIX)  # done only with a change (or the reviewer's word)


@dataclass
class StepResult:
    session: str
    actions: list[str] = field(default_factory=list)
    session_state: str = "active"


@dataclass
class _Start:
    """An agent to start or resume, decided under the session lock, done after it."""

    task_id: str
    agent_id: str
    role: Role
    cli: str
    prompt: str
    new: bool
    sim_format: Optional[str] = None
    fresh: bool = False


class Coordinator:
    def __init__(self, store: SessionStore, limits: Optional["Limits"] = None):
        self.store = store
        self.limits = limits or load_limits(store)
        self.actions: list[str] = []
        self.events: list[Event] = []
        self.starts: list[_Start] = []
        self.hired: dict[Role, int] = {}  # agents decided this step, not yet on disk
        self.hired_seats: dict[str, int] = {}  # the same, per seat (a panel member, a race candidate)
        self.gate = verification.Gate(store, self.decide, self._stop)  # the project's tests on each merge
        self.races = Races(self)  # implement tasks raced by several implementers (engine/race.py)
        self._budget = None  # the policy's [budget], read once per step when a panel or a race asks

    # ---------------------------------------------------------------- logging
    def decide(self, text: str, *, agent: Optional[str] = None, task: Optional[str] = None,
               round: Optional[int] = None, kind: EventKind = EventKind.DECISION, **data) -> None:
        """Record a decision and its reason (events.jsonl) and report it to the caller."""
        self.actions.append(text)
        self.events.append(Event(kind=kind, agent=agent, task=task, round=round, reason=text, data=data))

    def flush_events(self) -> None:
        if self.events:
            self.store.append_events(self.events)
            self.events = []

    # ---------------------------------------------------------------- the step
    def step(self) -> StepResult:
        with self.store.step_lock():
            if integration.ensure_set_up(self.store):
                self.decide("the session's git set-up, cut short when it started, is done")
            refresh_session(self.store)
            # One read of every agent serves the budget, parks, recovery and stalls: each of them
            # picks its agents from it and re-reads the one it acts on under that agent's lock. An
            # agent that changed since is seen by the next step (its change is an event a wait
            # wakes for). With 100 agents they read 100 metas a step between them, not 500.
            agents = self.store.agents()
            if not apply_budget(self.store, self.decide, exempt=self._may_go_over, agents=agents):
                self._handle_parked(agents)  # (a paused session starts nothing new)
                self._recover_denied(agents)
                self._handle_stalls(agents)
                self.races.enforce_deadlines()
            with self.store.edit_session() as session:
                agents = {a.id: a for a in self.store.agents()}
                if session.state is SessionState.ACTIVE:
                    self._recover_merge(session)
                    self._harvest(session, agents)
                    if session.races and session.state is SessionState.ACTIVE:
                        self.races.step(session, agents)  # test, judge and merge races whose candidates ended
                    if session.coordinated and session.state is SessionState.ACTIVE:
                        self.events += self.gate.step(session, agents)
                    if session.coordinated and session.state is SessionState.ACTIVE:
                        self._advance(session)
                    if session.state is SessionState.ACTIVE:  # a stop in this step starts nothing more
                        self._assign(session, agents)
                    self._retire(session, agents)
            self.flush_events()
            self._start_agents()
            self.gate.start()
            self.flush_events()
            state = self.store.read_session().state.value
        return StepResult(session=self.store.id, actions=self.actions, session_state=state)

    # ---------------------------------------------------------------- usage limits
    def _handle_parked(self, agents: list[Agent]) -> None:
        """Resume parked agents whose limit has reset (same CLI session, work kept), and park
        idle agents of a CLI that is parked: one limit, not one discovery per agent."""
        at = now()
        due = [a for a in agents if a.state is AgentState.PARKED and a.resume_at is not None and a.resume_at <= at]
        session = self.store.read_session() if due else None  # resuming changes agents, never tasks
        for agent in due:
            parked_for = (at - agent.state_since).total_seconds()
            task = session.task(agent.current_task) if agent.current_task else None
            with self.store.edit_agent(agent.id) as a:
                a.parked_seconds += parked_for
                a.resume_at = None
                idle = transition(a, AgentState.IDLE, "its limit has reset; its task went elsewhere") \
                    if task is None or task.state is not TaskState.RUNNING or task.agent != a.id else None
            if idle is not None:
                self.events.append(idle)
                continue
            self.decide(f"{agent.id}'s {agent.cli} limit has reset after {int(parked_for)} s parked: resumed in the "
                        "same CLI session", agent=agent.id, task=agent.current_task)
            self.flush_events()
            resume_agent(self.store, agent.id, limit_reset_prompt(), task_id=agent.current_task)
        if due:
            agents = self.store.agents()  # as the resumes left them
        parked = parked_keys(agents)
        for agent in agents:
            key = cli_key(agent)
            if agent.state is AgentState.IDLE and key in parked:
                with self.store.edit_agent(agent.id) as a:
                    a.limit, a.resume_at = parked[key]
                    event = transition(a, AgentState.PARKED, f"parked with its CLI ({key}): the same limit applies")
                if event is not None:
                    self.events.append(event)
        self.flush_events()

    # ---------------------------------------------------------------- recovery and stalls
    def _recover_denied(self, agents: list[Agent]) -> None:
        from ..recovery.recover import recover_denied_agents  # the policy decides how far an agent may climb

        for outcome in recover_denied_agents(self.store, agents=agents) or []:
            self.actions.append(str(outcome))

    def _handle_stalls(self, agents: list[Agent]) -> None:
        """A silent agent is nudged (same CLI session), then restarted fresh, then given up;
        a run past its wall-time limit is stopped and fails its task."""
        for agent in agents:
            if agent.state in LIVE and agent.runs:
                ran = (now() - agent.runs[-1].started_at).total_seconds()
                if ran > self.limits.run_wall_seconds:
                    end_current_run(self.store, agent.id, EndRequest.WALL_TIME,
                                    f"limit: ran {int(ran)} s, over the policy's "
                                    f"run_wall_seconds ({int(self.limits.run_wall_seconds)})")
                    self.decide(f"{agent.id} ran {int(ran)} s, past the wall-time limit: stopped",
                                agent=agent.id, task=agent.current_task)
                    continue
            if agent.state not in LIVE or not agent.last_activity_at or agent.role is Role.VERIFIER:
                continue  # any live agent: the stall limit alone decides (the verifier: its own time limit)
            quiet = (now() - agent.last_activity_at).total_seconds()
            if quiet < self.limits.stall_after_seconds:
                continue
            if agent.nudges < self.limits.max_nudges:
                how, fresh = "nudged", False
            elif agent.restarts < self.limits.max_restarts:
                how, fresh = "restarted", True
            else:
                how, fresh = "given up", None
            with self.store.edit_agent(agent.id) as a:
                if how == "nudged":
                    a.nudges += 1
                elif how == "restarted":
                    a.restarts += 1
            end_current_run(self.store, agent.id, EndRequest.STALL, f"nudge: {how} after {int(quiet)} s of silence")
            sync_session(self.store)
            self.decide(f"{agent.id} was silent for {int(quiet)} s (limit {int(self.limits.stall_after_seconds)} s): {how}",
                        agent=agent.id, task=agent.current_task, stalled=how)
            if fresh is None or not agent.current_task:
                continue
            task_prompt = self._task_prompt(agent.current_task)
            prompt = task_prompt if fresh else nudge_prompt(int(quiet))
            resume_agent(self.store, agent.id, prompt, task_id=agent.current_task, fresh_session=fresh)

    def _task_prompt(self, task_id: str) -> str:
        task = self.store.read_session().task(task_id)
        return task.prompt if task else "Continue your task."

    # ---------------------------------------------------------------- harvest finished work
    def _harvest(self, session: Session, agents: dict[str, Agent]) -> None:
        for task in [t for t in session.tasks if t.state is TaskState.RUNNING]:
            if open_race(session, task.id):
                continue  # raced: its candidates build it, the race merges the winner (engine/race.py)
            agent = agents.get(task.agent or "")
            if agent is None and task.agent and os.path.lexists(self.store.agent_dir(task.agent) / "meta.json"):
                continue  # its meta.json is damaged (reported): leave the task, never restart over it
            if agent is not None and not agent.runs:
                agent = None  # created, but orch was stopped before its first run was recorded
            if agent is None and task.kind is TaskKind.ADHOC:
                self._finish(task, TaskState.CANCELLED, "its `orch launch` was cut short before the agent started")
                self.decide(f"{task.id} was launched by hand but its agent never started: cancelled (launch it "
                            "again)", task=task.id)
                continue
            if agent is None or never_started(task, agent):
                self._restart_unstarted(session, task, agent)
                continue
            if agent.current_task != task.id:
                continue
            if task.race:  # a race candidate: built on its race branch, or out; never handed on
                if agent.state in (AgentState.IDLE, AgentState.FAILED, AgentState.ABORTED, AgentState.DONE):
                    self.races.harvest(session, task, agent)
                continue
            if agent.state is AgentState.IDLE:
                self._task_done(session, task, agent)
            elif agent.state is AgentState.FAILED:
                self._task_failed(session, task, agent)
            elif agent.state is AgentState.PARKED and self.limits.on_usage_limit == "fallback":
                self._hand_on(session, task, agent)
            elif agent.state in (AgentState.ABORTED, AgentState.DONE):
                self._release(session, task, agent)

    def _release(self, session: Session, task: Task, agent: Agent) -> None:
        """A task whose agent was aborted (or retired) while the task still ran — an abort killed
        before it released the task: as `orch abort` does, back to the queue, or cancelled (ad hoc)."""
        if task.kind is TaskKind.ADHOC or not session.coordinated:
            self._finish(task, TaskState.CANCELLED, f"its agent {agent.id} is {agent.state.value}")
        else:
            self._move_task(task, TaskState.QUEUED, f"its agent {agent.id} is {agent.state.value}")
            task.agent = None
            task.attempts = max(task.attempts - 1, 0)
        self.decide(f"{task.id}'s agent {agent.id} is {agent.state.value}: the task is "
                    f"{task.state.value}", agent=agent.id, task=task.id, round=task.round)

    def _hand_on(self, session: Session, task: Task, agent: Agent) -> None:
        """on_usage_limit = "fallback": the task of a parked agent goes to another CLI (no attempt counted)."""
        key = cli_key(agent)
        if task.seat:  # a panel member's task goes to another member, or waits for the reset
            other = panel.another_member(session, self.store.agents(), task.seat, self._budget_policy())
            if other is None or task.kind is not TaskKind.VERIFY:
                return
            self._move_task(task, TaskState.QUEUED, f"{agent.id}'s CLI ({key}) hit a limit: another panel member "
                                                    f"({other}) verifies")
            task.seat, task.agent = other, None
            task.attempts = max(task.attempts - 1, 0)
            self.decide(f"{task.id}: {agent.id} is parked by its CLI's limit; {other} of the panel verifies instead",
                        agent=agent.id, task=task.id, round=task.round, fallback_from=key)
            return
        if self._fallback_key(session, HOME_ROLE.get(task.kind, task.role), task.avoid_clis + [key]) is None:
            return  # no other CLI to hand it to: it waits for the reset
        self._move_task(task, TaskState.QUEUED, f"{agent.id}'s CLI ({key}) hit a limit: handed to another CLI")
        task.avoid_clis = sorted(set(task.avoid_clis + [key]))
        task.attempts = max(task.attempts - 1, 0)  # a limit is not a failed attempt
        task.agent = None
        self.decide(f"{task.id}: {agent.id} is parked by its CLI's limit ({key}); handing the task to another CLI",
                    agent=agent.id, task=task.id, round=task.round, fallback_from=key)

    def _fallback_key(self, session: Session, role: Role, avoid: list[str]) -> Optional[str]:
        """Another CLI (cli or cli/variant) for this role: installed, not parked, not in `avoid`,
        and for a reviewer not the implementers' vendor when another is available."""
        parked = set(parked_keys(self.store.agents()))
        base = self._cli_for(session, role)
        candidates = [f"{OFFLINE_CLI}/{v}" for v in get_adapter(OFFLINE_CLI).variants] if base == OFFLINE_CLI \
            else installed_clis()
        usable = [k for k in candidates if k not in parked and k not in avoid]
        other_key = self._team_key(session, Role.IMPLEMENTER if role is Role.REVIEWER else Role.REVIEWER)
        preferred = [k for k in usable if k != other_key]
        return (preferred or usable or [None])[0]

    def _restart_unstarted(self, session: Session, task: Task, agent: Optional[Agent]) -> None:
        """The assignment was recorded but the agent never started it (a step was killed)."""
        role = agent.role if agent else HOME_ROLE.get(task.kind, task.role)
        cli = agent.cli if agent else self._cli_for(session, role)
        self.starts.append(_Start(task.id, task.agent or "", role, cli, task.prompt, new=agent is None,
                                  sim_format=agent.sim_format if agent else self._sim_format(session, role),
                                  fresh=agent is not None and run_was_lost(agent)))
        self.decide(f"{task.id} was assigned to {task.agent} but never started: starting it now",
                    agent=task.agent, task=task.id, round=task.round)

    def _last_text(self, agent: Agent) -> str:
        return agent.runs[-1].final_text if agent.runs else ""

    def _move_task(self, task: Task, state: TaskState, reason: str) -> Event:
        """Move a task through its lifecycle and queue the event that records it."""
        event = transition(task, state, reason)
        if event is not None:
            self.events.append(event)
        return event

    def _finish(self, task: Task, state: TaskState, result: str) -> None:
        event = self._move_task(task, state, result)
        event.kind, event.reason = EventKind.TASK_FINISHED, f"{task.kind.value} {state.value}"
        task.ended_at = now()

    def _task_done(self, session: Session, task: Task, agent: Agent) -> None:
        text = self._last_text(agent)
        if task.kind in (TaskKind.REVIEW, TaskKind.VERIFY):
            self._review_done(session, task, agent, text)
            return
        if not self._land(session, task, agent):
            return
        if task.kind in CHANGING_KINDS and not self._changed(session, task, agent):
            if self._unchanged(session, task, agent):
                return
        self._finish(task, TaskState.DONE, text)
        self.decide(f"{agent.id} finished {task.id} ({task.kind.value}: {task.title})"
                    + (" without a change, for the reviewer to confirm" if task.no_change else ""), agent=agent.id,
                    task=task.id, round=task.round)
        if task.kind is TaskKind.SPEC:
            planned = read_task_list(text)
            for p in planned:
                t = Task(id=session.new_id("T"), kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title=p.title,
                         prompt=implement_prompt(session.goal, p.title, p.description), round=session.round)
                session.tasks.append(t)
                self.decide(f"queued {t.id}: {p.title} (from the architect's task list)", task=t.id,
                            round=session.round, kind=EventKind.TASK_QUEUED)
                self.races.open(session, t, race_width(session, p.race))
        elif task.kind is TaskKind.FIX:
            changes = mark_fixed(session, task.blockers, task.id, session.round)
            for ch in changes:
                self.events.append(Event(kind=EventKind.BLOCKER_STATE, task=task.id, round=session.round,
                                         reason=f"{ch.blocker} fixed by {agent.id}", data=ch.event_data()))

    # ---------------------------------------------------------------- work that changed nothing
    def _changed(self, session: Session, task: Task, agent: Agent) -> bool:
        """Whether the task's work changed anything: git says, for an agent with a branch (its
        task's diff); else the stream (a file written, or a tool call that may have written one)."""
        if integration.uses_worktrees(session) and agent.branch is not None:
            return bool(task.files_changed)
        runs = [r for a in self.store.agents() for r in a.runs if r.task == task.id]
        return any(r.files_changed or r.tool_calls for r in runs) or not runs

    def _unchanged(self, session: Session, task: Task, agent: Agent) -> bool:
        """An implement or fix task that changed nothing is not done: it goes back to its agent
        with that fact, then to another agent; after that it is done without a change and the
        reviewer says whether one was needed. True while the task is not finished."""
        task.unchanged += 1
        if task.unchanged == 1:
            task.for_run = len(agent.runs) + 1
            self.starts.append(_Start(task.id, agent.id, agent.role, agent.cli, unchanged_prompt(task), new=False,
                                      sim_format=agent.sim_format, fresh=run_was_lost(agent)))
            self.decide(f"{agent.id}'s reply to {task.id} changed no file: asked again, with that fact",
                        agent=agent.id, task=task.id, round=task.round, unchanged=task.unchanged)
            return True
        if task.unchanged == 2:
            self._move_task(task, TaskState.QUEUED, f"{agent.id} changed no file twice: handed to another agent")
            task.avoid_agents = sorted(set(task.avoid_agents) | {agent.id})
            task.agent = None
            task.attempts = max(task.attempts - 1, 0)  # not a failed attempt: nothing broke
            self.decide(f"{agent.id} changed no file for {task.id} again: handing it to another agent",
                        agent=agent.id, task=task.id, round=task.round, unchanged=task.unchanged)
            return True
        task.no_change = True
        return False

    # ---------------------------------------------------------------- git: merges after each task
    def _recover_merge(self, session: Session) -> None:
        try:
            done = integration.recover(session)
            if done:
                self.decide(f"the integration worktree after a crash mid-merge: {done}; the merge is redone",
                            round=session.round)
        except OrchError as e:
            self._stop(session, f"the integration worktree cannot be recovered: {e.message}")

    def _land(self, session: Session, task: Task, agent: Agent) -> bool:
        """Commit and merge a writer's work; False when the task is not done after all (its
        merge left conflict markers, or git failed)."""
        try:
            landing = integration.land(session, task, agent)
        except WorktreeRefused as e:
            self._send_back(session, task, agent, e)
            return False
        except OrchError as e:
            self._move_task(task, TaskState.FAILED, e.message)
            self._stop(session, f"could not merge {task.id}'s work: {e.message}")
            return False
        if landing.unresolved:
            self._merge_again(session, task, agent, landing.unresolved)
            return False
        record = landing.record
        if record is None:
            return True
        if record.outcome == "conflict":
            self._queue_conflict(session, task, agent, record)
        elif task.kind in CHANGING_KINDS and not record.files:
            pass  # nothing to merge: _unchanged says what happens to the task
        else:
            self.decide(f"{agent.id}'s {task.id} merged into {session.git.integration_branch} "
                        f"({(record.commit or '')[:12]}): {len(record.files)} file(s)", agent=agent.id,
                        task=task.id, round=session.round, kind=EventKind.GIT_MERGED, branch=record.branch,
                        commit=task.commit, merge_commit=record.commit, files=record.files,
                        already=record.outcome == "already")
        self._record_files(agent, task.files_changed)
        return True

    def _queue_conflict(self, session: Session, task: Task, agent: Agent, record) -> None:
        """A merge that conflicted becomes a merge task for the agent whose branch it was."""
        onto = session.git.integration_branch
        t = self._queue(session, TaskKind.MERGE, f"Merge {task.id}'s work ({', '.join(record.files)})",
                        merge_prompt(session.goal, record.branch, onto, record.files,
                                     integration.intents(session, task, record.files)), prefer=agent.id)
        t.conflicts = list(record.files)
        record.merge_task = t.id
        self.decide(f"{agent.id}'s branch {record.branch} conflicts with {onto} in {', '.join(record.files)}: "
                    f"{t.id} resolves it", agent=agent.id, task=task.id, round=session.round,
                    kind=EventKind.GIT_CONFLICT, branch=record.branch, files=record.files, merge_task=t.id)

    def _send_back(self, session: Session, task: Task, agent: Optional[Agent], refused: WorktreeRefused) -> None:
        """orch's git refused the agent's worktree (it changed since orch made it): nothing in it
        is committed or merged; the worktree is made afresh and the task queued again, bounded
        by its attempts like a failed run."""
        note = ""
        if agent is not None and refused.repairable:
            try:
                note = "; " + integration.renew_tree(session, agent)
            except OrchError as e:
                note = f"; it could not be made afresh: {e.message}"
        who = agent.id if agent is not None else task.agent
        self.decide(f"{task.id}: orch's git refused {who}'s worktree: {refused.message}{note}", agent=who,
                    task=task.id, round=task.round, kind=EventKind.GIT_REFUSED)
        if task.attempts >= self.limits.max_task_attempts:
            self._move_task(task, TaskState.FAILED, refused.message)
            self._stop(session, f"{task.id} ({task.title}) was sent back {task.attempts} times; last: "
                                f"{refused.message} — `orch resume {session.id}` once it is mended")
            return
        self._move_task(task, TaskState.QUEUED, f"sent back: {refused.message}")
        task.agent = None

    def _merge_again(self, session: Session, task: Task, agent: Agent, left: list[str]) -> None:
        """A merge task ended with conflict markers still in files: once more, else the session stops."""
        if task.attempts >= self.limits.max_task_attempts:
            self._move_task(task, TaskState.FAILED, f"conflict markers remain in {', '.join(left)}")
            self._stop(session, f"{task.id} left conflict markers in {', '.join(left)} after {task.attempts} "
                                f"attempts — resolve them in {agent.cwd}, then `orch resume {session.id}`")
            return
        task.attempts += 1
        task.for_run = len(agent.runs) + 1
        self.starts.append(_Start(task.id, agent.id, agent.role, agent.cli,
                                  f"Conflict markers remain in {', '.join(left)}. Remove them, keeping what both "
                                  "sides meant, and reply when done.", new=False, sim_format=agent.sim_format))
        self.decide(f"{task.id}: conflict markers remain in {', '.join(left)}: {agent.id} asked again",
                    agent=agent.id, task=task.id, round=session.round)

    def _record_files(self, agent: Agent, files: list[str]) -> None:
        """An agent's files_changed with a branch: the union of its tasks' git diffs."""
        if agent.branch is None or not files:
            return
        with self.store.edit_agent(agent.id) as a:
            a.stats.files_changed = sorted(set(a.stats.files_changed) | set(files))

    def _review_done(self, session: Session, task: Task, agent: Agent, text: str) -> None:
        parsed = parse_verdict(text)
        if not parsed.understood and task.attempts < self.limits.max_task_attempts:
            task.attempts += 1
            task.for_run = len(agent.runs) + 1
            asked = [b for b in session.blockers if b.id in task.blockers]
            self.starts.append(_Start(task.id, agent.id, agent.role, agent.cli, reask_prompt(asked), new=False,
                                      sim_format=agent.sim_format))
            self.decide(f"{agent.id}'s reply to {task.id} held no readable verdict: asked again once",
                        agent=agent.id, task=task.id, round=task.round)
            return
        review = review_from_verdict(parsed, review_id=session.new_id("R"), round=session.round,
                                     reviewer=agent.id, cli=agent.cli, task=task.id)
        update = apply_review(session, review, asked=task.blockers if task.kind is TaskKind.VERIFY else None)
        record_review(self.store, review)  # after the ledger: the stored review shows ledger ids
        self._record_verdict(session, task, agent, review, update)
        self._finish(task, TaskState.DONE, text)
        self.events.append(Event(kind=EventKind.REVIEW_RECORDED, agent=agent.id, task=task.id, round=session.round,
                                 reason=f"{review.id}: {review.verdict.value} ({parsed.parse_method})",
                                 data={"review": review.id, "verdict": review.verdict.value,
                                       "blockers": len(review.blockers), "verified": review.verified,
                                       "reopened": review.reopened, "notes": parsed.notes,
                                       "ignored": update.verification.ignored}))
        for b in update.filed:
            self.events.append(Event(kind=EventKind.BLOCKER_FILED, agent=agent.id, task=task.id, round=session.round,
                                     reason=f"{b.id} [{b.severity.value}] {b.file}:{b.line or ''} {b.description[:120]}",
                                     data={"blocker": b.id, "file": b.file, "line": b.line,
                                           "severity": b.severity.value}))
        for ch in update.verification.changes:
            self.events.append(Event(kind=EventKind.BLOCKER_STATE, agent=agent.id, task=task.id, round=session.round,
                                     reason=f"{ch.blocker} {ch.after.value}", data=ch.event_data()))
        self.decide(f"{agent.id} gave {review.verdict.value} on {task.id}: {len(update.filed)} new blocker(s), "
                    f"{len(open_blockers(session))} open", agent=agent.id, task=task.id, round=session.round)

    def _task_failed(self, session: Session, task: Task, agent: Agent) -> None:
        reason = agent.state_reason
        if not session.coordinated or task.kind is TaskKind.ADHOC:
            self._finish(task, TaskState.FAILED, reason)
            self.decide(f"{task.id} failed with {agent.id}: {reason} — `orch retry {task.id}` runs it again, "
                        f"`orch abort {agent.id}` gives it up", agent=agent.id, task=task.id)
            return
        self._move_task(task, TaskState.FAILED, reason)
        billing = bool(agent.runs) and agent.runs[-1].failure is FailureKind.BILLING
        hopeless = billing or needs_login(reason) or task.attempts >= self.limits.max_task_attempts
        if hopeless and task.seat and self._panel_goes_on(session, task, agent):
            return  # a panel member out of credit, logged out or failing: the others go on
        if billing:
            self._out_of_credit(session, task, agent, reason)  # no wait helps: another CLI or a person
            return
        if needs_login(reason):  # retrying a CLI without credentials cannot help
            self._stop(session, login_stop_reason(task, agent.cli, reason))
            return
        if task.attempts >= self.limits.max_task_attempts:
            self._stop(session, f"{task.id} ({task.title}) failed {task.attempts} times; last: {reason} — "
                                f"continue with `orch retry {task.id}` (or --cli OTHER), or `orch resume {session.id}`")
            return
        self._move_task(task, TaskState.QUEUED, reason)
        task.agent = None  # its blockers stay assigned to the task, whoever takes it next
        wait = schedule_retry(task)
        fresh = " in a fresh CLI session (the old one was lost with its machine)" if run_was_lost(agent) else ""
        self.decide(f"{task.id} failed with {agent.id} ({reason}): queued again, retried in {wait:g} s{fresh}",
                    agent=agent.id, task=task.id, round=session.round, lost=bool(fresh))

    def _out_of_credit(self, session: Session, task: Task, agent: Agent, reason: str) -> None:
        """The CLI's account is out of credit: with on_usage_limit = "fallback" the task goes to
        another CLI at once (no attempt counted); otherwise, or with none left, to a person."""
        key = cli_key(agent)
        other = None
        if self.limits.on_usage_limit == "fallback":
            other = self._fallback_key(session, HOME_ROLE.get(task.kind, task.role), task.avoid_clis + [key])
        if other is None:
            self._stop(session, billing_stop_reason(task, agent.cli, reason))
            return
        self._move_task(task, TaskState.QUEUED, f"{agent.id}'s CLI ({key}) is out of credit: handed to another CLI")
        for waiting in [task] + [t for t in session.tasks if t.state is TaskState.QUEUED]:
            waiting.avoid_clis = sorted(set(waiting.avoid_clis + [key]))  # the same account: none of them waits for it
        task.attempts = max(task.attempts - 1, 0)  # out of credit is not a failed attempt
        task.agent, task.retry_at = None, None
        self.decide(f"{task.id}: {agent.id}'s CLI ({key}) is out of credit; handing the task to another CLI",
                    agent=agent.id, task=task.id, round=task.round, fallback_from=key)

    # ---------------------------------------------------------------- phases
    def _round_tasks(self, session: Session, kind: TaskKind) -> list[Task]:
        """The round's tasks of a kind; a race's reviews of its tied candidates are the race's, not the round's."""
        return [t for t in session.tasks if t.round == session.round and t.kind is kind
                and not (t.race and kind is TaskKind.REVIEW)]

    def _start_round(self, session: Session, note: str) -> bool:
        if session.round >= session.max_rounds:
            self._stop(session, f"round limit {session.max_rounds} reached with "
                                f"{len(open_blockers(session))} blocker(s) open")
            return False
        if session.rounds and session.rounds[-1].ended_at is None:
            session.rounds[-1].ended_at = now()
            session.rounds[-1].phase = "closed"
            self.events.append(Event(kind=EventKind.ROUND_CLOSED, round=session.round, reason=session.rounds[-1].note))
        session.round += 1
        session.rounds.append(RoundRecord(n=session.round, note=note))
        self.decide(f"round {session.round} starts: {note}", round=session.round, kind=EventKind.ROUND_STARTED)
        return True

    def _queue(self, session: Session, kind: TaskKind, title: str, prompt: str, blockers: list[str] = (),
               prefer: Optional[str] = None, seat: Optional[str] = None) -> Task:
        t = Task(id=session.new_id("T"), kind=kind, role=HOME_ROLE[kind], title=title, prompt=prompt,
                 round=session.round, blockers=list(blockers), agent=prefer, seat=seat)
        session.tasks.append(t)
        self.decide(f"queued {t.id}: {title}", task=t.id, round=session.round, kind=EventKind.TASK_QUEUED,
                    blockers=list(blockers))
        return t

    def _advance(self, session: Session) -> None:
        """Queue the next phase's work when the current phase is finished."""
        if any(t.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.FAILED) for t in session.tasks):
            return
        if session.round == 0:
            if self._start_round(session, "specification, implementation, review"):
                self._queue(session, TaskKind.SPEC, "Write the specification",
                            spec_prompt(session.goal, session.team.race if len(session.team.racers) >= 2 else 0))
                session.rounds[-1].phase = "spec"
            return
        if not verification.settled(session):
            return  # the project's tests are still judging the integration branch: the review reads their result
        tests = verification.prompt_section(session)
        reviews = self._round_tasks(session, TaskKind.REVIEW) + self._round_tasks(session, TaskKind.VERIFY)
        if not reviews:
            built = self._round_tasks(session, TaskKind.IMPLEMENT) + self._round_tasks(session, TaskKind.FIX)
            if session.round > 1 and not built:
                self._queue_fixes(session)
                return
            fixed = [b.id for b in session.blockers if b.state is BlockerState.FIXED and reviewer_verifies(b)]
            if session.round == 1:
                changed = sorted({f for a in self.store.agents() for f in a.stats.files_changed})
                prompt = review_prompt(session.goal, ["SPEC.md"], changed, session.round,
                                       self._no_change_tasks(session), tests=tests)
                if panel.is_panel(session):
                    self._queue_panel_reviews(session, prompt)
                else:
                    self._queue(session, TaskKind.REVIEW, "Review the work against the specification", prompt,
                                prefer=self._reviewer_id())
                session.rounds[-1].phase = "review"
                return
            if fixed:
                self._queue_verifies(session, fixed, tests)
                session.rounds[-1].phase = "verify"
                return
            # only the tests judged this round's fixes (the verifier's blockers): their verdict is in
        # this round's verdict is in
        unverified = [b.id for b in session.blockers if b.state is BlockerState.FIXED and reviewer_verifies(b)]
        to_fix = [b for b in open_blockers(session) if b.state in (BlockerState.FOUND, BlockerState.REOPENED)]
        if unverified and not to_fix:
            # asks since a person last continued the session (a verify task may ask several members)
            asks = max(panel.times_asked(session, b) for b in unverified)
            if asks >= self.limits.max_task_attempts:
                self._stop(session, f"the reviewer would not verify {', '.join(unverified)} after {asks} asks")
                return
            self._queue_verifies(session, unverified, tests, again=True)
            return
        if open_blockers(session):
            self._start_round(session, f"fix {len(open_blockers(session))} open blocker(s), then verify")
            if session.state is SessionState.ACTIVE:
                self._queue_fixes(session)
            return
        if session.rounds and session.rounds[-1].ended_at is None:
            session.rounds[-1].ended_at = now()
            session.rounds[-1].phase = "closed"
            self.events.append(Event(kind=EventKind.ROUND_CLOSED, round=session.round, reason="all blockers verified"))
            self.decide("every blocker is verified and nothing is queued: the work is complete; "
                        "run `orch check`, then `orch report`", round=session.round)

    def _queue_fixes(self, session: Session) -> None:
        """One fix task per author: each blocker goes to the agent that wrote its file."""
        groups: dict[Optional[str], list[str]] = {}
        agents = self.store.agents()
        for b in open_blockers(session):
            if b.state not in (BlockerState.FOUND, BlockerState.REOPENED):
                continue
            author = b.author if not reviewer_verifies(b) else \
                next((a.id for a in agents if a.role not in (Role.REVIEWER, Role.VERIFIER) and b.file and
                      any(f == b.file or f.endswith("/" + b.file) or b.file.endswith(f)
                          for f in a.stats.files_changed)), None)
            groups.setdefault(author, []).append(b.id)
        session.rounds[-1].phase = "fix"
        for author, ids in groups.items():
            asked = [b for b in session.blockers if b.id in ids]
            t = self._queue(session, TaskKind.FIX, f"Fix {', '.join(ids)}", fix_prompt(session.goal, asked),
                            blockers=ids, prefer=author)
            for ch in assign_blockers(session, ids, t.id, session.round):
                self.events.append(Event(kind=EventKind.BLOCKER_STATE, task=t.id, round=session.round,
                                         reason=f"{ch.blocker} assigned to {t.id}", data=ch.event_data()))

    def _queue_verifies(self, session: Session, ids: list[str], tests: str, again: bool = False) -> None:
        """Ask about fixed blockers: the reviewer, or — with a panel — for each blocker a member
        that filed it (any available member when none of them is: panel.verify_asks)."""
        more = " (again)" if again else ""
        unchanged = self._no_change_tasks(session)
        if not panel.is_panel(session):
            asked = [b for b in session.blockers if b.id in ids]
            self._queue(session, TaskKind.VERIFY, f"Verify the fixes of {', '.join(ids)}{more}",
                        verify_prompt(session.goal, asked, session.round, unchanged, tests=tests), blockers=ids,
                        prefer=self._reviewer_id())
            return
        for ask in panel.verify_asks(session, self.store.agents(), ids, self._budget_policy()):
            asked = [b for b in session.blockers if b.id in ask.blockers]
            t = self._queue(session, TaskKind.VERIFY, f"Verify the fixes of {', '.join(ask.blockers)}{more} "
                                                      f"(panel: {ask.seat})",
                            verify_prompt(session.goal, asked, session.round, unchanged, tests=tests), blockers=ask.blockers,
                            prefer=ask.prefer, seat=ask.seat)
            for note in ask.notes:
                self.decide(f"{t.id}: {ask.seat} verifies {note}: unavailable, so another panel member "
                            "verifies it", task=t.id, round=session.round)

    def _queue_panel_reviews(self, session: Session, prompt: str) -> None:
        """One review per available panel member, all on the same merged commit, in parallel."""
        for seat, prefer in panel.review_seats(session, self.store.agents(), self._budget_policy()):
            self._queue(session, TaskKind.REVIEW, f"Review the work against the specification (panel: {seat})",
                        prompt, prefer=prefer, seat=seat)

    def _record_verdict(self, session: Session, task: Task, agent: Agent, review, update) -> None:
        """The verdict in short for the panel's side-by-side view, and each confirmation in the log."""
        reported = list(dict.fromkeys(b.id for b in review.blockers if b.id))
        session.verdicts.append(VerdictRecord(
            review=review.id, round=review.round, task=task.id, kind=task.kind.value, reviewer=agent.id,
            cli=cli_key(agent), verdict=review.verdict, blockers=reported, filed=[b.id for b in update.filed],
            verified=list(update.verification.verified), reopened=list(update.verification.reopened),
            parse_method=review.parse_method))
        new = {b.id for b in update.filed}
        for blocker_id in reported:
            b = session.blocker(blocker_id)
            filing = next((f for f in reversed(b.filed_by) if f.review == review.id), None) if b else None
            if blocker_id in new or filing is None or filing.rule == "first":
                continue
            self.decide(f"{blocker_id} confirmed by {agent.id} ({cli_key(agent)}) in {review.id}: "
                        f"{filing.rule} (score {filing.score:g})" if filing.score is not None else
                        f"{blocker_id} confirmed by {agent.id} ({cli_key(agent)}) in {review.id}: {filing.rule}",
                        agent=agent.id, task=task.id, round=session.round, blocker=blocker_id, rule=filing.rule,
                        score=filing.score, confirmed_by=agent.id)

    def _panel_goes_on(self, session: Session, task: Task, agent: Agent) -> bool:
        """A panel member failed its task's attempts: benched, and the panel goes on without it —
        its verification goes to another member; its review is dropped. False: no member is left."""
        if not panel.is_panel(session) or task.kind not in (TaskKind.REVIEW, TaskKind.VERIFY):
            return False
        other = panel.another_member(session, self.store.agents(), task.seat, self._budget_policy())
        if other is None:
            return False
        session.benched[agent.id] = f"failed {task.id} ({agent.state_reason[:120]}): the panel goes on without it"
        if task.kind is TaskKind.REVIEW:
            self._move_task(task, TaskState.CANCELLED, f"{agent.id} failed it; the panel goes on without it")
            task.ended_at = now()
        else:
            self._move_task(task, TaskState.QUEUED, f"{agent.id} failed it: {other} verifies")
            task.seat, task.agent, task.attempts, task.retry_at = other, None, 0, None
        self.decide(f"{agent.id} ({cli_key(agent)}) failed {task.id}: {agent.state_reason[:160]}; the panel goes on "
                    "without it" + (f", {other} verifies its blockers" if task.kind is TaskKind.VERIFY else ""),
                    agent=agent.id, task=task.id, round=session.round)
        return True

    def _reseat(self, session: Session, agents: dict[str, Agent]) -> None:
        """A queued panel task whose member left the panel (benched, or over its own budget)
        goes to another member (a verification) or is dropped (its own review)."""
        budget = self._budget_policy()
        for task in [t for t in session.tasks if t.state is TaskState.QUEUED and t.seat
                     and t.kind in (TaskKind.REVIEW, TaskKind.VERIFY)]:
            member = panel.member_agent(session, agents.values(), task.seat)
            why = panel.out_of_panel(session, member, budget)
            other = panel.another_member(session, list(agents.values()), task.seat, budget) if why else None
            if other is None:
                continue
            if task.kind is TaskKind.REVIEW:
                self._move_task(task, TaskState.CANCELLED, f"{member.id} left the panel ({why}): the panel goes on "
                                                           "without its review")
                task.ended_at = now()
                self.decide(f"{task.id}: {member.id} left the panel ({why}); the others' reviews stand",
                            agent=member.id, task=task.id, round=task.round)
                continue
            task.seat, task.agent = other, None
            self.decide(f"{task.id}: {member.id} left the panel ({why}); {other} verifies "
                        f"{', '.join(task.blockers)} instead", agent=member.id, task=task.id, round=task.round)

    def _budget_policy(self):
        if self._budget is None:
            from ..spend.gate import load_budget

            self._budget = load_budget(self.store)
        return self._budget

    def _may_go_over(self, agent: Agent, spend) -> bool:
        """An agent over its own limit the session can do without (spend/gate.py): a race's
        candidate or loser, a panel member while another can work."""
        session = self.store.read_session()
        if agent.id in session.benched or agent.id in held(session):
            return True
        return panel.may_leave(session, self.store.agents(), agent, self._budget_policy())

    def _no_change_tasks(self, session: Session) -> list[str]:
        return [t.id for t in self._round_tasks(session, TaskKind.IMPLEMENT) + self._round_tasks(session, TaskKind.FIX)
                if t.no_change]

    def _reviewer_id(self) -> Optional[str]:
        return next((a.id for a in self.store.agents() if a.role is Role.REVIEWER), None)

    def _stop(self, session: Session, reason: str) -> None:
        event = transition(session, SessionState.STOPPED, f"session stopped: {reason}")
        session.stop_reason = reason
        if event is not None:
            self.events.append(event)
        self.actions.append(f"session stopped: {reason}")

    # ---------------------------------------------------------------- assignment
    def _cli_for(self, session: Session, role: Role) -> str:
        return {Role.ARCHITECT: session.team.architect, Role.REVIEWER: session.team.reviewer}.get(
            role, session.team.implementer)

    def _sim_format(self, session: Session, role: Role) -> Optional[str]:
        """The stream format a member of this role speaks, for a CLI that comes in several."""
        fmt = session.team.sim_formats.get(role.value)
        return fmt if fmt in get_adapter(self._cli_for(session, role)).variants else None

    def _assign(self, session: Session, agents: dict[str, Agent]) -> None:
        """Queued tasks go first to idle agents of their own role, then to new hires up to
        the team's size, then to any idle agent that can do them (an idle architect builds)."""
        if panel.is_panel(session):
            self._reseat(session, agents)
        busy = {t.agent for t in session.tasks if t.state is TaskState.RUNNING and t.agent}
        busy |= set(session.benched) | held(session)  # a race's candidates and losers, a failed panel member
        # Only an idle agent takes work: a retired (done), failed or aborted one never does again,
        # and frees its place in the team (_may_hire) for a new one.
        free = [a for a in agents.values() if a.state is AgentState.IDLE and a.id not in busy
                and integration.can_work(session, a)]
        caps = ConcurrencyCaps.of_store(self.store, agents.values(), [s.cli for s in self.starts])
        self._assign_adhoc(session, agents, busy, caps)
        writing = any(t.state is TaskState.RUNNING and t.kind in integration.WRITING_KINDS for t in session.tasks)
        for own_role_only in (True, False):
            for task in [t for t in session.tasks if t.state is TaskState.QUEUED and t.kind is not TaskKind.ADHOC
                         and is_due(t)]:
                candidate = task.race and task.kind is TaskKind.IMPLEMENT  # a race's candidate: a new implementer
                agent = None if candidate else self._pick(task, free, own_role_only)
                cli = agent.cli if agent is not None else (task.seat or "").partition("/")[0] or \
                    self._cli_for(session, HOME_ROLE[task.kind])
                hire = agent is None and own_role_only and self._may_hire(session, agents, task)
                turns = writing and integration.takes_turns(session, task)
                if (agent is not None or hire) and self._must_wait(task, TAKE_TURNS if turns else caps.full(cli)):
                    continue
                writing = writing or ((agent is not None or hire) and task.kind in integration.WRITING_KINDS)
                if agent is not None:
                    free.remove(agent)
                    caps.reserve(cli)
                    self._give(task, agent)
                elif hire:
                    caps.reserve(cli)
                    self._hire(session, task)

    def _assign_adhoc(self, session: Session, agents: dict[str, Agent], busy: set, caps: ConcurrencyCaps) -> None:
        """An ad-hoc task queued again (`orch retry`) runs on the agent launched for it, once it is free."""
        for task in [t for t in session.tasks if t.state is TaskState.QUEUED and t.kind is TaskKind.ADHOC]:
            agent = agents.get(task.agent or "")
            if agent is None:
                self._finish(task, TaskState.CANCELLED, "its agent is gone")
                continue
            if agent.id in busy or agent.state not in RERUNNABLE or self._must_wait(task, caps.full(agent.cli)):
                continue
            caps.reserve(agent.cli)
            self._mark_running(task, agent)
            self.starts.append(_Start(task.id, agent.id, agent.role, agent.cli, task.prompt, new=False,
                                      sim_format=agent.sim_format, fresh=run_was_lost(agent)))
            self.decide(f"{task.id} runs again on {agent.id}, the agent launched for it", agent=agent.id,
                        task=task.id, kind=EventKind.TASK_ASSIGNED, reassigned=False)

    def _must_wait(self, task: Task, reason: Optional[str]) -> bool:
        """A concurrency cap holds the task back: it stays queued, its reason shown (once per change)."""
        if reason and task.waiting != reason:
            self.decide(f"{task.id} {reason}", task=task.id, round=task.round, kind=EventKind.TASK_WAITING)
        task.waiting = reason or ""
        return bool(reason)

    def _give(self, task: Task, agent: Agent) -> None:
        reassigned = agent.role is not HOME_ROLE[task.kind]
        preferred = task.agent == agent.id
        self._mark_running(task, agent)
        # A run lost with its machine took its CLI session along: that one cannot be resumed.
        fresh = run_was_lost(agent)
        self.starts.append(_Start(task.id, agent.id, agent.role, agent.cli, task.prompt, new=False,
                                  sim_format=agent.sim_format, fresh=fresh))
        how = "a fresh CLI session: its last one was lost with its machine" if fresh else "same CLI session"
        if preferred and task.kind is TaskKind.FIX and reassigned:
            why = f"{task.id} assigned to {agent.id}, which wrote the files it fixes ({how})"
        elif reassigned:
            why = f"{agent.id} ({agent.role.value}) was idle and {task.id} was waiting: reassigned to it ({how})"
        else:
            why = f"{task.id} assigned to {agent.id}, which was idle ({how})"
        self.decide(why, agent=agent.id, task=task.id, round=task.round, kind=EventKind.TASK_ASSIGNED,
                    reassigned=reassigned)

    def _team_key(self, session: Session, role: Role) -> str:
        cli, variant = self._cli_for(session, role), self._sim_format(session, role)
        return f"{cli}/{variant}" if variant else cli

    def _hire_key(self, session: Session, task: Task) -> Optional[str]:
        """The CLI (cli or cli/variant) a new agent for this task runs: the team's, unless that one is
        parked or the task avoids it (then another one, or None: the task waits)."""
        role = HOME_ROLE[task.kind]
        if task.seat:  # a panel member's task, a race candidate: that CLI or none (it waits)
            parked = parked_keys(self.store.agents())
            return task.seat if task.seat not in parked and task.seat not in task.avoid_clis else None
        key = self._team_key(session, role)
        if task.cli and task.cli != key.partition("/")[0]:
            key = task.cli  # `orch retry --cli OTHER`: only that CLI may take it
        if key not in parked_keys(self.store.agents()) and key not in task.avoid_clis:
            return key
        if self.limits.on_usage_limit != "fallback" and not task.avoid_clis:
            return None
        return self._fallback_key(session, role, task.avoid_clis)

    def _hire(self, session: Session, task: Task) -> None:
        role = HOME_ROLE[task.kind]
        key = self._hire_key(session, task)
        if key is None:
            return  # its CLI is parked by a limit: the task waits for the reset
        cli, _, variant = key.partition("/")
        agent_id = session.new_id(role.value)
        self._mark_running(task, agent_id)
        self.starts.append(_Start(task.id, agent_id, role, cli, task.prompt, new=True, sim_format=variant or None))
        self.hired[role] = self.hired.get(role, 0) + 1
        if task.seat:
            self.hired_seats[task.seat] = self.hired_seats.get(task.seat, 0) + 1
        if task.race and task.kind is TaskKind.IMPLEMENT:
            self.races.hired(session, task, agent_id)
        self.decide(f"{task.id} assigned to new {role.value} {agent_id} ({key})", agent=agent_id,
                    task=task.id, round=task.round, kind=EventKind.TASK_ASSIGNED, reassigned=False)

    def _pick(self, task: Task, free: list[Agent], own_role_only: bool = False) -> Optional[Agent]:
        capable = [a for a in free if task.kind.value in ROLE_CAN_DO.get(a.role.value, frozenset())
                   and a.role in DOER_ORDER[task.kind] and cli_key(a) not in task.avoid_clis
                   and a.id not in task.avoid_agents and (task.cli is None or a.cli == task.cli)
                   and (task.seat is None or cli_key(a) == task.seat)]
        if own_role_only and not (task.agent and any(a.id == task.agent for a in capable)):
            capable = [a for a in capable if a.role is HOME_ROLE[task.kind] or a.role is Role.WORKER]
        if not capable:
            return None
        if task.agent:  # a preferred agent: the reviewer who reviewed, the author of the file
            preferred = next((a for a in capable if a.id == task.agent), None)
            if preferred is not None:
                return preferred
        order = DOER_ORDER[task.kind]
        capable.sort(key=lambda a: (order.index(a.role), a.id))
        return capable[0]

    def _may_hire(self, session: Session, agents: dict[str, Agent], task: Task) -> bool:
        role = HOME_ROLE[task.kind]
        if task.race and task.kind is TaskKind.IMPLEMENT:
            return True  # each race candidate is built by an implementer of its own
        if task.seat:  # one member per seat: a new one only when the seat has none (panel.member_agent)
            return panel.member_agent(session, agents.values(), task.seat) is None \
                and self.hired_seats.get(task.seat, 0) < 1
        # Only agents that can still take this task hold a place (advice.SLOT_STATES): not a parked one
        # (a task handed on from it may hire past the team's size), not a failed, aborted or retired
        # one, not a benched one (a race's loser, a panel member that left) nor a candidate of an open
        # race (its worktree holds its build until the race is merged), not one whose attempt at
        # this task changed nothing, not one working outside the session's worktrees (launched by hand).
        held_now = held(session)  # a candidate of an open race takes no other task: it holds no place
        have = sum(1 for a in agents.values() if a.role is role and a.state.value in SLOT_STATES
                   and a.id not in session.benched and a.id not in held_now and a.id not in task.avoid_agents
                   and integration.can_work(session, a) and (task.cli is None or a.cli == task.cli)) \
            + self.hired.get(role, 0)
        limit = session.team.implementers if role is Role.IMPLEMENTER else 1
        return have < limit

    def _mark_running(self, task: Task, agent: Agent | str) -> None:
        """The task is its agent's: recorded (with the run that will serve it) before the agent starts."""
        agent_id = agent if isinstance(agent, str) else agent.id
        task.agent = agent_id
        self._move_task(task, TaskState.RUNNING, f"assigned to {agent_id}")
        task.started_at = now()
        task.attempts += 1
        task.for_run = 1 if isinstance(agent, str) else len(agent.runs) + 1

    def _start_agents(self) -> None:
        """Start what was decided; each start is recorded on disk before its process exists."""
        session = self.store.read_session()
        workspace = Path(session.workspace)
        for s in self.starts:
            try:
                if s.new:
                    place = integration.place_new_agent(session, s.agent_id, s.role,
                                                        **placement(session, s.task_id, s.agent_id)) \
                        if integration.uses_worktrees(session) else integration.Place(workspace)
                    if place.seal is not None:  # orch's record of the worktree, before any agent runs there
                        with self.store.edit_session() as edited:
                            edited.git.trees[s.agent_id] = place.seal
                    launch_agent(self.store, cli=s.cli, role=s.role, prompt=s.prompt, cwd=place.cwd,
                                 task_id=s.task_id, sim_format=s.sim_format, agent_id=s.agent_id,
                                 branch=place.branch)
                else:
                    if integration.uses_worktrees(session):
                        for note in integration.prepare_run(session, self.store.read_agent(s.agent_id),
                                                            session.task(s.task_id)):
                            self.decide(note, agent=s.agent_id, task=s.task_id)
                    resume_agent(self.store, s.agent_id, s.prompt, task_id=s.task_id, fresh_session=s.fresh)
            except WorktreeRefused as e:
                with self.store.edit_session() as session:
                    task = session.task(s.task_id)
                    if task and task.state is TaskState.RUNNING:
                        self._send_back(session, task, None if s.new else self.store.read_agent(s.agent_id), e)
            except OrchError as e:
                self.decide(f"could not start {s.agent_id} for {s.task_id}: {e.message}", agent=s.agent_id,
                            task=s.task_id)
                with self.store.edit_session() as session:
                    task = session.task(s.task_id)
                    if task and task.state is TaskState.RUNNING:
                        self._move_task(task, TaskState.FAILED, e.message)
                        if task.kind is not TaskKind.ADHOC:  # a hand-launched task stays failed for its user
                            self._stop(session, f"could not start an agent for {task.id}: {e.message}")
        self.starts = []

    # ---------------------------------------------------------------- retiring
    def _retire(self, session: Session, agents: dict[str, Agent]) -> None:
        """Idle agents with nothing left that their role could do, now or later, are done."""
        open_tasks = [t for t in session.tasks if t.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.FAILED)]
        work_left = bool(open_tasks) or bool(open_blockers(session)) or (
            session.coordinated and session.state is SessionState.ACTIVE and not self._complete(session))
        for agent in agents.values():
            if agent.state not in (AgentState.IDLE, AgentState.FAILED, AgentState.PARKED):
                continue
            if any(t.agent == agent.id for t in open_tasks):
                continue
            if agent.state is AgentState.FAILED and not session.coordinated:
                continue  # the user decides about a failed hand-launched agent
            if work_left and agent.state in (AgentState.IDLE, AgentState.PARKED) and agent.id not in session.benched \
                    and agent.id not in held(session):
                continue  # stays available: idle (or waiting out a limit) while work may come for its role
            if agent.id in held(session):
                continue  # a race candidate waits for its race's verdict
            self._set_agent_done(agent, {AgentState.IDLE: "nothing left for it",
                                         AgentState.PARKED: "nothing left for it (its CLI is still limited)"}.get(
                                             agent.state, "retired after its task was handed on"))

    def _complete(self, session: Session) -> bool:
        return bool(session.rounds) and session.rounds[-1].ended_at is not None and not open_blockers(session)

    def _set_agent_done(self, agent: Agent, reason: str) -> None:
        with self.store.change_agent(agent.id) as (a, events):  # state and event as one batch
            events.append(transition(a, AgentState.DONE, reason))
        self.actions.append(f"{agent.id} is done: {reason}")


def step(store: SessionStore) -> StepResult:
    """Take one coordinator step on the session."""
    return Coordinator(store).step()


def finalize(store: SessionStore) -> bool:
    """Mark an active session complete once its criteria hold (the coordinator's act, not a report's).

    Returns True when the session is complete afterwards. Refuses (OrchError) while a
    criterion fails; the caller syncs first so the criteria judge fresh state.
    """
    from ..criteria.evaluate import evaluate

    result = evaluate(store)
    if not result.ok:
        raise OrchError("the session cannot be finalized while its completion criteria fail: "
                        + "; ".join(result.missing))
    event = None
    with store.edit_session() as session:
        if session.state is SessionState.ACTIVE:
            event = transition(session, SessionState.COMPLETE, "criteria hold: session complete")
            session.todo = None
        complete = session.state is SessionState.COMPLETE
    if event is not None:
        store.append_event(event)
    return complete  # nothing lands by itself: `orch land` takes the result into the user's tree


#: The states from which a hand-launched agent runs its task again (`orch retry`).
RERUNNABLE = (AgentState.IDLE, AgentState.FAILED, AgentState.DONE, AgentState.ABORTED)


def never_started(task: Task, agent: Agent) -> bool:
    """The task was given to the agent, but the run that serves it was never recorded (orch was
    killed in between): whatever the agent's state says, that run must be started now."""
    if agent.state in LIVE:
        return False
    if task.for_run is not None:
        return len(agent.runs) < task.for_run
    return agent.current_task != task.id  # a session from before for_run


def run_was_lost(agent: Agent) -> bool:
    """The agent's last run was lost (its machine died): its CLI session is gone with it."""
    return bool(agent.runs) and agent.runs[-1].lost is not None


def cli_key(agent: Agent) -> str:
    """What a usage limit applies to: the CLI (and, for the sim, the CLI it stands in for)."""
    return f"{agent.cli}/{agent.sim_format}" if agent.sim_format else agent.cli


def parked_keys(agents: list[Agent]) -> dict[str, tuple]:
    """CLIs parked by a limit now: key → (the limit, the latest resume time)."""
    out: dict[str, tuple] = {}
    at = now()
    for a in agents:
        if a.state is AgentState.PARKED and a.resume_at is not None and a.resume_at > at:
            key = cli_key(a)
            if key not in out or a.resume_at > out[key][1]:
                out[key] = (a.limit, a.resume_at)
    return out
