"""Parallel agents in their own git worktrees, end to end: real git, real sim agents, real orch.

Each session runs in a real repository with uncommitted work in it; every test also checks
that the user's branch, index and working tree come out byte for byte as they went in.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchtest import orch_argv, orch_env, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@example.com", *args], cwd=repo,
                          check=check, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(workspace_dir: Path) -> Path:
    """The workspace as a user's repository: one commit, then a staged, a modified and an untracked change."""
    git(workspace_dir, "init", "-q", "-b", "main")
    (workspace_dir / "README.md").write_text("# project\n")
    (workspace_dir / "notes.txt").write_text("first\n")
    git(workspace_dir, "add", ".")
    git(workspace_dir, "commit", "-q", "-m", "start")
    (workspace_dir / "notes.txt").write_text("first\nstaged\n")
    git(workspace_dir, "add", "notes.txt")
    (workspace_dir / "README.md").write_text("# project\nmodified, not staged\n")
    (workspace_dir / "draft.txt").write_text("untracked\n")
    return workspace_dir


def user_state(repo: Path) -> dict:
    """Everything of the user's that orch must not change: branch, HEAD, index, files."""
    files = {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
             if p.is_file() and not {".git", ".orch"} & set(p.relative_to(repo).parts)}
    return {"branch": (repo / ".git" / "HEAD").read_text(), "head": git(repo, "rev-parse", "HEAD"),
            "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main"),
            "index": (repo / ".git" / "index").read_bytes(), "files": files}


def session_of(repo: Path) -> dict:
    return json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())


def agents_of(repo: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text())
            for p in (repo / ".orch").glob("sessions/*/agents/*/meta.json")}


