"""The coordinator's side of worktrees/: where each agent works, and what happens to its
work when a task ends (commit, merge into the integration branch, or a conflict).

    writers   architect, implementers, fixers: a worktree on their own branch, brought up
              to the integration branch before each task
    reviewer  a detached worktree showing the integration branch, refreshed before each run
    merging   in the integration worktree, after each writing task; a conflict is aborted
              there and becomes a merge task, redone in the writer's own worktree

A session whose git record is missing or "shared" works in the workspace as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import OrchError
from ..core.models import (
    Agent, Event, EventKind, GitRecord, MergeRecord, Role, Session, Task, TaskKind, WorktreeSeal,
)
from ..store.sessions import SessionStore
from ..store.git_exclude import exclude_state_dir
from ..worktrees import layout, trust
from ..worktrees.base import capture, create_branch
from ..worktrees.hygiene import copy_withheld
from ..worktrees.git import Tree, common_dir, have_git, repo_top, rev
from ..worktrees.land import taken_in
from ..worktrees.merge import (
    catch_up, changed_files, commit_work, files_with_markers, merge_branch, own_commit_files, restore_integration,
    show_detached, start_conflict,
)

WRITING_KINDS = (TaskKind.SPEC, TaskKind.IMPLEMENT, TaskKind.FIX, TaskKind.MERGE)
INTEGRATION = "integration"


def uses_worktrees(session: Session) -> bool:
    return session.git is not None and session.git.mode == "worktrees"


def who(agent_id: str) -> str:
    return f"orch {agent_id}"


def takes_turns(session: Session, task: Task) -> bool:
    """A writing task in a session that shares one folder waits while another writer works."""
    return session.git is not None and session.git.mode == "shared" and task.kind in WRITING_KINDS


# ---------------------------------------------------------------- the session's start
def worktrees_root(state_root: Path, workspace: Path, setting: str) -> Path:
    """The policy's [git] worktrees_dir (relative to the workspace), else <state root>/worktrees."""
    if not setting:
        return Path(state_root).resolve() / "worktrees"
    p = Path(setting).expanduser()
    return (p if p.is_absolute() else Path(workspace) / p).resolve()


def shared(reason: str) -> GitRecord:
    return GitRecord(mode="shared", reason=reason)


def set_up(session_id: str, workspace: Path, state_root: Path, worktrees_setting: str,
           no_worktrees: bool = False, land: str = "apply") -> GitRecord:
    """The session's git record: its base and integration branch with their worktree, or the
    shared folder and why. The user's branch, index and working tree are only read."""
    if no_worktrees:
        return shared("--no-worktrees: agents share the workspace, writers one at a time")
    if not have_git():
        return shared("git is not installed: agents share the workspace, writers one at a time")
    top = repo_top(workspace)
    if top is None:
        return shared("the workspace is not a git repository: agents share it, writers one at a time")
    root = worktrees_root(state_root, workspace, worktrees_setting)
    if not root.is_relative_to(Path(state_root).resolve()):
        exclude_state_dir(root)  # worktrees elsewhere in the repository: `git status` stays clean
    captured = capture(top, leave_out=state_root)
    base = captured.commit
    branch = layout.integration_branch(session_id)
    create_branch(top, branch, base)
    tree = layout.add_worktree(top, layout.worktree_path(root, session_id, INTEGRATION), branch, base)
    subdir = Path(workspace).resolve().relative_to(top).as_posix()
    record = GitRecord(mode="worktrees", repo=str(top), subdir="" if subdir == "." else subdir, base=base,
                       head=rev("HEAD", top), integration_branch=branch, worktrees_dir=str(root), land=land,
                       common_dir=str(common_dir(top)), config=trust.config_seal(top),
                       withheld=captured.withheld, withheld_changes=captured.withheld_changes,
                       untracked=captured.untracked)
    record.trees[INTEGRATION] = trust.seal(record, tree, branch)
    return record


