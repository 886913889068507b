"""What only the opencode, Qwen Code and GitHub Copilot CLI adapters do: model errors in
their words, the end of a run that (for opencode) only the exit code can tell, opencode's
stderr, Copilot's denials and session log, and the exact command line for every rung.

Their captures' verdicts, usage and denials are checked with every CLI's in
test_adapter_captures.py; the ladder, the missing binary and the registry in
test_adapter_commands.py; the fuzzing in test_adapter_fuzz.py.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Optional

import pytest

from orchestrator.adapters import get_adapter, summarize
from orchestrator.adapters.base import Grant
from orchestrator.core.errors import InvalidInput
from orchestrator.core.models import Denial, Permission
from orchestrator.runtime.ingest.run_files import parse_run_files
from orchestrator.safety.policy import dangerous_flags
from test_adapter_commands import bins, spec  # noqa: F401  (bins is a fixture)

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
READ, EDIT, FULL = Permission.READ, Permission.EDIT, Permission.FULL


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


def test_shell_tools():
    assert get_adapter("opencode").shell_tools == {"bash"} and get_adapter("qwen").shell_tools == {"run_shell_command"}


# --------------------------------------------------------------------------- command lines


def opencode_permission(cmd) -> dict:
    return json.loads(cmd.env["OPENCODE_PERMISSION"])


def test_opencode_new_run(bins, tmp_path):
    cmd = get_adapter("opencode").build_command(spec(tmp_path, prompt="write  the\ncode --now"))
    # its log on stderr: the only place opencode says it is retrying, and which model it uses
    assert cmd.argv == [bins["opencode"], "run", "--format", "json", "--print-logs", "--log-level", "INFO",
                        "--dir", str(tmp_path), "--", "write", "", "the\ncode", "--now"]
    assert " ".join(cmd.argv[10:]) == "write  the\ncode --now"  # opencode joins the words with one space
    assert cmd.cli_session_id is None  # learned from the stream's sessionID
    assert set(cmd.env) == {"OPENCODE_PERMISSION"} and cmd.cwd == tmp_path


def test_opencode_resume_and_options(bins, tmp_path):
    opencode = get_adapter("opencode")
    cmd = opencode.build_command(spec(tmp_path, cli_session_id="ses_abc", resume=True, model="stub/m",
                                      system_prompt="Be brief.", prompt="go on"))
    assert cmd.argv[9:13] == ["--session", "ses_abc", "--model", "stub/m"]
    assert cmd.argv[13:] == ["--", "Be", "brief.\n\ngo", "on"]
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
    cmd = get_adapter("qwen").build_command(spec(tmp_path, state_dir=tmp_path / "state"))
    session = cmd.cli_session_id
    assert str(uuid.UUID(session)) == session
    assert cmd.argv == [bins["qwen"], "-p", "write the code", "-o", "stream-json", "--session-id", session,
                        "--approval-mode", "default"]
    assert set(cmd.env) == {"QWEN_CODE_SYSTEM_DEFAULTS_PATH"}


def test_qwen_gets_no_retries_of_its_own_below_the_users_settings(bins, tmp_path, monkeypatch):
    """maxRetries 0 in a system-defaults file under orch's state folder: the lowest layer of
    Qwen Code's settings, so the user's own (and their login) still win; the user's files untouched."""
    monkeypatch.setenv("QWEN_CODE_SYSTEM_SETTINGS_PATH", str(tmp_path / "etc" / "settings.json"))
    monkeypatch.delenv("QWEN_CODE_SYSTEM_DEFAULTS_PATH", raising=False)
    state = Path(os.environ["ORCH_HOME"])
    cmd = get_adapter("qwen").build_command(spec(tmp_path, state_dir=state))
    path = Path(cmd.env["QWEN_CODE_SYSTEM_DEFAULTS_PATH"])
    assert path.is_relative_to(state)
    assert json.loads(path.read_text()) == {"model": {"generationConfig": {"maxRetries": 0}}}
    assert get_adapter("qwen").build_command(spec(tmp_path, state_dir=state)).env == cmd.env  # written once
    assert get_adapter("qwen").build_command(spec(tmp_path)).env == {}  # no state folder given: nothing written
    # a system-defaults file of the user's own is never hidden: orch leaves the layer to it
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "system-defaults.json").write_text("{}")
    assert get_adapter("qwen").build_command(spec(tmp_path, state_dir=state)).env == {}
    monkeypatch.setenv("QWEN_CODE_SYSTEM_DEFAULTS_PATH", str(tmp_path / "mine.json"))
    (tmp_path / "etc" / "system-defaults.json").unlink()
    assert get_adapter("qwen").build_command(spec(tmp_path, state_dir=state)).env == {}


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


def test_opencode_narrow_grant_is_accepted_back_as_a_grant(tmp_path):
    """The rule narrow_tool_for returns is what opencode's permission config then allows."""
    opencode = get_adapter("opencode")
    rule = opencode.narrow_tool_for(Denial(tool="bash", target="npm test"))
    _, env = opencode.permission_args(Grant(READ, tools=(rule,)), tmp_path)
    assert json.loads(env["OPENCODE_PERMISSION"])["bash"]["npm test"] == "allow"


