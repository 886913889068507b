"""opencode, Qwen Code and GitHub Copilot CLI as orch agents, through orch's own commands, on the genuine binaries.

The same checks test_orch_agents.py makes for claude, codex and gemini: inside a lab
(loopback-only namespace, scratch home, model stub speaking OpenAI Chat Completions),
`orch launch` starts the pinned CLI as a detached, supervised agent, and what orch says
about it is checked against what really happened: the stub's request log, the CLI's own
raw output and the files in the project folder. Where the two CLIs behave differently
from the first three (opencode stops a run at a refusal; Qwen Code exits 0 after a model
error), the test says so and checks the genuine behaviour.
"""

from __future__ import annotations

import json
import re

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .test_orch_agents import (ENDED, RUN_TIMEOUT, TEST_COMMAND, UNIT_TEST, describe_process, group_members,
                               pid_alive, until)

pytestmark = pytest.mark.realcli

CLIS = ("opencode", "qwen", "copilot")
API = "chat"  # all three speak OpenAI Chat Completions to the stub
# What each CLI's refusal of the write looks like to orch (the denied tool's name).
DENIED_TOOL = {"opencode": "write", "qwen": "write_file", "copilot": "create"}
# The narrow rule orch grants for exactly TEST_COMMAND, in each CLI's own syntax.
NARROW = {"opencode": f"bash({TEST_COMMAND})", "qwen": f"run_shell_command({TEST_COMMAND})"}
# opencode and Copilot exit 1 after a model error; Qwen Code turns it into "[API Error: …]" text and exits 0.
ERROR_EXIT = {"opencode": 1, "qwen": 0, "copilot": 1}
# After a refusal opencode ends the run at once; Qwen Code and Copilot give the refusal back to the model.
REPLIES_AFTER_REFUSAL = {"opencode": False, "qwen": True, "copilot": True}


def own_session_id(orch: OrchDriver, agent: str) -> str:
    """The session id the CLI itself printed first (opencode `sessionID`, qwen `session_id`, Copilot `sessionId`)."""
    stdout = orch.session_dir() / "agents" / agent / "stdout.jsonl"
    for line in stdout.read_text().splitlines():
        obj = json.loads(line)
        found = obj.get("sessionID") or obj.get("session_id") or obj.get("sessionId")
        if found:
            return found
    raise AssertionError(f"{agent}'s CLI printed no session id:\n{stdout.read_text()[:3000]}")