def ensure_set_up(store: SessionStore, land: Optional[str] = None) -> Optional[GitRecord]:
    """Set up the session's git once: at `orch start`, or at the first step when a kill ended
    `orch start` before it was recorded (a coordinated session with no git record and no
    work yet). Returns the record it made, or None when there was nothing to do."""
    from ..safety.policy import load_policy, workspace_of

    session = store.read_session()
    if session.git is not None or not session.coordinated or session.tasks:
        return None  # set up already, hand-made, or from before worktrees: left as it was
    ws = workspace_of(store)
    policy = load_policy(ws)
    record = set_up(session.id, Path(session.workspace), ws.root, policy.git.worktrees_dir,
                    land=land or policy.git.land)
    with store.edit_session() as session:
        if session.git is not None:
            return None  # another process got there first
        session.git = record
    store.append_event(Event(kind=EventKind.GIT_SET_UP, reason=git_line(record),
                             data={"git": record.model_dump(mode="json", exclude_none=True)}))
    return record


def git_line(record: GitRecord) -> str:
    """One line on how the session uses git (said once, at its start)."""
    if record.mode == "shared":
        return record.reason
    line = (f"each writing agent works in its own worktree; the result goes to {record.integration_branch} "
            f"(from {record.base[:12]})")
    if record.withheld:
        line += (f"; {_some(record.withheld)} look like secrets: never committed, copied into each agent's "
                 "worktree uncommitted")
    if record.withheld_changes:
        line += (f"; your uncommitted changes to {_some(record.withheld_changes)} hold a credential: left out "
                 "(agents see the committed version)")
    if record.untracked:
        line += f"; untracked files taken into it: {_some(record.untracked)}"
    return line


def _some(paths: list[str], shown: int = 8) -> str:
    return ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


# ---------------------------------------------------------------- places
def _tree(git: GitRecord, session_id: str, name: str) -> Path:
    return layout.worktree_path(Path(git.worktrees_dir), session_id, name)


def integration_tree(session: Session) -> Path:
    return _tree(session.git, session.id, INTEGRATION)


def _in_subdir(git: GitRecord, tree: Path) -> Path:
    """The workspace's counterpart in a worktree (made when git had nothing in it to check out)."""
    if not git.subdir:
        return tree
    (tree / git.subdir).mkdir(parents=True, exist_ok=True)
    return tree / git.subdir


def _top_of(session: Session, cwd: str) -> Path:
    """An agent's worktree from its cwd (which may be a subfolder of it)."""
    try:
        name = Path(cwd).resolve().relative_to(Path(session.git.worktrees_dir).resolve() / session.id).parts[0]
    except (ValueError, IndexError):
        raise OrchError(f"{cwd} is not one of session {session.id}'s worktrees") from None
    return _tree(session.git, session.id, name)


def can_work(session: Session, agent: Agent) -> bool:
    """Whether the coordinator may give the agent the session's tasks: with worktrees, only an
    agent that works in one of them (not one launched by hand in the user's own checkout)."""
    if not uses_worktrees(session):
        return True
    try:
        _top_of(session, agent.cwd)
    except OrchError:
        return False
    return True


def _name_of(session: Session, cwd: str) -> str:
    """An agent's worktree's name (its folder under the session's) from its cwd."""
    return _top_of(session, cwd).name


def _open(session: Session, name: str, branch: Optional[str], config: bool = True) -> Tree:
    """One of the session's worktrees, checked against orch's seal (trust.WorktreeRefused if changed)."""
    return trust.open_tree(session.git, session.id, name, branch, config=config)


def _integration(session: Session, config: bool = True) -> Tree:
    """The integration worktree; orch's own, so one that was changed is made afresh from its branch."""
    git = session.git
    try:
        return _open(session, INTEGRATION, git.integration_branch, config)
    except trust.WorktreeRefused as e:
        if not e.repairable:
            raise
        trust.renew(git, session.id, INTEGRATION, git.integration_branch, git.integration_branch)
        return _open(session, INTEGRATION, git.integration_branch, config)


@dataclass
class Place:
    """Where an agent's run happens, and on which branch (None: detached, read-only)."""

    cwd: Path
    branch: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    seal: Optional[WorktreeSeal] = None  # the new worktree's seal, for session.git.trees


