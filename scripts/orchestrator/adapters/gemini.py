"""Gemini CLI (`gemini -p PROMPT -o stream-json`).

Facts from REAL_CLIS.md: headless without --yolo, gemini does not register
run_shell_command or write_file, so a call to them comes back as a tool_result error of
type `tool_not_registered` and the run still ends `success`; a policy rule gives
`policy_violation`, plan mode `invalid_tool_params`. Assistant text arrives as many
`delta` messages that make up one message. A workspace must be trusted headless
(GEMINI_CLI_TRUST_WORKSPACE=true), and a stale ~/.gemini/projects.json.lock makes the
next launch stall for tens of seconds.

Limits (CLI_PERMISSIONS_SPEC.md, "Usage limits and rate limits"): the Gemini API answers
429 RESOURCE_EXHAUSTED. A per-minute quota with a short retryDelay is retried by gemini
itself (stderr "Attempt N failed: … Retrying after Nms...", only STATUS here); a per-day
quota, a long retryDelay or the last failed attempt ends the run with an error result
("You have exhausted your daily quota on this model.", "… Please retry in 30s.") — one
LIMIT_HIT. Its reset: the result's timestamp plus the retry delay, or for a per-day quota
the next midnight Pacific time, when Google resets those.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from . import limits
from ..spend.pricing import estimate
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .commandline import prompt_arg, session_flags, simple_command
from .streams import (
    MAX_TEXT,
    CallMemory,
    JsonLineParser,
    K,
    as_int,
    clip,
    clip_tail,
    first_string,
)

WRITE_TOOLS = frozenset({"write_file", "replace", "edit", "smart_edit"})
SHELL_TOOL = "run_shell_command"
NETWORK_TOOLS = frozenset({"web_fetch", "google_web_search"})
#: What `full` allows on top of auto_edit: any shell command and the web.
FULL_TOOLS = (SHELL_TOOL, "web_fetch")
#: tool_result error types that mean "not allowed", not "went wrong".
DENIAL_ERRORS = frozenset({"tool_not_registered", "policy_violation"})
#: A lock older than this is left over from a dead run (a live one holds it for moments).
STALE_LOCK_SECONDS = 10.0

_TARGET_FIELDS = ("command", "file_path", "absolute_path", "path", "dir_path", "url", "query", "pattern", "prompt")


def gemini_usage(stats: Any, model: Optional[str] = None) -> Usage:
    """Usage from a result's stats (the per-model figures when the totals are missing).

    gemini reports no price: it is estimated per model from stats.models (a run may use a
    router model besides the main one), else from the init line's model.
    """
    s = stats if isinstance(stats, dict) else {}
    models = s.get("models")
    per_model: dict[str, tuple[int, int, int]] = {}
    if isinstance(models, dict):
        for name, m in models.items():
            if isinstance(m, dict) and isinstance(name, str):
                per_model[clip(name, 200)] = (as_int(m.get("input_tokens")), as_int(m.get("output_tokens")),
                                              as_int(m.get("cached")))
    if "input_tokens" in s or "output_tokens" in s:
        total_in, total_out, cached = as_int(s.get("input_tokens")), as_int(s.get("output_tokens")), as_int(s.get("cached"))
    else:
        total_in = sum(v[0] for v in per_model.values())
        total_out = sum(v[1] for v in per_model.values())
        cached = sum(v[2] for v in per_model.values())
    named = ", ".join(per_model) if per_model else (model if model and model != "auto" else None)
    usage = Usage(input_tokens=total_in, output_tokens=total_out, cached_input_tokens=cached, model=named)
    return estimate(usage, per_model or None)


def is_denial_error(error_type: Any, message: str) -> bool:
    """True when a tool_result error is a refusal (plan mode refuses as invalid params)."""
    if not isinstance(error_type, str):
        return False
    if error_type in DENIAL_ERRORS:
        return True
    return error_type == "invalid_tool_params" and "plan" in message.lower()


def _is_turn_limit(error_type: Any, message: Optional[str]) -> bool:
    """True when a failed result says the session hit its turn limit."""
    kind = error_type.lower() if isinstance(error_type, str) else ""
    if "turn" in kind and ("max" in kind or "limit" in kind):
        return True
    return "max session turns" in (message or "").lower()


class GeminiStreamParser(JsonLineParser):
    """Normalizes gemini's stream-json lines into AgentEvents, joining text deltas."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        self.tools = CallMemory(state.get("tools"))  # tool_id -> (name, target)
        pending = state.get("pending")
        self.pending: list[str] = [pending] if isinstance(pending, str) and pending else []
        self.pending_len = len(pending) if self.pending else 0
        last_text = state.get("last_text")
        self.last_text = last_text if isinstance(last_text, str) else None

    def state(self) -> dict[str, Any]:
        s = super().state()
        s.update(tools=self.tools.dump(), pending=clip_tail("".join(self.pending), MAX_TEXT),
                 last_text=self.last_text)
        return s

    # Each stdout line type has its handler in stdout_handlers (below the class); any
    # other type reaches on_stdout. Every line but an assistant delta ends the message
    # being streamed, so those handlers flush it first.

    def on_stdout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return self.flush() + [self.unknown(obj)]

    def _message(self, obj: dict[str, Any]) -> list[AgentEvent]:
        if obj.get("role") != "assistant":
            return self.flush()  # the prompt echoed back
        content = obj.get("content")
        if not isinstance(content, str):
            return []
        self.say(content)
        if obj.get("delta") is True:
            # The hot path: most lines are deltas. Keep them; one TEXT per message.
            self.pending.append(content)
            self.pending_len += len(content)
            if self.pending_len > 2 * MAX_TEXT:
                joined = clip_tail("".join(self.pending), MAX_TEXT)
                self.pending, self.pending_len = [joined], len(joined)
            return []
        events = self.flush()
        self.pending, self.pending_len = [content], len(content)
        return events + self.flush()

    def _init(self, obj: dict[str, Any]) -> list[AgentEvent]:
        model = obj.get("model")
        if isinstance(model, str) and model:
            self.model = clip(model, 200)
        return self.flush() + self.session_started(obj.get("session_id"), {"model": clip(model, 200)} if model else None)

    def _error_line(self, obj: dict[str, Any]) -> list[AgentEvent]:
        message = clip(obj.get("message")) or "error"
        if obj.get("severity") == "warning":
            return self.flush() + [self.event(K.STATUS, status="warning", message=message)]
        return self.flush() + self._limit(message, obj.get("timestamp")) + [self.event(K.ERROR, message=message)]

    def _limit(self, message: Optional[str], timestamp: Any) -> list[AgentEvent]:
        """LIMIT_HIT when an error's words are a Gemini API quota refusal (once per run)."""
        found = limits.gemini_limit(message) if message else None
        if not found or self.limit_reported:
            return []
        kind, scope = found
        at = limits.from_iso(timestamp) or limits.now()
        delay = limits.retry_delay(message or "")
        if scope == limits.DAILY:
            resets_at = limits.next_google_midnight(at)
        else:
            resets_at = at + timedelta(seconds=delay if delay is not None else 60)
        data = {"retry_delay_s": delay} if delay is not None else None
        return self.limit_hit(kind, scope, resets_at, message, data)

    def on_stderr(self, text: str) -> list[AgentEvent]:
        # Tool errors and API errors are repeated on stdout; a fatal start-up error
        # (untrusted folder, bad flag, auth) is only here.
        if text.startswith("Error") and not text.startswith(("Error executing tool", "Error when talking to Gemini API")):
            return self.stderr_error(text)
        if text.startswith("Attempt ") and " failed" in text[:40]:
            # gemini retrying a request itself (a 429 with a short retryDelay, a 5xx): alive, not yet failed
            return [self.event(K.STATUS, status="retrying", message=clip(text, 300))]
        return []

    def flush(self) -> list[AgentEvent]:
        """The streamed message so far as one TEXT event."""
        if not self.pending:
            return []
        text = clip_tail("".join(self.pending), MAX_TEXT)
        self.pending, self.pending_len = [], 0
        if not text:
            return []
        self.last_text = text
        return [self.event(K.TEXT, text=text)]

    def _tool_use(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self.flush()
        name = clip(obj.get("tool_name"), 200) or "unknown"
        tool_id = obj.get("tool_id")
        params = obj.get("parameters")
        target = clip(first_string(params, _TARGET_FIELDS)) if isinstance(params, dict) else None
        if isinstance(tool_id, str):
            self.tools.put(tool_id, name, target)
        else:
            tool_id = None
        events.append(self.event(K.TOOL_STARTED, tool=name, tool_id=tool_id, target=target))
        return events

    def _tool_result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self.flush()
        tool_id = obj.get("tool_id")
        tool_id = tool_id if isinstance(tool_id, str) else None
        name, target = self.tools.finish(tool_id)
        if obj.get("status") == "success":
            events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=True))
            if name in WRITE_TOOLS and target:
                events.append(self.event(K.FILE_CHANGED, tool=name, tool_id=tool_id, path=target, change="modify"))
            return events
        error = obj.get("error")
        error = error if isinstance(error, dict) else {}
        message = error.get("message") or obj.get("output") or "tool failed"
        message = clip(message) or ""
        events.append(self.event(K.TOOL_FINISHED, tool=name, tool_id=tool_id, target=target, ok=False, message=message))
        if is_denial_error(error.get("type"), message):
            events.append(self.event(K.DENIAL, tool=name or "unknown", tool_id=tool_id, target=target,
                                     message=message))
        return events

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = self.flush()
        status = obj.get("status")
        error = obj.get("error")
        error = error if isinstance(error, dict) else {}
        message = clip(error.get("message")) if error else None
        if status == "success":
            outcome = Outcome.SUCCESS
        elif _is_turn_limit(error.get("type"), message):
            outcome = Outcome.MAX_TURNS
        else:
            outcome = Outcome.ERROR
        if outcome is not Outcome.SUCCESS:
            events += self._limit(message, obj.get("timestamp"))
            events.append(self.event(K.ERROR, message=message or f"run ended with status {clip(status, 100)}"))
        usage = gemini_usage(obj.get("stats"), self.model)
        return events + self.run_finished(outcome, self.last_text, usage)


