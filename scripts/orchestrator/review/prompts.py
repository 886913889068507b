"""What orch asks of the reviewer (review, verify) and of the implementer (fix).

Each prompt is short and self-contained: a CLI started cold knows nothing but the prompt
and the files in its folder. The reviewer's prompts end with the verdict format — one
fenced ```json block, with a filled example — which verdicts.py reads; the reasons for
that format are in specifications/REVIEW_SYSTEM_SPEC.md.

The wording avoids the trigger words of the other prompts (a fix prompt never says
"verify" or "verdict"), so the bundled sim agent, which routes on them, reads each
prompt as the job it is.
"""

from __future__ import annotations

import json
from typing import Sequence

from ..core.models import Blocker, BlockerSource

MAX_LISTED_PATHS = 40  # longer lists are summarized: the reviewer can list a folder itself
MAX_PROMPT_DESCRIPTION = 500

REVIEW_EXAMPLE = {
    "verdict": "changes_requested",
    "summary": "Options parse correctly, but an empty config file crashes the program.",
    "blockers": [
        {
            "id": "N1",
            "file": "src/app.py",
            "line": 42,
            "severity": "high",
            "description": "load_config() returns None for an empty file and main() calls .get() on it; "
                           "return an empty dict and add a test for the empty file.",
        }
    ],
    "verified": [],
    "reopened": [],
}

# Made-up ids (no ledger reaches 90 blockers in one session), so that a model copying
# the example verbatim confirms nothing real; the prompt says so.
VERIFY_EXAMPLE = {
    "verdict": "changes_requested",
    "summary": "B-91 is fixed and tested. B-92 still fails: an empty list still raises IndexError.",
    "blockers": [],
    "verified": ["B-91"],
    "reopened": ["B-92"],
}

_FORMAT_RULES = """\
- "verdict": "approve" only when "blockers" and "reopened" are both empty; otherwise "changes_requested".
- "blockers": only problems that must be fixed before you can approve. Each names a "file" \
(path relative to the working folder) and a "line" when you can (else null); its "description" \
says concretely what is wrong and what correct looks like. No style preferences or nice-to-haves.
- "severity": one of "critical", "high", "medium", "low".
- "id" of a blocker: your own label for a new finding (N1, N2, ...); orch numbers blockers itself.
- "verified" and "reopened": blocker ids (B-n) from a list orch gave you; otherwise empty.
- Plain JSON: double quotes, no comments, no trailing commas, nothing after the block."""


def _format_section(example: dict) -> str:
    return (
        "End your reply with exactly one fenced json block in this form:\n\n"
        f"```json\n{json.dumps(example, indent=2)}\n```\n\n{_FORMAT_RULES}"
    )


def _one_line(text: str, limit: int = MAX_PROMPT_DESCRIPTION) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _path_list(paths: Sequence[str]) -> str:
    shown = [f"- {p}" for p in list(paths)[:MAX_LISTED_PATHS]]
    if len(paths) > MAX_LISTED_PATHS:
        shown.append(f"- … and {len(paths) - MAX_LISTED_PATHS} more")
    return "\n".join(shown)


def blocker_line(blocker: Blocker) -> str:
    """One blocker as a prompt line: `- B-1 [high] src/app.py:42 — description`."""
    location = blocker.file or "(no file given)"
    if blocker.file and blocker.line:
        location += f":{blocker.line}"
    return f"- {blocker.id} [{blocker.severity.value}] {location} — {_one_line(blocker.description)}"


def _tests(tests: str) -> str:
    """The verification gate's latest result on the commit under review (engine/verification.py)."""
    return f"{_one_line(tests, 3000)}\n\n" if tests.strip() else ""


def review_prompt(goal: str, spec_paths: Sequence[str], changed_files: Sequence[str], round: int,
                  unchanged: Sequence[str] = (), tests: str = "") -> str:
    """The reviewer's prompt for a full review: validate the work, report blockers as JSON
    (with the project's test results on the commit it reads, when orch ran them).
    `unchanged`: tasks that two agents ended without changing anything, for the reviewer to judge."""
    specs = (
        f"The specifications:\n{_path_list(spec_paths)}" if spec_paths
        else "There are no specification files: judge the work against the goal."
    )
    changed = (
        f"The files the team changed:\n{_path_list(changed_files)}" if changed_files
        else "No list of changed files was recorded: look through the working folder."
    )
    return (
        f"You are the reviewer of a software team (round {round}).\n"
        f"Goal: {_one_line(goal, 2000)}\n\n"
        "Validate the work in this folder against the goal and the specifications: read the code, "
        "run the tests if there are any, and check that what the specifications require is there "
        "and works. Do not edit any file; you report, the implementer changes the code.\n\n"
        f"{specs}\n\n{changed}\n\n{_unchanged_note(unchanged)}{_tests(tests)}{_format_section(REVIEW_EXAMPLE)}\n"
    )


