"""The model stub's OpenAI Chat Completions side (opencode, Qwen Code, Copilot), without any CLI.

Like test_stub.py: the stub runs as a real process on 127.0.0.1 and is spoken to over
HTTP; no namespace is needed, since nothing here reaches beyond loopback.
"""

from __future__ import annotations

import json

import httpx

from . import script as S
from .stub import CACHED_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS
from .test_stub import model, url  # noqa: F401  (the fixture)

OPENCODE_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("bash", "write", "read")]
QWEN_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("read_file", "glob")]
COPILOT_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("bash", "view", "create")]


def chat(model: S.StubControl, messages: list, tools: list = OPENCODE_TOOLS, stream: bool = True):  # noqa: F811
    r = httpx.post(url(model, "/v1/chat/completions"), json={"model": "stub-model", "stream": stream,
                                                             "messages": messages, "tools": tools},
                   headers={"authorization": "Bearer sk-secret"})
    return r


def chunks(r: httpx.Response) -> list:
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    blocks = [b for b in r.text.strip().split("\n\n")]
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b[len("data: "):]) for b in blocks[:-1]]


def test_text_then_tool_call_in_opencode_words(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.shell("echo hi", say="I will run it."))
    got = chunks(chat(model, [{"role": "system", "content": "be good"}, {"role": "user", "content": "go"}]))
    deltas = [c["choices"][0]["delta"] for c in got if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "I will run it."
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "bash" and calls[0]["id"].startswith("call_")
    args = json.loads("".join(c["function"]["arguments"] for c in calls))  # two pieces, joined by the CLI
    assert args == {"command": "echo hi", "description": "Run echo hi"}
    assert [c["choices"][0]["finish_reason"] for c in got if c["choices"]][-1] == "tool_calls"
    assert got[-1]["choices"] == [] and got[-1]["usage"]["total_tokens"] == INPUT_TOKENS + OUTPUT_TOKENS
    (request,) = model.requests("chat")
    assert request["conversation"]["history"] == 1 and request["conversation"]["prompt"] == "go"
    assert request["headers"]["authorization"] == "<redacted>"


def test_qwen_words_are_told_from_the_tools_offered(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.write("/w/a.txt", "x"), S.shell("ls"))
    write = [c for c in chunks(chat(model, [{"role": "user", "content": "go"}], QWEN_TOOLS)) if c["choices"]]
    shell = [c for c in chunks(chat(model, [{"role": "user", "content": "go"}], QWEN_TOOLS)) if c["choices"]]
    names = [d["tool_calls"][0]["function"].get("name") for d in (c["choices"][0]["delta"] for c in write + shell)
             if "tool_calls" in d]
    assert [n for n in names if n] == ["write_file", "run_shell_command"]


def test_tool_result_is_the_last_input_and_history_counts_turns(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.reply("saw {history}: {tool_result}", last_input="tool_result"))
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "go"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "The user rejected\npermission"}]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(chat(model, messages)) if c["choices"])
    assert text == "saw 3: The user rejected permission"


def test_title_requests_do_not_use_the_script(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.reply("the real answer"))
    titled = chat(model, [{"role": "system", "content": "You are a title generator. You output ONLY a thread title."},
                          {"role": "user", "content": "go"}])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(titled) if c["choices"]) == "Stub session"
    plain = chat(model, [{"role": "user", "content": "go"}], stream=False)
    assert plain.json()["choices"][0]["message"]["content"] == "Stub session"
    assert model.pending() != [] and model.requests("chat") == []  # neither was a scripted turn
    answer = chunks(chat(model, [{"role": "user", "content": "go"}]))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in answer if c["choices"]) == "the real answer"


def test_errors_use_the_openai_error_shape(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.fail(400, "no thanks"))
    r = chat(model, [{"role": "user", "content": "go"}])
    assert r.status_code == 400 and r.json()["error"]["message"] == "no thanks"


