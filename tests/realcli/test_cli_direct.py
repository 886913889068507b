"""The genuine CLIs, run directly (not yet through orch) in a lab against the scripted stub.

Each test runs one raw scenario (scenarios.py), which also saves fresh captures for the
drift guard, then checks what really happened: the exit code, what the CLI printed, what
it sent to the model (from the stub's request log) and what it did to the files.
"""

from __future__ import annotations

import json
import re

import pytest

from .lab import Lab, RunResult
from .scenarios import AFTER_TOOL, ERROR_MESSAGE, FILE_CONTENT, TEXT, cli_of

pytestmark = pytest.mark.realcli

CLIS = ("claude", "codex", "gemini")


def final_text(cli: str, result: RunResult) -> str:
    """The model's last answer as the CLI printed it."""
    lines = result.lines
    if cli == "claude":
        return next(l.get("result", "") for l in reversed(lines) if l.get("type") == "result")
    if cli == "codex":
        texts = [l["item"]["text"] for l in lines
                 if l.get("type") == "item.completed" and l["item"].get("type") == "agent_message"]
        return texts[-1] if texts else ""
    last_tool = max((i for i, l in enumerate(lines) if l.get("type") in ("tool_use", "tool_result")), default=-1)
    return "".join(l.get("content", "") for l in lines[last_tool + 1:]
                   if l.get("type") == "message" and l.get("role") == "assistant")


def session_of(cli: str, result: RunResult) -> str:
    first = result.lines[0]
    return first.get("thread_id") if cli == "codex" else first.get("session_id")


def only(items: list, what: str):
    shown = [i.get("conversation", i) if isinstance(i, dict) and "body" in i else i for i in items]
    assert len(items) == 1, f"expected one {what}, got {len(items)}: {shown}"
    return items[0]


def expected(template: str, request: dict) -> str:
    conv = request["conversation"]
    return template.replace("{history}", str(conv["history"])).replace("{tool_result}", conv["tool_result"])


@pytest.mark.parametrize("cli", CLIS)
def test_plain_text(cli: str, lab: Lab, scenario_bank) -> None:
    case = f"{cli}_text"
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 0, result.describe()
    request = only(lab.requests_of(result), "model request")
    assert "CASE_TEXT say hello" in request["conversation"]["prompt"]
    assert final_text(cli, result) == expected(TEXT, request)
    assert lab.stub.unmatched() == []


