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
    them; nothing is committed on the user's branch. A path git itself would never check out
    (`.git` anywhere in it, `..`, an absolute one) or one that reaches out through a symbolic
    link is refused: the run's commits come from another machine.

Every git call is orch's runner (worktrees/git.py): no program the repository names runs,
and in one of orch's worktrees the git folder comes from orch's records (a Tree), not from
the worktree's `.git` file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...core.errors import InvalidInput, OrchError
from ...worktrees.base import capture_base
from ...worktrees.git import Tree, Where, git as run_git, git_bytes, rev
from ...worktrees.hygiene import stage


def git(cwd: Where | str, *args: str) -> str:
    """orch's git runner (its identity, no repository-named program, one-line GitError) in cwd
    (a folder, or one of orch's worktrees as a Tree): stdout, stripped."""
    return run_git(args, cwd if isinstance(cwd, Tree) else Path(cwd)).stdout.strip()


@dataclass(frozen=True)
class Workspace:
    top: Path  # the work tree's top folder
    relpath: str  # the run's cwd inside it ("" at the top)
    branch: str  # "HEAD" when detached
    linked: bool  # a linked worktree (git worktree add), not a main checkout
    where: Optional[Tree] = None  # one of orch's worktrees: its git folder from orch's records

    @property
    def git_at(self) -> Where:
        return self.where if self.where is not None else self.top


def orch_tree(agent_dir: Path, cwd: Path) -> Optional[Tree]:
    """When cwd lies in one of the worktrees of the agent's session: that worktree as orch's
    records name it, checked (trust.WorktreeRefused when it changed since orch made it); else None."""
    from ...store.sessions import SessionStore
    from ...worktrees.trust import open_tree

    try:
        session = SessionStore(Path(agent_dir).parent.parent, read_only=True).read_session()
    except OrchError:
        return None
    record = session.git
    if record is None or record.mode != "worktrees" or not record.worktrees_dir:
        return None
    own = (Path(record.worktrees_dir) / session.id).resolve()
    try:
        name = Path(cwd).resolve().relative_to(own).parts[0]
    except (ValueError, IndexError):
        return None
    seal = record.trees.get(name)
    if seal is not None:
        return open_tree(record, session.id, name, seal.branch)
    try:  # a worktree made before seals: its agent's record says which branch it is on
        branch = SessionStore(Path(agent_dir).parent.parent, read_only=True).read_agent(Path(agent_dir).name).branch
    except OrchError:
        branch = None
    return open_tree(record, session.id, name, branch)


def workspace(cwd: Path, tree: Optional[Tree] = None) -> Workspace:
    """The git work tree cwd is in (tree: one of orch's worktrees, named from orch's records),
    or InvalidInput: the ray runner needs one."""
    at: Where = tree if tree is not None else Path(cwd)
    proc = run_git(["rev-parse", "--show-toplevel", "--git-dir", "--git-common-dir"], at, check=False)
    if proc.returncode != 0:
        raise InvalidInput(f"the ray runner needs a git workspace: {cwd} is not inside a git work tree")
    top, git_dir, common = proc.stdout.splitlines()[:3]
    if rev("HEAD", at) is None:
        raise InvalidInput(f"the ray runner needs a git workspace with a commit: {top} has none yet")
    here = Path(cwd).resolve()
    rel = os.path.relpath(here, Path(top).resolve())
    return Workspace(top=Path(top), relpath="" if rel == "." else rel,
                     branch=git(at, "rev-parse", "--abbrev-ref", "HEAD"),
                     linked=(here / git_dir).resolve() != (here / common).resolve(), where=tree)


def _dirty(at: Where) -> bool:
    return bool(git(at, "status", "--porcelain", "--untracked-files=all"))


def ship(ws: Workspace, key: str, bundle: Path, message: str) -> str:
    """Bundle the commit the run starts from (see the module docstring); its sha."""
    base = capture_base(ws.git_at, message=message)  # HEAD itself when the tree is clean
    git(ws.git_at, "update-ref", f"refs/orch/ship/{key}", base)
    git(ws.git_at, "bundle", "create", "-q", str(bundle), f"refs/orch/ship/{key}")
    return base


