"""Prompts for the architect and the implementers, and reading the architect's task list.

(Reviewer prompts live in review_prompts.py.) Every prompt is self-contained: a CLI
started cold has nothing else; a resumed one has its earlier turns too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from ..review.loose_json import read_loose_object

SPEC_FILE = "SPEC.md"
MAX_TASKS = 4

TASKS_EXAMPLE = {"tasks": [
    {"title": "Implement component core", "description": "The functions of SPEC.md's core section, with tests."},
    {"title": "Implement component cli", "description": "The command-line entry point described in SPEC.md."},
]}


def spec_prompt(goal: str, race: int = 0) -> str:
    """The architect's first task: a checkable specification and a list of independent tasks
    (`race`: the session races every task with that many implementers; the architect may say otherwise)."""
    return (
        "You are the architect of a small team of coding agents: implementers build from your "
        "specification and a reviewer from another vendor checks their work against it.\n"
        f"Goal: {goal.strip()}\n\n"
        f"Write the specification to {SPEC_FILE} in the working directory: the parts to build, each "
        "requirement with concrete examples that can be checked, the file layout, and how to run "
        "the tests. Do not write the implementation.\n\n"
        f"End your reply with one fenced json block listing 1 to {MAX_TASKS} implementation tasks "
        "that can be built in parallel without touching the same files, like this:\n\n"
        f"```json\n{json.dumps(TASKS_EXAMPLE, indent=2)}\n```\n"
        + (f"\nEach task is raced: {race} implementers build it at once, each on its own branch, and the "
           "project's tests pick the one that is merged. A task not worth racing may say \"race\": 0; one "
           f"worth more tries may say \"race\": {race + 1}.\n" if race >= 2 else "")
    )


def implement_prompt(goal: str, title: str, description: str) -> str:
    """An implementer's task: one item of the architect's list."""
    return (
        "You are an implementer on a small team of coding agents.\n"
        f"Goal: {goal.strip()}\n\n"
        f"The specification is in {SPEC_FILE}. Your task: {title.strip()}.\n"
        f"{description.strip()}\n\n"
        "Write the code and its unit tests in the working directory, then run the tests. Other "
        "implementers work on other tasks at the same time: stay within your task's files. "
        "Reply with a short summary of what you wrote and the test result.\n"
    )


def nudge_prompt(seconds: int) -> str:
    return (f"You have printed nothing for {seconds} seconds and were stopped. Continue your task "
            "from where you left off, and keep reporting progress.")


@dataclass
class PlannedTask:
    title: str
    description: str
    race: Optional[int] = None  # "race": N on the item: N implementers build it at once (0: not raced; None: the team's)


def _race_of(item: dict) -> Optional[int]:
    """An item's "race": a number of implementers, true (two), or false/0/1 (not raced); None when absent or unreadable."""
    value = item.get("race")
    if isinstance(value, bool):
        return 2 if value else 0
    if isinstance(value, (int, float)) and value == value and 0 <= value <= 8:
        return int(value) if value >= 2 else 0
    if isinstance(value, str) and value.strip().isdigit():
        return _race_of({"race": int(value.strip())})
    return None


_FENCE = re.compile(r"```[a-zA-Z]*\s*\n(.*?)```", re.S)


def read_task_list(reply: str) -> list[PlannedTask]:
    """The architect's task list (last json block with "tasks"); one whole-spec task if none."""
    candidates = [m.group(1) for m in _FENCE.finditer(reply or "")]
    for raw in reversed(candidates):
        try:
            data = json.loads(raw)
        except ValueError:
            data = read_loose_object(raw)
        items = data.get("tasks") if isinstance(data, dict) else None
        if not isinstance(items, list):
            continue
        out = []
        for it in items[:MAX_TASKS]:
            if isinstance(it, dict) and str(it.get("title", "")).strip():
                out.append(PlannedTask(str(it["title"]).strip()[:200], str(it.get("description", "")).strip()[:2000],
                                       _race_of(it)))
            elif isinstance(it, str) and it.strip():
                out.append(PlannedTask(it.strip()[:200], ""))
        if out:
            return out
    return [PlannedTask("Implement the specification", f"Build everything {SPEC_FILE} asks for.")]


def unchanged_prompt(task) -> str:
    """A writing task whose reply changed no file: the fact, and the task again."""
    return (f"Your reply to {task.id} changed no file, yet the task needs a change in the code. Make it now, "
            f"then reply with what you changed. The task again:\n\n{task.prompt}")


def limit_reset_prompt() -> str:
    """The short continuation a parked agent gets when its CLI's limit has reset."""
    return ("The usage limit that stopped you has reset. Continue your task exactly where you left off; "
            "the work you already did is still in place.")


def merge_prompt(goal: str, branch: str, onto: str, files: list[str], intents: list[str]) -> str:
    """A merge task: the agent's branch and the integration branch changed the same lines."""
    listed = "\n".join(f"- {f}" for f in files)
    sides = "\n".join(f"- {i}" for i in intents)
    return (
        "You are an implementer on a small team of coding agents, each working on its own git branch.\n"
        f"Goal: {goal.strip()}\n\n"
        f"Your branch {branch} and the team's integration branch {onto} changed the same lines. orch has "
        f"merged {onto} into your working directory; resolve the merge conflict in these files:\n"
        f"{listed}\n\n"
        f"What each side meant:\n{sides}\n\n"
        "Keep the intent of both sides, remove every conflict marker (<<<<<<<, =======, >>>>>>>), and run "
        "the tests. Do not commit and do not abort the merge: orch commits it when you are done. Reply with "
        "a short summary of how you resolved each file.\n"
    )
