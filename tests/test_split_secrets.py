"""A secret cut in pieces leaves no piece in the raw files.

A key the model streams over several text deltas (or messages), or a CLI prints over two
stderr lines, shows whole in no single line: each CLI's delta shape and stderr are tried
with keys cut at every offset in two and at every pair of offsets in three, through a
stand-in CLI binary (ORCH_<CLI>_BIN) that orch launches and ingests like the real one,
and with the second half written only after the first was ingested.
"""

from __future__ import annotations

import json
import random
import string
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.lifecycle import LIVE_AGENT_STATES
from orchestrator.core.models import Agent, Permission, Role, Run, now
from orchestrator.runtime.ingest import sync_agent
from orchestrator.store.sessions import Workspace
from orchtest import kill_agents_left, run_orch, wait_until

RNG = random.Random(13)
ALNUM = string.ascii_letters + string.digits
SID = "5d0f6a40-0c1e-4c4e-9d1a-2f0e2b7c9a11"

# The stand-in CLI: prints out-N to stdout and err-N to stderr for N = 1, 2, …, and waits
# for go-N before step N (so a test can ingest between two steps).
FAKE_CLI = """#!{python}
import os, sys, time
feed = os.environ["ORCH_SPLIT_FEED"]
step = 1
while True:
    for name, stream in (("out", sys.stdout.buffer), ("err", sys.stderr.buffer)):
        path = os.path.join(feed, f"{{name}}-{{step}}")
        if os.path.exists(path):
            with open(path, "rb") as f:
                stream.write(f.read())
            stream.flush()
    step += 1
    if not any(os.path.exists(os.path.join(feed, f"{{n}}-{{step}}")) for n in ("out", "err")):
        break
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(feed, f"go-{{step}}")) and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def _delta(kind: str, field: str) -> Callable[[str], dict]:
    return lambda text: {"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                         "delta": {"type": kind, field: text}}, "session_id": SID,
                         "parent_tool_use_id": None, "uuid": "877b10b2-aee8-4d9e-8041-af26aa0c94f0"}


def _assistant(text: str) -> dict:
    return {"type": "assistant", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                             "content": [{"type": "text", "text": text}]},
            "session_id": SID, "parent_tool_use_id": None}


# name -> (CLI, one line's object for a piece of text, where the text sits in it)
SHAPES: dict[str, tuple[str, Callable[[str], dict], tuple[Any, ...]]] = {
    "claude-text-deltas": ("claude", _delta("text_delta", "text"), ("event", "delta", "text")),
    "claude-tool-input-deltas": ("claude", _delta("input_json_delta", "partial_json"),
                                 ("event", "delta", "partial_json")),
    "claude-messages": ("claude", _assistant, ("message", "content", 0, "text")),
    "qwen-text-deltas": ("qwen", _delta("text_delta", "text"), ("event", "delta", "text")),
    "qwen-messages": ("qwen", _assistant, ("message", "content", 0, "text")),
    "codex-messages": ("codex", lambda t: {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message",
                                                                                "text": t}}, ("item", "text")),
    "gemini-deltas": ("gemini", lambda t: {"type": "message", "timestamp": "2026-11-24T14:36:29.490Z",
                                           "role": "assistant", "content": t, "delta": True}, ("content",)),
    "opencode-text-parts": ("opencode", lambda t: {"type": "text", "timestamp": 1796217589771, "sessionID": "ses_1",
                                                   "part": {"id": "prt_1", "messageID": "msg_1", "sessionID": "ses_1",
                                                            "type": "text", "text": t,
                                                            "time": {"start": 1, "end": 2}}}, ("part", "text")),
}
STDERR = "stderr-lines"  # printed by gemini, whose parser keeps ordinary stderr lines out of the events

# Each CLI's first line, as it opens a run
OPENING = {
    "claude": {"type": "system", "subtype": "init", "session_id": SID, "model": "m", "cwd": "/w"},
    "qwen": {"type": "system", "subtype": "init", "session_id": SID, "model": "m", "cwd": "/w"},
    "codex": {"type": "thread.started", "thread_id": SID},
    "gemini": {"type": "init", "timestamp": "2026-11-24T14:36:29.463Z", "session_id": SID, "model": "auto"},
    "opencode": {"type": "step_start", "timestamp": 1796217589771, "sessionID": "ses_1",
                 "part": {"id": "prt_0", "messageID": "msg_1", "sessionID": "ses_1", "type": "step-start"}},
}


def _key(kind: str) -> str:
    if kind == "anthropic":
        return "sk-ant-api03-" + "".join(RNG.choice(ALNUM) for _ in range(32))
    if kind == "github":
        return "ghp_" + "".join(RNG.choice(ALNUM) for _ in range(36))
    return "AKIA" + "".join(RNG.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _texts(n: int, pieces: list[str], stderr: bool) -> list[str]:
    """The pieces of a key as the model (or the CLI) writes them, with ordinary words around."""
    head = f'try «{n}» → "' if stderr else f'try «{n}»\n→ "'
    texts = list(pieces)
    texts[0] = head + texts[0]
    texts[-1] += '" done. '
    return texts


def _every_cut() -> list[tuple[str, list[str]]]:
    """A fresh key for every offset of a two-piece cut, and every pair of offsets of a three-piece one."""
    cuts = []
    for k in range(1, len(_key("anthropic"))):
        key = _key("anthropic")
        cuts.append((key, [key[:k], key[k:]]))
    for i in range(1, 19):
        for j in range(i + 1, 20):
            key = _key("aws")
            cuts.append((key, [key[:i], key[i:j], key[j:]]))
    return cuts


def _line(shape: str, text: str) -> str:
    return json.dumps(SHAPES[shape][1](text), ensure_ascii=False, separators=(",", ":"))


def _masked(stream_text: str, keys: list[str]) -> str:
    for key in keys:
        stream_text = stream_text.replace(key, "*" * len(key))
    return stream_text


def _joined_text(lines: list[str], shape: str) -> str:
    """What a reader gets by joining the pieces of text a raw stream's lines hold (stdout: each line JSON)."""
    if shape == STDERR:
        return "".join(lines)
    opening, *rest = lines
    assert json.loads(opening) == OPENING[_cli(shape)]
    out = []
    for line in rest:
        value: Any = json.loads(line)
        for step in SHAPES[shape][2]:
            value = value[step]
        out.append(value)
    return "".join(out)


