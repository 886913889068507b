"""Every genuine capture and every hand-made variant gives the verdict a person reading it
would give: session id, outcome, denials, final text, tool calls, files changed.

The expectations were written by reading each file, not by running the parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from orchestrator.adapters import REAL_CLIS
from orchestrator.runtime.ingest.run_files import parse_run_files

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = FIXTURES / "cli-captures"
VARIANTS = FIXTURES / "cli-variants"

HELLO = "Hello from the fake model. I saw {n} message(s) in this conversation."
CLAUDE_ID = "11111111-2222-4333-8444-555555555555"
RELAYED = "Tool finished. Result was: "  # the stub's model quotes what its tool call returned
ESCALATION_REFUSED = ("approval policy is Never; reject command — you cannot ask for escalated permissions if the "
                      "approval policy is Never")


def policy_rejected(reason: str) -> str:
    """How codex's exec_command handler words an exec-policy refusal (ToolError::Rejected, Debug-printed)."""
    return 'exec_command failed: CreateProcess { message: "Rejected(\\"' + reason + '\\")" }'


GEMINI_ID = "22222222-3333-4444-8555-666666666666"
COPILOT_DENIED = ("Permission denied because no interactive user response was available. Retry in an interactive "
                  "session so the user can approve it, or try an alternative that does not require this permission.")
QWEN_QUOTA_HINT = "Possible quota limitations in place or slow response times detected. Please wait and try again later."
QWEN_DENIED = ('Qwen Code requires permission to use "{tool}", but that permission was declined. '
               'Matching deny rule: "{rule}".')

