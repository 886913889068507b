"""A whole session with a real CLI in every role, through `orch run` (the autopilot).

gemini is the architect, claude the implementer and codex the reviewer. The stub plays
the model of each: the architect writes SPEC.md and lists two tasks (a claude implementer
is hired for the first, the code, then writes the second, the usage notes: the project is a
plain folder, where writers take turns — test_orch_worktrees.py has them work at once),
the codex reviewer reads the code and files one blocker, claude fixes it in its own CLI
session, and codex, resumed in its thread, verifies the fix. The session report
must show the three CLIs and the blocker found → assigned → fixed → verified, with every
completion criterion holding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver

pytestmark = pytest.mark.realcli

SESSION_TIMEOUT = 240.0  # measured: 10-15 s for the eight CLI runs on this 2-core machine

GOAL = "ORCH_SESSION build slug.py: slugify(text) turns a title into a URL slug"
SPEC = "# slug.py\n\nslugify('Hello World') == 'hello-world': lower case, words joined by '-'.\n"
BUGGY = "def slugify(text):\n    return '-'.join(text.split())\n"
FIXED = "def slugify(text):\n    return '-'.join(text.lower().split())\n"
NOTES = "Usage: from slug import slugify; slugify('Hello World') gives 'hello-world'.\n"
TASKS = {"tasks": [
    {"title": "Implement slugify", "description": "slug.py as SPEC.md says."},
    {"title": "Write the usage notes", "description": "README.md: how to call slugify, with one example."},
]}
BLOCKER = {"id": "N1", "file": "slug.py", "line": 2, "severity": "high",
           "description": "slugify('Hello World') returns 'Hello-World': SPEC.md asks for lower case."}


def fenced(obj: dict, before: str) -> str:
    return f"{before}\n\n```json\n{json.dumps(obj, indent=2)}\n```"


def cat(path: Path, **when: Any) -> dict:
    """The reviewer's look at a file: a shell `cat` (codex runs it in its read-only sandbox)."""
    return S.shell(f"cat {path.name}", **when)


def session_script(project: Path, read: Callable[..., dict] = cat) -> list[dict]:
    """What the model says to each prompt orch's coordinator sends, in any CLI's tool vocabulary.

    `read(path, **when)` is the reviewer's step that shows it slug.py (the shell where the
    reviewer's CLI may run it read-only, a file-read tool where it may not).
    """
    architect = "You are the architect"
    notes_task = "Your task: Write the usage notes"
    code_task = "Your task: Implement slugify"
    review = "You are the reviewer of a software team (round 1)"
    fix = "The reviewer filed these blockers against the work"
    verify = "The implementer reports these blockers fixed"
    return [
        S.write(str(project / "SPEC.md"), SPEC, say="Writing SPEC.md.", prompt_contains=architect,
                last_input="prompt"),
        S.reply(fenced(TASKS, "SPEC.md is written. The tasks:"), prompt_contains=architect,
                last_input="tool_result"),
        S.write(str(project / "README.md"), NOTES, say="Writing README.md.", prompt_contains=notes_task,
                last_input="prompt"),
        S.reply("README.md is written.", prompt_contains=notes_task, last_input="tool_result"),
        S.write(str(project / "slug.py"), BUGGY, say="Writing slug.py.", prompt_contains=code_task,
                last_input="prompt"),
        S.reply("slug.py implements slugify.", prompt_contains=code_task, last_input="tool_result"),
        read(project / "slug.py", prompt_contains=review, last_input="prompt"),
        S.reply(fenced({"verdict": "changes_requested", "summary": "slugify keeps upper case letters.",
                        "blockers": [BLOCKER], "verified": [], "reopened": []}, "I read slug.py."),
                prompt_contains=review, last_input="tool_result", tool_result_contains="text.split()"),
        S.write(str(project / "slug.py"), FIXED, say="Lower-casing the text.", prompt_contains=fix,
                last_input="prompt"),
        S.reply("B-1: slugify now lower-cases the text before joining the words.", prompt_contains=fix,
                last_input="tool_result"),
        read(project / "slug.py", prompt_contains=verify, last_input="prompt"),
        S.reply(fenced({"verdict": "approve", "summary": "B-1 is fixed: slugify lower-cases its input.",
                        "blockers": [], "verified": ["B-1"], "reopened": []}, "I read slug.py again."),
                prompt_contains=verify, last_input="tool_result", tool_result_contains="text.lower()"),
    ]


