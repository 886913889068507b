"""Landing: the session's changes taken into the user's working tree (and branch), safely.

The session's changes are the difference between its base and the integration branch's
tip. The base already holds what the user had uncommitted when the session started, so
orch applies base → result — never HEAD → result, which would undo or re-apply the user's
own uncommitted work. Per changed file, with W the user's file now, B the base's, R the
result's:

    W = B        the user has not touched it since: it becomes R
    W = R        already there: nothing to do
    otherwise    both changed it: a three-way merge (git merge-file); overlapping
                 changes, a deletion against an edit, or a binary file is a conflict

Everything is decided before anything is written. One conflict and nothing is written:
the working tree and the index stay byte for byte as they were, and every conflicting
file is reported with why. Untracked files the session did not change are never looked
at; the user's staged and unstaged edits stay staged and unstaged.

Modes (`orch land --MODE`, or the policy's `[git] land`):

    apply    the working tree only (the default): nothing is committed or staged
    squash   also staged: the user's index gets the session's changes on top of what they staged
    commit   also one commit on the user's branch holding exactly the session's changes
             (on HEAD; a change that cannot be separated from the user's own uncommitted
             work to the same file is left out of the commit and said so)
    merge    as commit, but a merge commit whose second parent is the integration branch
             (its history — from the base, a snapshot of the user's uncommitted work)

The user's index is written the way git writes it (index.lock, then a rename) and the
branch moves with a compare-and-swap `update-ref`, only after every new file is ready.
Nothing is ever pushed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .git import _FOREIGN, GitError, git, git_argv, out, rev

Blob = tuple[str, str]  # (mode, object id)
ZERO = "0" * 40
MODES = ("apply", "squash", "commit", "merge")


@dataclass
class Entry:
    """One changed path and what each side holds (None: absent)."""

    path: str
    base: Optional[Blob]
    result: Optional[Blob]
    work: Optional[tuple[str, bytes]] = None  # the user's file now: (mode, content)
    new_work: Optional[tuple[str, bytes]] = None  # what the working tree gets (None: remove)
    touch_work: bool = False
    new_index: Optional[Blob] = None  # squash/commit/merge: the user's index entry after
    touch_index: bool = False
    index_content: Optional[bytes] = None
    commit: Optional[Blob] = None  # commit/merge: the entry in the new commit
    in_commit: bool = False
    commit_content: Optional[bytes] = None


@dataclass
class LandPlan:
    """What landing would do, decided before anything is written."""

    mode: str
    repo: Path
    base: str
    result: str
    head: Optional[str]  # the user's HEAD commit (None: a repository without commits)
    head_ref: Optional[str]  # the branch HEAD is on (None: detached)
    entries: list[Entry] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # "path: why", one per file
    # squash/commit/merge: in the working tree, but not staged or committed (each holds the user's own
    # uncommitted work too, or is their untracked file)
    uncommitted: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[str]:
        return [e.path for e in self.entries if e.touch_work]

    @property
    def nothing_to_do(self) -> bool:
        return not self.writes and not any(e.touch_index for e in self.entries) and \
            not any(e.in_commit for e in self.entries)


@dataclass
class Landed:
    mode: str
    files: list[str]
    commit: Optional[str] = None
    branch: Optional[str] = None
    uncommitted: list[str] = field(default_factory=list)


class LandConflict(GitError):
    """Landing would overwrite work the user did after the session started (nothing was written)."""


# --------------------------------------------------------------------------- reading


def _git_bytes(args: list[str], repo: Path, input_bytes: bytes = b"", env: Optional[dict] = None,
               check: bool = True, identity: bool = True) -> bytes:
    """A git command with bytes in and out (file contents), as git.py runs every other one:
    orch's identity, no program the repository names, no variable pointing git elsewhere;
    literal pathspecs."""
    full = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    full.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_LITERAL_PATHSPECS": "1", "GIT_EDITOR": ":",
                 "GIT_SEQUENCE_EDITOR": ":", **(env or {})})
    try:
        proc = subprocess.run(git_argv(args, repo, full, "orch" if identity else None), cwd=repo, env=full,
                              input=input_bytes, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {args[0]} in {repo} failed: {e}") from None
    if proc.returncode != 0 and check:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"]
        raise GitError(f"git {' '.join(args[:2])} in {repo} failed: {lines[-1]}")
    return proc.stdout


def _raw_diff(repo: Path, base: str, result: str) -> list[Entry]:
    """The paths the session changed, with both sides' modes and blobs."""
    data = _git_bytes(["diff", "--raw", "-z", "--no-renames", "--no-abbrev", base, result], repo)
    fields = data.decode("utf-8", errors="surrogateescape").split("\0")
    entries, i = [], 0
    while i < len(fields) - 1:
        meta, path = fields[i], fields[i + 1]
        i += 2
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, old_sha, new_sha, _status = meta[1:].split(" ")
        entries.append(Entry(path=path, base=None if old_sha == ZERO else (old_mode, old_sha),
                             result=None if new_sha == ZERO else (new_mode, new_sha)))
    return entries


