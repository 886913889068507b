"""The opencode and Qwen Code adapters: their genuine captures read as a person would read
them, the exact command line for every rung, the ladder helpers, and the end of a run
that (for opencode) only the exit code can tell.

The captures in fixtures/cli-captures were recorded from the pinned binaries offline
(tests/realcli/scenarios.py); the expectations were written by reading each file.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Optional

import pytest

from orchestrator.adapters import ADAPTERS, REAL_CLIS, get_adapter, summarize
from orchestrator.adapters.base import Grant, LaunchSpec
from orchestrator.core.errors import CliMissing, InvalidInput
from orchestrator.core.models import Denial, Permission, Role
from orchestrator.adapters.parsing import parse_run_files
from orchestrator.safety.policy import dangerous_flags

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
READ, EDIT, FULL = Permission.READ, Permission.EDIT, Permission.FULL
HELLO = "Hello from the fake model. I saw {n} message(s) in this conversation."
OC_RUN = "Tool finished. Result was: "
QWEN_DENIED = ('Qwen Code requires permission to use "{tool}", but that permission was declined. '
               'Matching deny rule: "{rule}".')
REJECTED = "The user rejected permission to use this specific tool call."

# name: (session id, outcome, [(denied tool, target)], final text, tool calls, files changed, errors)
CAPTURE_TRUTH = {
    # opencode stops the run at a refused call: the last text is what the model said before it.
    "opencode_deny_bash": ("ses_dc9166558ffexex1hVHSr8VWD2", "success", [("bash", "echo hi")],
                           "I will run a shell command.", 1, [], 0),
    "opencode_deny_write": ("ses_dc916116fffez4Yh3kLdpXZffH", "success",
                            [("write", "/workspace/opencode/denied.txt")], "I will write a file.", 1, [], 0),
    "opencode_error400": ("ses_dc915ef91ffeBkk697JBi7mvsm", "error", [], "", 0, [], 1),
    "opencode_resume": ("ses_dc915d645ffeGS9YIpdDHHJ5yW", "success", [], HELLO.format(n=3), 0, [], 0),
    "opencode_session_first": ("ses_dc915d645ffeGS9YIpdDHHJ5yW", "success", [], HELLO.format(n=1), 0, [], 0),
    "opencode_text": ("ses_dc916c56affefa0khmysbEXp1g", "success", [], HELLO.format(n=1), 0, [], 0),
    "opencode_tool": ("ses_dc9169952ffetY2lvF0qG3X5u9", "success", [], OC_RUN + "hi", 1, [], 0),
    "opencode_write": ("ses_dc9163dd3ffe1DxAwedXxfwtjs", "success", [], OC_RUN + "Wrote file successfully.", 1,
                       ["/workspace/opencode/out.txt"], 0),
    "qwen_deny_shell": ("de3ef2a2-a2fd-4ed8-b46d-0f3140fc5fc3", "success", [("run_shell_command", "echo hi")],
                        OC_RUN + QWEN_DENIED.format(tool="run_shell_command", rule="run_shell_command"), 1, [], 0),
    "qwen_deny_write": ("975662ac-0f69-4f2a-9e44-10c9929d5471", "success",
                        [("write_file", "/workspace/qwen/denied.txt")],
                        OC_RUN + QWEN_DENIED.format(tool="write_file", rule="edit"), 1, [], 0),
    # Qwen Code ends a model error with result/success and exit 0; the text says what it was.
    "qwen_error400": ("0d974f43-a3cc-44ac-8b6f-229af216ccb2", "error", [],
                      "[API Error: 400 fake server injected error 400]", 0, [], 1),
    "qwen_resume": ("6609d771-284f-416f-836f-f21424db131a", "success", [], HELLO.format(n=5), 0, [], 0),
    "qwen_session_first": ("6609d771-284f-416f-836f-f21424db131a", "success", [], HELLO.format(n=3), 0, [], 0),
    "qwen_text": ("607bbf3f-5d62-4047-8425-ab6cb0454edf", "success", [], HELLO.format(n=3), 0, [], 0),
    "qwen_tool": ("d00f130a-dc30-415b-a605-208b9deb8e8a", "success", [],
                  OC_RUN + "Command: echo hi Directory: (root) Output: hi Error: (none) Exit Code: 0 Signal: 0 "
                  "Process Group PGID: 9520", 1, [], 0),
    "qwen_write": ("2819e8b5-9850-435b-baf0-c5cfd36243be", "success", [],
                   OC_RUN + "Successfully created and wrote to new file: /workspace/qwen/out.txt.", 1,
                   ["/workspace/qwen/out.txt"], 0),
}

# (input, output, cost): opencode adds its steps; qwen's result is the session's running total.
USAGE_TRUTH = {
    "opencode_tool": (24, 40, 0.0),
    "opencode_deny_write": (12, 20, 0.0),
    "opencode_error400": (0, 0, 0.0),
    "qwen_tool": (24, 40, 0.0),
    "qwen_resume": (24, 40, 0.0),
    "qwen_error400": (0, 0, 0.0),
}


def _stderr(name: str) -> Optional[Path]:
    path = CAPTURES / f"{name}.stderr"
    return path if path.exists() else None


def test_every_open_cli_capture_has_an_expectation():
    names = {p.name[: -len(".jsonl")] for p in CAPTURES.glob("*.jsonl") if p.name.startswith(("opencode_", "qwen_"))}
    assert names == set(CAPTURE_TRUTH), "a capture was added or removed: read it and extend CAPTURE_TRUTH"


@pytest.mark.parametrize("name", sorted(CAPTURE_TRUTH))
def test_capture_verdict(name):
    session_id, outcome, denials, final_text, tool_calls, files, errors = CAPTURE_TRUTH[name]
    cli = name.split("_", 1)[0]
    s = parse_run_files(cli, CAPTURES / f"{name}.jsonl", _stderr(name))
    assert s.cli == cli
    assert s.session_id == session_id
    assert s.outcome.value == outcome
    assert [(d.tool, d.target) for d in s.denials] == denials
    assert s.denied is bool(denials)
    assert s.final_text == final_text
    assert s.tool_calls == tool_calls
    assert s.files_changed == files
    assert len(s.errors) == errors
    assert s.malformed_lines == 0 and s.unknown_events == 0


@pytest.mark.parametrize("name", sorted(USAGE_TRUTH))
def test_capture_usage(name):
    s = parse_run_files(name.split("_", 1)[0], CAPTURES / f"{name}.jsonl")
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.cost_usd) == USAGE_TRUTH[name]


def test_denials_carry_the_refusal_text_and_count_once():
    s = parse_run_files("opencode", CAPTURES / "opencode_deny_write.jsonl", CAPTURES / "opencode_deny_write.stderr")
    (denial,) = s.denials
    assert denial.message == REJECTED and denial.tool_id == "call_42c723e31d2d469ebc24"
    # qwen reports the refusal in the tool_result and again in the result's permission_denials
    raw = (CAPTURES / "qwen_deny_write.jsonl").read_text()
    assert raw.count("call_75f8ad73113c435ebe97") >= 3
    (denial,) = parse_run_files("qwen", CAPTURES / "qwen_deny_write.jsonl").denials
    assert "but that permission was declined" in denial.message and denial.tool_id == "call_75f8ad73113c435ebe97"


def test_model_errors_read_as_errors():
    s = parse_run_files("opencode", CAPTURES / "opencode_error400.jsonl")
    assert s.errors == ["fake server injected error 400"]
    s = parse_run_files("qwen", CAPTURES / "qwen_error400.jsonl")
    assert s.errors == ["[API Error: 400 fake server injected error 400]"]


def _events(cli: str, name: str, exit_code: Optional[int]):
    parser = get_adapter(cli).new_parser()
    events = []
    for line in (CAPTURES / f"{name}.jsonl").read_bytes().splitlines():
        events += parser.feed("stdout", line)
    for line in (CAPTURES / f"{name}.stderr").read_bytes().splitlines():
        events += parser.feed("stderr", line)
    return events + parser.finish(exit_code), parser


@pytest.mark.parametrize("name, exit_code, outcome", [
    ("opencode_text", 0, "success"),
    ("opencode_deny_write", 0, "success"),  # a refusal ends the run, normally
    ("opencode_error400", 1, "error"),
    ("opencode_text", None, "success"),  # saved files: the last step ended the turn
    ("opencode_deny_bash", None, "success"),  # …or was cut short by a refusal
    ("opencode_text", 137, "incomplete"),  # killed: no line says it ended
])
def test_opencode_run_ends_with_its_exit(name, exit_code, outcome):
    events, _ = _events("opencode", name, exit_code)
    assert summarize("opencode", events).outcome.value == outcome


def test_opencode_cut_off_without_an_exit_code_is_incomplete():
    parser = get_adapter("opencode").new_parser()
    lines = (CAPTURES / "opencode_tool.jsonl").read_bytes().splitlines()
    events = []
    for line in lines[:4]:  # through the first step's step_finish (reason tool-calls)
        events += parser.feed("stdout", line)
    assert summarize("opencode", events + parser.finish(None)).outcome.value == "incomplete"


def test_opencode_stderr_says_what_was_asked_and_what_failed():
    events, _ = _events("opencode", "opencode_deny_write", 0)
    (status,) = [e for e in events if e.kind.value == "status"]
    assert status.status == "permission_rejected" and "edit (/workspace/opencode/denied.txt)" in status.message
    parser = get_adapter("opencode").new_parser()
    (error,) = parser.feed("stderr", b"\x1b[91m\x1b[1mError: \x1b[0mSession not found")
    assert error.kind.value == "error" and error.message == "Error: Session not found"


def test_parser_state_round_trips_mid_run():
    for cli, name in (("opencode", "opencode_tool"), ("qwen", "qwen_deny_write")):
        adapter = get_adapter(cli)
        lines = (CAPTURES / f"{name}.jsonl").read_bytes().splitlines()
        whole = adapter.new_parser()
        expected = [e for line in lines for e in whole.feed("stdout", line)] + whole.finish(0)
        got, parser = [], adapter.new_parser()
        for line in lines:
            got += parser.feed("stdout", line)
            parser = adapter.new_parser(json.loads(json.dumps(parser.state())))
        got += parser.finish(0)
        assert got == expected


# --------------------------------------------------------------------------- registry and attributes


def test_registered_as_real_clis():
    for cli in ("opencode", "qwen"):
        assert cli in ADAPTERS and cli in REAL_CLIS
        assert get_adapter(cli).name == cli


def test_session_and_usage_attributes():
    opencode, qwen = get_adapter("opencode"), get_adapter("qwen")
    assert opencode.assigns_session_id is False and qwen.assigns_session_id is True
    assert opencode.usage_is_cumulative is False and qwen.usage_is_cumulative is True
    assert opencode.shell_tools == {"bash"} and qwen.shell_tools == {"run_shell_command"}


# --------------------------------------------------------------------------- command lines


@pytest.fixture
def bins(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    paths = {}
    for cli in ("opencode", "qwen"):
        exe = folder / cli
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv(f"ORCH_{cli.upper()}_BIN", str(exe))
        paths[cli] = str(exe)
    return paths


def spec(tmp_path, grant=Grant(), **kw) -> LaunchSpec:
    return LaunchSpec(role=Role.IMPLEMENTER, prompt=kw.pop("prompt", "write the code"), cwd=tmp_path,
                      grant=grant, **kw)


def opencode_permission(cmd) -> dict:
    return json.loads(cmd.env["OPENCODE_PERMISSION"])


def test_opencode_new_run(bins, tmp_path):
    cmd = get_adapter("opencode").build_command(spec(tmp_path, prompt="write  the\ncode --now"))
    assert cmd.argv == [bins["opencode"], "run", "--format", "json", "--dir", str(tmp_path),
                        "--", "write", "", "the\ncode", "--now"]
    assert " ".join(cmd.argv[7:]) == "write  the\ncode --now"  # opencode joins the words with one space
    assert cmd.cli_session_id is None  # learned from the stream's sessionID
    assert set(cmd.env) == {"OPENCODE_PERMISSION"} and cmd.cwd == tmp_path


def test_opencode_resume_and_options(bins, tmp_path):
    opencode = get_adapter("opencode")
    cmd = opencode.build_command(spec(tmp_path, cli_session_id="ses_abc", resume=True, model="stub/m",
                                      system_prompt="Be brief.", prompt="go on"))
    assert cmd.argv[6:10] == ["--session", "ses_abc", "--model", "stub/m"]
    assert cmd.argv[10:] == ["--", "Be", "brief.\n\ngo", "on"]
    assert cmd.cli_session_id == "ses_abc"
    with pytest.raises(InvalidInput):
        opencode.build_command(spec(tmp_path, resume=True))


@pytest.mark.parametrize("grant, edit, bash, web, flags", [
    (Grant(READ), "ask", {"*": "ask"}, "ask", []),
    (Grant(EDIT), "allow", {"*": "ask"}, "ask", []),
    (Grant(READ, tools=("bash(npm test)",)), "ask",
     {"*": "ask", "npm test": "allow", "npm test *": "allow"}, "ask", []),
    (Grant(FULL), "allow", "allow", "allow", []),
    (Grant(FULL, dangerous=True), "allow", "allow", "allow", ["--dangerously-skip-permissions"]),
])
def test_opencode_rungs(bins, tmp_path, grant, edit, bash, web, flags):
    cmd = get_adapter("opencode").build_command(spec(tmp_path, grant=grant))
    permission = opencode_permission(cmd)
    assert permission["edit"] == edit and permission["bash"] == bash and permission["webfetch"] == web
    assert [a for a in cmd.argv[:cmd.argv.index("--")] if a.startswith("--dangerously")] == flags
    # never a bypass below the top rung with the policy's consent
    assert bool(dangerous_flags(cmd.argv[:cmd.argv.index("--")])) is grant.dangerous


def test_opencode_extra_dirs_open_only_those_dirs(bins, tmp_path):
    cmd = get_adapter("opencode").build_command(spec(tmp_path, extra_dirs=[Path("/srv/shared")]))
    assert opencode_permission(cmd)["external_directory"] == {"/srv/shared/*": "allow"}
    assert "external_directory" not in opencode_permission(get_adapter("opencode").build_command(spec(tmp_path)))


def test_qwen_new_run_pins_a_session_id(bins, tmp_path):
    cmd = get_adapter("qwen").build_command(spec(tmp_path))
    session = cmd.cli_session_id
    assert str(uuid.UUID(session)) == session
    assert cmd.argv == [bins["qwen"], "-p", "write the code", "-o", "stream-json", "--session-id", session,
                        "--approval-mode", "default"]
    assert cmd.env == {}


def test_qwen_resume_and_options(bins, tmp_path):
    qwen = get_adapter("qwen")
    sid = "11111111-2222-4333-8444-555555555555"
    cmd = qwen.build_command(spec(tmp_path, cli_session_id=sid, resume=True, prompt="-continue", model="q",
                                  system_prompt="Be brief.", extra_dirs=[Path("/srv")]))
    assert cmd.argv == [bins["qwen"], "-p", " -continue", "-o", "stream-json", "--resume", sid,
                        "--approval-mode", "default", "--include-directories", "/srv", "-m", "q",
                        "--append-system-prompt", "Be brief."]
    assert qwen.build_command(spec(tmp_path, cli_session_id=sid)).argv[5:7] == ["--session-id", sid]


@pytest.mark.parametrize("grant, flags", [
    (Grant(READ), ["--approval-mode", "default"]),
    (Grant(EDIT), ["--approval-mode", "auto-edit"]),
    (Grant(READ, tools=("run_shell_command(npm test)",)),
     ["--approval-mode", "default", "--allowed-tools", "run_shell_command(npm test)"]),
    (Grant(FULL), ["--approval-mode", "auto-edit", "--allowed-tools", "run_shell_command",
                   "--allowed-tools", "web_fetch"]),
    (Grant(FULL, dangerous=True), ["--approval-mode", "yolo"]),
])
def test_qwen_rungs(tmp_path, grant, flags):
    args, env = get_adapter("qwen").permission_args(grant, tmp_path)
    assert args == flags and env == {}
    assert bool(dangerous_flags(["qwen", *args])) is grant.dangerous


# --------------------------------------------------------------------------- the ladder


@pytest.mark.parametrize("cli, denial, narrow, level", [
    ("opencode", Denial(tool="bash", target="npm test"), "bash(npm test)", EDIT),
    ("opencode", Denial(tool="bash", target="  pytest   -q "), "bash(pytest -q)", EDIT),
    ("opencode", Denial(tool="bash", target="cd app && make"), None, FULL),
    ("opencode", Denial(tool="bash", target="curl -s https://example.com"), None, FULL),  # never a prefix rule
    ("opencode", Denial(tool="bash", target="rm build.log"), None, FULL),
    ("opencode", Denial(tool="write", target="/w/a.txt", message=REJECTED), None, EDIT),
    ("opencode", Denial(tool="edit", target="/w/a.txt"), None, EDIT),
    ("opencode", Denial(tool="webfetch", target="https://example.com"), None, FULL),
    ("qwen", Denial(tool="run_shell_command", target="npm test"), "run_shell_command(npm test)", EDIT),
    ("qwen", Denial(tool="run_shell_command", target="a, b"), None, FULL),
    ("qwen", Denial(tool="write_file", target="/w/a.txt"), None, EDIT),
    ("qwen", Denial(tool="edit", target="/w/a.txt"), None, EDIT),
    ("qwen", Denial(tool="web_fetch"), None, FULL),
])
def test_narrow_grant_and_level(cli, denial, narrow, level):
    adapter = get_adapter(cli)
    assert adapter.narrow_tool_for(denial) == narrow
    assert adapter.level_needed(denial) is level


def test_narrow_grants_are_accepted_back_as_grants(tmp_path):
    """The rule narrow_tool_for returns is what the CLI is then given."""
    opencode, qwen = get_adapter("opencode"), get_adapter("qwen")
    rule = opencode.narrow_tool_for(Denial(tool="bash", target="npm test"))
    _, env = opencode.permission_args(Grant(READ, tools=(rule,)), tmp_path)
    assert json.loads(env["OPENCODE_PERMISSION"])["bash"]["npm test"] == "allow"
    rule = qwen.narrow_tool_for(Denial(tool="run_shell_command", target="npm test"))
    assert qwen.permission_args(Grant(EDIT, tools=(rule,)), tmp_path)[0][-1] == rule


@pytest.mark.parametrize("cli, hint", [("opencode", "npm install -g opencode-ai"),
                                       ("qwen", "npm install -g @qwen-code/qwen-code")])
def test_missing_binary_is_one_line_naming_the_cli(tmp_path, monkeypatch, cli, hint):
    monkeypatch.delenv(f"ORCH_{cli.upper()}_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CliMissing) as err:
        get_adapter(cli).build_command(spec(tmp_path))
    message = err.value.format_message()
    assert cli in message and hint in message and "\n" not in message


def test_no_adapter_replaces_home(bins, tmp_path):
    for cli in ("opencode", "qwen"):
        for grant in (Grant(READ), Grant(EDIT), Grant(FULL), Grant(FULL, dangerous=True)):
            env = get_adapter(cli).build_command(spec(tmp_path, grant=grant)).env
            assert not {"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"} & set(env), (cli, grant)