# name: (session id, outcome, [(denied tool, target)], final text, tool calls, files changed, errors)
CAPTURE_TRUTH = {
    "claude_default_readonly_bash": ("1c714bfb-d738-4313-8dd7-331003000c81", "success", [],
                                     "Tool finished. Result was: hi", 1, [], 0),
    "claude_deny_bash": ("55f363a7-048d-4045-ad7c-39a4167ccbf4", "success", [("Bash", "sh -c true")],
                         "Tool finished. Result was: ERROR: This command requires approval", 1, [], 0),
    "claude_deny_write": ("c3a51cc6-43dd-48f0-8c53-e90f8b9d33f8", "success",
                          [("Write", "/workspace/claude/denied.txt")],
                          "Tool finished. Result was: ERROR: Claude requested permissions to write to "
                          "/workspace/claude/denied.txt, but you haven't granted it yet.", 1, [], 0),
    "claude_error400": ("1655af76-6646-4a00-88a8-fcc3af4c1e8a", "error", [],
                        "API Error: 400 fake server injected error 400", 0, [], 1),
    "claude_partial": ("74feaf95-5e65-4354-a27b-bcf18937db10", "success", [], HELLO.format(n=2), 0, [], 0),
    "claude_resume": (CLAUDE_ID, "success", [], HELLO.format(n=4), 0, [], 0),
    "claude_session_id": (CLAUDE_ID, "success", [], HELLO.format(n=2), 0, [], 0),
    "claude_text": ("bb6bcfdf-64b7-4193-a437-d8c0e695def5", "success", [], HELLO.format(n=2), 0, [], 0),
    "claude_tool": ("b2f7762c-3fbb-4e27-8a48-2fa0a715ca64", "success", [], "Tool finished. Result was: hi", 1, [], 0),
    "claude_write": ("54b16572-3251-4cd5-bddb-815290272d5a", "success", [],
                     "Tool finished. Result was: File created successfully at: /workspace/claude/out.txt "
                     "(file state is current in your context — no need to Read it back)",
                     1, ["/workspace/claude/out.txt"], 0),
    "codex_deny_write": ("01a20dfc-87a5-7ef0-9efa-222fa84be142", "success",
                         [("shell", "/workspace/codex/denied.txt")],
                         "Tool finished. Result was: Chunk ID: 965b7a Wall time: 0.0000 seconds Process exited "
                         "with code 1 Original token count: 19 Output: /bin/bash: line 1: "
                         "/workspace/codex/denied.txt: Read-only file system", 0, [], 0),
    # Refused by codex's tool handlers before anything ran: no item on stdout, the model relays it.
    "codex_refused_additional_permissions": ("01a236e6-3841-7752-91a6-b96589d941eb", "success", [("shell", None)],
                                             RELAYED + ESCALATION_REFUSED, 0, [], 0),
    "codex_refused_escalation": ("01a236e6-3c82-7b00-97c9-f0d3d7d4689b", "success", [("shell", None)],
                                 RELAYED + ESCALATION_REFUSED, 0, [], 0),
    "codex_refused_patch_outside": ("01a236e6-3f4e-79f2-b5d0-672e02674c6c", "success", [("apply_patch", None)],
                                    RELAYED + "patch rejected: writing outside of the project; rejected by user "
                                    "approval settings", 0, [], 0),
    "codex_refused_patch_read_only": ("01a236e6-41fd-76d2-a90e-07aa822e7f3f", "success", [("apply_patch", None)],
                                      RELAYED + "patch rejected: writing is blocked by read-only sandbox; rejected "
                                      "by user approval settings", 0, [], 0),
    "codex_refused_rm_force": ("01a236e6-4410-7bd1-aacb-d0a54fce807a", "success",
                               [("shell", "/bin/bash -lc 'rm -f stale.txt'")],
                               RELAYED + policy_rejected("`/bin/bash -lc 'rm -f stale.txt'` rejected: rm -f style "
                                                         "commands are not permitted. Use a safer approach"), 0, [], 0),
    "codex_refused_rule_forbidden": ("01a236e6-46c9-7c93-a54b-1fb7e9fe5750", "success",
                                     [("shell", "/bin/bash -lc 'git push origin main'")],
                                     RELAYED + policy_rejected("`/bin/bash -lc 'git push origin main'` rejected: "
                                                               "policy forbids commands starting with `git push`"),
                                     0, [], 0),
    "codex_refused_rule_justified": ("01a236e6-4985-7221-8021-a3b922e3472d", "success",
                                     [("shell", "/bin/bash -lc 'git clean -fdx'")],
                                     RELAYED + policy_rejected("`/bin/bash -lc 'git clean -fdx'` rejected: git clean "
                                                               "deletes untracked work; remove files by name"),
                                     0, [], 0),
    "codex_refused_rule_prompt": ("01a236e6-4c55-7980-ba2f-fdadba1eec58", "success", [("shell", None)],
                                  RELAYED + policy_rejected("approval required by policy, but AskForApproval is set "
                                                            "to Never"), 0, [], 0),
    "codex_error400": ("01a20dfc-9a54-7653-b175-743c6793381f", "error", [], "", 0, [], 1),
    "codex_patch": ("01a20dfc-85e0-7b32-891f-3c03deb261e2", "success", [],
                    "Tool finished. Result was: Exit code: 0 Wall time: 0 seconds Output: Success. Updated the "
                    "following files: A /workspace/codex/patched.txt", 1, ["/workspace/codex/patched.txt"], 0),
    "codex_resume": ("01a20dfc-9573-77c3-a785-fde2b7d10585", "success", [], HELLO.format(n=6), 0, [], 0),
    "codex_session_first": ("01a20dfc-9573-77c3-a785-fde2b7d10585", "success", [], HELLO.format(n=4), 0, [], 0),
    "codex_text": ("01a20dfc-6b84-7cb0-ac80-1eb2a3d0eda6", "success", [], HELLO.format(n=4), 0, [], 0),
    "codex_tool": ("01a20dfc-821c-7fe3-a5c0-07a5c28937a2", "success", [],
                   "Tool finished. Result was: Chunk ID: 2783a5 Wall time: 0.0000 seconds Process exited with "
                   "code 0 Original token count: 1 Output: hi", 1, [], 0),
    "codex_write": ("01a20dfc-83f6-7891-97d0-e8101856dd30", "success", [],
                    "Tool finished. Result was: Chunk ID: 82f0c9 Wall time: 0.0000 seconds Process exited with "
                    "code 0 Original token count: 0 Output:", 1, [], 0),
    "gemini_deny_shell": ("9e4a8770-d2f4-4e33-ba86-a028a02fda0f", "success", [("run_shell_command", "echo hi")],
                          'Tool finished. Result was: {"error": "Tool \\"run_shell_command\\" not found. Did you '
                          'mean one of: \\"update_topic\\", \\"grep_search\\", \\"invoke_agent\\"?"}', 1, [], 0),
    "gemini_deny_write": ("6c7916c7-be0f-4957-8f9e-8ae8802f218f", "success",
                          [("write_file", "/workspace/gemini/denied.txt")],
                          'Tool finished. Result was: {"error": "Tool \\"write_file\\" not found. Did you mean one '
                          'of: \\"read_file\\", \\"update_topic\\", \\"grep_search\\"?"}', 1, [], 0),
    "gemini_error400": ("fb5bb105-35ea-4a19-aa79-0a3519760755", "error", [], "", 0, [], 1),
    "gemini_resume": (GEMINI_ID, "success", [], HELLO.format(n=3), 0, [], 0),
    "gemini_session_first": (GEMINI_ID, "success", [], HELLO.format(n=1), 0, [], 0),
    "gemini_text": ("faff0952-e9c4-4ac0-8e57-da31f3cb01a7", "success", [], HELLO.format(n=1), 0, [], 0),
    "gemini_tool": ("bd078e48-7669-4776-b045-4715d2a92b7c", "success", [],
                    'Tool finished. Result was: {"output": "<untrusted_context>\\nOutput: hi\\nProcess Group '
                    'PGID: 4146\\n</untrusted_context>"}', 1, [], 0),
    "gemini_write": ("f93fd791-793d-4a93-b2cc-c442a04d7081", "success", [],
                     'Tool finished. Result was: {"output": "Successfully created and wrote to new file: '
                     '/workspace/gemini/out.txt. Here is the updated code:\\nhello from fake model\\n"}',
                     1, ["/workspace/gemini/out.txt"], 0),
    # usage and rate limits (tests/test_adapter_limits.py reads their limits)
    "claude_usage_limit": ("650a748d-bd81-4133-ae66-7a3f572ff8aa", "error", [],
                           "You've hit your session limit · resets 4:22pm (Europe/Berlin)", 0, [], 1),
    "claude_limit_warning": ("e6376235-2903-4592-b57b-f81047e62568", "success", [], HELLO.format(n=2), 0, [], 0),
    "claude_rate_limit": ("66b82963-91c0-4e05-b8b5-3583f8f474d6", "error", [],
                          "API Error: Request rejected (429) · This request would exceed your account's rate limit. "
                          "Please try again later.", 0, [], 1),
    "codex_usage_limit": ("01a236ec-41bc-7933-959f-a681eba5e668", "error", [], "", 0, [], 1),
    "codex_rate_limit": ("01a236ec-47cd-7692-80d8-4d13ea978227", "error", [], "", 0, [], 1),
    "codex_limit_warning": ("01a236ec-61d3-7c90-b00e-121605b21864", "success", [], HELLO.format(n=4), 0, [], 0),
    "gemini_usage_limit": ("cd536f77-b960-44b9-8da3-2a46704ad4d4", "error", [], "", 0, [], 1),
    "gemini_rate_limit": ("73ea596c-6e00-432b-b2ef-c04f442087fd", "error", [], "", 0, [], 1),
    "gemini_rate_limit_retried": ("22e977a3-74e0-40a6-8950-be779a43abb9", "success", [], HELLO.format(n=1), 0, [], 0),
    "gemini_rate_limit_exhausted": ("455c65f6-40dd-423c-8d43-760212cc7360", "error", [], "", 0, [], 1),
    # opencode stops the run at a refused call: the last text is what the model said before it.
    "opencode_deny_bash": ("ses_dc9166558ffexex1hVHSr8VWD2", "success", [("bash", "echo hi")],
                           "I will run a shell command.", 1, [], 0),
    "opencode_deny_write": ("ses_dc916116fffez4Yh3kLdpXZffH", "success",
                            [("write", "/workspace/opencode/denied.txt")], "I will write a file.", 1, [], 0),
    "opencode_error400": ("ses_dc915ef91ffeBkk697JBi7mvsm", "error", [], "", 0, [], 1),
    "opencode_resume": ("ses_db1f8800bffegrTwraD54v38HX", "success", [], HELLO.format(n=3), 0, [], 0),
    "opencode_session_first": ("ses_db1f8800bffegrTwraD54v38HX", "success", [], HELLO.format(n=1), 0, [], 0),
    "opencode_text": ("ses_dc916c56affefa0khmysbEXp1g", "success", [], HELLO.format(n=1), 0, [], 0),
    "opencode_tool": ("ses_dc9169952ffetY2lvF0qG3X5u9", "success", [], RELAYED + "hi", 1, [], 0),
    "opencode_write": ("ses_dc9163dd3ffe1DxAwedXxfwtjs", "success", [], RELAYED + "Wrote file successfully.", 1,
                       ["/workspace/opencode/out.txt"], 0),
    "qwen_deny_shell": ("de3ef2a2-a2fd-4ed8-b46d-0f3140fc5fc3", "success", [("run_shell_command", "echo hi")],
                        RELAYED + QWEN_DENIED.format(tool="run_shell_command", rule="run_shell_command"), 1, [], 0),
    "qwen_deny_write": ("975662ac-0f69-4f2a-9e44-10c9929d5471", "success",
                        [("write_file", "/workspace/qwen/denied.txt")],
                        RELAYED + QWEN_DENIED.format(tool="write_file", rule="edit"), 1, [], 0),
    # Qwen Code ends a model error with result/success and exit 0; the text says what it was.
    "qwen_error400": ("0d974f43-a3cc-44ac-8b6f-229af216ccb2", "error", [],
                      "[API Error: 400 fake server injected error 400]", 0, [], 1),
    "qwen_resume": ("9b438e75-6a78-4984-aac8-7e0738101a57", "success", [], HELLO.format(n=5), 0, [], 0),
    "qwen_session_first": ("9b438e75-6a78-4984-aac8-7e0738101a57", "success", [], HELLO.format(n=3), 0, [], 0),
    "qwen_text": ("607bbf3f-5d62-4047-8425-ab6cb0454edf", "success", [], HELLO.format(n=3), 0, [], 0),
    "qwen_tool": ("d00f130a-dc30-415b-a605-208b9deb8e8a", "success", [],
                  RELAYED + "Command: echo hi Directory: (root) Output: hi Error: (none) Exit Code: 0 Signal: 0 "
                  "Process Group PGID: 9520", 1, [], 0),
    "qwen_write": ("2819e8b5-9850-435b-baf0-c5cfd36243be", "success", [],
                   RELAYED + "Successfully created and wrote to new file: /workspace/qwen/out.txt.", 1,
                   ["/workspace/qwen/out.txt"], 0),
    # the open CLIs at a provider's limit, out of credit, with a wrong key (test_adapter_open_limits.py)
    "opencode_rate_limit": ("ses_db1f8c5dbffeE65rAwaobsHm3a", "error", [], "", 0, [], 1),
    "opencode_billing": ("ses_db1f5da83ffex60ykVk25OVaCP", "error", [], "", 0, [], 1),
    "opencode_credits": ("ses_db1f9d6caffemgJzngcXkAleno", "error", [], "", 0, [], 1),
    "opencode_unauthorized": ("ses_db1f97a3fffe5GKDA2rRFLB37e", "error", [], "", 0, [], 1),
    "opencode_unauthorized_gateway": ("ses_db1f91de6ffeo8jZfq3aycC0xD", "error", [], "", 0, [], 1),
    "qwen_rate_limit": ("c138b27e-60bb-43a6-b54d-8c43c542db5a", "error", [],
                        "[API Error: 429 Rate limit reached for qwen-stub in organization org-stub on requests per "
                        "min (RPM): Limit 500, Used 500, Requested 1. Please try again in 20s.]\n" + QWEN_QUOTA_HINT,
                        0, [], 1),
    "qwen_billing": ("edbb5934-5d52-47f3-835b-dc06579a666b", "error", [],
                     "[API Error: 429 You exceeded your current quota, please check your plan and billing details. "
                     "For more information on this error, read the docs: "
                     "https://platform.openai.com/docs/guides/error-codes/api-errors.]\n" + QWEN_QUOTA_HINT, 0, [], 1),
    "qwen_credits": ("5adae4bc-549d-4ff5-a40e-5b1c23b7d427", "error", [],
                     "[API Error: 402 Insufficient credits. Add more using https://openrouter.ai/settings/credits]",
                     0, [], 1),
    "qwen_unauthorized": ("b05cd9ec-8e0c-453f-b5df-63037b720434", "error", [],
                          "[API Error: 401 Incorrect API key provided: sk-dummy***-key. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.]", 0, [], 1),
    "qwen_unauthorized_gateway": ("5b9e9852-86e3-4cf6-a14d-8b1b78c314c7", "error", [],
                                  "[API Error: 401 invalid x-api-key]", 0, [], 1),
    # GitHub Copilot CLI: a refused call goes back to the model, which relays it
    "copilot_text": ("22efc8f8-6552-45a8-8d7d-0fe2cf401644", "success", [], HELLO.format(n=1), 0, [], 0),
    "copilot_tool": ("b00217eb-a991-4252-ad42-cb1b293b02d3", "success", [],
                     RELAYED + "hi <shellId: 0 completed with exit code 0>", 1, [], 0),
    "copilot_deny_shell": ("af0241f1-89ec-43be-a232-19cd63e5a247", "success", [("bash", "touch made.txt")],
                           RELAYED + COPILOT_DENIED, 1, [], 0),
    "copilot_write": ("ded8f00e-2188-44cc-834c-f73dbd6a219e", "success", [],
                      RELAYED + "Created file /workspace/copilot/out.txt with 22 characters", 1,
                      ["/workspace/copilot/out.txt"], 0),
    "copilot_deny_write": ("ed922eef-ab48-45b4-b71e-9f42dbe3acfb", "success",
                           [("create", "/workspace/copilot/denied.txt")], RELAYED + COPILOT_DENIED, 1, [], 0),
    "copilot_error400": ("b5b5dd6e-c7a4-4033-8073-86dd96e0aee5", "error", [], "", 0, [], 1),
    "copilot_session_first": ("ef832968-88bb-4e0d-8af3-5e675fbe26c1", "success", [], HELLO.format(n=1), 0, [], 0),
    "copilot_resume": ("ef832968-88bb-4e0d-8af3-5e675fbe26c1", "success", [], HELLO.format(n=3), 0, [], 0),
    "copilot_rate_limit": ("9ec883d1-8d1d-45d6-8697-7311d1e60f65", "error", [], "", 0, [], 1),
    "copilot_billing": ("54a8e9ce-e2dc-4091-a99e-806184a94e9c", "error", [], "", 0, [], 1),
    "copilot_credits": ("ba63cd88-76ae-4c25-872c-08f337c01258", "error", [], "", 0, [], 1),
    "copilot_unauthorized": ("60453b99-916e-48a6-9649-bae90f9260c1", "error", [], "", 0, [], 1),
    "copilot_unauthorized_gateway": ("0ab4e1db-6b68-4aa8-a1a7-47abcff4d497", "error", [], "", 0, [], 1),
}

