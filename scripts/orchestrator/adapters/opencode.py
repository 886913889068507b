"""opencode (`opencode run --format json … -- PROMPT WORDS`).

Facts from CLI_PERMISSIONS_SPEC.md (opencode 1.18.33): every stdout line is
`{type, timestamp, sessionID, …}` with type step_start, text, tool_use, step_finish or
error; there is no init line and no terminal line: the run is over when the process exits
(0, or 1 after an `error` line). A tool shows once, when it has completed or failed.
Permissions come from the `permission` config (per tool: allow, ask, deny; bash also per
command pattern); orch sets it through the OPENCODE_PERMISSION env var, which opencode
merges over every config file. Headless, an "ask" is rejected at once: the call fails with
"The user rejected permission to use this specific tool call." and the run stops there
(exit 0). A "deny" rule that names the whole tool removes it instead, so orch never uses
deny. `opencode run` wraps each message word holding a space in double quotes, so the
prompt goes in as its space-separated words after `--`, which the model then gets whole.

Limits and retries (CLI_PERMISSIONS_SPEC.md §9): opencode retries a 429 or 5xx by itself,
five times, waiting the provider's `retry-after` (unbounded) or 2 s doubling to 30 s, and
no setting or variable changes that. It prints nothing meanwhile, so orch runs it with
`--print-logs --log-level INFO`: each failed attempt is a "stream error" line on stderr
(a retrying STATUS, so a waiting opencode is not taken for a stalled one), and the model
it uses is named there too. The final `error` line carries the status, the provider's
words and its response headers: a 429 is a LIMIT_HIT with its reset, an out-of-credit 429
(`insufficient_quota`) one of kind billing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from ..spend.pricing import estimate
from . import limits
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .commandline import NEVER_PREFIX, resume_id, simple_command
from .streams import (
    MAX_TEXT,
    MAX_TRACKED,
    JsonLineParser,
    K,
    as_float,
    as_int,
    clip,
    clip_tail,
    first_string,
    mentions,
    string_list,
)

WRITE_TOOLS = frozenset({"write", "edit", "multiedit", "patch", "apply_patch"})
SHELL_TOOL = "bash"
NETWORK_TOOLS = frozenset({"webfetch", "websearch", "codesearch"})
#: The permission keys orch manages on every rung (all others keep the user's config).
EDIT_KEY = "edit"  # covers write, edit, multiedit and patch
#: Substrings (lower case) of a failed tool's error that mean "refused by a permission
#: check": an "ask" rejected headless, a rejection with feedback, a "deny" pattern rule.
DENIAL_MARKERS = (
    "rejected permission to use this specific tool call",
    "specified a rule which prevents you from using",
)
#: The one narrow allowance orch builds: `bash(COMMAND)` in its own syntax.
_NARROW = re.compile(r"^bash\((.+)\)$", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: opencode's log on stderr, at the level that names the model and each failed attempt.
LOG_FLAGS = ("--print-logs", "--log-level", "INFO")

_TARGET_FIELDS = ("command", "filePath", "path", "url", "query", "pattern", "description")


def tool_target(tool_input: Any) -> Optional[str]:
    """The object of a tool call: its command, file, URL or pattern."""
    if not isinstance(tool_input, dict):
        return None
    return clip(first_string(tool_input, _TARGET_FIELDS))


def is_denial_text(text: str) -> bool:
    """True when a failed tool's error reads as a permission refusal."""
    return mentions(text, DENIAL_MARKERS)


def opencode_usage(part: dict[str, Any], model: Optional[str] = None) -> Usage:
    """Usage of one step: every input token processed (fresh, cache write, cache read; `input`
    excludes the cached ones), of which the cache reads; output with reasoning; opencode's cost."""
    tokens = part.get("tokens")
    t = tokens if isinstance(tokens, dict) else {}
    cache = t.get("cache")
    c = cache if isinstance(cache, dict) else {}
    return Usage(
        input_tokens=as_int(t.get("input")) + as_int(c.get("read")) + as_int(c.get("write")),
        output_tokens=as_int(t.get("output")) + as_int(t.get("reasoning")),
        cached_input_tokens=as_int(c.get("read")),
        cost_usd=as_float(part.get("cost")),
        model=model,
    )


def priced(usage: Usage) -> Usage:
    """opencode's own price when it has one; else an estimate from the tokens and the model
    (opencode reports 0 for a model its catalog has no price for, which is no price at all)."""
    if usage.cost_usd > 0 or not (usage.input_tokens or usage.output_tokens):
        return usage
    return estimate(usage)


