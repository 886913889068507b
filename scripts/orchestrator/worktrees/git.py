"""A thin runner of the real `git` binary: explicit identity, no user hooks, clear errors.

Every call orch makes carries its own identity (machines without a git config work) and
`core.hooksPath=/dev/null` (the user's hooks never run behind their back). Variables that
would point git at another repository or index are dropped from the environment, so a
call acts on exactly the folder it is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import OrchError

ORCH_EMAIL = "orch@localhost"
_FOREIGN = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
            "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


class GitError(OrchError):
    """A git command orch ran failed (its first line of stderr is the message)."""


def have_git() -> bool:
    return shutil.which("git") is not None


def identity_args(name: str = "orch") -> list[str]:
    return ["-c", f"user.name={name}", "-c", f"user.email={ORCH_EMAIL}", "-c", "core.hooksPath=/dev/null",
            "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]


def git(args: Sequence[str], cwd: Path, *, who: str = "orch", env: Optional[dict[str, str]] = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run `git ARGS` in cwd; GitError (one line) when it fails and check is set."""
    if not have_git():
        raise GitError("git is not installed: install it, or start with --no-worktrees")
    full_env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})})
    try:
        proc = subprocess.run(["git", *identity_args(who), *args], cwd=cwd, env=full_env, capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {args[0]} in {cwd} failed: {e}") from None
    if check and proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise GitError(f"git {' '.join(args[:2])} in {cwd} failed: {lines[-1] if lines else ''}")
    return proc


def out(args: Sequence[str], cwd: Path, **kw) -> str:
    """The stripped stdout of a git command that must succeed."""
    return git(args, cwd, **kw).stdout.strip()


def repo_top(folder: Path) -> Optional[Path]:
    """The top of the work tree holding folder, or None (no git, not a repository, a bare one)."""
    if not have_git():
        return None
    proc = git(["rev-parse", "--show-toplevel"], folder, check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 and proc.stdout.strip() else None


def rev(ref: str, cwd: Path) -> Optional[str]:
    """The commit a ref names, or None when it names none (an unborn HEAD, a deleted branch)."""
    proc = git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None
