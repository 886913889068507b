"""The raw scenarios: each real CLI run directly (not through orch) against a scripted stub.

Each scenario runs one or two CLI commands in a lab and saves every run as a capture
named like the committed ones in tests/fixtures/cli-captures (`claude_text`, …). The
scripts make the stub answer as the model did when those fixtures were recorded (same
texts, same tool calls, same error), so the drift guard can compare the two normalized
results field by field: a difference is the CLI's doing, not the script's.
"""

from __future__ import annotations

import uuid
from typing import Callable, Optional

from . import script as S
from .lab import Lab, RunResult

# What the model says in these scenarios ({history} and {tool_result} are filled by the stub).
TEXT = "Hello from the fake model. I saw {history} message(s) in this conversation."
AFTER_TOOL = "Tool finished. Result was: {tool_result}"
ERROR_MESSAGE = "fake server injected error 400"
FILE_CONTENT = "hello from fake model\n"
CLI_TIMEOUT = 60.0


def claude_args(prompt: str, *extra: str) -> list[str]:
    return ["-p", prompt, "--output-format", "stream-json", "--verbose", *extra]


def codex_args(prompt: str, *extra: str) -> list[str]:
    # The provider and the quiet settings come from $CODEX_HOME/config.toml (see netns.py).
    return ["exec", "--json", "--skip-git-repo-check", *extra, prompt]


def gemini_args(prompt: str, *extra: str) -> list[str]:
    return ["-p", prompt, "-o", "stream-json", *extra]


def opencode_args(prompt: str, *extra: str) -> list[str]:
    # `opencode run` wraps every message word holding a space in double quotes before the
    # model sees it; the prompt goes in as its space-separated words, after `--`, exactly as
    # orch's adapter passes it, so the model gets it unchanged.
    return ["run", "--format", "json", *extra, "--", *prompt.split(" ")]


def qwen_args(prompt: str, *extra: str) -> list[str]:
    # The provider (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL) comes from the lab's env.
    return ["-p", prompt, "-o", "stream-json", *extra]


ARGS = {"claude": claude_args, "codex": codex_args, "gemini": gemini_args, "opencode": opencode_args,
        "qwen": qwen_args}
# Gemini and Claude say something before a tool call in the recorded runs; Codex did not.
SAY_BEFORE_TOOL = {"claude": {"shell": "I will run a shell command.", "write": "I will write a file."},
                   "gemini": {"shell": "I will use a tool.", "write": "I will use a tool."},
                   "codex": {"shell": "", "write": ""},
                   "opencode": {"shell": "I will run a shell command.", "write": "I will write a file."},
                   "qwen": {"shell": "I will run a shell command.", "write": "I will write a file."}}
# opencode's permission config as its OPENCODE_PERMISSION env var: "ask" is refused headless.
OPENCODE_ASK_EDIT = {"OPENCODE_PERMISSION": '{"edit": "ask"}'}
OPENCODE_ASK_BASH = {"OPENCODE_PERMISSION": '{"bash": "ask"}'}


def run_case(lab: Lab, case: str, cli: str, args: list[str], *steps: dict,
             env: Optional[dict[str, str]] = None) -> RunResult:
    """Script the stub, run one CLI command, save it as capture `case`."""
    lab.stub.script(*steps)
    result = lab.cli(cli, args, env=env, timeout=CLI_TIMEOUT)
    lab.save_capture(case, result, cli)
    return result


def text_scenario(cli: str) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        case = f"{cli}_text"
        return {case: run_case(lab, case, cli, ARGS[cli]("CASE_TEXT say hello"), S.reply(TEXT))}
    return scenario


def shell_scenario(case: str, cli: str, command: str, prompt: str, *flags: str,
                   env: Optional[dict[str, str]] = None) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        steps = (S.shell(command, say=SAY_BEFORE_TOOL[cli]["shell"], last_input="prompt"),
                 S.reply(AFTER_TOOL, last_input="tool_result"))
        return {case: run_case(lab, case, cli, ARGS[cli](prompt, *flags), *steps, env=env)}
    return scenario


