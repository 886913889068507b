#!/usr/bin/env python3
"""A stand-in `claude` for the benchmarks: claude's stream-json lines at a steady rate.

orch launches it as it launches claude (ORCH_CLAUDE_BIN points here), with claude's argv;
the prompt says how to stream: `rate=LINES_PER_SECOND seconds=S`. It prints the init line,
then turns of an assistant at work — a text, a tool call (Bash, Read or Edit), the tool's
result (`is_error: false`, with claude's `tool_use_result`) — shaped and sized like the
genuine CLI's lines (tests/fixtures/cli-captures/claude_tool.jsonl), and a result line
with usage and cost at the end. A tool result of a denied call is never printed: the
benchmark writes its own denials where it wants them.
"""

import json
import os
import re
import sys
import time
import uuid

MODEL = "claude-opus-4-8"
TOOLS = (("Bash", {"command": "python -m pytest -q tests/test_parse.py", "description": "Run the parser tests"}),
         ("Read", {"file_path": "src/textutils/parse.py"}),
         ("Edit", {"file_path": "src/textutils/parse.py", "old_string": "return None", "new_string": "return ''"}))
WORDS = ("I read the module and the failing test first, then change the smallest thing that makes the "
         "behaviour match the specification; the tests say whether it worked.")


def option(argv: list[str], name: str, default: float) -> float:
    for arg in argv:
        found = re.search(rf"\b{name}=([0-9.]+)", arg)
        if found:
            return float(found.group(1))
    return default


def session_id(argv: list[str]) -> str:
    for flag in ("--session-id", "--resume"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return str(uuid.uuid4())


def assistant(sid: str, msg: str, block: dict) -> dict:
    return {"type": "assistant", "message": {
        "id": msg, "type": "message", "role": "assistant", "model": MODEL, "content": [block],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 40, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 2048}, "context_management": None},
        "parent_tool_use_id": None, "session_id": sid, "uuid": str(uuid.uuid4())}


def tool_result(sid: str, tool_id: str, output: str) -> dict:
    return {"type": "user", "message": {"role": "user", "content": [
        {"tool_use_id": tool_id, "type": "tool_result", "content": output, "is_error": False}]},
        "parent_tool_use_id": None, "session_id": sid, "uuid": str(uuid.uuid4()),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "tool_use_result": {"stdout": output, "stderr": "", "interrupted": False, "isImage": False,
                            "noOutputExpected": False}}


def turns(sid: str):
    """The lines of an assistant at work, forever: text, tool call, tool result."""
    n = 0
    while True:
        n += 1
        msg = f"msg_{uuid.uuid4().hex[:20]}"
        tool, args = TOOLS[n % len(TOOLS)]
        tool_id = f"toolu_{uuid.uuid4().hex[:20]}"
        yield assistant(sid, msg, {"type": "text", "text": f"Step {n}: {WORDS}"})
        yield assistant(sid, msg, {"type": "tool_use", "id": tool_id, "name": tool, "input": args})
        yield tool_result(sid, tool_id, f"{n} passed in 0.{n % 90 + 10}s")


def main() -> None:
    argv = sys.argv[1:]
    rate = option(argv, "rate", 1.0)
    seconds = option(argv, "seconds", 30.0)
    sid = session_id(argv)
    out = sys.stdout
    init = {"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": sid, "tools": [t for t, _ in TOOLS],
            "mcp_servers": [], "model": MODEL, "permissionMode": "default", "apiKeySource": "none",
            "claude_code_version": "2.1.197", "uuid": str(uuid.uuid4())}
    out.write(json.dumps(init) + "\n")
    out.flush()
    start = time.monotonic()
    interval = 1.0 / rate
    lines = turns(sid)
    sent = 0
    while True:
        due = start + (sent + 1) * interval
        if due - start >= seconds:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        sent += 1
        out.write(json.dumps(next(lines)) + "\n")
        out.flush()
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    result = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": int(seconds * 1000),
              "num_turns": sent // 3, "result": "Done: the parser tests pass.", "session_id": sid,
              "total_cost_usd": 0.0123, "usage": {"input_tokens": 12, "output_tokens": 400,
                                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2048}}
    out.write(json.dumps(result) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
