"""The verification gate: the project's own tests on every commit of the integration branch.

    base      the first run is on the session's base: tests failing there are work for the
              team (a blocker the coordinator assigns like any other), never a merge's fault
    tip       after each merge orch runs the tests on the new tip; tests that fail there but
              passed on the previously tested commit were broken by a merge in between —
              one merge: a blocker for its author; several: bisect
    bisect    the tests run on the commits in between until the merge that broke each
              newly failing test is found
    resolve   the verifier's blockers are closed by a green run on a later commit (after their
              fix task ended), not by a reviewer; still failing: reopened

One run at a time, by the `verifier` pseudo-agent (adapters/verify.py, verify/runner.py) in
its own detached checkout of the commit, started through the same supervised launch path as
every agent: it is ingested, visible and confined like one. Every decision is recorded in the
session (`Session.verification`) under the session lock before the run starts, so a step
killed anywhere is carried on by the next one (a run recorded but not started is started; a
started one whose number was not recorded is found by its request id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from ..core.errors import OrchError
from ..core.lifecycle import LIVE_AGENT_STATES, transition
from ..core.models import (
    Agent, Bisect, BlockerSource, BlockerState, Event, EventKind, KnownFailure, Outcome, Role, Session,
    TaskState, Verification, VerifyRun, VerifyRunState, now,
)
from ..review.blocker_ledger import file_test_failure, reopen_by_tests, resolve_by_tests
from ..store.sessions import SessionStore
from ..verify.failures import effective_failures, is_known
from ..worktrees import layout
from ..worktrees.checkout import checkout_commit, first_parent_commits
from ..worktrees.hygiene import copy_withheld
from ..criteria.completion import tip_of

VERIFIER = "verifier"  # the pseudo-agent's id: one per session
VERIFY_CLI = "verify"  # its adapter (adapters/verify.py)
MAX_ATTEMPTS = 2  # a commit whose tests cannot be run twice stops the session
Decide = Callable[..., None]


# --------------------------------------------------------------------------- reading the record


def in_use(session: Session) -> bool:
    """The gate runs for coordinated sessions in worktrees, unless the policy turned it off."""
    v = session.verification
    return (session.coordinated and session.git is not None and session.git.mode == "worktrees"
            and v is not None and v.enabled)


def tip(session: Session) -> str:
    """The integration branch's tip as orch recorded it: the last merge's commit, else the base."""
    return tip_of(session.git.model_dump(mode="json")) if session.git else ""


def known(v: Verification) -> list[str]:
    return [k.test for k in v.known_failures]


def failures(run: VerifyRun, v: Verification) -> set[str]:
    """A finished run's failures that count (known failures let through, nothing else)."""
    return set(effective_failures(run.model_dump(mode="json"), known(v)))


def last_tested(v: Verification) -> Optional[VerifyRun]:
    """The latest finished run on a base or tip commit (bisect runs look back, not forward)."""
    return next((r for r in reversed(v.runs) if r.state is VerifyRunState.FINISHED and r.purpose in ("base", "tip")),
                None)


def _awaiting_fix_run(session: Session) -> list[str]:
    """The verifier's fixed blockers whose fix ended after the latest run started: a run must judge them."""
    v = session.verification
    latest = max((r.started_at for r in v.runs if r.purpose in ("base", "tip") and r.started_at), default=None)
    waiting = []
    for b in session.blockers:
        if b.source is not BlockerSource.VERIFICATION or b.state is not BlockerState.FIXED:
            continue
        fix = session.task(b.fix_task) if b.fix_task else None
        if fix is not None and fix.state is TaskState.DONE and fix.ended_at is not None \
                and (latest is None or latest < fix.ended_at):
            waiting.append(b.id)
    return waiting


def settled(session: Session) -> bool:
    """True when the tests have judged the integration branch as it is: nothing running or
    pending, no bisect under way, the tip tested, and every fixed verifier blocker judged.
    A review waits for this, so the reviewer reads the latest result."""
    if not in_use(session):
        return True
    v = session.verification
    if any(r.state in (VerifyRunState.PENDING, VerifyRunState.RUNNING) for r in v.runs) or v.bisect is not None:
        return False
    last = last_tested(v)
    return last is not None and last.commit == tip(session) and last.judged and not _awaiting_fix_run(session)


