"""Property-based fuzzing of every real-CLI parser: whatever arrives, on whatever stream,
in whatever order, with the state saved and restored at any point — no exception, a
JSON-serializable state, a malformed count that matches the bad lines, and a verdict.

Lines come from two sources: random JSON shaped like each CLI's events (right keys,
random types and values), and genuine capture lines mutated (cut, bytes flipped,
spliced together, made non-UTF-8, blown up).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.adapters import REAL_CLIS, get_adapter
from orchestrator.adapters.base import summarize
from orchestrator.core.models import Outcome

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
VARIANTS = Path(__file__).parent / "fixtures" / "cli-variants"


def corpus(cli: str) -> list[bytes]:
    lines = []
    for folder in (CAPTURES, VARIANTS):
        for path in sorted(folder.glob(f"{cli}_*")):
            if path.suffix in (".jsonl", ".stderr"):
                lines += [line for line in path.read_bytes().split(b"\n") if line]
    return lines


CORPUS = {cli: corpus(cli) for cli in REAL_CLIS}

TYPES = {
    "claude": ["system", "assistant", "user", "result", "stream_event", "rate_limit_event"],
    "codex": ["thread.started", "turn.started", "item.started", "item.updated", "item.completed",
              "turn.completed", "turn.failed", "error"],
    "gemini": ["init", "message", "tool_use", "tool_result", "result", "error"],
}
SUBTYPES = ["init", "permission_denied", "api_retry", "status", "compact_boundary", "success",
            "error_max_turns", "error_during_execution"]
ITEM_TYPES = ["agent_message", "command_execution", "file_change", "mcp_tool_call", "web_search", "error",
              "reasoning", "todo_list", "novel"]
ROLLOUT_TYPES = ["session_meta", "response_item", "event_msg", "turn_context", "compacted", "novel"]
PAYLOAD_TYPES = ["function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
                 "local_shell_call", "message"]
KEYS = ["type", "subtype", "session_id", "thread_id", "message", "content", "text", "id", "name", "input",
        "tool_use_id", "is_error", "result", "usage", "total_cost_usd", "permission_denials", "tool_name",
        "tool_input", "item", "status", "exit_code", "aggregated_output", "command", "changes", "path", "kind",
        "role", "delta", "tool_id", "parameters", "output", "error", "stats", "payload", "call_id", "arguments",
        "severity", "event", "attempt", "max_retries", "decision_reason", "num_turns", "api_error_status"]
MARKER_TEXT = ["Read-only file system", "patch rejected: writing is blocked by read-only sandbox",
               "This command requires approval", "haven't granted it yet", "rejected: blocked by policy",
               "Operation not permitted", "tool_not_registered", "policy_violation", "Reconnecting... 1/5"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(MARKER_TEXT), st.sampled_from(SUBTYPES + ITEM_TYPES + PAYLOAD_TYPES),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)),
    max_leaves=10,
)


def shaped(cli: str) -> st.SearchStrategy[dict]:
    """A dict with the keys this CLI's lines have, holding random values of random types."""
    nested = st.builds(
        lambda kind, rest: {**rest, "type": kind},
        st.sampled_from(ITEM_TYPES + PAYLOAD_TYPES + ["tool_use", "tool_result", "text", "message_start"]),
        st.dictionaries(st.sampled_from(KEYS[1:]), json_values, max_size=6),
    )
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(TYPES[cli] + ROLLOUT_TYPES), json_values)},
        optional={
            "subtype": st.sampled_from(SUBTYPES), "message": st.one_of(nested, json_values),
            "item": st.one_of(nested, json_values), "payload": st.one_of(nested, json_values),
            "content": st.one_of(st.lists(st.one_of(nested, json_values), max_size=3), json_values),
            "permission_denials": st.lists(st.one_of(nested, json_values), max_size=3),
            "error": st.one_of(nested, json_values), "usage": json_values, "stats": json_values,
            "session_id": json_values, "thread_id": json_values, "tool_id": json_values, "tool_use_id": json_values,
            "role": st.sampled_from(["assistant", "user", None]), "delta": st.booleans(),
            "status": st.sampled_from(["success", "error", "completed", "declined", "failed"]),
            "text": st.one_of(st.sampled_from(MARKER_TEXT), json_values),
        },
    )


