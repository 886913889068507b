"""`orch land`: the session's changes into the user's tree as orch found it, with real git.

The user's repository has a staged, an unstaged and an untracked change when the session
starts (its base holds them), and more work after it; landing must apply exactly the
session's changes (base → result), keep every byte of the user's own work, and on a
conflict change nothing at all — working tree and index byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchtest import run_orch
from test_worktrees import GOAL, SIM_TEAM, git, repo, session_of, user_state  # noqa: F401 - repo: a fixture


def snapshot(repo: Path) -> dict:
    """Everything of the user's: HEAD, refs, index bytes, every file (untracked too) with its mode."""
    files = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo)
        if {".git", ".orch"} & set(rel.parts):
            continue
        if p.is_symlink():
            files[str(rel)] = ("link", os.readlink(p))
        elif p.is_file():
            files[str(rel)] = (oct(p.stat().st_mode & 0o777), p.read_bytes())
    return {"head": git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False),
            "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main"),
            "index": (repo / ".git" / "index").read_bytes() if (repo / ".git" / "index").exists() else None,
            "files": files}


@pytest.fixture
def landing(repo: Path, tmp_path: Path):
    """The session's work made by hand on its own branch from the base, as orch's worktrees make it:
    README gains a title line (the user's unstaged edit is below), notes.txt (staged) gets a line,
    a new module, an executable script, a symbolic link, and a deleted file."""
    from orchestrator.worktrees.base import capture_base

    (repo / "gone.txt").write_text("to be removed\n")
    git(repo, "add", "gone.txt")
    git(repo, "commit", "-q", "-m", "a file the session removes", "--", "gone.txt")  # notes.txt stays staged
    base = capture_base(repo)
    wt = tmp_path / "session"
    git(repo, "worktree", "add", "-q", "-b", "orch/s", str(wt), base)
    (wt / "README.md").write_text("A title from the session\n" + (wt / "README.md").read_text())
    (wt / "notes.txt").write_text((wt / "notes.txt").read_text() + "a line from the session\n")
    (wt / "src").mkdir()
    (wt / "src" / "app.py").write_text("print('hello')\n")
    (wt / "run.sh").write_text("#!/bin/sh\necho run\n")
    (wt / "run.sh").chmod(0o755)
    os.symlink("src/app.py", wt / "app-link")
    (wt / "gone.txt").unlink()
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "the session's work")
    return base, git(repo, "rev-parse", "orch/s")


def test_apply_keeps_every_byte_of_the_users_work_and_applies_exactly_the_sessions_changes(repo, landing):
    from orchestrator.worktrees.land import apply_landing, plan_landing

    base, result = landing
    (repo / "later.txt").write_text("the user's work after the session started\n")  # untracked, never looked at
    before = snapshot(repo)
    staged_before = git(repo, "diff", "--cached")
    plan = plan_landing(repo, base, result, "apply")
    assert not plan.conflicts
    landed = apply_landing(plan)
    after = snapshot(repo)
    assert after["index"] == before["index"] and after["head"] == before["head"] and after["refs"] == before["refs"]
    assert git(repo, "diff", "--cached") == staged_before  # staged stays staged, byte for byte
    assert (repo / "README.md").read_text() == "A title from the session\n# project\nmodified, not staged\n"
    assert (repo / "notes.txt").read_text() == "first\nstaged\na line from the session\n"
    assert git(repo, "show", ":notes.txt") == "first\nstaged"  # the index still holds what the user staged
    assert (repo / "draft.txt").read_text() == "untracked\n" and (repo / "later.txt").exists()
    assert (repo / "src" / "app.py").read_text() == "print('hello')\n"
    assert os.access(repo / "run.sh", os.X_OK) and os.readlink(repo / "app-link") == "src/app.py"
    assert not (repo / "gone.txt").exists()
    changed = {k for k in set(before["files"]) | set(after["files"]) if before["files"].get(k) != after["files"].get(k)}
    assert changed == {"README.md", "notes.txt", "src/app.py", "run.sh", "app-link", "gone.txt"} == set(landed.files)
    again = plan_landing(repo, base, result, "apply")  # a second land finds nothing to do
    assert not again.conflicts and again.nothing_to_do


def test_a_conflict_with_work_done_after_the_start_changes_nothing_and_names_every_file(repo, landing):
    from orchestrator.worktrees.land import LandConflict, apply_landing, plan_landing

    base, result = landing
    (repo / "README.md").write_text("My own title\n# project\nmodified, not staged\n")  # same place as the session
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print('mine')\n")  # the user created it too, differently
    (repo / "gone.txt").write_text("to be removed, but I changed it\n")  # the session deletes it
    git(repo, "add", "gone.txt")
    before = snapshot(repo)
    for mode in ("apply", "commit", "squash", "merge"):
        plan = plan_landing(repo, base, result, mode)
        named = sorted(c.split(":")[0] for c in plan.conflicts)
        assert named == ["README.md", "gone.txt", "src/app.py"], (mode, plan.conflicts)
        with pytest.raises(LandConflict):
            apply_landing(plan)
        assert snapshot(repo) == before, mode


