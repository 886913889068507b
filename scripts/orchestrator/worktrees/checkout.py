"""orch's own checkout of one commit (the verifier's), and the commits between two of them.

The verifier runs the project's tests in `<worktrees>/<session>/verifier`, a detached
worktree no agent writes in: before each run it is moved to the commit to test and cleaned
of everything the previous run left (ignored files too), so every run sees exactly the
commit's tree.
"""

from __future__ import annotations

from pathlib import Path

from .git import git, out
from .layout import add_detached


def checkout_commit(repo: Path, tree: Path, commit: str) -> Path:
    """The detached worktree at tree showing exactly commit (made when missing)."""
    add_detached(repo, tree, commit)
    git(["checkout", "--quiet", "--force", "--detach", commit], tree)
    git(["clean", "-d", "-x", "--force", "--force", "--quiet"], tree)
    return tree


def first_parent_commits(repo: Path, good: str, bad: str) -> list[str]:
    """The commits after good up to bad along the first parents, oldest first (on the
    integration branch: one per merge orch made)."""
    return out(["rev-list", "--first-parent", "--reverse", f"{good}..{bad}"], repo).split()
