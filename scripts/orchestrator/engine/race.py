"""Races: one implement task built by several implementers of different CLIs at once, judged by the tests.

    start   a planned task raced (`--race N`, `[team] race`, or `"race": N` on the item of the
            architect's plan) runs without an agent of its own: N candidate tasks take its place,
            each on its own seat (a CLI), each built by a new implementer in its own worktree on
            `orch/<session>--race-<task>-<agent>`, all from the same integration commit (the base)
    build   a candidate's work is committed on its branch when it ends — never merged; a candidate
            whose run fails is out (no retry: the race has others); at the time limit the ones
            still building are stopped and the rest is judged without them
    test    once every candidate has ended, each one's branch is merged onto the integration
            commit as it is then, as a commit on no branch (worktrees/trial.py), and the project's
            tests run there — by the verifier, one run at a time (verification runs of purpose
            "race"), so a step never waits for a test run
    review  when the tests leave two or more candidates tied for first (`[race] review_ties`), the
            team's reviewers — each member of a panel — read each tied candidate's trial commit
            (one review task per candidate and reviewer, `Task.race`); their blockers are counted
            on the candidate, not filed in the ledger (the winner's merged work is reviewed as
            any round's is)
    judge   the tests first (passing; then fewest failing tests; a trial merge that conflicts or
            could not be tested after those), then the reviewers' blockers (fewest), then the size
            of the change (fewer lines added and removed), then who finished first, then the
            seat's order. A person's `orch pick TASK AGENT` before the merge overrides the judge
            (a pick already made skips the reviews); both are recorded
    merge   the winner's branch is merged into the integration branch as the raced task's work —
            with the code every writing task uses, so a conflict becomes a merge task; the others
            stay as branches and their agents take no more work (`Session.benched`)

Candidates the tests already tell apart are not reviewed: N × M reviews would multiply the
costliest phase, while the tests cost no tokens (REVIEW_SYSTEM_SPEC.md, "Races and review").

Every decision is written under the session lock in the same write as what it records. The
winner's merge happens under that lock before the race is recorded merged; a step killed
after the merge but before the write merges again and finds the branch in already (outcome
`already`): it merges once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..core.errors import OrchError
from ..core.lifecycle import LIVE_AGENT_STATES, transition
from ..core.models import (
    Agent, AgentState, EndRequest, Event, EventKind, Race, RaceCandidate, RacePick, RaceState, Session, Task,
    TaskKind, TaskState, VerifyRun, VerifyRunState, now,
)
from ..store.sessions import SessionStore
from ..worktrees import layout
from ..worktrees.trial import change_size, trial_merge, trial_ref
from ..worktrees.trust import WorktreeRefused
from . import integration, verification

if TYPE_CHECKING:
    from .coordinator import Coordinator

OPEN_STATES = (RaceState.RUNNING, RaceState.TESTING, RaceState.REVIEWING, RaceState.DECIDED)
ENDED_TASK = (TaskState.DONE, TaskState.CANCELLED, TaskState.FAILED)


# --------------------------------------------------------------------------- reading the record


def open_race(session: Session, task_id: Optional[str]) -> Optional[Race]:
    """The race still deciding this raced task (None: not raced, or decided and merged, or failed)."""
    race = session.race(task_id) if task_id else None
    return race if race is not None and race.state in OPEN_STATES else None


def held(session: Session) -> set[str]:
    """Agents no other task may take: every candidate of an open race (its worktree holds its build)."""
    return {c.agent for r in session.races if r.state in OPEN_STATES for c in r.candidates if c.agent}


def width(session: Session, asked: Optional[int]) -> int:
    """How many implementers race a planned task: the plan's own number for it, else the team's."""
    n = session.team.race if asked is None else asked
    return min(max(n, 0), len(session.team.racers))


def seats(session: Session, n: int) -> list[str]:
    return list(session.team.racers[:n])


def branch_of(session_id: str, task_id: str, agent_id: str) -> str:
    return f"{layout.integration_branch(session_id)}--race-{task_id}-{agent_id}"


def placement(session: Session, task_id: str, agent_id: str) -> dict:
    """Where a candidate's new implementer works: its race branch, from the race's base; where a
    new reviewer of a tied candidate looks: that candidate's commit."""
    task = session.task(task_id)
    race = session.race(task.race) if task is not None and task.race else None
    if race is None:
        return {}
    if task.kind is TaskKind.REVIEW:
        return {"start": shown_commit(session, task)}
    return {"branch": branch_of(session.id, race.task, agent_id), "start": race.base}