def test_edits_after_the_start_in_other_places_are_merged_not_lost(repo, landing):
    from orchestrator.worktrees.land import apply_landing, plan_landing

    base, result = landing
    (repo / "README.md").write_text("# project\nmodified, not staged\nand more of mine\n")
    apply_landing(plan_landing(repo, base, result, "apply"))
    assert (repo / "README.md").read_text() == \
        "A title from the session\n# project\nmodified, not staged\nand more of mine\n"


def test_commit_makes_one_commit_of_the_sessions_changes_and_leaves_the_users_uncommitted_work_uncommitted(
        repo, landing):
    from orchestrator.worktrees.land import apply_landing, plan_landing

    base, result = landing
    head = git(repo, "rev-parse", "HEAD")
    landed = apply_landing(plan_landing(repo, base, result, "commit"), "orch: the session\n\nits summary\n")
    assert landed.commit == git(repo, "rev-parse", "HEAD") and git(repo, "rev-parse", "HEAD~1") == head
    assert git(repo, "log", "-1", "--format=%B") == "orch: the session\n\nits summary"
    # the commit: HEAD plus the session's changes, none of the user's uncommitted work
    assert git(repo, "show", "HEAD:README.md") == "A title from the session\n# project"
    assert git(repo, "ls-tree", "HEAD", "run.sh").startswith("100755") and \
        git(repo, "ls-tree", "HEAD", "app-link").startswith("120000")
    assert git(repo, "show", "HEAD:src/app.py") == "print('hello')"
    assert "gone.txt" not in git(repo, "ls-tree", "--name-only", "HEAD")
    assert "draft.txt" not in git(repo, "ls-tree", "--name-only", "HEAD")
    # notes.txt holds the user's staged line next to the session's: it cannot be committed alone
    assert landed.uncommitted == ["notes.txt"] and git(repo, "show", "HEAD:notes.txt") == "first"
    # what stays the user's: the unstaged README line, the staged notes, the untracked draft
    assert git(repo, "diff", "README.md").count("+modified, not staged") == 1
    assert git(repo, "diff", "--cached", "--name-only") == "notes.txt"
    assert git(repo, "show", ":notes.txt") == "first\nstaged"
    assert (repo / "notes.txt").read_text() == "first\nstaged\na line from the session\n"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert sorted(status.splitlines()) == sorted([" M README.md", "MM notes.txt", "?? draft.txt"])


def test_squash_stages_the_sessions_changes_on_top_of_what_the_user_staged(repo, landing):
    from orchestrator.worktrees.land import apply_landing, plan_landing

    base, result = landing
    head = git(repo, "rev-parse", "HEAD")
    apply_landing(plan_landing(repo, base, result, "squash"))
    assert git(repo, "rev-parse", "HEAD") == head
    staged = set(git(repo, "diff", "--cached", "--name-only").splitlines())
    assert staged == {"README.md", "notes.txt", "src/app.py", "run.sh", "app-link", "gone.txt"}
    assert git(repo, "show", ":README.md") == "A title from the session\n# project"  # not the unstaged line
    assert git(repo, "show", ":notes.txt") == "first\nstaged\na line from the session"
    assert git(repo, "diff", "README.md").count("+modified, not staged") == 1  # still unstaged


