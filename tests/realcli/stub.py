"""A scripted model server that the real agent CLIs talk to in the real-CLI tests.

One loopback HTTP server speaks the four protocols the CLIs use:

- Anthropic Messages (Claude Code): ``HEAD /`` and ``POST /v1/messages`` answered with SSE
  (message_start, content_block_*, text_delta / input_json_delta, message_delta, message_stop).
- OpenAI Responses (Codex): ``POST /v1/responses`` answered with SSE
  (response.created, response.output_item.added / .done, response.completed with usage).
- Gemini (Gemini CLI): ``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`` answered
  with SSE chunks of candidates; the non-streaming ``:generateContent`` calls the CLI makes
  for itself (the model router of ``-m auto``) get a routing answer without using the script.
- OpenAI Chat Completions (opencode, Qwen Code, GitHub Copilot CLI): ``POST /v1/chat/completions`` with
  ``stream: true`` answered with SSE ``chat.completion.chunk`` objects (role, content
  deltas, tool_calls deltas with the arguments in two pieces, a finish_reason, a usage
  chunk, then ``data: [DONE]``). Which tool vocabulary a request speaks is read from the
  tools it offers (opencode's ``bash``/``write``, Qwen Code's ``run_shell_command``/
  ``write_file``, GitHub Copilot CLI's ``bash``/``create``). A request that is not a turn of the conversation — opencode's session
  title, asked with ``stream: false`` or with its title-generator system prompt — gets a
  short answer without using the script.

What the "model" says comes from a script: a queue of steps. Each model request takes the
first step whose ``when`` matches it; a step is used once unless it says ``"repeat": true``.
A request no step matches gets a plain text reply and is flagged ``unmatched`` in the log.

A step is JSON (tests build them with the helpers in script.py)::

    {"when": {...}, "reply": "text"}                  text, then end of turn
    {"when": {...}, "json": {...}}                    the object as JSON text (review verdicts)
    {"when": {...}, "say": "I will…", "call": CALL}   optional text, then one tool call
    {"when": {...}, "error": 400, "message": "…"}     an HTTP error status
    {"when": {...}, "error": 401, "body": {...}, "headers": {...}}   …with the provider's own body and headers
    {"when": {...}, "hang": 30}                       hold the request open (a stalled model)
    {"when": {...}, "limit": LIMIT}                   the provider's usage/rate-limit refusal (HTTP 429)

A reply, json or call step may also carry ``"ratelimit": WARN``: the answer is normal but
its headers say the account is close to a limit (Anthropic's unified rate-limit headers,
Codex's x-codex-* usage headers; Gemini's API has no such headers).

    LIMIT = {"window": "five_hour" | "seven_day" | "daily" | "minute" | "billing",   (default per API)
             "resets_in": 3600,        seconds until the limit resets (default 3600)
             "retry_after": 1}         retry-after / RetryInfo.retryDelay seconds (default 1)
    WARN  = {"window": "seven_day", "utilization": 0.8, "resets_in": 86400}

What each API answers for ``limit`` (limit_response below) is the genuine shape:
Anthropic a ``rate_limit_error`` with ``retry-after`` and the unified headers a claude.ai
subscription gets (status rejected, reset, representative claim); OpenAI (ChatGPT
backend) ``usage_limit_reached`` with ``plan_type``, ``resets_at``, ``resets_in_seconds``;
Gemini ``RESOURCE_EXHAUSTED`` with QuotaFailure (per-day or per-minute quota id), Help and
RetryInfo details; OpenAI Chat Completions (an API key, as opencode and Qwen Code use it)
``rate_limit_exceeded`` with "Please try again in {resets_in}s." and ``retry-after:
{retry_after}`` (window ``minute``), or ``insufficient_quota`` — the account is out of
credit, no wait helps (window ``billing``) — or OpenRouter's 402 "Insufficient credits"
(window ``credits``).

    CALL = {"shell": "echo hi"}
         | {"write": {"path": "/abs/file", "content": "…"}}
         | {"patch": {"path": "/abs/file", "content": "…"}}   codex apply_patch (adds a file)
         | {"tool": "NativeName", "args": {...}}              any tool under the CLI's own name

    when = {"api": "anthropic" | "openai" | "gemini" | "chat",
            "prompt_contains": "…",        the latest user prompt (not tool results)
            "last_input": "prompt" | "tool_result",
            "tool_result_contains": "…",   the latest tool result
            "conversation_contains": "…"}  any prompt, reply or tool result so far

Reply texts may hold ``{history}`` (how many entries the request's conversation has, so a
resumed session shows its earlier turns) and ``{tool_result}`` (the latest tool result on
one line; Claude's failed results start with ``ERROR: ``, Gemini's are the JSON response).

Run it as ``python stub.py --control SOCKET [--script FILE] [--log FILE]``: it prints one
JSON line ``{"port": N}`` once it listens on 127.0.0.1:N, serves until SIGTERM or until its
standard input closes, and answers control requests (one JSON line each) on the Unix socket
SOCKET, which works across network namespaces: tests use ``script.StubControl``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socketserver
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

APIS = ("anthropic", "openai", "gemini", "chat")
WHEN_KEYS = {"api", "prompt_contains", "last_input", "tool_result_contains", "conversation_contains"}
ACTION_KEYS = ("reply", "json", "call", "error", "hang", "limit")
LIMIT_KEYS = {"window", "resets_in", "retry_after"}
WARN_KEYS = {"window", "utilization", "resets_in"}
# Limit windows: Anthropic's claims (and their header abbreviations, window lengths) plus
# the Gemini API's per-day and per-minute quotas; each API has a default.
ANTHROPIC_WINDOWS = {"five_hour": ("5h", 18000), "seven_day": ("7d", 604800),
                     "seven_day_opus": ("7d_opus", 604800), "seven_day_sonnet": ("7d_sonnet", 604800)}
GEMINI_WINDOWS = ("daily", "minute")
#: An API key behind Chat Completions: a rate limit, no credit left (OpenAI's 429), no credit left (OpenRouter's 402).
CHAT_WINDOWS = ("minute", "billing", "credits")
DEFAULT_WINDOW = {"anthropic": "five_hour", "openai": "five_hour", "gemini": "daily", "chat": "minute"}
WINDOWS = (*ANTHROPIC_WINDOWS, *GEMINI_WINDOWS, "billing", "credits")
CALL_KINDS = ("shell", "write", "patch", "tool")

# Token counts the stub reports for every model answer (the CLIs add them up).
INPUT_TOKENS = 12
OUTPUT_TOKENS = 20
# Of those input tokens, how many a Chat Completions answer reports read from the provider's
# prompt cache (usage.prompt_tokens_details.cached_tokens) once the conversation has an
# earlier turn to reuse, as OpenAI reports a repeated prefix.
CACHED_TOKENS = 8
# A header whose name contains one of these is a credential: the log keeps only its presence.
SECRET_HEADER_PARTS = ("key", "auth", "token", "secret", "cookie")
SECRET_QUERY_KEYS = {"key", "api_key", "apikey", "access_token"}

GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
ANTHROPIC_ERROR = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                   500: "api_error", 529: "overloaded_error"}


class ScriptError(ValueError):
    """A step that the stub cannot follow."""


def validate_step(step: Any) -> dict:
    """The step itself when it is well formed; ScriptError naming the problem otherwise."""
    if not isinstance(step, dict):
        raise ScriptError(f"a step must be an object, got {step!r}")
    actions = [k for k in ACTION_KEYS if k in step]
    if len(actions) != 1:
        raise ScriptError(f"a step needs exactly one of {', '.join(ACTION_KEYS)}: {step!r}")
    when = step.get("when") or {}
    unknown = set(when) - WHEN_KEYS
    if unknown:
        raise ScriptError(f"unknown 'when' keys {sorted(unknown)} in {step!r}")
    if "api" in when and when["api"] not in APIS:
        raise ScriptError(f"'when.api' must be one of {APIS}: {step!r}")
    if "last_input" in when and when["last_input"] not in ("prompt", "tool_result"):
        raise ScriptError(f"'when.last_input' must be 'prompt' or 'tool_result': {step!r}")
    if "call" in step:
        call = step["call"]
        kinds = [k for k in CALL_KINDS if isinstance(call, dict) and k in call]
        if len(kinds) != 1:
            raise ScriptError(f"'call' needs exactly one of {', '.join(CALL_KINDS)}: {step!r}")
        if kinds[0] in ("write", "patch") and not {"path", "content"} <= set(call[kinds[0]]):
            raise ScriptError(f"a {kinds[0]} call needs 'path' and 'content': {step!r}")
    if "error" in step and not (isinstance(step["error"], int) and 400 <= step["error"] <= 599):
        raise ScriptError(f"'error' must be an HTTP status from 400 to 599: {step!r}")
    if "body" in step and not ("error" in step and isinstance(step["body"], dict)):
        raise ScriptError(f"'body' (an object) goes with an error step: {step!r}")
    if "headers" in step and not ("error" in step and isinstance(step["headers"], dict)
                                  and all(isinstance(v, str) for v in step["headers"].values())):
        raise ScriptError(f"'headers' (names to strings) go with an error step: {step!r}")
    for key, allowed in (("limit", LIMIT_KEYS), ("ratelimit", WARN_KEYS)):
        if key not in step:
            continue
        spec = step[key]
        if not isinstance(spec, dict) or set(spec) - allowed:
            raise ScriptError(f"'{key}' must be an object with keys among {sorted(allowed)}: {step!r}")
        window = spec.get("window")
        if window is not None and window not in WINDOWS:
            raise ScriptError(f"'{key}.window' must be one of {list(WINDOWS)}: {step!r}")
        for number in ("resets_in", "retry_after", "utilization"):
            if number in spec and not (isinstance(spec[number], (int, float)) and spec[number] >= 0):
                raise ScriptError(f"'{key}.{number}' must be a number >= 0: {step!r}")
    if "ratelimit" in step and not any(k in step for k in ("reply", "json", "call")):
        raise ScriptError(f"'ratelimit' goes with a reply, json or call step: {step!r}")
    return step


# ---------------------------------------------------------------- reading requests


@dataclass
class Conversation:
    """What a model request carries, reduced to what steps match on and replies quote."""

    api: str
    history: int  # entries in the request's conversation (messages, input items, contents)
    last_input: str  # "prompt" or "tool_result"
    prompt: str  # the latest user prompt
    tool_result: str  # the latest tool result, on one line
    texts: list[str]  # every prompt, reply and tool result, for conversation_contains
    model: str

    def summary(self) -> dict:
        return {"history": self.history, "last_input": self.last_input, "prompt": self.prompt,
                "tool_result": self.tool_result, "model": self.model}


def one_line(text: str) -> str:
    return " ".join(text.split())


def _text_of(content: Any) -> str:
    """Text in an Anthropic/OpenAI content value: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def read_anthropic(body: dict) -> Conversation:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts: list[str] = []
    prompt, tool_result, last_input = "", "", "prompt"
    for m in messages:
        if m.get("role") == "system":
            continue  # Claude Code lists its agents and skills here: context, not a turn
        content = m.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "text":
                texts.append(b.get("text") or "")
        for r in results:
            text = _text_of(r.get("content"))
            texts.append(text)
            tool_result = ("ERROR: " if r.get("is_error") else "") + text
        if m.get("role") == "user":
            if results:
                last_input = "tool_result"
            else:
                last_input = "prompt"
                prompt = _text_of(content)
    return Conversation("anthropic", len(messages), last_input, prompt, one_line(tool_result), texts,
                        str(body.get("model", "")))