# Usage of a few captures (input, output, cost): claude's cost is total_cost_usd.
# (input, output, reported cost or None when orch estimates it: see test_spend_pricing.py)
# opencode adds its steps up; qwen's result is the CLI session's running total.
USAGE_TRUTH = {
    "claude_deny_write": (24, 40, 0.0011200000000000001),
    "claude_error400": (0, 0, 0.0),
    "codex_tool": (24, 40, None),
    "gemini_deny_shell": (36, 60, None),
    # opencode prices a model its catalog has no price for at 0: orch estimates (here: price unknown)
    "opencode_tool": (24, 40, None),
    "opencode_deny_write": (12, 20, None),
    "opencode_error400": (0, 0, 0.0),
    "qwen_tool": (24, 40, None),
    "qwen_resume": (24, 40, None),
    "qwen_error400": (0, 0, 0.0),
}

V = "7d3f1c52-9a1e-4c0b-8f7e-2b6a1d9e4c11"
# name: (cli, session id, outcome, [(tool, target)], final text, malformed, unknown, errors)
VARIANT_TRUTH = {
    "claude_permission_denied_2.1.328": ("claude", V, "success", [("Write", "/workspace/claude/notes.md")],
                                         "I could not write /workspace/claude/notes.md: permission was not granted.",
                                         0, 0, 0),
    "claude_permission_denied_bash_reason": ("claude", V, "success", [("Bash", "npm test")],
                                             "The test command needs approval.", 0, 0, 0),
    "claude_max_turns": ("claude", V, "max_turns", [], "Let me look at the tests first.", 0, 0, 1),
    "claude_api_retry": ("claude", V, "success", [], "Done after the server recovered.", 0, 0, 0),
    # hook_started and telemetry_v9 are unknown; its rate_limit_event (status allowed) is read, and says nothing
    "claude_unknown_types": ("claude", V, "success", [], "All set.", 0, 2, 0),
    "claude_cut_off": ("claude", V, "incomplete", [], "Starting the refactor.", 1, 0, 0),
    "claude_non_utf8": ("claude", V, "success", [], "caf\u00e9 done", 2, 0, 0),
    "codex_unknown_model": ("codex", "01a20e11-1111-7aaa-8bbb-0c0c0c0c0c01", "success", [],
                            "Hello from the fallback model.", 0, 0, 1),
    "codex_patch_rejected": ("codex", "01a20e22-2222-7aaa-8bbb-0c0c0c0c0c02", "success", [("apply_patch", None)],
                             "Tool finished. Result was: patch rejected: writing is blocked by read-only sandbox; "
                             "rejected by user approval settings", 0, 0, 0),
    "codex_escalation_refused": ("codex", "01a20e33-3333-7aaa-8bbb-0c0c0c0c0c03", "success",
                                 [("shell", "curl -s https://example.com")],
                                 "I could not fetch the page: `curl -s https://example.com` rejected: blocked by policy",
                                 0, 0, 0),
    "codex_rollout_only": ("codex", "01a20e44-4444-7aaa-8bbb-0c0c0c0c0c04", "success",
                           [("shell", "printf 'a\\n' > /workspace/codex/a.txt"),
                            ("shell", "printf 'b\\n' > /workspace/codex/b.txt")],
                           "I was unable to save the two files.", 0, 0, 0),
    "codex_resumed_after_denial": ("codex", "01a20e77-7777-7aaa-8bbb-0c0c0c0c0c07", "success", [],
                                   "Done: notes.txt is written.", 0, 0, 0),
    "codex_reconnect": ("codex", "01a20e66-6666-7aaa-8bbb-0c0c0c0c0c06", "success", [], "Back online: done.", 0, 1, 0),
    "codex_cut_off": ("codex", "01a20e55-5555-7aaa-8bbb-0c0c0c0c0c05", "incomplete", [], "", 0, 0, 0),
    "gemini_policy_violation": ("gemini", "3c1e9a70-1d2e-4f3a-9b4c-5d6e7f8a9b01", "success",
                                [("run_shell_command", "rm -rf build")], "The command was denied by policy.", 0, 0, 0),
    "gemini_unknown_types": ("gemini", "3c1e9a70-1d2e-4f3a-9b4c-5d6e7f8a9b03", "success", [], "Short answer.", 0, 1, 0),
    "gemini_cut_off": ("gemini", "3c1e9a70-1d2e-4f3a-9b4c-5d6e7f8a9b02", "incomplete", [], "The module parses JSON ",
                       0, 0, 0),
}