def test_merge_joins_the_sessions_history_to_the_users_branch(repo, landing):
    from orchestrator.worktrees.land import apply_landing, plan_landing

    base, result = landing
    head = git(repo, "rev-parse", "HEAD")
    landed = apply_landing(plan_landing(repo, base, result, "merge"), "orch: merge")
    parents = git(repo, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    assert parents == [head, result] and landed.commit == git(repo, "rev-parse", "HEAD")
    assert git(repo, "show", "HEAD:src/app.py") == "print('hello')"


def test_a_repository_without_commits_lands_a_first_commit_and_names_no_head(tmp_path):
    from orchestrator.worktrees.base import capture_base
    from orchestrator.worktrees.land import apply_landing, git_alternatives, plan_landing

    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "idea.txt").write_text("an idea\n")
    base = capture_base(repo)
    wt = tmp_path / "session"
    git(repo, "worktree", "add", "-q", "-b", "orch/s", str(wt), base)
    (wt / "idea.txt").write_text("an idea\nworked out\n")
    (wt / "app.py").write_text("print('done')\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "work")
    lines = git_alternatives(repo, base, "orch/s")
    assert lines and not any("HEAD" in line for line in lines) and not any("git merge" in line for line in lines)
    landed = apply_landing(plan_landing(repo, base, git(repo, "rev-parse", "orch/s"), "commit"), "orch: first\n")
    assert git(repo, "rev-list", "--count", "HEAD") == "1"  # a root commit on the unborn branch
    assert git(repo, "ls-tree", "--name-only", "HEAD") == "app.py"  # not the user's untracked idea
    assert landed.uncommitted == ["idea.txt"] and (repo / "idea.txt").read_text() == "an idea\nworked out\n"
    assert git(repo, "status", "--porcelain") == "?? idea.txt"


def test_commit_needs_a_branch_and_says_so_in_one_line(repo, landing):
    from orchestrator.worktrees.land import plan_landing

    base, result = landing
    git(repo, "checkout", "-q", "--detach")
    plan = plan_landing(repo, base, result, "commit")
    assert len(plan.conflicts) == 1 and "detached" in plan.conflicts[0]


# ---------------------------------------------------------------- orch land, end to end


def _land(*args: str) -> subprocess.CompletedProcess:
    return run_orch("land", *args, timeout=120)


def test_orch_land_on_a_dirty_tree_refuses_a_conflict_untouched_then_lands_keeping_the_users_work(repo):
    # the implementer appends a line to the user's README, which has an unstaged edit of theirs
    proc = run_orch("run", GOAL + " [sim@implementer: append=README.md] [sim: careful]", *SIM_TEAM,
                    env={"ORCH_SIM_PACE": "0.05"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sid = session_of(repo)["id"]
    assert f"orch land {sid}" in proc.stdout and "HEAD" not in proc.stdout.partition("take the result:")[2]
    original = snapshot(repo)
    # after the session started, the user appended their own last line: the same place as the session's
    (repo / "README.md").write_text((repo / "README.md").read_text() + "my own last line\n")
    before = snapshot(repo)
    refused = _land()
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1].startswith("orch: ")
    assert "conflict: README.md" in refused.stderr and "nothing was changed" in refused.stderr
    assert snapshot(repo) == before  # working tree and index byte for byte
    (repo / "README.md").write_text(original["files"]["README.md"][1].decode())  # the user takes it back
    landed = _land()
    assert landed.returncode == 0, landed.stderr
    assert "gh pr create" in landed.stdout and "never pushes" in landed.stdout
    after = snapshot(repo)
    assert after["index"] == original["index"] and after["head"] == original["head"]
    readme = (repo / "README.md").read_text().splitlines()
    assert readme[:2] == ["# project", "modified, not staged"] and readme[2].startswith("implementer ")
    assert after["files"]["draft.txt"] == original["files"]["draft.txt"]
    assert after["files"]["notes.txt"] == original["files"]["notes.txt"]
    assert (repo / "SPEC.md").is_file() and (repo / "textutilities" / "core.py").is_file()
    session = session_of(repo)
    assert session["git"]["landings"][-1]["mode"] == "apply" and "README.md" in session["git"]["landings"][-1]["files"]
    assert _land().stdout.startswith("nothing to land")
    cleaned = run_orch("clean", check=True).stdout  # no id: this folder's session
    assert f"kept orch/{sid}" in cleaned
    assert git(repo, "branch", "--list", "orch/*").split() == [f"orch/{sid}"]


def test_orch_land_refusals_are_one_line(repo, workspace_dir):
    proc = _land()
    assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1
    run_orch("start", GOAL, *SIM_TEAM, check=True)
    proc = _land()  # a session that has not finished
    assert proc.returncode == 2 and "not complete" in proc.stderr and len(proc.stderr.splitlines()) == 1
    proc = _land("--anyway")  # nothing merged yet: nothing to land
    assert proc.returncode == 0 and "nothing to land" in proc.stdout


def test_orch_run_in_a_repository_without_commits_prints_no_head_and_land_commit_makes_the_first_commit(
        workspace_dir):
    git(workspace_dir, "init", "-q", "-b", "main")
    (workspace_dir / "idea.txt").write_text("an idea\n")
    proc = run_orch("run", GOAL + " [sim: careful]", *SIM_TEAM, env={"ORCH_SIM_PACE": "0.05"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    taking = proc.stdout.partition("take the result:")[2]
    assert "orch land" in taking and "HEAD" not in taking and "git merge" not in taking
    report = next(workspace_dir.glob(".orch/sessions/*/reports/session-report.md")).read_text()
    block = report.partition("Take the result:")[2].partition("```sh\n")[2].partition("```")[0]
    assert block and all(line.startswith(("orch ", "git ")) for line in block.splitlines())  # commands only
    assert "Nothing was pushed" in report.partition("Take the result:")[2]  # the prose after it
    landed = _land("--commit", "--json")
    out = json.loads(landed.stdout)
    assert landed.returncode == 0 and out["commit"] == git(workspace_dir, "rev-parse", "HEAD")
    assert git(workspace_dir, "rev-list", "--count", "HEAD") == "1"
    tree = git(workspace_dir, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert "SPEC.md" in tree and "idea.txt" not in tree
    message = git(workspace_dir, "log", "-1", "--format=%B")
    assert message.startswith("orch: " + GOAL) and "Verification:" in message and "Agents:" in message


def test_a_folder_that_is_a_link_in_the_users_tree_is_never_written_through(repo, landing, tmp_path):
    from orchestrator.worktrees.land import LandConflict, apply_landing, plan_landing

    base, result = landing
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, repo / "src")  # the session adds src/app.py; here src leads out of the repository
    before = snapshot(repo)
    plan = plan_landing(repo, base, result, "apply")
    assert [c.split(":")[0] for c in plan.conflicts] == ["src/app.py"] and "symbolic link" in plan.conflicts[0]
    with pytest.raises(LandConflict):
        apply_landing(plan)
    assert list(outside.iterdir()) == [] and snapshot(repo) == before
