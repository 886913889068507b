"""One real agent at a time, through orch's own commands: launch, wait, status, logs, step, abort.

For each of claude, codex and gemini, inside a lab (loopback-only namespace, scratch home,
model stub), orch starts the genuine CLI as a detached, supervised agent and the test
checks what orch says about it against what really happened: the stub's request log, the
CLI's own raw output and the files in the project folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver

pytestmark = pytest.mark.realcli

CLIS = ("claude", "codex", "gemini")
API = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
ENDED = ("idle", "denied", "failed", "aborted", "done", "blocked-by-policy")
RUN_TIMEOUT = 90.0  # one CLI run against the stub takes 1-10 s on this machine


def own_session_id(orch: OrchDriver, agent: str) -> str:
    """The session id the CLI itself printed first (claude/gemini init line, codex thread.started)."""
    stdout = orch.session_dir() / "agents" / agent / "stdout.jsonl"
    for line in stdout.read_text().splitlines():
        obj = json.loads(line)
        found = obj.get("thread_id") if obj.get("type") == "thread.started" else obj.get("session_id")
        if found:
            return found
    raise AssertionError(f"{agent}'s CLI printed no session id:\n{stdout.read_text()[:3000]}")


def until(what: str, condition, timeout: float):
    """condition()'s first truthy value, checked until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def describe_process(pid: int) -> str:
    """`pid: command line`, to name a process left behind."""
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return f"{pid}: (gone)"


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
    (request,) = lab.stub.requests(API[cli])
    assert "ORCH_TEXT what is six times seven?" in request["conversation"]["prompt"]
    assert lab.stub.unmatched() == []


@pytest.mark.parametrize("cli", CLIS)
def test_tool_call_that_works(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    target = orch.project / "hello.py"
    content = "print('hello from the model')\n"
    # codex has no file-write tool: its models write files with apply_patch
    write = S.patch if cli == "codex" else S.write
    lab.stub.script(
        write(str(target), content, prompt_contains="ORCH_TOOL", last_input="prompt"),
        S.reply("ORCH_TOOL done: hello.py is written.", last_input="tool_result"),
    )
    agent = orch.launch(cli, "implementer", "ORCH_TOOL write hello.py", permission="edit")

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "idle", orch.evidence(agent)
    assert target.read_text() == content
    assert status["files_changed"] == ["hello.py"]
    assert status["tool_calls"] == 1 and status["denials"] == []
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_TOOL done: hello.py is written."
    first, second = lab.stub.requests(API[cli])
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
    assert status["exit_code"] not in (0, None)
    assert len(lab.stub.requests(API[cli])) == 1  # a 400 is not retried


@pytest.mark.parametrize("cli", CLIS)
def test_stalled_run_is_aborted(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    lab.stub.script(S.hang(600))
    agent = orch.launch(cli, "worker", "ORCH_HANG say hello")
    until(f"{cli} sends its request to the model", lambda: lab.stub.requests(API[cli]), RUN_TIMEOUT)
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
    assert [e["kind"] for e in orch.events("agent.aborted", agent)] == ["agent.aborted"]


# What each CLI's refusal of the write looks like to orch (the denied tool's name).
DENIED_TOOL = {"claude": "Write", "codex": "shell", "gemini": "write_file"}


@pytest.mark.parametrize("cli", CLIS)
def test_denied_write_is_recovered_in_the_same_cli_session(cli: str, lab: Lab) -> None:
    orch = OrchDriver(lab)
    target = orch.project / "notes.txt"
    content = "written after orch raised the permission\n"
    refused_reply = "ORCH_DENY I was not allowed to write notes.txt."
    lab.stub.script(
        # codex writes through its shell (printf), which the read-only sandbox refuses
        S.write(str(target), content, say="Writing notes.txt.", prompt_contains="ORCH_DENY", last_input="prompt"),
        S.reply(refused_reply, last_input="tool_result"),
        S.write(str(target), content, say="Retrying the write.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        S.reply("ORCH_DENY done: notes.txt is written.", last_input="tool_result"),
    )
    agent = orch.launch(cli, "implementer", "ORCH_DENY write notes.txt", permission="read")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    assert not target.exists()
    (denial,) = denied["denials"]
    assert denial["tool"] == DENIED_TOOL[cli] and denial["run"] == 1, denial
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
    requests = lab.stub.requests(API[cli])
    (retry,) = [r for r in requests if r["conversation"]["last_input"] == "prompt"
                and "orch: the permission check stopped" in r["conversation"]["prompt"]]
    sent = json.dumps(retry["body"])
    assert "ORCH_DENY write notes.txt" in sent and refused_reply in sent
    assert retry["conversation"]["history"] > requests[1]["conversation"]["history"]
    assert lab.stub.unmatched() == []


UNIT_TEST = """import unittest


class Smoke(unittest.TestCase):
    def test_truth(self):
        self.assertTrue(True)
"""
TEST_COMMAND = "python3 -m unittest discover -s tests"
# The narrow rule orch grants for exactly that command, in each CLI's own syntax, and who
# gets it: claude's exact rule is pre-approved for a read-only reviewer (allowed.run-tests);
# gemini's is a prefix (it would also admit the command with more arguments), so only an
# agent that may edit gets it, one level up.
NARROW_RULE = {"claude": f"Bash({TEST_COMMAND})", "gemini": f"run_shell_command({TEST_COMMAND})"}
ROLE = {"claude": ("reviewer", "read", "allowed.run-tests"), "gemini": ("implementer", "edit", "roles.implementer")}


@pytest.mark.parametrize("cli", ["claude", "gemini"])
def test_denied_command_is_recovered_with_a_narrow_rule(cli: str, lab: Lab) -> None:
    role, level, rule = ROLE[cli]
    orch = OrchDriver(lab)
    (orch.project / "tests").mkdir()
    (orch.project / "tests" / "test_smoke.py").write_text(UNIT_TEST)
    lab.stub.script(
        S.shell(TEST_COMMAND, say="Running the tests.", prompt_contains="ORCH_CMD", last_input="prompt"),
        S.reply("ORCH_CMD the tests could not run.", last_input="tool_result"),
        S.shell(TEST_COMMAND, say="Running them again.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        # only once the command really ran: its output is what comes back to the model
        S.reply("ORCH_CMD done: the tests pass.", last_input="tool_result", tool_result_contains="Ran 1 test"),
    )
    agent = orch.launch(cli, role, "ORCH_CMD run the unit tests", permission="read")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    (denial,) = denied["denials"]
    assert denial["target"] == TEST_COMMAND, denial

    step = orch.json("step")
    assert any(a.startswith(f"{agent}: escalated read → {level}+{NARROW_RULE[cli]}") for a in step["actions"]), step

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert status["state"] == "idle", orch.evidence(agent)
    assert status["permission"] == level and status["rung"] == f"{level}+{NARROW_RULE[cli]}"
    assert status["cli_session_id"] == denied["cli_session_id"] and status["runs"] == 2
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_CMD done: the tests pass."
    (escalation,) = orch.audit()
    assert escalation["rung_after"] == f"{level}+{NARROW_RULE[cli]}" and rule in escalation["rule"]
    assert lab.stub.unmatched() == []
