"""Qwen Code (`qwen -p PROMPT -o stream-json`).

Facts from CLI_PERMISSIONS_SPEC.md (qwen-code 0.15.10): the stream is Claude Code's shape
(system/init, assistant, user tool_result, result with permission_denials). Headless,
the approval mode decides which tools are even allowed: in `default` the shell and the
edit tools are deny-listed unless --allowed-tools names them, `auto-edit` allows edits,
`yolo` everything. A refused call comes back as a tool_result error ("Qwen Code requires
permission to use …, but that permission was declined.", "Tool … is denied by permission
rules.") and again in the result's permission_denials, with the same tool_use_id: it is
counted once. A model error is no failure to Qwen Code: it becomes assistant text
"[API Error: …]" and the run ends `success` with exit code 0, so the parser turns that
text into the error — and "[API Error: 429 …]" into a LIMIT_HIT first (its reset from
"Please try again in 20s"; billing for an account out of credit). The result's usage is
the session's running total (orch's ingest takes this run's part from it), cached prompt
tokens included, priced from the model the init line names.

Retries (CLI_PERMISSIONS_SPEC.md §9): Qwen Code retries a 429 in three silent layers, for
about 45 minutes; `model.generationConfig.maxRetries: 0` leaves one (seven attempts,
about 80 s). orch sets it without touching the user's files: in a system-defaults file of
its own (QWEN_CODE_SYSTEM_DEFAULTS_PATH), the lowest layer of Qwen Code's settings, so the
user's own settings — their login, and a maxRetries of their own — still win.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from ..spend.pricing import estimate
from . import limits
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .claude import ClaudeStreamParser
from .commandline import prompt_arg, session_flags, simple_command
from .streams import MAX_TEXT, K, as_int, clip, clip_tail, first_string, mentions, message_content, text_of

WRITE_TOOLS = frozenset({"write_file", "edit"})
SHELL_TOOL = "run_shell_command"
NETWORK_TOOLS = frozenset({"web_fetch", "web_search"})
#: What `full` allows on top of auto-edit: any shell command and the web.
FULL_TOOLS = (SHELL_TOOL, "web_fetch")
#: Substrings (lower case) of a tool_result error that mean "refused by a permission check".
DENIAL_MARKERS = (
    "but that permission was declined",
    "is denied by permission rules",
    "default permission is 'deny'",
    "plan mode blocked",
)
#: How Qwen Code words a model error it turns into assistant text.
API_ERROR_PREFIX = "[API Error: "
#: What a stderr line starts with when Qwen Code could not run at all.
_FATAL_STDERR = ("Error", "No saved session found", API_ERROR_PREFIX, "Fatal")
_CREATED = "successfully created and wrote to new file"

_TARGET_FIELDS = ("command", "file_path", "absolute_path", "path", "dir_path", "url", "query", "pattern", "prompt",
                  "description")


def tool_target(tool_input: Any) -> Optional[str]:
    """The object of a tool call: its command, file, URL or pattern."""
    if not isinstance(tool_input, dict):
        return None
    return clip(first_string(tool_input, _TARGET_FIELDS))


def is_denial_text(text: str) -> bool:
    """True when a tool_result error reads as a permission refusal."""
    return mentions(text, DENIAL_MARKERS)


def is_api_error(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(API_ERROR_PREFIX)


#: "[API Error: 429 Rate limit reached … Please try again in 20s.]": the status, then the provider's words.
_API_ERROR = re.compile(r"^\[API Error: (?:(?P<status>\d{3})\s+)?(?P<words>.*?)\]?(?:\n|$)", re.S)

#: What orch layers under the user's settings: no retries beyond Qwen Code's innermost layer.
SYSTEM_DEFAULTS = {"model": {"generationConfig": {"maxRetries": 0}}}
SYSTEM_DEFAULTS_ENV = "QWEN_CODE_SYSTEM_DEFAULTS_PATH"


def qwen_usage(usage: Any, model: Optional[str] = None) -> Usage:
    """Usage from a result (input_tokens already counts cached prompt tokens), priced from the model."""
    u = usage if isinstance(usage, dict) else {}
    result = Usage(input_tokens=as_int(u.get("input_tokens")), output_tokens=as_int(u.get("output_tokens")),
                   cached_input_tokens=as_int(u.get("cache_read_input_tokens")), model=model)
    return estimate(result) if result.input_tokens or result.output_tokens else result


def api_error_limit(text: str):
    """(kind, scope, resets_at) when Qwen Code's "[API Error: …]" text is a usage, rate or billing limit."""
    m = _API_ERROR.match(text)
    if not m:
        return None
    status = int(m.group("status")) if m.group("status") else None
    return limits.api_limit(status, m.group("words") or "", None, limits.now())


