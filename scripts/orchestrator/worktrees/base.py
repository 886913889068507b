"""The session's base: the user's HEAD plus their uncommitted work, captured untouched.

A temporary index (never the user's) is loaded from HEAD, every change and untracked file
of the working tree that git does not ignore is added to it, and a commit is written from
it with HEAD as parent. The user's branch, index and working tree are only read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from .git import git, out, rev


def capture_base(repo: Path, leave_out: Optional[Path] = None,
                 message: str = "orch: the work tree at session start (uncommitted changes included)") -> str:
    """A commit holding the working tree as it is now (HEAD itself when nothing changed)."""
    head = rev("HEAD", repo)
    fd, index = tempfile.mkstemp(prefix="orch-index-")
    os.close(fd)
    os.unlink(index)  # git writes a fresh index there
    env = {"GIT_INDEX_FILE": index}
    try:
        if head:
            git(["read-tree", head], repo, env=env)
        git(["add", "--all", "--", ".", *_leave_out(repo, leave_out)], repo, env=env)
        tree = out(["write-tree"], repo, env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)
    if head and out(["rev-parse", f"{head}^{{tree}}"], repo) == tree:
        return head
    args = ["commit-tree", tree, "-m", message]
    if head:
        args[2:2] = ["-p", head]
    return out(args, repo)


def create_branch(repo: Path, branch: str, commit: str) -> None:
    """The branch at commit; an existing one (a crash after creating it) is left where it is."""
    if rev(f"refs/heads/{branch}", repo) is None:
        git(["update-ref", f"refs/heads/{branch}", commit, ""], repo)


def _leave_out(repo: Path, folder: Optional[Path]) -> list[str]:
    """A pathspec keeping orch's own state out of the base, unless git ignores it already
    (naming an ignored path to `git add` is an error)."""
    if folder is None:
        return []
    try:
        rel = Path(folder).resolve().relative_to(repo)
    except ValueError:
        return []  # orch's state is not inside the repository
    if git(["check-ignore", "--quiet", rel.as_posix() + "/"], repo, check=False).returncode == 0:
        return []
    return [f":(exclude){rel.as_posix()}"]
