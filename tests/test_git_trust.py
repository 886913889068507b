"""orch's git trusts nothing an agent can write (worktrees/git.py, worktrees/trust.py).

With real git: a repository whose own config names a program at every key git would run
one for (hooks, fsmonitor, filters, merge and diff drivers, textconv, pager, editor,
credential helper, gpg, an include of a file an agent wrote …) goes through every git call
orch makes — set-up, worktrees, commits, merges, conflicts, landing, shipping, clean-up —
and no program runs. A worktree whose `.git` file, admin folder, HEAD or the repository's
config was changed is refused with one line and never followed; a stand-in CLI at
acceptEdits that rewrites its `.git` file (the fsmonitor attack) has its task sent back,
its worktree made afresh, and the session completes with the user's repository untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchtest import kill_agents_left, run_orch

# Every test's git of its own runs no program whatever the repository's config says.
SAFE = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "user.name=u", "-c", "user.email=u@x"]
HOOKS = ("pre-commit", "commit-msg", "post-commit", "pre-merge-commit", "post-merge", "post-checkout",
         "reference-transaction", "pre-auto-gc", "post-rewrite", "post-index-change", "prepare-commit-msg")


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", *SAFE, *args], cwd=repo, check=check, capture_output=True,
                          text=True).stdout.strip()


def trap(marks: Path, name: str) -> str:
    """A shell command that records that it ran (and does what a harmless filter would)."""
    return f"touch {marks / name}; cat"


def ran(marks: Path) -> list[str]:
    return sorted(p.name for p in marks.iterdir())


def arm(config: Path, marks: Path, hooks: Path, extra_include: Path | None = None) -> None:
    """Write a config that names a program at every key git would run one for."""
    hooks.mkdir(exist_ok=True)
    for hook in HOOKS:
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marks}/hook-{hook}\n")
        (hooks / hook).chmod(0o755)
    settings = {
        "core.fsmonitor": f"touch {marks}/fsmonitor; true",
        "core.hooksPath": str(hooks),
        "core.sshCommand": f"touch {marks}/ssh; ssh",
        "core.askPass": str(hooks / "pre-commit"),
        "core.editor": f"touch {marks}/editor; true",
        "sequence.editor": f"touch {marks}/sequence-editor; true",
        "core.pager": f"touch {marks}/pager; cat",
        "pager.log": f"touch {marks}/pager-log; cat",
        "core.alternateRefsCommand": f"touch {marks}/alternate-refs; true",
        "diff.external": f"touch {marks}/diff-external; true",
        "diff.evil.command": f"touch {marks}/diff-command; true",
        "diff.evil.textconv": trap(marks, "textconv"),
        "filter.evil.clean": trap(marks, "filter-clean"),
        "filter.evil.smudge": trap(marks, "filter-smudge"),
        "filter.evil.required": "true",
        "filter.proc.process": f"touch {marks}/filter-process; false",
        "merge.evil.driver": f"touch {marks}/merge-driver; false",
        "credential.helper": f"!touch {marks}/credential; true",
        "gpg.program": str(hooks / "pre-commit"),
        "commit.gpgSign": "true",
        "log.showSignature": "true",
        "protocol.ext.allow": "always",
        "color.ui": "always",
    }
    for key, value in settings.items():
        subprocess.run(["git", "config", "--file", str(config), key, value], check=True)
    if extra_include is not None:
        subprocess.run(["git", "config", "--file", str(config), "--add", "include.path", str(extra_include)],
                       check=True)


def payload(path: Path, marks: Path) -> None:
    """A file an agent writes in its worktree, which a config includes: one more filter and fsmonitor."""
    path.write_text(f'[filter "inc"]\n\tclean = touch {marks}/included-filter; cat\n'
                    f'\tsmudge = touch {marks}/included-filter; cat\n'
                    f'[core]\n\tfsmonitor = touch {marks}/included-fsmonitor; true\n')


ATTRIBUTES = "* filter=evil diff=evil merge=evil\n*.txt filter=inc\n*.md filter=proc\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "README.md").write_text("# project\n")
    (r / "notes.txt").write_text("first\n")
    (r / ".gitattributes").write_text(ATTRIBUTES)
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "start")
    (r / "notes.txt").write_text("first\nchanged, not committed\n")
    return r


def _session(repo: Path):
    from orchestrator.core.models import Session
    from orchestrator.engine import integration

    session = Session(id="sess-t", workspace=str(repo))
    session.git = integration.set_up(session.id, repo, repo / ".orch", "")
    return session


def _agent(session, aid: str, role):
    from orchestrator.core.models import Agent, Permission
    from orchestrator.engine import integration

    place = integration.place_new_agent(session, aid, role)
    return Agent(id=aid, session=session.id, role=role, cli="sim", permission=Permission.EDIT, cwd=str(place.cwd),
                 branch=place.branch)


def _task(session, tid: str, kind, agent: str):
    from orchestrator.core.models import Role, Task

    t = Task(id=tid, kind=kind, role=Role.IMPLEMENTER, title=f"{kind.value} {tid}", agent=agent)
    session.tasks.append(t)
    return t


def test_no_program_the_repository_config_names_runs_in_any_git_call_orch_makes(repo, tmp_path):
    """Every key that names a program is set in the repository's config (and in a file an
    agent wrote, which the config includes); orch's whole git life cycle runs none of them."""
    from orchestrator.core.models import Role, TaskKind
    from orchestrator.engine import integration
    from orchestrator.runtime.runners import git_ship
    from orchestrator.worktrees import layout
    from orchestrator.worktrees.land import apply_landing, plan_landing

    marks = tmp_path / "marks"
    marks.mkdir()
    included = tmp_path / "agent-wrote.cfg"
    payload(included, marks)
    arm(repo / ".git" / "config", marks, tmp_path / "hooks", included)
    # The config is armed: the user's own git (without orch's overrides) would run it.
    proc = subprocess.run(["git", "status"], cwd=repo, capture_output=True, text=True)
    assert "included-fsmonitor" in ran(marks) and "filter-clean" in ran(marks), (proc.stderr, ran(marks))
    for p in marks.iterdir():
        p.unlink()

    session = _session(repo)  # the base (the user's uncommitted work), the branch, the integration worktree
    one = _agent(session, "implementer-1", Role.IMPLEMENTER)
    two = _agent(session, "implementer-2", Role.IMPLEMENTER)
    reviewer = _agent(session, "reviewer-1", Role.REVIEWER)
    for agent in (one, two):
        (Path(agent.cwd) / "shared.txt").write_text(f"from {agent.id}\n")
        (Path(agent.cwd) / "doc.md").write_text(f"{agent.id}'s notes\n")
    first = integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, one.id), one)
    assert first.record.outcome == "merged"
    second = integration.land(session, _task(session, "T-2", TaskKind.IMPLEMENT, two.id), two)
    assert second.record.outcome == "conflict"  # merge driver neutralized: git's own text merge conflicts
    merge = _task(session, "T-3", TaskKind.MERGE, two.id)
    merge.conflicts = ["shared.txt", "doc.md"]
    second.record.merge_task = merge.id
    assert "meets the conflict" in integration.prepare_run(session, two, merge)[0]
    (Path(two.cwd) / "shared.txt").write_text("from implementer-1\nfrom implementer-2\n")
    (Path(two.cwd) / "doc.md").write_text("both\n")
    assert integration.land(session, merge, two).record.outcome == "merged"
    integration.prepare_run(session, one, _task(session, "T-4", TaskKind.IMPLEMENT, one.id))  # catches up
    integration.prepare_run(session, reviewer, None)  # the reviewer sees the merged tree
    assert (Path(reviewer.cwd) / "doc.md").read_text() == "both\n"
    assert integration.recover(session) is None

    # the ray runner's shipping, from an agent's worktree and from the user's checkout
    tree = git_ship.workspace(Path(one.cwd), integration._open(session, one.id, one.branch))
    bundle = tmp_path / "out.bundle"
    base = git_ship.ship(tree, "s/implementer-1/1", bundle, "ship")
    work = tmp_path / "node" / "work"
    git_ship.check_out(bundle, "refs/orch/ship/s/implementer-1/1", work)
    (work / "remote.txt").write_text("made on the node\n")
    back = tmp_path / "back.bundle"
    assert git_ship.commit_and_bundle(work, base, "implementer-1", back)
    assert git_ship.take_back(tree, "s/implementer-1/1", back, base).startswith("fast-forwarded")
    user = git_ship.workspace(repo)
    ubase = git_ship.ship(user, "s/user/1", tmp_path / "u.bundle", "ship")
    git_ship.take_back(user, "s/user/1", back, ubase)

    # landing in the user's branch (a clean tree), then clean-up
    from orchestrator.worktrees.git import git as orch_git  # (the test's own git would run the armed config)

    orch_git(["add", "-A"], repo)
    orch_git(["commit", "-q", "-m", "the user's own work"], repo)
    result = git(repo, "rev-parse", session.git.integration_branch)
    plan = plan_landing(repo, session.git.base, result, "commit")  # diff, cat-file, ls-files, ls-tree
    assert {e.path for e in plan.entries} == {"doc.md", "shared.txt"} and not plan.conflicts, plan
    landed = apply_landing(plan, "the session's result")
    assert landed.files == [] and landed.commit is None, landed  # the shipped run already brought both in
    layout.remove_session(repo, repo / ".orch" / "worktrees", session.id)
    assert ran(marks) == []
    assert git(repo, "branch", "--list", "orch/*") == ""