def write_scenario(case: str, cli: str, filename: str, *flags: str, as_patch: bool = False,
                   env: Optional[dict[str, str]] = None) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        path = str(lab.workdir(cli) / filename)
        if as_patch:
            call = S.patch(path, FILE_CONTENT, last_input="prompt")
            prompt = f"CASE_PATCH path={path}"
        else:
            call = S.write(path, FILE_CONTENT, say=SAY_BEFORE_TOOL[cli]["write"], last_input="prompt")
            prompt = f"CASE_WRITE path={path}"
        steps = (call, S.reply(AFTER_TOOL, last_input="tool_result"))
        return {case: run_case(lab, case, cli, ARGS[cli](prompt, *flags), *steps, env=env)}
    return scenario


def error_scenario(cli: str, *flags: str) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        case = f"{cli}_error400"
        return {case: run_case(lab, case, cli, ARGS[cli]("CASE_TEXT hi", *flags),
                               S.fail(400, ERROR_MESSAGE, repeat=True))}
    return scenario


def claude_resume(lab: Lab) -> dict[str, RunResult]:
    session = str(uuid.uuid4())
    first = run_case(lab, "claude_session_id", "claude",
                     claude_args("CASE_TEXT first turn", "--session-id", session), S.reply(TEXT))
    second = run_case(lab, "claude_resume", "claude",
                      claude_args("CASE_TEXT second turn", "--resume", session), S.reply(TEXT))
    return {"claude_session_id": first, "claude_resume": second}


def codex_resume(lab: Lab) -> dict[str, RunResult]:
    last_message = lab.scratch.tmp / "codex_session_first.last_message.txt"
    first = run_case(lab, "codex_session_first", "codex",
                     codex_args("CASE_TEXT first turn", "-o", str(last_message)), S.reply(TEXT))
    thread = next((l["thread_id"] for l in first.lines if l.get("type") == "thread.started"), None)
    if thread is None:
        return {"codex_session_first": first}  # the test reports the missing thread id
    second = run_case(lab, "codex_resume", "codex",
                      ["exec", "resume", "--json", "--skip-git-repo-check", thread, "CASE_TEXT second turn"],
                      S.reply(TEXT))
    return {"codex_session_first": first, "codex_resume": second}


def gemini_resume(lab: Lab) -> dict[str, RunResult]:
    session = str(uuid.uuid4())
    first = run_case(lab, "gemini_session_first", "gemini",
                     gemini_args("CASE_TEXT first turn", "--session-id", session), S.reply(TEXT))
    second = run_case(lab, "gemini_resume", "gemini",
                      gemini_args("CASE_TEXT second turn", "--resume", session), S.reply(TEXT))
    return {"gemini_session_first": first, "gemini_resume": second}


def opencode_resume(lab: Lab) -> dict[str, RunResult]:
    first = run_case(lab, "opencode_session_first", "opencode", opencode_args("CASE_TEXT first turn"), S.reply(TEXT))
    # opencode picks its session id itself and prints it on every line as `sessionID`.
    session = next((l.get("sessionID") for l in first.lines if l.get("sessionID")), None)
    if session is None:
        return {"opencode_session_first": first}  # the test reports the missing session id
    second = run_case(lab, "opencode_resume", "opencode",
                      opencode_args("CASE_TEXT second turn", "--session", session), S.reply(TEXT))
    return {"opencode_session_first": first, "opencode_resume": second}


def qwen_resume(lab: Lab) -> dict[str, RunResult]:
    session = str(uuid.uuid4())
    first = run_case(lab, "qwen_session_first", "qwen",
                     qwen_args("CASE_TEXT first turn", "--session-id", session), S.reply(TEXT))
    second = run_case(lab, "qwen_resume", "qwen",
                      qwen_args("CASE_TEXT second turn", "--resume", session), S.reply(TEXT))
    return {"qwen_session_first": first, "qwen_resume": second}


def claude_partial(lab: Lab) -> dict[str, RunResult]:
    return {"claude_partial": run_case(lab, "claude_partial", "claude",
                                       claude_args("CASE_TEXT partial", "--include-partial-messages"), S.reply(TEXT))}