# opencode's and Qwen Code's lines, shaped closer (their own keys and words)
OPEN_MARKERS = MARKER_TEXT + [
    "The user rejected permission to use this specific tool call.",
    "The user has specified a rule which prevents you from using this specific tool call.",
    'Qwen Code requires permission to use "write_file", but that permission was declined.',
    'Tool "run_shell_command" is denied by permission rules.', "[API Error: 400 boom]",
    "\x1b[91mError: \x1b[0mSession not found", "! permission requested: edit (x); auto-rejecting",
    "Permission denied because no interactive user response was available.",
    "[API Error: 429 Rate limit reached for m. Please try again in 1m20.5s.]", "insufficient_quota",
    'timestamp=2026-12-07T00:39:13Z level=ERROR message="stream error" error.error="AI_APICallError: 429"',
    "timestamp=x level=INFO message=stream providerID=p modelID=m small=false",
    "Error: No authentication information found.",
]
OPEN_TOOLS = ["bash", "write", "edit", "invalid", "webfetch", "run_shell_command", "write_file", "web_fetch", None, 7]
said = st.one_of(st.sampled_from(OPEN_MARKERS), json_values)  # a text field: their own wording, or anything


def part() -> st.SearchStrategy:
    state = st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(["completed", "error", "running", None, 3]),
        "input": st.one_of(st.fixed_dictionaries({}, optional={"command": said, "filePath": said, "tool": said}),
                           json_values),
        "error": said, "output": said, "metadata": st.one_of(st.fixed_dictionaries(
            {}, optional={"filepath": said, "exists": st.one_of(st.booleans(), json_values)}), json_values),
    })
    return st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "tool": st.sampled_from(OPEN_TOOLS), "callID": st.one_of(st.sampled_from(["call_1", "call_2"]), json_values),
        "state": st.one_of(state, json_values), "text": said, "reason": st.sampled_from(["stop", "tool-calls", 1]),
        "tokens": st.one_of(st.fixed_dictionaries({}, optional={
            "input": json_values, "output": json_values, "reasoning": json_values,
            "cache": st.one_of(st.fixed_dictionaries({}, optional={"read": json_values, "write": json_values}),
                               json_values)}), json_values),
        "cost": json_values,
    }))


def opencode_line() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["step_start", "text", "reasoning", "tool_use", "step_finish", "error",
                                            "novel"]), json_values)},
        optional={"sessionID": st.one_of(st.sampled_from(["ses_a", "ses_b"]), json_values), "part": part(),
                  "timestamp": json_values,
                  "error": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                      "name": said, "data": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                          "message": said, "statusCode": json_values}))}))},
    )


def block() -> st.SearchStrategy:
    return st.one_of(json_values, st.fixed_dictionaries({"type": st.sampled_from(["text", "tool_use", "tool_result"])},
                                                        optional={"text": said, "id": json_values,
                                                                  "name": st.sampled_from(OPEN_TOOLS),
                                                                  "input": json_values, "tool_use_id": json_values,
                                                                  "is_error": json_values, "content": said}))


def qwen_line() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["system", "assistant", "user", "result", "stream_event", "novel"]),
                           json_values)},
        optional={"subtype": st.sampled_from(["init", "success", "error_max_turns", "error_during_execution", "x"]),
                  "session_id": json_values,
                  "message": st.one_of(json_values, st.fixed_dictionaries(
                      {}, optional={"content": st.one_of(st.lists(block(), max_size=3), json_values)})),
                  "result": said, "is_error": json_values, "usage": json_values, "error": json_values,
                  "permission_denials": st.lists(st.one_of(json_values, st.fixed_dictionaries(
                      {}, optional={"tool_use_id": json_values, "tool_name": st.sampled_from(OPEN_TOOLS),
                                    "tool_input": json_values})), max_size=3)},
    )


def copilot_line() -> st.SearchStrategy[dict]:
    data = st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "content": said, "deltaContent": said, "model": json_values, "toolCallId": st.sampled_from(["call_1", "c2"]),
        "toolName": st.sampled_from(OPEN_TOOLS + ["create"]), "arguments": json_values, "success": json_values,
        "error": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "message": said, "code": st.sampled_from(["denied", "failure", None])})),
        "fileEdits": json_values, "errorType": st.sampled_from(["rate_limit", "authentication", "query"]),
        "statusCode": st.sampled_from([401, 402, 429, 500, None, "429"]), "errorMessage": said,
        "usage": json_values, "reason": said}))
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["assistant.message", "assistant.message_delta", "tool.execution_start",
                                            "tool.execution_complete", "assistant.turn_retry", "model.call_failure",
                                            "session.error", "result", "session.start", "session.usage_record",
                                            "novel"]), json_values)},
        optional={"data": data, "timestamp": json_values, "sessionId": json_values, "exitCode": json_values},
    )


