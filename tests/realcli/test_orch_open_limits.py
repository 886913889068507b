"""The open CLIs at a provider's limit, through orch, with the genuine binaries.

A persistent 429 whose words say "Please try again in 20s." (retry-after: 1): each CLI
retries by itself (opencode and Copilot five times a second apart, Qwen Code seven times
over about 70 s with the maxRetries 0 orch gives it) and gives up; orch reads the reset
from the words and parks the agent until then — not its own 60 s back-off — then resumes
the SAME CLI session, which finishes the task.

An account out of credit (OpenRouter's 402, which no CLI retries) is no limit any wait
lifts: with `[limits] on_usage_limit = "fallback"` the task goes at once to another CLI,
with no timed retry and no attempt counted.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .scenarios import OPEN_RATE_RESETS_IN, OPEN_RATE_RETRY_AFTER

pytestmark = pytest.mark.realcli

OPEN_CLIS = ("opencode", "qwen", "copilot")
RUN_TIMEOUT = 180.0  # Qwen Code's own retries take about 70 s
ENDED = ("idle", "denied", "failed", "aborted", "done", "parked")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _step_until(orch: OrchDriver, words: str, timeout: float) -> dict:
    """`orch step` until one of its actions says `words` (each step is a real decision pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = orch.json("step")
        if any(words in a for a in step["actions"]):
            return step
        orch.run("wait", "--timeout", "5", timeout=60)
    raise AssertionError(f"no step said {words!r} within {timeout:.0f} s:\n{orch.evidence()}")


@pytest.mark.parametrize("cli", OPEN_CLIS)
def test_a_429_resetting_20s_ahead_parks_until_then_and_the_same_session_finishes(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    policy = orch.home / "policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[limits]\nlimit_grace_seconds = 0\n")
    lab.stub.script(
        S.limit("minute", resets_in=OPEN_RATE_RESETS_IN, retry_after=OPEN_RATE_RETRY_AFTER, api="chat",
                prompt_contains="ORCH_LIMIT", repeat=True),
        S.reply("ORCH_LIMIT done after the reset; conversation of {history}.", last_input="prompt",
                prompt_contains="limit that stopped you has reset"),
    )
    agent = orch.launch(cli, "worker", "ORCH_LIMIT say hello")

    parked = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert parked["state"] == "parked", orch.evidence(agent)
    assert parked["limit"]["kind"] == "rate" and parked["limit"]["scope"] == "minute", parked
    assert "Please try again in 20s" in parked["limit"]["message"]
    refused = lab.stub.requests("chat")
    assert len(refused) > 1  # the CLI's own retries came first, then it gave up
    [event] = orch.events("agent.parked", agent)
    resets_at, resume_at = _time(event["data"]["resets_at"]), _time(event["data"]["resume_at"])
    # the reset the words gave, counted from the CLI's last refusal — not orch's 60 s back-off
    last_refusal = datetime.fromtimestamp(refused[-1]["time"], resets_at.tzinfo)
    assert abs((resets_at - last_refusal).total_seconds() - OPEN_RATE_RESETS_IN) < 5, (resets_at, last_refusal)
    assert resume_at == resets_at  # no grace in this policy
    assert not any(e["data"].get("failure") for e in orch.exits(agent)), "a limit is not a failed run"

    _step_until(orch, "limit has reset", 90)
    done = orch.wait_for_state(agent, ("idle", "failed", "denied", "parked"), RUN_TIMEOUT)
    assert done["state"] == "idle", orch.evidence(agent)
    assert done["cli_session_id"] == parked["cli_session_id"] and done["runs"] == 2
    resumed = [r for r in lab.stub.requests("chat") if "limit that stopped you has reset" in r["conversation"]["prompt"]]
    assert resumed and resumed[0]["time"] >= resets_at.timestamp() - 1  # not before the reset
    final = orch.exits(agent)[-1]["data"]["final_text"]
    assert final.startswith("ORCH_LIMIT done after the reset"), final
    # the same conversation: the resumed request carried the first turn
    assert int(re.match(r"\d+", final.rsplit("conversation of ", 1)[1]).group()) > 1, final
    assert lab.stub.unmatched() == []


@pytest.mark.parametrize("cli", OPEN_CLIS)
def test_out_of_credit_hands_the_task_to_another_cli_at_once(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    policy = orch.home / "policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text('[limits]\non_usage_limit = "fallback"\n')
    # Every Chat Completions request (this CLI's) is refused for want of credit. The rest of
    # the team is the offline sim, so another CLI is at hand without a second account.
    lab.stub.script(S.limit("credits", api="chat", repeat=True))
    orch.run("start", "Build a small text utilities library", "--architect", "sim", "--implementer", cli,
             "--reviewer", "sim", "--no-worktrees")

    _step_until(orch, "is out of credit; handing the task to another CLI", RUN_TIMEOUT)
    (first, *_) = [e for e in orch.events("agent.exited") if e["data"].get("failure") == "billing"]
    assert first["reason"].startswith("out of credit (billing): ") and "Insufficient credits" in first["reason"]
    assert orch.status(first["agent"])["cli"] == cli
    (handed, *_) = [e for e in orch.events("decision") if e["data"].get("fallback_from") == cli]
    task = handed["task"]
    # no timed retry on this CLI: the task is queued again at once, without a back-off, for another CLI
    session = json.loads((orch.session_dir() / "session.json").read_text())
    entry = next(t for t in session["tasks"] if t["id"] == task)
    assert cli in entry["avoid_clis"] and entry["attempts"] <= 1, entry

    # the task starts again on another CLI (here the sim, standing in for another vendor) and is done
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        session = json.loads((orch.session_dir() / "session.json").read_text())
        entry = next(t for t in session["tasks"] if t["id"] == task)
        if entry["state"] == "done":
            break
        orch.json("step")
        orch.run("wait", "--timeout", "5", timeout=60)
    assert entry["state"] == "done", orch.evidence()
    doer = orch.status(entry["agent"])
    assert doer["cli"] != cli, doer
    # every run of this CLI was refused once, at once: no park, no timed retry of the same CLI
    assert not orch.events("agent.parked"), "out of credit is never waited out"
    runs_here = [e for e in orch.events("agent.exited") if orch.status(e["agent"])["cli"] == cli]
    assert all(e["data"].get("failure") == "billing" for e in runs_here), runs_here
    assert len(lab.stub.requests("chat")) == len(runs_here)  # one refused request per run (a 402 is not retried)
    orch.run("abort", "--all")
