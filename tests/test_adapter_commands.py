"""The command lines the adapters build: exact flags per CLI and level, resume forms, the
permission ladder helpers, and the launch hazards (stale gemini lock, codex rollout)."""

from __future__ import annotations

import os
import stat
import time
import tomllib
import uuid

import pytest

from orchestrator.adapters import ADAPTERS, REAL_CLIS, get_adapter
from orchestrator.adapters.base import Grant, LaunchSpec
from orchestrator.core.errors import CliMissing, InvalidInput
from orchestrator.core.models import Denial, Permission, Role

READ, EDIT, FULL = Permission.READ, Permission.EDIT, Permission.FULL


@pytest.fixture
def bins(tmp_path, monkeypatch):
    """Real executables standing in for the real CLIs (build_command resolves the binary)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    paths = {}
    for cli in REAL_CLIS:
        exe = folder / cli
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv(f"ORCH_{cli.upper()}_BIN", str(exe))
        paths[cli] = str(exe)
    return paths


def spec(tmp_path, grant=Grant(), **kw) -> LaunchSpec:
    return LaunchSpec(role=Role.IMPLEMENTER, prompt=kw.pop("prompt", "write the code"), cwd=tmp_path,
                      grant=grant, **kw)


# --------------------------------------------------------------------------- claude


def test_claude_new_run_pins_a_session_id(bins, tmp_path):
    cmd = get_adapter("claude").build_command(spec(tmp_path))
    session = cmd.cli_session_id
    assert str(uuid.UUID(session)) == session
    assert cmd.argv == [bins["claude"], "-p", "write the code", "--output-format", "stream-json", "--verbose",
                        "--session-id", session, "--permission-mode", "default"]
    assert cmd.env == {} and cmd.cwd == tmp_path


def test_claude_pinned_and_resumed_sessions(bins, tmp_path):
    claude = get_adapter("claude")
    sid = "11111111-2222-4333-8444-555555555555"
    assert claude.build_command(spec(tmp_path, cli_session_id=sid)).argv[6:8] == ["--session-id", sid]
    resumed = claude.build_command(spec(tmp_path, cli_session_id=sid, resume=True, prompt="continue"))
    assert resumed.argv[:8] == [bins["claude"], "-p", "continue", "--output-format", "stream-json", "--verbose",
                                "--resume", sid]
    assert "--session-id" not in resumed.argv and resumed.cli_session_id == sid
    with pytest.raises(InvalidInput):
        claude.build_command(spec(tmp_path, cli_session_id="not-a-uuid"))
    with pytest.raises(InvalidInput):
        claude.build_command(spec(tmp_path, resume=True))


@pytest.mark.parametrize("grant, flags", [
    (Grant(READ), ["--permission-mode", "default"]),
    (Grant(EDIT), ["--permission-mode", "acceptEdits"]),
    (Grant(EDIT, tools=("Bash(npm test:*)",)), ["--permission-mode", "acceptEdits", "--allowedTools", "Bash(npm test:*)"]),
    (Grant(READ, tools=("Bash(git status:*)",)), ["--permission-mode", "default", "--allowedTools", "Bash(git status:*)"]),
    (Grant(FULL), ["--permission-mode", "acceptEdits", "--allowedTools", "Bash", "WebFetch", "WebSearch"]),
    (Grant(EDIT, dangerous=True), ["--permission-mode", "acceptEdits"]),  # bypass only at the top rung
    (Grant(FULL, dangerous=True), ["--permission-mode", "bypassPermissions"]),
])
def test_claude_permission_flags(tmp_path, grant, flags):
    args, env = get_adapter("claude").permission_args(grant, tmp_path)
    assert args == flags
    expect_env = {"IS_SANDBOX": "1"} if grant.dangerous and grant.level is FULL and os.geteuid() == 0 else {}
    assert env == expect_env


def test_claude_never_hides_tools_and_never_bypasses_unasked(tmp_path):
    claude = get_adapter("claude")
    for level in (READ, EDIT, FULL):
        args, _ = claude.permission_args(Grant(level), tmp_path)
        assert "--disallowedTools" not in args
        assert "bypassPermissions" not in args and "--dangerously-skip-permissions" not in args


def test_claude_options(bins, tmp_path):
    cmd = get_adapter("claude").build_command(spec(
        tmp_path, extra_dirs=[tmp_path / "shared", tmp_path / "docs"], model="claude-sonnet-4-5",
        system_prompt="You are the implementer.", prompt="--help me"))
    argv = cmd.argv
    assert argv[2] == " --help me"  # a prompt never reads as a flag
    i = argv.index("--add-dir")
    assert argv[i + 1:i + 3] == [str(tmp_path / "shared"), str(tmp_path / "docs")]
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-5"
    assert argv[argv.index("--append-system-prompt") + 1] == "You are the implementer."
    assert all(isinstance(a, str) for a in argv)


# --------------------------------------------------------------------------- codex

NO_TMP = ["-c", "sandbox_workspace_write.exclude_slash_tmp=true",
          "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true"]


@pytest.mark.parametrize("grant, flags", [
    (Grant(READ), ["--sandbox", "read-only"]),
    (Grant(EDIT), ["--sandbox", "workspace-write", *NO_TMP]),
    (Grant(EDIT, tools=("anything",)), ["--sandbox", "workspace-write", *NO_TMP]),  # codex has no narrow form
    (Grant(FULL), ["--sandbox", "workspace-write", "-c", "sandbox_workspace_write.network_access=true"]),
    (Grant(FULL, dangerous=True), ["--dangerously-bypass-approvals-and-sandbox"]),
])
def test_codex_permission_flags(tmp_path, grant, flags):
    assert get_adapter("codex").permission_args(grant, tmp_path) == (flags, {})


def test_codex_new_run(bins, tmp_path):
    cmd = get_adapter("codex").build_command(spec(tmp_path, grant=Grant(EDIT)))
    assert cmd.argv == [bins["codex"], "exec", "--json", "--skip-git-repo-check", "-C", str(tmp_path),
                        "--sandbox", "workspace-write", *NO_TMP, "write the code"]
    assert cmd.cli_session_id is None  # codex chooses the thread id
    assert cmd.env == {}


@pytest.mark.parametrize("grant, overrides", [
    (Grant(READ), ["-c", 'sandbox_mode="read-only"']),
    (Grant(EDIT), ["-c", 'sandbox_mode="workspace-write"', *NO_TMP]),
    (Grant(FULL), ["-c", 'sandbox_mode="workspace-write"', "-c", "sandbox_workspace_write.network_access=true"]),
    (Grant(FULL, dangerous=True), ["--dangerously-bypass-approvals-and-sandbox"]),
])
def test_codex_resume_uses_config_overrides(bins, tmp_path, grant, overrides):
    thread = "01a20dfc-9573-77c3-a785-fde2b7d10585"
    cmd = get_adapter("codex").build_command(spec(tmp_path, grant=grant, cli_session_id=thread, resume=True,
                                                  prompt="continue"))
    assert cmd.argv == [bins["codex"], "exec", "resume", "--json", "--skip-git-repo-check", *overrides, thread, "continue"]
    assert "--sandbox" not in cmd.argv and "-C" not in cmd.argv
    assert cmd.cwd == tmp_path and cmd.cli_session_id == thread


def test_codex_override_values_are_valid_toml(bins, tmp_path):
    odd = 'Say "hi"\nthen \\ leave — ✓'
    dirs = [tmp_path / 'a "quoted" dir', tmp_path / "plain"]
    cmd = get_adapter("codex").build_command(spec(tmp_path, grant=Grant(EDIT), extra_dirs=dirs, system_prompt=odd,
                                                  model="gpt-5.5"))
    values = [cmd.argv[i + 1] for i, a in enumerate(cmd.argv) if a == "-c"]
    parsed = {}
    for value in values:
        parsed.update(tomllib.loads(value.replace("=", " = ", 1)))
    assert parsed["developer_instructions"] == odd
    assert parsed["sandbox_workspace_write"]["writable_roots"] == [str(d) for d in dirs]
    assert cmd.argv[cmd.argv.index("-m") + 1] == "gpt-5.5"


def test_codex_writable_roots_only_where_writing_is_allowed(bins, tmp_path):
    codex = get_adapter("codex")
    read = codex.build_command(spec(tmp_path, grant=Grant(READ), extra_dirs=[tmp_path]))
    assert not any(a.startswith("sandbox_workspace_write.writable_roots") for a in read.argv)
    edit = codex.build_command(spec(tmp_path, grant=Grant(EDIT), extra_dirs=[tmp_path]))
    assert any(a.startswith("sandbox_workspace_write.writable_roots") for a in edit.argv)


def test_codex_resume_needs_a_thread(bins, tmp_path):
    with pytest.raises(InvalidInput):
        get_adapter("codex").build_command(spec(tmp_path, resume=True))


# --------------------------------------------------------------------------- gemini

TRUST = {"GEMINI_CLI_TRUST_WORKSPACE": "true"}


@pytest.mark.parametrize("grant, flags", [
    (Grant(READ), ["--approval-mode", "default"]),
    (Grant(EDIT), ["--approval-mode", "auto_edit"]),
    (Grant(EDIT, tools=("run_shell_command(npm test)",)),
     ["--approval-mode", "auto_edit", "--allowed-tools", "run_shell_command(npm test)"]),
    (Grant(FULL), ["--approval-mode", "auto_edit", "--allowed-tools", "run_shell_command", "--allowed-tools", "web_fetch"]),
    (Grant(READ, dangerous=True), ["--approval-mode", "default"]),
    (Grant(FULL, dangerous=True), ["--yolo"]),
])
def test_gemini_permission_flags(tmp_path, grant, flags):
    assert get_adapter("gemini").permission_args(grant, tmp_path) == (flags, TRUST)


def test_gemini_commands(bins, tmp_path):
    gemini = get_adapter("gemini")
    cmd = gemini.build_command(spec(tmp_path, extra_dirs=[tmp_path / "lib"], model="gemini-2.5-pro",
                                    system_prompt="You review code."))
    sid = cmd.cli_session_id
    assert cmd.argv == [bins["gemini"], "-p", "You review code.\n\nwrite the code", "-o", "stream-json",
                        "--session-id", sid, "--approval-mode", "default",
                        "--include-directories", str(tmp_path / "lib"), "-m", "gemini-2.5-pro"]
    assert cmd.env == TRUST
    resumed = gemini.build_command(spec(tmp_path, cli_session_id=sid, resume=True, prompt="continue"))
    assert resumed.argv[:7] == [bins["gemini"], "-p", "continue", "-o", "stream-json", "--resume", sid]


@pytest.mark.parametrize("cli", REAL_CLIS)
def test_no_adapter_replaces_home_or_codex_home(bins, tmp_path, cli):
    adapter = get_adapter(cli)
    for grant in (Grant(READ), Grant(EDIT), Grant(FULL), Grant(FULL, dangerous=True)):
        env = adapter.build_command(spec(tmp_path, grant=grant)).env
        assert not {"HOME", "CODEX_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"} & set(env), (cli, grant)


# --------------------------------------------------------------------------- the ladder


@pytest.mark.parametrize("cli, denial, narrow, level", [
    ("claude", Denial(tool="Bash", target="npm test"), "Bash(npm test)", EDIT),
    ("claude", Denial(tool="Bash", target="  pytest   -q "), "Bash(pytest -q)", EDIT),
    ("claude", Denial(tool="Bash", target="cd app && make"), None, FULL),
    ("claude", Denial(tool="Bash", target="curl x | sh"), None, FULL),
    ("claude", Denial(tool="Write", target="/w/a.txt", message="Claude requested permissions to write"), None, EDIT),
    ("claude", Denial(tool="Edit", target="/etc/x",
                      message="may only create or modify files in the allowed working directories"), None, FULL),
    ("claude", Denial(tool="WebFetch", target="https://example.com"), None, FULL),
    ("claude", Denial(tool="mcp__github__create_issue"), "mcp__github__create_issue", EDIT),
    ("gemini", Denial(tool="run_shell_command", target="npm test"), "run_shell_command(npm test)", EDIT),
    ("gemini", Denial(tool="run_shell_command", target="a, b"), None, FULL),
    ("gemini", Denial(tool="write_file", target="/w/a.txt"), None, EDIT),
    ("gemini", Denial(tool="web_fetch"), None, FULL),
    ("codex", Denial(tool="shell", message="/bin/bash: line 1: /w/a: Read-only file system"), None, EDIT),
    ("codex", Denial(tool="apply_patch", message="patch rejected: writing is blocked by read-only sandbox"), None, EDIT),
    ("codex", Denial(tool="apply_patch", message="patch rejected: writing outside of the project; rejected by "
                                                 "user approval settings"), None, FULL),
    ("codex", Denial(tool="shell", message="`curl x` rejected: blocked by policy"), None, FULL),
    ("codex", Denial(tool="shell", message="curl: (6) Could not resolve host: example.com"), None, FULL),
    ("opencode", Denial(tool="bash", target="npm test"), "bash(npm test)", EDIT),
    ("opencode", Denial(tool="bash", target="  pytest   -q "), "bash(pytest -q)", EDIT),
    ("opencode", Denial(tool="bash", target="cd app && make"), None, FULL),
    ("opencode", Denial(tool="bash", target="curl -s https://example.com"), None, FULL),  # never a prefix rule
    ("opencode", Denial(tool="bash", target="rm build.log"), None, FULL),
    ("opencode", Denial(tool="write", target="/w/a.txt", message="The user rejected permission"), None, EDIT),
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


@pytest.mark.parametrize("cli, shell", [("claude", "Bash"), ("gemini", "run_shell_command"),
                                        ("qwen", "run_shell_command")])
def test_narrow_grants_are_accepted_back_as_grants(tmp_path, cli, shell):
    """The rule narrow_tool_for returns is what permission_args passes to the CLI (opencode's:
    test_adapter_open_clis.py, where it goes into a config, not a flag)."""
    adapter = get_adapter(cli)
    rule = adapter.narrow_tool_for(Denial(tool=shell, target="npm test"))
    assert adapter.permission_args(Grant(EDIT, tools=(rule,)), tmp_path)[0][-1] == rule


# --------------------------------------------------------------------------- launch hazards and side files


def test_gemini_removes_only_a_stale_lock(tmp_path):
    gemini = get_adapter("gemini")
    lock = tmp_path / ".gemini" / "projects.json.lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text("4242")
    gemini.prepare_launch({"HOME": str(tmp_path)})
    assert lock.exists(), "a lock taken moments ago belongs to a run starting now"
    old = time.time() - 120
    os.utime(lock, (old, old))
    gemini.prepare_launch({"HOME": str(tmp_path)})
    assert not lock.exists()
    gemini.prepare_launch({"HOME": str(tmp_path / "nowhere")})  # nothing to do, no error


def test_gemini_stale_lock_file_too(tmp_path):
    lock = tmp_path / ".gemini" / "projects.json.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    old = time.time() - 120
    os.utime(lock, (old, old))
    get_adapter("gemini").prepare_launch({"HOME": str(tmp_path)})
    assert not lock.exists()


def test_codex_rollout_is_found_by_thread_id(tmp_path):
    thread = "01a20dfc-87a5-7ef0-9efa-222fa84be142"
    day = tmp_path / "codex-home" / "sessions" / "2026" / "11" / "24"
    day.mkdir(parents=True)
    mine = day / f"rollout-2026-11-24T14-36-08-{thread}.jsonl"
    mine.write_text("{}\n")
    (day / "rollout-2026-11-24T14-36-09-01a20dfc-0000-7ef0-9efa-222fa84be142.jsonl").write_text("{}\n")
    codex = get_adapter("codex")
    assert codex.side_files(thread, {"CODEX_HOME": str(tmp_path / "codex-home")}) == [mine]
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "sessions").symlink_to(tmp_path / "codex-home" / "sessions")
    assert codex.side_files(thread, {"HOME": str(home)}) == [home / ".codex" / "sessions" / "2026" / "11" / "24" / mine.name]
    assert codex.side_files("*", {"CODEX_HOME": str(tmp_path / "codex-home")}) == []
    assert codex.side_files(None, {}) == []
    assert get_adapter("claude").side_files(thread, {}) == []


@pytest.mark.parametrize("cli, hint", [
    ("claude", "npm install -g @anthropic-ai/claude-code"),
    ("codex", "npm install -g @openai/codex"),
    ("gemini", "npm install -g @google/gemini-cli"),
    ("opencode", "npm install -g opencode-ai"),
    ("qwen", "npm install -g @qwen-code/qwen-code"),
])
def test_missing_binary_is_one_line_naming_the_cli(tmp_path, monkeypatch, cli, hint):
    monkeypatch.delenv(f"ORCH_{cli.upper()}_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CliMissing) as err:
        get_adapter(cli).build_command(spec(tmp_path))
    message = err.value.format_message()
    assert cli in message and hint in message and "\n" not in message


@pytest.mark.parametrize("cli, cumulative, assigns_session_id", [
    ("claude", False, True), ("codex", True, False), ("gemini", False, True),
    ("opencode", False, False),  # opencode adds its steps up and names its session on the stream
    ("qwen", True, True),
])
def test_registered_with_its_usage_and_session_attributes(cli, cumulative, assigns_session_id):
    assert set(ADAPTERS) == {*REAL_CLIS, "sim"}
    adapter = get_adapter(cli)
    assert adapter.name == cli
    assert adapter.usage_is_cumulative is cumulative
    assert adapter.assigns_session_id is assigns_session_id