def prompt_section(session: Session) -> str:
    """What the reviewer is told about the tests of the commit it reviews (empty when off).
    Never says "verify" or "verdict": the sim routes prompts by those words."""
    if not in_use(session):
        return ""
    last = last_tested(session.verification)
    if last is None:
        return ""
    where = f"the integration commit {last.commit[:12]}"
    if not last.command:
        return f"Test results: {where} has no test command yet ({last.command_source})."
    cmd = " ".join(last.command)
    failing = sorted(failures(last, session.verification))
    if not failing:
        return f"Test results: orch ran `{cmd}` on {where}: every test passed."
    names = ", ".join(failing[:10]) + (f" and {len(failing) - 10} more" if len(failing) > 10 else "")
    return (f"Test results: orch ran `{cmd}` on {where}: {len(failing)} failing — {names}"
            f"{' (' + last.first_error + ')' if last.first_error else ''}. orch has filed these as blockers "
            "for their authors; report other problems.")


# --------------------------------------------------------------------------- the record from the policy


def _settings(store: SessionStore):
    from ..safety.policy import load_policy, workspace_of

    return load_policy(workspace_of(store)).verify


def sync_settings(store: SessionStore, session: Session, decide: Decide) -> Optional[Verification]:
    """The session's verification record, made or brought in line with the policy's [verify]
    (on, the command, the time limit, the policy's known failures). None outside worktrees."""
    if not session.coordinated or session.git is None or session.git.mode != "worktrees":
        return None
    policy = _settings(store)
    v = session.verification
    if v is None:
        v = session.verification = Verification()
    reason = ("off: the policy's [verify] enabled = false" if not policy.enabled
              else "the policy's [verify] command" if policy.command
              else "the test command found in each commit's tree")
    changed = (v.enabled, v.command, v.timeout_seconds, v.reason) != (policy.enabled, policy.command,
                                                                       policy.timeout_seconds, reason)
    v.enabled, v.command, v.timeout_seconds, v.reason = policy.enabled, list(policy.command), policy.timeout_seconds, reason
    mine = [k for k in v.known_failures if k.source != "policy"]
    theirs = [KnownFailure(test=t, why="listed in the policy's [verify] known_failures", source="policy")
              for t in policy.known_failures]
    if [k.test for k in v.known_failures if k.source == "policy"] != [k.test for k in theirs]:
        v.known_failures = mine + theirs
        changed = True
    if changed:
        decide(f"verification: {reason}" + (f"; known failures: {', '.join(known(v))}" if v.known_failures else ""),
               kind=EventKind.VERIFY_KNOWN if theirs else EventKind.DECISION)
    return v


# --------------------------------------------------------------------------- the gate, one step


