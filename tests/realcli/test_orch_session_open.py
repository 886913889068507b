"""A whole session with opencode implementing and Qwen Code reviewing, through `orch run`.

The same session as test_orch_session.py (SPEC.md and two tasks from the architect, one
blocker filed, fixed and verified), with the two CLIs that speak OpenAI Chat Completions
in the blocker loop and claude as the architect: opencode writes slug.py and, resumed in
its own CLI session, fixes the blocker; Qwen Code, capped at read (its shell is not
allowed there), reads slug.py with its read_file tool, files the blocker in a fenced JSON
verdict and, resumed in its own session, verifies the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .test_orch_open_clis import own_session_id
from .test_orch_session import SESSION_TIMEOUT, check_session, run_session

pytestmark = pytest.mark.realcli

TEAM = {"architect": "claude", "implementer": "opencode", "reviewer": "qwen"}
APIS = {"architect": "anthropic", "implementer": "chat", "reviewer": "chat"}


def read_file(path: Path, **when: Any) -> dict:
    """Qwen Code's own file-read tool, allowed at read (its shell is not)."""
    return S.tool("read_file", {"file_path": str(path)}, **when)


def printed_session_ids(orch: OrchDriver, agent: str) -> set[str]:
    """Every session id the agent's CLI printed over all its runs (opencode `sessionID`, qwen `session_id`)."""
    lines = (orch.session_dir() / "agents" / agent / "stdout.jsonl").read_text().splitlines()
    objs = [json.loads(line) for line in lines if line.strip()]
    return {o.get("sessionID") or o.get("session_id") for o in objs} - {None}


@pytest.mark.timeout(SESSION_TIMEOUT + 60)
def test_full_session_with_opencode_and_qwen_in_the_blocker_loop(lab: Lab) -> None:
    orch, report = run_session(lab, TEAM, read=read_file)
    check_session(orch, lab, report, TEAM, APIS)

    # opencode and Qwen Code each went on in the CLI session orch started them in: the fix and
    # the verification were the second run of the same CLI session, not a new conversation.
    # (In a plain folder writers take turns, so the implementer also writes the usage notes:
    # three runs, the code, the notes and the fix; the reviewer's two are review and verify.)
    for role, runs in (("implementer", 3), ("reviewer", 2)):
        agent = next(a["id"] for a in report["agents"] if a["role"] == role)
        status = orch.status(agent)
        assert status["cli"] == TEAM[role] and status["runs"] == runs, status
        assert status["cli_session_id"] == own_session_id(orch, agent), status
        assert printed_session_ids(orch, agent) == {status["cli_session_id"]}  # every run printed it
        resumed = orch.events("agent.resumed", agent)
        assert len(resumed) == runs - 1, resumed
        assert {r["data"]["cli_session_id"] for r in resumed} == {status["cli_session_id"]}, resumed
        assert status["denials"] == [], status  # read_file is allowed at read: nothing to recover