def shown_commit(session: Session, task: Task) -> Optional[str]:
    """The commit a race's review task reads: its candidate merged onto the integration commit
    (the trial), or the candidate's own commit when that merge conflicted (None: not such a task)."""
    race = session.race(task.race or "") if task.kind is TaskKind.REVIEW else None
    c = next((x for x in race.candidates if task.id in x.reviews), None) if race is not None else None
    return (c.trial or c.commit) if c is not None else None


# --------------------------------------------------------------------------- the coordinator's side


class Races:
    """The race part of one coordinator step (engine/coordinator.py calls it from small hooks)."""

    def __init__(self, co: "Coordinator"):
        self.co = co
        self.store: SessionStore = co.store

    # ---- start
    def open(self, session: Session, task: Task, n: int) -> bool:
        """Race a freshly planned task with n candidates; False when it cannot be raced here."""
        if n < 2 or not integration.uses_worktrees(session):
            if n >= 2:
                self.co.decide(f"{task.id} was to be raced by {n} implementers, but this session shares one folder "
                               "(races need worktrees): built once", task=task.id, round=task.round)
            return False
        base = verification.tip(session)
        limit = self._time_limit()
        race = Race(task=task.id, title=task.title, base=base, deadline=now() + timedelta(seconds=limit))
        self.co._move_task(task, TaskState.RUNNING, f"raced by {n} implementers")
        task.started_at = now()
        task.attempts = 1
        for seat in seats(session, n):
            t = self.co._queue(session, TaskKind.IMPLEMENT, f"{task.title} (race {task.id}: {seat})", task.prompt,
                               seat=seat)
            t.race = task.id
            race.candidates.append(RaceCandidate(seat=seat, task=t.id))
        session.races.append(race)
        self.co.decide(f"{task.id} is raced by {n} implementers ({', '.join(c.seat for c in race.candidates)}), each "
                       f"in its own worktree from {base[:12]}; the tests judge, by "
                       f"{race.deadline.strftime('%H:%M:%S')} UTC at the latest", task=task.id, round=task.round,
                       kind=EventKind.RACE_STARTED, race=task.id, base=base,
                       candidates=[{"seat": c.seat, "task": c.task} for c in race.candidates],
                       deadline=race.deadline.isoformat())
        return True

    def _time_limit(self) -> float:
        from ..safety.policy import load_policy, workspace_of

        return load_policy(workspace_of(self.store)).race.time_limit_seconds

    def hired(self, session: Session, task: Task, agent_id: str) -> None:
        """A candidate's implementer was hired: its agent and branch go on the race's record."""
        race = session.race(task.race or "")
        c = race.candidate(task.id) if race is not None else None
        if c is not None:
            c.agent, c.branch = agent_id, branch_of(session.id, race.task, agent_id)

    # ---- build
    def harvest(self, session: Session, task: Task, agent: Agent) -> None:
        """A candidate's run ended: idle → its work committed on its race branch; failed → out.
        A review of a tied candidate ended: its blockers counted."""
        race = session.race(task.race or "")
        c = race.candidate(task.id) if race is not None else None
        if task.kind is TaskKind.REVIEW and race is not None:
            c = next((x for x in race.candidates if task.id in x.reviews), None)
        if c is None:
            return
        if task.kind is TaskKind.REVIEW:
            self._reviewed(session, race, task, agent)
        elif agent.state is AgentState.IDLE:
            self._built(session, race, c, task, agent)
        elif agent.state in (AgentState.FAILED, AgentState.ABORTED, AgentState.DONE):
            self._out(session, race, c, task, f"its run failed: {agent.state_reason[:200]}"
                      if agent.state is AgentState.FAILED else f"its agent is {agent.state.value}: "
                                                                 f"{agent.state_reason[:200]}")

    def _built(self, session: Session, race: Race, c: RaceCandidate, task: Task, agent: Agent) -> None:
        try:
            commit, files = integration.commit_candidate(session, task, agent)
            lines = change_size(Path(session.git.repo), race.base, agent.branch) if commit else 0
        except WorktreeRefused as e:
            self._out(session, race, c, task, f"orch's git refused its worktree: {e.message}")
            return
        except OrchError as e:
            self._out(session, race, c, task, f"its work could not be committed: {e.message}")
            return
        c.commit, c.files, c.lines = commit, files, lines
        c.ended = "finished" if commit else "finished without changing anything"
        task.commit, task.files_changed = commit, files
        self.co._finish(task, TaskState.DONE, self.co._last_text(agent))
        self.co.decide(f"{agent.id} ({c.seat}) built {race.task}'s candidate on {agent.branch}: "
                       f"{len(files)} file(s), {lines} line(s) changed; the race decides what is merged",
                       agent=agent.id, task=task.id, round=task.round, race=race.task, commit=commit)

    def _out(self, session: Session, race: Race, c: RaceCandidate, task: Task, why: str) -> None:
        c.ended = why
        c.outcome = f"out: {why}"
        if task.state in (TaskState.QUEUED, TaskState.RUNNING):
            self.co._move_task(task, TaskState.CANCELLED, f"out of race {race.task}: {why}")
            task.ended_at = now()
        self.co.decide(f"{c.agent or c.seat} is out of race {race.task}: {why}", agent=c.agent, task=task.id,
                       round=task.round, race=race.task)

    def enforce_deadlines(self) -> None:
        """Before the session lock: stop candidates still building past their race's time limit."""
        from ..runtime.workers import end_current_run

        session = self.store.read_session()
        for race in session.races:
            if race.state is not RaceState.RUNNING or race.deadline > now():
                continue
            for c in race.candidates:
                if not c.agent:
                    continue
                agent = self.store.read_agent(c.agent) if (self.store.agent_dir(c.agent) / "meta.json").is_file() \
                    else None
                if agent is not None and agent.state in LIVE_AGENT_STATES and agent.current_task == c.task:
                    end_current_run(self.store, c.agent, EndRequest.WALL_TIME,
                                    f"limit: race {race.task}'s time limit passed")
                    self.co.decide(f"{c.agent} was still building when race {race.task}'s time limit passed: stopped",
                                   agent=c.agent, task=c.task, race=race.task)

    # ---- test, judge, merge (under the session lock, after the harvest, before the gate's step)
    def step(self, session: Session, agents: dict[str, Agent]) -> None:
        for race in session.races:
            if race.state is RaceState.RUNNING:
                self._maybe_test(session, race, agents)
            if race.state is RaceState.TESTING:
                self._maybe_decide(session, race)
            if race.state is RaceState.REVIEWING and all(
                    (t := session.task(r)) is None or t.state in ENDED_TASK for c in race.candidates for r in c.reviews):
                self._decide(session, race)
            if race.state is RaceState.DECIDED:
                self._merge(session, race, agents)
            if session.state.value != "active":
                return

    def _maybe_test(self, session: Session, race: Race, agents: dict[str, Agent]) -> None:
        late = race.deadline <= now()
        for c in race.candidates:
            task = session.task(c.task)
            if task is None or not late:
                continue
            if task.state is TaskState.QUEUED:
                self._out(session, race, c, task, "not started before the race's time limit")
            elif task.state is TaskState.RUNNING and agents.get(c.agent or "") is not None \
                    and agents[c.agent].state is AgentState.PARKED:
                self._out(session, race, c, task, "its CLI was parked by a usage limit at the race's time limit")
        tasks = [session.task(c.task) for c in race.candidates]
        if not all(t is None or t.state in ENDED_TASK for t in tasks):
            return
        built = [c for c in race.candidates if c.commit]
        if not built:
            self._fail(session, race)
            return
        v = session.verification
        testing = verification.in_use(session)
        onto = verification.tip(session)
        for c in built:
            c.onto = onto
            try:
                trial = trial_merge(Path(session.git.repo), onto, c.branch, trial_ref(session.id, race.task, c.agent),
                                    f"orch: trial merge of {c.branch} onto {onto[:12]} (race {race.task})")
            except OrchError as e:
                c.tests = "error"
                c.ended += f"; its trial merge failed: {e.message}"
                continue
            c.trial, c.conflicts = trial.commit, trial.conflicts
            if trial.conflicts:
                c.tests = "conflict"
            elif not testing:
                c.tests = "off"
            else:
                run = VerifyRun(id=session.new_id("V"), commit=trial.commit, purpose="race",
                                race=f"{race.task}/{c.agent}")
                v.runs.append(run)
                c.run = run.id
                self.co.decide(f"{run.id}: the project's tests on {c.agent}'s candidate for {race.task}, merged onto "
                               f"{onto[:12]} (trial commit {trial.commit[:12]}, on no branch)",
                               kind=EventKind.VERIFY_STATE, round=session.round, run=run.id, commit=trial.commit,
                               purpose="race", to="pending", race=race.task, agent=c.agent)
        self._state(race, RaceState.TESTING,
                    f"{len(built)} candidate(s) built; " + ("their tests run on trial merges onto "
                                                            f"{onto[:12]}" if testing else
                                                            "the verification gate is off: judged on size"))

    def _fail(self, session: Session, race: Race) -> None:
        parent = session.task(race.task)
        why = "; ".join(f"{c.agent or c.seat}: {c.ended or 'ended'}" for c in race.candidates)
        self._state(race, RaceState.FAILED, f"no candidate produced work ({why})")
        for c in race.candidates:  # their worktrees hold what they left: the task is built afresh
            if c.agent:
                session.benched[c.agent] = f"race {race.task} failed: {c.ended or 'no work'}"
        if parent is not None and parent.state is TaskState.RUNNING:
            self.co._move_task(parent, TaskState.FAILED, f"no candidate of its race produced work: {why}")
            parent.ended_at = now()
            self.co._stop(session, f"{parent.id} ({parent.title}): no candidate of its race produced work ({why}) — "
                                   f"`orch retry {parent.id}` builds it once on the team's implementer")

    def _maybe_decide(self, session: Session, race: Race) -> None:
        v = session.verification
        for c in race.candidates:
            if c.tests or c.run is None:
                continue
            run = v.run(c.run) if v is not None else None
            if run is None or run.state is VerifyRunState.ERROR:
                c.tests = "error"
                c.ended += f"; its tests could not run: {run.state_reason[:160] if run else 'no record'}"
            elif run.state is VerifyRunState.FINISHED:
                failing = sorted(verification.failures(run, v))
                c.failing = failing
                c.tests = "no tests" if not run.command else "failed" if failing else "passed"
            else:
                return  # still testing
        if not self._review_ties(session, race):
            self._decide(session, race)

    def _review_ties(self, session: Session, race: Race) -> bool:
        """The tests tie two or more candidates for first: the reviewers read each one (True:
        their reviews are queued and the race is reviewing). Not when a person already picked,
        nor with `[race] review_ties = false`."""
        from ..review.prompts import race_review_prompt
        from ..safety.policy import load_policy, workspace_of
        from . import panel

        tied = tied_first(race)
        if len(tied) < 2 or race.pick is not None or not load_policy(workspace_of(self.store)).race.review_ties:
            return False
        if panel.is_panel(session):
            seats = panel.review_seats(session, self.store.agents(), self.co._budget_policy())
        else:
            seats = [(None, self.co._reviewer_id())]
        for c in tied:
            shown = c.trial or c.commit
            prompt = race_review_prompt(session.goal, race.task, race.title, c.files, shown, session.round)
            for seat, member in seats:
                t = self.co._queue(session, TaskKind.REVIEW, f"Review {c.agent}'s candidate for {race.task} "
                                                             f"({c.seat})" + (f" (panel: {seat})" if seat else ""),
                                   prompt, prefer=member, seat=seat)
                t.race = race.task
                c.reviews.append(t.id)
        self._state(race, RaceState.REVIEWING, f"the tests tie {', '.join(f'{c.agent} ({c.seat})' for c in tied)} "
                                               f"({tests_words(tied[0])}): the reviewers read each one; the fewest "
                                               "blockers wins")
        return True

    def _reviewed(self, session: Session, race: Race, task: Task, agent: Agent) -> None:
        """A review of a tied candidate ended: its blockers counted on the candidate (never filed)."""
        from ..review.engine import review_from_verdict
        from ..review.verdicts import parse_verdict

        c = next((x for x in race.candidates if task.id in x.reviews), None)
        if agent.state is not AgentState.IDLE:
            why = agent.state_reason[:160] or agent.state.value
            self.co._move_task(task, TaskState.CANCELLED, f"its reviewer's run ended {agent.state.value}: the race "
                                                          "is judged without this review")
            task.ended_at = now()
            if c is not None:
                c.review_notes.append(f"{agent.id}: no review ({why})")
            return
        parsed = parse_verdict(self.co._last_text(agent))
        review = review_from_verdict(parsed, review_id=f"{task.id}-race", round=task.round, reviewer=agent.id,
                                     cli=agent.cli, task=task.id)
        found = [f"[{b.severity.value}] {b.file or '?'}{':' + str(b.line) if b.line else ''} "
                 f"{' '.join(b.description.split())[:160]}" for b in review.blockers]
        if c is not None:
            if parsed.understood:
                c.blockers = (c.blockers or 0) + len(found)
            c.review_notes.append(f"{agent.id} ({agent.cli}{'/' + agent.sim_format if agent.sim_format else ''}): "
                                  + (f"{len(found)} blocker(s)" + (": " + "; ".join(found[:5]) if found else "")
                                     if parsed.understood else "its verdict could not be read"))
        self.co._finish(task, TaskState.DONE, self.co._last_text(agent))
        self.co.decide(f"{agent.id} read {c.agent if c else '?'}'s candidate for race {race.task}: "
                       + (f"{len(found)} blocker(s)" if parsed.understood else "no readable verdict")
                       + " (counted for the race, not filed)", agent=agent.id, task=task.id, round=task.round,
                       race=race.task, candidate=c.agent if c else None, blockers=found)

    def _decide(self, session: Session, race: Race) -> None:
        ranked = rank(session, race)
        for n, c in enumerate(ranked, 1):
            c.rank = n
        first = ranked[0]
        picked = race.candidate(race.pick.agent) if race.pick is not None else None
        if picked is not None and not picked.commit:
            self.co.decide(f"{race.pick.agent} was picked for {race.task}, but it produced no work: the judge decides",
                           task=race.task, race=race.task)
            picked = None
        winner = picked or first
        race.winner, race.decided_by, race.decided_at = winner.agent, "person" if picked else "judge", now()
        for c in ranked:
            if c is winner:
                c.outcome = f"won: {why_first(c, ranked)}" if not picked else \
                    f"won: picked by a person ({race.pick.why or 'no reason given'}); the judge ranked it #{c.rank}"
            elif not c.outcome:
                c.outcome = f"lost: {why_behind(c, winner)}"
        for c in race.candidates:
            if c is not winner and c.agent:
                session.benched[c.agent] = f"lost race {race.task}: its work stays on {c.branch}"
        how = "picked by a person" if picked else f"the judge: {why_first(winner, ranked)}"
        self._state(race, RaceState.DECIDED, f"{winner.agent} ({winner.seat}) wins — {how}")
        self.co.decide(f"race {race.task} decided: {winner.agent} ({winner.seat}) wins — {how}; "
                       + "; ".join(f"{c.agent or c.seat} {c.outcome}" for c in ranked if c is not winner),
                       agent=winner.agent, task=race.task, round=session.round,
                       race=race.task, winner=winner.agent, decided_by=race.decided_by,
                       ranking=[{"agent": c.agent, "seat": c.seat, "rank": c.rank, "tests": c.tests,
                                 "failing": c.failing[:10], "lines": c.lines, "outcome": c.outcome} for c in ranked])

    def _merge(self, session: Session, race: Race, agents: dict[str, Agent]) -> None:
        """The winner's branch into the integration branch, as the raced task's work."""
        parent = session.task(race.task)
        agent = agents.get(race.winner or "")
        if parent is None or agent is None:
            self.co._stop(session, f"race {race.task}'s winner {race.winner} is not on record — "
                                   f"`orch resume {session.id}` once it is")
            return
        parent.agent = agent.id
        winner = race.candidate(agent.id)
        parent.commit = winner.commit if winner is not None else parent.commit
        try:
            landing = integration.land(session, parent, agent)
        except WorktreeRefused as e:
            note = ""
            if e.repairable:
                try:
                    note = "; " + integration.renew_tree(session, agent)
                except OrchError as err:
                    note = f"; it could not be made afresh: {err.message}"
            self.co.decide(f"{race.task}: orch's git refused {agent.id}'s worktree: {e.message}{note}",
                           agent=agent.id, task=race.task, kind=EventKind.GIT_REFUSED)
            if not e.repairable:
                self.co._stop(session, f"race {race.task}'s winner cannot be merged: {e.message} — "
                                       f"`orch resume {session.id}` once it is mended")
            return
        except OrchError as e:
            self.co._stop(session, f"race {race.task}'s winner could not be merged: {e.message} — "
                                   f"`orch resume {session.id}` carries on")
            return
        record = landing.record
        if record is not None and record.outcome == "conflict":
            self.co._queue_conflict(session, parent, agent, record)
        elif record is not None:
            self.co.decide(f"{agent.id}'s {race.task} (winner of its race) merged into "
                           f"{session.git.integration_branch} ({(record.commit or '')[:12]}): {len(record.files)} "
                           f"file(s)", agent=agent.id, task=race.task, round=session.round, kind=EventKind.GIT_MERGED,
                           branch=record.branch, commit=parent.commit, merge_commit=record.commit, files=record.files,
                           already=record.outcome == "already", race=race.task)
        self.co._record_files(agent, parent.files_changed)
        self.co._finish(parent, TaskState.DONE, f"raced: {agent.id} ({winner.seat if winner else '?'}) won")
        race.merged_at = now()
        self._state(race, RaceState.MERGED, f"{agent.id}'s branch merged; the others stay as branches: "
                                            + ", ".join(c.branch for c in race.candidates
                                                        if c.agent != agent.id and c.branch) or "none")

    def _state(self, race: Race, state: RaceState, why: str) -> None:
        event = transition(race, state, why)
        if event is not None:
            self.co.events.append(event)