def take_back(ws: Workspace, key: str, bundle: Path, base: str) -> str:
    """Fetch the run's commits and bring them into the work tree; what was done, in words."""
    ref = f"refs/orch/runs/{key}"
    at = ws.git_at
    git(at, "fetch", "-q", str(bundle), f"+refs/heads/orch-work:{ref}")
    new = git(at, "rev-parse", ref)
    if ws.linked and git(at, "rev-parse", "HEAD") == base and not _dirty(at):
        git(at, "merge", "--ff-only", "-q", new)
        return f"fast-forwarded {ws.branch} to {new[:12]}"
    conflicts, refused = _apply_as_files(ws, base, new)
    said = f"applied the changes of {new[:12]} as files ({ref})"
    if refused:
        said += f"; refused {len(refused)} path(s) no checkout would write: {', '.join(refused[:3])}"
    return said + (f"; merged over local edits with conflicts, the run's version kept: {', '.join(conflicts)}"
                   if conflicts else "")


def _blob(at: Where, commit: str, path: str) -> Optional[bytes]:
    """The file's bytes at commit; None when it is absent there or not a file (a folder)."""
    return git_bytes(["cat-file", "blob", f"{commit}:{path}"], at)


def unsafe_path(top: Path, path: str) -> Optional[str]:
    """Why writing the repository path `path` under top would reach somewhere a checkout never
    writes (None: it is safe): a `.git` part (any case), `..`, an absolute or empty name, or a
    folder on the way that is a symbolic link or leads outside top."""
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return "not a plain relative path"
    if any(p.lower().rstrip(". ") == ".git" for p in parts):
        return "inside a .git folder"
    root = top.resolve()
    folder = top
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return f"{folder.relative_to(top)} is a symbolic link"
    if not (top / path).parent.resolve().is_relative_to(root):
        return "outside the work tree"
    return None


def _apply_as_files(ws: Workspace, base: str, new: str) -> tuple[list[str], list[str]]:
    """Bring each file the run changed to its new content, as a CLI working here would have;
    (conflicts, refused paths).

    A file the local tree changed meanwhile too (another agent in the same folder) is merged
    three ways; where both changed the same lines the run's version wins (it is the newer
    work) and the file is named in the result."""
    top, at = ws.top, ws.git_at
    conflicts, refused = [], []
    names = git(at, "diff", "--name-only", "-z", "--no-renames", base, new).split("\0")
    for path in [p for p in names if p]:
        if unsafe_path(top, path):
            refused.append(path)
            continue
        target = top / path
        theirs, before = _blob(at, new, path), _blob(at, base, path)
        mine = target.read_bytes() if target.is_file() and not target.is_symlink() else None
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
        if target.is_symlink():
            target.unlink()  # a link is replaced by the file, as a checkout does: never written through
        target.write_bytes(theirs)
    return conflicts, refused


def _merge3(mine: bytes, base: bytes, theirs: bytes) -> Optional[bytes]:
    """git merge-file of three versions; None when they conflict."""
    with tempfile.TemporaryDirectory(prefix="orch-merge-") as tmp:
        paths = []
        for name, data in (("mine", mine), ("base", base), ("theirs", theirs)):
            (Path(tmp) / name).write_bytes(data)
            paths.append(str(Path(tmp) / name))
        return git_bytes(["merge-file", "-p", *paths], Path(tmp))


# --------------------------------------------------------------------------- the node's side


def node_tree(work: Path) -> Tree:
    """The node's checkout: the CLI works in `work`, its git folder is `work.git` beside it
    (outside the CLI's folder), and orch's git names both rather than follow work/.git."""
    git_dir = work.with_name(work.name + ".git")
    return Tree(work_tree=work, git_dir=git_dir, common_dir=git_dir)


def check_out(bundle: Path, ref: str, work: Path) -> str:
    """Clone the shipped commit into work on branch orch-work; its sha."""
    work.mkdir(parents=True)
    tree = node_tree(work)
    run_git(["init", "-q", f"--separate-git-dir={tree.git_dir}", str(work)], work.parent)
    git(tree, "fetch", "-q", str(bundle), f"+{ref}:refs/heads/orch-work")
    git(tree, "checkout", "-q", "orch-work")
    return git(tree, "rev-parse", "HEAD")


def commit_and_bundle(work: Path, base: str, author: str, out: Path) -> bool:
    """Commit what the CLI left uncommitted and bundle orch-work's new commits; False when none."""
    tree = node_tree(work)
    stage(tree, work)  # files that look like secrets stay behind (worktrees/hygiene.py)
    if git(tree, "diff", "--cached", "--name-only"):
        run_git(["commit", "-q", "--no-verify", "-m", f"{author}: the run's changes"], tree, who=f"orch {author}")
    if git(tree, "rev-parse", "HEAD") == base:
        return False
    git(tree, "bundle", "create", "-q", str(out), "orch-work", f"^{base}")
    return True
