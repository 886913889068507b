"""A remote run's workspace travels as git: a bundle out, a bundle of new commits back.

Out: the commit the run starts from — the branch's HEAD when the working tree is clean,
else a snapshot commit of the working tree (made with a scratch index, so neither the
user's index nor their files are touched) — under refs/orch/ship/<key>, bundled.
Back: the run's commits (the remote side commits whatever the CLI left uncommitted) are
fetched into refs/orch/runs/<key>, where they stay whatever happens next. Then:
  - in a linked worktree (orch's own, one per agent branch) still at the start commit
    with no local edits, the branch is fast-forwarded to them;
  - anywhere else (the user's own checkout, or a tree that moved meanwhile) the changes are
    applied to the working tree as files, exactly as a CLI running here would have left
    them; nothing is committed on the user's branch.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...core.errors import InvalidInput
from ...worktrees.base import capture_base
from ...worktrees.git import git as run_git, rev


def git(cwd: Path | str, *args: str) -> str:
    """orch's git runner (its identity, no user hooks, one-line GitError) in cwd: stdout, stripped."""
    return run_git(args, Path(cwd)).stdout.strip()


@dataclass(frozen=True)
class Workspace:
    top: Path  # the work tree's top folder
    relpath: str  # the run's cwd inside it ("" at the top)
    branch: str  # "HEAD" when detached
    linked: bool  # a linked worktree (git worktree add), not a main checkout


def workspace(cwd: Path) -> Workspace:
    """The git work tree cwd is in, or InvalidInput: the ray runner needs one."""
    proc = run_git(["rev-parse", "--show-toplevel", "--git-dir", "--git-common-dir"], Path(cwd), check=False)
    if proc.returncode != 0:
        raise InvalidInput(f"the ray runner needs a git workspace: {cwd} is not inside a git work tree")
    top, git_dir, common = proc.stdout.splitlines()[:3]
    if rev("HEAD", Path(cwd)) is None:
        raise InvalidInput(f"the ray runner needs a git workspace with a commit: {top} has none yet")
    here = Path(cwd).resolve()
    rel = os.path.relpath(here, Path(top).resolve())
    return Workspace(top=Path(top), relpath="" if rel == "." else rel,
                     branch=git(cwd, "rev-parse", "--abbrev-ref", "HEAD"),
                     linked=(here / git_dir).resolve() != (here / common).resolve())


def _dirty(top: Path) -> bool:
    return bool(git(top, "status", "--porcelain", "--untracked-files=all"))


def ship(ws: Workspace, key: str, bundle: Path, message: str) -> str:
    """Bundle the commit the run starts from (see the module docstring); its sha."""
    base = capture_base(ws.top, message=message)  # HEAD itself when the tree is clean
    git(ws.top, "update-ref", f"refs/orch/ship/{key}", base)
    git(ws.top, "bundle", "create", "-q", str(bundle), f"refs/orch/ship/{key}")
    return base


def take_back(ws: Workspace, key: str, bundle: Path, base: str) -> str:
    """Fetch the run's commits and bring them into the work tree; what was done, in words."""
    ref = f"refs/orch/runs/{key}"
    git(ws.top, "fetch", "-q", str(bundle), f"+refs/heads/orch-work:{ref}")
    new = git(ws.top, "rev-parse", ref)
    if ws.linked and git(ws.top, "rev-parse", "HEAD") == base and not _dirty(ws.top):
        git(ws.top, "merge", "--ff-only", "-q", new)
        return f"fast-forwarded {ws.branch} to {new[:12]}"
    conflicts = _apply_as_files(ws.top, base, new)
    said = f"applied the changes of {new[:12]} as files ({ref})"
    return said + (f"; merged over local edits with conflicts, the run's version kept: {', '.join(conflicts)}"
                   if conflicts else "")


def _blob(top: Path, commit: str, path: str) -> Optional[bytes]:
    proc = subprocess.run(["git", "-C", str(top), "show", f"{commit}:{path}"], capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def _apply_as_files(top: Path, base: str, new: str) -> list[str]:
    """Bring each file the run changed to its new content, as a CLI working here would have.

    A file the local tree changed meanwhile too (another agent in the same folder) is merged
    three ways; where both changed the same lines the run's version wins (it is the newer
    work) and the file is named in the result."""
    conflicts = []
    names = git(top, "diff", "--name-only", "-z", "--no-renames", base, new).split("\0")
    for path in [p for p in names if p]:
        target = top / path
        theirs, before = _blob(top, new, path), _blob(top, base, path)
        mine = target.read_bytes() if target.is_file() else None
        if mine == theirs:
            continue
        if theirs is None:
            if mine == before:
                target.unlink(missing_ok=True)
            continue
        if mine is not None and mine != before:
            merged = _merge3(mine, before or b"", theirs)
            if merged is None:
                conflicts.append(path)
            else:
                theirs = merged
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(theirs)
    return conflicts


def _merge3(mine: bytes, base: bytes, theirs: bytes) -> Optional[bytes]:
    """git merge-file of three versions; None when they conflict."""
    with tempfile.TemporaryDirectory(prefix="orch-merge-") as tmp:
        paths = []
        for name, data in (("mine", mine), ("base", base), ("theirs", theirs)):
            (Path(tmp) / name).write_bytes(data)
            paths.append(str(Path(tmp) / name))
        proc = subprocess.run(["git", "merge-file", "-p", *paths], capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


# --------------------------------------------------------------------------- the node's side


def check_out(bundle: Path, ref: str, work: Path) -> str:
    """Clone the shipped commit into work on branch orch-work; its sha."""
    work.mkdir(parents=True)
    git(work, "init", "-q")
    git(work, "fetch", "-q", str(bundle), f"+{ref}:refs/heads/orch-work")
    git(work, "checkout", "-q", "orch-work")
    return git(work, "rev-parse", "HEAD")


def commit_and_bundle(work: Path, base: str, author: str, out: Path) -> bool:
    """Commit what the CLI left uncommitted and bundle orch-work's new commits; False when none."""
    git(work, "add", "-A")
    if git(work, "status", "--porcelain"):
        run_git(["commit", "-q", "--no-verify", "-m", f"{author}: the run's changes"], work, who=f"orch {author}")
    if git(work, "rev-parse", "HEAD") == base:
        return False
    git(work, "bundle", "create", "-q", str(out), "orch-work", f"^{base}")
    return True