# --------------------------------------------------------------------------- the judge


def _finished_at(session: Session, c: RaceCandidate):
    t = session.task(c.task)
    return t.ended_at if t is not None and t.ended_at is not None else now()


TESTS_ORDER = {"passed": 0, "no tests": 1, "off": 1, "failed": 2, "error": 3, "conflict": 4, "": 5}


def rank(session: Session, race: Race) -> list[RaceCandidate]:
    """Candidates with work, best first: tests (passing, then fewest failures; an untestable
    trial after those), then the reviewers' blockers (a candidate not reviewed counts none: the
    tests already put it behind, or no review could be read), then the size of the change, then
    who finished first, then seat order."""
    order = {c.seat: i for i, c in enumerate(race.candidates)}
    built = [c for c in race.candidates if c.commit]
    return sorted(built, key=lambda c: (TESTS_ORDER.get(c.tests, 5), len(c.failing), c.blockers or 0, c.lines,
                                        _finished_at(session, c), order[c.seat]))


def tied_first(race: Race) -> list[RaceCandidate]:
    """The candidates with work that the tests rank equal first (the ones worth a review)."""
    built = [c for c in race.candidates if c.commit]
    if not built:
        return []
    best = min((TESTS_ORDER.get(c.tests, 5), len(c.failing)) for c in built)
    return [c for c in built if (TESTS_ORDER.get(c.tests, 5), len(c.failing)) == best]