def _side(folder: Path, name: str, suffix: str) -> Optional[Path]:
    path = folder / f"{name}{suffix}"
    return path if path.exists() else None


def test_every_capture_has_an_expectation():
    names = {p.name[: -len(".jsonl")] for p in CAPTURES.glob("*.jsonl") if not p.name.endswith(".rollout.jsonl")}
    assert {name.split("_", 1)[0] for name in names} == set(REAL_CLIS)
    assert names == set(CAPTURE_TRUTH), "a capture was added or removed: read it and extend CAPTURE_TRUTH"


def test_every_variant_has_an_expectation():
    names = {p.name[: -len(".jsonl")] for p in VARIANTS.glob("*.jsonl")
             if not p.name.endswith(".rollout.jsonl") and p.name != "empty.jsonl"}
    assert names == set(VARIANT_TRUTH)


@pytest.mark.parametrize("name", sorted(CAPTURE_TRUTH))
def test_capture_verdict(name):
    session_id, outcome, denials, final_text, tool_calls, files, errors = CAPTURE_TRUTH[name]
    cli = name.split("_", 1)[0]
    s = parse_run_files(cli, CAPTURES / f"{name}.jsonl", _side(CAPTURES, name, ".stderr"))
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
def test_capture_usage(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path))  # no config.toml naming a model
    s = parse_run_files(name.split("_", 1)[0], CAPTURES / f"{name}.jsonl")
    inp, out, cost = USAGE_TRUTH[name]
    assert (s.usage.input_tokens, s.usage.output_tokens) == (inp, out)
    assert s.usage.cost_estimated is (cost is None)
    if cost is not None:
        assert s.usage.cost_usd == cost


