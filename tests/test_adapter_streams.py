"""The parsers as the live ingest uses them: line by line, state saved and restored as
JSON between lines, streams interleaved, lines still being written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter, limits
from orchestrator.adapters.base import summarize
from orchestrator.core.models import AgentEventKind as K
from orchestrator.store.tail import read_new_lines

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = FIXTURES / "cli-captures"
VARIANTS = FIXTURES / "cli-variants"
REAL = ("claude", "codex", "gemini")


@pytest.fixture(autouse=True)
def one_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Words without a time ("Please try again in 20s" from Qwen Code) are read on the parse-time
    clock: held still, so two readings of one capture can be compared."""
    clock = limits.now()
    monkeypatch.setattr(limits, "now", lambda: clock)


def run_lines(cli: str, stem: Path) -> list[tuple[str, bytes]]:
    """(stream, line) pairs of a fixture: stdout, then stderr, then the rollout."""
    pairs = []
    for stream, suffix in (("stdout", ".jsonl"), ("stderr", ".stderr"), ("rollout", ".rollout.jsonl")):
        path = Path(f"{stem}{suffix}")
        if path.exists():
            pairs += [(stream, line) for line in path.read_bytes().split(b"\n") if line]
    return pairs


def all_fixtures() -> list[tuple[str, Path]]:
    out = []
    for folder in (CAPTURES, VARIANTS):
        for path in sorted(folder.glob("*.jsonl")):
            if path.name.endswith(".rollout.jsonl") or path.name == "empty.jsonl":
                continue
            out.append((path.name.split("_", 1)[0], path.with_suffix("")))
    return out


def dumped(events) -> list[dict]:
    return [e.model_dump(mode="json") for e in events]


@pytest.mark.parametrize("cli, stem", all_fixtures(), ids=lambda v: getattr(v, "name", v))
def test_restoring_state_after_every_line_changes_nothing(cli, stem):
    adapter = get_adapter(cli)
    pairs = run_lines(cli, stem)
    straight = adapter.new_parser()
    expected = [e for s, line in pairs for e in straight.feed(s, line)] + straight.finish(0)
    got, state = [], None
    for s, line in pairs:
        parser = adapter.new_parser(state)
        got += parser.feed(s, line)
        state = json.loads(json.dumps(parser.state()))  # what cursor.json holds
    parser = adapter.new_parser(state)
    got += parser.finish(0)
    assert dumped(got) == dumped(expected)
    assert parser.malformed_lines == straight.malformed_lines


@pytest.mark.parametrize("cli", REAL)
def test_finish_is_idempotent_and_marks_incomplete(cli):
    parser = get_adapter(cli).new_parser()
    first = parser.finish(137)
    assert [e.kind for e in first] == [K.RUN_FINISHED]
    assert first[0].outcome.value == "incomplete" and "137" in first[0].message
    assert parser.finish(137) == []


def test_a_line_being_written_is_held_back_until_its_newline(tmp_path):
    path = tmp_path / "stdout.jsonl"
    lines = (CAPTURES / "claude_text.jsonl").read_bytes().split(b"\n")
    result = lines[2]
    path.write_bytes(lines[0] + b"\n" + lines[1] + b"\n" + result[:100])
    parser = get_adapter("claude").new_parser()
    batch, offset = read_new_lines(path, 0)
    events = [e for line in batch for e in parser.feed("stdout", line)]
    assert K.RUN_FINISHED not in [e.kind for e in events] and parser.malformed_lines == 0
    with open(path, "ab") as f:
        f.write(result[100:] + b"\n")
    batch, offset = read_new_lines(path, offset)
    events = [e for line in batch for e in parser.feed("stdout", line)]
    assert [e.kind for e in events][-1] is K.RUN_FINISHED
    assert parser.malformed_lines == 0 and offset == path.stat().st_size


@pytest.mark.parametrize("stderr_first", [True, False])
def test_codex_stderr_and_message_make_one_denial_in_either_order(stderr_first):
    pairs = run_lines("codex", VARIANTS / "codex_patch_rejected")
    stdout = [p for p in pairs if p[0] == "stdout"]
    stderr = [p for p in pairs if p[0] == "stderr"]
    ordered = stderr + stdout if stderr_first else stdout + stderr
    parser = get_adapter("codex").new_parser()
    events = [e for s, line in ordered for e in parser.feed(s, line)]
    denials = [e for e in events if e.kind is K.DENIAL]
    assert len(denials) == 1
    assert denials[0].stream == ("stderr" if stderr_first else "stdout")


def test_codex_two_rejected_patches_stay_two():
    line = (VARIANTS / "codex_patch_rejected.stderr").read_bytes().split(b"\n")[1]
    parser = get_adapter("codex").new_parser()
    events = parser.feed("stderr", line) + parser.feed("stderr", line)
    assert [e.kind for e in events] == [K.DENIAL, K.DENIAL]
    assert events[0].tool_id != events[1].tool_id


