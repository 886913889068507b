"""Real CLIs in their own git worktrees: a claude implementer and a codex architect-turned-
implementer build two tasks at the same time, each on its own branch, merged by orch into
the session's integration branch; the user's repository is left exactly as it was.

The project is a git repository with a commit and an uncommitted change. `orch start`
creates the session (its id names the worktrees, whose paths the stub's file writes need);
`orch resume` then drives it. The stub plays the model: codex (architect) writes SPEC.md and
lists two tasks; claude is hired for the code while the idle codex architect writes the
notes, both in their own worktrees; codex (reviewer) reads the merged tree and approves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .test_orch_session import NOTES, SPEC, TASKS, fenced

pytestmark = pytest.mark.realcli

SESSION_TIMEOUT = 240.0
GOAL = "ORCH_WORKTREES build slug.py: slugify(text) turns a title into a URL slug"
CODE = "def slugify(text):\n    return '-'.join(text.lower().split())\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def worktrees_script(trees: Path) -> list[dict]:
    architect = "You are the architect"
    notes_task = "Your task: Write the usage notes"
    code_task = "Your task: Implement slugify"
    review = "You are the reviewer of a software team (round 1)"
    return [
        S.write(str(trees / "architect-1" / "SPEC.md"), SPEC, say="Writing SPEC.md.", prompt_contains=architect,
                last_input="prompt"),
        S.reply(fenced(TASKS, "SPEC.md is written. The tasks:"), prompt_contains=architect,
                last_input="tool_result"),
        S.write(str(trees / "architect-1" / "README.md"), NOTES, say="Writing README.md.",
                prompt_contains=notes_task, last_input="prompt"),
        S.reply("README.md is written.", prompt_contains=notes_task, last_input="tool_result"),
        S.write(str(trees / "implementer-1" / "slug.py"), CODE, say="Writing slug.py.", prompt_contains=code_task,
                last_input="prompt"),
        S.reply("slug.py implements slugify.", prompt_contains=code_task, last_input="tool_result"),
        S.shell("cat slug.py README.md", prompt_contains=review, last_input="prompt"),
        S.reply(fenced({"verdict": "approve", "summary": "slugify lower-cases and joins; the notes match.",
                        "blockers": [], "verified": [], "reopened": []}, "I read slug.py and README.md."),
                prompt_contains=review, last_input="tool_result", tool_result_contains="text.lower()"),
    ]


def test_claude_and_codex_build_in_their_own_worktrees_and_orch_merges_both(lab: Lab) -> None:
    orch = OrchDriver(lab)
    repo = orch.project
    git(repo, "init", "-q", "-b", "main")
    (repo / "LICENSE").write_text("MIT\n")
    git(repo, "add", "LICENSE")
    git(repo, "commit", "-q", "-m", "start")
    (repo / "LICENSE").write_text("MIT, being edited\n")  # the user's uncommitted work
    head, index = git(repo, "rev-parse", "HEAD"), (repo / ".git" / "index").read_bytes()

    started = orch.run("start", GOAL, "--architect", "codex", "--implementer", "claude", "--reviewer", "codex",
                       "--json")
    sid = json.loads(started.stdout.decode())["session"]
    trees = orch.home / "worktrees" / sid
    lab.stub.script(*worktrees_script(trees))
    run = orch.run("resume", sid, "--time-limit", str(SESSION_TIMEOUT - 30), timeout=SESSION_TIMEOUT)
    assert "all completion criteria hold" in run.stdout.decode(), run.describe()

    session = json.loads((orch.session_dir() / "session.json").read_text())
    report = json.loads((orch.session_dir() / "reports" / "session-report.json").read_text())
    branch = f"orch/{sid}"
    assert session["git"]["integration_branch"] == branch
    # both writers' work, from two CLIs and two worktrees, is in the integration branch
    assert git(repo, "show", f"{branch}:slug.py") + "\n" == CODE
    assert git(repo, "show", f"{branch}:README.md") + "\n" == NOTES
    assert git(repo, "show", f"{branch}:SPEC.md") + "\n" == SPEC
    assert git(repo, "show", f"{branch}:LICENSE") == "MIT, being edited"
    agents = {a["id"]: a for a in report["agents"]}
    assert (agents["implementer-1"]["cli"], agents["architect-1"]["cli"]) == ("claude", "codex")
    assert agents["implementer-1"]["branch"] == f"{branch}--implementer-1"
    assert agents["implementer-1"]["worktree"] == str(trees / "implementer-1")
    assert agents["implementer-1"]["files_changed"] == ["slug.py"]
    assert agents["architect-1"]["files_changed"] == ["README.md", "SPEC.md"]
    merged = {(m["task"], m["agent"]) for m in session["git"]["merges"] if m["outcome"] == "merged"}
    code_task = next(t["id"] for t in report["tasks"] if t["title"] == "Implement slugify")
    notes_task = next(t["id"] for t in report["tasks"] if t["title"] == "Write the usage notes")
    assert {(code_task, "implementer-1"), (notes_task, "architect-1")} <= merged
    # the two implementation runs were alive at the same time, each in its own worktree
    metas = {a: json.loads((orch.session_dir() / "agents" / a / "meta.json").read_text())
             for a in ("implementer-1", "architect-1")}
    code_run = metas["implementer-1"]["runs"][0]
    notes_run = next(r for r in metas["architect-1"]["runs"] if r["task"] == notes_task)
    assert code_run["started_at"] < notes_run["ended_at"] and notes_run["started_at"] < code_run["ended_at"]
    assert code_run["cwd"] != notes_run["cwd"]
    assert report["git"]["landing"] and f"orch land {orch.session_dir().name}" in "\n".join(report["git"]["landing"])
    # the user's branch, index and working tree are as they were
    assert git(repo, "rev-parse", "HEAD") == head and (repo / ".git" / "index").read_bytes() == index
    assert (repo / "LICENSE").read_text() == "MIT, being edited\n"
    assert sorted(p.name for p in repo.iterdir()) == [".git", "LICENSE"]
    assert lab.stub.unmatched() == []