def place_new_agent(session: Session, agent_id: str, role: Role, branch: Optional[str] = None,
                    start: Optional[str] = None) -> Place:
    """A new agent's worktree: its own branch from the integration branch, or (a reviewer)
    a detached one showing it. Its seal is in the Place (and in session.git.trees). A race
    candidate's comes with its race branch and the race's base commit, a reviewer of a race's
    candidate with the commit it reads (engine/race.py)."""
    git = session.git
    trust.check_config(git)
    if git.common_dir is None:
        git.common_dir = str(common_dir(Path(git.repo)))
    repo, tree = Path(git.repo), _tree(git, session.id, agent_id)
    if role is Role.REVIEWER:
        layout.add_detached(repo, tree, git.integration_branch)
        seal = git.trees[agent_id] = trust.seal(git, tree, None)
        show_detached(_open(session, agent_id, None), start or git.integration_branch)
        copy_withheld(repo, tree, git.withheld)
        return Place(_in_subdir(git, tree), seal=seal)
    branch = branch or layout.agent_branch(session.id, agent_id)
    layout.add_worktree(repo, tree, branch, start or git.integration_branch)
    seal = git.trees[agent_id] = trust.seal(git, tree, branch)
    copy_withheld(repo, tree, git.withheld)
    return Place(_in_subdir(git, tree), branch, seal=seal)


def renew_tree(session: Session, agent: Agent) -> str:
    """An agent's worktree that was changed since orch made it, made afresh: on its branch's tip
    (a writer: its uncommitted files are dropped) or detached at the integration branch.
    session.git.trees gets the new seal. A note for the log."""
    git = session.git
    name = _name_of(session, agent.cwd)
    trust.renew(git, session.id, name, agent.branch, git.integration_branch)
    copy_withheld(Path(git.repo), _tree(git, session.id, name), git.withheld)
    _in_subdir(git, _tree(git, session.id, name))
    return f"{agent.id}'s worktree was made afresh from {agent.branch or git.integration_branch}"


def prepare_run(session: Session, agent: Agent, task: Optional[Task]) -> list[str]:
    """Before an existing agent's next run: a reviewer sees the integration branch as it is
    now, a writer catches up with it (or, for a merge task, meets the conflict). Notes for the
    log. trust.WorktreeRefused when its worktree was changed since orch made it."""
    git = session.git
    tree = _open(session, _name_of(session, agent.cwd), agent.branch)
    if agent.branch is None:
        from .race import shown_commit  # a race's review of one candidate reads that candidate

        show_detached(tree, (shown_commit(session, task) if task is not None else None) or git.integration_branch)
        return []
    if task is not None and task.kind is TaskKind.MERGE:
        return [_meet_conflict(session, agent, task, tree)]
    note = catch_up(tree, who(agent.id), git.integration_branch)
    return [f"{agent.id} could not catch up with {git.integration_branch}: {note}"] if note else []


def _meet_conflict(session: Session, agent: Agent, task: Task, tree: Tree) -> str:
    """A merge task's start: the conflict redone in the agent's worktree. The author merges the
    integration branch into its own branch; another agent catches up first, then merges the
    author's branch into its own, so the author's work is resolved and merged either way."""
    git = session.git
    record = next((m for m in git.merges if m.merge_task == task.id), None)
    theirs = record.branch if record is not None and record.branch != agent.branch else git.integration_branch
    if theirs != git.integration_branch:
        note = catch_up(tree, who(agent.id), git.integration_branch)
        if note:
            return f"{agent.id} could not catch up with {git.integration_branch} before {task.id}: {note}"
    left = start_conflict(tree, theirs, f"orch: {agent.id} merges {theirs} ({task.id})")
    return (f"{agent.id} meets the conflict in {', '.join(left)}" if left
            else f"{agent.id}'s branch now merges cleanly with {theirs}")


# ---------------------------------------------------------------- after a task
@dataclass
class Landing:
    """What happened to a finished task's work."""

    record: Optional[MergeRecord] = None  # None: not a writing task, or shared mode
    unresolved: list[str] = field(default_factory=list)  # a merge task left conflict markers


def recover(session: Session) -> Optional[str]:
    """A merge a crash left half-done in the integration worktree is undone (it is redone by
    the task that asked for it); what was done, or None. An integration worktree that was
    changed since orch made it is made afresh from its branch."""
    if not uses_worktrees(session):
        return None
    try:  # every step comes here: the worktree's files only, no git process (the config is checked before git runs)
        tree = _open(session, INTEGRATION, session.git.integration_branch, config=False)
    except trust.WorktreeRefused as e:
        if not e.repairable:
            raise
        branch = session.git.integration_branch
        trust.renew(session.git, session.id, INTEGRATION, branch, branch)
        return f"its worktree was changed since orch made it ({e.message.split(': ', 1)[-1]}): made afresh"
    return restore_integration(tree)