def events_of(repo: Path) -> list[dict]:
    path = next((repo / ".orch").glob("sessions/*/events.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_session(repo: Path, goal: str, *extra: str) -> subprocess.CompletedProcess:
    proc = run_orch("run", goal, *SIM_TEAM, "--implementers", "2", *extra, env={"ORCH_SIM_PACE": "0.1"},
                    timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def overlapped(agents: dict[str, dict], ids: list[str]) -> bool:
    """Whether the agents worked on their first tasks at the same time (every run of that task:
    a run cut short by a denial and its recovery are one piece of work)."""
    def span(agent: dict) -> tuple[str, str]:
        first = [r for r in agent["runs"] if r["task"] == agent["runs"][0]["task"]]
        return min(r["started_at"] for r in first), max(r["ended_at"] for r in first)
    (s1, e1), (s2, e2) = [span(agents[i]) for i in ids]
    return s1 < e2 and s2 < e1


def own_files(repo: Path, agent: dict) -> set[str]:
    """What the agent's own commits changed, asked of git directly."""
    names = git(repo, "log", "--format=", "--name-only", "--no-merges", f"--author=orch {agent['id']}",
                agent["branch"])
    return {n for n in names.splitlines() if n}


def test_disjoint_tasks_merge_cleanly_and_files_changed_is_exact_per_agent(repo):
    before = user_state(repo)
    run_session(repo, GOAL)
    assert user_state(repo) == before
    session = session_of(repo)
    g = session["git"]
    assert g["mode"] == "worktrees" and g["integration_branch"] == f"orch/{session['id']}"
    # the base holds the user's uncommitted work, staged, unstaged and untracked
    assert git(repo, "show", f"{g['base']}:notes.txt") == "first\nstaged"
    assert git(repo, "show", f"{g['base']}:README.md").endswith("modified, not staged")
    assert git(repo, "show", f"{g['base']}:draft.txt") == "untracked"
    merges = g["merges"]
    assert merges and all(m["outcome"] in ("merged", "already") for m in merges)
    assert not [t for t in session["tasks"] if t["kind"] == "merge"]
    agents = agents_of(repo)
    implementers = sorted(a for a in agents if a.startswith("implementer"))
    assert len(implementers) == 2 and overlapped(agents, implementers)
    for aid, agent in agents.items():
        if agent["role"] in ("reviewer", "verifier"):  # they read: a detached worktree, no branch
            assert agent["branch"] is None
            continue
        assert agent["branch"] == f"orch/{session['id']}--{aid}"
        assert Path(agent["cwd"]).resolve() == (repo / ".orch" / "worktrees" / session["id"] / aid).resolve()
        assert set(agent["stats"]["files_changed"]) == own_files(repo, agent)
        tasks = [t for t in session["tasks"] if t["agent"] == aid and t["kind"] != "review"]
        assert set(agent["stats"]["files_changed"]) == {f for t in tasks for f in t["files_changed"]}
    # each implementer's component is its own: neither changed the other's module
    modules = [{f for f in agents[i]["stats"]["files_changed"] if f.endswith(".py") and "/test" not in f
                and not f.endswith("__init__.py") and not f.startswith("tests/")} for i in implementers]
    assert modules[0] and modules[1] and not modules[0] & modules[1]
    # every implement task's commit is in the integration branch
    for t in session["tasks"]:
        if t["kind"] in ("spec", "implement", "fix") and t["commit"]:
            git(repo, "merge-base", "--is-ancestor", t["commit"], g["integration_branch"])
    kinds = [e["kind"] for e in events_of(repo)]
    assert "git.merged" in kinds and "git.conflict" not in kinds


def test_overlapping_edits_of_one_file_both_survive_and_the_review_sees_the_merge(repo):
    before = user_state(repo)
    run_session(repo, GOAL + " [sim@implementer: append=shared.txt] [sim: careful]")
    assert user_state(repo) == before
    session = session_of(repo)
    agents = agents_of(repo)
    implementers = sorted(a for a in agents if a.startswith("implementer"))
    assert len(implementers) == 2 and overlapped(agents, implementers)
    final = git(repo, "show", f"{session['git']['integration_branch']}:shared.txt").splitlines()
    for aid in implementers:  # each implementer's own line made it into the merged file
        assert f"implementer {agents[aid]['cli_session_id']} was here" in final
    assert not [line for line in final if line.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
    merge_tasks = [t for t in session["tasks"] if t["kind"] == "merge"]
    assert len(merge_tasks) == 1 and merge_tasks[0]["state"] == "done"
    assert merge_tasks[0]["conflicts"] == ["shared.txt"]
    conflict = next(m for m in session["git"]["merges"] if m["outcome"] == "conflict")
    assert conflict["merge_task"] == merge_tasks[0]["id"] and conflict["files"] == ["shared.txt"]
    review = next(t for t in session["tasks"] if t["kind"] == "review")
    assert review["started_at"] > merge_tasks[0]["ended_at"]  # the review waited for the merge
    reviewer = next(a for a in agents.values() if a["role"] == "reviewer")
    seen = (Path(reviewer["cwd"]) / "shared.txt").read_text().splitlines()
    assert sorted(seen) == sorted(final)
    events = events_of(repo)
    assert "git.conflict" in [e["kind"] for e in events]
    # the task whose branch conflicted changed a file: it is done, its author resolves the merge
    authored = next(t for t in session["tasks"] if t["id"] == conflict["task"])
    assert authored["state"] == "done" and "shared.txt" in authored["files_changed"]
    assert merge_tasks[0]["agent"] == conflict["agent"]
    assert not [e for e in events if "changed no file" in (e.get("reason") or "")]
    # what people see: the dashboard's session and agent views, and the report
    from orchestrator.dashboard.views import agent_cards, session_view
    from orchestrator.store.sessions import Workspace

    store = Workspace(repo / ".orch").open(session["id"])
    view = session_view(store.read_session())
    assert [m["outcome"] for m in view["git"]["merges"]].count("conflict") == 1
    assert next(t for t in view["tasks"] if t["kind"] == "merge")["conflicts"] == ["shared.txt"]
    cards = {c["id"]: c for c in agent_cards(store)}
    assert cards["implementer-1"]["branch"] == f"orch/{session['id']}--implementer-1"
    assert cards["implementer-1"]["cwd"] == agents["implementer-1"]["cwd"]
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "**conflict** (resolved by " + merge_tasks[0]["id"] + ")" in md


def test_clean_removes_worktrees_and_agent_branches_but_keeps_the_result_unless_discarded(repo):
    before = user_state(repo)
    run_session(repo, GOAL + " [sim: careful]")
    sid = session_of(repo)["id"]
    listed = run_orch("list", "--worktrees", "--session", sid, check=True).stdout
    assert f"orch/{sid}" in listed and "implementer-1" in listed
    import shutil
    shutil.rmtree(repo / ".orch" / "worktrees" / sid / "architect-1")  # a folder deleted by hand
    cleaned = run_orch("clean")  # no id: the folder's session; no merge needed first
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"kept orch/{sid}" in cleaned.stdout and f"orch land {sid}" in cleaned.stdout
    assert git(repo, "branch", "--list", "orch/*").split() == [f"orch/{sid}"]  # the result stays
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not (repo / ".orch" / "worktrees" / sid).exists()
    run_orch("clean", sid, "--discard", check=True)
    assert git(repo, "branch", "--list", "orch/*") == ""
    assert user_state(repo) == before


def test_a_plain_folder_runs_writers_one_at_a_time_and_says_so_once(workspace_dir):
    proc = run_session(workspace_dir, GOAL + " [sim: careful]")
    assert proc.stderr.count("not a git repository") == 1
    session = session_of(workspace_dir)
    assert session["git"]["mode"] == "shared"
    agents = agents_of(workspace_dir)
    writers = [(r["started_at"], r["ended_at"]) for a in agents.values() if a["role"] != "reviewer"
               for r in a["runs"]]
    writers.sort()
    assert len(writers) >= 3  # the spec and two implement tasks
    for (_, end), (start, _) in zip(writers, writers[1:]):
        assert end <= start  # never two writers at once
    assert all(a["branch"] is None and Path(a["cwd"]) == workspace_dir.resolve() for a in agents.values())
    waits = [e for e in events_of(workspace_dir) if e["kind"] == "task.waiting"]
    assert waits and "writers take turns" in waits[0]["reason"]


def test_no_worktrees_in_a_repository_shares_the_folder_and_makes_no_branch(repo):
    run_session(repo, GOAL + " [sim: careful]", "--no-worktrees")
    assert session_of(repo)["git"]["mode"] == "shared"
    assert git(repo, "branch", "--list", "orch/*") == ""
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert (repo / "SPEC.md").is_file()  # the team worked in the user's folder, as asked


def test_sigkill_mid_merge_then_resume_redoes_the_merge_and_both_changes_survive(repo, tmp_path):
    # A merge driver (the user's own global git config: orch's git runs none the repository's
    # config names) holds the first merge of shared.txt until released: orch is SIGKILLed
    # while its `git merge` is inside the integration worktree.
    waiting, release = tmp_path / "waiting", tmp_path / "release"
    (repo / ".git" / "info" / "attributes").write_text("shared.txt merge=held\n")
    user_config = tmp_path / "gitconfig"
    subprocess.run(["git", "config", "--file", str(user_config), "merge.held.driver",
                    f"if [ ! -e {waiting} ]; then touch {waiting}; while [ ! -e {release} ]; do sleep 0.05; done; fi; "
                    "git merge-file -L ours -L base -L theirs %A %O %B"], check=True)
    before = user_state(repo)
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(orch_argv("run", GOAL + " [sim@implementer: append=shared.txt] [sim: careful]",
                                      *SIM_TEAM, "--implementers", "2"),
                            env=orch_env({"ORCH_SIM_PACE": "0.1", "GIT_CONFIG_GLOBAL": str(user_config)}), cwd=repo,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_until(waiting.exists, timeout=180, what="orch's merge of shared.txt to begin")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    release.touch()
    session = session_of(repo)
    integration = repo / ".orch" / "worktrees" / session["id"] / "integration"
    wait_until(lambda: not (repo / ".git" / "worktrees" / "integration" / "index.lock").exists(), timeout=60,
               what="the orphaned git merge to end")
    state = subprocess.run(["git", "status", "--porcelain"], cwd=integration, capture_output=True, text=True).stdout
    assert state, "the kill left no half-done merge to recover from"
    assert not [t for t in session["tasks"] if t["kind"] == "merge"]  # the conflict was never recorded
    resumed = run_orch("resume", session["id"], env={"ORCH_SIM_PACE": "0.1", "GIT_CONFIG_GLOBAL": str(user_config)},
                       timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    session = session_of(repo)
    assert session["state"] == "complete"
    events = events_of(repo)
    assert any("crash mid-merge" in (e.get("reason") or "") for e in events)
    agents = agents_of(repo)
    final = git(repo, "show", f"{session['git']['integration_branch']}:shared.txt").splitlines()
    for aid in (a for a in agents if a.startswith("implementer")):
        assert f"implementer {agents[aid]['cli_session_id']} was here" in final
    assert not [line for line in final if line.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=integration, capture_output=True,
                          text=True).stdout == ""
    conflicts = [m for m in session["git"]["merges"] if m["outcome"] == "conflict"]
    assert len(conflicts) == 1  # the merge was redone once, and its conflict recorded once
    assert not [e for e in events if "changed no file" in (e.get("reason") or "")]  # a conflict is a change
    assert user_state(repo) == before


def test_the_report_says_to_orch_land_with_git_lines_right_for_the_tree_and_the_policy_sets_the_mode(repo):
    run_session(repo, GOAL + " [sim: careful]")
    session = session_of(repo)
    sid, base = session["id"], session["git"]["base"]
    report = run_orch("report", check=True).stdout
    assert f"orch land {sid}" in report and f"git diff {base[:12]} orch/{sid}" in report
    assert f"git merge orch/{sid}" not in report  # the fixture's tree is dirty: a merge would fail there
    assert "HEAD..." not in report
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "## Git" in md and f"orch land {sid}" in md and "merged as" in md
    # [git] land = "commit": orch land commits by default; the user's uncommitted work stays uncommitted
    (repo / ".orch" / "policy.toml").write_text('[git]\nland = "commit"\n')
    head = git(repo, "rev-parse", "HEAD")
    landed = run_orch("land", check=True).stdout
    assert "orch land --commit" in landed and git(repo, "rev-parse", "HEAD~1") == head
    assert git(repo, "show", "HEAD:SPEC.md") and git(repo, "show", ":notes.txt") == "first\nstaged"
    assert "modified, not staged" in (repo / "README.md").read_text() and (repo / "draft.txt").exists()
    assert "taken with `orch land --commit`" in run_orch("report", check=True).stdout


def test_a_bad_git_setting_in_the_policy_is_one_line(repo):
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.toml").write_text('[git]\nland = "push"\n')
    proc = run_orch("start", GOAL, *SIM_TEAM)
    assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1
    assert "git.land" in proc.stderr or "land" in proc.stderr
    assert not (repo / ".orch" / "sessions").exists() or not list((repo / ".orch" / "sessions").iterdir())


def test_without_a_git_binary_a_repository_is_worked_in_the_shared_folder(repo, tmp_path):
    no_git = tmp_path / "bin"
    no_git.mkdir()
    proc = run_orch("start", GOAL, *SIM_TEAM, env={"PATH": str(no_git)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("git is not installed") == 1
    assert session_of(repo)["git"]["mode"] == "shared"
    assert git(repo, "branch", "--list", "orch/*") == ""


# ---------------------------------------------------------------- the git steps themselves, on a real repository

def _team(repo: Path, tmp_path: Path):
    from orchestrator.core.models import Agent, Permission, Role, Session
    from orchestrator.engine import integration

    session = Session(id="sess-1", workspace=str(repo))
    session.git = integration.set_up(session.id, repo, repo / ".orch", "")
    agents = {}
    for aid in ("implementer-1", "implementer-2"):
        place = integration.place_new_agent(session, aid, Role.IMPLEMENTER)
        agents[aid] = Agent(id=aid, session=session.id, role=Role.IMPLEMENTER, cli="sim",
                            permission=Permission.EDIT, cwd=str(place.cwd), branch=place.branch)
    return session, agents


def _task(session, tid: str, kind, agent: str):
    from orchestrator.core.models import Role, Task

    t = Task(id=tid, kind=kind, role=Role.IMPLEMENTER, title=f"{kind.value} {tid}", agent=agent)
    session.tasks.append(t)
    return t


def test_a_merge_task_taken_by_another_agent_still_merges_the_authors_work(repo, tmp_path):
    from orchestrator.core.models import TaskKind
    from orchestrator.engine import integration

    session, agents = _team(repo, tmp_path)
    one, two = agents["implementer-1"], agents["implementer-2"]
    (Path(one.cwd) / "shared.txt").write_text("from one\n")
    (Path(two.cwd) / "shared.txt").write_text("from two\n")
    first = integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, one.id), one)
    assert first.record.outcome == "merged" and first.record.files == ["shared.txt"]
    second = integration.land(session, _task(session, "T-2", TaskKind.IMPLEMENT, two.id), two)
    assert second.record.outcome == "conflict" and second.record.files == ["shared.txt"]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=integration.integration_tree(session),
                          capture_output=True, text=True).stdout == ""  # never left half-merged
    merge = _task(session, "T-3", TaskKind.MERGE, one.id)  # implementer-1 was idle: it takes the merge
    merge.conflicts = ["shared.txt"]
    second.record.merge_task = merge.id
    notes = integration.prepare_run(session, one, merge)
    assert "meets the conflict in shared.txt" in notes[0]
    assert integration.land(session, merge, one).unresolved == ["shared.txt"]  # markers still there
    (Path(one.cwd) / "shared.txt").write_text("from one\nfrom two\n")
    done = integration.land(session, merge, one)
    assert done.record.outcome == "merged"
    branch = session.git.integration_branch
    assert git(repo, "show", f"{branch}:shared.txt") == "from one\nfrom two"
    git(repo, "merge-base", "--is-ancestor", two.branch, branch)  # implementer-2's commit is in


def test_a_task_merged_before_a_crash_lost_its_record_is_landed_again_with_its_files(repo, tmp_path):
    """orch merged T-1's work, then was killed before the session recorded it: the next step
    lands T-1 again. Its branch is already in the integration branch, so the work is found
    by T-1's own commit — the task is not mistaken for one that changed nothing (which would
    ask its agent to do the work a second time)."""
    from orchestrator.core.models import TaskKind
    from orchestrator.engine import integration

    session, agents = _team(repo, tmp_path)
    one, two = agents["implementer-1"], agents["implementer-2"]
    (Path(one.cwd) / "core.py").write_text("def f():\n    return 1\n")
    (Path(one.cwd) / "shared.txt").write_text("from one\n")
    first = integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, one.id), one)
    assert first.record.outcome == "merged" and first.record.files == ["core.py", "shared.txt"]
    session.git.merges.clear()  # the kill: git merged it, the session never recorded it
    session.tasks.clear()
    again = integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, one.id), one)
    assert again.record.outcome == "already" and again.record.files == ["core.py", "shared.txt"]
    assert session.tasks[0].files_changed == ["core.py", "shared.txt"]
    # an agent that really changed nothing for its next task is still seen as such
    nothing = integration.land(session, _task(session, "T-2", TaskKind.IMPLEMENT, one.id), one)
    assert nothing.record.files == []
    # and another agent's later work lands as usual
    (Path(two.cwd) / "extras.py").write_text("X = 2\n")
    other = integration.land(session, _task(session, "T-3", TaskKind.IMPLEMENT, two.id), two)
    assert other.record.outcome == "merged" and other.record.files == ["extras.py"]


def test_a_repository_with_no_commit_yet_gets_a_base_without_a_parent(tmp_path, monkeypatch):
    from orchestrator.engine import integration

    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "idea.txt").write_text("an idea\n")
    record = integration.set_up("sess-2", repo, repo / ".orch", "")
    assert record.mode == "worktrees" and record.head is None
    assert git(repo, "rev-list", "--parents", "-n", "1", record.base) == record.base  # no parent
    assert git(repo, "show", f"{record.base}:idea.txt") == "an idea"
    assert "?? idea.txt" in git(repo, "status", "--porcelain").splitlines()  # still the user's, untracked
    assert git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False) == ""  # no commit on their branch


