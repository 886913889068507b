"""`orch land`: the session's result taken into the user's tree as orch found it (worktrees/land.py
does the git); here, which session may land, the commit message that summarises it, the record
it leaves, and what to tell the user next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import InvalidInput, NotFound
from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import Agent, BlockerSource, BlockerState, Event, EventKind, LandRecord, Session, SessionState
from ..safety.redaction import redact_text
from ..store.sessions import SessionStore
from ..worktrees.git import rev
from ..worktrees.land import Landed, LandPlan, apply_landing, plan_landing
from ..criteria.completion import verification_line
from .integration import uses_worktrees


@dataclass
class Landing:
    """What `orch land` did (or found to do)."""

    session: str
    mode: str
    plan: LandPlan
    landed: Optional[Landed] = None
    next_steps: list[str] = field(default_factory=list)
    nothing: bool = False


def _mode(store: SessionStore, asked: Optional[str]) -> str:
    if asked:
        return asked
    from ..safety.policy import load_policy, workspace_of

    return load_policy(workspace_of(store)).git.land


def check_landable(store: SessionStore, session: Session, anyway: bool) -> None:
    """One-line refusals: no integration branch, agents still working, a session not finished."""
    if not uses_worktrees(session):
        raise InvalidInput(f"session {session.id} worked in the shared folder: its changes are in your working "
                           "tree already (nothing to land)")
    live = [a.id for a in store.agents() if a.state in LIVE_AGENT_STATES]
    if live:
        raise InvalidInput(f"session {session.id} still has working agents ({', '.join(live)}): wait for them "
                           f"(`orch wait`), or `orch abort --all`, then land")
    if session.state is not SessionState.COMPLETE and not anyway:
        raise InvalidInput(f"session {session.id} is {session.state.value}, not complete: finish it (`orch check`, "
                           f"`orch resume {session.id}`), or `orch land --anyway` to take what it has")


def plan(store: SessionStore, mode: Optional[str] = None, anyway: bool = False) -> Landing:
    """What landing the session would do, with every conflict; nothing is written."""
    session = store.read_session()
    check_landable(store, session, anyway)
    git = session.git
    result = rev(f"refs/heads/{git.integration_branch}", Path(git.repo))
    if result is None:
        raise NotFound(f"the integration branch {git.integration_branch} no longer exists "
                       f"(removed by `orch clean --discard`?): nothing to land")
    chosen = _mode(store, mode)
    return Landing(session=session.id, mode=chosen, plan=plan_landing(Path(git.repo), git.base, result, chosen))


def land(store: SessionStore, mode: Optional[str] = None, anyway: bool = False) -> Landing:
    """Take the result: refuses with every conflicting file (nothing written), or writes it all."""
    landing = plan(store, mode, anyway)
    p = landing.plan
    if not p.conflicts and p.nothing_to_do:
        landing.nothing = True
        landing.next_steps = ["nothing to land: the session's changes are in your working tree already"
                              + (" and your branch" if landing.mode in ("commit", "merge") else "")]
        return landing
    if p.conflicts:
        return landing  # the caller reports them file by file; apply_landing would refuse
    session = store.read_session()
    landing.landed = apply_landing(p, commit_message(session, store.agents()))
    landed = landing.landed
    record = LandRecord(mode=landing.mode, result=p.result, branch=landed.branch, commit=landed.commit,
                        files=landed.files, uncommitted=landed.uncommitted)
    note = describe(landing)
    with store.edit_session() as s:
        s.git.landings.append(record)
        s.git.landed = landed.commit or s.git.landed
        s.git.land_note = note
    store.append_event(Event(kind=EventKind.GIT_LANDED, reason=note, data=record.model_dump(mode="json")))
    landing.next_steps = next_steps(landing)
    return landing


def describe(landing: Landing) -> str:
    """One line: what landing did."""
    landed, n = landing.landed, len(landing.landed.files) if landing.landed else 0
    where = f"{n} file(s) in your working tree"
    if landing.mode == "apply":
        return f"orch land: the session's changes are in {where}, not staged or committed"
    if landing.mode == "squash":
        return f"orch land --squash: the session's changes are in {where} and staged in your index"
    what = "merge commit" if landing.mode == "merge" else "commit"
    return (f"orch land --{landing.mode}: the session's changes are a {what} {(landed.commit or '')[:12]} on "
            f"{landed.branch} ({where})")


def next_steps(landing: Landing) -> list[str]:
    """What the user does next: review, commit, or open a pull request (orch never pushes)."""
    landed = landing.landed
    steps = [describe(landing)]
    if landed.uncommitted:
        what = "staged" if landing.mode == "squash" else "committed"
        steps.append(f"in your working tree but not {what}: {', '.join(landed.uncommitted[:10])} (each holds your own "
                     f"uncommitted work too, or is your untracked file)")
    if landing.mode == "apply":
        steps += ["git status && git diff            # review them",
                  "git add -A && git commit          # when they are what you want",
                  "git switch -c BRANCH && git commit -am MESSAGE && git push -u origin BRANCH && gh pr create"
                  "   # or as a pull request"]
    elif landing.mode == "squash":
        steps += ["git diff --cached                 # review what is staged",
                  "git commit                        # commit it"]
    else:
        steps += ["git show --stat HEAD              # review it",
                  f"git push && gh pr create          # a pull request from {landed.branch}, if you want one"]
    steps.append("orch never pushes; `orch clean` removes the session's worktrees (its branch stays)")
    return steps


def commit_message(session: Session, agents: list[Agent]) -> str:
    """The landed commit's message: the goal, the team, the blockers fixed, the tests."""
    goal = " ".join((session.goal or "the session's work").split())
    title = f"orch: {goal}"
    title = title if len(title) <= 72 else title[:71] + "…"
    team = ", ".join(f"{a.id} ({a.cli}{'/' + a.sim_format if a.sim_format else ''})" for a in agents) or "none"
    fixed = [b for b in session.blockers if b.state is BlockerState.VERIFIED]
    lines = [title, "", f"Goal: {goal}", f"Session: {session.id}, {len(session.rounds)} round(s)", f"Agents: {team}",
             f"Blockers: {len(session.blockers)} found, {len(fixed)} fixed and verified"]
    for b in fixed[:20]:
        how = "tests" if b.source is BlockerSource.VERIFICATION else "review"
        lines.append(f"- {b.id} ({how}) {b.file or '-'}: {' '.join(b.description.split())[:120]}")
    verification, _ = verification_line(session.model_dump(mode="json"))
    lines += [f"Verification: {verification or 'off'}", "", "Taken with `orch land` (nothing was pushed)."]
    return redact_text("\n".join(lines) + "\n")
