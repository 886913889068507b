"""GitHub Copilot CLI (`copilot -p PROMPT --output-format json`).

Facts from CLI_PERMISSIONS_SPEC.md (@github/copilot 1.0.102, a native binary behind a
small Node loader): `--output-format json` prints one event per line, `{type, data, id,
timestamp, …}` — `assistant.message` (content, toolRequests, model), `tool.execution_start`
(toolCallId, toolName, arguments), `tool.execution_complete` (success, result or error
{message, code}, fileEdits), `assistant.turn_retry` (reason), `model.call_failure`
(statusCode, the provider's error body), `session.error` (errorType, message, statusCode)
and a last `result` {sessionId, exitCode}. Many more are progress (`…_delta`, `…_start`,
`session.background_tasks_changed`): nothing orch acts on.

Permissions, headless: without an allowance a call that needs approval is refused at once
("Permission denied because no interactive user response was available…", code
`denied`) and the model goes on; read-only tools and commands need none. `--allow-tool
write` allows the file tools, `--allow-tool 'shell(PROG)'` one program with any arguments
(git and gh per subcommand: `shell(git status)`), `--allow-all-tools` every tool,
`--allow-all-urls` the web, `--allow-all` also paths outside the working folder and
`--add-dir` (the bypass). A `--deny-tool` rule answers "Permission to run this tool was
denied due to the following rules: …".

Sessions: `--session-id UUID` pins a new session's id, `--resume ID` continues it. The
tokens are not on stdout: the session's own log `$COPILOT_HOME/session-state/<id>/
events.jsonl` (default ~/.copilot) holds a `session.usage_record` per model call and a
`session.start` / `session.resume` at each run's start; orch reads it once a run ends, as
codex's rollout, and counts this run's records.

Limits: Copilot retries a 429 five times by itself, honouring `retry-after`, and says so
(`assistant.turn_retry`, reason rate_limit); then `session.error` with errorType
rate_limit and the provider's last words — a LIMIT_HIT with its reset, or of kind billing
for an account out of credit (`insufficient_quota`). A wrong key is errorType
authentication, "Authentication failed with provider … (HTTP 401)".
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Optional

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from ..spend.pricing import estimate
from . import limits
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .commandline import (
    BARE_TOO_BROAD, EVAL_FLAGS, NEVER_PREFIX, prompt_arg, resume_id, session_uuid, simple_command,
)
from .streams import (
    MAX_TEXT,
    MAX_TRACKED,
    CallMemory,
    JsonLineParser,
    K,
    as_int,
    clip,
    clip_tail,
    first_string,
    string_list,
)

SHELL_TOOL = "bash"
WRITE_TOOLS = frozenset({"create", "edit", "write"})
NETWORK_TOOLS = frozenset({"web_fetch"})
#: The permission kind of the file tools, and the shell rule for one program.
WRITE_RULE = "write"
#: Events that only say work is under way: no event for orch (their text is noted for secrets).
PROGRESS = frozenset({
    "session.skills_loaded", "session.mcp_servers_loaded", "session.tools_updated", "user.message",
    "assistant.turn_start", "assistant.turn_end", "assistant.idle", "model.call_start", "model.call_finished",
    "model.call_final_result", "assistant.message_start", "assistant.tool_call_delta",
    "session.background_tasks_changed", "tool.shell_output", "tool.execution_partial_result", "session.info",
})
#: Programs whose shell rule is per first-level subcommand (`shell(git push)`).
SUBCOMMAND_PROGRAMS = frozenset({"git", "gh"})
#: The provider credentials Copilot is told to keep out of its shell's environment and output.
SECRET_VARIABLES = ("COPILOT_PROVIDER_API_KEY", "COPILOT_PROVIDER_BEARER_TOKEN")

_TARGET_FIELDS = ("command", "path", "filePath", "file_path", "url", "pattern", "query", "description")


def tool_target(arguments: Any) -> Optional[str]:
    """The object of a tool call: its command, file, URL or pattern."""
    if not isinstance(arguments, dict):
        return None
    return clip(first_string(arguments, _TARGET_FIELDS))


def record_usage(data: dict[str, Any]) -> Usage:
    """One `session.usage_record`: every input token (cached ones included), the cache reads, output."""
    u = data.get("usage") if isinstance(data.get("usage"), dict) else data
    model = u.get("model")
    return Usage(input_tokens=as_int(u.get("inputTokens")) + as_int(u.get("cacheWriteTokens")),
                 output_tokens=as_int(u.get("outputTokens")), cached_input_tokens=as_int(u.get("cacheReadTokens")),
                 model=clip(model, 200) if isinstance(model, str) and model else None)


def shell_rule_command(command: Optional[str]) -> Optional[str]:
    """What Copilot's `shell(…)` rule for a command covers: its program (git/gh: with the
    subcommand), with any arguments; None when no such rule is narrow."""
    command = simple_command(command)
    if command is None:
        return None
    words = command.split()
    prog = words[0].rsplit("/", 1)[-1]
    if prog in SUBCOMMAND_PROGRAMS:
        return f"{prog} {words[1]}" if len(words) > 1 and not words[1].startswith("-") else None
    base = prog.rstrip("0123456789.")
    if prog in NEVER_PREFIX or prog in BARE_TOO_BROAD or base in BARE_TOO_BROAD or base in EVAL_FLAGS:
        return None  # the rule would allow every call of a shell, an interpreter or a package manager
    return prog


class CopilotStreamParser(JsonLineParser):
    """Normalizes Copilot's `--output-format json` lines (and its session log) into AgentEvents."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        self.tools = CallMemory(state.get("tools"))  # toolCallId -> (name, target)
        self.denied = string_list(state.get("denied"))
        last_text = state.get("last_text")
        self.last_text = last_text if isinstance(last_text, str) else None
        failure = state.get("last_failure")  # the provider's words of the last failed model call
        self.last_failure = failure if isinstance(failure, str) else ""
        records = state.get("records")  # this run's usage records from the session log
        self.records = Usage.model_validate(records) if isinstance(records, dict) else None
        self.usage_told = state.get("usage_told") is True

    def state(self) -> dict[str, Any]:
        s = super().state()
        s.update(tools=self.tools.dump(), denied=list(self.denied), last_text=self.last_text,
                 last_failure=self.last_failure, usage_told=self.usage_told,
                 records=self.records.model_dump(mode="json") if self.records is not None else None)
        return s

    def on_stdout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if isinstance(kind, str) and kind in PROGRESS:
            return []
        return [self.unknown(obj)]

    def on_stderr(self, text: str) -> list[AgentEvent]:
        # Copilot's stderr is quiet in a run; a line there says why it could not run
        # ("Error: No authentication information found.") or how long it unpacked itself.
        if text.startswith(("Error", "error:")):
            return self.stderr_error(text)
        return []

    # ---- stdout lines
    def _delta(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data")
        if isinstance(data, dict):
            self.say(data.get("deltaContent"))
        return []

    def _message(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data")
        if not isinstance(data, dict):
            return [self.unknown(obj)]
        model = data.get("model")
        if isinstance(model, str) and model:
            self.model = clip(model, 200)
        text = data.get("content")
        if isinstance(text, str) and text:
            self.last_text = clip_tail(text, MAX_TEXT)
            return [self.event(K.TEXT, text=self.last_text)]
        return []

    def _tool_start(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data")
        if not isinstance(data, dict):
            return [self.unknown(obj)]
        tool_id = data.get("toolCallId") if isinstance(data.get("toolCallId"), str) else None
        name = clip(data.get("toolName"), 200) or "unknown"
        target = tool_target(data.get("arguments"))
        if tool_id:
            self.tools.put(tool_id, name, target)
        return [self.event(K.TOOL_STARTED, tool=name, tool_id=tool_id, target=target)]

    def _tool_complete(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data")
        if not isinstance(data, dict):
            return [self.unknown(obj)]
        tool_id = data.get("toolCallId") if isinstance(data.get("toolCallId"), str) else None
        name, target = self.tools.finish(tool_id)
        name = name or "unknown"
        if data.get("success") is True:
            events = [self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=True)]
            for edit in data.get("fileEdits") or []:
                if isinstance(edit, dict) and isinstance(edit.get("path"), str):
                    change = "add" if edit.get("kind") == "create" else "modify"
                    events.append(self.event(K.FILE_CHANGED, tool=name, tool_id=tool_id, path=clip(edit["path"]),
                                             change=change))
            return events
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        message = clip(error.get("message")) or f"{name} failed"
        events = [self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=False, message=message)]
        if error.get("code") == "denied":
            events += self._denial(tool_id, name, target, message)
        return events

    def _denial(self, tool_id: Optional[str], tool: str, target: Optional[str], message: str) -> list[AgentEvent]:
        if tool_id is not None:
            if tool_id in self.denied:
                return []
            self.denied.append(tool_id)
            if len(self.denied) > MAX_TRACKED:
                del self.denied[0]
        return [self.event(K.DENIAL, tool=tool, tool_id=tool_id, target=target, message=message)]

    def _retry(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        reason = clip(data.get("reason"), 100) or "retry"
        return [self.event(K.STATUS, status="retrying", message=f"retrying: {reason}")]

    def _call_failure(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        words = data.get("errorMessage")
        self.last_failure = clip(words, 2000) or ""
        return []

    def _session_error(self, obj: dict[str, Any]) -> list[AgentEvent]:
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        message = clip(data.get("message")) or clip(data.get("errorType"), 100) or "error"
        status = data.get("statusCode")
        events = []
        if data.get("errorType") == "rate_limit" or status in (402, 429):
            reference = limits.from_iso(obj.get("timestamp")) or limits.now()
            found = limits.api_limit(status, f"{message}\n{self.last_failure}", None, reference)
            if found:
                kind, scope, resets_at = found
                events += self.limit_hit(kind, scope, resets_at, message, {"status": status})
        if status and str(status) not in message:
            message = f"HTTP {status}: {message}"
        return events + [self.event(K.ERROR, message=message)]

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self.session_started(obj.get("sessionId"))
        code = obj.get("exitCode")
        outcome = Outcome.SUCCESS if code == 0 else Outcome.ERROR
        return events + self.run_finished(outcome, self.last_text)

    # ---- the session log (read at the end of a run)
    def on_rollout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        if kind in ("session.start", "session.resume"):
            self.records = None  # a new run of the session: only its own records count
        elif kind == "session.usage_record":
            record = record_usage(data)
            self.records = record if self.records is None else self.records.plus(record)
            self.model = self.model or record.model
        return []

    def finish(self, exit_code: Optional[int]) -> list[AgentEvent]:
        """The run's end, then its usage from the session log (priced from the model)."""
        events = super().finish(exit_code)
        if self.records is not None and not self.usage_told:
            self.usage_told = True
            self._stream = "exit"
            usage = self.records.model_copy(update={"model": self.records.model or self.model})
            events.append(self.event(K.USAGE, usage=estimate(usage)))
        return events


CopilotStreamParser.stdout_handlers = {
    "assistant.message_delta": CopilotStreamParser._delta,
    "assistant.message": CopilotStreamParser._message,
    "tool.execution_start": CopilotStreamParser._tool_start,
    "tool.execution_complete": CopilotStreamParser._tool_complete,
    "assistant.turn_retry": CopilotStreamParser._retry,
    "model.call_failure": CopilotStreamParser._call_failure,
    "session.error": CopilotStreamParser._session_error,
    "result": CopilotStreamParser._result,
}


def copilot_home(env) -> Path:
    """Where Copilot keeps its state: $COPILOT_HOME, else ~/.copilot."""
    return Path(env.get("COPILOT_HOME") or home_of(env) / ".copilot")


class CopilotAdapter(Adapter):
    name = "copilot"
    binary = "copilot"
    install_hint = "npm install -g @github/copilot"
    #: orch pins a new session's id with --session-id, as for claude.
    assigns_session_id = True
    #: The tools whose target is a command line.
    shell_tools = frozenset({SHELL_TOOL})
    #: `shell(touch)` lets `touch` through with any arguments: a prefix, never trusted below edit.
    narrow_rules_exact = False
    BYPASS_OPTIONS = (("--allow-all", None), ("--yolo", None), ("--allow-all-paths", None))

    def build_command(self, spec: LaunchSpec) -> Command:
        """`copilot -p PROMPT --output-format json --no-ask-user` plus session, grant and options."""
        prompt = spec.prompt
        if spec.system_prompt:
            # Copilot has no flag that adds to its system prompt: the instructions lead.
            prompt = f"{spec.system_prompt}\n\n{prompt}"
        argv = [self.executable(), "-p", prompt_arg(prompt), "--output-format", "json", "--no-ask-user",
                f"--secret-env-vars={','.join(SECRET_VARIABLES)}"]
        if spec.resume:
            session_id = resume_id(self.name, spec.cli_session_id)
            argv += ["--resume", session_id]
        else:
            session_id = session_uuid(self.name, spec.cli_session_id)
            argv += ["--session-id", session_id]
        perm_args, env = self.permission_args(spec.grant, spec.cwd)
        argv += perm_args
        for directory in spec.extra_dirs:
            argv += ["--add-dir", str(directory)]
        if spec.model:
            argv += ["--model", spec.model]
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=session_id)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """read: only what needs no approval; edit: + the file tools; full: every tool and URL;
        dangerous: --allow-all (paths too). Below dangerous, no automatic access to the temp folder."""
        if grant.level is Permission.FULL and grant.dangerous:
            return ["--allow-all"], {}
        args = ["--disallow-temp-dir"]
        if grant.level is Permission.FULL:
            args += ["--allow-all-tools", "--allow-all-urls"]
        elif grant.level is Permission.EDIT:
            args += ["--allow-tool", WRITE_RULE]
        for tool in grant.tools:
            args += ["--allow-tool", tool]
        return args, {}

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """`shell(PROG)` (`shell(git SUB)`) for one simple command whose program a rule may name."""
        if denial.tool == SHELL_TOOL:
            covered = shell_rule_command(denial.target)
            return f"shell({covered})" if covered else None
        return None

    def level_needed(self, denial: Denial) -> Permission:
        """Writes need edit; a shell command edit plus its rule, else full; the web and the rest full."""
        if denial.tool in WRITE_TOOLS:
            return Permission.EDIT
        if denial.tool == SHELL_TOOL:
            return Permission.EDIT if self.narrow_tool_for(denial) else Permission.FULL
        return Permission.FULL

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> CopilotStreamParser:
        """A parser for Copilot's JSON lines, its stderr and its session log."""
        return CopilotStreamParser(state)

    def side_files(self, cli_session_id: Optional[str], env: dict[str, str]) -> list[Path]:
        """The session's own log, $COPILOT_HOME/session-state/<id>/events.jsonl (default ~/.copilot)."""
        if not cli_session_id:
            return []
        try:
            session = str(uuid.UUID(cli_session_id))
        except ValueError:
            return []
        return [copilot_home(env) / "session-state" / session / "events.jsonl"]

    def state_paths(self, env) -> tuple[list[Path], list[Path]]:
        """$COPILOT_HOME (default ~/.copilot: config, sessions, logs), the folder where the
        native binary unpacks itself ($XDG_CACHE_HOME/copilot), and the device id it keeps
        under ~/.cache/Microsoft/DeveloperTools."""
        cache = Path(env.get("XDG_CACHE_HOME") or home_of(env) / ".cache")
        return [copilot_home(env), cache / "copilot", home_of(env) / ".cache" / "Microsoft" / "DeveloperTools"], []
