"""The model stub on its own (no CLI): the three protocols, the script rules and the log.

These run the stub as a real process on 127.0.0.1 and talk to it over HTTP, the way the
CLIs do; they need no namespace, since nothing here reaches beyond loopback.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from . import script as S
from .lab import start_stub
from .stub import INPUT_TOKENS, OUTPUT_TOKENS


@pytest.fixture
def model(tmp_path: Path) -> Iterator[S.StubControl]:
    with tempfile.TemporaryDirectory(prefix="orch-stub-") as short:  # Unix socket paths must be short
        proc, control = start_stub(Path(short) / "c.sock", tmp_path / "log.jsonl", tmp_path / "stub.stderr")
        try:
            yield control
        finally:
            proc.stdin.close()  # the stub stops when its stdin closes
            proc.wait(timeout=10)
            proc.stdout.close()


def url(model: S.StubControl, path: str) -> str:
    return f"http://127.0.0.1:{model.port}{path}"


def sse_events(body: str) -> list[tuple[str | None, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        events.append((name, data))
    return events


def anthropic(model: S.StubControl, messages: list, **extra) -> list[tuple[str | None, dict]]:
    r = httpx.post(url(model, "/v1/messages?beta=true"), json={"model": "claude-x", "stream": True,
                                                               "messages": messages, **extra},
                   headers={"x-api-key": "sk-secret"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    return sse_events(r.text)


def openai(model: S.StubControl, items: list) -> list[tuple[str | None, dict]]:
    r = httpx.post(url(model, "/v1/responses"), json={"model": "gpt-5.5", "stream": True, "input": items},
                   headers={"authorization": "Bearer sk-secret"})
    assert r.status_code == 200
    return sse_events(r.text)


def gemini(model: S.StubControl, contents: list, name: str = "gemini-3-flash") -> list[dict]:
    r = httpx.post(url(model, f"/v1beta/models/{name}:streamGenerateContent?alt=sse&key=secret"),
                   json={"contents": contents}, headers={"x-goog-api-key": "secret"})
    assert r.status_code == 200
    return [data for _, data in sse_events(r.text)]


USER = [{"role": "user", "content": [{"type": "text", "text": "ROLE: implementer. Do the thing."}]}]


def test_anthropic_stream_streams_text_then_a_tool_call(model: S.StubControl) -> None:
    model.script(S.shell("echo hi", say="I will run it."))
    events = anthropic(model, USER)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert "".join(d["text"] for d in deltas if d["type"] == "text_delta") == "I will run it."
    tool = next(d["content_block"] for n, d in events if n == "content_block_start"
                and d["content_block"]["type"] == "tool_use")
    assert tool["name"] == "Bash" and tool["id"].startswith("toolu_")
    args = json.loads("".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta"))
    assert args == {"command": "echo hi", "description": "Run echo hi"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[0][1]["message"]["model"] == "claude-x"


def test_anthropic_reply_quotes_history_and_tool_result(model: S.StubControl) -> None:
    model.script(S.reply("saw {history}: {tool_result}", last_input="tool_result"))
    messages = USER + [
        {"role": "system", "content": "a reminder"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                      "content": "This command\nrequires approval"}]}]
    events = anthropic(model, messages)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "saw 4: ERROR: This command requires approval"
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_openai_items_for_text_shell_and_patch(model: S.StubControl) -> None:
    model.script(S.reply("done"), S.shell("ls -la"), S.patch("/w/a.txt", "one\ntwo\n"))
    prompt = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]
    done = []
    for _ in range(3):
        events = openai(model, prompt)
        assert events[0][1]["type"] == "response.created" and events[-1][1]["type"] == "response.completed"
        assert events[-1][1]["response"]["usage"]["total_tokens"] == INPUT_TOKENS + OUTPUT_TOKENS
        done += [d["item"] for n, d in events if n == "response.output_item.done"]
    message, call, patch = done
    assert message["type"] == "message" and message["content"][0] == {"type": "output_text", "text": "done", "annotations": []}
    assert call["type"] == "function_call" and call["name"] == "exec_command"
    assert json.loads(call["arguments"]) == {"cmd": "ls -la"} and call["call_id"].startswith("call_")
    assert patch["type"] == "custom_tool_call" and patch["name"] == "apply_patch"
    assert patch["input"] == "*** Begin Patch\n*** Add File: /w/a.txt\n+one\n+two\n*** End Patch\n"


def test_openai_tool_output_is_the_last_input(model: S.StubControl) -> None:
    model.script(S.reply("Result: {tool_result}", last_input="tool_result"))
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
             {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "Exit code: 1\nOutput:\nRead-only file system\n"}]
    events = openai(model, items)
    item = next(d["item"] for n, d in events if n == "response.output_item.done")
    assert item["content"][0]["text"] == "Result: Exit code: 1 Output: Read-only file system"


def test_gemini_chunks_text_and_function_calls(model: S.StubControl) -> None:
    model.script(S.write("/w/b.txt", "x", say="Writing now."))
    chunks = gemini(model, [{"role": "user", "parts": [{"text": "write it"}]}])
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == "Writing now."
    assert parts[-1] == {"functionCall": {"name": "write_file", "args": {"file_path": "/w/b.txt", "content": "x"}}}
    assert [c["candidates"][0].get("finishReason") for c in chunks][-1] == "STOP"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == INPUT_TOKENS + OUTPUT_TOKENS


def test_gemini_router_call_is_answered_without_using_the_script(model: S.StubControl) -> None:
    model.script(S.reply("the scripted answer"))
    r = httpx.post(url(model, "/v1beta/models/gemini-flash-lite:generateContent"), json={"contents": []})
    verdict = json.loads(r.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert verdict["complexity_score"] >= 1 and verdict["model_choice"] == "flash"
    assert len(model.pending()) == 1
    assert model.requests() == []  # utility calls are not scripted requests…
    assert model.all_requests()[-1]["utility"] is True  # …but they are logged


def test_steps_are_picked_by_matching_the_request(model: S.StubControl) -> None:
    model.script(S.reply_json({"verdict": "blockers", "blockers": [{"title": "no tests"}]}, prompt_contains="ROLE: reviewer"),
                 S.reply("implemented", prompt_contains="ROLE: implementer"),
                 S.reply("any api, any time", repeat=True))
    reviewer = [{"role": "user", "content": "ROLE: reviewer. Review it."}]

    def said(messages) -> str:
        return "".join(d["delta"].get("text", "") for n, d in anthropic(model, messages) if n == "content_block_delta")

    assert said(USER) == "implemented"
    assert json.loads(said(reviewer)) == {"verdict": "blockers", "blockers": [{"title": "no tests"}]}
    assert said(reviewer) == said(USER) == "any api, any time"  # the repeating step stays
    assert [s.get("reply") for s in model.pending()] == ["any api, any time"]


def test_api_and_conversation_conditions(model: S.StubControl) -> None:
    model.script(S.reply("from gemini", api="gemini"), S.reply("resumed", conversation_contains="first turn"),
                 S.reply("fresh"))
    assert "".join(d["delta"].get("text", "") for n, d in anthropic(model, USER) if n == "content_block_delta") == "fresh"
    history = USER + [{"role": "assistant", "content": "the first turn answer"}, {"role": "user", "content": "again"}]
    assert "".join(d["delta"].get("text", "") for n, d in anthropic(model, history) if n == "content_block_delta") == "resumed"
    parts = gemini(model, [{"role": "user", "parts": [{"text": "hi"}]}])
    assert "".join(p.get("text", "") for c in parts for p in c["candidates"][0]["content"]["parts"]) == "from gemini"


def test_unmatched_request_gets_a_reply_and_is_flagged(model: S.StubControl) -> None:
    model.script(S.reply("only for tool results", last_input="tool_result"))
    anthropic(model, USER)
    (flagged,) = model.unmatched()
    assert flagged["conversation"]["last_input"] == "prompt"


def test_error_step_answers_with_the_status_every_cli_reads(model: S.StubControl) -> None:
    model.script(S.fail(429, "slow down"), S.fail(400))
    r = httpx.post(url(model, "/v1/responses"), json={"input": []})
    assert r.status_code == 429
    assert r.json()["error"] == {"type": "rate_limit_error", "code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    r = httpx.post(url(model, "/v1beta/models/m:streamGenerateContent?alt=sse"), json={"contents": []})
    assert r.status_code == 400 and r.json()["error"]["message"] == "stub: scripted error 400"


def test_hang_holds_the_request_without_an_answer(model: S.StubControl) -> None:
    model.script(S.hang(30))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url(model, "/v1/messages"), json={"messages": USER}, timeout=httpx.Timeout(5, read=0.5))
    assert len(model.requests()) == 1


def test_log_keeps_what_was_sent_but_no_secret(model: S.StubControl, tmp_path: Path) -> None:
    model.script(S.reply("ok"))
    assert httpx.head(url(model, "/")).status_code == 200
    gemini(model, [{"role": "user", "parts": [{"text": "hello"}]}])
    head, post = model.all_requests()
    assert head["method"] == "HEAD"
    assert post["headers"]["x-goog-api-key"] == "<redacted>" and post["query"] == {"alt": "sse", "key": "<redacted>"}
    assert post["body"] == {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    assert post["conversation"]["prompt"] == "hello"
    on_disk = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["n"] for e in on_disk] == [0, 1] and "secret" not in (tmp_path / "log.jsonl").read_text()


def test_bad_steps_are_refused_before_they_reach_the_stub(model: S.StubControl) -> None:
    with pytest.raises(S.ScriptError, match="exactly one of"):
        model.script({"reply": "a", "error": 400})
    with pytest.raises(S.ScriptError, match="unknown 'when' keys"):
        model.script({"reply": "a", "when": {"prompt": "x"}})
    with pytest.raises(S.ScriptError, match="refused|exactly one"):
        model._ask({"op": "load", "steps": [{"when": {}}]})


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        threading.Event().wait(0.01)


def test_stub_stops_when_its_stdin_closes_even_with_a_request_held(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="orch-stub-") as short:
        proc, control = start_stub(Path(short) / "c.sock", None, tmp_path / "stub.stderr")
        errors: list[BaseException] = []

        def held_request() -> None:
            try:
                httpx.post(f"http://127.0.0.1:{control.port}/v1/messages", json={"messages": USER}, timeout=30)
            except httpx.HTTPError as exc:
                errors.append(exc)

        control.script(S.hang(600))
        client = threading.Thread(target=held_request)
        client.start()
        wait_until(lambda: control.count() == 1, 10, "the held request to reach the stub")
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        client.join(timeout=10)
        assert not client.is_alive() and errors, "the held request should end when the stub stops"
        proc.stdout.close()
        assert not (Path(short) / "c.sock").exists()


def test_an_encoded_body_is_refused_out_loud(model: S.StubControl) -> None:
    r = httpx.post(url(model, "/v1/responses"), content=b"\x1f\x8b", headers={"content-encoding": "gzip"})
    assert r.status_code == 415 and "not supported" in r.json()["error"]["message"]
    assert model.all_requests()[-1]["unreadable"] is True


def test_limit_step_answers_with_each_providers_genuine_refusal(model: S.StubControl) -> None:
    model.script(S.limit("seven_day", resets_in=600, api="anthropic"), S.limit(resets_in=900, api="openai"),
                 S.limit("minute", retry_after=7, api="openai"), S.limit("daily", api="gemini"),
                 S.limit("minute", retry_after=2.5, api="gemini"))
    before = time.time()
    r = httpx.post(url(model, "/v1/messages"), json={"messages": USER})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    h = r.headers
    assert h["anthropic-ratelimit-unified-status"] == "rejected" and h["retry-after"] == "1"
    assert h["anthropic-ratelimit-unified-representative-claim"] == "seven_day"
    assert h["anthropic-ratelimit-unified-7d-status"] == "rejected"
    assert abs(int(h["anthropic-ratelimit-unified-reset"]) - (before + 600)) <= 2
    assert model.requests()[-1]["limit"]["headers"]["anthropic-ratelimit-unified-reset"] == h["anthropic-ratelimit-unified-reset"]

    prompt = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]
    r = httpx.post(url(model, "/v1/responses"), json={"input": prompt})
    error = r.json()["error"]
    assert r.status_code == 429 and error["type"] == "usage_limit_reached" and error["plan_type"] == "plus"
    assert abs(error["resets_at"] - (before + 900)) <= 2 and error["resets_in_seconds"] == 900
    r = httpx.post(url(model, "/v1/responses"), json={"input": prompt})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" and r.headers["retry-after"] == "7"

    daily = httpx.post(url(model, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"), json={"contents": []})
    minute = httpx.post(url(model, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"), json={"contents": []})
    for r, quota, delay in ((daily, "PerDay", "1s"), (minute, "PerMinute", "2.5s")):
        error = r.json()["error"]
        assert r.status_code == 429 and error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
        details = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
        assert quota in details["QuotaFailure"]["violations"][0]["quotaId"]
        assert details["RetryInfo"]["retryDelay"] == delay and f"Please retry in {delay}." in error["message"]
    assert model.pending() == []


def test_ratelimit_headers_ride_on_a_normal_answer(model: S.StubControl) -> None:
    model.script(S.near_limit(S.reply("fine", api="anthropic"), "seven_day", utilization=0.8, resets_in=3600),
                 S.near_limit(S.reply("fine", api="openai"), "five_hour", utilization=0.92))
    r = httpx.post(url(model, "/v1/messages"), json={"messages": USER})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert r.headers["anthropic-ratelimit-unified-status"] == "allowed_warning"
    assert r.headers["anthropic-ratelimit-unified-7d-utilization"] == "0.8"
    assert r.headers["anthropic-ratelimit-unified-7d-surpassed-threshold"] == "0.75"
    r = httpx.post(url(model, "/v1/responses"), json={"input": []})
    assert r.status_code == 200 and r.headers["x-codex-primary-used-percent"] == "92.0"
    assert r.headers["x-codex-primary-window-minutes"] == "300"
    with pytest.raises(S.ScriptError, match="goes with a reply"):
        S.near_limit(S.fail(500))
    with pytest.raises(S.ScriptError, match="window"):
        S.limit("fortnight")
