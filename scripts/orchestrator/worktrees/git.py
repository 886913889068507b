"""A thin runner of the real `git` binary: explicit identity, no program the repository names.

Every call orch makes carries its own identity (machines without a git config work) and
runs no program a repository's config or attributes could name — an agent can write its
worktree's files, so nothing there may choose what orch's git executes:

- `-c` overrides, which win over every config file: no hooks (`core.hooksPath=/dev/null`),
  no fsmonitor, no ssh command, no askpass or credential helper, no gpg program, no
  signing or signature checks, no ext:: transport, no submodule recursion, no automatic gc;
- `--no-pager`, and `GIT_EDITOR`/`GIT_SEQUENCE_EDITOR` set to `:` (no editor ever starts);
- `--no-ext-diff --no-textconv` on every command that can diff (external diff programs and
  textconv drivers never run);
- before a command that converts or merges file contents, the filter and merge drivers
  the repository's own config defines (its local and worktree scopes, includes followed)
  are neutralized by name: filters do nothing, merge drivers become git's own text merge.
  The user's global and system config keep their drivers (git-lfs stays working): an
  agent cannot write those files.

A call about one of orch's worktrees is given a `Tree`, which names the git directory,
the common directory and the work tree from orch's records (GIT_DIR, GIT_COMMON_DIR,
GIT_WORK_TREE), so the worktree's `.git` file and its admin folder's `commondir` are never
followed. Variables that would point git elsewhere are dropped from the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from ..core.errors import OrchError

ORCH_EMAIL = "orch@localhost"
_FOREIGN = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_EXTERNAL_DIFF", "GIT_DIFF_OPTS",
            "GIT_PAGER", "GIT_REPLACE_REF_BASE", "GIT_CONFIG",
            "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")

#: Config that names a program or reaches outside, overridden on every call: command-line
#: config wins over every file, includes too (checked with git 2.39: tests/test_git_trust.py
#: arms each key orch's calls can reach in a repository's config and watches for it to run).
#: An empty value switches off what git skips when empty; a program set to `false` fails
#: at once where git would run one.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null", "core.fsmonitor=false", "core.sshCommand=false", "core.askPass=",
    "core.alternateRefsCommand=", "credential.helper=", "gpg.program=false", "gpg.openpgp.program=false",
    "gpg.x509.program=false", "gpg.ssh.program=false", "commit.gpgSign=false", "tag.gpgSign=false",
    "merge.verifySignatures=false", "log.showSignature=false", "protocol.ext.allow=never",
    "submodule.recurse=false", "fetch.recurseSubmodules=false", "gc.auto=0", "maintenance.auto=false",
    "color.ui=false",
)
#: Commands that can print a diff: external diff programs and textconv drivers are turned off.
_DIFFING = {"diff": "--no-ext-diff --no-textconv", "log": "--no-ext-diff --no-textconv",
            "show": "--no-ext-diff --no-textconv", "diff-tree": "--no-ext-diff --no-textconv",
            "diff-index": "--no-ext-diff --no-textconv", "diff-files": "--no-ext-diff --no-textconv",
            "format-patch": "--no-ext-diff --no-textconv", "blame": "--no-textconv", "annotate": "--no-textconv"}
#: Commands that never read the work tree's files nor merge them: no driver can run, so the
#: repository's drivers need not be looked up first. (Anything that reads the index may hash
#: a racily clean file through its clean filter — even `write-tree` — so it is not here.)
_NO_CONTENT = frozenset({
    "rev-parse", "update-ref", "for-each-ref", "symbolic-ref", "merge-base", "ls-tree", "commit-tree",
    "bundle", "rev-list", "branch", "show-ref", "config", "check-ignore", "fetch", "init", "merge-file",
})
#: The text merge git does itself, standing in for a repository's own merge driver.
TEXT_MERGE = "git merge-file --marker-size=%L %A %O %B"


class GitError(OrchError):
    """A git command orch ran failed (its first line of stderr is the message)."""


@dataclass(frozen=True)
class Tree:
    """One of orch's worktrees as orch's records name it: git never reads its `.git` file.

    Path-like (its work tree), so functions that take a folder take a Tree too, and every
    git call they make with it carries the explicit directories."""

    work_tree: Path
    git_dir: Path  # its admin folder in the repository (<common>/worktrees/<name>)
    common_dir: Path  # the repository's .git

    def __fspath__(self) -> str:
        return str(self.work_tree)

    def env(self) -> dict[str, str]:
        return {"GIT_DIR": str(self.git_dir), "GIT_COMMON_DIR": str(self.common_dir),
                "GIT_WORK_TREE": str(self.work_tree)}


Where = Union[Path, Tree]


def have_git() -> bool:
    return shutil.which("git") is not None


def identity_args(name: str = "orch") -> list[str]:
    return ["-c", f"user.name={name}", "-c", f"user.email={ORCH_EMAIL}"]


def safe_args() -> list[str]:
    """`--no-pager` and the -c overrides every call carries."""
    out = ["--no-pager"]
    for setting in SAFE_CONFIG:
        out += ["-c", setting]
    return out


def _environment(where: Where, extra: Optional[dict[str, str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_EDITOR": ":", "GIT_SEQUENCE_EDITOR": ":",
                "GIT_NO_REPLACE_OBJECTS": "1"})
    if isinstance(where, Tree):
        env.update(where.env())
    env.update(extra or {})
    return env


def _run(argv: list[str], where: Where, env: dict[str, str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    cwd = where.work_tree if isinstance(where, Tree) else where
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def repository_drivers(where: Where, env: dict[str, str]) -> list[tuple[str, str]]:
    """Settings neutralizing every filter and merge driver the repository's own config
    (local and worktree scopes, with what they include) defines."""
    proc = _run(["git", *safe_args(), "config", "--show-scope", "-z", "--get-regexp", r"^(filter|merge)\..+\."],
                where, env)
    if proc.returncode not in (0, 1):  # 1: none defined
        return []
    filters, merges = set(), set()
    fields = proc.stdout.split("\0")
    for scope, entry in zip(fields[0::2], fields[1::2]):
        if scope not in ("local", "worktree"):
            continue
        key = entry.split("\n", 1)[0]
        section, _, rest = key.partition(".")
        name = rest.rpartition(".")[0]
        if not name:
            continue
        (filters if section.lower() == "filter" else merges).add(name)
    out = [(f"filter.{name}.{key}", value) for name in sorted(filters)
           for key, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false"))]
    return out + [(f"merge.{name}.driver", TEXT_MERGE) for name in sorted(merges)]


def _add_config(env: dict[str, str], settings: list[tuple[str, str]]) -> None:
    """Command-line config through GIT_CONFIG_COUNT/KEY_n/VALUE_n (a driver's name may hold
    `=`, which `-c` cannot carry), after any the environment already has."""
    try:
        n = int(env.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        n = 0
    for key, value in settings:
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
        n += 1
    env["GIT_CONFIG_COUNT"] = str(n)


def git_argv(args: Sequence[str], where: Where, env: dict[str, str], who: Optional[str] = "orch") -> list[str]:
    """The full command line of `git ARGS` as orch runs it; the repository's drivers, when the
    command could run one, are neutralized through env. `who=None`: the user's own identity
    (a commit orch makes on the user's behalf, `orch land --commit`)."""
    args = list(args)
    sub = args[0] if args else ""
    if sub in _DIFFING:
        args[1:1] = _DIFFING[sub].split()
    if sub not in _NO_CONTENT and not (sub == "worktree" and args[1:2] in (["list"], ["prune"])):
        _add_config(env, repository_drivers(where, env))
    return ["git", *safe_args(), *(identity_args(who) if who else []), *args]


def git(args: Sequence[str], cwd: Where, *, who: str = "orch", env: Optional[dict[str, str]] = None,
        check: bool = True, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run `git ARGS` in cwd (a folder, or one of orch's worktrees as a Tree); GitError (one
    line) when it fails and check is set."""
    if not have_git():
        raise GitError("git is not installed: install it, or start with --no-worktrees")
    full_env = _environment(cwd, env)
    try:
        proc = _run(git_argv(args, cwd, full_env, who), cwd, full_env, stdin)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {args[0]} in {cwd} failed: {e}") from None
    if check and proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise GitError(f"git {' '.join(args[:2])} in {os.fspath(cwd)} failed: {lines[-1] if lines else ''}")
    return proc


def git_bytes(args: Sequence[str], cwd: Where) -> Optional[bytes]:
    """The raw stdout of a git command that reads (a blob), or None when it fails."""
    env = _environment(cwd, None)
    proc = subprocess.run(git_argv(args, cwd, env), cwd=cwd.work_tree if isinstance(cwd, Tree) else cwd,
                          env=env, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc.stdout if proc.returncode == 0 else None


def out(args: Sequence[str], cwd: Where, **kw) -> str:
    """The stripped stdout of a git command that must succeed."""
    return git(args, cwd, **kw).stdout.strip()


def repo_top(folder: Path) -> Optional[Path]:
    """The top of the work tree holding folder, or None (no git, not a repository, a bare one)."""
    if not have_git():
        return None
    proc = git(["rev-parse", "--show-toplevel"], folder, check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 and proc.stdout.strip() else None


def common_dir(repo: Path) -> Path:
    """The repository's own git folder (its common directory), absolute."""
    d = Path(out(["rev-parse", "--git-common-dir"], repo))
    return (d if d.is_absolute() else Path(repo) / d).resolve()


def rev(ref: str, cwd: Where) -> Optional[str]:
    """The commit a ref names, or None when it names none (an unborn HEAD, a deleted branch)."""
    proc = git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None