@pytest.fixture
def fake_cli(workspace_dir, tmp_path, monkeypatch):
    """Every CLI's binary is the stand-in; returns the folder it reads its lines from."""
    exe = tmp_path / "bin" / "cli"
    exe.parent.mkdir()
    exe.write_text(FAKE_CLI.format(python=sys.executable))
    exe.chmod(0o755)
    for cli in ("claude", "codex", "gemini", "opencode", "qwen"):
        monkeypatch.setenv(f"ORCH_{cli.upper()}_BIN", str(exe))
    feed = tmp_path / "feed"
    feed.mkdir()
    monkeypatch.setenv("ORCH_SPLIT_FEED", str(feed))
    yield feed
    for n in range(1, 10):
        (feed / f"go-{n}").touch()  # a stand-in still waiting ends now
    kill_agents_left(workspace_dir / ".orch")


def _cli(shape: str) -> str:
    return "gemini" if shape == STDERR else SHAPES[shape][0]


def _write_steps(feed: Path, shape: str, steps: list[list[str]]) -> list[int]:
    """The stand-in's steps, after its opening line; the size of the raw file (texts) after each."""
    opening = json.dumps(OPENING[_cli(shape)]) + "\n"
    name = "err" if shape == STDERR else "out"
    sizes, total = [], 0
    for n, texts in enumerate(steps, 1):
        lines = texts if shape == STDERR else [_line(shape, t) for t in texts]
        data = "".join(line + "\n" for line in lines)
        if n == 1:
            if shape == STDERR:
                (feed / "out-1").write_text(opening)
            else:
                data = opening + data
        (feed / f"{name}-{n}").write_bytes(data.encode())
        total += len(data.encode())
        sizes.append(total)
    return sizes