def race_review_prompt(goal: str, task_id: str, title: str, changed_files: Sequence[str], commit: str,
                       round: int) -> str:
    """The reviewer's prompt for one candidate of a race the tests left tied (engine/race.py):
    the same full review, of the commit this folder shows; its blockers are counted, not filed."""
    head = review_prompt(goal, ["SPEC.md"], changed_files, round)
    first, _, rest = head.partition("\n")
    return (f"{first}\n"
            f"This folder shows one of several builds of the task {task_id} ({_one_line(title, 200)}), at commit "
            f"{commit[:12]}: implementers of different CLIs built it at once, and the project's tests do not tell "
            "the best of them apart. Review this build on its own merits; the build with the fewest "
            f"blockers is the one kept.\n{rest}")


def _unchanged_note(tasks: Sequence[str]) -> str:
    if not tasks:
        return ""
    return (f"These tasks ended without any change, although two agents were asked: {', '.join(tasks)}. "
            "Say whether no change was needed: file a blocker for what is missing, or approve.\n\n")


def verify_prompt(goal: str, blockers: Sequence[Blocker], round: int, unchanged: Sequence[str] = (),
                  tests: str = "") -> str:
    """The reviewer's prompt to verify fixes: every listed blocker id goes to verified or reopened.
    `unchanged`: fix tasks that ended without any change (verify only if no change was needed)."""
    listed = "\n".join(blocker_line(b) for b in blockers)
    ids = ", ".join(b.id for b in blockers)
    return (
        f"You are the reviewer of a software team (round {round}).\n"
        f"Goal: {_one_line(goal, 2000)}\n\n"
        "The implementer reports these blockers fixed. Verify each one in the current code "
        "(read it, run the tests); do not edit any file.\n\n"
        f"{listed}\n\n{_unchanged_note(unchanged)}{_tests(tests)}"
        f"Put each of these ids ({ids}) in exactly one list: \"verified\" when the fix is correct "
        "and complete, \"reopened\" when the problem is still there (say why in \"summary\"). "
        "A new problem that a fix introduced is a new entry in \"blockers\". "
        "The ids in the example below are made up; use the ids listed above.\n\n"
        f"{_format_section(VERIFY_EXAMPLE)}\n"
    )


def fix_prompt(goal: str, blockers: Sequence[Blocker]) -> str:
    """The implementer's prompt to fix the listed blockers."""
    listed = "\n".join(blocker_line(b) for b in blockers)
    from_tests = any(b.source is BlockerSource.VERIFICATION for b in blockers)
    who = ("The reviewer and the project's tests filed" if from_tests and any(b.source is BlockerSource.REVIEW
                                                                              for b in blockers)
           else "The project's tests (run by orch after a merge) filed" if from_tests else "The reviewer filed")
    check = ("orch runs the tests again on the integration branch after your fix is merged"
             + ("; the reviewer checks the others" if who.startswith("The reviewer and") else "")
             if from_tests else "The reviewer will check each fix")
    return (
        "You are the implementer of a software team.\n"
        f"Goal: {_one_line(goal, 2000)}\n\n"
        f"{who} these blockers against the work. Fix every one of them in the code, "
        "keep everything else working, and run the tests:\n\n"
        f"{listed}\n\n"
        f"{check[0].upper() + check[1:]}. When you are done, reply with one line per blocker: "
        "its id and what you changed, or why it cannot be fixed.\n"
    )


def reask_prompt(blockers: Sequence[Blocker] = ()) -> str:
    """Asked once when a reviewer's reply held no readable verdict; lists the ids it was to judge."""
    judged = ""
    if blockers:
        judged = (
            "Verify each of these blockers: put its id in \"verified\" or \"reopened\".\n"
            + "\n".join(blocker_line(b) for b in blockers) + "\n\n"
        )
    example = VERIFY_EXAMPLE if blockers else REVIEW_EXAMPLE
    return (
        "Your last reply did not end with a verdict orch could read. Reply again with your "
        "verdict on the same work, ending with the fenced json block below; do not edit any file.\n\n"
        f"{judged}{_format_section(example)}\n"
    )