def _blobs(repo: Path, shas: set[str]) -> dict[str, bytes]:
    """The content of each blob, read with one `git cat-file --batch`."""
    shas = {s for s in shas if s}
    if not shas:
        return {}
    order = sorted(shas)
    data = _git_bytes(["cat-file", "--batch"], repo, "".join(s + "\n" for s in order).encode())
    out_map, at = {}, 0
    for sha in order:
        nl = data.index(b"\n", at)
        header = data[at:nl].split()
        size = int(header[2])
        out_map[sha] = data[nl + 1:nl + 1 + size]
        at = nl + 1 + size + 1
    return out_map


def _work(repo: Path, path: str) -> tuple[Optional[tuple[str, bytes]], str]:
    """The user's file now: ((mode, content) or None when absent, why it cannot be landed or "")."""
    p = repo / path
    for parent in list(Path(path).parents)[:-1]:  # never write through a link: it may lead out of the repository
        if (repo / parent).is_symlink():
            return None, f"{parent} is a symbolic link in your working tree (git would not write through it either)"
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None, ""
    except NotADirectoryError:
        return None, "a file of yours stands where its folder would be"
    if stat.S_ISLNK(st.st_mode):
        return ("120000", os.readlink(p).encode()), ""
    if stat.S_ISDIR(st.st_mode):
        return None, "a folder of yours is where the session has a file"
    if not stat.S_ISREG(st.st_mode):
        return None, "it is not a regular file in your working tree"
    return ("100755" if st.st_mode & 0o111 else "100644", p.read_bytes()), ""


def _entries(repo: Path, args: list[str], paths: list[str]) -> dict[str, list[tuple]]:
    """path → the rows git lists for it (ls-files --stage: mode, sha, stage; ls-tree -r: mode,
    type, sha), for the changed paths only (the whole listing is read: no pathspec limit)."""
    if not paths:
        return {}
    wanted = set(paths)
    found: dict[str, list[tuple]] = {}
    for item in _git_bytes([*args, "-z"], repo).decode("utf-8", errors="surrogateescape").split("\0"):
        if "\t" in item:
            meta, path = item.split("\t", 1)
            if path in wanted:
                found.setdefault(path, []).append(tuple(meta.split()))
    return found


# --------------------------------------------------------------------------- deciding


def _merge3(base: Optional[bytes], ours: Optional[bytes], theirs: Optional[bytes]) -> tuple[Optional[bytes], str]:
    """ours with base → theirs applied: (content, "") when clean, (None, why) otherwise.
    None content means absent (deleted)."""
    if ours == base:
        return theirs, ""
    if ours == theirs:
        return ours, ""
    if theirs == base:
        return ours, ""
    if base is None:
        return None, "created on both sides with different content"
    if ours is None:
        return None, "deleted on your side, changed by the session"
    if theirs is None:
        return None, "changed on your side, deleted by the session"
    if any(b"\0" in x[:8000] for x in (base, ours, theirs)):
        return None, "a binary file changed on both sides"
    with tempfile.TemporaryDirectory(prefix="orch-land-") as d:
        files = []
        for name, content in (("ours", ours), ("base", base), ("theirs", theirs)):
            f = Path(d) / name
            f.write_bytes(content)
            files.append(str(f))
        proc = subprocess.run(["git", "merge-file", "-p", "-q", *files], capture_output=True)
    if proc.returncode == 0:
        return proc.stdout, ""
    return None, "your changes and the session's overlap"


