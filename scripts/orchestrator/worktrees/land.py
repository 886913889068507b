"""Landing: the integration branch merged into the user's current branch — only when the
policy asks for it ([git] land = "merge"), only into a clean working tree, never pushed.

A merge that conflicts is aborted, leaving the user's branch as it was; an unborn branch
(a fresh repository) simply starts at the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .git import git, out, rev


def dirty(repo: Path) -> bool:
    """True when the user's index or working tree holds changes (untracked files included)."""
    return bool(out(["--no-optional-locks", "status", "--porcelain"], repo))


def land_branch(repo: Path, branch: str) -> tuple[Optional[str], str]:
    """Merge branch into the checked-out branch; (the new tip, "") or (None, why not)."""
    if dirty(repo):
        return None, "your working tree has changes: commit or stash them, then `git merge " + branch + "`"
    head_ref = git(["symbolic-ref", "--quiet", "HEAD"], repo, check=False).stdout.strip()
    if not head_ref:
        return None, "HEAD is detached: switch to a branch, then `git merge " + branch + "`"
    tip = rev(f"refs/heads/{branch}", repo)
    if tip is None:
        return None, f"the branch {branch} no longer exists"
    if rev("HEAD", repo) is None:  # a fresh repository: its branch starts at the result
        git(["update-ref", head_ref, tip, ""], repo)
        git(["read-tree", "-m", "-u", "HEAD"], repo)
        return tip, ""
    proc = git(["merge", "--no-edit", "-m", f"Merge {branch} (orch)", branch], repo, check=False)
    if proc.returncode != 0:
        if rev("MERGE_HEAD", repo):
            git(["merge", "--abort"], repo)
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return None, f"merging {branch} did not go cleanly ({lines[-1] if lines else proc.returncode}): left as it was"
    return out(["rev-parse", "HEAD"], repo), ""


def taken_in(repo: Path, commit: str) -> bool:
    """True when one of the user's branches (any but orch's own) contains the commit."""
    users = [b for b in out(["for-each-ref", "--format=%(refname:short)", "refs/heads"], repo).split()
             if not b.startswith("orch/")]
    return any(git(["merge-base", "--is-ancestor", commit, b], repo, check=False).returncode == 0 for b in users)