def tests_words(c: RaceCandidate) -> str:
    return {"passed": "its tests pass", "no tests": "no test command", "off": "not tested (the gate is off)",
            "failed": f"{len(c.failing)} failing test(s)" + (f" ({', '.join(c.failing[:3])})" if c.failing else ""),
            "error": "its tests could not run", "conflict": f"its work conflicts with the integration branch "
                                                            f"({', '.join(c.conflicts[:3])})"}.get(c.tests, "untested")


def why_first(c: RaceCandidate, ranked: list[RaceCandidate]) -> str:
    others = [o for o in ranked if o is not c]
    if not others:
        return f"the only candidate with work; {tests_words(c)}"
    o = others[0]
    if TESTS_ORDER.get(c.tests, 5) != TESTS_ORDER.get(o.tests, 5) or len(c.failing) != len(o.failing):
        return f"{tests_words(c)}, against {tests_words(o)}"
    if (c.blockers or 0) != (o.blockers or 0):
        return f"{tests_words(c)} as the next one's do; the reviewers found fewer blockers ({c.blockers or 0} " \
               f"against {o.blockers or 0})"
    if c.lines != o.lines:
        return f"{tests_words(c)} as the next one's do; the smaller change ({c.lines} lines against {o.lines})"
    return f"{tests_words(c)}, the same size as the next: it finished first"