class Gate:
    """The gate's part of one coordinator step: `step` under the session lock (after the
    harvest, before the next phase is planned), `start` after it."""

    def __init__(self, store: SessionStore, decide: Decide, stop: Callable[[Session, str], None]):
        self.store = store
        self.decide = decide
        self.stop = stop
        self.events: list[Event] = []
        self.to_start: Optional[str] = None

    def _log(self, event: Optional[Event]) -> None:
        if event is not None:
            self.events.append(event)

    def step(self, session: Session, agents: dict[str, Agent]) -> list[Event]:
        """Collect the finished run, judge it, decide the next. The events to append."""
        v = sync_settings(self.store, session, self.decide)
        if v is None or not v.enabled:
            return []
        verifier = agents.get(VERIFIER)
        self._collect(session, v, verifier)
        for run in [r for r in v.runs if r.state is VerifyRunState.FINISHED and not r.judged]:
            self._judge(session, v, run)
        self._waive(session, v)
        active = next((r for r in v.runs if r.state in (VerifyRunState.PENDING, VerifyRunState.RUNNING)), None)
        if active is None:
            active = self._next(session, v)
        if active is not None and active.state is VerifyRunState.PENDING and \
                (verifier is None or verifier.state not in LIVE_AGENT_STATES):
            self.to_start = active.id
        return self.events

    # ---- what the verifier did
    def _collect(self, session: Session, v: Verification, verifier: Optional[Agent]) -> None:
        for r in v.runs:
            if r.state is VerifyRunState.PENDING and verifier is not None:
                n = next((x.n for x in reversed(verifier.runs) if _request_id(x.prompt) == r.id), None)
                if n is not None:  # started, but the step that started it was killed before saying so
                    r.agent_run, r.started_at = n, verifier.runs[n - 1].started_at
                    self._log(transition(r, VerifyRunState.RUNNING, f"{r.id} was started: run {n} of the verifier"))
            if r.state is not VerifyRunState.RUNNING:
                continue
            run = verifier.runs[r.agent_run - 1] if verifier is not None and r.agent_run and \
                r.agent_run <= len(verifier.runs) else None
            if run is None:
                self._log(transition(r, VerifyRunState.ERROR, "the verifier's run is not on record"))
                continue
            if run.n not in verifier.ingest.finished_runs:
                continue  # still testing
            result = _result(run.final_text) if run.outcome is Outcome.SUCCESS else None
            if result is None or result.get("error"):
                why = (result or {}).get("error") or (f"the verifier's run ended without a result: "
                                                      f"{verifier.state_reason or run.failure or 'no reason given'}")
                self._log(transition(r, VerifyRunState.ERROR, why[:500]))
                continue
            r.ended_at = run.ended_at or now()
            r.command, r.command_source = list(result.get("command") or []), str(result.get("source") or "")
            r.exit_code, r.timed_out = result.get("exit_code"), bool(result.get("timed_out"))
            r.seconds = float(result.get("seconds") or 0.0)
            r.failing = [str(t) for t in result.get("failing") or []]
            r.files = {str(k): str(val) for k, val in (result.get("files") or {}).items()}
            r.first_error, r.tail = str(result.get("first_error") or ""), str(result.get("tail") or "")
            event = transition(r, VerifyRunState.FINISHED, str(result.get("summary") or "finished"))
            event.data.update({"exit_code": r.exit_code, "failing": r.failing[:20], "seconds": r.seconds,
                               "command": r.command, "timed_out": r.timed_out})
            self._log(event)

    # ---- what a result means
    def _judge(self, session: Session, v: Verification, run: VerifyRun) -> None:
        run.judged = True
        if run.purpose == "race":
            return  # a race candidate's trial merge: the race reads the result (engine/race.py)
        failing = failures(run, v)
        if run.purpose == "base":
            if failing:
                self._file(session, run, sorted(failing), merge=None, author=None,
                           why=f"The project's tests fail at the session's base {run.commit[:12]}, before any "
                               f"agent's work: the team's to make pass (or a person declares one out of scope: "
                               f"`orch verify --known-failure TEST`)")
            return
        if run.purpose == "bisect":
            self._bisect(session, v, run, failing)
            return
        before = next((r for r in reversed(v.runs[:v.runs.index(run)])
                       if r.state is VerifyRunState.FINISHED and r.purpose in ("base", "tip")), None)
        new = failing - (failures(before, v) if before is not None else set())
        if new and before is not None:
            commits = first_parent_commits(Path(session.git.repo), before.commit, run.commit)
            if len(commits) == 1:
                self._blame(session, v, commits[0], sorted(new), run, before.commit)
            elif commits:
                v.bisect = Bisect(good=before.commit, bad=run.commit, tests=sorted(new), commits=commits,
                                  lo=-1, hi=len(commits) - 1)
                self.decide(f"{len(new)} test(s) newly failing on {run.commit[:12]}, {len(commits)} merges since "
                            f"{before.commit[:12]} passed them: bisecting", kind=EventKind.VERIFY_BLAME,
                            tests=sorted(new)[:20], commits=commits)
                self._bisect_advance(session, v)
            else:  # the same commit again (a rerun): no merge to blame
                self._file(session, run, sorted(new), merge=None, author=None,
                           why=f"The project's tests fail on {run.commit[:12]} though they passed on the same "
                               f"commit before (flaky?)")
        elif new:
            self._file(session, run, sorted(new), merge=None, author=None,
                       why=f"The project's tests fail on {run.commit[:12]}, with no earlier result to compare")
        self._resolve(session, v, run, failing)

    def _blame(self, session: Session, v: Verification, commit: str, tests: list[str], run: VerifyRun,
               good: str) -> None:
        m = next((m for m in session.git.merges if m.commit == commit and m.outcome == "merged"), None)
        cmd = " ".join(run.command)
        if m is None:
            self._file(session, run, tests, merge=None, author=None,
                       why=f"The project's tests broke on {commit[:12]}, a commit orch did not record as a merge "
                           f"(`{cmd}` passed them on {good[:12]})")
            return
        self._file(session, run, tests, merge=m.task, author=m.agent,
                   why=f"{m.task}'s merge ({m.agent}, {commit[:12]}) broke the project's tests (`{cmd}` passed them "
                       f"on {good[:12]})")

    def _file(self, session: Session, run: VerifyRun, tests: list[str], merge: Optional[str], author: Optional[str],
              why: str) -> None:
        names = ", ".join(tests[:8]) + (f" and {len(tests) - 8} more" if len(tests) > 8 else "")
        detail = f" First error: {run.first_error}" if run.first_error else ""
        description = f"{why}: {names}.{detail}"
        file = next((run.files[t] for t in tests if run.files.get(t)), "")
        blocker = file_test_failure(session, tests=tests, file=file, description=description, merge=merge,
                                    author=author, run_id=run.id, round=session.round)
        self.events.append(Event(kind=EventKind.BLOCKER_FILED, agent=VERIFIER, task=merge, round=session.round,
                                 reason=f"{blocker.id} [high] {file} {description[:160]}",
                                 data={"blocker": blocker.id, "file": file, "line": None, "severity": "high",
                                       "source": "verification", "tests": tests[:20], "merge": merge,
                                       "author": author, "run": run.id}))
        self.decide(f"{blocker.id}: " + (f"{merge}'s merge broke {names}: assigned to its author {author}" if merge
                                         else f"{names}: {why.split(':')[0]}"),
                    kind=EventKind.VERIFY_BLAME, round=session.round, blocker=blocker.id, merge=merge, author=author,
                    tests=tests[:20], run=run.id)

    def _bisect(self, session: Session, v: Verification, run: VerifyRun, failing: set[str]) -> None:
        b = v.bisect
        if b is None or run.commit not in b.commits:
            return
        i = b.commits.index(run.commit)
        if set(b.tests) & failing:
            b.hi = min(b.hi, i)
        else:
            b.lo = max(b.lo, i)
        self._bisect_advance(session, v)

    def _bisect_advance(self, session: Session, v: Verification) -> None:
        """Narrow the bisect with results already at hand; blame once one merge is left."""
        while v.bisect is not None:
            b = v.bisect
            if b.hi - b.lo > 1:
                mid = b.commits[(b.lo + b.hi) // 2]
                done = next((r for r in reversed(v.runs) if r.commit == mid and r.state is VerifyRunState.FINISHED),
                            None)
                if done is None:
                    return  # _next runs the tests on mid
                if set(b.tests) & failures(done, v):
                    b.hi = (b.lo + b.hi) // 2
                else:
                    b.lo = (b.lo + b.hi) // 2
                continue
            culprit = b.commits[b.hi]
            at = next(r for r in reversed(v.runs) if r.commit == culprit and r.state is VerifyRunState.FINISHED)
            broken = sorted(set(b.tests) & failures(at, v))
            good = b.commits[b.lo] if b.lo >= 0 else b.good
            self._blame(session, v, culprit, broken, at, good)
            rest = sorted(set(b.tests) - set(broken))
            later = b.commits[b.hi + 1:]
            v.bisect = Bisect(good=culprit, bad=b.bad, tests=rest, commits=later, lo=-1, hi=len(later) - 1) \
                if rest and later else None

    def _resolve(self, session: Session, v: Verification, run: VerifyRun, failing: set[str]) -> None:
        """The verifier's open blockers against a run on the tip: green → verified, still red after
        its fix → reopened."""
        for b in session.blockers:
            if b.source is not BlockerSource.VERIFICATION or b.state in (BlockerState.VERIFIED, BlockerState.ASSIGNED):
                continue
            if b.found_by == run.id:
                continue  # filed from this very run
            still = sorted(set(b.tests) & failing)
            if b.state is BlockerState.FIXED:
                fix = session.task(b.fix_task) if b.fix_task else None
                if fix is None or fix.state is not TaskState.DONE or fix.ended_at is None \
                        or run.started_at is None or run.started_at < fix.ended_at:
                    continue  # this run tested a commit from before the fix
                changes = (reopen_by_tests(session, b.id, f"still failing on {run.commit[:12]} (run {run.id}): "
                                                          f"{', '.join(still[:5])}", session.round) if still
                           else resolve_by_tests(session, b.id, f"the tests pass on {run.commit[:12]} (run {run.id})",
                                                 session.round))
            elif not still:
                changes = resolve_by_tests(session, b.id, f"the tests pass on {run.commit[:12]} (run {run.id})",
                                           session.round)
            else:
                continue
            for ch in changes:
                self.events.append(Event(kind=EventKind.BLOCKER_STATE, agent=VERIFIER, round=session.round,
                                         reason=f"{ch.blocker} {ch.after.value} by the tests", data=ch.event_data()))

    def _waive(self, session: Session, v: Verification) -> None:
        """The verifier's blockers whose every test a person declared out of scope are closed,
        saying so (a fix task still working on one finishes first)."""
        for b in session.blockers:
            if b.source is not BlockerSource.VERIFICATION or b.state in (BlockerState.VERIFIED, BlockerState.ASSIGNED):
                continue
            decisions = [next((k for k in v.known_failures if is_known(t, [k.test])), None) for t in b.tests]
            if not b.tests or None in decisions:
                continue
            why = "; ".join(dict.fromkeys(f"{k.test}: {k.why or 'no reason given'} ({k.source})" for k in decisions))
            for ch in resolve_by_tests(session, b.id, f"declared out of scope as a known failure — {why}",
                                       session.round):
                self.events.append(Event(kind=EventKind.BLOCKER_STATE, agent=VERIFIER, round=session.round,
                                         reason=f"{ch.blocker} {ch.after.value}: a known failure", data=ch.event_data()))

    # ---- what to run next
    def _next(self, session: Session, v: Verification) -> Optional[VerifyRun]:
        git = session.git
        if not any(r.state is VerifyRunState.FINISHED and r.purpose == "base" for r in v.runs):
            return self._queue(session, v, git.base, "base")
        if v.bisect is not None:
            b = v.bisect
            return self._queue(session, v, b.commits[(b.lo + b.hi) // 2], "bisect")
        last = last_tested(v)
        head = tip(session)
        if last is None or last.commit != head or _awaiting_fix_run(session):
            return self._queue(session, v, head, "tip")
        return None

    def _queue(self, session: Session, v: Verification, commit: str, purpose: str) -> Optional[VerifyRun]:
        failed = [r for r in v.runs if r.commit == commit and r.state is VerifyRunState.ERROR]
        done_after = [r for r in v.runs if r.commit == commit and r.state is VerifyRunState.FINISHED]
        if len(failed) >= MAX_ATTEMPTS and (not done_after or v.runs.index(done_after[-1]) < v.runs.index(failed[-1])):
            self.stop(session, f"the project's tests could not be run on {commit[:12]} ({len(failed)} attempts; last: "
                               f"{failed[-1].state_reason}) — fix the cause (the policy's [verify] command, or "
                               f"`orch verify` to see the runs), then `orch resume {session.id}`")
            return None
        run = VerifyRun(id=session.new_id("V"), commit=commit, purpose=purpose)
        v.runs.append(run)
        what = {"base": "the session's base", "tip": "the integration branch's tip",
                "bisect": "a commit between the last passing run and the failing one"}[purpose]
        self.decide(f"{run.id}: the project's tests on {what} {commit[:12]}", kind=EventKind.VERIFY_STATE,
                    round=session.round, run=run.id, commit=commit, purpose=purpose, to="pending")
        return run

    # ---- after the session lock: start the decided run
    def start(self) -> None:
        """Check the commit out in the verifier's worktree and start (or resume) the verifier on it."""
        if self.to_start is None:
            return
        from ..runtime.workers import launch_agent, resume_agent  # the launch path every agent takes

        session = self.store.read_session()
        v = session.verification
        r = v.run(self.to_start) if v else None
        if r is None or r.state is not VerifyRunState.PENDING:
            return
        n, error = None, ""
        try:
            cwd = checkout_tree(session, r.commit)
            request = json.dumps({"id": r.id, "commit": r.commit, "command": v.command or None,
                                  "timeout": v.timeout_seconds})
            if (self.store.agent_dir(VERIFIER) / "meta.json").is_file():
                agent = resume_agent(self.store, VERIFIER, request, fresh_session=True)
            else:
                agent = launch_agent(self.store, cli=VERIFY_CLI, role=Role.VERIFIER, prompt=request, cwd=cwd,
                                     agent_id=VERIFIER)
            n = agent.runs[-1].n
        except OrchError as e:
            error = e.message
        with self.store.edit_session() as session:
            r = session.verification.run(self.to_start)
            if r is None or r.state is not VerifyRunState.PENDING:
                return
            if n is not None:
                r.agent_run, r.started_at = n, now()
                event = transition(r, VerifyRunState.RUNNING, f"{r.id}: testing {r.commit[:12]} ({r.purpose}), "
                                                              f"run {n} of the verifier")
            else:
                event = transition(r, VerifyRunState.ERROR, f"could not start the verifier: {error}"[:500])
        self.store.append_event(event)
        self.to_start = None


def checkout_tree(session: Session, commit: str) -> Path:
    """The verifier's worktree at commit, clean, with the user's withheld files (a `.env` the
    project's tests may need, never committed) copied in as the agents get them; the folder
    to run in (the workspace's subfolder of it)."""
    git = session.git
    tree = layout.worktree_path(Path(git.worktrees_dir), session.id, VERIFIER)
    checkout_commit(Path(git.repo), tree, commit)
    copy_withheld(Path(git.repo), tree, git.withheld)
    if git.subdir:
        (tree / git.subdir).mkdir(parents=True, exist_ok=True)
        return tree / git.subdir
    return tree


def _request_id(prompt: str) -> Optional[str]:
    try:
        obj = json.loads(prompt)
    except ValueError:
        return None
    return obj.get("id") if isinstance(obj, dict) else None


def _result(text: str) -> Optional[dict]:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- a person's decision


def declare_known(store: SessionStore, test: str, why: str, forget: bool = False) -> str:
    """`orch verify --known-failure TEST [--why TEXT]` (or --forget): one line on what changed."""
    from ..core.errors import InvalidInput

    test = test.strip()
    if not test:
        raise InvalidInput("name the failing test (its name, the end of its name, or its file)")
    with store.edit_session() as session:
        v = session.verification
        if v is None:
            session.verification = v = Verification(enabled=False, reason="not started yet")
        mine = [k for k in v.known_failures if k.test == test and k.source == "command"]
        if forget:
            if not mine:
                raise InvalidInput(f"{test!r} is not a declared known failure of session {session.id}")
            v.known_failures = [k for k in v.known_failures if k not in mine]
            line = f"{test} is no longer a known failure: it fails the session again"
        else:
            v.known_failures = [k for k in v.known_failures if k not in mine] + [KnownFailure(test=test, why=why)]
            line = f"{test} is declared a known failure (out of scope){': ' + why if why else ''}"
    store.append_event(Event(kind=EventKind.VERIFY_KNOWN, reason=line,
                             data={"test": test, "why": why, "forget": forget}))
    return line
