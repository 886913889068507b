"""The test side of the model stub: build script steps, and talk to a running stub.

    lab.stub.script(
        S.reply_json({"verdict": "blockers", ...}, prompt_contains="ROLE: reviewer"),
        S.write(path, "code", say="Writing it.", prompt_contains="ROLE: implementer"),
        S.reply("Done.", last_input="tool_result"),
    )
    assert lab.stub.unmatched() == []

Each builder returns one step (see stub.py for the format); keyword conditions are the
step's `when`. `StubControl` speaks the stub's control socket: a Unix socket, so it
reaches a stub inside another network namespace.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Optional

from .stub import ScriptError, validate_step

__all__ = ["ANTHROPIC_BAD_KEY", "OPENAI_BAD_KEY", "ScriptError", "StubControl", "fail", "hang", "limit", "near_limit",
           "patch", "reply", "reply_json", "shell", "tool", "unauthorized", "write"]


class StubControl:
    """The test's handle on a running stub, through its control socket."""

    def __init__(self, socket_path: Path, port: int):
        self.socket_path = socket_path
        self.port = port

    def _ask(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(self.socket_path))
            s.sendall((json.dumps(request) + "\n").encode())
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        answer = json.loads(data)
        if not answer.get("ok"):
            raise ScriptError(answer.get("error", "the stub refused the request"))
        return answer

    def script(self, *steps: dict) -> None:
        """Replace the queue of steps."""
        self._ask({"op": "load", "steps": [validate_step(s) for s in steps]})

    def add(self, *steps: dict) -> None:
        """Append steps to the queue."""
        self._ask({"op": "append", "steps": [validate_step(s) for s in steps]})

    def requests(self, api: Optional[str] = None, scripted_only: bool = True) -> list[dict]:
        """Logged model requests, oldest first (by default without HEAD probes and router calls)."""
        out = self._ask({"op": "requests"})["requests"]
        if scripted_only:
            out = [r for r in out if r.get("method") == "POST" and r.get("api") and not r.get("utility")]
        return [r for r in out if api is None or r.get("api") == api]

    def all_requests(self) -> list[dict]:
        return self._ask({"op": "requests"})["requests"]

    def count(self) -> int:
        """How many requests (of any kind) the stub has logged so far."""
        return int(self._ask({"op": "count"})["count"])

    def unmatched(self) -> list[dict]:
        return [r for r in self.requests() if r.get("unmatched")]

    def pending(self) -> list[dict]:
        return self._ask({"op": "pending"})["steps"]


def _when(api, prompt_contains, last_input, tool_result_contains, conversation_contains) -> dict:
    when = {"api": api, "prompt_contains": prompt_contains, "last_input": last_input,
            "tool_result_contains": tool_result_contains, "conversation_contains": conversation_contains}
    return {k: v for k, v in when.items() if v is not None}


def _step(action: dict, repeat: bool, **when: Any) -> dict:
    step = dict(action)
    w = _when(**{k: when.get(k) for k in ("api", "prompt_contains", "last_input",
                                             "tool_result_contains", "conversation_contains")})
    if w:
        step["when"] = w
    if repeat:
        step["repeat"] = True
    return validate_step(step)


def reply(text: str, *, repeat: bool = False, **when: Any) -> dict:
    """Answer with text and end the turn."""
    return _step({"reply": text}, repeat, **when)


def reply_json(obj: Any, *, repeat: bool = False, **when: Any) -> dict:
    """Answer with an object as JSON text (e.g. a structured review verdict)."""
    return _step({"json": obj}, repeat, **when)


def shell(cmd: str, *, say: str = "", repeat: bool = False, **when: Any) -> dict:
    """Call the CLI's shell tool with this command line."""
    return _step({"call": {"shell": cmd}, **({"say": say} if say else {})}, repeat, **when)


def write(path: str, content: str, *, say: str = "", repeat: bool = False, **when: Any) -> dict:
    """Call the CLI's file-write tool (codex: a shell printf, as it has no such tool)."""
    return _step({"call": {"write": {"path": path, "content": content}}, **({"say": say} if say else {})}, repeat, **when)


def patch(path: str, content: str, *, say: str = "", repeat: bool = False, **when: Any) -> dict:
    """Call codex's apply_patch with a patch adding this file."""
    return _step({"call": {"patch": {"path": path, "content": content}}, **({"say": say} if say else {})}, repeat, **when)


def tool(name: str, args: Any, *, say: str = "", repeat: bool = False, **when: Any) -> dict:
    """Call any tool by the CLI's own name for it."""
    return _step({"call": {"tool": name, "args": args}, **({"say": say} if say else {})}, repeat, **when)


def fail(status: int, message: str = "", *, body: Optional[dict] = None, headers: Optional[dict] = None,
         repeat: bool = False, **when: Any) -> dict:
    """Answer with an HTTP error status (with the provider's own body and headers, when given)."""
    action: dict[str, Any] = {"error": status, **({"message": message} if message else {})}
    if body is not None:
        action["body"] = body
    if headers is not None:
        action["headers"] = headers
    return _step(action, repeat, **when)


#: What the OpenAI API answers a wrong API key (401), as its clients (opencode's AI SDK,
#: Qwen Code's openai SDK) receive it.
OPENAI_BAD_KEY = {"error": {"message": "Incorrect API key provided: sk-dummy***-key. You can find your API key at "
                                       "https://platform.openai.com/account/api-keys.",
                            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
#: What an Anthropic-style gateway answers a wrong key (401): no number and no "API key" in the words.
ANTHROPIC_BAD_KEY = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}


def unauthorized(body: dict = OPENAI_BAD_KEY, *, repeat: bool = False, **when: Any) -> dict:
    """Answer 401 with a provider's genuine wrong-key body (OpenAI's by default)."""
    return fail(401, body=body, repeat=repeat, **when)


def hang(seconds: float = 600, *, repeat: bool = False, **when: Any) -> dict:
    """Hold the request open without an answer (a stalled model) until the stub stops."""
    return _step({"hang": seconds}, repeat, **when)


def limit(window: Optional[str] = None, *, resets_in: float = 3600, retry_after: float = 1, repeat: bool = False,
          **when: Any) -> dict:
    """Answer with the provider's genuine usage/rate-limit refusal (HTTP 429; see stub.limit_response).

    `window`: claude's claim (`five_hour`, `seven_day`, …), Gemini's quota (`daily`,
    `minute`) or, for Chat Completions, `minute` (rate_limit_exceeded, "Please try again in
    {resets_in}s", retry-after {retry_after}), `billing` (OpenAI's insufficient_quota) or
    `credits` (OpenRouter's 402); each API has its default. The limit resets `resets_in`
    seconds after the answer.
    """
    spec: dict[str, Any] = {"resets_in": resets_in, "retry_after": retry_after}
    if window:
        spec["window"] = window
    return _step({"limit": spec}, repeat, **when)


def near_limit(step: dict, window: str = "seven_day", *, utilization: float = 0.8, resets_in: float = 86400) -> dict:
    """The same reply/json/call step, its answer carrying "close to your limit" headers."""
    return validate_step({**step, "ratelimit": {"window": window, "utilization": utilization, "resets_in": resets_in}})