def plan_landing(repo: Path, base: str, result: str, mode: str = "apply") -> LandPlan:
    """Everything landing would do (and every conflict), without writing anything."""
    if mode not in MODES:
        raise GitError(f"unknown landing mode {mode!r}: choose one of {', '.join(MODES)}")
    repo = Path(repo)
    head = rev("HEAD", repo)
    head_ref = git(["symbolic-ref", "--quiet", "HEAD"], repo, check=False).stdout.strip() or None
    plan = LandPlan(mode=mode, repo=repo, base=base, result=result, head=head, head_ref=head_ref)
    if mode != "apply" and head_ref is None:
        plan.conflicts.append(f"(HEAD): detached — `orch land --{mode}` needs a branch to commit on; switch to one, "
                              "or `orch land` (into the working tree only)")
        return plan
    plan.entries = _raw_diff(repo, base, result)
    paths = [e.path for e in plan.entries]
    index = _entries(repo, ["ls-files", "--stage"], paths) if mode != "apply" else {}
    tree = _entries(repo, ["ls-tree", "-r", head], paths) if mode in ("commit", "merge") and head else {}
    wanted = {b[1] for e in plan.entries for b in (e.base, e.result) if b}
    wanted |= {fields[1] for rows in index.values() for fields in rows}
    wanted |= {fields[2] for rows in tree.values() for fields in rows}
    blobs = _blobs(repo, wanted)

    def content(blob: Optional[Blob]) -> Optional[bytes]:
        return None if blob is None else blobs[blob[1]]

    for e in plan.entries:
        modes = {b[0] for b in (e.base, e.result) if b}
        if "160000" in modes:
            plan.conflicts.append(f"{e.path}: a submodule the session changed; take it with git")
            continue
        e.work, why = _work(repo, e.path)
        if why:
            plan.conflicts.append(f"{e.path}: {why}")
            continue
        merged, why = _merge3(content(e.base), e.work[1] if e.work else None, content(e.result))
        if why:
            plan.conflicts.append(f"{e.path}: {why}")
            continue
        mode_now = _mode_after(e.base, e.work[0] if e.work else None, e.result)
        e.new_work = None if merged is None else (mode_now, merged)
        e.touch_work = e.new_work != e.work
        if mode in ("commit", "merge"):
            _plan_commit(plan, e, tree.get(e.path), content)
        if mode != "apply" and e.path not in plan.uncommitted:
            _plan_index(plan, e, index.get(e.path), content)
    return plan


def _mode_after(base: Optional[Blob], ours: Optional[str], result: Optional[Blob]) -> str:
    """The file mode after landing: the session's change of mode, else the user's."""
    b, r = base[0] if base else None, result[0] if result else None
    if r is not None and r != b:
        return r
    return ours or r or "100644"


def _changed(mode: str, merged: Optional[bytes], before: Optional[Blob], content) -> bool:
    if merged is None or before is None:
        return (merged is None) != (before is None)
    return merged != content(before) or mode != before[0]


def _plan_index(plan: LandPlan, e: Entry, rows: Optional[list], content) -> None:
    """The user's index after landing: the session's change on top of what they staged. A file
    of theirs that is not in the index (untracked) stays out of it."""
    if rows and any(r[2] != "0" for r in rows):
        plan.conflicts.append(f"{e.path}: your index holds an unresolved merge of it")
        return
    staged: Optional[Blob] = (rows[0][0], rows[0][1]) if rows else None
    if staged is None and e.base is not None:
        plan.uncommitted.append(e.path)  # untracked on your side (it is in the base): it stays untracked
        return
    merged, why = _merge3(content(e.base), content(staged), content(e.result))
    if why:
        if e.in_commit:  # the commit holds the change, so the index must too
            plan.conflicts.append(f"{e.path}: what you staged and the session's change overlap ({why})")
        else:
            plan.uncommitted.append(e.path)  # squash: it stays unstaged, your staged version kept
        return
    mode_now = _mode_after(e.base, staged[0] if staged else None, e.result)
    e.touch_index = _changed(mode_now, merged, staged, content)
    e.new_index = None if merged is None else (mode_now, "")
    e.index_content = merged