def test_claude_partial_messages_stream_the_deltas(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("claude_partial", lab)["claude_partial"]
    assert result.returncode == 0, result.describe()
    deltas = [l["event"]["delta"]["text"] for l in result.lines if l.get("type") == "stream_event"
              and l["event"].get("type") == "content_block_delta"]
    request = only(lab.requests_of(result), "model request")
    assert "".join(deltas) == final_text("claude", result) == expected(TEXT, request)


@pytest.mark.parametrize("case", ["claude_tool", "claude_default_readonly_bash", "codex_tool", "gemini_tool"])
def test_shell_tool_call_runs(case: str, lab: Lab, scenario_bank) -> None:
    cli = cli_of(case)
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 0, result.describe()
    first, second = lab.requests_of(result)
    assert first["conversation"]["last_input"] == "prompt"
    assert second["conversation"]["last_input"] == "tool_result"
    assert re.search(r"(^|\W)hi(\W|$)", second["conversation"]["tool_result"]), second["conversation"]
    assert final_text(cli, result) == expected(AFTER_TOOL, second)
    lines = result.lines
    if cli == "claude":
        tool_result = only([b for l in lines if l.get("type") == "user" for b in l["message"]["content"]
                            if b.get("type") == "tool_result"], "tool_result")
        assert tool_result["content"] == "hi" and tool_result["is_error"] is False
        assert lines[-1]["permission_denials"] == []
    elif cli == "codex":
        done = only([l["item"] for l in lines if l.get("type") == "item.completed"
                     and l["item"]["type"] == "command_execution"], "command_execution")
        assert done["exit_code"] == 0 and done["aggregated_output"] == "hi\n" and "echo hi" in done["command"]
    else:
        tool_result = only([l for l in lines if l.get("type") == "tool_result"], "tool_result")
        assert tool_result["status"] == "success" and tool_result["output"] == "hi"


@pytest.mark.parametrize("case, filename", [("claude_write", "out.txt"), ("codex_write", "out.txt"),
                                            ("codex_patch", "patched.txt"), ("gemini_write", "out.txt")])
def test_file_write_lands(case: str, filename: str, lab: Lab, scenario_bank) -> None:
    cli = cli_of(case)
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 0, result.describe()
    assert (lab.workdir(cli) / filename).read_text() == FILE_CONTENT
    assert len(lab.requests_of(result)) == 2
    if case == "codex_patch":
        change = only([l["item"] for l in result.lines if l.get("type") == "item.completed"
                       and l["item"]["type"] == "file_change"], "file_change")
        assert change["status"] == "completed"
        assert change["changes"] == [{"path": str(lab.workdir(cli) / filename), "kind": "add"}]


# case → (file the model tried to write or None, what the model is told about the refusal)
DENIALS = {
    "claude_deny_write": ("denied.txt", "haven't granted it yet"),
    "claude_deny_bash": (None, "This command requires approval"),
    "codex_deny_write": ("denied.txt", "Read-only file system"),
    "gemini_deny_shell": (None, "tool_not_registered"),
    "gemini_deny_write": ("denied.txt", "tool_not_registered"),
}


@pytest.mark.parametrize("case", sorted(DENIALS))
def test_denied_call_is_refused_but_the_run_succeeds(case: str, lab: Lab, scenario_bank) -> None:
    cli = cli_of(case)
    filename, told = DENIALS[case]
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 0, result.describe()  # the run "succeeds" although its work was refused
    if filename:
        assert not (lab.workdir(cli) / filename).exists()
    second = lab.requests_of(result)[-1]
    assert second["conversation"]["last_input"] == "tool_result"
    lines = result.lines
    if cli == "claude":
        assert told in second["conversation"]["tool_result"]
        final = lines[-1]
        assert final["type"] == "result" and final["is_error"] is False and final["subtype"] == "success"
        denial = only(final["permission_denials"], "permission denial")
        assert denial["tool_name"] == ("Write" if filename else "Bash")
    elif cli == "codex":
        assert told in second["conversation"]["tool_result"]
        # The documented trap: a command the sandbox refused usually leaves no command_execution
        # item. Under load 0.169.0 was seen to report it as an ordinary failed command instead
        # (fixtures/cli-variants-observed/codex_deny_write.1.*): either way it did not run.
        items = [l["item"] for l in lines if l.get("type", "") == "item.completed"
                 and l["item"]["type"] == "command_execution"]
        assert all(i["status"] == "failed" and i["exit_code"] != 0 for i in items), result.describe()
        assert told in final_text(cli, result)
    else:
        refused = only([l for l in lines if l.get("type") == "tool_result"], "tool_result")
        assert refused["status"] == "error" and refused["error"]["type"] == told
        assert lines[-1]["type"] == "result" and lines[-1]["status"] == "success"


# case → (what comes back to the model, a file the refused call would have made, relative to
# the workspace or (tmp) to $TMPDIR). The texts are codex 0.169.0's handler refusals.
CODEX_REFUSED = {
    "codex_refused_escalation": ("approval policy is Never; reject command — you cannot ask for escalated "
                                 "permissions if the approval policy is Never", "escalated.txt"),
    "codex_refused_additional_permissions": ("you cannot ask for escalated permissions if the approval policy "
                                             "is Never", "tmp/extra.txt"),
    "codex_refused_patch_read_only": ("patch rejected: writing is blocked by read-only sandbox; rejected by user "
                                      "approval settings", "patched.txt"),
    "codex_refused_patch_outside": ("patch rejected: writing outside of the project; rejected by user approval "
                                    "settings", "tmp/outside.txt"),
    "codex_refused_rm_force": ("rejected: rm -f style commands are not permitted. Use a safer approach", None),
    "codex_refused_rule_forbidden": ("rejected: policy forbids commands starting with `git push`", None),
    "codex_refused_rule_justified": ("rejected: git clean deletes untracked work; remove files by name", None),
    "codex_refused_rule_prompt": ("approval required by policy, but AskForApproval is set to Never", None),
}


@pytest.mark.parametrize("case", sorted(CODEX_REFUSED))
def test_codex_handler_refusal_never_reaches_the_sandbox(case: str, lab: Lab, scenario_bank) -> None:
    told, made = CODEX_REFUSED[case]
    if case == "codex_refused_rm_force":
        (lab.workdir("codex") / "stale.txt").write_text("kept\n")
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 0, result.describe()  # a clean-looking run: turn.completed, exit 0
    first, second = lab.requests_of(result)
    assert second["conversation"]["last_input"] == "tool_result"
    assert told in second["conversation"]["tool_result"], second["conversation"]
    # nothing ran: no item at all on stdout, only the model's relayed message
    assert [l["item"]["type"] for l in result.lines if l.get("type", "").startswith("item.")] == ["agent_message"]
    assert told in final_text("codex", result)
    # the router's stderr line and the rollout's function call output carry the same text
    assert "ERROR codex_core::tools::router: error=" in result.stderr.decode()
    rollout = lab.codex_rollout(result)
    outputs = [json.loads(l)["payload"] for l in rollout.read_text().splitlines()
               if json.loads(l).get("type") == "response_item"
               and json.loads(l)["payload"].get("type", "").endswith("call_output")]
    assert len(outputs) == 1 and told in json.dumps(outputs[0]["output"], ensure_ascii=False), outputs
    if made:
        folder = lab.scratch.tmp if made.startswith("tmp/") else lab.workdir("codex")
        assert not (folder / made.removeprefix("tmp/")).exists()
    if case == "codex_refused_rm_force":
        assert (lab.workdir("codex") / "stale.txt").read_text() == "kept\n"
    assert lab.stub.unmatched() == []


# The exit codes REAL_CLIS.md records for a model that answers HTTP 400.
ERROR_EXIT = {"claude": 1, "codex": 1, "gemini": 144}


@pytest.mark.parametrize("cli", CLIS)
def test_model_error_fails_the_run(cli: str, lab: Lab, scenario_bank) -> None:
    case = f"{cli}_error400"
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == ERROR_EXIT[cli], result.describe()
    assert len(lab.requests_of(result)) == 1  # a 400 is not retried
    lines = result.lines
    if cli == "claude":
        final = lines[-1]
        assert final["is_error"] is True and final["api_error_status"] == 400
        assert final["result"] == f"API Error: 400 {ERROR_MESSAGE}"
    elif cli == "codex":
        kinds = [l["type"] for l in lines]
        assert kinds[-2:] == ["error", "turn.failed"], kinds
        assert ERROR_MESSAGE in lines[-1]["error"]["message"]
    else:
        final = lines[-1]
        assert final["type"] == "result" and final["status"] == "error"
        assert ERROR_MESSAGE in final["error"]["message"]


RESUMES = {"claude": ("claude_resume", "claude_session_id"), "codex": ("codex_resume", "codex_session_first"),
           "gemini": ("gemini_resume", "gemini_session_first")}


@pytest.mark.parametrize("cli", CLIS)
def test_resumed_session_carries_its_earlier_turns(cli: str, lab: Lab, scenario_bank) -> None:
    scenario, first_case = RESUMES[cli]
    results = scenario_bank.run(scenario, lab)
    first, second = results[first_case], results.get(scenario)
    assert first.returncode == 0, first.describe()
    assert second is not None, f"no session id in the first run:\n{first.describe()}"
    assert second.returncode == 0, second.describe()
    assert session_of(cli, second) == session_of(cli, first)
    first_request = only(lab.requests_of(first), "first-run request")
    resumed = only(lab.requests_of(second), "resumed request")
    sent = json.dumps(resumed["body"])
    assert "CASE_TEXT first turn" in sent and "CASE_TEXT second turn" in sent
    assert final_text(cli, first) in sent  # the earlier answer went back to the model
    assert resumed["conversation"]["history"] > first_request["conversation"]["history"]
    assert final_text(cli, second) == expected(TEXT, resumed)
    if cli == "codex":
        last_message = lab.scratch.tmp / "codex_session_first.last_message.txt"
        assert last_message.read_text().strip() == final_text(cli, first)