def system_defaults_path(env: dict[str, str], state_dir: Optional[Path]) -> Optional[str]:
    """orch's system-defaults file for Qwen Code (written once under `state_dir`), or None when the user has
    one of their own (or no state folder was given).

    Qwen Code reads one system-defaults file: $QWEN_CODE_SYSTEM_DEFAULTS_PATH, else
    system-defaults.json beside the system settings. Pointing it elsewhere would hide the
    user's, so orch only fills the layer when it is empty.
    """
    if env.get(SYSTEM_DEFAULTS_ENV) or state_dir is None:
        return None
    system_settings = env.get("QWEN_CODE_SYSTEM_SETTINGS_PATH") or "/etc/qwen-code/settings.json"
    if Path(system_settings).parent.joinpath("system-defaults.json").exists():
        return None
    path = state_dir / "cli" / "qwen-system-defaults.json"
    wanted = json.dumps(SYSTEM_DEFAULTS, indent=2) + "\n"
    try:
        if not path.is_file() or path.read_text() != wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(wanted)
            os.replace(tmp, path)
    except OSError:
        return None  # an unwritable state folder: Qwen Code keeps its own retries
    return str(path)


class QwenStreamParser(ClaudeStreamParser):
    """Normalizes Qwen Code's stream-json lines (Claude Code's shape, its own wording)."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        self.api_error = state.get("api_error") is True

    def state(self) -> dict[str, Any]:
        s = super().state()
        s["api_error"] = self.api_error
        return s

    def on_stderr(self, text: str) -> list[AgentEvent]:
        # Qwen Code's stderr is empty in a run that starts; a line there either explains
        # why it could not (a session id it cannot use, a bad flag) or is a warning.
        if text.startswith(_FATAL_STDERR):
            return self.stderr_error(text)
        if "Approval mode overridden" in text:
            return [self.event(K.STATUS, status="warning", message=clip(text))]
        return []

    # Claude Code's handling of assistant and user lines, in Qwen Code's words.
    write_tools = WRITE_TOOLS

    def target_of(self, name: Any, tool_input: Any) -> Optional[str]:
        """The call's object, found by field name whatever the tool."""
        return tool_target(tool_input)

    def is_denial(self, text: str) -> bool:
        """True for Qwen Code's wording of a refusal."""
        return is_denial_text(text)

    def text_events(self, text: str) -> list[AgentEvent]:
        """A model error Qwen Code turned into text is an ERROR (after its LIMIT_HIT when it is
        a limit), any other text TEXT."""
        if is_api_error(text):
            self.api_error = True
            events = []
            found = api_error_limit(text)
            if found:
                kind, scope, resets_at = found
                events += self.limit_hit(kind, scope, resets_at, text.split("\n", 1)[0])
            return events + [self.event(K.ERROR, message=clip(text))]
        return super().text_events(text)

    def change_of(self, obj: dict[str, Any], block: dict[str, Any]) -> str:
        """Only the tool's own words say whether it created the file."""
        return "add" if _CREATED in text_of(block.get("content"))[:500].lower() else "modify"

    def _assistant(self, obj: dict[str, Any]) -> list[AgentEvent]:
        content = message_content(obj)
        return [] if content is None else self._assistant_blocks(content)

    def _system(self, obj: dict[str, Any]) -> list[AgentEvent]:
        if obj.get("subtype") == "init":
            data = {k: clip(obj.get(k), 200) for k in ("model", "cwd", "permission_mode", "qwen_code_version")
                    if obj.get(k) is not None}
            if isinstance(data.get("model"), str):
                self.model = data["model"]
            return self.session_started(obj.get("session_id"), data)
        return [self.unknown(obj, raw_type=f"system/{obj.get('subtype')}")]

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session_and_denials(obj)
        subtype = obj.get("subtype")
        text = obj.get("result")
        text = clip_tail(text, MAX_TEXT) if isinstance(text, str) else None
        error = obj.get("error")
        error_message = clip(error.get("message")) if isinstance(error, dict) else None
        if subtype == "error_max_turns":
            outcome = Outcome.MAX_TURNS
            events.append(self.event(K.ERROR, message=error_message or
                                     f"reached the maximum number of turns ({as_int(obj.get('num_turns'))})"))
        elif obj.get("is_error") is True:
            outcome = Outcome.ERROR
            events.append(self.event(K.ERROR, message=error_message or str(subtype or "error")))
        elif self.api_error and is_api_error(text):
            # The model's error, already reported from the assistant line it became.
            outcome = Outcome.ERROR
        else:
            outcome = Outcome.SUCCESS
        usage = qwen_usage(obj.get("usage"), self.model)
        return events + self.run_finished(outcome, text, usage, cumulative=True)


