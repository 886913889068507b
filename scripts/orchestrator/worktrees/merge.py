"""Commits and merges: an agent's work onto its branch, its branch into the integration branch.

A merge that conflicts is aborted at once, so the integration worktree is never left
half-merged; the conflict is redone in the agent's own worktree (start_conflict), where
the agent resolves it and the merge is concluded by commit_work like any other change.
A merge a crash left half-done is aborted by abort_stale_merge and simply redone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .git import GitError, Tree, Where, git, out, rev
from .hygiene import stage

CONFLICT_MARK = "<<<<<<< "


@dataclass
class MergeResult:
    clean: bool
    commit: Optional[str] = None  # the integration branch's tip after a clean merge
    conflicts: list[str] = field(default_factory=list)
    already: bool = False  # nothing to merge: the branch was in already


def merging(worktree: Where) -> bool:
    """True while a merge is in progress in the worktree (MERGE_HEAD exists)."""
    return rev("MERGE_HEAD", worktree) is not None


def abort_stale_merge(worktree: Where) -> bool:
    """Abort a merge left half-done (a crash mid-merge); True when there was one."""
    if not merging(worktree):
        return False
    git(["merge", "--abort"], worktree)
    return True


def restore_integration(worktree: Where) -> Optional[str]:
    """The integration worktree back at its branch's tip after a crash mid-merge: a merge in
    progress is aborted; files a killed merge left half-written are restored (this worktree
    is orch's own: no one else writes in it, and the caller holds the session's lock, so a
    leftover index.lock is a killed git's). What was done, or None when it was clean.

    Called by every step, so the common case costs no git process: merge_branch marks the
    worktree's git folder while it merges, and a worktree with no mark, no MERGE_HEAD and
    no index.lock was left by no killed merge."""
    git_dir = _git_dir(worktree)
    if git_dir is not None and not any((git_dir / n).exists() for n in (MERGING_MARK, "MERGE_HEAD", "index.lock")):
        return None
    done = _restore(worktree)
    _merge_mark(worktree).unlink(missing_ok=True)
    return done


def _restore(worktree: Where) -> Optional[str]:
    lock = Path(out(["rev-parse", "--absolute-git-dir"], worktree)) / "index.lock"
    if lock.is_file():
        lock.unlink()  # a git killed mid-merge left it; every later git call here would fail
    if abort_stale_merge(worktree):
        return "aborted a merge left half-done"
    if not out(["status", "--porcelain"], worktree):
        return None
    branch = out(["symbolic-ref", "--short", "HEAD"], worktree)
    git(["checkout", "--quiet", "--force", branch], worktree)
    git(["clean", "-d", "--force", "--quiet"], worktree)
    return "restored files a killed merge left half-written"


MERGING_MARK = "orch-merging"  # in the integration worktree's git folder while orch merges there


def _merge_mark(worktree: Where) -> Path:
    return (_git_dir(worktree) or Path(out(["rev-parse", "--absolute-git-dir"], worktree))) / MERGING_MARK


def _git_dir(worktree: Where) -> Optional[Path]:
    """A linked worktree's own git folder: orch's record of it for a Tree, else read from its
    `.git` file (None: not readable as one)."""
    if isinstance(worktree, Tree):
        return worktree.git_dir
    try:
        line = (Path(worktree) / ".git").read_text().strip()
    except OSError:
        return None
    if not line.startswith("gitdir: "):
        return None
    d = Path(line[len("gitdir: "):])
    return d if d.is_absolute() else (Path(worktree) / d).resolve()


def unmerged_files(worktree: Where) -> list[str]:
    return sorted(set(out(["diff", "--name-only", "--diff-filter=U"], worktree).splitlines()))


def files_with_markers(worktree: Where, files: list[str]) -> list[str]:
    """Which of the files still hold a conflict marker at the start of a line."""
    left = []
    for f in files:
        p = Path(worktree) / f
        try:  # a symbolic link holds no markers (git stores the link), and is never followed
            text = p.read_text(errors="replace") if p.is_file() and not p.is_symlink() else ""
        except OSError:
            continue
        if any(line.startswith(CONFLICT_MARK) for line in text.splitlines()):
            left.append(f)
    return left


def commit_work(worktree: Where, who: str, message: str) -> Optional[str]:
    """Commit everything the agent changed but files that look like secrets (hygiene.py: they
    stay in the worktree, uncommitted); a merge in progress is concluded. The new commit, or
    None when there was nothing to commit."""
    stage(worktree, Path(worktree), who=who)
    if not merging(worktree) and git(["diff", "--cached", "--quiet"], worktree, check=False).returncode == 0:
        return None
    git(["commit", "--quiet", "--no-verify", "-m", message], worktree, who=who)
    return out(["rev-parse", "HEAD"], worktree)


def changed_files(worktree: Where, branch: str, onto: str) -> list[str]:
    """Files the branch changed since it last took in `onto` (exactly, from git)."""
    base = git(["merge-base", onto, branch], worktree, check=False).stdout.strip()
    if not base:
        return sorted(set(out(["ls-tree", "-r", "--name-only", branch], worktree).splitlines()))
    return sorted(set(out(["diff", "--name-only", "--no-renames", base, branch], worktree).splitlines()))


def own_commit_files(worktree: Where, branch: str, subject_prefix: str) -> list[str]:
    """The files of the branch's tip commit when its subject starts with subject_prefix (a
    task's own commit, as commit_work wrote it), else none. After a crash between a task's
    merge and its record, the branch is already in the integration branch and changed_files
    sees nothing: this commit still says what the task changed."""
    tip = rev(f"refs/heads/{branch}", worktree)
    if tip is None or not out(["log", "-1", "--format=%s", tip], worktree).startswith(subject_prefix):
        return []
    listed = out(["diff-tree", "--root", "--no-commit-id", "--name-only", "--no-renames", "-r", tip], worktree)
    return sorted(set(listed.splitlines()))


def merge_branch(integration: Where, branch: str, message: str) -> MergeResult:
    """Merge branch into the branch checked out in the integration worktree; a conflict is
    aborted (the worktree stays at its tip) and reported with its files."""
    abort_stale_merge(integration)
    before = out(["rev-parse", "HEAD"], integration)
    if git(["merge-base", "--is-ancestor", branch, "HEAD"], integration, check=False).returncode == 0:
        return MergeResult(clean=True, commit=before, already=True)
    mark = _merge_mark(integration)
    mark.touch()  # a kill from here on leaves the mark: the next step restores the worktree
    try:
        proc = git(["merge", "--no-ff", "--no-edit", "-m", message, branch], integration, check=False)
        if proc.returncode == 0:
            return MergeResult(clean=True, commit=out(["rev-parse", "HEAD"], integration))
        conflicts = unmerged_files(integration) if merging(integration) else []
        abort_stale_merge(integration)
    finally:
        mark.unlink(missing_ok=True)
    if not conflicts:  # not a conflict: something else went wrong; say what
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(f"git merge {branch} in {integration} failed: {lines[-1] if lines else proc.returncode}")
    return MergeResult(clean=False, conflicts=conflicts)


def start_conflict(worktree: Where, onto: str, message: str) -> list[str]:
    """Merge `onto` into the agent's branch in its worktree, leaving the conflicts there for
    the agent to resolve; the conflicting files (none: it merged cleanly, or was merging already)."""
    if merging(worktree):
        return unmerged_files(worktree)
    proc = git(["merge", "--no-ff", "--no-edit", "-m", message, onto], worktree, check=False)
    if proc.returncode == 0:
        return []
    return unmerged_files(worktree)


def catch_up(worktree: Where, who: str, onto: str) -> Optional[str]:
    """Bring an agent's worktree up to `onto` before its next task: anything left uncommitted
    is committed first (nothing an agent wrote is dropped); a conflict is backed out and the
    worktree stays where it was. Returns a note when it could not catch up."""
    if merging(worktree):
        return "a merge is in progress in it"
    commit_work(worktree, who, f"work {who} left uncommitted")
    proc = git(["merge", "--no-edit", "-m", f"orch: {who} catches up with {onto}", onto], worktree, who=who,
               check=False)
    if proc.returncode == 0:
        return None
    abort_stale_merge(worktree)
    return f"merging {onto} into it conflicts"


def show_detached(worktree: Where, ref: str) -> None:
    """Point a read-only (detached) worktree at ref, whatever was left in it."""
    git(["checkout", "--quiet", "--force", "--detach", ref], worktree)
