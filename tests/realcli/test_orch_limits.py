"""Usage limits through orch, with the genuine CLIs: the stub refuses the first request with
that provider's genuine limit answer (resetting a few seconds ahead); orch parks the agent
(no failed attempt), and after the reset `orch step` resumes the SAME CLI session — the
stub sees the earlier turns — and the task completes.

gemini is not here: a limit a few seconds ahead is one it retries by itself (its own
10 attempts, tests/realcli/test_limits_direct.py), and a longer one is hours away.
"""

from __future__ import annotations

import re
import time

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .scenarios import CLAUDE_SUBSCRIPTION

pytestmark = pytest.mark.realcli

RUN_TIMEOUT = 120.0
ENDED = ("idle", "denied", "failed", "aborted", "done", "parked")
RESETS_IN = 3  # seconds


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_a_limit_parks_the_agent_and_the_same_session_finishes_after_the_reset(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    if cli == "claude":
        orch.env.update(CLAUDE_SUBSCRIPTION)  # the subscription path: the unified rate-limit headers
    policy = orch.home / "policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[limits]\nlimit_grace_seconds = 0\n")
    lab.stub.script(
        S.limit(resets_in=RESETS_IN, prompt_contains="ORCH_LIMIT"),
        S.reply("ORCH_LIMIT done after the reset; conversation of {history}.", last_input="prompt",
                prompt_contains="limit that stopped you has reset"),
    )
    agent = orch.launch(cli, "worker", "ORCH_LIMIT say hello")

    parked = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert parked["state"] == "parked", orch.evidence(agent)
    assert parked["resume_at"] and parked["limit"]["kind"] == "usage", parked
    [event] = orch.events("agent.parked", agent)
    assert event["data"]["resets_at"], event
    assert not any(e["data"].get("failure") for e in orch.exits(agent)), "a limit is not a failed run"

    # Before the reset a step changes nothing; once it has passed, the step resumes the same session.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        step = orch.json("step")
        if any("limit has reset" in a for a in step["actions"]):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no step resumed the parked agent:\n{orch.evidence(agent)}")
    done = orch.wait_for_state(agent, ("idle", "failed", "denied", "parked"), RUN_TIMEOUT)
    assert done["state"] == "idle", orch.evidence(agent)
    assert done["cli_session_id"] == parked["cli_session_id"] and done["runs"] == 2
    final = orch.exits(agent)[-1]["data"]["final_text"]
    assert final.startswith("ORCH_LIMIT done after the reset"), final
    # the resumed request carried the first turn: the stub saw the earlier conversation
    turns = int(re.match(r"\d+", final.rsplit("conversation of ", 1)[1]).group())
    assert turns > 1, final
    assert lab.stub.unmatched() == []
