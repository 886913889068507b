"""The raw scenarios: each real CLI run directly (not through orch) against a scripted stub.

Each scenario runs one or two CLI commands in a lab and saves every run as a capture
named like the committed ones in tests/fixtures/cli-captures (`claude_text`, …). The
scripts make the stub answer as the model did when those fixtures were recorded (same
texts, same tool calls, same error), so the drift guard can compare the two normalized
results field by field: a difference is the CLI's doing, not the script's.
"""

from __future__ import annotations

import uuid
from pathlib import Path
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


def copilot_args(prompt: str, *extra: str) -> list[str]:
    # The provider (COPILOT_PROVIDER_BASE_URL, COPILOT_MODEL …, COPILOT_OFFLINE) comes from the lab's env.
    return ["-p", prompt, "--output-format", "json", *extra]


ARGS = {"claude": claude_args, "codex": codex_args, "gemini": gemini_args, "opencode": opencode_args,
        "qwen": qwen_args, "copilot": copilot_args}
# Gemini and Claude say something before a tool call in the recorded runs; Codex did not.
SAY_BEFORE_TOOL = {"claude": {"shell": "I will run a shell command.", "write": "I will write a file."},
                   "gemini": {"shell": "I will use a tool.", "write": "I will use a tool."},
                   "codex": {"shell": "", "write": ""},
                   "opencode": {"shell": "I will run a shell command.", "write": "I will write a file."},
                   "qwen": {"shell": "I will run a shell command.", "write": "I will write a file."},
                   "copilot": {"shell": "I will run a shell command.", "write": "I will write a file."}}
# opencode's permission config as its OPENCODE_PERMISSION env var: "ask" is refused headless.
OPENCODE_ASK_EDIT = {"OPENCODE_PERMISSION": '{"edit": "ask"}'}
OPENCODE_ASK_BASH = {"OPENCODE_PERMISSION": '{"bash": "ask"}'}


def run_case(lab: Lab, case: str, cli: str, args: list[str], *steps: dict,
             env: Optional[dict[str, str]] = None, timeout: float = CLI_TIMEOUT) -> RunResult:
    """Script the stub, run one CLI command, save it as capture `case`."""
    lab.stub.script(*steps)
    result = lab.cli(cli, args, env=env, timeout=timeout)
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
    # With orch's log flags: its stderr names the model the usage is priced by.
    logs = ("--print-logs", "--log-level", "INFO")
    first = run_case(lab, "opencode_session_first", "opencode", opencode_args("CASE_TEXT first turn", *logs),
                     S.reply(TEXT))
    # opencode picks its session id itself and prints it on every line as `sessionID`.
    session = next((l.get("sessionID") for l in first.lines if l.get("sessionID")), None)
    if session is None:
        return {"opencode_session_first": first}  # the test reports the missing session id
    second = run_case(lab, "opencode_resume", "opencode",
                      opencode_args("CASE_TEXT second turn", "--session", session, *logs), S.reply(TEXT))
    return {"opencode_session_first": first, "opencode_resume": second}


def qwen_resume(lab: Lab) -> dict[str, RunResult]:
    session = str(uuid.uuid4())
    first = run_case(lab, "qwen_session_first", "qwen",
                     qwen_args("CASE_TEXT first turn", "--session-id", session), S.reply(TEXT))
    second = run_case(lab, "qwen_resume", "qwen",
                      qwen_args("CASE_TEXT second turn", "--resume", session), S.reply(TEXT))
    return {"qwen_session_first": first, "qwen_resume": second}


def copilot_resume(lab: Lab) -> dict[str, RunResult]:
    session = str(uuid.uuid4())
    first = run_case(lab, "copilot_session_first", "copilot",
                     copilot_args("CASE_TEXT first turn", "--session-id", session), S.reply(TEXT))
    second = run_case(lab, "copilot_resume", "copilot",
                      copilot_args("CASE_TEXT second turn", "--resume", session), S.reply(TEXT))
    return {"copilot_session_first": first, "copilot_resume": second}


def claude_partial(lab: Lab) -> dict[str, RunResult]:
    return {"claude_partial": run_case(lab, "claude_partial", "claude",
                                       claude_args("CASE_TEXT partial", "--include-partial-messages"), S.reply(TEXT))}


# Refusals codex's tool handlers send back to the model before anything runs (codex 0.169.0;
# the list, with where each comes from, is in specifications/CLI_PERMISSIONS_SPEC.md §3).
# Each is run at orch's own flags for the rung it shows up at: `edit` is workspace-write
# without /tmp and $TMPDIR, as CodexAdapter.permission_args gives it.
CODEX_READ = ("--sandbox", "read-only")
CODEX_EDIT = ("--sandbox", "workspace-write", "-c", "sandbox_workspace_write.exclude_slash_tmp=true",
              "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true")