def run_session(lab: Lab, team: dict[str, str], read: Callable[..., dict] = cat) -> tuple[OrchDriver, dict]:
    """`orch run GOAL` with this team (role → CLI) against the session's script; the session report."""
    orch = OrchDriver(lab)
    lab.stub.script(*session_script(orch.project, read))
    roles = [arg for role in ("architect", "implementer", "reviewer") for arg in (f"--{role}", team[role])]
    run = orch.run("run", GOAL, *roles, "--max-rounds", "3", "--time-limit", str(SESSION_TIMEOUT - 30),
                   timeout=SESSION_TIMEOUT)
    assert "all completion criteria hold" in run.stdout.decode(), run.describe()
    return orch, json.loads((orch.session_dir() / "reports" / "session-report.json").read_text())


def check_session(orch: OrchDriver, lab: Lab, report: dict, team: dict[str, str], apis: dict[str, str]) -> None:
    """What every such session must show: the team's CLIs, B-1 found → assigned → fixed →
    verified, every completion criterion, the files, and the fix and the verification in
    the implementer's and the reviewer's own CLI sessions. `apis`: role → the stub API its CLI speaks."""
    assert report["finalized"] is True and report["criteria"] == {"ok": True, "missing": []}, report["criteria"]
    assert report["state"] == "complete" and report["stop_reason"] == ""
    orch.run("check")  # exits 0 only when every completion criterion holds

    clis = {a["role"]: a["cli"] for a in report["agents"]}
    assert clis == team, report["agents"]
    assert all(a["state"] == "done" for a in report["agents"]), report["agents"]
    # every CLI was really called, each through its own protocol
    assert {r["api"] for r in lab.stub.requests()} == set(apis.values())

    (blocker,) = report["blockers"]
    assert (blocker["id"], blocker["file"], blocker["state"]) == ("B-1", "slug.py", "verified"), blocker
    assert [h["state"] for h in blocker["history"]] == ["found", "assigned", "fixed", "verified"], blocker
    assert (blocker["round_found"], blocker["round_verified"]) == (1, 2), blocker
    implementer = next(a["id"] for a in report["agents"] if a["role"] == "implementer")
    reviewer = next(a["id"] for a in report["agents"] if a["role"] == "reviewer")
    first_review, verification = report["reviews"]
    assert blocker["found_by"] == first_review["id"] and first_review["reviewer"] == reviewer
    fix_task = next(t for t in report["tasks"] if t["id"] == blocker["fix_task"])
    assert fix_task["kind"] == "fix" and fix_task["agent"] == implementer and fix_task["state"] == "done"

    assert (first_review["cli"], first_review["verdict"], first_review["parse_method"]) == (
        team["reviewer"], "changes_requested", "fenced-json"), first_review
    assert (verification["cli"], verification["verdict"], verification["verified"], verification["reviewer"]) == (
        team["reviewer"], "approve", ["B-1"], reviewer), verification
    deliverables = {d["path"]: d["by"] for d in report["deliverables"]}
    architect = next(a["id"] for a in report["agents"] if a["role"] == "architect")
    assert deliverables["slug.py"] == [implementer]
    assert deliverables["SPEC.md"] == [architect]
    assert deliverables["README.md"] == [implementer]  # writers take turns in a plain folder: the same implementer
    assert set(deliverables) == {"SPEC.md", "README.md", "slug.py"}
    assert (orch.project / "slug.py").read_text() == FIXED
    assert (orch.project / "SPEC.md").read_text() == SPEC

    # The fix and the verification went on in the same CLI sessions as the first turns.
    fix_request = next(r for r in lab.stub.requests(apis["implementer"])
                       if "The reviewer filed these blockers" in r["conversation"]["prompt"])
    assert "Your task: Implement slugify" in json.dumps(fix_request["body"])
    verify_request = next(r for r in lab.stub.requests(apis["reviewer"])
                          if "The implementer reports these blockers fixed" in r["conversation"]["prompt"])
    assert "You are the reviewer of a software team (round 1)" in json.dumps(verify_request["body"])
    assert lab.stub.unmatched() == []
    assert lab.stub.pending() == []


def test_full_session_with_three_real_clis(lab: Lab) -> None:
    team = {"architect": "gemini", "implementer": "claude", "reviewer": "codex"}
    orch, report = run_session(lab, team)
    check_session(orch, lab, report, team, {"architect": "gemini", "implementer": "anthropic", "reviewer": "openai"})
