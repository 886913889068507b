"""The session's base: the user's HEAD plus their uncommitted work, captured untouched.

A temporary index (never the user's) is loaded from HEAD, every change and untracked file
of the working tree that git does not ignore is added to it — except files that look like
secrets (hygiene.py), which no orch branch may hold — and a commit is written from it with
HEAD as parent. The user's branch, index and working tree are only read.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .git import Where, git, out, rev
from .hygiene import stage

BASE_MESSAGE = "orch: the work tree at session start (uncommitted changes included)"


@dataclass
class Capture:
    """A captured work tree: its commit, the files withheld as secrets, the untracked files taken in."""

    commit: str
    withheld: list[str] = field(default_factory=list)  # new files that look like secrets
    withheld_changes: list[str] = field(default_factory=list)  # tracked files whose change holds a credential
    untracked: list[str] = field(default_factory=list)


def capture(repo: Where, leave_out: Optional[Path] = None, message: str = BASE_MESSAGE) -> Capture:
    """The working tree as it is now, as a commit (HEAD itself when nothing changed)."""
    head = rev("HEAD", repo)
    fd, index = tempfile.mkstemp(prefix="orch-index-")
    os.close(fd)
    os.unlink(index)  # git writes a fresh index there
    env = {"GIT_INDEX_FILE": index}
    skip = _leave_out(repo, leave_out)
    try:
        if head:
            git(["read-tree", head], repo, env=env)
        staged = stage(repo, Path(repo), env=env, skip=lambda p: skip is not None and (p + "/").startswith(skip))
        tree = out(["write-tree"], repo, env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)
    result = Capture(commit=head or "", withheld=[p for p in staged.withheld if p not in staged.withheld_changes],
                     withheld_changes=staged.withheld_changes, untracked=staged.added_untracked)
    if head and out(["rev-parse", f"{head}^{{tree}}"], repo) == tree:
        return result
    args = ["commit-tree", tree, "-m", message]
    if head:
        args[2:2] = ["-p", head]
    result.commit = out(args, repo)
    return result


def capture_base(repo: Where, leave_out: Optional[Path] = None, message: str = BASE_MESSAGE) -> str:
    """A commit holding the working tree as it is now (HEAD itself when nothing changed)."""
    return capture(repo, leave_out, message).commit


def create_branch(repo: Path, branch: str, commit: str) -> None:
    """The branch at commit; an existing one (a crash after creating it) is left where it is."""
    if rev(f"refs/heads/{branch}", repo) is None:
        git(["update-ref", f"refs/heads/{branch}", commit, ""], repo)


def _leave_out(repo: Where, folder: Optional[Path]) -> Optional[str]:
    """The folder (relative, ending in /) that keeps orch's own state out of the base, when it
    lies inside the repository."""
    if folder is None:
        return None
    try:
        rel = Path(folder).resolve().relative_to(Path(repo).resolve())
    except ValueError:
        return None  # orch's state is not inside the repository
    return rel.as_posix().rstrip("/") + "/"