def _plan_commit(plan: LandPlan, e: Entry, rows: Optional[list], content) -> None:
    """The new commit: HEAD with exactly the session's change of this file, when that can be
    told apart from the user's own uncommitted work on it."""
    committed: Optional[Blob] = (rows[0][0], rows[0][2]) if rows else None
    merged, why = _merge3(content(e.base), content(committed), content(e.result))
    if why or (committed is None and e.base is not None):
        # the session changed a file holding the user's own uncommitted work (or their untracked
        # file): committing it would commit their work too — it stays in the working tree only
        plan.uncommitted.append(e.path)
        return
    mode_now = _mode_after(e.base, committed[0] if committed else None, e.result)
    e.in_commit = _changed(mode_now, merged, committed, content)
    e.commit = None if merged is None else (mode_now, "")
    e.commit_content = merged


# --------------------------------------------------------------------------- writing


def _write_blob(repo: Path, data: bytes) -> str:
    return _git_bytes(["hash-object", "-w", "--stdin"], repo, data).decode().strip()


def _index_info(entries: list[tuple[Optional[Blob], str]]) -> bytes:
    """`update-index -z --index-info` input: a zero mode and id remove the path."""
    return b"".join(f"{blob[0] if blob else 0} {blob[1] if blob else ZERO}\t{path}".encode(
        "utf-8", errors="surrogateescape") + b"\0" for blob, path in entries)


def _git_dir(repo: Path) -> Path:
    return Path(out(["rev-parse", "--absolute-git-dir"], repo))


def apply_landing(plan: LandPlan, message: str = "") -> Landed:
    """Write what the plan decided. Refuses (LandConflict) when it holds a conflict."""
    if plan.conflicts:
        raise LandConflict(f"{len(plan.conflicts)} file(s) conflict with work you did after the session started: "
                           + "; ".join(plan.conflicts) + " — nothing was changed")
    repo = plan.repo
    # 1. objects: the merged contents, then the new commit (invisible until a ref names it)
    for e in plan.entries:
        if e.touch_index and e.new_index is not None:
            e.new_index = (e.new_index[0], _write_blob(repo, e.index_content))
        if e.in_commit and e.commit is not None:
            e.commit = (e.commit[0], _write_blob(repo, e.commit_content))
    commit = None
    if plan.mode in ("commit", "merge") and (any(e.in_commit for e in plan.entries) or plan.mode == "merge"):
        commit = _make_commit(plan, message)
    # 2. the new working tree files, ready beside their places
    staged = _stage_files(plan)
    lock = None
    try:
        if plan.mode != "apply":
            lock = _new_index(plan)
        # 3. the branch (compare-and-swap: it must still be where it was)
        if commit is not None:
            git(["update-ref", "-m", f"orch land --{plan.mode}", plan.head_ref, commit, plan.head or ""], repo)
        # 4. the files into place, then the index
        for e, tmp in staged:
            _put(repo / e.path, e.new_work, tmp)
        if lock is not None:
            os.replace(lock, lock.with_suffix(""))
            lock = None
    finally:
        for _, tmp in staged:
            if tmp is not None and tmp.exists():
                tmp.unlink()
        if lock is not None and lock.exists():
            lock.unlink()
    return Landed(mode=plan.mode, files=plan.writes, commit=commit,
                  branch=plan.head_ref.removeprefix("refs/heads/") if plan.head_ref else None,
                  uncommitted=list(plan.uncommitted))


def _make_commit(plan: LandPlan, message: str) -> str:
    repo = plan.repo
    fd, index = tempfile.mkstemp(prefix="orch-land-index-")
    os.close(fd)
    os.unlink(index)
    env = {"GIT_INDEX_FILE": index}
    try:
        if plan.head:
            git(["read-tree", plan.head], repo, env=env)
        changes = [(e.commit, e.path) for e in plan.entries if e.in_commit]
        _git_bytes(["update-index", "-z", "--index-info"], repo, _index_info(changes), env=env)
        tree = _git_bytes(["write-tree"], repo, env=env).decode().strip()
    finally:
        if os.path.exists(index):
            os.unlink(index)
    parents = (["-p", plan.head] if plan.head else []) + (["-p", plan.result] if plan.mode == "merge" else [])
    return _git_bytes(["commit-tree", tree, *parents, "-m", message or "orch: the session's changes"], repo,
                      env=_user_identity(repo)).decode().strip()