def test_codex_message_repeating_one_refusal_counts_once():
    parser = get_adapter("codex").new_parser()
    text = "Output: /bin/bash: line 1: /w/a.txt: Read-only file system"
    line = json.dumps({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}})
    again = json.dumps({"type": "item.completed", "item": {"id": "item_5", "type": "agent_message",
                                                           "text": "I could not write /w/a.txt: Read-only file system"}})
    events = parser.feed("stdout", line.encode()) + parser.feed("stdout", again.encode())
    assert [e.target for e in events if e.kind is K.DENIAL] == ["/w/a.txt"]


def test_codex_item_ids_restart_with_each_turn():
    parser = get_adapter("codex").new_parser()
    started = json.dumps({"type": "item.started", "item": {"id": "item_0", "type": "command_execution",
                                                            "command": "ls", "status": "in_progress"}}).encode()
    turn = b'{"type":"turn.started"}'
    events = []
    for line in (turn, started, turn, started):
        events += parser.feed("stdout", line)
    assert [e.kind for e in events] == [K.TOOL_STARTED, K.TOOL_STARTED]


def test_gemini_deltas_become_one_message():
    parser = get_adapter("gemini").new_parser()
    events = []
    for stream, line in run_lines("gemini", CAPTURES / "gemini_deny_write"):
        events += parser.feed(stream, line)
    texts = [e.text for e in events if e.kind is K.TEXT]
    assert texts[0] == "I will use a tool."
    assert texts[1].startswith("Tool finished. Result was: ") and texts[1].endswith('\\"grep_search\\"?"}')
    assert len(texts) == 2
    assert events[-1].kind is K.RUN_FINISHED and events[-1].text == texts[1]


def test_claude_liveness_hints():
    parser = get_adapter("claude").new_parser()
    events = []
    for stream, line in run_lines("claude", VARIANTS / "claude_api_retry"):
        events += parser.feed(stream, line)
    statuses = [(e.status, e.message) for e in events if e.kind is K.STATUS]
    assert statuses == [("retrying", "retry 1/10: overloaded_error"), ("retrying", "retry 2/10: overloaded_error")]
    partial = get_adapter("claude").new_parser()
    kinds = [e.kind for s, line in run_lines("claude", CAPTURES / "claude_partial") for e in partial.feed(s, line)]
    assert kinds.count(K.STATUS) == 2  # system/status "requesting" and the message start
    assert kinds.count(K.TEXT) == 1  # the deltas are not repeated as text


def test_unknown_lines_are_kept_with_their_content():
    parser = get_adapter("gemini").new_parser()
    small = parser.feed("stdout", b'{"type":"thought","subject":"Planning"}')
    assert small[0].kind is K.UNKNOWN and small[0].raw_type == "thought"
    assert small[0].data == {"type": "thought", "subject": "Planning"}
    big = parser.feed("stdout", json.dumps({"type": "blob", "body": "x" * 10_000}).encode())
    assert big[0].raw_type == "blob" and big[0].data == {"keys": ["type", "body"]}
    none = parser.feed("stdout", b'{"no_type": 1}')
    assert none[0].raw_type == "(none)"


ODD_LINES = [
    b"", b"   ", b"\r", b"null", b"[1, 2]", b'"text"', b"42", b"{", b'{"type":',
    b'{"type": ["list"]}', b'{"type": {"a": 1}}', b'{"type": 7}', b'{"type": null}',
    b'{"type":"assistant","message":"text"}', b'{"type":"assistant","message":{"content":"str"}}',
    b'{"type":"assistant","message":{"content":[1,"a",null,{"type":"tool_use","input":[1]}]}}',
    b'{"type":"user","message":{"content":[{"type":"tool_result","is_error":true,"content":[{"text":5}]}]}}',
    b'{"type":"result","usage":"none","total_cost_usd":"NaN","permission_denials":[1,{"tool_name":5}]}',
    b'{"type":"system","subtype":"permission_denied","tool_use_id":5}',
    b'{"type":"item.completed","item":{"type":"file_change","changes":"all"}}',
    b'{"type":"item.completed","item":{"type":"command_execution","exit_code":"x","aggregated_output":5}}',
    b'{"type":"turn.completed","usage":{"input_tokens":"many","output_tokens":1e400}}',
    b'{"type":"turn.failed","error":"boom"}', b'{"type":"error","message":{"nested":true}}',
    b'{"type":"tool_result","status":"error","error":"flat"}', b'{"type":"result","stats":[],"status":"error"}',
    b'{"type":"message","role":"assistant","content":5,"delta":true}',
    b'{"type":"init","session_id":["x"]}', b'{"type":"thread.started","thread_id":{}}',
    b"\xff\xfe\xfd", b'{"type":"assistant","message":{"content":[{"type":"text","text":"\xc3\x28"}]}}',
    b"[" * 100_000, b'{"a":' * 50_000,
]


@pytest.mark.parametrize("cli", REAL)
def test_odd_lines_never_raise(cli):
    parser = get_adapter(cli).new_parser()
    events = []
    for stream in ("stdout", "stderr", "rollout", "exit", "nonsense"):
        for line in ODD_LINES:
            events += parser.feed(stream, line)
            parser = get_adapter(cli).new_parser(json.loads(json.dumps(parser.state())))
    events += parser.finish(None)
    summary = summarize(cli, events, parser.malformed_lines)
    assert summary.outcome.value in ("success", "error", "max_turns", "incomplete")
    assert parser.malformed_lines >= 8  # at least the lines that are not JSON objects


