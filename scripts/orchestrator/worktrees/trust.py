"""What orch trusts about a worktree: its own records, never a file an agent can write.

An agent works inside its worktree, and a worktree's `.git` file says where its git folder
is; its admin folder (`<repository>/.git/worktrees/<name>`) says where the repository is
(`commondir`), what the worktree's own config is (`config.worktree`) and which branch is
checked out (`HEAD`). Whoever rewrites one of those points orch's git at a config of their
choosing — `core.fsmonitor`, a filter driver, a hooks path: a program orch would run.

So when orch makes a worktree it seals it (`seal`): the admin folder, the branch, and a
digest of each of those files. Every git call about the worktree names the git folder,
the repository and the work tree from that seal (git.Tree), and before orch works there
(`open_tree`) the files must still match, the branch must still be checked out, and the
repository's own config must be as it was when the session started (`config_seal`: the
local scope with what it includes, apart from the branch and remote bookkeeping git writes
as the user works). Otherwise the worktree is refused with a one-line reason
(WorktreeRefused); a changed worktree can be made afresh from its branch (`renew`).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Optional

from ..core.errors import OrchError
from ..core.models import GitRecord, WorktreeSeal
from .git import Tree, common_dir, git
from .layout import add_detached, add_worktree, worktree_path

#: The files of a worktree that decide where orch's git would look (see the module docstring).
SEALED = (".git", "gitdir", "commondir", "config.worktree")
#: Config git itself rewrites as the user works (tracking branches, remotes): none of it
#: names a program orch runs (orch never talks to a remote), so changing it refuses nothing.
_BOOKKEEPING = re.compile(r"^(?:branch\..+\.(?:remote|merge|rebase|pushremote|description)"
                          r"|remote\..+\.(?:url|pushurl|fetch|push|tagopt|prune|prunetags|mirror|skipdefaultupdate"
                          r"|skipfetchall))$", re.S)


class WorktreeRefused(OrchError):
    """One of orch's worktrees, or the repository's config, changed since orch made it."""

    def __init__(self, message: str, repairable: bool = True):
        super().__init__(message)
        self.repairable = repairable  # False: the repository's config, which no new worktree mends


# ---------------------------------------------------------------- the repository's config
def config_seal(repo: Path) -> dict[str, str]:
    """The repository's own config (local scope, includes followed) as "local KEY" -> digest
    of its values, without git's branch and remote bookkeeping."""
    proc = git(["config", "--show-scope", "-z", "--list"], Path(repo), check=False)
    values: dict[str, list[str]] = {}
    fields = proc.stdout.split("\0")
    for scope, entry in zip(fields[0::2], fields[1::2]):
        key, _, value = entry.partition("\n")
        if scope != "local" or _BOOKKEEPING.match(key):
            continue
        values.setdefault(f"{scope} {key}", []).append(value)
    return {k: hashlib.sha256("\0".join(v).encode()).hexdigest()[:16] for k, v in sorted(values.items())}


def check_config(record: GitRecord) -> None:
    """WorktreeRefused (not repairable) when the repository's config changed since the start."""
    if not record.config:
        return  # a session from before seals: nothing to compare with
    now = config_seal(Path(record.repo))
    if now == record.config:
        return
    changes = [f"{k.split(' ', 1)[1]} {'added' if k not in record.config else 'removed' if k not in now else 'changed'}"
               for k in sorted(set(now) | set(record.config)) if now.get(k) != record.config.get(k)]
    shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
    raise WorktreeRefused(f"the repository's git config changed since the session started ({shown}): orch runs "
                          "no git in its worktrees until it is as it was", repairable=False)


# ---------------------------------------------------------------- one worktree
def _digest(path: Path) -> str:
    """sha256 of a file's bytes; "" when absent; a symbolic link or a folder never matches a file."""
    if path.is_symlink():
        return "link:" + str(path.readlink())
    if path.is_dir():
        return "folder"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
    except OSError as e:
        return f"unreadable:{e.errno}"


def _files(work_tree: Path, git_dir: Path) -> dict[str, str]:
    return {name: _digest(work_tree / ".git" if name == ".git" else git_dir / name) for name in SEALED}