@pytest.mark.parametrize("name, words, tool_id", [
    ("claude_deny_write", "haven't granted it yet", "toolu_e4b66cac90c94c398afd"),
    ("codex_deny_write", "Read-only file system", None),
    ("gemini_deny_write", 'Tool "write_file" not found', None),
    ("opencode_deny_write", "The user rejected permission to use this specific tool", "call_42c723e31d2d469ebc24"),
    # qwen reports it in the tool_result and again in the result's permission_denials: one denial
    ("qwen_deny_write", "but that permission was declined", "call_75f8ad73113c435ebe97"),
])
def test_denials_carry_the_refusal_text_and_count_once(name, words, tool_id):
    capture = CAPTURES / f"{name}.jsonl"
    (denial,) = parse_run_files(name.split("_", 1)[0], capture, _side(CAPTURES, name, ".stderr")).denials
    assert words in denial.message
    if tool_id:
        assert denial.tool_id == tool_id
    if name.startswith("qwen"):
        assert capture.read_text().count(tool_id) >= 3


@pytest.mark.parametrize("name", sorted(VARIANT_TRUTH))
def test_variant_verdict(name):
    cli, session_id, outcome, denials, final_text, malformed, unknown, errors = VARIANT_TRUTH[name]
    s = parse_run_files(cli, VARIANTS / f"{name}.jsonl", _side(VARIANTS, name, ".stderr"),
                        _side(VARIANTS, name, ".rollout.jsonl"))
    assert s.session_id == session_id
    assert s.outcome.value == outcome
    assert [(d.tool, d.target) for d in s.denials] == denials
    assert s.denied is bool(denials)
    assert s.final_text == final_text
    assert s.malformed_lines == malformed
    assert s.unknown_events == unknown
    assert len(s.errors) == errors