@pytest.mark.parametrize("cli", REAL)
def test_saved_state_stays_small(cli):
    parser = get_adapter(cli).new_parser()
    long = "y" * 5000
    for i in range(3000):
        if cli == "claude":
            obj = {"type": "assistant", "message": {"content": [
                {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": long}}]}}
        elif cli == "codex":
            obj = {"type": "item.started", "item": {"id": f"item_{i}", "type": "command_execution", "command": long}}
        else:
            obj = {"type": "tool_use", "tool_id": f"t{i}", "tool_name": "run_shell_command",
                   "parameters": {"command": long}}
        parser.feed("stdout", json.dumps(obj).encode())
        if cli == "gemini":
            parser.feed("stdout", json.dumps({"type": "message", "role": "assistant", "content": long,
                                              "delta": True}).encode())
    assert len(json.dumps(parser.state())) < 1_000_000


@pytest.mark.parametrize("cli", ["claude", "gemini", "copilot"])
def test_the_saved_state_holds_only_the_calls_still_running(cli):
    """A call is forgotten once its result has come: an agent at work for hours saves (in every
    meta.json write) only its running calls, and a result read after a save and a restore still
    finds its call — the tool and the file it changed."""
    def call(i: int) -> dict:
        if cli == "claude":
            return {"type": "assistant", "message": {"content": [
                {"type": "tool_use", "id": f"toolu_{i}", "name": "Edit", "input": {"file_path": f"src/m{i}.py"}}]}}
        if cli == "gemini":
            return {"type": "tool_use", "tool_id": f"t{i}", "tool_name": "replace",
                    "parameters": {"file_path": f"src/m{i}.py"}}
        return {"type": "tool.execution_start", "data": {"toolCallId": f"c{i}", "toolName": "edit",
                                                         "arguments": {"path": f"src/m{i}.py"}}}

    def result(i: int) -> dict:
        if cli == "claude":
            return {"type": "user", "message": {"content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "ok", "is_error": False}]}}
        if cli == "gemini":
            return {"type": "tool_result", "tool_id": f"t{i}", "status": "success"}
        return {"type": "tool.execution_complete", "data": {"toolCallId": f"c{i}", "success": True,
                                                            "fileEdits": [{"path": f"src/m{i}.py"}]}}

    adapter = get_adapter(cli)
    parser = adapter.new_parser()
    changed = []
    for i in range(500):
        parser.feed("stdout", json.dumps(call(i)).encode())
        if i == 7:
            continue  # its result never comes
        parser = adapter.new_parser(json.loads(json.dumps(parser.state())))  # saved between the two lines
        events = parser.feed("stdout", json.dumps(result(i)).encode())
        changed += [(e.tool, e.path) for e in events if e.kind is K.FILE_CHANGED]
    assert len(changed) == 499 and changed[0][1] == "src/m0.py" and changed[0][0] not in (None, "unknown")
    saved = parser.state()
    assert [row[0] for row in saved["tools"]] == [{"claude": "toolu_7", "gemini": "t7"}.get(cli, "c7")]


def test_codex_saves_only_the_rollout_calls_still_running():
    """The same for codex's rollout: a call is forgotten when its output comes."""
    adapter = get_adapter("codex")
    parser = adapter.new_parser()
    for i in range(400):
        call = {"type": "response_item", "payload": {"type": "function_call", "call_id": f"call_{i}",
                                                     "name": "shell", "arguments": '{"command":["ls"]}'}}
        parser.feed("rollout", json.dumps(call).encode())
        if i == 3:
            continue
        parser = adapter.new_parser(json.loads(json.dumps(parser.state())))
        output = {"type": "response_item", "payload": {"type": "function_call_output", "call_id": f"call_{i}",
                                                       "output": "a.txt"}}
        parser.feed("rollout", json.dumps(output).encode())
    assert [row[0] for row in parser.state()["calls"]] == ["call_3"]


def test_a_state_saved_by_nobody_loads_as_new():
    for cli in REAL:
        for junk in ({}, {"tools": "x", "denied": 5, "ledger": [], "pending": 3, "started": {"a": 1}},
                     {"malformed_lines": "many", "finished": "yes"}):
            parser = get_adapter(cli).new_parser(junk)
            assert parser.malformed_lines == 0
            json.dumps(parser.state())


def test_codex_file_changes_use_the_common_words():
    parser = get_adapter("codex").new_parser()
    line = json.dumps({"type": "item.completed", "item": {"id": "item_0", "type": "file_change", "status": "completed",
                                                           "changes": [{"path": "/w/a.py", "kind": "update"},
                                                                       {"path": "/w/b.py", "kind": "add"},
                                                                       {"path": "/w/c.py", "kind": "delete"}]}})
    changes = [(e.path, e.change) for e in parser.feed("stdout", line.encode()) if e.kind is K.FILE_CHANGED]
    assert changes == [("/w/a.py", "modify"), ("/w/b.py", "add"), ("/w/c.py", "delete")]