#: $CODEX_HOME/rules/refusals.rules for the exec-policy cases (a user's own rules file)
REFUSAL_RULES = """prefix_rule(pattern=["git", "push"], decision="forbidden")
prefix_rule(pattern=["git", "clean"], decision="forbidden",
            justification="git clean deletes untracked work; remove files by name")
prefix_rule(pattern=["git", "fetch"], decision="prompt")
"""
ESCALATION_JUSTIFICATION = "Allow writing escalated.txt outside the sandbox?"


def codex_refusal(case: str, flags: tuple[str, ...], call: Callable[[Lab], dict],
                  rules: bool = False) -> Callable[[Lab], dict[str, RunResult]]:
    """The model makes one call (`call(lab)`, a step) the handler refuses, then relays what came back."""
    def scenario(lab: Lab) -> dict[str, RunResult]:
        rules_file = lab.scratch.codex_home / "rules" / "refusals.rules"
        if rules:
            rules_file.parent.mkdir(exist_ok=True)
            rules_file.write_text(REFUSAL_RULES)
        try:
            steps = (call(lab), S.reply(AFTER_TOOL, last_input="tool_result"))
            return {case: run_case(lab, case, "codex", codex_args(f"CASE_REFUSED {case}", *flags), *steps)}
        finally:
            rules_file.unlink(missing_ok=True)
    return scenario


def _exec(cmd: str, **extra: str) -> Callable[[Lab], dict]:
    return lambda lab: S.tool("exec_command", {"cmd": cmd, **extra}, last_input="prompt")


def _patch_at(where: Callable[[Lab], Path]) -> Callable[[Lab], dict]:
    return lambda lab: S.patch(str(where(lab)), FILE_CONTENT, last_input="prompt")


CODEX_REFUSALS: dict[str, Callable[[Lab], dict[str, RunResult]]] = {
    "codex_refused_escalation": codex_refusal(
        "codex_refused_escalation", CODEX_EDIT,
        _exec("touch escalated.txt", sandbox_permissions="require_escalated", justification=ESCALATION_JUSTIFICATION)),
    "codex_refused_additional_permissions": codex_refusal(
        "codex_refused_additional_permissions", CODEX_EDIT,
        lambda lab: S.tool("exec_command", {
            "cmd": f"touch {lab.scratch.tmp / 'extra.txt'}", "sandbox_permissions": "with_additional_permissions",
            "additional_permissions": {"file_system": {"write": [str(lab.scratch.tmp)]}}}, last_input="prompt")),
    "codex_refused_patch_read_only": codex_refusal(
        "codex_refused_patch_read_only", CODEX_READ, _patch_at(lambda lab: lab.workdir("codex") / "patched.txt")),
    "codex_refused_patch_outside": codex_refusal(
        "codex_refused_patch_outside", CODEX_EDIT, _patch_at(lambda lab: lab.scratch.tmp / "outside.txt")),
    "codex_refused_rm_force": codex_refusal("codex_refused_rm_force", CODEX_EDIT, _exec("rm -f stale.txt")),
    "codex_refused_rule_forbidden": codex_refusal(
        "codex_refused_rule_forbidden", CODEX_EDIT, _exec("git push origin main"), rules=True),
    "codex_refused_rule_justified": codex_refusal(
        "codex_refused_rule_justified", CODEX_EDIT, _exec("git clean -fdx"), rules=True),
    "codex_refused_rule_prompt": codex_refusal(
        "codex_refused_rule_prompt", CODEX_EDIT, _exec("git fetch origin"), rules=True),
}


# ---- usage and rate limits (CLI_PERMISSIONS_SPEC.md, "Usage limits and rate limits")