def why_behind(c: RaceCandidate, winner: RaceCandidate) -> str:
    if not c.commit:
        return c.ended or "no work"
    if TESTS_ORDER.get(c.tests, 5) != TESTS_ORDER.get(winner.tests, 5) or len(c.failing) != len(winner.failing):
        return tests_words(c)
    if (c.blockers or 0) != (winner.blockers or 0):
        return f"{tests_words(c)} too, but the reviewers found {c.blockers or 0} blocker(s) against " \
               f"{winner.blockers or 0}"
    if c.lines != winner.lines:
        return f"{tests_words(c)}, but a larger change ({c.lines} lines against {winner.lines})"
    return f"{tests_words(c)} and the same size: finished later"


# --------------------------------------------------------------------------- a person's choice


def pick(store: SessionStore, task_id: str, agent_id: str, why: str = "") -> str:
    """`orch pick TASK AGENT`: record a person's winner for a race not merged yet; one line."""
    from ..core.errors import InvalidInput, NotFound

    with store.edit_session() as session:
        race = session.race(task_id)
        if race is None:
            raced = [r.task for r in session.races]
            raise NotFound(f"{task_id} is not a raced task of session {session.id}"
                           + (f" (raced: {', '.join(raced)})" if raced else " (it has no races)"))
        c = race.candidate(agent_id)
        names = ", ".join(x.agent or f"{x.seat} (not started)" for x in race.candidates)
        if c is None or not c.agent:
            raise InvalidInput(f"{agent_id} is not a candidate of race {task_id} (its candidates: {names})")
        if race.state in (RaceState.MERGED, RaceState.FAILED):
            raise InvalidInput(f"race {task_id} is {race.state.value}"
                               + (f" (won by {race.winner})" if race.winner else "") + ": too late to pick")
        if c.ended and not c.commit:
            raise InvalidInput(f"{agent_id} produced no work in race {task_id} ({c.ended}): pick another ({names})")
        race.pick = RacePick(agent=agent_id, why=why)
        if race.state is RaceState.DECIDED and race.winner != agent_id:
            # decided but not merged yet (its merge was refused): the person's choice replaces the judge's
            race.winner, race.decided_by = agent_id, "person"
            session.benched.pop(agent_id, None)
            c.outcome = f"won: picked by a person ({why or 'no reason given'}); the judge ranked it #{c.rank}"
            for x in race.candidates:
                if x is not c and x.commit:
                    x.outcome = f"lost: a person picked {agent_id} ({why_behind(x, c)})"
                if x is not c and x.agent:
                    session.benched[x.agent] = f"lost race {task_id}: its work stays on {x.branch}"
        state = race.state.value
    line = (f"{agent_id} ({c.seat}) is picked to win race {task_id}" + (f": {why}" if why else "")
            + f" — recorded; the race is {state}, and its next step merges this candidate's work")
    store.append_event(Event(kind=EventKind.RACE_PICKED, agent=agent_id, task=task_id, reason=line,
                             data={"race": task_id, "agent": agent_id, "why": why}))
    return line