def read_openai(body: dict) -> Conversation:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    items = [i for i in items or [] if isinstance(i, dict)]
    texts: list[str] = []
    prompt, tool_result, last_input = "", "", "prompt"
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            text = _text_of(item.get("content"))
            if item.get("role") in ("user", "assistant"):
                texts.append(text)
            if item.get("role") == "user":
                prompt, last_input = text, "prompt"
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output)
            texts.append(text)
            tool_result, last_input = text, "tool_result"
    return Conversation("openai", len(items), last_input, prompt, one_line(tool_result), texts,
                        str(body.get("model", "")))


def read_chat(body: dict) -> Conversation:
    """An OpenAI Chat Completions request: system/user/assistant/tool messages."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts: list[str] = []
    prompt, tool_result, last_input = "", "", "prompt"
    for m in messages:
        role = m.get("role")
        text = _text_of(m.get("content"))
        if role == "system":
            continue
        if role == "tool":
            texts.append(text)
            tool_result, last_input = text, "tool_result"
        elif role == "user":
            texts.append(text)
            prompt, last_input = text, "prompt"
        elif role == "assistant" and text:
            texts.append(text)
    return Conversation("chat", len([m for m in messages if m.get("role") != "system"]), last_input, prompt,
                        one_line(tool_result), texts, str(body.get("model", "")))


#: Chat Completions requests that are the CLI's own helper calls, not turns: opencode asks
#: for a session title with this system prompt.
CHAT_UTILITY_MARKERS = ("You are a title generator",)


def chat_is_utility(body: dict) -> bool:
    """True for a Chat Completions request that is no turn of the conversation (a title)."""
    if body.get("stream") is not True:
        return True
    for m in body.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "system":
            text = _text_of(m.get("content"))
            if any(marker in text for marker in CHAT_UTILITY_MARKERS):
                return True
    return False


def read_gemini(body: dict, model: str) -> Conversation:
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    texts: list[str] = []
    prompt, tool_result, last_input = "", "", "prompt"
    for c in contents:
        parts = [p for p in c.get("parts") or [] if isinstance(p, dict)]
        responses = [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)]
        text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
        if text:
            texts.append(text)
        for r in responses:
            rendered = json.dumps(r.get("response"))
            texts.append(rendered)
            tool_result = rendered
        if c.get("role") == "user":
            if responses:
                last_input = "tool_result"
            elif text:
                prompt, last_input = text, "prompt"
    return Conversation("gemini", len(contents), last_input, prompt, one_line(tool_result), texts, model)


def matches(when: dict, conv: Conversation) -> bool:
    """True when every condition of a step's `when` holds for this request."""
    if "api" in when and when["api"] != conv.api:
        return False
    if "last_input" in when and when["last_input"] != conv.last_input:
        return False
    if "prompt_contains" in when and when["prompt_contains"] not in conv.prompt:
        return False
    if "tool_result_contains" in when and when["tool_result_contains"] not in conv.tool_result:
        return False
    if "conversation_contains" in when and not any(when["conversation_contains"] in t for t in conv.texts):
        return False
    return True


