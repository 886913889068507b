"""Codex refusals that never reach the sandbox: every one is one denial, at the right rung.

Codex's tool handlers answer some calls with a refusal before anything runs (an escalation
under approval `never`, an exec-policy rule, a patch outside the writable roots). Nothing
shows on stdout but the model's later message; the refusal itself goes back to the model
(the rollout's function_call_output), and the router logs it on stderr. The texts below
are codex 0.169.0's own (specifications/CLI_PERMISSIONS_SPEC.md §3 says where each comes
from); the genuine captures are tests/fixtures/cli-captures/codex_refused_*.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

from orchestrator.adapters.codex import CodexAdapter
from orchestrator.core.models import Permission
from orchestrator.runtime.ingest.run_files import parse_run_files

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
ADAPTER = CodexAdapter()
EDIT, FULL = Permission.EDIT, Permission.FULL

# capture → (denied tool, rung the refused action needs)
CAPTURED = {
    "codex_refused_escalation": ("shell", FULL),
    "codex_refused_additional_permissions": ("shell", FULL),
    "codex_refused_patch_read_only": ("apply_patch", EDIT),
    "codex_refused_patch_outside": ("apply_patch", FULL),
    "codex_refused_rm_force": ("shell", FULL),
    "codex_refused_rule_forbidden": ("shell", FULL),
    "codex_refused_rule_justified": ("shell", FULL),
    "codex_refused_rule_prompt": ("shell", FULL),
}


def _sources(name: str) -> list[tuple[Path, Optional[Path], Optional[Path]]]:
    """stdout alone, with stderr, with the rollout, with both: every way orch may read a run."""
    stdout, stderr, rollout = (CAPTURES / f"{name}{ext}" for ext in (".jsonl", ".stderr", ".rollout.jsonl"))
    return [(stdout, None, None), (stdout, stderr, None), (stdout, None, rollout), (stdout, stderr, rollout)]


def test_escalation_refused_under_approval_never_is_a_denial():
    """The run looks clean (turn.completed, exit 0, no item) but its command was refused."""
    stdout, stderr, rollout = _sources("codex_refused_escalation")[-1]
    s = parse_run_files("codex", stdout, stderr, rollout)
    assert s.outcome.value == "success" and s.tool_calls == 0
    (denial,) = s.denials
    assert denial.tool == "shell"
    assert "you cannot ask for escalated permissions" in denial.message
    assert ADAPTER.level_needed(denial) is FULL


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_each_captured_refusal_is_one_denial_whatever_is_read(name):
    tool, rung = CAPTURED[name]
    for stdout, stderr, rollout in _sources(name):
        s = parse_run_files("codex", stdout, stderr, rollout)
        assert [d.tool for d in s.denials] == [tool], (name, stderr, rollout)
        assert ADAPTER.level_needed(s.denials[0]) is rung, s.denials[0].message


def test_the_rollout_alone_names_the_refused_command(tmp_path):
    """When the model says nothing about it, the rollout's call still counts, with its command."""
    stdout = tmp_path / "out.jsonl"
    stdout.write_text(_stdout("01a236e6-3c82-7b00-97c9-f0d3d7d4689b", "Done."))
    s = parse_run_files("codex", stdout, rollout=CAPTURES / "codex_refused_escalation.rollout.jsonl")
    assert [(d.tool, d.target, d.tool_id) for d in s.denials] == [
        ("shell", "touch escalated.txt", "call_b0ab16a0ff0f42398315")]
    assert ADAPTER.level_needed(s.denials[0]) is FULL


