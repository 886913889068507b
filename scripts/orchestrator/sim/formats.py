"""Stream shapes of the real CLIs, spoken by the sim agent.

Each emitter writes JSONL (and, like the real CLI, some stderr) in the shape one real CLI
uses, as recorded in the captures: claude stream-json, codex exec --json, gemini
stream-json. The sim's denials look exactly like that CLI's denials, so orch's real
parsers and recovery are exercised by offline runs.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional, TextIO

TOKENS_PER_TURN_IN = 120
TOKENS_PER_TURN_OUT = 80
COST_PER_TURN = 0.0012


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now().microsecond // 1000:03d}Z"


def _local_zone() -> tuple[Optional[str], Optional[tzinfo]]:
    """The zone the real CLIs print local times in: $TZ when it names one; (None, None): the system's."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            from zoneinfo import ZoneInfo

            return name, ZoneInfo(name)
        except Exception:  # an unknown zone: the system's, as the CLIs fall back
            pass
    return None, None


def _hm(moment: datetime, minute_always: bool) -> str:
    """"3:12pm" / "9am" (claude) or "3:12 PM" (codex)."""
    hour = moment.hour % 12 or 12
    if minute_always:
        return f"{hour}:{moment.minute:02d} {'PM' if moment.hour >= 12 else 'AM'}"
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes}{'pm' if moment.hour >= 12 else 'am'}"


def claude_reset_words(resets_at: datetime) -> str:
    """How claude words a reset: "3:12pm (UTC)", "Dec 5, 2:23pm (Europe/Berlin)" beyond 24 h."""
    name, tz = _local_zone()
    if tz is None:  # claude names the zone; without $TZ the sim says UTC
        name, tz = "UTC", timezone.utc
    local, now = resets_at.astimezone(tz), datetime.now(timezone.utc).astimezone(tz)
    when = _hm(local, minute_always=False)
    if resets_at - datetime.now(timezone.utc) > timedelta(hours=24):
        year = f", {local.year}" if local.year != now.year else ""
        when = f"{local:%b} {local.day}{year}, {when}"
    return f"{when} ({name})"


def codex_reset_words(resets_at: datetime) -> str:
    """How codex words a reset: "3:12 PM" the same local day, else "Dec 5th, 2026 2:23 PM"."""
    _, tz = _local_zone()
    local, now = resets_at.astimezone(tz), datetime.now(timezone.utc).astimezone(tz)
    if local.date() == now.date():
        return _hm(local, minute_always=True)
    suffix = "th" if 11 <= local.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(local.day % 10, "th")
    return f"{local:%b} {local.day}{suffix}, {local.year} {_hm(local, minute_always=True)}"


class Emitter:
    """Base: counts turns and tokens; subclasses render each act in their CLI's shape."""

    fmt = ""

    def __init__(self, session_id: str, cwd: str, role: str, permission: str,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr, prior_turns: int = 0):
        self.session_id = session_id
        self.cwd = cwd
        self.role = role
        self.permission = permission
        self.out = out
        self.err = err
        self.turns = 0
        self.prior_turns = prior_turns
        self.denials: list[dict[str, Any]] = []
        self.tool_calls = 0
        self._n = 0

    def emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def next_id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{uuid.uuid4().hex[:20]}"

    # acts, overridden per format
    def start(self, prompt: str) -> None: ...
    def text(self, text: str) -> None: ...
    def write_ok(self, path: str, content: str) -> None: ...
    def write_denied(self, path: str, content: str) -> None: ...
    def write_failed(self, path: str, content: str, error: str) -> None: ...
    def shell_ok(self, command: str, output: str, exit_code: int) -> None: ...
    def shell_denied(self, command: str) -> None: ...
    def read_ok(self, path: str, content: str) -> None: ...
    def finish(self, final_text: str) -> None: ...
    def fail(self, status: int, message: str) -> int:
        return 1

    def limit(self, seconds: float) -> int:
        """The CLI's own usage/rate-limit refusal, resetting `seconds` from now; the exit code."""
        return self.fail(429, "rate limit exceeded")


# --------------------------------------------------------------------------- claude