def _launch(shape: str) -> str:
    return run_orch("launch", "--cli", _cli(shape), "--role", "worker", "--prompt", "hi",
                    check=True).stdout.split()[-1]


def _settled(store, agent_id: str) -> bool:
    return sync_agent(store, agent_id)[1].state not in LIVE_AGENT_STATES


def _assert_no_key_anywhere(workspace_dir: Path, agent_id: str, shape: str, keys: list[str], stream_text: str) -> None:
    store = Workspace().resolve(None)
    raw = store.agent_dir(agent_id) / ("stderr.log" if shape == STDERR else "stdout.jsonl")
    # no piece left, and nothing else touched
    assert _joined_text(raw.read_text().splitlines(), shape) == _masked(stream_text, keys)
    shown = run_orch("logs", agent_id, "--raw", check=True).stdout.splitlines()
    stderr = [line.removeprefix("[stderr] ") for line in shown if line.startswith("[stderr] ")]
    stdout = [line for line in shown if not line.startswith("[stderr] ")]
    joined = _joined_text(stderr if shape == STDERR else stdout, shape)
    leaks = [f"orch logs --raw: {key}" for key in keys if key in joined]
    for path in (workspace_dir / ".orch").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path.name}: {key}" for key in keys if key.encode() in data]
    assert leaks == []


@pytest.mark.parametrize("shape", [*SHAPES, STDERR])
def test_a_key_cut_at_every_offset_leaves_no_piece(fake_cli, workspace_dir, shape):
    cuts = _every_cut()
    texts = [t for n, (_, pieces) in enumerate(cuts) for t in _texts(n, pieces, shape == STDERR)]
    _write_steps(fake_cli, shape, [texts])
    agent_id = _launch(shape)
    store = Workspace().resolve(None)
    wait_until(lambda: _settled(store, agent_id), timeout=120, what="the run to end")
    _assert_no_key_anywhere(workspace_dir, agent_id, shape, [key for key, _ in cuts], "".join(texts))


@pytest.mark.parametrize("shape", ["claude-text-deltas", "gemini-deltas", "codex-messages", "opencode-text-parts",
                                   STDERR])
def test_a_key_whose_end_is_written_after_its_start_was_ingested(fake_cli, workspace_dir, shape):
    stderr = shape == STDERR
    first, second = _key("anthropic"), _key("github")
    a, b1, b2 = 5, 11, 30
    one, two = _texts(1, [first[:a], first[a:]], stderr), _texts(2, [second[:b1], second[b1:b2], second[b2:]], stderr)
    # Each ingest sees a key's start without its end; the second key's middle waits two ingests.
    steps = [[one[0]], [one[1], two[0]], [two[1]], [two[2]]]
    sizes = _write_steps(fake_cli, shape, steps)
    agent_id = _launch(shape)
    store = Workspace().resolve(None)
    raw = store.agent_dir(agent_id) / ("stderr.log" if stderr else "stdout.jsonl")
    offset = "stderr_offset" if stderr else "stdout_offset"
    for n, size in enumerate(sizes[:-1], 1):
        wait_until(lambda: raw.exists() and raw.stat().st_size >= size, what=f"step {n} written")
        agent = sync_agent(store, agent_id)[1]
        # This piece was ingested before the next was written: read to its end, or held
        # back from a line of this step (an unfinished key starts there), never earlier.
        assert (sizes[n - 2] if n > 1 else 0) <= getattr(agent.ingest, offset) <= size
        (fake_cli / f"go-{n + 1}").touch()
    wait_until(lambda: _settled(store, agent_id), timeout=120, what="the run to end")
    _assert_no_key_anywhere(workspace_dir, agent_id, shape, [first, second], "".join(t for s in steps for t in s))


# --------------------------------------------------------------------------- any cut, any batches


KEY_SHAPES = {"sk-ant-api03-": (ALNUM, 24), "ghp_": (ALNUM, 36), "AKIA": (string.ascii_uppercase + string.digits, 16)}