# ---- every refusal text of codex 0.169.0's shell/exec_command, apply_patch and router paths
# (text as the model receives it, the tool it refuses, the rung it needs). Values in braces
# in the source are filled as codex fills them headless (approval policy Never).
POLICY = 'exec_command failed: CreateProcess {{ message: "Rejected(\\"{}\\")" }}'
CMD = "`/bin/bash -lc 'git push origin main'`"
REFUSALS = {
    # core/src/tools/handlers/unified_exec (ExecCommandHandler::handle_call)
    "escalation_never": ("approval policy is Never; reject command — you cannot ask for escalated permissions "
                         "if the approval policy is Never", "exec_command", FULL),
    "escalation_on_failure": ("approval policy is OnFailure; reject command — you cannot ask for escalated "
                              "permissions if the approval policy is OnFailure", "exec_command", FULL),
    # core/src/tools/handlers/mod.rs (normalize_and_validate_additional_permissions)
    "additional_permissions_policy": ("approval policy is Never; reject command — you cannot request additional "
                                      "permissions unless the approval policy is OnRequest", "exec_command", FULL),
    "additional_permissions_disabled": ("additional permissions are disabled; enable "
                                        "`features.exec_permission_approvals` before using "
                                        "`with_additional_permissions`", "exec_command", FULL),
    # core/src/exec_policy.rs (derive_forbidden_reason, the rm -f check, prompt_is_rejected_by_policy),
    # through the orchestrator's ToolError::Rejected and the exec_command handler's error text
    "rule_blocked": (POLICY.format(f"{CMD} rejected: blocked by policy"), "exec_command", FULL),
    "rule_prefix": (POLICY.format(f"{CMD} rejected: policy forbids commands starting with `git push`"),
                    "exec_command", FULL),
    "rule_justification": (POLICY.format(f"{CMD} rejected: pushing is for people; open a PR instead"),
                           "exec_command", FULL),
    "rm_force": (POLICY.format("`/bin/bash -lc 'rm -f x'` rejected: rm -f style commands are not permitted. "
                               "Use a safer approach"), "exec_command", FULL),
    "prompt_never": (POLICY.format("approval required by policy, but AskForApproval is set to Never"),
                     "exec_command", FULL),
    "prompt_granular_rules": (POLICY.format("approval required by policy rule, but AskForApproval::Granular.rules "
                                            "is false"), "exec_command", FULL),
    "prompt_granular_sandbox": (POLICY.format("approval required by policy, but "
                                              "AskForApproval::Granular.sandbox_approval is false"),
                                "exec_command", FULL),
    # core/src/hook_runtime.rs (a PreToolUse hook refused the call; run by the registry's dispatch)
    "pre_tool_use_hook": ("Command blocked by PreToolUse hook: no pushes from agents. Command: git push origin main",
                          "exec_command", FULL),
    "pre_tool_use_hook_tool": ("Tool call blocked by PreToolUse hook: no patches today. Tool: apply_patch",
                               "apply_patch", FULL),
    # core/src/tools/handlers/unified_exec/write_stdin.rs
    "write_stdin": ("write_stdin rejected: this terminal cannot enforce the current denied-read restrictions; "
                    "start a new terminal", "write_stdin", FULL),
    # core/src/tools/events.rs (a user said no to an approval prompt)
    "exec_rejected_by_user": ("exec command rejected by user", "exec_command", FULL),
    "patch_rejected_by_user": ("patch rejected by user", "apply_patch", EDIT),
    # core/src/apply_patch.rs (apply_patch, from safety.rs assess_patch_safety)
    "patch_read_only": ("patch rejected: writing is blocked by read-only sandbox; rejected by user approval "
                        "settings", "apply_patch", EDIT),
    "patch_outside": ("patch rejected: writing outside of the project; rejected by user approval settings",
                      "apply_patch", FULL),
}

# Errors the same paths send that refuse nothing (a malformed call): no denial.
NOT_REFUSALS = {
    "justification_alone": ("`justification` requires an explicit `sandbox_permissions`; use `sandbox_permissions: "
                            "\"require_escalated\"` for unsandboxed execution, or omit `justification`.",
                            "exec_command"),
    "patch_verification": ("apply_patch verification failed: invalid hunk at line 3", "apply_patch"),
    "unsupported_call": ("unsupported call: web_fetch", "web_fetch"),
    "bad_payload": ("exec_command handler received unsupported payload", "exec_command"),
    "parse_arguments": ("failed to parse function arguments: missing field `cmd`", "exec_command"),
}

THREAD = "01a2ffff-0000-7aaa-8bbb-0c0c0c0c0c99"
TURN = "01a2ffff-aaaa-7000-8000-000000000099"


def _stdout(thread: str, text: str) -> str:
    lines = [{"type": "thread.started", "thread_id": thread}, {"type": "turn.started"},
             {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}},
             {"type": "turn.completed", "usage": {"input_tokens": 24, "output_tokens": 40}}]
    return "".join(json.dumps(line) + "\n" for line in lines)