def _tamper_pointer(tree: Path, marks: Path, how: str) -> None:
    """What an agent that writes only inside its worktree does: its .git file now says
    `gitdir: evilgit`, a git folder of its own whose config runs a program."""
    evil = tree / "evilgit"
    (evil / "objects").mkdir(parents=True)
    (evil / "refs" / "heads").mkdir(parents=True)
    common = git(tree, "rev-parse", "--git-common-dir")
    (evil / "objects" / "info").mkdir()
    (evil / "objects" / "info" / "alternates").write_text(str(Path(common) / "objects") + "\n")
    head = git(tree, "rev-parse", "HEAD")
    (evil / "refs" / "heads" / "x").write_text(head + "\n")
    (evil / "HEAD").write_text("ref: refs/heads/x\n")
    config = {"fsmonitor": "[core]\n\tfsmonitor = touch {m}/fsmonitor; true\n",
              "filter": '[filter "evil"]\n\tclean = touch {m}/filter; cat\n\tsmudge = touch {m}/filter; cat\n',
              "include": "[include]\n\tpath = ../payload.cfg\n",
              "hooks": "[core]\n\thooksPath = {t}/hooks\n",
              "textconv": '[diff "evil"]\n\ttextconv = touch {m}/textconv; cat\n'}[how]
    (evil / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
                                 + config.format(m=marks, t=tree))
    payload(tree / "payload.cfg", marks)
    (tree / "hooks").mkdir()
    for hook in HOOKS:
        (tree / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marks}/hook-{hook}\n")
        (tree / "hooks" / hook).chmod(0o755)
    (tree / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (tree / ".git").write_text("gitdir: evilgit\n")


@pytest.mark.parametrize("how", ["fsmonitor", "filter", "include", "hooks", "textconv"])
def test_a_rewritten_git_pointer_is_refused_never_followed_and_the_worktree_made_afresh(repo, tmp_path, how):
    from orchestrator.core.models import Role, TaskKind
    from orchestrator.engine import integration
    from orchestrator.worktrees.trust import WorktreeRefused

    marks = tmp_path / "marks"
    marks.mkdir()
    session = _session(repo)
    agent = _agent(session, "implementer-1", Role.IMPLEMENTER)
    tree = Path(agent.cwd)
    (tree / "work.py").write_text("print('hi')\n")
    _tamper_pointer(tree, marks, how)
    # the attack is real: git that follows the pointer runs the agent's program
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", "add", "-A"], cwd=tree, capture_output=True)
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "x"], cwd=tree,
                   capture_output=True)
    subprocess.run(["git", "diff", "HEAD~1"], cwd=tree, capture_output=True)
    assert ran(marks), f"the {how} attack did not work on plain git"
    for p in marks.iterdir():
        p.unlink()

    before = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    task = _task(session, "T-1", TaskKind.IMPLEMENT, agent.id)
    with pytest.raises(WorktreeRefused) as refused:
        integration.land(session, task, agent)
    assert "implementer-1's worktree was changed since orch made it: its .git file was changed" in refused.value.message
    assert "\n" not in refused.value.message
    with pytest.raises(WorktreeRefused):
        integration.prepare_run(session, agent, task)
    assert ran(marks) == []
    assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)") == before  # nothing committed

    note = integration.renew_tree(session, agent)
    assert "made afresh" in note and not (tree / "evilgit").exists()
    (tree / "work.py").write_text("print('hi again')\n")
    landing = integration.land(session, task, agent)
    assert landing.record.outcome == "merged" and landing.record.files == ["work.py"]
    assert ran(marks) == []