QwenStreamParser.stdout_handlers = {
    "assistant": QwenStreamParser._assistant,
    "user": QwenStreamParser._user,
    "stream_event": QwenStreamParser._stream_event,
    "system": QwenStreamParser._system,
    "result": QwenStreamParser._result,
}


class QwenAdapter(Adapter):
    name = "qwen"
    binary = "qwen"
    install_hint = "npm install -g @qwen-code/qwen-code"

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """$QWEN_HOME (default ~/.qwen), and $QWEN_RUNTIME_DIR when set (its sessions and logs)."""
        dirs = [Path(env.get("QWEN_HOME") or home_of(env) / ".qwen")]
        if env.get("QWEN_RUNTIME_DIR"):
            dirs.append(Path(env["QWEN_RUNTIME_DIR"]))
        return dirs, []
    #: The result's usage is the CLI session's running total (it grows across resumes).
    usage_is_cumulative = True
    #: orch pins a new session's id with --session-id, as for claude and gemini.
    assigns_session_id = True
    #: The tools whose target is a command line.
    shell_tools = frozenset({SHELL_TOOL})
    #: run_shell_command(cmd) also lets "cmd ..." through (a prefix, as in gemini, its ancestor):
    #: never trusted below edit with arguments it was checked for.
    narrow_rules_exact = False

    def build_command(self, spec: LaunchSpec) -> Command:
        """`qwen -p PROMPT -o stream-json` plus session, grant and options."""
        argv = [self.executable(), "-p", prompt_arg(spec.prompt), "-o", "stream-json"]
        flags, session_id = session_flags(self.name, spec.resume, spec.cli_session_id)
        argv += flags
        perm_args, env = self.permission_args(spec.grant, spec.cwd)
        argv += perm_args
        for directory in spec.extra_dirs:
            argv += ["--include-directories", str(directory)]
        if spec.model:
            argv += ["-m", spec.model]
        if spec.system_prompt:
            argv += ["--append-system-prompt", spec.system_prompt]
        defaults = system_defaults_path(dict(os.environ), spec.state_dir)
        if defaults:
            env = {**env, SYSTEM_DEFAULTS_ENV: defaults}
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=session_id)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """read: default approval; edit: auto-edit; full: + run_shell_command and web_fetch; dangerous: yolo."""
        if grant.level is Permission.FULL and grant.dangerous:
            return ["--approval-mode", "yolo"], {}
        mode = "default" if grant.level is Permission.READ else "auto-edit"
        args = ["--approval-mode", mode]
        allowed = self.allowed_tools(grant, FULL_TOOLS)
        for tool in allowed:
            args += ["--allowed-tools", tool]
        return args, {}

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """`run_shell_command(cmd)` for one simple command (a prefix rule); nothing narrower for the rest."""
        if denial.tool == SHELL_TOOL:
            command = simple_command(denial.target)
            return f"{SHELL_TOOL}({command})" if command else None
        return None

    def level_needed(self, denial: Denial) -> Permission:
        """Edits need edit; a shell command edit plus its narrow rule, else full; the web full."""
        if denial.tool in WRITE_TOOLS:
            return Permission.EDIT
        if denial.tool in NETWORK_TOOLS:
            return Permission.FULL
        if denial.tool == SHELL_TOOL:
            return Permission.EDIT if self.narrow_tool_for(denial) else Permission.FULL
        return Permission.FULL

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> QwenStreamParser:
        """A parser for Qwen Code's stream-json stdout and its stderr."""
        return QwenStreamParser(state)