@st.composite
def _cut(draw) -> tuple[str, list[int]]:
    """A key the redaction shapes know, and one to five offsets to cut it at."""
    prefix = draw(st.sampled_from(sorted(KEY_SHAPES)))
    alphabet, size = KEY_SHAPES[prefix]
    key = prefix + draw(st.text(alphabet=alphabet, min_size=size, max_size=size))
    return key, draw(st.lists(st.integers(1, len(key) - 1), min_size=1, max_size=5, unique=True))


def _agent_of_its_own(workspace_dir: Path, cli: str) -> tuple[Any, str]:
    """A new session holding one live agent of `cli` (its run has no process to end it)."""
    store = Workspace().create(workspace_dir)
    run = Run(n=1, argv=[cli], cwd=str(workspace_dir), permission=Permission.EDIT, started_at=now())
    agent = Agent(id="worker-1", session=store.id, role=Role.WORKER, cli=cli, permission=Permission.EDIT,
                  cwd=str(workspace_dir), runs=[run])
    store.agent_dir(agent.id).mkdir(parents=True)
    store.write_agent(agent)
    return store, agent.id


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cut=_cut(), stderr=st.booleans(), ascii_only=st.booleans(),
       around=st.text(alphabet=' "\\«»é→.:\t\n\U0001F600', max_size=6), lead=st.integers(0, 9000), data=st.data())
def test_any_cut_ingested_in_any_batches_is_masked_byte_for_byte(workspace_dir, cut, stderr, ascii_only, around,
                                                                  lead, data):
    key, offsets = cut
    if stderr:  # a line per piece; and a backslash before a secret goes with it (the start of a JSON escape)
        around = around.replace("\n", " ").replace("\\", " ")
    bounds = [0, *sorted(offsets), len(key)]
    pieces = [key[s:e] for s, e in zip(bounds, bounds[1:])]
    pieces[0], pieces[-1] = around + pieces[0], pieces[-1] + around
    pieces[0] = ('a "long" message é\n ' * (lead // 20 + 1))[:lead].replace("\n", " " if stderr else "\n") + pieces[0]
    texts = ["ordinary words ", *pieces, " more words"]
    lines = [t.encode() if stderr else json.dumps({"type": "message", "role": "assistant", "content": t,
                                                   "delta": True}, ensure_ascii=ascii_only).encode()
             for t in texts]
    # The lines arrive in batches, each ingested before the next is written.
    cuts = sorted(data.draw(st.sets(st.integers(1, len(lines) - 1), max_size=len(lines) - 1)))
    store, agent_id = _agent_of_its_own(workspace_dir, "gemini")
    path = store.agent_dir(agent_id) / ("stderr.log" if stderr else "stdout.jsonl")
    for batch in (lines[s:e] for s, e in zip([0, *cuts], [*cuts, len(lines)])):
        with open(path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in batch))
        sync_agent(store, agent_id)
    after = path.read_bytes()
    assert len(after) == sum(len(line) + 1 for line in lines)
    joined = [line.decode() if stderr else json.loads(line)["content"] for line in after.splitlines()]
    assert "".join(joined) == _masked("".join(texts), [key])


def test_a_one_letter_piece_of_a_secret_never_masks_a_json_key(workspace_dir):
    # Found by the test above: the piece "c" of a key cut at its 24th character, ingested a
    # line at a time, was looked for at the start of every JSON string — `"content"` included.
    key = "ghp_00000000000000000000c000000000000000"
    bounds = [0, 1, 2, 3, 24, 25, len(key)]
    texts = ["ordinary words ", *[key[s:e] for s, e in zip(bounds, bounds[1:])], " more words"]
    store, agent_id = _agent_of_its_own(workspace_dir, "gemini")
    path = store.agent_dir(agent_id) / "stdout.jsonl"
    for t in texts:
        with open(path, "ab") as f:
            f.write(json.dumps({"type": "message", "role": "assistant", "content": t, "delta": True}).encode() + b"\n")
        sync_agent(store, agent_id)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"type", "role", "content", "delta"} for r in rows)
    assert "".join(r["content"] for r in rows) == _masked("".join(texts), [key])