# ---------------------------------------------------------------- what the model says


def fill(text: str, conv: Conversation) -> str:
    return text.replace("{history}", str(conv.history)).replace("{tool_result}", conv.tool_result)


def words(text: str) -> list[str]:
    """The text cut into word-sized pieces (each keeps its trailing space), as models stream."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [""]


def add_file_patch(path: str, content: str) -> str:
    lines = content.splitlines() or [""]
    body = "".join(f"+{line}\n" for line in lines)
    return f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"


#: The Chat Completions CLIs' tool vocabularies, told apart by the tools a request offers:
#: (tool, field of the command) for a shell call, (tool, path field, content field) for a write.
CHAT_VOCABULARIES = {
    "opencode": {"shell": ("bash", "command"), "write": ("write", "filePath", "content")},
    "qwen": {"shell": ("run_shell_command", "command"), "write": ("write_file", "file_path", "content")},
    "copilot": {"shell": ("bash", "command"), "write": ("create", "path", "file_text")},
}


QWEN_TOOL_NAMES = frozenset({"run_shell_command", "write_file", "read_file", "list_directory", "grep_search"})
#: GitHub Copilot CLI's own tools (its shell is `bash` like opencode's, but it writes with `create`).
COPILOT_TOOL_NAMES = frozenset({"read_bash", "stop_bash", "list_bash", "view", "create"})


def chat_vocabulary(tools: Any) -> str:
    """Which CLI's tool names a Chat Completions request offers (opencode's by default)."""
    names = set()
    for t in tools if isinstance(tools, list) else []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    # Headless, Qwen Code leaves its shell and write tools out until they are allowed, so
    # its read-only tools (there are always some) tell it apart too.
    if names & QWEN_TOOL_NAMES:
        return "qwen"
    return "copilot" if names & COPILOT_TOOL_NAMES else "opencode"


def native_call(api: str, call: dict, vocabulary: str = "opencode") -> tuple[str, Any]:
    """(tool name, arguments) for a scripted call, in the CLI's own tool vocabulary."""
    if "tool" in call:
        return call["tool"], call.get("args") or {}
    if api == "chat":
        if "patch" in call:
            raise ScriptError("a 'patch' call is codex's apply_patch: use 'write' for opencode and qwen")
        words_of = CHAT_VOCABULARIES[vocabulary]
        if "shell" in call:
            name, field = words_of["shell"]
            return name, {field: call["shell"], "description": f"Run {call['shell']}"}
        name, field, content_field = words_of["write"]
        return name, {field: call["write"]["path"], content_field: call["write"]["content"]}
    if "shell" in call:
        cmd = call["shell"]
        return {"anthropic": ("Bash", {"command": cmd, "description": f"Run {cmd}"}),
                "openai": ("exec_command", {"cmd": cmd}),
                "gemini": ("run_shell_command", {"command": cmd, "description": f"Run {cmd}"})}[api]
    if "write" in call:
        path, content = call["write"]["path"], call["write"]["content"]
        if api == "openai":  # codex has no file-write tool: models write through the shell
            escaped = content.replace("\\", "\\\\").replace("'", "'\\''").replace("\n", "\\n")
            return "exec_command", {"cmd": f"printf '{escaped}' > {path}"}
        return {"anthropic": ("Write", {"file_path": path, "content": content}),
                "gemini": ("write_file", {"file_path": path, "content": content})}[api]
    path, content = call["patch"]["path"], call["patch"]["content"]
    if api != "openai":
        raise ScriptError("a 'patch' call is codex's apply_patch: use 'write' for claude and gemini")
    return "apply_patch", add_file_patch(path, content)


