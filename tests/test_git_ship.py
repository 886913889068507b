"""A remote run's workspace out and back as git bundles (runtime/runners/git_ship.py), with real git.

The node's side (check out the shipped commit, let a "CLI" change files, commit and
bundle) runs here in a scratch folder, exactly the calls the Ray actor makes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.core.errors import InvalidInput
from orchestrator.runtime.runners import git_ship


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\ntwo\nthree\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "start")
    return path


def _remote_run(tmp_path: Path, cwd: Path, key: str, change) -> tuple[git_ship.Workspace, Path, str]:
    """Ship cwd, run `change` in the node's checkout, bundle the result back; (ws, result bundle, base)."""
    ws = git_ship.workspace(cwd)
    out = tmp_path / f"{key.replace('/', '-')}.out.bundle"
    base = git_ship.ship(ws, key, out, "snapshot")
    work = tmp_path / f"node-{key.replace('/', '-')}"
    assert git_ship.check_out(out, f"refs/orch/ship/{key}", work) == base
    change(work / ws.relpath)
    back = tmp_path / f"{key.replace('/', '-')}.back.bundle"
    assert git_ship.commit_and_bundle(work, base, "implementer-1", back)
    return ws, back, base


def test_the_users_checkout_gets_the_changes_as_files_with_its_own_edits_shipped_and_kept(tmp_path):
    repo = _repo(tmp_path / "repo")
    (repo / "local.txt").write_text("not committed yet\n")  # the user's own uncommitted work

    def change(cwd: Path) -> None:
        assert (cwd / "local.txt").read_text() == "not committed yet\n"  # the snapshot carried it
        (cwd / "new.txt").write_text("made on the node\n")
        (cwd / "a.txt").write_text("one\ntwo\nthree\nfour\n")

    ws, back, base = _remote_run(tmp_path, repo, "s/implementer-1/1", change)
    assert not ws.linked
    index_before = _git(repo, "status", "--porcelain")
    said = git_ship.take_back(ws, "s/implementer-1/1", back, base)
    assert said.startswith("applied the changes of") and "conflict" not in said
    assert (repo / "new.txt").read_text() == "made on the node\n"
    assert (repo / "a.txt").read_text().endswith("four\n")
    assert _git(repo, "rev-list", "--count", "HEAD") == "1"  # nothing committed on the user's branch
    assert "local.txt" in index_before and (repo / "local.txt").read_text() == "not committed yet\n"
    author = _git(repo, "log", "-1", "--format=%an", "refs/orch/runs/s/implementer-1/1")
    assert author == "orch implementer-1"


def test_a_file_changed_here_meanwhile_is_merged_three_ways(tmp_path):
    repo = _repo(tmp_path / "repo")
    ws, back, base = _remote_run(tmp_path, repo, "s/w/1",
                                 lambda cwd: (cwd / "a.txt").write_text("one\ntwo\nthree\nfour\n"))
    (repo / "a.txt").write_text("zero\none\ntwo\nthree\n")  # another agent, here, at the other end
    git_ship.take_back(ws, "s/w/1", back, base)
    assert (repo / "a.txt").read_text() == "zero\none\ntwo\nthree\nfour\n"


def test_an_orch_worktree_is_fast_forwarded_to_the_runs_commits(tmp_path):
    repo = _repo(tmp_path / "repo")
    tree = tmp_path / "wt-implementer-1"
    _git(repo, "worktree", "add", "-q", "-b", "orch/implementer-1", str(tree))
    ws, back, base = _remote_run(tmp_path, tree, "s/implementer-1/1",
                                 lambda cwd: (cwd / "b.txt").write_text("on the branch\n"))
    assert ws.linked and ws.branch == "orch/implementer-1"
    said = git_ship.take_back(ws, "s/implementer-1/1", back, base)
    assert said.startswith("fast-forwarded orch/implementer-1")
    assert (tree / "b.txt").read_text() == "on the branch\n" and _git(tree, "status", "--porcelain") == ""
    assert _git(repo, "rev-list", "--count", "orch/implementer-1") == "2"
    assert _git(repo, "rev-list", "--count", "main") == "1"  # the user's branch untouched


def test_a_folder_outside_git_is_refused_in_one_line(tmp_path):
    with pytest.raises(InvalidInput) as e:
        git_ship.workspace(tmp_path)
    assert e.value.message.startswith("the ray runner needs a git workspace: ")