#: A strategy of one random line shaped like each CLI's.
SHAPED = {"claude": lambda: shaped("claude"), "codex": lambda: shaped("codex"), "gemini": lambda: shaped("gemini"),
          "opencode": opencode_line, "qwen": qwen_line, "copilot": copilot_line}


def encoded(obj: dict) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def mutated(draw, cli: str) -> bytes:
    """A genuine line, damaged the way real files get damaged."""
    line = draw(st.sampled_from(CORPUS[cli]))
    how = draw(st.sampled_from(["cut", "flip", "splice", "latin1", "huge", "nul", "whole"]))
    if how == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if how == "flip":
        data = bytearray(line)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if data:
                data[at] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "splice":
        other = draw(st.sampled_from(CORPUS[cli]))
        return line[: draw(st.integers(0, len(line)))] + other[draw(st.integers(0, len(other))):]
    if how == "latin1":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.binary(min_size=1, max_size=6).map(lambda b: bytes(x | 0x80 for x in b))) + line[at:]
    if how == "huge":
        return line[:-1] + b"," + b'"pad":"' + b"z" * draw(st.integers(10_000, 300_000)) + b'"}'
    if how == "nul":
        return line.replace(b'"', b"\x00", 1)
    return line


def lines_for(cli: str) -> st.SearchStrategy[list[tuple[str, bytes, bool]]]:
    """(stream, line, save-and-restore-after-it) triples."""
    line = st.one_of(SHAPED[cli]().map(encoded), mutated(cli), st.binary(max_size=200))
    return st.lists(st.tuples(st.sampled_from(["stdout", "stdout", "stdout", "stderr", "rollout"]), line, st.booleans()),
                    min_size=1, max_size=25)


def not_a_json_object(line: bytes) -> int:
    """1 when a stdout/rollout line is not one clean UTF-8 JSON object (blank lines are not counted)."""
    if not line.strip():
        return 0
    try:
        obj = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return 1
    return 0 if isinstance(obj, dict) else 1


def check(cli: str, lines: list[tuple[str, bytes, bool]]) -> None:
    """Feed, save/restore, finish and summarize; every malformed count must be a bad line.

    The parsers catch any exception a handler raises and count the line as malformed; so
    the count is compared with an independent judgement of each line, which turns a
    handler crash hidden by that safety net into a failure here.
    """
    adapter = get_adapter(cli)
    parser = adapter.new_parser()
    events = []
    for stream, line, restore in lines:
        events += parser.feed(stream, line)
        if restore:
            state = json.loads(json.dumps(parser.state()))
            parser = adapter.new_parser(state)
            assert json.loads(json.dumps(parser.state())) == state  # a saved state round-trips
    events += parser.finish(None)
    expected = sum(not_a_json_object(line) for stream, line, _ in lines if stream in ("stdout", "rollout"))
    assert parser.malformed_lines == expected
    summary = summarize(cli, events, parser.malformed_lines)
    assert summary.outcome in set(Outcome)
    json.dumps(summary.model_dump(mode="json"))
    for ev in events:
        json.dumps(ev.model_dump(mode="json"))


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("cli", REAL_CLIS)
@FUZZ
@given(data=st.data())
def test_fuzz(cli, data):
    check(cli, data.draw(lines_for(cli), label="lines"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REAL_CLIS), st.lists(shaped("codex").map(encoded), max_size=10))
def test_fuzz_any_cli_reading_another_clis_lines(cli, lines):
    """A sim agent speaking the wrong format, or files mixed up: still no exception."""
    check(cli, [("stdout", line, False) for line in lines] + [("rollout", line, True) for line in lines])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REAL_CLIS), st.lists(st.sampled_from([line for lines in CORPUS.values() for line in lines]),
                                            max_size=12))
def test_fuzz_any_cli_reading_another_clis_genuine_lines(cli, lines):
    """Capture files mixed up between the CLIs: still no exception, and a verdict."""
    check(cli, [("stdout", line, i % 3 == 0) for i, line in enumerate(lines)])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cli", REAL_CLIS)
def test_a_huge_line_on_any_stream_is_read_in_one_pass(cli):
    """A 2 MB line (a log line whose last value runs on, a JSON line with a huge string) is
    read, not re-scanned from each of its positions: a parser whose patterns backtrack
    quadratically would take hours here, and the pytest timeout would end the test."""
    adapter = get_adapter(cli)
    for stream in ("stdout", "stderr", "rollout"):
        for line in CORPUS[cli][:12]:
            for pad in (b"z", b"9", b'"', b"\\"):
                huge = line.rstrip(b"\n") + b" " + pad * 2_000_000
                parser = adapter.new_parser()
                parser.feed(stream, huge)
                parser.finish(None)