def test_a_worktrees_dir_that_opens_the_whole_filesystem_is_refused_in_one_line(repo):
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.toml").write_text('[git]\nworktrees_dir = "/"\n')
    proc = run_orch("start", GOAL, *SIM_TEAM)
    assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1
    assert "whole filesystem" in proc.stderr
    assert git(repo, "branch", "--list", "orch/*") == ""


@pytest.mark.parametrize("broken", ["gone", "stray"])
def test_a_broken_repository_is_worked_as_a_plain_folder_and_left_as_it_is(workspace_dir, tmp_path, broken):
    """A `.git` file naming a repository that is gone, or a stray `.git` folder with no HEAD:
    orch works the folder as a plain one, and makes nothing where the repository would be (its
    courtesy exclude line once made `<gone>/info/` and a `.git/info/` in a parent folder)."""
    gone = tmp_path / "gone" / "repo"
    if broken == "gone":
        pointer = f"gitdir: {gone}\n"  # a worktree whose repository is gone
        (workspace_dir / ".git").write_text(pointer)
    else:
        (workspace_dir / ".git").mkdir()
    proc = run_orch("start", GOAL, *SIM_TEAM)
    assert proc.returncode == 0, proc.stderr
    assert "not a git repository" in proc.stderr
    assert session_of(workspace_dir)["git"]["mode"] == "shared"
    if broken == "gone":
        assert (workspace_dir / ".git").read_text() == pointer
        assert not (tmp_path / "gone").exists()
    else:
        assert list((workspace_dir / ".git").iterdir()) == []