def land(session: Session, task: Task, agent: Agent) -> Landing:
    """Commit the agent's work on its branch and merge the branch into the integration branch.
    trust.WorktreeRefused when the agent's worktree was changed since orch made it."""
    if not uses_worktrees(session) or agent.branch is None or task.kind not in WRITING_KINDS:
        return Landing()
    git = session.git
    tree = _open(session, _name_of(session, agent.cwd), agent.branch)
    if task.kind is TaskKind.MERGE:
        left = files_with_markers(tree, task.conflicts)
        if left:
            return Landing(unresolved=left)
    subject = f"{task.id} {task.kind.value}: "
    commit = commit_work(tree, who(agent.id), subject + task.title)
    task.commit = commit or task.commit
    files = changed_files(tree, agent.branch, git.integration_branch)
    if not files and commit is None:  # merged before a crash lost its record: the task's commit says what it did
        files = own_commit_files(tree, agent.branch, subject)
    result = merge_branch(_integration(session, config=False), agent.branch,  # the config was checked just now
                          f"orch: merge {agent.branch} ({task.id} {task.kind.value}: {task.title})")
    task.files_changed = files  # what the task changed, merged or not: a conflict is work waiting to merge
    if result.clean:
        task.merged = result.commit
        outcome = "already" if result.already else "merged"
        record = MergeRecord(task=task.id, agent=agent.id, branch=agent.branch, outcome=outcome,
                             commit=result.commit, files=files)
    else:
        record = MergeRecord(task=task.id, agent=agent.id, branch=agent.branch, outcome="conflict",
                             files=result.conflicts)
    git.merges.append(record)
    return Landing(record=record)


def commit_candidate(session: Session, task: Task, agent: Agent) -> tuple[Optional[str], list[str]]:
    """A race candidate's work, committed on its race branch and nowhere else: (its branch's tip,
    or None when it committed nothing; the files it changed since the race's base).
    trust.WorktreeRefused when its worktree was changed since orch made it."""
    tree = _open(session, _name_of(session, agent.cwd), agent.branch)
    commit_work(tree, who(agent.id), f"{task.id} {task.kind.value}: {task.title}")
    files = changed_files(tree, agent.branch, session.git.integration_branch)
    tip = rev(f"refs/heads/{agent.branch}", tree)
    return (tip if files else None), files


def intents(session: Session, task: Task, files: list[str]) -> list[str]:
    """What each side of a conflict meant: this task, and the merged tasks that changed the files."""
    theirs = [f"{t.id} by {t.agent} ({t.kind.value}): {t.title}" for t in session.tasks
              if t.id != task.id and t.merged and set(t.files_changed) & set(files)]
    return [f"yours — {task.id} by {task.agent} ({task.kind.value}): {task.title}"] + \
        [f"already merged — {line}" for line in theirs]


# ---------------------------------------------------------------- after the session
def unlanded(session: Session) -> bool:
    """True when the integration branch holds work no branch of the user's has taken in."""
    git = session.git

    tip = rev(f"refs/heads/{git.integration_branch}", Path(git.repo))
    return tip is not None and tip != git.base and not taken_in(Path(git.repo), tip)


def clean(session: Session, discard: bool = False) -> tuple[list[Path], list[str]]:
    """Remove the session's worktrees and its agents' branches (orch's own, nothing of the user's);
    the integration branch — the result — stays unless discard."""
    from ..worktrees.trial import remove_trials

    git = session.git
    # A race's other candidates stay as branches, like the result (they are what a person compares).
    raced = tuple(c.branch for r in session.races for c in r.candidates if c.branch and c.agent != r.winner)
    keep = () if discard else (git.integration_branch, *raced)
    remove_trials(Path(git.repo), session.id)
    return layout.remove_session(Path(git.repo), Path(git.worktrees_dir), session.id, keep=keep)


def listing(session: Session, agents: list[Agent]) -> list[dict]:
    """Each worktree of the session: who works there, on which branch, where."""
    git = session.git
    rows = [{"name": INTEGRATION, "role": "integration", "branch": git.integration_branch,
             "worktree": str(integration_tree(session))}]
    for a in agents:
        if a.branch or Path(a.cwd).resolve().is_relative_to(Path(git.worktrees_dir).resolve()):
            rows.append({"name": a.id, "role": a.role.value, "branch": a.branch or "(detached, read-only)",
                         "worktree": str(_top_of(session, a.cwd))})
    for r in rows:
        r["present"] = layout.is_worktree(Path(r["worktree"]))
    return rows