#: A line of opencode's log (`--print-logs`): `timestamp=… level=ERROR run=… message="stream error" key=value …`.
#: A key starts where no key character precedes it: without that, a long run of word
#: characters with no `=` after it is retried from each of its positions (quadratic).
_LOG_FIELD = re.compile(r'(?<![\w.])([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')


def log_fields(text: str) -> dict[str, str]:
    """The key=value fields of one opencode log line (quoted values unquoted)."""
    fields = {}
    for key, value in _LOG_FIELD.findall(text):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        fields[key] = value
    return fields


class OpencodeStreamParser(JsonLineParser):
    """Normalizes `opencode run --format json` lines into AgentEvents; the end comes at exit."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        self.denied = string_list(state.get("denied"))  # callIDs already reported
        last_text = state.get("last_text")
        self.last_text = last_text if isinstance(last_text, str) else None
        self.errored = state.get("errored") is True
        # How the last step ended (its step_finish reason, None while a step runs) and
        # whether a call in it was refused: a refusal ends the run after that step.
        reason = state.get("last_reason")
        self.last_reason = reason if isinstance(reason, str) else None
        self.step_denied = state.get("step_denied") is True
        # The run's steps added up: opencode prints no total, the end of the run reports this one.
        total = state.get("total")
        self.total = Usage.model_validate(total) if isinstance(total, dict) else None

    def state(self) -> dict[str, Any]:
        s = super().state()
        s.update(denied=list(self.denied), last_text=self.last_text, errored=self.errored,
                 last_reason=self.last_reason, step_denied=self.step_denied,
                 total=self.total.model_dump(mode="json") if self.total is not None else None)
        return s

    def _session(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """SESSION_STARTED the first time a line names the session (every line does)."""
        session_id = obj.get("sessionID")
        if session_id == self.session_id or not isinstance(session_id, str):
            return []
        return self.session_started(session_id)

    def on_stdout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return self._session(obj) + [self.unknown(obj)]

    def _step_start(self, obj: dict[str, Any]) -> list[AgentEvent]:
        self.last_reason, self.step_denied = None, False
        return self._session(obj)

    def _text(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session(obj)
        part = obj.get("part")
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str) and text:
            self.say(text)
            self.last_text = clip_tail(text, MAX_TEXT)
            events.append(self.event(K.TEXT, text=self.last_text))
        return events

    def _reasoning(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return self._session(obj)  # the model's notes to itself (--thinking): nothing orch acts on

    def _tool_use(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session(obj)
        part = obj.get("part")
        if not isinstance(part, dict):
            return events + [self.unknown(obj)]
        name = clip(part.get("tool"), 200) or "unknown"
        tool_id = part.get("callID")
        tool_id = clip(tool_id, 200) if isinstance(tool_id, str) else None
        state = part.get("state")
        state = state if isinstance(state, dict) else {}
        tool_input = state.get("input")
        target = tool_target(tool_input)
        if name == "invalid" and isinstance(tool_input, dict):
            target = clip(tool_input.get("tool"), 200)  # the unknown tool the model asked for
        # opencode reports a call once, when it has completed or failed.
        events.append(self.event(K.TOOL_STARTED, tool=name, tool_id=tool_id, target=target))
        status = state.get("status")
        if status == "completed":
            events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=True))
            if name in WRITE_TOOLS:
                metadata = state.get("metadata")
                metadata = metadata if isinstance(metadata, dict) else {}
                path = clip(metadata.get("filepath")) if isinstance(metadata.get("filepath"), str) else target
                if path:
                    change = "add" if metadata.get("exists") is False else "modify"
                    events.append(self.event(K.FILE_CHANGED, tool=name, tool_id=tool_id, path=path, change=change))
            return events
        error = state.get("error")
        message = clip(error) if isinstance(error, str) else f"{name} {clip(status, 100) or 'failed'}"
        events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=False,
                                 message=message))
        if is_denial_text(message or ""):
            events += self._denial(tool_id, name, target, message)
        return events

    def _denial(self, tool_id: Optional[str], tool: str, target: Optional[str], message: Any) -> list[AgentEvent]:
        """One DENIAL per callID (none for a call that names no tool: malformed)."""
        if not isinstance(tool, str) or not tool.strip():
            return []
        self.step_denied = True
        if tool_id is not None:
            if tool_id in self.denied:
                return []
            self.denied.append(tool_id)
            if len(self.denied) > MAX_TRACKED:
                del self.denied[0]
        return [self.event(K.DENIAL, tool=tool, tool_id=tool_id, target=target, message=clip(message) or "")]

    def _step_finish(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session(obj)
        part = obj.get("part")
        if not isinstance(part, dict):
            return events
        reason = part.get("reason")
        self.last_reason = clip(reason, 100) if isinstance(reason, str) else "unknown"
        step = opencode_usage(part, self.model)
        self.total = step if self.total is None else self.total.plus(step)
        return events + [self.event(K.USAGE, usage=step)]

    def run_usage(self) -> Optional[Usage]:
        """The run's usage, priced, with the model the log named (known by the end of the run)."""
        if self.total is None:
            return None
        return priced(self.total.model_copy(update={"model": self.total.model or self.model}))

    def _error(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session(obj)
        self.errored = True
        error = obj.get("error")
        error = error if isinstance(error, dict) else {}
        data = error.get("data")
        data = data if isinstance(data, dict) else {}
        message = data.get("message") if isinstance(data.get("message"), str) else None
        message = message or (error.get("name") if isinstance(error.get("name"), str) else None) or "error"
        status = data.get("statusCode")
        body = data.get("responseBody") if isinstance(data.get("responseBody"), str) else ""
        reference = limits.from_epoch(obj.get("timestamp")) or limits.now()
        found = limits.api_limit(status, f"{message}\n{body[:2000]}", data.get("responseHeaders"), reference)
        if found:
            kind, scope, resets_at = found
            retry_after = limits.retry_after_seconds(data.get("responseHeaders"), reference)
            events += self.limit_hit(kind, scope, resets_at, message,
                                     {"status": status, **({"retry_after": retry_after} if retry_after is not None else {})})
        if status and str(status) not in message:
            message = f"HTTP {status}: {message}"
        return events + [self.event(K.ERROR, message=clip(message))]

    def _log_line(self, text: str) -> list[AgentEvent]:
        """One line of opencode's own log (--print-logs): a failed attempt it will retry, or the model it streams from."""
        fields = log_fields(text)
        message = fields.get("message")
        if message == "stream error":
            cause = fields.get("error.error") or fields.get("error") or "stream error"
            return [self.event(K.STATUS, status="retrying", message=clip(cause))]
        if message == "stream" and fields.get("small") == "false" and fields.get("modelID"):
            self.model = clip(fields["modelID"], 200)
        return []

    def on_stderr(self, text: str) -> list[AgentEvent]:
        if "\x1b" in text:
            text = _ANSI.sub("", text).strip()
        if text.startswith("timestamp="):
            return self._log_line(text)
        if text.startswith("! permission requested:") or text.startswith("!  permission requested:"):
            # The refusal itself arrives on stdout as the failed call; this says what was asked.
            return [self.event(K.STATUS, status="permission_rejected", message=clip(text.lstrip("! ")))]
        if text.startswith("Error"):
            return self.stderr_error(text)
        return []

    def finish(self, exit_code: Optional[int]) -> list[AgentEvent]:
        """The run's end: opencode prints no terminal line, so its exit code decides.

        Without one (`orch parse` of saved files), a run counts as finished when its last
        step ended the turn ("stop") or was cut short by a refusal, which ends the run.
        """
        if self.finished:
            return []
        self._stream = "exit"
        if self.errored:
            return self.run_finished(Outcome.ERROR, self.last_text, self.run_usage())
        ended = self.last_reason == "stop" or (self.last_reason is not None and self.step_denied)
        if exit_code == 0 or (exit_code is None and ended):
            return self.run_finished(Outcome.SUCCESS, self.last_text, self.run_usage())
        return super().finish(exit_code)


OpencodeStreamParser.stdout_handlers = {
    "step_start": OpencodeStreamParser._step_start,
    "text": OpencodeStreamParser._text,
    "reasoning": OpencodeStreamParser._reasoning,
    "tool_use": OpencodeStreamParser._tool_use,
    "step_finish": OpencodeStreamParser._step_finish,
    "error": OpencodeStreamParser._error,
}


def _prefix_rule_is_narrow(command: str) -> bool:
    """False for a program whose prefix rule reaches far beyond one call (a shell, rm, curl…).

    The policy makes the same check for the shell tools it knows by name; opencode's is
    called `bash` (see shell_tools), so the adapter checks too until the policy asks it.
    """
    prog = command.split()[0].rsplit("/", 1)[-1]
    return prog not in NEVER_PREFIX


def bash_rules(allowed: list[str]) -> dict[str, str]:
    """opencode's per-command bash permission: ask for everything but the allowed commands."""
    rules = {"*": "ask"}
    for command in allowed:
        rules[command] = "allow"
        rules[f"{command} *"] = "allow"  # the same command with more arguments
    return rules


class OpencodeAdapter(Adapter):
    name = "opencode"
    binary = "opencode"
    install_hint = "npm install -g opencode-ai"

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """opencode's folders in each XDG base folder: data (sessions, logins), config, cache, state."""
        home = home_of(env)
        bases = {"XDG_DATA_HOME": home / ".local" / "share", "XDG_CONFIG_HOME": home / ".config",
                 "XDG_CACHE_HOME": home / ".cache", "XDG_STATE_HOME": home / ".local" / "state"}
        return [Path(env.get(name) or default) / "opencode" for name, default in bases.items()], []

    #: opencode picks the session id itself; orch learns it from the stream's sessionID.
    assigns_session_id = False
    #: The tools whose target is a command line (the policy's SHELL_TOOLS should include them).
    shell_tools = frozenset({SHELL_TOOL})

    def build_command(self, spec: LaunchSpec) -> Command:
        """`opencode run --format json --print-logs --log-level INFO --dir CWD [--session ID] … -- PROMPT WORDS`."""
        # Its log on stderr is the only place opencode says it is retrying, and which model it uses.
        argv = [self.executable(), "run", "--format", "json", *LOG_FLAGS, "--dir", str(spec.cwd)]
        session_id = None
        if spec.resume:
            session_id = resume_id(self.name, spec.cli_session_id)
            argv += ["--session", session_id]
        perm_args, env = self.permission_args(spec.grant, spec.cwd, spec.extra_dirs)
        argv += perm_args
        if spec.model:
            argv += ["--model", spec.model]
        prompt = spec.prompt
        if spec.system_prompt:
            # `opencode run` has no flag that adds to the system prompt: the instructions lead.
            prompt = f"{spec.system_prompt}\n\n{prompt}"
        # Split on single spaces only: opencode joins the words with one space again, so
        # the model gets the prompt exactly (no word holds a space, so none is quoted), and
        # after `--` no word is read as a flag.
        argv += ["--", *prompt.split(" ")]
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=session_id)

    def permission_args(self, grant: Grant, cwd: Path,
                        extra_dirs: Optional[list[Path]] = None) -> tuple[list[str], dict[str, str]]:
        """OPENCODE_PERMISSION per rung. read: edits, shell and web ask (refused headless);
        edit: edits allowed; full: + shell and web; dangerous: + --dangerously-skip-permissions."""
        commands = [m.group(1) for m in (_NARROW.match(t) for t in grant.tools) if m]
        others = [t for t in grant.tools if not _NARROW.match(t)]
        full = grant.level is Permission.FULL
        permission: dict[str, Any] = {
            EDIT_KEY: "ask" if grant.level is Permission.READ else "allow",
            SHELL_TOOL: "allow" if full else bash_rules(commands),
        }
        for tool in sorted(NETWORK_TOOLS):
            permission[tool] = "allow" if full else "ask"
        for tool in others:
            permission[tool] = "allow"
        if extra_dirs:
            permission["external_directory"] = {f"{d}/*": "allow" for d in extra_dirs}
        args = ["--dangerously-skip-permissions"] if full and grant.dangerous else []
        return args, {"OPENCODE_PERMISSION": json.dumps(permission)}

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """`bash(COMMAND)` for one simple command: opencode then allows it and its longer forms."""
        if denial.tool == SHELL_TOOL:
            command = simple_command(denial.target)
            if command is None or not _prefix_rule_is_narrow(command):
                return None
            return f"bash({command})"
        return None

    def level_needed(self, denial: Denial) -> Permission:
        """Edits need edit; a shell command edit plus its narrow rule, else full; the web full."""
        if denial.tool in WRITE_TOOLS:
            return Permission.EDIT
        if denial.tool == SHELL_TOOL:
            return Permission.EDIT if self.narrow_tool_for(denial) else Permission.FULL
        return Permission.FULL

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> OpencodeStreamParser:
        """A parser for opencode's --format json stdout and its stderr."""
        return OpencodeStreamParser(state)