class ClaudeEmitter(Emitter):
    fmt = "claude"
    MODE = {"read": "default", "edit": "acceptEdits", "full": "acceptEdits"}

    def _assistant(self, block: dict[str, Any], msg_id: Optional[str] = None) -> None:
        self.emit({
            "type": "assistant",
            "message": {"id": msg_id or self.next_id("msg_"), "type": "message", "role": "assistant",
                        "model": "sim", "content": [block], "stop_reason": None,
                        "usage": {"input_tokens": TOKENS_PER_TURN_IN, "output_tokens": 1}},
            "parent_tool_use_id": None, "session_id": self.session_id, "uuid": str(uuid.uuid4()),
        })

    def _result_block(self, tool_id: str, content: str, is_error: bool) -> None:
        self.emit({
            "type": "user",
            "message": {"role": "user", "content": [
                {"tool_use_id": tool_id, "type": "tool_result", "content": content, "is_error": is_error}]},
            "parent_tool_use_id": None, "session_id": self.session_id, "uuid": str(uuid.uuid4()),
            "timestamp": _now_iso(),
        })

    def _tool(self, name: str, tool_input: dict[str, Any], content: str, is_error: bool, denied: bool) -> None:
        self.turns += 1
        tool_id = self.next_id("toolu_")
        self._assistant({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        self._result_block(tool_id, content, is_error)
        if denied:
            self.denials.append({"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input})

    def start(self, prompt: str) -> None:
        self.emit({
            "type": "system", "subtype": "init", "cwd": self.cwd, "session_id": self.session_id,
            "tools": ["Bash", "Edit", "Read", "Write"], "mcp_servers": [], "model": "sim",
            "permissionMode": self.MODE.get(self.permission, "default"), "slash_commands": [],
            "apiKeySource": "none", "claude_code_version": "sim", "output_style": "default",
            "uuid": str(uuid.uuid4()),
        })

    def text(self, text: str) -> None:
        self.turns += 1
        self._assistant({"type": "text", "text": text})

    def write_ok(self, path: str, content: str) -> None:
        self._tool("Write", {"file_path": path, "content": content},
                   f"File created successfully at: {path}", False, False)

    def write_denied(self, path: str, content: str) -> None:
        self._tool("Write", {"file_path": path, "content": content},
                   f"Claude requested permissions to write to {path}, but you haven't granted it yet.", True, True)

    def write_failed(self, path: str, content: str, error: str) -> None:
        self._tool("Write", {"file_path": path, "content": content}, error, True, False)

    def shell_ok(self, command: str, output: str, exit_code: int) -> None:
        self._tool("Bash", {"command": command, "description": f"Run {command}"},
                   output if exit_code == 0 else f"Exit code {exit_code}\n{output}", exit_code != 0, False)

    def shell_denied(self, command: str) -> None:
        self._tool("Bash", {"command": command, "description": f"Run {command}"},
                   "This command requires approval", True, True)

    def read_ok(self, path: str, content: str) -> None:
        self._tool("Read", {"file_path": path}, content[:2000], False, False)

    def _usage(self) -> tuple[dict[str, Any], float]:
        turns = max(self.turns, 1)
        return ({"input_tokens": TOKENS_PER_TURN_IN * turns, "output_tokens": TOKENS_PER_TURN_OUT * turns,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, round(COST_PER_TURN * turns, 6))

    def finish(self, final_text: str) -> None:
        self.text(final_text)
        usage, cost = self._usage()
        self.emit({
            "type": "result", "subtype": "success", "is_error": False, "api_error_status": None,
            "num_turns": self.turns, "result": final_text, "stop_reason": "end_turn",
            "session_id": self.session_id, "total_cost_usd": cost, "usage": usage,
            "permission_denials": self.denials, "terminal_reason": "completed", "uuid": str(uuid.uuid4()),
        })

    def fail(self, status: int, message: str) -> int:
        text = f"API Error: {status} {message}"
        self.emit({
            "type": "assistant",
            "message": {"id": str(uuid.uuid4()), "model": "<synthetic>", "role": "assistant", "type": "message",
                        "stop_reason": "stop_sequence", "content": [{"type": "text", "text": text}],
                        "usage": {"input_tokens": 0, "output_tokens": 0}},
            "parent_tool_use_id": None, "session_id": self.session_id, "uuid": str(uuid.uuid4()),
            "error": "rate_limit" if status == 429 else "unknown",
        })
        self.emit({
            "type": "result", "subtype": "success", "is_error": True, "api_error_status": status,
            "num_turns": self.turns + 1, "result": text, "stop_reason": "stop_sequence",
            "session_id": self.session_id, "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0},
            "permission_denials": self.denials, "uuid": str(uuid.uuid4()),
        })
        return 1

    def limit(self, seconds: float) -> int:
        # A claude.ai login at its limit (claude 2.1.197, tests/fixtures/cli-captures/claude_usage_limit):
        # the rejected rate_limit_event, claude's synthetic words, an is_error result; exit 1.
        resets = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        claim, name = ("five_hour", "session") if seconds <= 5 * 3600 else ("seven_day", "weekly")
        self.emit({"type": "rate_limit_event", "rate_limit_info": {
            "status": "rejected", "resetsAt": int(resets.timestamp()), "rateLimitType": claim, "isUsingOverage": False},
            "uuid": str(uuid.uuid4()), "session_id": self.session_id})
        text = f"You've hit your {name} limit · resets {claude_reset_words(resets)}"
        self.emit({
            "type": "assistant",
            "message": {"id": str(uuid.uuid4()), "model": "<synthetic>", "role": "assistant", "type": "message",
                        "stop_reason": "stop_sequence", "content": [{"type": "text", "text": text}],
                        "usage": {"input_tokens": 0, "output_tokens": 0}},
            "parent_tool_use_id": None, "session_id": self.session_id, "uuid": str(uuid.uuid4()),
            "error": "rate_limit",
        })
        self.emit({
            "type": "result", "subtype": "success", "is_error": True, "api_error_status": 429,
            "num_turns": self.turns + 1, "result": text, "stop_reason": "stop_sequence",
            "session_id": self.session_id, "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0},
            "permission_denials": self.denials, "terminal_reason": "completed", "uuid": str(uuid.uuid4()),
        })
        return 1


# --------------------------------------------------------------------------- codex


class CodexEmitter(Emitter):
    fmt = "codex"

    def _item(self, item: dict[str, Any], started: bool = False) -> None:
        self.emit({"type": "item.started" if started else "item.completed", "item": item})

    def _item_id(self) -> str:
        self._n += 1
        return f"item_{self._n - 1}"

    def _agent_message(self, text: str) -> None:
        self._item({"id": self._item_id(), "type": "agent_message", "text": text})

    def start(self, prompt: str) -> None:
        self.err.write("Reading additional input from stdin...\n")
        self.err.flush()
        self.emit({"type": "thread.started", "thread_id": self.session_id})
        self.emit({"type": "turn.started"})

    def text(self, text: str) -> None:
        self.turns += 1
        self._agent_message(text)

    def write_ok(self, path: str, content: str) -> None:
        self.turns += 1
        item = {"id": self._item_id(), "type": "file_change", "changes": [{"path": path, "kind": "add"}],
                "status": "in_progress"}
        self._item(item, started=True)
        self._item({**item, "status": "completed"})

    def write_denied(self, path: str, content: str) -> None:
        # apply_patch refused by the read-only sandbox: nothing on stdout but the model's
        # later words, and one ERROR line from the tool router on stderr (as codex 0.169).
        self.turns += 1
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.err.write(
            f"{ts} ERROR codex_core::tools::router: error=patch rejected: writing is blocked by "
            f"read-only sandbox; rejected by user approval settings\n")
        self.err.flush()
        self._agent_message(
            f"Tool finished. Result was: patch rejected: writing is blocked by read-only sandbox; "
            f"could not write {path}")

    def write_failed(self, path: str, content: str, error: str) -> None:
        self.turns += 1
        item = {"id": self._item_id(), "type": "file_change", "changes": [{"path": path, "kind": "add"}],
                "status": "in_progress"}
        self._item(item, started=True)
        self._item({**item, "status": "failed"})
        self._agent_message(f"Tool finished. Result was: apply_patch failed: {error}")

    def shell_ok(self, command: str, output: str, exit_code: int) -> None:
        self.turns += 1
        wrapped = f"/bin/bash -lc '{command}'"
        item = {"id": self._item_id(), "type": "command_execution", "command": wrapped,
                "aggregated_output": "", "exit_code": None, "status": "in_progress"}
        self._item(item, started=True)
        self._item({**item, "aggregated_output": output, "exit_code": exit_code,
                    "status": "completed" if exit_code == 0 else "failed"})

    def shell_denied(self, command: str) -> None:
        self.turns += 1
        target = command.split(">")[-1].strip() if ">" in command else command
        self._agent_message(
            f"Tool finished. Result was: Process exited with code 1 Output: /bin/bash: line 1: "
            f"{target}: Read-only file system")

    def read_ok(self, path: str, content: str) -> None:
        self.shell_ok(f"cat {path}", content[:2000], 0)

    def finish(self, final_text: str) -> None:
        self.text(final_text)
        turns = max(self.turns + self.prior_turns, 1)  # codex reports thread totals
        self.emit({"type": "turn.completed", "usage": {
            "input_tokens": TOKENS_PER_TURN_IN * turns, "cached_input_tokens": 0,
            "output_tokens": TOKENS_PER_TURN_OUT * turns, "reasoning_output_tokens": 0}})

    def fail(self, status: int, message: str) -> int:
        body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "code": status,
                                                      "message": message}})
        self.emit({"type": "error", "message": body})
        self.emit({"type": "turn.failed", "error": {"message": body}})
        return 1

    def limit(self, seconds: float) -> int:
        # A ChatGPT plan at its limit (codex 0.169.0, tests/fixtures/cli-captures/codex_usage_limit):
        # the same words on an error line and on turn.failed; exit 1.
        resets = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        text = ("You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
                f"https://chatgpt.com/settings/usage to purchase more credits or try again at {codex_reset_words(resets)}.")
        self.emit({"type": "error", "message": text})
        self.emit({"type": "turn.failed", "error": {"message": text}})
        return 1


# --------------------------------------------------------------------------- gemini


class GeminiEmitter(Emitter):
    fmt = "gemini"

    def _tool(self, name: str, params: dict[str, Any], ok: bool, output: Optional[str], error_type: str = "") -> None:
        self.turns += 1
        self.tool_calls += 1
        tool_id = f"{name}__{name}_{int(datetime.now().timestamp() * 1000)}_{self._n}"
        self._n += 1
        self.emit({"type": "tool_use", "timestamp": _now_iso(), "tool_name": name, "tool_id": tool_id,
                   "parameters": params})
        result: dict[str, Any] = {"type": "tool_result", "timestamp": _now_iso(), "tool_id": tool_id,
                                  "status": "success" if ok else "error"}
        if ok and output is not None:
            result["output"] = output
        if not ok:
            msg = output or f'Tool "{name}" not found.'
            result["output"] = msg
            result["error"] = {"type": error_type or "tool_not_registered", "message": msg}
            self.err.write(f"Error executing tool {name}: {msg}\n")
            self.err.flush()
        self.emit(result)

    def start(self, prompt: str) -> None:
        self.err.write("Warning: 256-color support not detected.\n")
        self.err.flush()
        self.emit({"type": "init", "timestamp": _now_iso(), "session_id": self.session_id, "model": "sim"})
        self.emit({"type": "message", "timestamp": _now_iso(), "role": "user", "content": prompt[:4000]})

    def text(self, text: str) -> None:
        self.turns += 1
        words = text.split(" ")
        for i, w in enumerate(words):  # deltas, as gemini streams them
            self.emit({"type": "message", "timestamp": _now_iso(), "role": "assistant",
                       "content": w + (" " if i < len(words) - 1 else ""), "delta": True})

    def write_ok(self, path: str, content: str) -> None:
        self._tool("write_file", {"file_path": path, "content": content}, True, None)

    def write_denied(self, path: str, content: str) -> None:
        self._tool("write_file", {"file_path": path, "content": content}, False,
                   'Tool "write_file" not found. Did you mean one of: "read_file", "grep_search"?')

    def write_failed(self, path: str, content: str, error: str) -> None:
        self._tool("write_file", {"file_path": path, "content": content}, False,
                   f"Error writing to file: {error}", "file_write_failure")

    def shell_ok(self, command: str, output: str, exit_code: int) -> None:
        self._tool("run_shell_command", {"command": command, "description": f"Run {command}"},
                   exit_code == 0, output if exit_code == 0 else f"Command exited with code {exit_code}: {output}",
                   "" if exit_code == 0 else "execution_failed")

    def shell_denied(self, command: str) -> None:
        self._tool("run_shell_command", {"command": command, "description": f"Run {command}"}, False,
                   'Tool "run_shell_command" not found. Did you mean one of: "grep_search", "read_file"?')

    def read_ok(self, path: str, content: str) -> None:
        self._tool("read_file", {"file_path": path}, True, content[:2000])

    def finish(self, final_text: str) -> None:
        self.text(final_text)
        turns = max(self.turns, 1)
        self.emit({"type": "result", "timestamp": _now_iso(), "status": "success", "stats": {
            "total_tokens": (TOKENS_PER_TURN_IN + TOKENS_PER_TURN_OUT) * turns,
            "input_tokens": TOKENS_PER_TURN_IN * turns, "output_tokens": TOKENS_PER_TURN_OUT * turns,
            "cached": 0, "duration_ms": 0, "tool_calls": self.tool_calls}})

    def fail(self, status: int, message: str) -> int:
        self.err.write(f"Error when talking to Gemini API _ApiError: {message}\n  status: {status}\n")
        self.err.flush()
        self.emit({"type": "result", "timestamp": _now_iso(), "status": "error",
                   "error": {"type": "unknown", "message": f"[API Error: {message}]"},
                   "stats": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "tool_calls": 0}})
        return 144

    #: The Gemini API's words for a per-minute quota, as gemini 0.61.0 repeats them.
    QUOTA_WORDS = ("You exceeded your current quota, please check your plan and billing details. For more information "
                   "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current "
                   "usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: "
                   "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 2, model: sim\n"
                   "Please retry in {n}s.\nSuggested retry after {n}s.")
    #: gemini gives up at once on a retry delay beyond this (classifyGoogleError), else retries.
    MAX_RETRYABLE_DELAY = 300

    def limit(self, seconds: float) -> int:
        # The Gemini API's per-minute quota with retryDelay = seconds (gemini 0.61.0,
        # tests/fixtures/cli-captures/gemini_rate_limit and gemini_rate_limit_exhausted): a short
        # delay is retried (10 attempts over minutes; the sim prints them at once), a long one
        # is not; the result error says the delay; exit 173.
        n = max(1, int(round(seconds)))
        words = self.QUOTA_WORDS.format(n=n)
        if n <= self.MAX_RETRYABLE_DELAY:
            for attempt in range(1, 11):
                tail = "Max attempts reached" if attempt == 10 else f"Retrying after {max(5000, n * 1000)}ms..."
                self.err.write(f"Attempt {attempt} failed: {words}. {tail}\n")
        self.err.write(f"Error when talking to Gemini API Full report available at: /tmp/gemini-client-error-sim.json "
                       f"{'RetryableQuotaError' if n <= self.MAX_RETRYABLE_DELAY else 'TerminalQuotaError'}: {words}\n")
        self.err.flush()
        self.emit({"type": "result", "timestamp": _now_iso(), "status": "error",
                   "error": {"type": "unknown", "message": f"[API Error: {words}]\nPlease wait and try again later. "
                             "To increase your limits, request a quota increase through AI Studio, or switch to "
                             "another /auth method"},
                   "stats": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0, "input": 0,
                             "duration_ms": 0, "tool_calls": 0}})
        return 173


EMITTERS: dict[str, type[Emitter]] = {"claude": ClaudeEmitter, "codex": CodexEmitter, "gemini": GeminiEmitter}