def _rollout(tool: str, output: str, call_id: str = "call_refused_1") -> str:
    """A one-turn rollout: the call, then what went back to the model (function_call_output)."""
    if tool == "apply_patch":
        call = {"type": "custom_tool_call", "name": "apply_patch", "call_id": call_id,
                "input": "*** Begin Patch\n*** Add File: /elsewhere/x.txt\n+x\n*** End Patch\n"}
        result = {"type": "custom_tool_call_output", "call_id": call_id, "output": output}
    else:
        args = {"cmd": "git push origin main", "sandbox_permissions": "require_escalated"} if tool == "exec_command" \
            else {"session_id": 7, "chars": "y\n"}
        call = {"type": "function_call", "name": tool, "arguments": json.dumps(args), "call_id": call_id}
        result = {"type": "function_call_output", "call_id": call_id, "output": output}
    items = [("session_meta", {"id": THREAD, "cwd": "/workspace/codex", "cli_version": "0.169.0"}),
             ("event_msg", {"type": "task_started", "turn_attribution": {"turn_id": TURN}}),
             ("turn_context", {"turn_id": TURN, "approval_policy": "never"}),
             ("response_item", call), ("response_item", result)]
    return "".join(json.dumps({"timestamp": "2026-12-02T13:16:28.277Z", "type": t, "payload": p}) + "\n"
                   for t, p in items)


def _router_line(text: str) -> str:
    return f"2026-12-02T13:16:28.281296Z ERROR codex_core::tools::router: error={text}\n"


def _write_run(tmp_path: Path, tool: str, text: str, relayed: bool) -> tuple[Path, Path, Path]:
    stdout, stderr, rollout = tmp_path / "run.jsonl", tmp_path / "run.stderr", tmp_path / "run.rollout.jsonl"
    stdout.write_text(_stdout(THREAD, f"Tool finished. Result was: {text}" if relayed else "Done."))
    stderr.write_text("Reading additional input from stdin...\n" + _router_line(text))
    rollout.write_text(_rollout(tool, text))
    return stdout, stderr, rollout


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_refusal_text_is_exactly_one_denial_at_its_rung(case, tmp_path):
    text, tool, rung = REFUSALS[case]
    for relayed in (True, False):  # the model may quote the refusal, or say nothing of it
        stdout, stderr, rollout = _write_run(tmp_path, tool, text, relayed)
        for args in ((stdout, stderr, rollout), (stdout, None, rollout), (stdout, stderr, None)):
            s = parse_run_files("codex", *args)
            assert len(s.denials) == 1, (case, relayed, args, [d.message for d in s.denials])
            assert ADAPTER.level_needed(s.denials[0]) is rung, (case, s.denials[0].message)
            if case != "pre_tool_use_hook_tool":  # a hook names the tool in free text: shell unless the rollout says
                assert s.denials[0].tool == ("apply_patch" if tool == "apply_patch" else "shell")
        # the rollout alone carries the call id and, for a command, the command itself
        s = parse_run_files("codex", stdout, None, rollout) if not relayed else None
        if s is not None:
            assert s.denials[0].tool_id == "call_refused_1"
            if tool == "exec_command":
                assert s.denials[0].target == "git push origin main"


@pytest.mark.parametrize("case", sorted(NOT_REFUSALS))
def test_a_malformed_call_is_no_denial(case, tmp_path):
    text, tool = NOT_REFUSALS[case]
    stdout, stderr, rollout = _write_run(tmp_path, tool, text, relayed=True)
    s = parse_run_files("codex", stdout, stderr, rollout)
    assert s.denials == [] and s.outcome.value == "success"


def test_two_refused_calls_stay_two(tmp_path):
    """Dedup is per action: two escalations refused in one run are two denials, from any source."""
    text = REFUSALS["escalation_never"][0]
    stdout, stderr, rollout = _write_run(tmp_path, "exec_command", text, relayed=True)
    stderr.write_text(_router_line(text) * 2)
    rollout.write_text(_rollout("exec_command", text) + "".join(
        _rollout("exec_command", text, "call_refused_2").splitlines(keepends=True)[3:]))
    for args in ((stdout, stderr, rollout), (stdout, None, rollout), (stdout, stderr, None)):
        s = parse_run_files("codex", *args)
        assert len(s.denials) == 2, args


def test_the_itemized_shape_of_a_sandbox_refused_write_is_a_denial_too():
    """codex 0.169.0 sometimes reports a write the read-only sandbox refused as an ordinary
    failed command_execution item (observed under load): still one denial, never a success."""
    import subprocess
    import sys

    from orchtest import ROOT, orch_env

    base = ROOT / "tests" / "fixtures" / "cli-variants-observed" / "codex_deny_write.1"
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "parse", "--cli", "codex", f"{base}.jsonl",
                           "--stderr", f"{base}.stderr", "--rollout", f"{base}.rollout.jsonl", "--json"],
                          env=orch_env(), capture_output=True, text=True, timeout=60)
    summary = json.loads(proc.stdout)
    assert summary["denied"] and len(summary["denials"]) == 1, summary