# How far ahead the stub's limit resets, and the zone the CLIs print local times in.
LIMIT_RESETS_IN = 7200
LIMIT_TZ = "Europe/Berlin"
# A claude.ai login: claude sends the dummy token as a bearer and reads the unified
# rate-limit headers; an empty ANTHROPIC_API_KEY keeps the API-key path out of the way.
CLAUDE_SUBSCRIPTION = {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-orch-dummy", "ANTHROPIC_API_KEY": ""}


def limit_scenario(case: str, cli: str, *steps: dict, flags: tuple[str, ...] = (),
                   env: Optional[dict[str, str]] = None, timeout: float = CLI_TIMEOUT,
                   ) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        return {case: run_case(lab, case, cli, ARGS[cli]("CASE_TEXT hi", *flags), *steps,
                               env={"TZ": LIMIT_TZ, **(env or {})}, timeout=timeout)}
    return scenario


LIMIT_SCENARIOS: dict[str, Callable[[Lab], dict[str, RunResult]]] = {
    # claude.ai session limit: a rate_limit_event, "You've hit your session limit · resets …", one request.
    "claude_usage_limit": limit_scenario("claude_usage_limit", "claude",
                                         S.limit("five_hour", resets_in=LIMIT_RESETS_IN, repeat=True),
                                         env=CLAUDE_SUBSCRIPTION),
    # claude.ai close to its weekly limit: the answer comes, with a rate_limit_event allowed_warning.
    "claude_limit_warning": limit_scenario("claude_limit_warning", "claude",
                                           S.near_limit(S.reply(TEXT), "seven_day", utilization=0.8, resets_in=86400),
                                           env=CLAUDE_SUBSCRIPTION),
    # API key: claude retries the 429 itself (api_retry lines; two here, ten by default), then fails.
    "claude_rate_limit": limit_scenario("claude_rate_limit", "claude",
                                        S.limit("five_hour", resets_in=LIMIT_RESETS_IN, repeat=True),
                                        env={"CLAUDE_CODE_MAX_RETRIES": "2"}),
    # ChatGPT plan at its limit: usage_limit_reached, "You’ve hit your usage limit. … try again at …".
    "codex_usage_limit": limit_scenario("codex_usage_limit", "codex",
                                        S.limit(resets_in=LIMIT_RESETS_IN, repeat=True)),
    # An API key over its requests per minute: five "Reconnecting... n/5", then "exceeded retry limit".
    "codex_rate_limit": limit_scenario("codex_rate_limit", "codex", S.limit("minute", retry_after=1, repeat=True)),
    # Close to the 5-hour window: nothing on stdout; the rollout's token_count says 92%.
    "codex_limit_warning": limit_scenario("codex_limit_warning", "codex",
                                          S.near_limit(S.reply(TEXT), "five_hour", utilization=0.92,
                                                       resets_in=3000)),
    # Per-day quota: no retry, "You have exhausted your daily quota on this model."
    "gemini_usage_limit": limit_scenario("gemini_usage_limit", "gemini", S.limit("daily", repeat=True),
                                         flags=("-m", "gemini-2.5-pro")),
    # Per-minute quota with a retryDelay beyond gemini's 300 s: no retry, the API's words and the delay.
    "gemini_rate_limit": limit_scenario("gemini_rate_limit", "gemini",
                                        S.limit("minute", retry_after=LIMIT_RESETS_IN, repeat=True),
                                        flags=("-m", "gemini-2.5-pro")),
    # Per-minute quota with a short retryDelay, once: gemini waits (at least 5 s) and retries by itself.
    "gemini_rate_limit_retried": limit_scenario("gemini_rate_limit_retried", "gemini",
                                                S.limit("minute", retry_after=1), S.reply(TEXT),
                                                flags=("-m", "gemini-2.5-pro")),
}

# ---- the open CLIs' limits and logins, run as orch runs them (OPEN_CLI_FLAGS, OPEN_CLI_ENV):
# opencode with its log on stderr, Qwen Code with orch's maxRetries 0 (else it retries for ~45 min).
OPEN_RATE_RESETS_IN = 20  # "Please try again in 20s", the window's reset
OPEN_RATE_RETRY_AFTER = 1  # retry-after: the wait before each of the CLI's own retries
OPEN_CLIS = ("opencode", "qwen", "copilot")
OPEN_CLI_FLAGS = {"opencode": ("--print-logs", "--log-level", "INFO")}


def open_cli_env(lab: Lab, cli: str) -> dict[str, str]:
    """The environment orch adds for the CLI: for Qwen Code its system-defaults file (maxRetries 0)."""
    if cli != "qwen":
        return {}
    from orchestrator.adapters.qwen import SYSTEM_DEFAULTS, SYSTEM_DEFAULTS_ENV
    import json

    path = lab.scratch.root / "qwen-system-defaults.json"
    path.write_text(json.dumps(SYSTEM_DEFAULTS))
    return {SYSTEM_DEFAULTS_ENV: str(path)}


def open_limit_scenario(case: str, cli: str, *steps: dict, timeout: float = 300) -> Callable[[Lab], dict[str, RunResult]]:
    def scenario(lab: Lab) -> dict[str, RunResult]:
        return {case: run_case(lab, case, cli, ARGS[cli]("CASE_TEXT hi", *OPEN_CLI_FLAGS.get(cli, ())), *steps,
                               env=open_cli_env(lab, cli), timeout=timeout)}
    return scenario


def open_rate_limit(cli: str) -> Callable[[Lab], dict[str, RunResult]]:
    return open_limit_scenario(f"{cli}_rate_limit", cli, S.limit("minute", resets_in=OPEN_RATE_RESETS_IN,
                                                                  retry_after=OPEN_RATE_RETRY_AFTER, repeat=True))


def open_billing(cli: str) -> Callable[[Lab], dict[str, RunResult]]:
    return open_limit_scenario(f"{cli}_billing", cli, S.limit("billing", repeat=True))


OPEN_LIMIT_SCENARIOS: dict[str, Callable[[Lab], dict[str, RunResult]]] = {}
for _cli in OPEN_CLIS:
    OPEN_LIMIT_SCENARIOS.update({
        # OpenRouter's 402: no CLI retries it; an account out of credit
        f"{_cli}_credits": open_limit_scenario(f"{_cli}_credits", _cli, S.limit("credits", repeat=True)),
        # a wrong key: OpenAI's words ("Incorrect API key provided"), then a gateway's ("invalid x-api-key")
        f"{_cli}_unauthorized": open_limit_scenario(f"{_cli}_unauthorized", _cli, S.unauthorized(repeat=True)),
        f"{_cli}_unauthorized_gateway": open_limit_scenario(f"{_cli}_unauthorized_gateway", _cli,
                                                            S.unauthorized(S.ANTHROPIC_BAD_KEY, repeat=True)),
    })
# The CLIs' own retries of a persistent 429 honour retry-after (opencode, Copilot: five, seconds here).
OPEN_LIMIT_SCENARIOS.update({f"{cli}_rate_limit": open_rate_limit(cli) for cli in ("opencode", "copilot")})

# Too slow for every run (gemini retries a short per-minute 429 ten times, ~4 minutes; Qwen
# Code seven times whatever retry-after says, ~70 s; opencode and Copilot back off for about
# a minute on a 429 without retry-after); conftest.slow_bank runs them side by side in the
# background from the first real-CLI test on, and the tests reading them run last.
SLOW_SCENARIOS: dict[str, Callable[[Lab], dict[str, RunResult]]] = {
    "gemini_rate_limit_exhausted": limit_scenario("gemini_rate_limit_exhausted", "gemini",
                                                  S.limit("minute", retry_after=1, repeat=True),
                                                  flags=("-m", "gemini-2.5-pro"), timeout=420),
    "qwen_rate_limit": open_rate_limit("qwen"),
    **{f"{cli}_billing": open_billing(cli) for cli in OPEN_CLIS},
}

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
    **CODEX_REFUSALS,
    "gemini_text": text_scenario("gemini"),
    "gemini_tool": shell_scenario("gemini_tool", "gemini", "echo hi", "CASE_TOOL please run echo hi", "--yolo"),
    "gemini_deny_shell": shell_scenario("gemini_deny_shell", "gemini", "echo hi", "CASE_TOOL please run echo hi"),
    "gemini_write": write_scenario("gemini_write", "gemini", "out.txt", "--approval-mode", "auto_edit"),
    "gemini_deny_write": write_scenario("gemini_deny_write", "gemini", "denied.txt"),
    "gemini_error400": error_scenario("gemini", "-m", "gemini-2.5-pro"),
    "gemini_resume": gemini_resume,
    **LIMIT_SCENARIOS,
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
    "copilot_text": text_scenario("copilot"),
    # Copilot runs read-only commands (echo) without an allowance; `shell(PROG)` names one program.
    "copilot_tool": shell_scenario("copilot_tool", "copilot", "echo hi", "CASE_TOOL please run echo hi",
                                   "--allow-tool", "shell(echo)"),
    "copilot_deny_shell": shell_scenario("copilot_deny_shell", "copilot", "touch made.txt",
                                         "CASE_TOOL cmd=[touch made.txt]"),
    "copilot_write": write_scenario("copilot_write", "copilot", "out.txt", "--allow-tool", "write"),
    "copilot_deny_write": write_scenario("copilot_deny_write", "copilot", "denied.txt"),
    "copilot_error400": error_scenario("copilot"),
    "copilot_resume": copilot_resume,
    **OPEN_LIMIT_SCENARIOS,
}

# Every capture a scenario saves, and the scenario that saves it.
CASES: dict[str, str] = {name: name for name in SCENARIOS}
CASES.update({"claude_session_id": "claude_resume", "codex_session_first": "codex_resume",
              "gemini_session_first": "gemini_resume", "opencode_session_first": "opencode_resume",
              "qwen_session_first": "qwen_resume", "copilot_session_first": "copilot_resume"})


def cli_of(case: str) -> str:
    return case.split("_", 1)[0]