@pytest.mark.parametrize("cli", CLIS)
def test_plain_text_reply(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    answer = "ORCH_TEXT answer: six times seven is 42."
    lab.stub.script(S.reply(answer, prompt_contains="ORCH_TEXT"))
    agent = orch.launch(cli, "worker", "ORCH_TEXT what is six times seven?")

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "idle", orch.evidence(agent)
    assert status["exit_code"] == 0 and status["runs"] == 1
    assert status["cli_session_id"] == own_session_id(orch, agent)
    assert status["tool_calls"] == 0 and status["files_changed"] == [] and status["denials"] == []
    assert status["usage"]["output_tokens"] > 0
    assert orch.exits(agent)[-1]["data"]["final_text"] == answer
    (request,) = lab.stub.requests(API)
    # the prompt reaches the model exactly (opencode would quote it if passed as one word;
    # Copilot puts `<current_datetime>…</current_datetime>` and a blank line before it)
    prompt = request["conversation"]["prompt"]
    if cli == "copilot":
        assert re.fullmatch(r"<current_datetime>[^<]+</current_datetime>\n\n", prompt[:-34]), prompt
        prompt = prompt[-34:]
    assert prompt == "ORCH_TEXT what is six times seven?"
    assert lab.stub.unmatched() == []


@pytest.mark.parametrize("cli", CLIS)
def test_tool_call_that_works(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    target = orch.project / "hello.py"
    content = "print('hello from the model')\n"
    lab.stub.script(
        S.write(str(target), content, prompt_contains="ORCH_TOOL", last_input="prompt"),
        S.reply("ORCH_TOOL done: hello.py is written.", last_input="tool_result"),
    )
    agent = orch.launch(cli, "implementer", "ORCH_TOOL write hello.py", permission="edit")

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "idle", orch.evidence(agent)
    assert target.read_text() == content
    assert status["files_changed"] == ["hello.py"]
    assert status["tool_calls"] == 1 and status["denials"] == []
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_TOOL done: hello.py is written."
    first, second = lab.stub.requests(API)
    assert second["conversation"]["last_input"] == "tool_result"
    assert lab.stub.unmatched() == []


@pytest.mark.parametrize("cli", CLIS)
def test_model_error_fails_the_agent(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    message = "ORCH_ERROR the stub rejects this request"
    lab.stub.script(S.fail(400, message, repeat=True))
    agent = orch.launch(cli, "worker", "ORCH_ERROR say hello")

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "failed", orch.evidence(agent)
    assert message in status["reason"], status["reason"]
    assert status["exit_code"] == ERROR_EXIT[cli]
    assert len(lab.stub.requests(API)) == 1  # a 400 is not retried


@pytest.mark.parametrize("cli", CLIS)
def test_denied_write_is_recovered_in_the_same_cli_session(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    target = orch.project / "notes.txt"
    content = "written after orch raised the permission\n"
    refused_reply = "ORCH_DENY I was not allowed to write notes.txt."
    steps = [S.write(str(target), content, say="Writing notes.txt.", prompt_contains="ORCH_DENY",
                     last_input="prompt")]
    if REPLIES_AFTER_REFUSAL[cli]:
        steps.append(S.reply(refused_reply, last_input="tool_result"))
    steps += [
        S.write(str(target), content, say="Retrying the write.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        S.reply("ORCH_DENY done: notes.txt is written.", last_input="tool_result"),
    ]
    lab.stub.script(*steps)
    agent = orch.launch(cli, "implementer", "ORCH_DENY write notes.txt", permission="read")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    assert not target.exists()
    (denial,) = denied["denials"]  # qwen reports it twice (tool_result, result): counted once
    assert denial["tool"] == DENIED_TOOL[cli] and denial["run"] == 1, denial
    assert denial["target"] == str(target)
    session_id = denied["cli_session_id"]
    assert session_id == own_session_id(orch, agent)

    step = orch.json("step")
    assert any(a.startswith(f"{agent}: escalated read → edit") for a in step["actions"]), step

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert status["state"] == "idle", orch.evidence(agent)
    assert target.read_text() == content
    assert status["cli_session_id"] == session_id
    assert status["runs"] == 2 and status["permission"] == "edit" and status["recoveries"] == 1
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_DENY done: notes.txt is written."
    (resumed,) = orch.events("agent.resumed", agent)
    assert resumed["data"]["cli_session_id"] == session_id and resumed["data"]["permission"] == "edit"
    (escalation,) = orch.audit()
    assert escalation["agent"] == agent and escalation["action"] == "escalated"
    assert (escalation["rung_before"], escalation["rung_after"]) == ("read", "edit")
    assert escalation["denied_tool"] == DENIED_TOOL[cli]

    # The resumed run went on with the same conversation: the model saw the first run again.
    requests = lab.stub.requests(API)
    (retry,) = [r for r in requests if r["conversation"]["last_input"] == "prompt"
                and "orch: the permission check stopped" in r["conversation"]["prompt"]]
    sent = json.dumps(retry["body"])
    assert "ORCH_DENY write notes.txt" in sent and "Writing notes.txt." in sent
    if REPLIES_AFTER_REFUSAL[cli]:
        assert refused_reply in sent
    assert retry["conversation"]["history"] > requests[0]["conversation"]["history"]
    assert lab.stub.unmatched() == []

    # Usage is per run, summed over both: each model answer was 12 prompt tokens (8 of them
    # read from the cache once the conversation had a turn before) and 20 output tokens —
    # Qwen Code's cumulative total is not counted twice, Copilot's comes from its session log.
    usage = status["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (12 * len(requests), 20 * len(requests)), usage
    assert usage["cached_input_tokens"] == 8 * len([r for r in requests if r["conversation"]["history"] > 1]), usage
    assert usage["model"] and usage["cost_estimated"], usage


# A narrow rule must let through exactly the command that was checked: opencode's
# `bash(cmd)` pattern does, so a reviewer capped at read gets it there; Qwen Code's
# `run_shell_command(cmd)` also matches longer commands (a prefix, as in gemini), so only
# an agent that may edit gets it, one level up.
ROLE = {"opencode": ("reviewer", "read"), "qwen": ("implementer", "edit")}


@pytest.mark.parametrize("cli", ["opencode", "qwen"])
def test_denied_command_is_recovered_with_a_narrow_rule(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    (orch.project / "tests").mkdir()
    (orch.project / "tests" / "test_smoke.py").write_text(UNIT_TEST)
    steps = [S.shell(TEST_COMMAND, say="Running the tests.", prompt_contains="ORCH_CMD", last_input="prompt")]
    if REPLIES_AFTER_REFUSAL[cli]:
        steps.append(S.reply("ORCH_CMD the tests could not run.", last_input="tool_result"))
    steps += [
        S.shell(TEST_COMMAND, say="Running them again.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        # only once the command really ran: its output is what comes back to the model
        S.reply("ORCH_CMD done: the tests pass.", last_input="tool_result", tool_result_contains="Ran 1 test"),
    ]
    lab.stub.script(*steps)
    role, level = ROLE[cli]
    agent = orch.launch(cli, role, "ORCH_CMD run the unit tests", permission="read")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    (denial,) = denied["denials"]
    assert denial["target"] == TEST_COMMAND, denial

    step = orch.json("step")
    assert any(a.startswith(f"{agent}: escalated read → {level}+{NARROW[cli]}") for a in step["actions"]), step

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert status["state"] == "idle", orch.evidence(agent)
    assert status["permission"] == level and status["rung"] == f"{level}+{NARROW[cli]}"
    assert status["cli_session_id"] == denied["cli_session_id"] and status["runs"] == 2
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_CMD done: the tests pass."
    (escalation,) = orch.audit()
    assert escalation["rung_after"] == f"{level}+{NARROW[cli]}"
    assert lab.stub.unmatched() == []


@pytest.mark.parametrize("cli", CLIS)
def test_stalled_run_is_aborted(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    lab.stub.script(S.hang(600))
    agent = orch.launch(cli, "worker", "ORCH_HANG say hello")
    until(f"{cli} sends its request to the model", lambda: lab.stub.requests(API), RUN_TIMEOUT)
    status = orch.status(agent)
    assert status["state"] in ("starting", "running"), orch.evidence(agent)
    pid = status["pid"]
    assert pid_alive(pid) and group_members(pid)

    (aborted,) = orch.json("abort", agent, "--grace", "3")

    assert aborted["state"] == "aborted", aborted
    assert not pid_alive(pid)
    assert group_members(pid) == []
    # nothing the CLI started escaped its process group: the namespace holds only the stub
    assert [describe_process(p) for p in lab.leftovers() if pid_alive(p)] == []
    status = orch.status(agent)
    assert status["state"] == "aborted" and status["reason"] == "aborted on request"



def test_copilot_denied_command_is_recovered_with_its_program_rule(lab: Lab) -> None:
    """Copilot's shell rule names a program (any arguments): `shell(touch)`, one rung up at edit."""
    orch = OrchDriver(lab)
    made = orch.project / "made.txt"
    lab.stub.script(
        S.shell("touch made.txt", say="Touching it.", prompt_contains="ORCH_CMD", last_input="prompt"),
        S.reply("ORCH_CMD it was refused.", last_input="tool_result"),
        S.shell("touch made.txt", say="Again.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        S.reply("ORCH_CMD done: made.txt is there.", last_input="tool_result"),
    )
    agent = orch.launch("copilot", "implementer", "ORCH_CMD touch made.txt", permission="read")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    (denial,) = denied["denials"]
    assert (denial["tool"], denial["target"]) == ("bash", "touch made.txt") and not made.exists()

    step = orch.json("step")
    assert any(a.startswith(f"{agent}: escalated read → edit+shell(touch)") for a in step["actions"]), step
    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert status["state"] == "idle", orch.evidence(agent)
    assert made.exists() and status["rung"] == "edit+shell(touch)" and status["runs"] == 2
    assert status["cli_session_id"] == denied["cli_session_id"] == own_session_id(orch, agent)
    assert lab.stub.unmatched() == []
