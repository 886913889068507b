"""Names and places: the integration branch, each agent's branch and worktree.

    orch/<session>                 the integration branch (the session's result)
    orch/<session>--<agent>        an agent's branch (git cannot nest refs under a branch)
    <worktrees>/<session>/integration   where orch merges
    <worktrees>/<session>/<agent>       where an agent works (the reviewer's is detached)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .git import git, rev


def integration_branch(session_id: str) -> str:
    return f"orch/{session_id}"


def agent_branch(session_id: str, agent_id: str) -> str:
    return f"orch/{session_id}--{agent_id}"


def session_dir(worktrees_root: Path, session_id: str) -> Path:
    return Path(worktrees_root) / session_id


def worktree_path(worktrees_root: Path, session_id: str, name: str) -> Path:
    return session_dir(worktrees_root, session_id) / name


def is_worktree(path: Path) -> bool:
    return (Path(path) / ".git").is_file()


def add_worktree(repo: Path, path: Path, branch: str, start: str) -> Path:
    """A worktree at path on branch (created at start when new); an existing one is reused."""
    if is_worktree(path):
        return path
    if path.exists() and not any(path.iterdir()):
        path.rmdir()  # an empty folder left by a crash before git wrote anything
    path.parent.mkdir(parents=True, exist_ok=True)
    force = _registered(repo, path)
    if rev(f"refs/heads/{branch}", repo):
        git(["worktree", "add", "--quiet", *force, str(path), branch], repo)
    else:
        git(["worktree", "add", "--quiet", *force, "-b", branch, str(path), start], repo)
    return path


def _registered(repo: Path, path: Path) -> list[str]:
    """["--force"] when git still lists this (missing) path as a worktree: a crash or a hand
    deleted orch's folder. Only this path is re-taken; the user's worktrees are never pruned."""
    listed = [line[len("worktree "):] for line in git(["worktree", "list", "--porcelain"], repo).stdout.splitlines()
              if line.startswith("worktree ")]
    return ["--force"] if any(Path(p).resolve() == Path(path).resolve() for p in listed) else []


def add_detached(repo: Path, path: Path, start: str) -> Path:
    """A detached worktree at start (the reviewer's: it reads, it never commits)."""
    if is_worktree(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    git(["worktree", "add", "--quiet", *_registered(repo, path), "--detach", str(path), start], repo)
    return path


def session_branches(repo: Path, session_id: str) -> list[str]:
    """The branches orch made for the session: the integration branch and the agents'."""
    names = git(["for-each-ref", "--format=%(refname:short)", f"refs/heads/orch/{session_id}",
                 f"refs/heads/orch/{session_id}--*"], repo).stdout.split()
    return sorted(set(names))


def session_worktrees(repo: Path, worktrees_root: Path, session_id: str) -> list[Path]:
    """The registered worktrees that lie in the session's folder."""
    here = session_dir(worktrees_root, session_id).resolve()
    found = []
    for line in git(["worktree", "list", "--porcelain"], repo).stdout.splitlines():
        if line.startswith("worktree "):
            p = Path(line[len("worktree "):]).resolve()
            if p == here or here in p.parents:
                found.append(p)
    return found


def _forget_missing(repo: Path, path: Path) -> None:
    """Drop git's record of one of orch's worktrees whose folder is gone (what `git worktree
    prune` does, for this path alone)."""
    common = Path(git(["rev-parse", "--git-common-dir"], repo).stdout.strip())
    admin = (common if common.is_absolute() else Path(repo) / common) / "worktrees"
    for entry in admin.iterdir() if admin.is_dir() else []:
        gitdir = entry / "gitdir"
        if gitdir.is_file() and Path(gitdir.read_text().strip()).parent.resolve() == Path(path).resolve():
            shutil.rmtree(entry)


def remove_session(repo: Path, worktrees_root: Path, session_id: str,
                   keep: tuple[str, ...] = ()) -> tuple[list[Path], list[str]]:
    """Remove the session's worktrees and branches (only orch's own, but those in keep); what was removed."""
    trees = session_worktrees(repo, worktrees_root, session_id)
    for p in trees:
        if is_worktree(p) and git(["worktree", "remove", "--force", "--force", str(p)], repo,
                                  check=False).returncode == 0:
            continue
        # gone, or git will not remove it (an agent changed its .git file): orch's own folder goes anyway
        if p.is_symlink():
            p.unlink()
        elif p.exists():
            shutil.rmtree(p)
        _forget_missing(repo, p)
    folder = session_dir(worktrees_root, session_id)
    if folder.is_dir() and not any(folder.rglob(".git")):
        shutil.rmtree(folder)  # only orch's worktree folders were in it
    branches = [b for b in session_branches(repo, session_id) if b not in keep]
    for b in branches:
        git(["branch", "-D", "--quiet", b], repo)
    return trees, branches