# --------------------------------------------------------------------------- GitHub Copilot CLI

COPILOT_BASE = ["-p", "write the code", "--output-format", "json", "--no-ask-user",
                "--secret-env-vars=COPILOT_PROVIDER_API_KEY,COPILOT_PROVIDER_BEARER_TOKEN"]


def test_copilot_new_run_pins_a_session_id(bins, tmp_path):
    cmd = get_adapter("copilot").build_command(spec(tmp_path))
    session = cmd.cli_session_id
    assert str(uuid.UUID(session)) == session
    assert cmd.argv == [bins["copilot"], *COPILOT_BASE, "--session-id", session, "--disallow-temp-dir"]
    assert cmd.env == {} and cmd.cwd == tmp_path


def test_copilot_resume_and_options(bins, tmp_path):
    copilot = get_adapter("copilot")
    sid = "11111111-2222-4333-8444-555555555555"
    cmd = copilot.build_command(spec(tmp_path, cli_session_id=sid, resume=True, prompt="-continue", model="gpt-5",
                                     system_prompt="Be brief.", extra_dirs=[Path("/srv")]))
    assert cmd.argv[1:3] == ["-p", "Be brief.\n\n-continue"]  # no system-prompt flag: the instructions lead
    assert cmd.argv[7:] == ["--resume", sid, "--disallow-temp-dir", "--add-dir", "/srv", "--model", "gpt-5"]
    with pytest.raises(InvalidInput):
        copilot.build_command(spec(tmp_path, resume=True))
    with pytest.raises(InvalidInput):
        copilot.build_command(spec(tmp_path, cli_session_id="not-a-uuid"))


@pytest.mark.parametrize("grant, flags", [
    (Grant(READ), ["--disallow-temp-dir"]),
    (Grant(EDIT), ["--disallow-temp-dir", "--allow-tool", "write"]),
    (Grant(EDIT, tools=("shell(touch)",)), ["--disallow-temp-dir", "--allow-tool", "write", "--allow-tool", "shell(touch)"]),
    (Grant(FULL), ["--disallow-temp-dir", "--allow-all-tools", "--allow-all-urls"]),
    (Grant(FULL, dangerous=True), ["--allow-all"]),
])
def test_copilot_rungs(tmp_path, grant, flags):
    args, env = get_adapter("copilot").permission_args(grant, tmp_path)
    assert args == flags and env == {}
    assert bool(dangerous_flags(["copilot", *args])) is grant.dangerous


@pytest.mark.parametrize("command, rule", [
    ("touch made.txt", "shell(touch)"),  # Copilot matches a rule by program: any arguments
    ("git status --short", "shell(git status)"),  # git and gh per subcommand
    ("python3 -m unittest", None),  # shell(python3) would run any code
    ("npm test", None), ("rm -rf build", None), ("bash -c true", None), ("git", None),
    ("echo a && echo b", None),
])
def test_copilot_narrow_rules_name_only_a_program_that_is_narrow(command, rule):
    copilot = get_adapter("copilot")
    denial = Denial(tool="bash", target=command)
    assert copilot.narrow_tool_for(denial) == rule
    assert copilot.level_needed(denial) is (EDIT if rule else FULL)
    assert copilot.narrow_rules_exact is False  # a prefix: never trusted below edit


def test_copilot_levels_and_its_session_log(tmp_path):
    copilot = get_adapter("copilot")
    assert copilot.level_needed(Denial(tool="create", target="/w/a.txt")) is EDIT
    assert copilot.level_needed(Denial(tool="web_fetch", target="https://example.com")) is FULL
    sid = "11111111-2222-4333-8444-555555555555"
    assert copilot.side_files(sid, {"HOME": "/home/u"}) == [Path(f"/home/u/.copilot/session-state/{sid}/events.jsonl")]
    assert copilot.side_files(sid, {"COPILOT_HOME": "/c"}) == [Path(f"/c/session-state/{sid}/events.jsonl")]
    assert copilot.side_files("../../etc", {"HOME": "/home/u"}) == [] and copilot.side_files(None, {}) == []


def test_copilot_denials_and_file_changes_from_its_captures():
    denied = parse_run_files("copilot", CAPTURES / "copilot_deny_write.jsonl")
    (denial,) = denied.denials
    assert (denial.tool, denial.target) == ("create", "/workspace/copilot/denied.txt")
    assert denial.message.startswith("Permission denied because no interactive user response was available")
    wrote = parse_run_files("copilot", CAPTURES / "copilot_write.jsonl")
    assert wrote.files_changed == ["/workspace/copilot/out.txt"] and not wrote.denied
    shell = parse_run_files("copilot", CAPTURES / "copilot_deny_shell.jsonl")
    assert [(d.tool, d.target) for d in shell.denials] == [("bash", "touch made.txt")]