def test_claude_denial_reported_three_times_counts_once():
    s = parse_run_files("claude", VARIANTS / "claude_permission_denied_2.1.328.jsonl")
    assert len(s.denials) == 1 and s.denials[0].tool_id == "toolu_0a1b2c3d4e5f60718293a4b5"


def test_codex_patch_denial_is_one_whichever_sources_are_read():
    base = VARIANTS / "codex_patch_rejected"
    stdout, stderr, rollout = Path(f"{base}.jsonl"), Path(f"{base}.stderr"), Path(f"{base}.rollout.jsonl")
    for args in ((stdout,), (stdout, stderr), (stdout, None, rollout), (stdout, stderr, rollout)):
        s = parse_run_files("codex", *args)
        assert len(s.denials) == 1, args
        assert s.denials[0].tool == "apply_patch"


def test_codex_stderr_alone_reports_the_rejected_patch(tmp_path):
    """Without the later message (a run killed right after), the router line still counts."""
    stdout = tmp_path / "out.jsonl"
    stdout.write_text('{"type":"thread.started","thread_id":"01a20e22-2222-7aaa-8bbb-0c0c0c0c0c02"}\n')
    s = parse_run_files("codex", stdout, VARIANTS / "codex_patch_rejected.stderr")
    assert [(d.tool, d.target) for d in s.denials] == [("apply_patch", None)]
    assert s.outcome.value == "incomplete"


