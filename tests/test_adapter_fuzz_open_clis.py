"""Property-based fuzzing of the opencode and Qwen Code parsers, as test_adapter_fuzz.py does
for the first three: random JSON shaped like each CLI's lines and genuine capture lines
damaged, on any stream, with the state saved and restored anywhere — no exception, a
JSON-serializable state, a malformed count that matches the bad lines, and a verdict.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_adapter_fuzz import MARKER_TEXT, check, encoded, json_values

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
CLIS = ("opencode", "qwen")


def corpus(cli: str) -> list[bytes]:
    lines = []
    for path in sorted(CAPTURES.glob(f"{cli}_*")):
        if path.suffix in (".jsonl", ".stderr"):
            lines += [line for line in path.read_bytes().split(b"\n") if line]
    return lines


CORPUS = {cli: corpus(cli) for cli in CLIS}
MARKERS = MARKER_TEXT + [
    "The user rejected permission to use this specific tool call.",
    "The user has specified a rule which prevents you from using this specific tool call.",
    'Qwen Code requires permission to use "write_file", but that permission was declined.',
    'Tool "run_shell_command" is denied by permission rules.', "[API Error: 400 boom]",
    "\x1b[91mError: \x1b[0mSession not found", "! permission requested: edit (x); auto-rejecting",
]
TOOLS = ["bash", "write", "edit", "invalid", "webfetch", "run_shell_command", "write_file", "web_fetch", None, 7]
text = st.one_of(st.sampled_from(MARKERS), json_values)


def part() -> st.SearchStrategy:
    state = st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(["completed", "error", "running", None, 3]),
        "input": st.one_of(st.fixed_dictionaries({}, optional={"command": text, "filePath": text, "tool": text}),
                           json_values),
        "error": text, "output": text, "metadata": st.one_of(st.fixed_dictionaries(
            {}, optional={"filepath": text, "exists": st.one_of(st.booleans(), json_values)}), json_values),
    })
    return st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "tool": st.sampled_from(TOOLS), "callID": st.one_of(st.sampled_from(["call_1", "call_2"]), json_values),
        "state": st.one_of(state, json_values), "text": text, "reason": st.sampled_from(["stop", "tool-calls", 1]),
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
                      "name": text, "data": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                          "message": text, "statusCode": json_values}))}))},
    )


def block() -> st.SearchStrategy:
    return st.one_of(json_values, st.fixed_dictionaries({"type": st.sampled_from(["text", "tool_use", "tool_result"])},
                                                        optional={"text": text, "id": json_values,
                                                                  "name": st.sampled_from(TOOLS),
                                                                  "input": json_values, "tool_use_id": json_values,
                                                                  "is_error": json_values, "content": text}))


def qwen_line() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["system", "assistant", "user", "result", "stream_event", "novel"]),
                           json_values)},
        optional={"subtype": st.sampled_from(["init", "success", "error_max_turns", "error_during_execution", "x"]),
                  "session_id": json_values,
                  "message": st.one_of(json_values, st.fixed_dictionaries(
                      {}, optional={"content": st.one_of(st.lists(block(), max_size=3), json_values)})),
                  "result": text, "is_error": json_values, "usage": json_values, "error": json_values,
                  "permission_denials": st.lists(st.one_of(json_values, st.fixed_dictionaries(
                      {}, optional={"tool_use_id": json_values, "tool_name": st.sampled_from(TOOLS),
                                    "tool_input": json_values})), max_size=3)},
    )


SHAPED = {"opencode": opencode_line, "qwen": qwen_line}


@st.composite
def mutated(draw, cli: str) -> bytes:
    """A genuine line, cut, with bytes flipped, spliced, made non-UTF-8, or whole."""
    line = draw(st.sampled_from(CORPUS[cli]))
    how = draw(st.sampled_from(["cut", "flip", "splice", "latin1", "whole"]))
    if how == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if how == "flip":
        data = bytearray(line)
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if data:
            data[at] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "splice":
        other = draw(st.sampled_from(CORPUS[cli]))
        return line[: draw(st.integers(0, len(line)))] + other[draw(st.integers(0, len(other))):]
    if how == "latin1":
        at = draw(st.integers(0, len(line)))
        return line[:at] + b"\xe9\xff" + line[at:]
    return line


def lines_for(cli: str):
    line = st.one_of(SHAPED[cli]().map(encoded), mutated(cli), st.binary(max_size=200))
    return st.lists(st.tuples(st.sampled_from(["stdout", "stdout", "stdout", "stderr", "rollout"]), line, st.booleans()),
                    min_size=1, max_size=25)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(lines_for("opencode"))
def test_fuzz_opencode(lines):
    check("opencode", lines)


@FUZZ
@given(lines_for("qwen"))
def test_fuzz_qwen(lines):
    check("qwen", lines)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CLIS), st.lists(st.sampled_from(CORPUS["opencode"] + CORPUS["qwen"]), max_size=12))
def test_fuzz_either_reading_the_others_lines(cli, lines):
    """Files mixed up between the two: still no exception, and a verdict."""
    check(cli, [("stdout", line, i % 3 == 0) for i, line in enumerate(lines)])
