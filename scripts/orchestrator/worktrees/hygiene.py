"""Which files orch never commits: the ones that look like secrets.

orch commits in two places — the session's base (the user's uncommitted work) and each
agent's work after a task — and neither may put a secret into a branch (a branch is
merged, pushed, shared). A file is withheld when its name says it holds secrets (`.env*`,
`*.pem`, `*.key`, `id_rsa`-style keys, `.npmrc`, `.netrc` …) or its content holds a
credential of a known format or a secret value of orch's environment
(`safety.redaction.holds_credential`; the `key = value` heuristics of the log redaction are
not used here: in source code `token = get_token()` is no secret). Only files being added
are judged — new files and changed ones; what the branch already holds is not.

`stage` adds everything else that changed (ignored files stay out, as `git add --all`
leaves them), and returns what it withheld; withheld files stay where they are, uncommitted.
The user's withheld files are copied into each agent's worktree (`copy_withheld`), so the
agents can run the project with them.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from ..safety.redaction import holds_credential
from .git import Where, git

#: File names that say they hold secrets (matched on the name alone, any folder).
SECRET_NAME = re.compile(
    r"^(?:\.env.*|.*\.(?:pem|key|p12|pfx|jks|keystore)|id_[A-Za-z0-9_-]+(?:\.pub)?|\.npmrc|\.netrc|_netrc|\.pypirc"
    r"|\.git-credentials|\.dockercfg)$", re.I)
CHUNK = 1 << 20  # files are read in pieces: memory stays small whatever their size
OVERLAP = 8192  # ...overlapping, so a key cut at a piece's edge is still whole in one


def secret_name(path: str) -> bool:
    """True when the file's name (not its folders) says it holds secrets."""
    return bool(SECRET_NAME.match(PurePosixPath(path).name))


def holds_secret(file: Path) -> bool:
    """True when the file holds a credential (a symbolic link, a pipe or a device holds none: only
    their names are judged)."""
    if file.is_symlink() or not file.is_file():
        return False
    try:
        with open(file, "rb") as f:
            tail = ""
            while True:
                data = f.read(CHUNK)
                if not data:
                    return False
                text = tail + data.decode("latin-1")
                if holds_credential(text):
                    return True
                tail = text[-OVERLAP:]
    except OSError:
        return False


def withhold(top: Path, path: str) -> Optional[str]:
    """Why the file at top/path must not be committed (None: it may)."""
    if secret_name(path):
        return "its name says it holds secrets"
    if holds_secret(Path(top) / path):
        return "it holds a credential"
    return None


@dataclass
class Staged:
    """What `stage` did: the files it withheld (new ones, and tracked ones whose change it left
    out), and the untracked files it added."""

    withheld: list[str] = field(default_factory=list)
    withheld_changes: list[str] = field(default_factory=list)  # of those, files the index already tracks
    added_untracked: list[str] = field(default_factory=list)


def _status(where: Where, env: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(untracked, changed in the work tree or unmerged, staged as new or changed) from one
    `git status` (ignored files are not listed)."""
    out = git(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"], where, env=env).stdout
    untracked, changed, staged = [], [], []
    for entry in out.split("\0"):
        if len(entry) < 4:
            continue
        x, y, path = entry[0], entry[1], entry[3:]
        if x == "?":
            untracked.append(path)
            continue
        if y != " " or "U" in (x, y):
            changed.append(path)
        if x in "AMT":
            staged.append(path)
    return untracked, changed, staged


def stage(where: Where, top: Path, *, who: str = "orch", env: Optional[dict[str, str]] = None,
          skip: Callable[[str], bool] = lambda p: False) -> Staged:
    """`git add --all`, minus the files that look like secrets (and those `skip` names): new
    and changed files are judged one by one; a secret already staged is taken out again."""
    env = {**(env or {}), "GIT_LITERAL_PATHSPECS": "1"}  # a file named `*` is that file, not a glob
    untracked, changed, staged_new = _status(where, env)
    done = Staged()
    add, unstage = [], []
    for path in sorted(set(untracked) | set(changed)):
        if skip(path):
            continue
        if not (Path(top) / path).exists() and not (Path(top) / path).is_symlink():
            add.append(path)  # a deletion holds nothing
        elif withhold(top, path):
            done.withheld.append(path)
        else:
            add.append(path)
    for path in staged_new:  # an agent's own `git add` of a secret (changed since, or not)
        if path in add:
            continue
        if path in done.withheld or ((Path(top) / path).exists() and withhold(top, path)):
            unstage.append(path)
            if path not in done.withheld:
                done.withheld.append(path)
    if add:
        git(["add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul"], where, env=env, who=who,
            stdin="\0".join(add))
    if unstage:
        args = ["reset", "-q", "HEAD", "--"] if _has_head(where, env) else ["rm", "-q", "--cached", "--"]
        git([*args, *unstage], where, env=env)
    untracked_set = set(untracked)
    done.added_untracked = [p for p in add if p in untracked_set]
    done.withheld.sort()
    done.withheld_changes = [p for p in done.withheld if p not in untracked_set]
    return done


def _has_head(where: Where, env: dict[str, str]) -> bool:
    return git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], where, env=env, check=False).returncode == 0


def copy_withheld(source: Path, target: Path, paths: list[str]) -> list[str]:
    """Copy the user's withheld files from their checkout into an agent's worktree (left
    uncommitted there, never over a file the worktree has); the ones copied. A path that
    would leave either tree, through `..` or a symbolic link folder, is skipped."""
    copied = []
    src_root, dst_root = Path(source).resolve(), Path(target).resolve()
    for rel in paths:
        if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            continue
        src, dst = Path(source) / rel, Path(target) / rel
        if not (src.is_file() or src.is_symlink()) or dst.exists() or dst.is_symlink():
            continue
        if not src.parent.resolve().is_relative_to(src_root):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.parent.resolve().is_relative_to(dst_root):
            continue
        shutil.copy2(src, dst, follow_symlinks=False)
        copied.append(rel)
    return copied