SCENARIOS: dict[str, Callable[[Lab], dict[str, RunResult]]] = {
    "claude_text": text_scenario("claude"),
    "claude_partial": claude_partial,
    "claude_tool": shell_scenario("claude_tool", "claude", "echo hi", "CASE_TOOL please run echo hi",
                                  "--allowedTools", "Bash(echo *)"),
    "claude_default_readonly_bash": shell_scenario("claude_default_readonly_bash", "claude", "echo hi",
                                                   "CASE_TOOL please run echo hi"),
    "claude_deny_bash": shell_scenario("claude_deny_bash", "claude", "sh -c true", "CASE_TOOL cmd=[sh -c true]"),
    "claude_write": write_scenario("claude_write", "claude", "out.txt", "--permission-mode", "acceptEdits"),
    "claude_deny_write": write_scenario("claude_deny_write", "claude", "denied.txt", "--permission-mode", "default"),
    "claude_error400": error_scenario("claude"),
    "claude_resume": claude_resume,
    "codex_text": text_scenario("codex"),
    "codex_tool": shell_scenario("codex_tool", "codex", "echo hi", "CASE_TOOL please run echo hi"),
    "codex_write": write_scenario("codex_write", "codex", "out.txt", "--sandbox", "workspace-write"),
    "codex_patch": write_scenario("codex_patch", "codex", "patched.txt", "--sandbox", "workspace-write", as_patch=True),
    "codex_deny_write": write_scenario("codex_deny_write", "codex", "denied.txt", "--sandbox", "read-only"),
    "codex_error400": error_scenario("codex"),
    "codex_resume": codex_resume,
    "gemini_text": text_scenario("gemini"),
    "gemini_tool": shell_scenario("gemini_tool", "gemini", "echo hi", "CASE_TOOL please run echo hi", "--yolo"),
    "gemini_deny_shell": shell_scenario("gemini_deny_shell", "gemini", "echo hi", "CASE_TOOL please run echo hi"),
    "gemini_write": write_scenario("gemini_write", "gemini", "out.txt", "--approval-mode", "auto_edit"),
    "gemini_deny_write": write_scenario("gemini_deny_write", "gemini", "denied.txt"),
    "gemini_error400": error_scenario("gemini", "-m", "gemini-2.5-pro"),
    "gemini_resume": gemini_resume,
    "opencode_text": text_scenario("opencode"),
    # opencode's default permissions allow the shell and edits; "ask" is refused headless.
    "opencode_tool": shell_scenario("opencode_tool", "opencode", "echo hi", "CASE_TOOL please run echo hi"),
    "opencode_deny_bash": shell_scenario("opencode_deny_bash", "opencode", "echo hi", "CASE_TOOL please run echo hi",
                                         env=OPENCODE_ASK_BASH),
    "opencode_write": write_scenario("opencode_write", "opencode", "out.txt"),
    "opencode_deny_write": write_scenario("opencode_deny_write", "opencode", "denied.txt", env=OPENCODE_ASK_EDIT),
    "opencode_error400": error_scenario("opencode"),
    "opencode_resume": opencode_resume,
    "qwen_text": text_scenario("qwen"),
    "qwen_tool": shell_scenario("qwen_tool", "qwen", "echo hi", "CASE_TOOL please run echo hi",
                                "--allowed-tools", "run_shell_command"),
    "qwen_deny_shell": shell_scenario("qwen_deny_shell", "qwen", "echo hi", "CASE_TOOL please run echo hi"),
    "qwen_write": write_scenario("qwen_write", "qwen", "out.txt", "--approval-mode", "auto-edit"),
    "qwen_deny_write": write_scenario("qwen_deny_write", "qwen", "denied.txt"),
    "qwen_error400": error_scenario("qwen"),
    "qwen_resume": qwen_resume,
}

# Every capture a scenario saves, and the scenario that saves it.
CASES: dict[str, str] = {name: name for name in SCENARIOS}
CASES.update({"claude_session_id": "claude_resume", "codex_session_first": "codex_resume",
              "gemini_session_first": "gemini_resume", "opencode_session_first": "opencode_resume",
              "qwen_session_first": "qwen_resume"})


def cli_of(case: str) -> str:
    return case.split("_", 1)[0]