def test_codex_rollout_is_needed_when_the_message_is_vague():
    stdout = VARIANTS / "codex_rollout_only.jsonl"
    assert parse_run_files("codex", stdout).denials == []
    with_rollout = parse_run_files("codex", stdout, rollout=VARIANTS / "codex_rollout_only.rollout.jsonl")
    assert [d.tool_id for d in with_rollout.denials] == ["call_exec_1", "call_exec_2"]


def test_codex_rollout_of_a_resumed_thread_counts_only_this_runs_turn(tmp_path):
    """The rollout keeps every turn of the thread; the first run's refusal is not the resume's."""
    stem = VARIANTS / "codex_resumed_after_denial"
    resumed = parse_run_files("codex", Path(f"{stem}.jsonl"), rollout=Path(f"{stem}.rollout.jsonl"))
    assert resumed.denials == [] and resumed.outcome.value == "success"
    # Read right after the first run, the same file (then one turn long) shows its refusal.
    lines = Path(f"{stem}.rollout.jsonl").read_text().splitlines(keepends=True)
    first_turn = tmp_path / "first.rollout.jsonl"
    first_turn.write_text("".join(lines[: next(i for i, l in enumerate(lines) if "thread_settings_applied" in l)]))
    stdout = tmp_path / "first.jsonl"
    stdout.write_text('{"type":"thread.started","thread_id":"01a20e77-7777-7aaa-8bbb-0c0c0c0c0c07"}\n'
                      '{"type":"turn.started"}\n'
                      '{"type":"item.completed","item":{"id":"item_0","type":"agent_message",'
                      '"text":"I was not allowed to write notes.txt."}}\n'
                      '{"type":"turn.completed","usage":{"input_tokens":24,"output_tokens":40}}\n')
    first = parse_run_files("codex", stdout, rollout=first_turn)
    assert [(d.tool, d.target, d.tool_id) for d in first.denials] == [
        ("shell", "printf 'notes\\n' > /workspace/codex/notes.txt", "call_first")]


def test_codex_usage_is_the_thread_total():
    s = parse_run_files("codex", CAPTURES / "codex_resume.jsonl")
    assert (s.usage.input_tokens, s.usage.output_tokens) == (24, 40)


def test_empty_stdout_is_incomplete():
    for cli in ("claude", "codex", "gemini"):
        s = parse_run_files(cli, VARIANTS / "empty.jsonl")
        assert s.outcome.value == "incomplete" and s.session_id is None and s.malformed_lines == 0


def test_a_50_mb_line_is_survived(tmp_path):
    """One 50 MB tool result (valid JSON) and one 50 MB line of garbage, then a normal end."""
    src = (CAPTURES / "claude_tool.jsonl").read_bytes().split(b"\n")
    big_result = (b'{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_f28c6dc9adb24db89aa7",'
                  b'"type":"tool_result","content":"' + b"x" * 50_000_000 + b'","is_error":false}]}}')
    garbage = b"{" + b"\x00\xff" * 25_000_000
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(src[:3] + [big_result, garbage] + src[4:]))
    s = parse_run_files("claude", path)
    assert s.outcome.value == "success"
    assert s.final_text == "Tool finished. Result was: hi"
    assert s.malformed_lines == 1
