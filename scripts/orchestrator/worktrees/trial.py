"""A race candidate's work, merged onto the integration commit without merging it anywhere.

`git merge-tree --write-tree` merges two commits in git's object store — no worktree, no
index, no branch moves — and `git commit-tree` makes the merged tree a commit whose parents
are the integration commit and the candidate's tip. A ref under `refs/orch/race/` keeps that
commit (the verifier checks it out by id; git would collect an unreferenced one). The
integration branch itself is untouched: only the winner is merged, later, the usual way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .git import GitError, git, out, rev

TRIAL_REFS = "refs/orch/race"


@dataclass
class TrialMerge:
    commit: Optional[str] = None  # the merged commit (None when it conflicts)
    conflicts: list[str] = field(default_factory=list)


def trial_ref(session_id: str, task_id: str, agent_id: str) -> str:
    return f"{TRIAL_REFS}/{session_id}/{task_id}/{agent_id}"


def trial_merge(repo: Path, onto: str, branch: str, ref: str, message: str) -> TrialMerge:
    """branch merged onto the commit `onto`, as a commit kept by `ref`, or the files that conflict."""
    tip = rev(f"refs/heads/{branch}", repo)
    if tip is None:
        raise GitError(f"the branch {branch} is missing")
    proc = git(["merge-tree", "--write-tree", "--name-only", "--no-messages", onto, tip], repo, check=False)
    lines = proc.stdout.splitlines()
    if proc.returncode == 1:
        return TrialMerge(conflicts=sorted({line for line in lines[1:] if line.strip()}))
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise GitError(f"git merge-tree {onto[:12]} {branch} failed: {why}")
    commit = out(["commit-tree", lines[0], "-p", onto, "-p", tip, "-m", message], repo)
    git(["update-ref", ref, commit], repo)
    return TrialMerge(commit=commit)


def change_size(repo: Path, base: str, branch: str) -> int:
    """Lines added plus lines removed from base to the branch's tip (a binary file counts 1)."""
    total = 0
    for line in out(["diff", "--numstat", "--no-renames", base, f"refs/heads/{branch}"], repo).splitlines():
        added, removed, _ = (line.split("\t", 2) + ["", ""])[:3]
        total += int(added) + int(removed) if added.isdigit() and removed.isdigit() else 1
    return total


def remove_trials(repo: Path, session_id: str) -> list[str]:
    """Forget the session's trial merges (`orch clean`): the refs that kept them."""
    refs = out(["for-each-ref", "--format=%(refname)", f"{TRIAL_REFS}/{session_id}/"], repo).split()
    for ref in refs:
        git(["update-ref", "-d", ref], repo)
    return refs