def _head(git_dir: Path) -> str:
    try:
        return (git_dir / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return ""


def _admin_of(common: Path, work_tree: Path) -> Optional[Path]:
    """The admin folder git registered for work_tree (its `gitdir` names work_tree/.git), when one does."""
    found = []
    admins = common / "worktrees"
    for entry in sorted(admins.iterdir()) if admins.is_dir() else []:
        try:
            target = Path((entry / "gitdir").read_text().strip())
        except OSError:
            continue
        if target == work_tree / ".git" or target.resolve() == (work_tree / ".git").resolve():
            found.append(entry)
    return found[0] if len(found) == 1 else None


def seal(record: GitRecord, work_tree: Path, branch: Optional[str]) -> WorktreeSeal:
    """The seal of a worktree orch has just made (no agent has run in it yet)."""
    common = Path(record.common_dir)
    admin = _admin_of(common, Path(work_tree))
    if admin is None:
        raise WorktreeRefused(f"git registered no single worktree at {work_tree}")
    return WorktreeSeal(git_dir=str(admin), branch=branch, files=_files(Path(work_tree), admin))


def _what_changed(s: WorktreeSeal, work_tree: Path) -> Optional[str]:
    admin = Path(s.git_dir)
    now = _files(work_tree, admin)
    for name in SEALED:
        if now[name] != s.files.get(name, ""):
            if name == ".git":
                return "its .git file was changed (orch's git does not follow it)"
            state = "appeared" if not s.files.get(name) else "was removed" if not now[name] else "was changed"
            return f"{name} in its git folder {state}"
    head = _head(admin)
    if s.branch is not None and head != f"ref: refs/heads/{s.branch}":
        return f"its HEAD no longer names {s.branch} ({head[:80] or 'unreadable'})"
    if s.branch is None and head.startswith("ref:"):
        return f"its HEAD was made to name a branch ({head[:80]})"
    return None


def open_tree(record: GitRecord, session_id: str, name: str, branch: Optional[str] = None, *,
              config: bool = True) -> Tree:
    """The worktree `name` as orch's records name it, after checking nothing changed it (and,
    with config, the repository's config: one git process; the worktree's own files cost
    none); WorktreeRefused (one line) when something did. A worktree made before seals
    existed is checked against git's own registration and sealed as it is now (record.trees)."""
    work_tree = worktree_path(Path(record.worktrees_dir), session_id, name)
    if record.common_dir is None:
        record.common_dir = str(common_dir(Path(record.repo)))
    if config:
        check_config(record)
    s = record.trees.get(name)
    if s is None:
        admin = _admin_of(Path(record.common_dir), work_tree)
        pointer = _read(work_tree / ".git")
        if admin is None or pointer != f"gitdir: {admin}" or _read(admin / "commondir") != "../..":
            raise WorktreeRefused(f"{name}'s worktree ({work_tree}) does not match git's record of it")
        s = record.trees[name] = WorktreeSeal(git_dir=str(admin), branch=branch, files=_files(work_tree, admin))
    changed = _what_changed(s, work_tree)
    if changed:
        raise WorktreeRefused(f"{name}'s worktree was changed since orch made it: {changed}")
    return Tree(work_tree=work_tree, git_dir=Path(s.git_dir), common_dir=Path(record.common_dir))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def renew(record: GitRecord, session_id: str, name: str, branch: Optional[str], start: str) -> WorktreeSeal:
    """Make the worktree `name` afresh (what was in it is dropped): on `branch` at its tip, or
    detached at `start` (branch None); its new seal is recorded and returned."""
    check_config(record)
    repo, work_tree = Path(record.repo), worktree_path(Path(record.worktrees_dir), session_id, name)
    if record.common_dir is None:
        record.common_dir = str(common_dir(repo))
    old = record.trees.get(name)
    common = Path(record.common_dir)
    admins = {Path(old.git_dir)} if old is not None else set()
    found = _admin_of(common, work_tree)
    if found is not None:
        admins.add(found)
    if work_tree.is_symlink() or work_tree.is_file():
        work_tree.unlink()
    elif work_tree.exists():
        shutil.rmtree(work_tree)
    for admin in admins:
        if admin.parent == common / "worktrees" and admin.is_dir():
            shutil.rmtree(admin)
    if branch is not None:
        add_worktree(repo, work_tree, branch, branch)
    else:
        add_detached(repo, work_tree, start)
    record.trees[name] = new = seal(record, work_tree, branch)
    return new