def _admin(tree: Path) -> Path:
    return Path((tree / ".git").read_text().split("gitdir: ", 1)[1].strip())


@pytest.mark.parametrize("change", ["commondir", "gitdir", "config.worktree", "head-to-users-branch",
                                    "pointer-to-another-worktree", "pointer-replaced-by-a-folder"])
def test_a_changed_admin_folder_or_head_is_refused_in_one_line(repo, tmp_path, change):
    """Where an agent's own git may write (its admin folder: index, HEAD, logs), a change to
    what points orch's git elsewhere is refused: orch never commits on another branch."""
    from orchestrator.core.models import Role, TaskKind
    from orchestrator.engine import integration
    from orchestrator.worktrees.trust import WorktreeRefused

    session = _session(repo)
    agent = _agent(session, "implementer-1", Role.IMPLEMENTER)
    other = _agent(session, "implementer-2", Role.IMPLEMENTER)
    tree = Path(agent.cwd)
    admin = _admin(tree)
    (tree / "work.py").write_text("print('hi')\n")
    if change == "commondir":
        (admin / "commondir").write_text(str(tmp_path / "elsewhere") + "\n")
    elif change == "gitdir":
        (admin / "gitdir").write_text(str(tmp_path / "elsewhere" / ".git") + "\n")
    elif change == "config.worktree":
        (admin / "config.worktree").write_text("[core]\n\tfsmonitor = touch /nonexistent\n")
    elif change == "head-to-users-branch":
        (admin / "HEAD").write_text("ref: refs/heads/main\n")
    elif change == "pointer-to-another-worktree":
        (tree / ".git").write_text((Path(other.cwd) / ".git").read_text())
    else:
        (tree / ".git").unlink()
        (tree / ".git").mkdir()
    main = git(repo, "rev-parse", "refs/heads/main")
    with pytest.raises(WorktreeRefused) as refused:
        integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, agent.id), agent)
    assert refused.value.message.startswith("implementer-1's worktree was changed since orch made it: ")
    assert "\n" not in refused.value.message and refused.value.repairable
    assert git(repo, "rev-parse", "refs/heads/main") == main
    integration.renew_tree(session, agent)
    (tree / "work.py").write_text("print('hi')\n")
    assert integration.land(session, _task(session, "T-2", TaskKind.IMPLEMENT, agent.id), agent).record.outcome \
        == "merged"
    assert git(repo, "rev-parse", "refs/heads/main") == main