def test_a_workspace_inside_a_repository_is_the_same_subfolder_of_each_worktree(repo):
    sub = repo / "packages" / "lib"
    sub.mkdir(parents=True)
    (sub / "keep.txt").write_text("the library lives here\n")
    git(repo, "add", "packages")
    git(repo, "commit", "-q", "-m", "a library folder")
    proc = run_orch("run", GOAL + " [sim: careful]", *SIM_TEAM, "--cwd", str(sub), env={"ORCH_SIM_PACE": "0.05"},
                    timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = session_of(repo)
    assert session["git"]["subdir"] == "packages/lib"
    implementer = agents_of(repo)["implementer-1"]
    assert Path(implementer["cwd"]).parts[-2:] == ("packages", "lib")
    branch = session["git"]["integration_branch"]
    assert git(repo, "show", f"{branch}:packages/lib/SPEC.md")
    assert all(f.startswith("packages/lib/") for f in implementer["stats"]["files_changed"])
    assert not (sub / "SPEC.md").exists()  # the user's folder was not written to


def _resume_all(repo: Path) -> list[dict]:
    """`orch resume` every session in the repository; their session.json afterwards."""
    out = []
    for folder in sorted((repo / ".orch" / "sessions").iterdir()):
        done = run_orch("resume", folder.name, env={"ORCH_SIM_PACE": "0.02"}, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        out.append(json.loads((folder / "session.json").read_text()))
    return out


def test_orch_start_killed_before_its_git_set_up_is_recorded_is_finished_by_resume(repo):
    """What a kill between creating the session and recording its git leaves — a coordinated
    session with no git record and no work — is set up by the first step, in worktrees."""
    from orchestrator.core.models import Team
    from orchestrator.store.sessions import Workspace

    before = user_state(repo)
    Workspace().create(repo, goal=GOAL, coordinated=True, team=Team(architect="sim", implementer="sim",
                                                                     reviewer="sim"))
    (session,) = _resume_all(repo)
    assert session["state"] == "complete" and session["git"]["mode"] == "worktrees", session.get("git")
    assert git(repo, "rev-parse", "--verify", session["git"]["integration_branch"])
    assert user_state(repo) == before


def test_sigkill_of_orch_start_at_any_moment_leaves_a_session_resume_completes(repo):
    before = user_state(repo)
    t = time.monotonic()
    run_orch("start", GOAL, *SIM_TEAM, check=True)  # how long a start takes on this machine, loaded or not
    span = time.monotonic() - t
    rng = random.Random(16)
    for i in range(5):
        proc = subprocess.Popen(orch_argv("start", GOAL, *SIM_TEAM), env=orch_env(), cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(span * (i + rng.random()) / 5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for session in _resume_all(repo):
        assert session["state"] == "complete", session["id"]
        assert session["git"]["mode"] == "worktrees", session
    assert user_state(repo) == before