GeminiStreamParser.stdout_handlers = {
    "message": GeminiStreamParser._message,
    "tool_use": GeminiStreamParser._tool_use,
    "tool_result": GeminiStreamParser._tool_result,
    "init": GeminiStreamParser._init,
    "result": GeminiStreamParser._result,
    "error": GeminiStreamParser._error_line,
}


class GeminiAdapter(Adapter):
    name = "gemini"
    BYPASS_OPTIONS = (("--yolo", None), ("--approval-mode", "yolo"))

    def bypass_flags(self, argv):
        """Also `-y`, gemini's short --yolo — only on gemini's own command line (elsewhere -y means other things)."""
        found = super().bypass_flags(argv)
        if argv and os.path.basename(argv[0]).startswith(self.binary) and "-y" in argv:
            found.append("-y")
        return found
    assigns_session_id = True
    binary = "gemini"
    install_hint = "npm install -g @google/gemini-cli"

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """~/.gemini (under $GEMINI_CLI_HOME when set): settings, logins, chats, project locks."""
        return [Path(env.get("GEMINI_CLI_HOME") or home_of(env)) / ".gemini"], []
    narrow_rules_exact = False  # run_shell_command(cmd) also matches "cmd ..." (a prefix)

    def build_command(self, spec: LaunchSpec) -> Command:
        """`gemini -p PROMPT -o stream-json` plus session, grant and options."""
        prompt = spec.prompt
        if spec.system_prompt:
            # gemini has no flag that adds to its system prompt (GEMINI_SYSTEM_MD replaces
            # it whole), so the instructions lead the prompt.
            prompt = f"{spec.system_prompt}\n\n{prompt}"
        argv = [self.executable(), "-p", prompt_arg(prompt), "-o", "stream-json"]
        flags, session_id = session_flags(self.name, spec.resume, spec.cli_session_id)
        argv += flags
        perm_args, env = self.permission_args(spec.grant, spec.cwd)
        argv += perm_args
        for directory in spec.extra_dirs:
            argv += ["--include-directories", str(directory)]
        if spec.model:
            argv += ["-m", spec.model]
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=session_id)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """read: default approval; edit: auto_edit; full: + run_shell_command and web_fetch; dangerous: --yolo."""
        # Headless, gemini exits 55 in a folder it does not trust.
        env = {"GEMINI_CLI_TRUST_WORKSPACE": "true"}
        if grant.level is Permission.FULL and grant.dangerous:
            return ["--yolo"], env  # --yolo and --approval-mode cannot be combined
        mode = "default" if grant.level is Permission.READ else "auto_edit"
        args = ["--approval-mode", mode]
        allowed = self.allowed_tools(grant, FULL_TOOLS)
        for tool in allowed:
            args += ["--allowed-tools", tool]
        return args, env

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """`run_shell_command(cmd)` for one simple command; nothing narrower exists for the rest.

        Gemini matches it as a prefix (cmd, or cmd followed by a space and anything), so the
        rule also lets the command through with further arguments (narrow_rules_exact).
        """
        if denial.tool == SHELL_TOOL:
            command = simple_command(denial.target)
            return f"{SHELL_TOOL}({command})" if command else None
        return None

    def level_needed(self, denial: Denial) -> Permission:
        """File writes need edit; a shell command edit plus its narrow rule, else full; the web full."""
        if denial.tool in WRITE_TOOLS:
            return Permission.EDIT
        if denial.tool in NETWORK_TOOLS:
            return Permission.FULL  # the network is only open on the top rung
        if denial.tool == SHELL_TOOL:
            return Permission.EDIT if self.narrow_tool_for(denial) else Permission.FULL
        return Permission.FULL

    def prepare_launch(self, env: dict[str, str]) -> None:
        """Remove a stale ~/.gemini/projects.json.lock, which stalls the next start."""
        home = env.get("HOME") or os.path.expanduser("~")
        lock = Path(home) / ".gemini" / "projects.json.lock"
        try:
            age = time.time() - lock.lstat().st_mtime
        except OSError:
            return
        if age < STALE_LOCK_SECONDS:
            return  # a run starting right now holds it
        try:
            if lock.is_dir() and not lock.is_symlink():
                shutil.rmtree(lock)
            else:
                lock.unlink()
        except OSError:
            pass  # another launch removed it first

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> GeminiStreamParser:
        """A parser for gemini's stream-json stdout and its stderr."""
        return GeminiStreamParser(state)