def new_id(prefix: str, size: int = 20) -> str:
    return prefix + uuid.uuid4().hex[:size]


def sse(event: Optional[str], data: dict) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def anthropic_stream(conv: Conversation, say: str, call: Optional[dict]) -> bytes:
    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": 1,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    out = [sse("message_start", {"type": "message_start", "message": {
        "id": new_id("msg_"), "type": "message", "role": "assistant", "model": conv.model or "claude-stub",
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}})]
    index = 0
    if say:
        out.append(sse("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}}))
        for piece in words(say):
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": piece}}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if call is not None:
        name, args = native_call("anthropic", call)
        out.append(sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": new_id("toolu_"), "name": name, "input": {}}}))
        encoded = json.dumps(args)
        half = len(encoded) // 2  # two deltas: the CLI must join partial JSON
        for chunk in (encoded[:half], encoded[half:]):
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": chunk}}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": OUTPUT_TOKENS}}))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def openai_stream(conv: Conversation, say: str, call: Optional[dict]) -> bytes:
    seq = iter(range(1_000_000))
    response = {"id": new_id("resp_"), "object": "response", "created_at": int(time.time()),
                "status": "in_progress", "model": conv.model or "gpt-stub", "output": []}
    out = [sse("response.created", {"type": "response.created", "sequence_number": next(seq), "response": response})]
    items = []
    if say:
        msg_id = new_id("msg_")
        items.append(("message", msg_id, {"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                                          "content": [{"type": "output_text", "text": say, "annotations": []}]}))
    if call is not None:
        name, args = native_call("openai", call)
        if isinstance(args, str):
            item_id = new_id("ctc_")
            items.append(("custom", item_id, {"type": "custom_tool_call", "id": item_id, "status": "completed",
                                              "call_id": new_id("call_"), "name": name, "input": args}))
        else:
            item_id = new_id("fc_")
            items.append(("function", item_id, {"type": "function_call", "id": item_id, "status": "completed",
                                                "call_id": new_id("call_"), "name": name,
                                                "arguments": json.dumps(args)}))
    for index, (kind, item_id, item) in enumerate(items):
        added = dict(item, status="in_progress")
        if kind == "message":
            added["content"] = []
        out.append(sse("response.output_item.added", {"type": "response.output_item.added",
                                                      "sequence_number": next(seq), "output_index": index, "item": added}))
        if kind == "message":
            for piece in words(say):
                out.append(sse("response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item_id,
                    "output_index": index, "content_index": 0, "delta": piece}))
        out.append(sse("response.output_item.done", {"type": "response.output_item.done",
                                                     "sequence_number": next(seq), "output_index": index, "item": item}))
    done = dict(response, status="completed", output=[item for _, _, item in items], usage={
        "input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS})
    out.append(sse("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": done}))
    return b"".join(out)


def chat_stream(conv: Conversation, say: str, call: Optional[dict], vocabulary: str = "opencode") -> bytes:
    """A Chat Completions SSE stream: text deltas, then one tool call in two argument pieces."""
    chunk_id, created, model = new_id("chatcmpl-"), int(time.time()), conv.model or "chat-stub"

    def chunk(delta: dict, finish: Optional[str] = None) -> bytes:
        return sse(None, {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    out = [chunk({"role": "assistant", "content": ""})]
    for piece in words(say) if say else []:
        out.append(chunk({"content": piece}))
    if call is not None:
        name, args = native_call("chat", call, vocabulary)
        encoded = json.dumps(args)
        half = len(encoded) // 2  # two deltas: the CLI must join partial JSON
        out.append(chunk({"tool_calls": [{"index": 0, "id": new_id("call_"), "type": "function",
                                          "function": {"name": name, "arguments": encoded[:half]}}]}))
        out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": encoded[half:]}}]}))
    out.append(chunk({}, "tool_calls" if call is not None else "stop"))
    usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
             "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
    if conv.history > 1:
        usage["prompt_tokens_details"] = {"cached_tokens": CACHED_TOKENS}
    out.append(sse(None, {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def chat_utility_answer(body: dict) -> tuple[str, bytes]:
    """(content type, payload) for a helper call: a short title, streamed when asked to be."""
    title = "Stub session"
    if body.get("stream") is True:
        conv = Conversation("chat", 0, "prompt", "", "", [], str(body.get("model", "")))
        return "text/event-stream", chat_stream(conv, title, None)
    return "application/json", json.dumps({
        "id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
        "model": str(body.get("model", "")) or "chat-stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": title}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                  "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}}).encode()


def gemini_chunk(conv: Conversation, parts: list[dict], last: bool) -> bytes:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": conv.model or "gemini-stub"}
    if last:
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
                                  "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS}
    return sse(None, chunk)


def gemini_stream(conv: Conversation, say: str, call: Optional[dict]) -> bytes:
    chunks: list[list[dict]] = [[{"text": piece}] for piece in words(say)] if say else []
    if call is not None:
        name, args = native_call("gemini", call)
        chunks.append([{"functionCall": {"name": name, "args": args}}])
    chunks = chunks or [[{"text": ""}]]
    return b"".join(gemini_chunk(conv, parts, i == len(chunks) - 1) for i, parts in enumerate(chunks))


STREAMERS = {"anthropic": anthropic_stream, "openai": openai_stream, "gemini": gemini_stream, "chat": chat_stream}


def error_body(status: int, message: str) -> bytes:
    """One error body every CLI reads: Anthropic's type/message, Google's code/status, OpenAI's message."""
    return json.dumps({"type": "error", "error": {
        "type": ANTHROPIC_ERROR.get(status, "api_error"), "code": status, "message": message,
        "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}).encode()


def router_answer() -> bytes:
    """The JSON Gemini CLI's model router asks a small model for; enough for either router."""
    verdict = {"reasoning": "stub: a simple task", "model_choice": "flash",
               "complexity_reasoning": "stub: a simple task", "complexity_score": 1}
    return json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps(verdict)}]},
                                       "finishReason": "STOP", "index": 0}],
                       "usageMetadata": {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
                                         "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS}}).encode()


def _seconds(value: float) -> str:
    """A duration as Google writes it in RetryInfo.retryDelay ("1s", "0.5s")."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


def limit_response(api: str, spec: dict, model: str = "", now: Optional[float] = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of the provider's genuine usage/rate-limit refusal."""
    now = time.time() if now is None else now
    resets_in = spec.get("resets_in", 3600)
    reset = int(now + resets_in)
    retry_after = spec.get("retry_after", 1)
    window = spec.get("window") or DEFAULT_WINDOW[api]
    if api == "anthropic":
        claim = window if window in ANTHROPIC_WINDOWS else DEFAULT_WINDOW["anthropic"]
        abbrev = ANTHROPIC_WINDOWS[claim][0]
        # What the API sends a claude.ai subscription at its limit; an API key's client
        # reads only the status, the error body and retry-after.
        headers = {"retry-after": str(int(retry_after)),
                   "anthropic-ratelimit-unified-status": "rejected",
                   "anthropic-ratelimit-unified-reset": str(reset),
                   "anthropic-ratelimit-unified-representative-claim": claim,
                   "anthropic-ratelimit-unified-fallback-percentage": "0.5",
                   f"anthropic-ratelimit-unified-{abbrev}-status": "rejected",
                   f"anthropic-ratelimit-unified-{abbrev}-reset": str(reset),
                   f"anthropic-ratelimit-unified-{abbrev}-utilization": "1.0",
                   "request-id": new_id("req_", 24)}
        body = {"type": "error", "error": {"type": "rate_limit_error",
                                           "message": "This request would exceed your account's rate limit. "
                                                      "Please try again later."},
                "request_id": headers["request-id"]}
        return 429, headers, json.dumps(body).encode()
    if api in ("openai", "chat") and window == "minute":
        # The OpenAI API's answer to an API key over its requests per minute. For Chat
        # Completions the words (and x-ratelimit-reset-requests) give the window's reset,
        # `resets_in`, and retry-after the wait before the next try, `retry_after`.
        until = _seconds(resets_in if api == "chat" else retry_after)
        headers = {"retry-after": str(int(retry_after)), "x-ratelimit-limit-requests": "500",
                   "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": until,
                   "x-request-id": new_id("req_", 24)}
        body = {"error": {"message": f"Rate limit reached for {model if api == 'chat' else 'gpt-5.5'} in "
                                     f"organization org-stub on requests per min (RPM): Limit 500, Used 500, "
                                     f"Requested 1. Please try again in {until}.",
                          "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        return 429, headers, json.dumps(body).encode()
    if api == "chat" and window == "credits":
        # OpenRouter's answer to an account without credit: 402, which no CLI retries.
        body = {"error": {"code": 402, "message": "Insufficient credits. Add more using "
                                                  "https://openrouter.ai/settings/credits"}}
        return 402, {}, json.dumps(body).encode()
    if api in ("openai", "chat") and window == "billing":
        # The OpenAI API's answer to an account out of credit: no time helps, so no retry-after.
        body = {"error": {"message": "You exceeded your current quota, please check your plan and billing details. "
                                     "For more information on this error, read the docs: "
                                     "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                          "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
        return 429, {"x-request-id": new_id("req_", 24)}, json.dumps(body).encode()
    if api == "chat":
        raise ScriptError(f"a Chat Completions limit's window is one of {list(CHAT_WINDOWS)}, not {window!r}")
    if api == "openai":
        # The ChatGPT backend's answer to a plan at its limit, as codex's own tests mock it.
        minutes = 300 if window == "five_hour" else 10080
        headers = {"x-codex-primary-used-percent": "100.0", "x-codex-primary-window-minutes": str(minutes),
                   "x-codex-primary-reset-after-seconds": str(int(resets_in)),
                   "x-codex-primary-reset-at": str(reset), "x-request-id": new_id("req_", 24)}
        body = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                          "plan_type": "plus", "resets_at": reset, "resets_in_seconds": int(resets_in)}}
        return 429, headers, json.dumps(body).encode()
    # Gemini API (generativelanguage.googleapis.com): a quota per day or per minute.
    model = model or "gemini-2.5-pro"
    daily = window != "minute"
    quota_id = ("GenerateRequestsPerDayPerProjectPerModel-FreeTier" if daily
                else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
    limit = 50 if daily else 2
    delay = _seconds(retry_after)
    message = ("You exceeded your current quota, please check your plan and billing details. For more information "
               "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current "
               "usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: "
               f"generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, "
               f"model: {model}\nPlease retry in {delay}.")
    body = {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": model},
            "quotaValue": str(limit)}]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [
            {"description": "Learn more about Gemini API quotas",
             "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    return 429, {}, json.dumps(body).encode()


def warning_headers(api: str, spec: dict, now: Optional[float] = None) -> dict:
    """Headers of a normal answer to an account close to a limit (none for Gemini)."""
    now = time.time() if now is None else now
    reset = int(now + spec.get("resets_in", 86400))
    window = spec.get("window") or "seven_day"
    utilization = spec.get("utilization", 0.8)
    if api == "anthropic":
        claim = window if window in ANTHROPIC_WINDOWS else "seven_day"
        abbrev = ANTHROPIC_WINDOWS[claim][0]
        # The per-window "surpassed-threshold" header is what turns "allowed" into a warning.
        return {"anthropic-ratelimit-unified-status": "allowed_warning",
                "anthropic-ratelimit-unified-reset": str(reset),
                "anthropic-ratelimit-unified-representative-claim": claim,
                f"anthropic-ratelimit-unified-{abbrev}-status": "allowed_warning",
                f"anthropic-ratelimit-unified-{abbrev}-reset": str(reset),
                f"anthropic-ratelimit-unified-{abbrev}-utilization": str(utilization),
                f"anthropic-ratelimit-unified-{abbrev}-surpassed-threshold": str(min(utilization, 0.75))}
    if api == "openai":
        minutes = 300 if window == "five_hour" else 10080
        return {"x-codex-primary-used-percent": str(round(utilization * 100, 1)),
                "x-codex-primary-window-minutes": str(minutes),
                "x-codex-primary-reset-after-seconds": str(int(reset - now)), "x-codex-primary-reset-at": str(reset)}
    return {}


# ---------------------------------------------------------------- the server


class Stub:
    """The script queue and the request log, shared by the HTTP and control threads."""

    def __init__(self, log_path: Optional[Path] = None):
        self.lock = threading.Lock()
        self.steps: list[dict] = []
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        self.log_path = log_path

    def load(self, steps: list, append: bool = False) -> None:
        checked = [validate_step(s) for s in steps]
        with self.lock:
            self.steps = (self.steps if append else []) + checked

    def take(self, conv: Conversation) -> Optional[dict]:
        with self.lock:
            for i, step in enumerate(self.steps):
                if matches(step.get("when") or {}, conv):
                    if not step.get("repeat"):
                        del self.steps[i]
                    return step
        return None

    def record(self, entry: dict) -> None:
        with self.lock:
            entry["n"] = len(self.requests)
            self.requests.append(entry)
            if self.log_path:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def pending(self) -> list[dict]:
        with self.lock:
            return list(self.steps)


def redact_headers(headers) -> dict:
    out = {}
    for name, value in headers.items():
        secret = any(part in name.lower() for part in SECRET_HEADER_PARTS)
        out[name.lower()] = "<redacted>" if secret else value
    return out


def redact_query(query: str) -> dict:
    return {k: ("<redacted>" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query)}


class ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "orch-model-stub"
    stub: Stub  # set on the subclass made for each server

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces access logs
        pass

    def do_HEAD(self) -> None:
        self.stub.record({"method": "HEAD", "path": self.path, "headers": redact_headers(self.headers)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.stub.record({"method": "GET", "path": self.path, "headers": redact_headers(self.headers)})
        self.reply(404, "application/json", error_body(404, f"stub: nothing at GET {urlsplit(self.path).path}"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.read_body()
        if raw is None:
            self.stub.record({"method": "POST", "path": url.path, "headers": redact_headers(self.headers),
                              "unreadable": True})
            self.close_connection = True
            return self.reply(415, "application/json", error_body(
                415, "stub: chunked or compressed request bodies are not supported; teach tests/realcli/stub.py"))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        entry: dict[str, Any] = {"method": "POST", "path": url.path, "query": redact_query(url.query),
                                 "headers": redact_headers(self.headers), "body": body, "time": time.time()}
        api, model, streaming = self.route(url.path)
        entry["api"] = api
        if api is None or not isinstance(body, dict):
            self.stub.record(entry)
            return self.reply(404, "application/json", error_body(404, f"stub: no model endpoint at {url.path}"))
        if api == "gemini" and not streaming:
            entry["utility"] = True  # the CLI's own helper call (model router), not a scripted turn
            self.stub.record(entry)
            return self.reply(200, "application/json", router_answer())
        if api == "chat" and chat_is_utility(body):
            entry["utility"] = True  # the CLI's own helper call (a session title), not a scripted turn
            self.stub.record(entry)
            return self.reply(200, *chat_utility_answer(body))
        readers = {"anthropic": read_anthropic, "openai": read_openai, "chat": read_chat}
        conv = readers.get(api, lambda b: read_gemini(b, model))(body)
        entry["conversation"] = conv.summary()
        step = self.stub.take(conv)
        entry["step"] = step
        entry["unmatched"] = step is None
        try:
            limited = limit_response(api, step["limit"], model or conv.model) if step and "limit" in step else None
        except ScriptError as exc:
            self.stub.record(entry)
            return self.reply(500, "application/json", error_body(500, f"stub: {exc}"))
        if limited:  # the log says when the limit lifts, as the answer does
            entry["limit"] = {"status": limited[0], "headers": limited[1], "body": json.loads(limited[2])}
        self.stub.record(entry)
        if step is None:
            step = {"reply": "stub: no scripted step matches this request"}
        if "error" in step:
            message = step.get("message") or f"stub: scripted error {step['error']}"
            body = json.dumps(step["body"]).encode() if "body" in step else error_body(step["error"], message)
            return self.reply(step["error"], "application/json", body, step.get("headers"))
        if limited:
            status, headers, body = limited
            return self.reply(status, "application/json", body, headers)
        if "hang" in step:
            limit = step["hang"] if isinstance(step["hang"], (int, float)) and step["hang"] is not True else 600
            self.stub.stopping.wait(limit)
            self.close_connection = True
            return None
        say = fill(step["reply"], conv) if "reply" in step else json.dumps(step["json"]) if "json" in step else ""
        if "call" in step and step.get("say"):
            say = fill(step["say"], conv)
        try:
            if api == "chat":
                payload = chat_stream(conv, say, step.get("call"), chat_vocabulary(body.get("tools")))
            else:
                payload = STREAMERS[api](conv, say, step.get("call"))
        except ScriptError as exc:
            return self.reply(500, "application/json", error_body(500, f"stub: {exc}"))
        headers = warning_headers(api, step["ratelimit"]) if "ratelimit" in step else None
        self.reply(200, "text/event-stream", payload, headers)

    def route(self, path: str) -> tuple[Optional[str], str, bool]:
        """(api, model, streaming) for a model endpoint, (None, '', False) otherwise."""
        if path.rstrip("/").endswith("/v1/messages"):
            return "anthropic", "", True
        if path.rstrip("/").endswith("/chat/completions"):
            return "chat", "", True
        if path.rstrip("/").endswith("/responses"):
            return "openai", "", True
        m = re.search(r"/models/([^/:]+):(streamGenerateContent|generateContent)$", path)
        if m:
            return "gemini", m.group(1), m.group(2) == "streamGenerateContent"
        return None, "", False

    def read_body(self) -> Optional[bytes]:
        """The request body, or None for an encoding the stub does not read (none of the CLIs uses one)."""
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Encoding"):
            return None
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, content_type: str, payload: bytes, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if content_type == "text/event-stream":
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(payload)


class ControlHandler(socketserver.StreamRequestHandler):
    """One JSON request per line: load / append steps, read the log or the pending steps."""

    stub: Stub

    def handle(self) -> None:
        for line in self.rfile:
            try:
                request = json.loads(line)
                op = request.get("op")
                if op in ("load", "append"):
                    self.stub.load(request.get("steps") or [], append=op == "append")
                    answer: dict[str, Any] = {"ok": True}
                elif op == "requests":
                    with self.stub.lock:
                        answer = {"ok": True, "requests": list(self.stub.requests)}
                elif op == "count":
                    with self.stub.lock:
                        answer = {"ok": True, "count": len(self.stub.requests)}
                elif op == "pending":
                    answer = {"ok": True, "steps": self.stub.pending()}
                else:
                    answer = {"ok": False, "error": f"unknown op {op!r}"}
            except (ValueError, ScriptError, AttributeError) as exc:
                answer = {"ok": False, "error": str(exc)}
            self.wfile.write((json.dumps(answer) + "\n").encode())
            self.wfile.flush()


def serve(control: Path, script: Optional[Path], log: Optional[Path]) -> None:
    stub = Stub(log)
    if script:
        stub.load(json.loads(script.read_text()))
    http = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (ModelHandler,), {"stub": stub}))
    http.daemon_threads = True
    if control.exists():
        control.unlink()
    ctl = socketserver.ThreadingUnixStreamServer(str(control), type("Ctl", (ControlHandler,), {"stub": stub}))
    ctl.daemon_threads = True

    def stop(*_: Any) -> None:
        stub.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin() -> None:  # the test process holds our stdin: when it goes, we go
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            stub.stopping.set()

    # A short poll interval: shutdown() waits for the serving loop to notice it.
    for target, args in ((http.serve_forever, (0.05,)), (ctl.serve_forever, (0.05,)), (watch_stdin, ())):
        threading.Thread(target=target, args=args, daemon=True).start()
    print(json.dumps({"port": http.server_address[1], "pid": os.getpid()}), flush=True)
    stub.stopping.wait()
    http.shutdown()
    ctl.shutdown()
    control.unlink(missing_ok=True)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted model server for the real-CLI tests.")
    parser.add_argument("--control", required=True, type=Path, help="Unix socket for control requests")
    parser.add_argument("--script", type=Path, help="JSON file with the initial list of steps")
    parser.add_argument("--log", type=Path, help="append every request to this JSONL file")
    args = parser.parse_args(argv)
    serve(args.control, args.script, args.log)


if __name__ == "__main__":
    main()