def _crafted_commit(work: Path, base: str, entries: dict[str, bytes]) -> None:
    """On the node, a commit orch-work whose tree names paths no checkout would write (made
    with git's plumbing, as a hostile CLI could): `.git/config`, a path through `..`."""
    def tree_of(items: dict[str, bytes]) -> str:
        lines, folders = [], {}
        for path, data in items.items():
            head, _, rest = path.partition("/")
            if rest:
                folders.setdefault(head, {})[rest] = data
            else:
                blob = subprocess.run(["git", "-C", str(work), "hash-object", "-w", "--stdin"], input=data,
                                      capture_output=True, check=True).stdout.decode().strip()
                lines.append(f"100644 blob {blob}\t{head}")
        for name, sub in folders.items():
            lines.append(f"040000 tree {tree_of(sub)}\t{name}")
        return subprocess.run(["git", "-C", str(work), "mktree"], input="\n".join(lines) + "\n", text=True,
                              capture_output=True, check=True).stdout.strip()

    commit = _git(work, "commit-tree", tree_of(entries), "-p", base, "-m", "crafted")
    _git(work, "update-ref", "refs/heads/orch-work", commit)


def test_paths_a_checkout_never_writes_are_refused_when_a_run_comes_back_as_files(tmp_path):
    """A run's commits come from another machine: a tree naming `.git/config` (whose fsmonitor
    would run at the user's next git command), `..`, or a path through a symbolic link that
    leads out is not written; the ordinary files of the same run are."""
    repo = _repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "docs").symlink_to(outside)  # the user's own link, pointing out of the work tree
    config_before = (repo / ".git" / "config").read_bytes()
    ws = git_ship.workspace(repo)
    out = tmp_path / "out.bundle"
    base = git_ship.ship(ws, "s/w/1", out, "snapshot")
    work = tmp_path / "node" / "work"
    git_ship.check_out(out, "refs/orch/ship/s/w/1", work)
    evil = b"[core]\n\tfsmonitor = touch " + str(tmp_path / "ran").encode() + b"\n"
    _crafted_commit(work, base, {"a.txt": b"one\ntwo\nthree\n", "ok.txt": b"fine\n", ".git/config": evil,
                                 "sub/.GIT/config": evil, "../escape.txt": b"out\n", "docs/x.txt": b"through a link\n"})
    back = tmp_path / "back.bundle"
    _git(work, "bundle", "create", "-q", str(back), "orch-work", f"^{base}")
    said = git_ship.take_back(ws, "s/w/1", back, base)
    assert "refused 4 path(s)" in said, said
    assert (repo / "ok.txt").read_text() == "fine\n"
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert not (repo / "sub").exists() and not (tmp_path / "escape.txt").exists()
    assert not (outside / "x.txt").exists()
    subprocess.run(["git", "status"], cwd=repo, capture_output=True)
    assert not (tmp_path / "ran").exists()


def test_the_nodes_git_folder_lies_outside_the_folder_the_cli_works_in(tmp_path):
    """On the node the CLI may rewrite anything in its folder, its .git file included: orch's
    git there names its own git folder, beside the work folder, and commits what the CLI left."""
    repo = _repo(tmp_path / "repo")
    ws = git_ship.workspace(repo)
    out = tmp_path / "out.bundle"
    base = git_ship.ship(ws, "s/w/1", out, "snapshot")
    work = tmp_path / "node" / "work"
    git_ship.check_out(out, "refs/orch/ship/s/w/1", work)
    assert (tmp_path / "node" / "work.git").is_dir() and (work / ".git").is_file()
    marks = tmp_path / "ran"
    (work / "evil").mkdir()
    (work / "evil" / "config").write_text(f"[core]\n\tfsmonitor = touch {marks}; true\n")
    (work / ".git").write_text("gitdir: evil\n")
    (work / "new.txt").write_text("made on the node\n")
    back = tmp_path / "back.bundle"
    assert git_ship.commit_and_bundle(work, base, "implementer-1", back)
    assert not marks.exists()
    assert git_ship.take_back(ws, "s/w/1", back, base).startswith("applied the changes")
    assert (repo / "new.txt").read_text() == "made on the node\n"
