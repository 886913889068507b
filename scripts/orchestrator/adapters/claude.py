"""Claude Code (`claude -p … --output-format stream-json --verbose`).

Facts from REAL_CLIS.md: a denial shows up to three times for one call — a tool_result
error ("requested permissions to write", "requires approval"), the result's
`permission_denials`, and on newer versions (2.1.328) a `system/permission_denied` line —
all with the same tool_use_id, so it is counted once. `is_error`, not `subtype`, says
whether a run failed (an HTTP 400 ends with subtype "success" and is_error true).

Limits (CLI_PERMISSIONS_SPEC.md, "Usage limits and rate limits"): on a claude.ai login a
refused request shows as a `rate_limit_event` (status rejected, resetsAt, rateLimitType),
then a synthetic assistant text ("You've hit your session limit · resets 3:12pm (UTC)",
`error: "rate_limit"`) and an is_error result with api_error_status 429 — one LIMIT_HIT.
With an API key a 429 first goes through claude's own retries (`system/api_retry`, only
STATUS), and is a LIMIT_HIT of kind rate once the run fails. `allowed_warning` (and
`rejected` while extra usage carries on) is a LIMIT_WARNING.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from . import limits
from ..spend.pricing import estimate
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .commandline import prompt_arg, session_flags, simple_command
from .streams import (
    MAX_TEXT,
    MAX_TRACKED,
    CallMemory,
    JsonLineParser,
    K,
    as_float,
    as_int,
    clip,
    clip_tail,
    first_string,
    mentions,
    message_content,
    string_list,
    text_of,
)

WRITE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
NETWORK_TOOLS = frozenset({"WebFetch", "WebSearch"})
#: What `full` allows on top of acceptEdits: any shell command and the network tools.
FULL_TOOLS = ("Bash", "WebFetch", "WebSearch")

#: Substrings (lower case) of a tool_result error that mean "refused by a permission
#: check", as opposed to a tool that ran and failed. "No such tool available" (a tool
#: removed with --disallowedTools) is deliberately absent: it is not a permission prompt.
DENIAL_MARKERS = (
    "requested permissions to",
    "haven't granted it yet",
    "requires approval",
    "has been denied",
    "allowed working directories",
    "was blocked. for security",
)

#: The stdout lines that may change what the conductor does now, by their keys: every system
#: line (init, permission_denied, api_retry, compact_boundary), the result, a rate-limit
#: event, a failed tool's result (a refusal is one), the synthetic limit message. A key
#: inside a JSON string is escaped (`\"type\"`), so a model's or a tool's words never match.
URGENT_LINE = re.compile(rb'"type":\s*"(?:system|result|rate_limit_event)"|"is_error":\s*true|"error":\s*"')

#: Which input field names the object of a call, per tool.
_TARGET_FIELDS = {
    "Bash": ("command",),
    "Write": ("file_path",),
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "Read": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "Glob": ("pattern",),
    "Grep": ("pattern",),
    "WebFetch": ("url",),
    "WebSearch": ("query",),
    "Task": ("description",),
}
_ANY_TARGET = ("command", "file_path", "path", "url", "query", "pattern")


def tool_target(name: Any, tool_input: Any) -> Optional[str]:
    """The object of a tool call: its command, file, URL or pattern."""
    if not isinstance(tool_input, dict):
        return None
    fields = _TARGET_FIELDS.get(name, _ANY_TARGET) if isinstance(name, str) else _ANY_TARGET
    return clip(first_string(tool_input, fields))


def is_denial_text(text: str) -> bool:
    """True when a tool_result error reads as a permission refusal."""
    return mentions(text, DENIAL_MARKERS)


def claude_usage(usage: Any, cost: Any, model: Optional[str] = None) -> Usage:
    """Usage from a result: every input token processed (fresh, cache write, cache read).

    claude reports its price; a result without one is priced from the model (estimated).
    """
    u = usage if isinstance(usage, dict) else {}
    result = Usage(
        input_tokens=as_int(u.get("input_tokens")) + as_int(u.get("cache_creation_input_tokens"))
        + as_int(u.get("cache_read_input_tokens")),
        output_tokens=as_int(u.get("output_tokens")),
        cached_input_tokens=as_int(u.get("cache_read_input_tokens")),
        cost_usd=as_float(cost),
        model=model,
    )
    return result if cost is not None else estimate(result)


class ClaudeStreamParser(JsonLineParser):
    """Normalizes claude's stream-json lines (and its stderr) into AgentEvents."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        self.tools = CallMemory(state.get("tools"))  # tool_use_id -> (name, target)
        self.denied = string_list(state.get("denied"))  # tool_use_ids already reported
        pending = state.get("limit_pending")  # a rejected rate_limit_event not yet reported
        self.limit_pending: Optional[dict[str, Any]] = pending if isinstance(pending, dict) else None

    def state(self) -> dict[str, Any]:
        s = super().state()
        s["tools"] = self.tools.dump()
        s["denied"] = list(self.denied)
        s["limit_pending"] = self.limit_pending
        return s

    # Each stdout line type has its handler in stdout_handlers (below the class); any
    # other type reaches on_stdout, the default, which keeps it as an unknown event.

    def on_stderr(self, text: str) -> list[AgentEvent]:
        # Claude is silent on stderr unless it cannot run (bad flag, root without
        # IS_SANDBOX, auth): every line there explains a failure.
        return self.stderr_error(text)

    # ---- what differs in a CLI of the same stream shape (Qwen Code's parser overrides these)
    #: The tools whose successful call changed the file it names.
    write_tools: frozenset[str] = WRITE_TOOLS

    def target_of(self, name: Any, tool_input: Any) -> Optional[str]:
        """The object of a call to tool `name` (its command, file, URL or pattern)."""
        return tool_target(name, tool_input)

    def is_denial(self, text: str) -> bool:
        """True when a failed tool's result reads as a permission refusal."""
        return is_denial_text(text)

    def text_events(self, text: str) -> list[AgentEvent]:
        """The events of one non-empty text block of an assistant message."""
        return [self.event(K.TEXT, text=clip_tail(text, MAX_TEXT))]

    def change_of(self, obj: dict[str, Any], block: dict[str, Any]) -> str:
        """Whether a successful write added its file or modified it ("add", "modify"), from its line and block."""
        result = obj.get("tool_use_result")
        return "add" if isinstance(result, dict) and result.get("type") == "create" else "modify"

    # ---- the lines
    def _assistant(self, obj: dict[str, Any]) -> list[AgentEvent]:
        content = message_content(obj)
        if content is None:
            return []
        events = []
        if obj.get("error") == "rate_limit":  # claude's synthetic "You've hit your … limit" message
            events += self._limit_hit(text_of(content))
        return events + self._assistant_blocks(content)

    def _assistant_blocks(self, content: list[Any]) -> list[AgentEvent]:
        """TEXT for each text block, TOOL_STARTED for each tool_use (remembered by its id)."""
        events = []
        for block in content:
            if type(block) is not dict:
                continue
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    self.say(text)
                    events += self.text_events(text)
            elif kind == "tool_use":
                tool_id = block.get("id")
                name = clip(block.get("name"), 200) or "unknown"
                target = self.target_of(name, block.get("input"))
                if isinstance(tool_id, str):
                    self.tools.put(tool_id, name, target)
                else:
                    tool_id = None
                events.append(self.event(K.TOOL_STARTED, tool=name, tool_id=tool_id, target=target))
        return events

    def _user(self, obj: dict[str, Any]) -> list[AgentEvent]:
        content = message_content(obj)
        if content is None:
            return []  # a plain prompt echo
        events = []
        for block in content:
            if type(block) is not dict or block.get("type") != "tool_result":
                continue
            tool_id = block.get("tool_use_id")
            tool_id = tool_id if isinstance(tool_id, str) else None
            name, target = self.tools.finish(tool_id)
            if block.get("is_error") is True:
                text = text_of(block.get("content"))
                events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target,
                                         ok=False, message=clip(text)))
                if self.is_denial(text):
                    events += self._denial(tool_id, name, target, text)
                continue
            events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=True))
            if name in self.write_tools and target:
                events.append(self.event(K.FILE_CHANGED, tool=name, tool_id=tool_id, path=target,
                                         change=self.change_of(obj, block)))
        return events

    def _denial(self, tool_id: Optional[str], tool: Any, target: Any, message: Any) -> list[AgentEvent]:
        """One DENIAL per tool_use_id, whichever of the three places reported it first. A denial
        that names no tool (`{"tool_name": 7}`) is malformed: ignored, never a request to climb for."""
        if not isinstance(tool, str) or not tool.strip():
            return []
        if tool_id is not None:
            if tool_id in self.denied:
                return []
            self.denied.append(tool_id)
            if len(self.denied) > MAX_TRACKED:
                del self.denied[0]
        return [self.event(K.DENIAL, tool=clip(tool, 200) or "unknown", tool_id=tool_id,
                           target=clip(target), message=clip(message) or "")]

    def _rate_limit_event(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """claude.ai's unified limit, sent whenever its status changes."""
        info = obj.get("rate_limit_info")
        if type(info) is not dict:
            return [self.unknown(obj)]
        status = info.get("status")
        raw_type = info.get("rateLimitType")
        scope = limits.claude_scope(raw_type)
        resets_at = limits.from_epoch(info.get("resetsAt"))
        data = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 200}
        if status == "rejected" and info.get("isUsingOverage") is not True:
            # The words that say so follow (a synthetic assistant text, then the result).
            self.limit_pending = {"scope": scope, "resets_at": resets_at.isoformat() if resets_at else None,
                                  "data": data}
            return []
        if status == "rejected" or status == "allowed_warning":
            utilization = info.get("utilization")
            what = str(raw_type or "usage") + " limit"
            if status == "rejected":
                note = f"{what} reached; carrying on with extra usage"
            elif isinstance(utilization, (int, float)) and not isinstance(utilization, bool):
                note = f"{what} {utilization:.0%} used"
            else:
                note = f"{what} close"
            return self.limit_warning(limits.USAGE, scope, resets_at, note, data)
        return []  # allowed: back under every limit

    def _limit_hit(self, text: str) -> list[AgentEvent]:
        """The LIMIT_HIT of a refused request, in claude's words (once per run)."""
        pending = self.limit_pending or {}
        if self.limit_reported:
            return []
        self.limit_pending = None
        usage = bool(pending) or limits.is_claude_usage_text(text)
        resets_at = limits.from_iso(pending.get("resets_at"))
        if resets_at is None and usage:
            resets_at = limits.claude_reset_from_text(text, limits.now())
        scope = pending.get("scope") or (limits.claude_scope_from_text(text) if usage else None)
        if not text:
            raw = (pending.get("data") or {}).get("rateLimitType")
            text = f"{raw or 'usage'} limit reached (rate_limit_event rejected)" if pending else "HTTP 429"
        return self.limit_hit(limits.USAGE if usage else limits.RATE, scope, resets_at, text, pending.get("data"))

    def flush(self) -> list[AgentEvent]:
        """A rejected rate_limit_event whose words never came (the run was cut short)."""
        if self.limit_pending and not self.limit_reported:
            stream, self._stream = self._stream, "exit"
            events = self._limit_hit("")
            self._stream = stream
            return events
        return []

    def _stream_event(self, obj: dict[str, Any]) -> list[AgentEvent]:
        # --include-partial-messages: the deltas repeat what the full assistant line that
        # follows carries, so only the start of a message is passed on, as a liveness hint.
        # A delta's words are still noted: a secret can be cut between two of them.
        inner = obj.get("event")
        if type(inner) is not dict:
            return []
        kind = inner.get("type")
        if kind == "content_block_delta":
            delta = inner.get("delta")
            if type(delta) is dict and type(delta.get("type")) is str:
                field = _DELTA_FIELDS.get(delta["type"])
                if field:
                    self.say(delta.get(field))
            return []
        if kind == "message_start":
            return [self.event(K.STATUS, status="streaming")]
        return []

    def _system(self, obj: dict[str, Any]) -> list[AgentEvent]:
        subtype = obj.get("subtype")
        if subtype == "init":
            data = {k: clip(obj.get(k), 200) for k in ("model", "cwd", "permissionMode", "claude_code_version")
                    if obj.get(k) is not None}
            if isinstance(data.get("model"), str):
                self.model = data["model"]
            return self.session_started(obj.get("session_id"), data)
        if subtype == "permission_denied":
            tool_id = obj.get("tool_use_id")
            tool = obj.get("tool_name")
            target = None
            if isinstance(tool_id, str):
                _, target = self.tools.get(tool_id)
            else:
                tool_id = None
            if target is None:
                target = self.target_of(tool, obj.get("tool_input"))
            message = obj.get("message") or obj.get("decision_reason") or "permission denied"
            return self._denial(tool_id, tool, target, message)
        if subtype == "api_retry":
            attempt, most = as_int(obj.get("attempt")), as_int(obj.get("max_retries"))
            cause = obj.get("error") or obj.get("error_status") or "API error"
            return [self.event(K.STATUS, status="retrying",
                               message=clip(f"retry {attempt}/{most}: {cause}"))]
        if subtype == "status":
            return [self.event(K.STATUS, status=clip(obj.get("status"), 100) or "status")]
        if subtype == "compact_boundary":
            return [self.event(K.STATUS, status="compacting")]
        return [self.unknown(obj, raw_type=f"system/{subtype}")]

    def _session_and_denials(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The result's session id, then a DENIAL for each of its permission_denials not yet reported."""
        events = self.session_started(obj.get("session_id"))
        denials = obj.get("permission_denials")
        if isinstance(denials, list):
            for d in denials:
                if type(d) is not dict:
                    continue
                tool_id = d.get("tool_use_id")
                tool = d.get("tool_name")
                target = self.target_of(tool, d.get("tool_input"))
                events += self._denial(tool_id if isinstance(tool_id, str) else None, tool, target,
                                       f"{tool} was not permitted")
        return events

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self._session_and_denials(obj)
        subtype = obj.get("subtype")
        is_error = obj.get("is_error")
        if subtype == "error_max_turns":
            outcome = Outcome.MAX_TURNS
        elif is_error is True or (is_error is None and isinstance(subtype, str) and subtype.startswith("error")):
            outcome = Outcome.ERROR
        else:
            outcome = Outcome.SUCCESS
        text = obj.get("result")
        text = clip_tail(text, MAX_TEXT) if isinstance(text, str) else None
        if outcome is Outcome.ERROR and (obj.get("api_error_status") == 429 or self.limit_pending):
            events += self._limit_hit(text or "")
        if outcome is Outcome.MAX_TURNS:
            events.append(self.event(K.ERROR, message=f"reached the maximum number of turns ({as_int(obj.get('num_turns'))})"))
        elif outcome is Outcome.ERROR:
            status = obj.get("api_error_status")
            detail = text or str(subtype or "error")
            if status and str(status) not in detail:
                detail = f"HTTP {status}: {detail}"
            events.append(self.event(K.ERROR, message=clip(detail)))
        usage = claude_usage(obj.get("usage"), obj.get("total_cost_usd"), self.model)
        return events + self.run_finished(outcome, text, usage)


#: A streamed content block's delta type -> the field holding its piece of text.
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}