def test_a_changed_repository_config_refuses_every_worktree_and_runs_nothing(repo, tmp_path):
    """An agent with a shell runs `git config` in its worktree: that is the repository's own
    config. orch refuses to work in any of the session's worktrees (no new worktree mends it)."""
    from orchestrator.core.models import Role, TaskKind
    from orchestrator.engine import integration
    from orchestrator.worktrees.trust import WorktreeRefused

    marks = tmp_path / "marks"
    marks.mkdir()
    session = _session(repo)
    agent = _agent(session, "implementer-1", Role.IMPLEMENTER)
    git(repo, "config", "branch.main.remote", "origin")  # git's own bookkeeping: no refusal
    git(repo, "config", "remote.origin.url", "https://example.invalid/x.git")
    (Path(agent.cwd) / "a.py").write_text("x = 1\n")
    assert integration.land(session, _task(session, "T-1", TaskKind.IMPLEMENT, agent.id), agent).record
    subprocess.run(["git", "config", "core.fsmonitor", f"touch {marks}/fsmonitor; true"], cwd=agent.cwd, check=True)
    (Path(agent.cwd) / "b.py").write_text("y = 2\n")
    with pytest.raises(WorktreeRefused) as refused:
        integration.land(session, _task(session, "T-2", TaskKind.IMPLEMENT, agent.id), agent)
    assert refused.value.message == ("the repository's git config changed since the session started (core.fsmonitor "
                                     "added): orch runs no git in its worktrees until it is as it was")
    assert not refused.value.repairable
    with pytest.raises(WorktreeRefused):
        integration.place_new_agent(session, "implementer-2", Role.IMPLEMENTER)
    assert ran(marks) == []