def _user_identity(repo: Path) -> dict[str, str]:
    """The commit on the user's branch is theirs: their configured name and email when they have
    them (orch's own identity otherwise)."""
    # read past orch's own `-c user.name=orch`, which every other call carries
    name = _git_bytes(["config", "--get", "user.name"], repo, check=False, identity=False).decode().strip()
    email = _git_bytes(["config", "--get", "user.email"], repo, check=False, identity=False).decode().strip()
    if not (name and email):
        return {}
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email}


def _new_index(plan: LandPlan) -> Path:
    """The user's index with the planned entries, written to index.lock (taken exclusively, as
    git takes it: a git running now makes this fail rather than race)."""
    index = _git_dir(plan.repo) / "index"
    lock = index.with_name("index.lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise GitError(f"{lock} exists: another git command is running in this repository (or one was killed: "
                       "remove the file), then run orch land again") from None
    try:
        with tempfile.TemporaryDirectory(prefix="orch-land-") as d:
            scratch = Path(d) / "index"  # a copy to change (git makes a new one when there is none yet)
            if index.is_file():
                scratch.write_bytes(index.read_bytes())
            changes = [(e.new_index, e.path) for e in plan.entries if e.touch_index]
            if changes:
                _git_bytes(["update-index", "-z", "--index-info"], plan.repo, _index_info(changes),
                           env={"GIT_INDEX_FILE": str(scratch)})
            with os.fdopen(fd, "wb") as f:
                f.write(scratch.read_bytes() if scratch.is_file() else b"")
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return lock


def _stage_files(plan: LandPlan) -> list[tuple[Entry, Optional[Path]]]:
    """Each new file's content written to a temporary file beside it (None: a removal)."""
    staged: list[tuple[Entry, Optional[Path]]] = []
    try:
        for e in plan.entries:
            if not e.touch_work:
                continue
            if e.new_work is None:
                staged.append((e, None))
                continue
            target = plan.repo / e.path
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.orch-land-{os.getpid()}")
            mode, data = e.new_work
            if mode == "120000":
                os.symlink(data.decode(), tmp)
            else:
                tmp.write_bytes(data)
                keep = os.stat(target).st_mode & 0o777 if target.is_file() and not target.is_symlink() else 0o644
                os.chmod(tmp, (keep | 0o111) if mode == "100755" else (keep & ~0o111))
            staged.append((e, tmp))
    except BaseException:
        for _, tmp in staged:
            if tmp is not None and (tmp.exists() or tmp.is_symlink()):
                tmp.unlink()
        raise
    return staged


def _put(target: Path, new: Optional[tuple[str, bytes]], tmp: Optional[Path]) -> None:
    if new is None:
        if target.is_symlink() or target.exists():
            target.unlink()
        parent = target.parent
        try:  # folders the removal emptied, as git leaves none
            while parent != parent.parent and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        except OSError:
            pass
        return
    if target.is_dir() and not target.is_symlink():
        raise GitError(f"{target} became a folder while orch was landing: nothing further was changed")
    os.replace(tmp, target)


# --------------------------------------------------------------------------- what to tell the user


def dirty(repo: Path) -> bool:
    """True when the user's index or working tree holds changes (untracked files included)."""
    return bool(out(["--no-optional-locks", "status", "--porcelain"], repo))


def git_alternatives(repo: Path, base: str, branch: str) -> list[str]:
    """The `git` lines that take the result by hand, correct for the repository as it is now:
    no line naming HEAD in a repository without commits, no merge into a dirty tree."""
    lines = [f"git diff {base[:12]} {branch}        # what the session changed",
             f"git diff --binary {base[:12]} {branch} | git apply   # the same into your working tree by hand "
             "(all or nothing)"]
    head = rev("HEAD", repo)
    on_branch = git(["symbolic-ref", "--quiet", "HEAD"], repo, check=False).returncode == 0
    if head and on_branch and not dirty(repo):
        lines.append(f"git merge {branch}             # its history too (your working tree is clean)")
    return lines


def taken_in(repo: Path, commit: str) -> bool:
    """True when one of the user's branches (any but orch's own) contains the commit."""
    users = [b for b in out(["for-each-ref", "--format=%(refname:short)", "refs/heads"], repo).split()
             if not b.startswith("orch/")]
    return any(git(["merge-base", "--is-ancestor", commit, b], repo, check=False).returncode == 0 for b in users)