def test_a_resumed_conversation_is_matched_on_its_latest_tool_result(model: S.StubControl) -> None:  # noqa: F811
    # What a resumed reviewer sends: its first turn (a read_file call and the old content),
    # then a new prompt, then the new content. Only the newest tool result counts.
    model.script(
        S.tool("read_file", {"file_path": "/w/slug.py"}, prompt_contains="verify", last_input="prompt"),
        S.reply("still old", last_input="tool_result", tool_result_contains="text.split()"),
        S.reply("fixed", last_input="tool_result", tool_result_contains="text.lower()"),
    )

    def call(id_: str) -> dict:
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": id_, "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]}

    first = [{"role": "user", "content": "review"}, call("c1"),
             {"role": "tool", "tool_call_id": "c1", "content": "text.split()"},
             {"role": "assistant", "content": "changes requested"}, {"role": "user", "content": "verify B-1"}]
    deltas = [c["choices"][0]["delta"] for c in chunks(chat(model, first, QWEN_TOOLS)) if c["choices"]]
    functions = [d["tool_calls"][0]["function"] for d in deltas if "tool_calls" in d]
    (named,) = [f for f in functions if "name" in f]
    assert named["name"] == "read_file"  # the CLI's own name, whatever its vocabulary
    assert json.loads("".join(f["arguments"] for f in functions)) == {"file_path": "/w/slug.py"}

    again = first + [call("c2"), {"role": "tool", "tool_call_id": "c2", "content": "text.lower().split()"}]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(chat(model, again, QWEN_TOOLS))
                   if c["choices"])
    assert text == "fixed"
    assert [r["conversation"]["history"] for r in model.requests("chat")] == [5, 7]
    assert [s["reply"] for s in model.pending()] == ["still old"]


def _call(r: httpx.Response) -> tuple[str, dict]:
    deltas = [c["choices"][0]["delta"] for c in chunks(r) if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    return calls[0]["function"]["name"], json.loads("".join(c["function"]["arguments"] for c in calls))


def test_copilot_words_are_told_from_the_tools_offered(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.write("/w/a.txt", "x"), S.shell("ls"))
    assert _call(chat(model, [{"role": "user", "content": "go"}], COPILOT_TOOLS)) == (
        "create", {"path": "/w/a.txt", "file_text": "x"})
    assert _call(chat(model, [{"role": "user", "content": "go"}], COPILOT_TOOLS))[0] == "bash"


def test_a_later_turn_reports_cached_prompt_tokens(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.reply("one"), S.reply("two"))
    first = chunks(chat(model, [{"role": "user", "content": "go"}]))[-1]["usage"]
    later = chunks(chat(model, [{"role": "user", "content": "go"}, {"role": "assistant", "content": "one"},
                                {"role": "user", "content": "more"}]))[-1]["usage"]
    assert "prompt_tokens_details" not in first
    assert later["prompt_tokens_details"] == {"cached_tokens": CACHED_TOKENS} and later["prompt_tokens"] == INPUT_TOKENS


def test_limits_in_openai_and_openrouter_words(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.limit("minute", resets_in=20, retry_after=1), S.limit("billing"), S.limit("credits"),
                 S.limit("five_hour"))
    rate = chat(model, [{"role": "user", "content": "go"}])
    assert rate.status_code == 429 and rate.headers["retry-after"] == "1"
    assert rate.json()["error"]["code"] == "rate_limit_exceeded"
    assert rate.json()["error"]["message"].endswith("Please try again in 20s.")  # the window, not the retry
    billing = chat(model, [{"role": "user", "content": "go"}])
    assert billing.status_code == 429 and "retry-after" not in billing.headers
    assert billing.json()["error"]["code"] == "insufficient_quota"
    credits = chat(model, [{"role": "user", "content": "go"}])
    assert credits.status_code == 402 and credits.json()["error"]["message"].startswith("Insufficient credits.")
    wrong = chat(model, [{"role": "user", "content": "go"}])  # a window Chat Completions has not: the script's fault
    assert wrong.status_code == 500 and "minute" in wrong.json()["error"]["message"]


def test_an_error_step_sends_the_providers_own_body_and_headers(model: S.StubControl) -> None:  # noqa: F811
    model.script(S.unauthorized(), S.fail(401, body=S.ANTHROPIC_BAD_KEY, headers={"x-request-id": "req_1"}))
    first = chat(model, [{"role": "user", "content": "go"}])
    assert first.status_code == 401 and first.json() == S.OPENAI_BAD_KEY
    second = chat(model, [{"role": "user", "content": "go"}])
    assert second.json()["error"]["message"] == "invalid x-api-key" and second.headers["x-request-id"] == "req_1"
    for bad in ({"reply": "x", "body": {}}, {"error": 401, "body": "text"}, {"error": 401, "headers": {"a": 1}}):
        try:
            S.validate_step(bad)
        except S.ScriptError:
            continue
        raise AssertionError(f"the stub accepted {bad}")
