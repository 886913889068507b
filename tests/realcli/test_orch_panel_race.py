"""A race and a review panel with the real CLIs, through `orch start` and `orch resume`.

The project is a git repository. codex, the architect, writes SPEC.md and lists one task; with
`--race 2` claude (the implementer) and codex each build it at once, each in its own worktree
on its own race branch: claude's slug.py passes its own test, codex's fails it. The verifier
runs the project's tests on each candidate merged onto the integration commit; claude's
wins and is merged, codex's stays a branch. Then codex and gemini review the merged commit as
a panel: both report the same defect in their own words — one blocker in the ledger with
both as its filers — claude fixes it in its own CLI session, and the reviewer that filed it
first verifies the fix.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .test_orch_session import fenced

pytestmark = pytest.mark.realcli

SESSION_TIMEOUT = 300.0
GOAL = "ORCH_PANEL_RACE build slug.py: slugify(text) turns a title into a URL slug"
SPEC = "# slug.py\n\nslugify('Hello World') == 'hello-world': lower case, words joined by '-'; no punctuation.\n"
TASKS = {"tasks": [{"title": "Implement slugify", "description": "slug.py and its test, as SPEC.md says."}]}
TEST = ("import unittest\n\nfrom slug import slugify\n\n\nclass TestSlug(unittest.TestCase):\n"
        "    def test_lower(self):\n        self.assertEqual(slugify('Hello World'), 'hello-world')\n")
GOOD = "def slugify(text):\n    return '-'.join(text.lower().split())\n"
BAD = "def slugify(text):\n    return '-'.join(text.split())\n"
FIXED = ("import re\n\n\ndef slugify(text):\n    return '-'.join(re.findall(r'[a-z0-9]+', text.lower()))\n")
CODEX_SAYS = {"id": "N1", "file": "slug.py", "line": 2, "severity": "high",
              "description": "slugify('Hello, World!') returns 'hello,-world!': SPEC.md says no punctuation."}
GEMINI_SAYS = {"id": "N1", "file": "slug.py", "line": 1, "severity": "medium",
               "description": "Punctuation survives: the slug of 'Hello, World!' keeps the comma and the bang."}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def verdict(obj: dict) -> str:
    return fenced({"summary": "", "verified": [], "reopened": [], **obj}, "I read slug.py.")


def race_and_panel_script(trees: Path) -> list[dict]:
    architect, task = "You are the architect", "Your task: Implement slugify"
    review = "You are the reviewer of a software team (round 1)"
    fix, verify = "The reviewer filed these blockers", "The implementer reports these blockers fixed"
    return [
        # codex, the architect
        S.write(str(trees / "architect-1" / "SPEC.md"), SPEC, say="Writing SPEC.md.", prompt_contains=architect,
                last_input="prompt"),
        S.reply(fenced(TASKS, "SPEC.md is written. The task:"), prompt_contains=architect, last_input="tool_result"),
        # the race: claude (implementer-1) and codex (implementer-2) build the same task at once
        S.write(str(trees / "implementer-1" / "slug.py"), GOOD, say="Writing slug.py.", api="anthropic",
                prompt_contains=task, last_input="prompt"),
        S.write(str(trees / "implementer-1" / "test_slug.py"), TEST, say="And its test.", api="anthropic",
                prompt_contains=task, last_input="tool_result"),
        S.reply("slug.py and test_slug.py are written.", api="anthropic", prompt_contains=task,
                last_input="tool_result"),
        S.write(str(trees / "implementer-2" / "slug.py"), BAD, say="Writing slug.py.", api="openai",
                prompt_contains=task, last_input="prompt"),
        S.write(str(trees / "implementer-2" / "test_slug.py"), TEST, say="And its test.", api="openai",
                prompt_contains=task, last_input="tool_result"),
        S.reply("slug.py and test_slug.py are written.", api="openai", prompt_contains=task,
                last_input="tool_result"),
        # the panel: codex reads the merged slug.py; gemini answers from the prompt's file list
        S.shell("cat slug.py", api="openai", prompt_contains=review, last_input="prompt"),
        S.reply(verdict({"verdict": "changes_requested", "summary": "Punctuation is kept.", "blockers": [CODEX_SAYS]}),
                api="openai", prompt_contains=review, last_input="tool_result", tool_result_contains="text.lower()"),
        S.reply(verdict({"verdict": "changes_requested", "summary": "The slug keeps punctuation.",
                         "blockers": [GEMINI_SAYS]}), api="gemini", prompt_contains=review),
        # claude fixes it in its own CLI session
        S.write(str(trees / "implementer-1" / "slug.py"), FIXED, say="Dropping punctuation.", api="anthropic",
                prompt_contains=fix, last_input="prompt"),
        S.reply("B-1: slugify keeps only letters and digits now.", api="anthropic", prompt_contains=fix,
                last_input="tool_result"),
        # the blocker's first filer verifies (whichever reviewer's verdict the ledger took first)
        S.shell("cat slug.py", api="openai", prompt_contains=verify, last_input="prompt", repeat=True),
        S.reply(verdict({"verdict": "approve", "summary": "B-1 is fixed.", "blockers": [], "verified": ["B-1"]}),
                api="openai", prompt_contains=verify, last_input="tool_result", tool_result_contains="re.findall",
                repeat=True),
        S.reply(verdict({"verdict": "approve", "summary": "B-1 is fixed.", "blockers": [], "verified": ["B-1"]}),
                api="gemini", prompt_contains=verify, repeat=True),
    ]


def test_claude_and_codex_race_one_task_and_codex_and_gemini_review_as_a_panel(lab: Lab) -> None:
    orch = OrchDriver(lab)
    repo = orch.project
    git(repo, "init", "-q", "-b", "main")
    (repo / "LICENSE").write_text("MIT\n")
    git(repo, "add", "LICENSE")
    git(repo, "commit", "-q", "-m", "start")

    started = orch.json("start", GOAL, "--architect", "codex", "--implementer", "claude",
                        "--reviewers", "codex,gemini", "--race", "2")
    sid = started["session"]
    assert started["team"]["racers"] == ["claude", "codex"] and started["team"]["reviewers"] == ["codex", "gemini"]
    lab.stub.script(*race_and_panel_script(orch.home / "worktrees" / sid))
    run = orch.run("resume", sid, "--time-limit", str(SESSION_TIMEOUT - 30), timeout=SESSION_TIMEOUT)
    assert "all completion criteria hold" in run.stdout.decode(), run.describe() + orch.evidence()

    session = json.loads((orch.session_dir() / "session.json").read_text())
    report = json.loads((orch.session_dir() / "reports" / "session-report.json").read_text())
    agents = {a["id"]: a for a in report["agents"]}
    # the race: two CLIs, each on its own branch from the same commit; the tests picked claude's
    (race,) = session["races"]
    cands = {c["seat"]: c for c in race["candidates"]}
    claude, codex = cands["claude"], cands["codex"]
    assert (agents[claude["agent"]]["cli"], agents[codex["agent"]]["cli"]) == ("claude", "codex")
    assert (claude["tests"], codex["tests"]) == ("passed", "failed"), race
    assert codex["failing"] == ["test_slug.py::TestSlug::test_lower"]
    assert (race["state"], race["winner"], race["decided_by"]) == ("merged", claude["agent"], "judge")
    branch = f"orch/{sid}"
    assert git(repo, "merge-base", "--is-ancestor", claude["commit"], branch) == ""
    assert subprocess.run(["git", "merge-base", "--is-ancestor", codex["commit"], branch], cwd=repo).returncode == 1
    assert git(repo, "show", f"{codex['branch']}:slug.py") + "\n" == BAD  # the loser, kept as a branch
    assert git(repo, "show", f"{branch}:slug.py") + "\n" == FIXED
    # the panel: codex and gemini on the same merged commit, one blocker filed by both
    reviews = [t for t in session["tasks"] if t["kind"] == "review"]
    assert sorted(t["seat"] for t in reviews) == ["codex", "gemini"]
    (blocker,) = session["blockers"]
    seats = {a["id"]: a["cli"] for a in report["agents"]}
    assert sorted(seats[f["reviewer"]] for f in blocker["filed_by"]) == ["codex", "gemini"]
    assert blocker["filed_by"][1]["rule"] in ("same-place", "similar", "same-text")
    assert blocker["state"] == "verified" and blocker["severity"] == "high"
    verified_by = next(h["by"] for h in reversed(blocker["history"]) if h["state"] == "verified")
    assert verified_by == blocker["filed_by"][0]["reviewer"]
    panel = {r["cli"]: r for r in report["panel"]["reviewers"]}
    assert all((panel[c]["filed"], panel[c]["unique"], panel[c]["confirmed"]) == (1, 0, 1) for c in ("codex", "gemini"))
    status = orch.run("status").stdout.decode()
    assert f"race {race['task']} (merged): {claude['agent']} (claude) won: its tests pass" in status
    assert "panel: " in status and "(gemini) filed 1 blocker(s)" in status
    assert lab.stub.unmatched() == []