ClaudeStreamParser.stdout_handlers = {
    "assistant": ClaudeStreamParser._assistant,
    "user": ClaudeStreamParser._user,
    "stream_event": ClaudeStreamParser._stream_event,
    "system": ClaudeStreamParser._system,
    "result": ClaudeStreamParser._result,
    "rate_limit_event": ClaudeStreamParser._rate_limit_event,
}


class ClaudeAdapter(Adapter):
    name = "claude"
    BYPASS_OPTIONS = (("--permission-mode", "bypassPermissions"),)
    assigns_session_id = True
    binary = "claude"
    install_hint = "npm install -g @anthropic-ai/claude-code"
    temp_vars = ("CLAUDE_CODE_TMPDIR",)

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """~/.claude (or $CLAUDE_CONFIG_DIR) and its config file ~/.claude.json (in
        $CLAUDE_CONFIG_DIR when set). Claude Code saves that file through a temp file and a
        rename in the same folder, under a lock folder beside it; where it may only rewrite the
        file (a rule for $HOME would open all of it), it falls back to writing it in place."""
        custom = env.get("CLAUDE_CONFIG_DIR")
        base = Path(custom) if custom else home_of(env)
        return [base if custom else base / ".claude"], [base / ".claude.json"]

    def build_command(self, spec: LaunchSpec) -> Command:
        """`claude -p PROMPT --output-format stream-json --verbose` plus session, grant and options."""
        argv = [self.executable(), "-p", prompt_arg(spec.prompt), "--output-format", "stream-json", "--verbose"]
        flags, session_id = session_flags(self.name, spec.resume, spec.cli_session_id)
        argv += flags
        perm_args, env = self.permission_args(spec.grant, spec.cwd)
        argv += perm_args
        if spec.extra_dirs:
            argv += ["--add-dir", *(str(d) for d in spec.extra_dirs)]
        if spec.model:
            argv += ["--model", spec.model]
        if spec.system_prompt:
            argv += ["--append-system-prompt", spec.system_prompt]
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=session_id)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """read: default mode; edit: acceptEdits; full: + Bash and web tools; dangerous: bypass."""
        if grant.level is Permission.FULL and grant.dangerous:
            # As root, claude refuses the bypass mode unless it is told it is sandboxed.
            env = {"IS_SANDBOX": "1"} if _is_root() else {}
            return ["--permission-mode", "bypassPermissions"], env
        mode = "default" if grant.level is Permission.READ else "acceptEdits"
        args = ["--permission-mode", mode]
        allowed = self.allowed_tools(grant, FULL_TOOLS)
        if allowed:
            args += ["--allowedTools", *allowed]
        return args, {}

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """`Bash(cmd)` for one simple command, the tool's own name for an MCP tool.

        The exact form, not the prefix form `Bash(cmd:*)`: the rule lets through the command
        whose arguments were checked, never that command followed by more arguments.
        """
        if denial.tool == "Bash":
            command = simple_command(denial.target)
            return f"Bash({command})" if command else None
        if denial.tool.startswith("mcp__"):
            return denial.tool
        return None

    def prefix_tool_for(self, denial: Denial) -> Optional[str]:
        """`Bash(cmd:*)`: the command with any arguments (only ever granted at edit, for the tests)."""
        if denial.tool == "Bash":
            command = simple_command(denial.target)
            return f"Bash({command}:*)" if command else None
        return self.narrow_tool_for(denial)

    def level_needed(self, denial: Denial) -> Permission:
        """Writes need edit; a shell command edit plus its narrow rule, else full; the web full."""
        if denial.tool in WRITE_TOOLS:
            if "allowed working directories" in denial.message:
                return Permission.FULL  # outside the folders: no mode helps, only --add-dir
            return Permission.EDIT
        if denial.tool in NETWORK_TOOLS:
            return Permission.FULL  # the network is only open on the top rung
        if denial.tool == "Bash" or denial.tool.startswith("mcp__"):
            return Permission.EDIT if self.narrow_tool_for(denial) else Permission.FULL
        return Permission.FULL

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> ClaudeStreamParser:
        """A parser for claude's stream-json stdout and its stderr."""
        return ClaudeStreamParser(state)

    def urgent_bytes(self, stream: str, data: bytes) -> bool:
        """Claude prints on stderr only when it cannot run; on stdout, URGENT_LINE."""
        if stream == "stderr":
            return bool(data.strip())
        return URGENT_LINE.search(data) is not None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
