"""`orch parse` from the outside: the real command in a real process, and in-process with
CliRunner for the finer cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "tests" / "fixtures" / "cli-captures"
VARIANTS = ROOT / "tests" / "fixtures" / "cli-variants"
SUMMARY_KEYS = {"cli", "session_id", "outcome", "final_text", "tool_calls", "denials", "files_changed", "usage",
                "errors", "malformed_lines"}


def orch(*args: str, launcher: bool = False) -> subprocess.CompletedProcess:
    """Run orch as a user does: the launcher script, or the package's module entry point."""
    argv = [str(ROOT / "scripts" / "orch"), *args] if launcher else [sys.executable, "-m", "orchestrator", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")})


def test_json_is_exactly_one_object_in_a_real_process():
    done = orch("parse", "--cli", "claude", str(CAPTURES / "claude_deny_write.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert isinstance(summary, dict) and SUMMARY_KEYS <= set(summary)
    assert summary["outcome"] == "success" and summary["denied"] is True
    assert [(d["tool"], d["target"]) for d in summary["denials"]] == [("Write", "/workspace/claude/denied.txt")]
    assert set(summary["denials"][0]) >= {"tool", "target", "message"}
    assert set(summary["usage"]) >= {"input_tokens", "output_tokens", "cost_usd"}


def test_the_launcher_runs_parse_with_stderr_and_rollout():
    base = VARIANTS / "codex_patch_rejected"
    done = orch("parse", "--cli", "codex", f"{base}.jsonl", "--stderr", f"{base}.stderr",
                "--rollout", f"{base}.rollout.jsonl", "--json", launcher=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["session_id"] == "01a20e22-2222-7aaa-8bbb-0c0c0c0c0c02"
    assert len(summary["denials"]) == 1 and summary["denied"] is True


def test_human_summary_says_denied_plainly():
    done = orch("parse", "--cli", "gemini", str(CAPTURES / "gemini_deny_shell.jsonl"))
    assert done.returncode == 0
    first = done.stdout.splitlines()[0]
    assert "9e4a8770-d2f4-4e33-ba86-a028a02fda0f" in first and "success" in first and "DENIED (1)" in first
    assert "denied: run_shell_command echo hi" in done.stdout


def test_human_summary_of_a_clean_run_does_not_say_denied():
    result = CliRunner().invoke(cli, ["parse", "--cli", "codex", str(CAPTURES / "codex_patch.jsonl")])
    assert result.exit_code == 0
    assert "DENIED" not in result.output and "changed: /workspace/codex/patched.txt" in result.output


@pytest.mark.parametrize("args, words", [
    (["--cli", "claude", "/nonexistent/stdout.jsonl"], ["stdout file not found", "/nonexistent/stdout.jsonl"]),
    (["--cli", "codex", str(CAPTURES / "codex_text.jsonl"), "--stderr", "/nonexistent/err"], ["stderr file not found"]),
    (["--cli", "gemini", str(CAPTURES)], ["is a folder"]),
])
def test_bad_files_are_one_line_errors(args, words):
    done = orch("parse", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orch: ")
    for word in words:
        assert word in lines[0]


def test_unknown_cli_is_refused():
    result = CliRunner().invoke(cli, ["parse", "--cli", "aider", str(CAPTURES / "claude_text.jsonl")])
    assert result.exit_code == 2 and "aider" in result.output


def test_incomplete_run_in_json(tmp_path):
    result = CliRunner().invoke(cli, ["parse", "--cli", "claude", str(VARIANTS / "claude_cut_off.jsonl"), "--json"])
    summary = json.loads(result.output)
    assert summary["outcome"] == "incomplete" and summary["malformed_lines"] == 1


def test_secrets_in_a_stream_never_reach_the_output(tmp_path):
    key = "sk-ant-api03-" + "Q" * 40
    lines = (CAPTURES / "claude_text.jsonl").read_text().splitlines()
    lines[-1] = lines[-1].replace("Hello from the fake model.", f"Your key is {key}.")
    path = tmp_path / "leak.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for extra in (["--json"], []):
        result = CliRunner().invoke(cli, ["parse", "--cli", "claude", str(path), *extra])
        assert result.exit_code == 0
        assert key not in result.output and "[REDACTED]" in result.output


def test_sim_is_a_valid_choice():
    result = CliRunner().invoke(cli, ["parse", "--cli", "sim", str(CAPTURES / "claude_text.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["cli"] == "sim"