# ---------------------------------------------------------------- end to end: a stand-in CLI at acceptEdits

# A stand-in `claude`: the sim playing an implementer in claude's stream shape, at the
# permission claude was given. In its first run it first rewrites its worktree's .git file
# (the attack), then works as usual.
STAND_IN = """#!{python}
import os, sys
argv = sys.argv[1:]
def value(flag):
    return argv[argv.index(flag) + 1] if flag in argv else None
state = os.environ["STANDIN_STATE"]
runs = os.path.join(state, "runs")
with open(runs, "a+") as f:
    f.write(".")
    f.seek(0)
    first = len(f.read()) == 1
if first:
    marks = os.environ["STANDIN_MARKS"]
    os.makedirs("evilgit/objects", exist_ok=True)
    os.makedirs("evilgit/refs/heads", exist_ok=True)
    with open("evilgit/HEAD", "w") as f:
        f.write("ref: refs/heads/x\\n")
    with open("evilgit/config", "w") as f:
        f.write("[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tfsmonitor = touch " + marks + "/fsmonitor; true\\n")
    with open(".git", "w") as f:
        f.write("gitdir: evilgit\\n")
mode = {{"default": "read", "acceptEdits": "edit"}}.get(value("--permission-mode"), "full")
sim = [sys.executable, "-m", "orchestrator.sim", "-p", value("-p"), "--role", "implementer", "--format", "claude",
       "--permission", mode]
if "--allowedTools" in argv:
    for rule in argv[argv.index("--allowedTools") + 1:]:
        if rule.startswith("--"):
            break
        sim += ["--allow", rule]
if value("--resume"):
    sim += ["--resume", value("--resume")]
elif value("--session-id"):
    sim += ["--session-id", value("--session-id")]
os.execv(sys.executable, sim)
"""


def test_the_fsmonitor_attack_of_an_agent_at_accept_edits_runs_nothing_and_its_task_is_sent_back(
        workspace_dir, tmp_path, monkeypatch):
    repo = workspace_dir
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# project\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    (repo / "README.md").write_text("# project\nmodified, not staged\n")
    marks, state = tmp_path / "marks", tmp_path / "standin"
    marks.mkdir()
    state.mkdir()
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(0o755)
    index = (repo / ".git" / "index").read_bytes()
    head, readme = git(repo, "rev-parse", "HEAD"), (repo / "README.md").read_bytes()
    try:
        proc = run_orch("run", "Build a small text utilities library [sim: careful]", "--architect", "sim",
                        "--implementer", "claude", "--reviewer", "sim",
                        # its bookkeeping lives in claude's own state folder: the kernel lets a run write there
                        # (and the sim it runs keeps its memory there too)
                        env={"ORCH_CLAUDE_BIN": str(exe), "STANDIN_STATE": str(state), "CLAUDE_CONFIG_DIR": str(state),
                             "ORCH_SIM_HOME": str(state / "sim"),
                             "STANDIN_MARKS": str(marks),
                             "ORCH_SIM_PACE": "0.05"}, timeout=300)
    finally:
        kill_agents_left(repo / ".orch")
    assert ran(marks) == [], proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    session = json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())
    assert session["state"] == "complete"
    events = [json.loads(line) for line in next((repo / ".orch").glob("sessions/*/events.jsonl")).read_text()
              .splitlines()]
    refused = [e for e in events if e["kind"] == "git.refused"]
    assert len(refused) == 1 and "its .git file was changed" in refused[0]["reason"]
    assert "made afresh" in refused[0]["reason"]
    sent_back = [e for e in events if e.get("task") == refused[0]["task"] and e["kind"] == "task.state"]
    assert any("sent back" in (e.get("reason") or "") for e in sent_back)
    branch = session["git"]["integration_branch"]
    files = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert not [f for f in files if f.startswith("evilgit")]
    assert any(f.endswith(".py") for f in files)  # the implementer's work, from its second run
    # the user's branch, index and files are as they were
    assert git(repo, "rev-parse", "HEAD") == head and (repo / ".git" / "index").read_bytes() == index
    assert (repo / "README.md").read_bytes() == readme
    assert ran(marks) == []
