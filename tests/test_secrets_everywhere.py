"""No piece of a key anywhere orch writes or serves, wherever the key was cut.

Keys of the redactor's recognised forms — `sk-proj-…`, `ghp_…`, `AKIA…` and a `Bearer`
token — are cut at every offset: over two streamed deltas (or messages) of each CLI's
shape, over two stderr lines, and over two runs of one agent (the first half is the last
thing one run printed, the second half the first thing the next run printed). A stand-in
binary is each CLI: orch launches (and resumes) it as that CLI, and the halves are
ingested apart — between the two steps of a run, or by the run's end — while a real
`orch serve` streams the session to a client connected from the start. Then every byte
under the workspace's `.orch` and everything orch serves is searched for the key and for
every fragment of it FRAGMENT characters long: `orch status --json`, `orch logs` (plain,
--json, --raw), `orch wait --json` (also run part-way), `orch report`, the dashboard's
event pages, agent cards and agent pages, and its SSE stream, live and replayed.

Before orch masked secrets ahead of building events, the first half of a key cut over two
stderr lines or deltas sat in error and text events (events.jsonl, meta.json, the digest,
the dashboard), and a key cut between two runs was masked nowhere, raw files included.
"""

from __future__ import annotations

import json
import random
import re
import string
import sys
import threading
from pathlib import Path
from typing import Callable

import httpx
import pytest

from orchestrator.core.lifecycle import LIVE_AGENT_STATES
from orchestrator.runtime.ingest import sync_agent
from orchestrator.runtime.ingest.split import HOLD_LIMIT
from orchestrator.runtime.workers import resume_agent
from orchestrator.store.sessions import Workspace
from orchtest import kill_agents_left, run_orch, wait_until
from test_server_support import start_server
from test_split_secrets import FAKE_CLI, OPENING, SHAPES, SID

FRAGMENT = 8  # no run of this many characters of a key may show anywhere
RNG = random.Random(23)
ALNUM = string.ascii_letters + string.digits


def _planted(kind: str) -> tuple[str, str]:
    """(what the model writes, the secret in it) for a fresh key of a recognised form."""
    if kind == "openai":
        key = "sk-proj-" + "".join(RNG.choice(ALNUM) for _ in range(40))
        return key, key
    if kind == "github":
        key = "ghp_" + "".join(RNG.choice(ALNUM) for _ in range(36))
        return key, key
    if kind == "aws":
        key = "AKIA" + "".join(RNG.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        return key, key
    token = "".join(RNG.choice(ALNUM) for _ in range(32))
    return "Bearer " + token, token


KINDS = ("openai", "github", "aws", "bearer")


def every_cut(kinds=KINDS) -> list[tuple[str, str, int]]:
    """(planted text, its secret, offset) for every offset of a fresh key of each kind."""
    cuts = []
    for kind in kinds:
        length = len(_planted(kind)[0])
        for k in range(1, length):
            text, secret = _planted(kind)
            cuts.append((text, secret, k))
    return cuts


def halves(cuts: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
    """Each cut's (text ending in the first half, text starting with the second half), with words around."""
    return [(f" then key {n}: {text[:k]}", f"{text[k:]} was it. ") for n, (text, _, k) in enumerate(cuts)]


# --------------------------------------------------------------------------- looking for pieces

_KEYISH = re.compile(rb"[A-Za-z0-9_\-]{%d,}" % FRAGMENT)


def fragments(secrets: list[str]) -> set[bytes]:
    """Every FRAGMENT-character piece of every secret (a longer piece holds one of them)."""
    return {s[i:i + FRAGMENT].encode() for s in secrets for i in range(len(s) - FRAGMENT + 1)}


def leaks(blob: bytes, pieces: set[bytes], context: int = 0) -> list[bytes]:
    """The pieces found in blob (runs of key characters are checked window by window), with
    `context` bytes around each."""
    found = []
    for m in _KEYISH.finditer(blob):
        run = m.group()
        for i in range(len(run) - FRAGMENT + 1):
            if run[i:i + FRAGMENT] in pieces:
                at = m.start() + i
                found.append(blob[max(0, at - context):at + FRAGMENT + context])
    return found


def test_the_leak_search_finds_a_fragment_and_nothing_else():
    secret = "ghp_" + "A1b2C3d4E5" * 4
    pieces = fragments([secret])
    assert leaks(b'{"text":"say ' + secret[9:19].encode() + b' now"}', pieces) == [secret[9:17].encode(),
                                                                                  secret[10:18].encode(),
                                                                                  secret[11:19].encode()]
    assert leaks(b"ordinary words, " + secret[:7].encode() + b" and ****************", pieces) == []


class Served:
    """Everything orch serves about a session, collected as it runs: command outputs, pages, streams."""

    def __init__(self, workspace_dir: Path, session_id: str):
        self.workspace_dir = workspace_dir
        self.session_id = session_id
        self.blobs: dict[str, bytes] = {}
        self.server = start_server(session=session_id)
        self.live = bytearray()
        self._client = httpx.Client(timeout=None)
        self._reader = threading.Thread(target=self._read_stream, daemon=True)
        self._reader.start()
        wait_until(lambda: b"event: ready" in self.live, 30, what="the live stream to be ready")

    def _read_stream(self) -> None:
        url = self.server.api(f"/api/sessions/{self.session_id}/stream")
        try:
            with self._client.stream("GET", url, params={"from": "0"}) as response:
                for chunk in response.iter_bytes():
                    self.live += chunk
        except httpx.HTTPError:
            pass  # the server stopped, or the client was closed: the capture ends

    def command(self, *args: str) -> None:
        proc = run_orch(*args, check=True)
        self.blobs[f"orch {' '.join(args)} #{len(self.blobs)}"] = (proc.stdout + proc.stderr).encode()

    def collect(self, agent_ids: list[str]) -> None:
        """Every command and page, once the agents have settled."""
        for args in (("status", "--json"), ("wait", "--json", "--timeout", "0"), ("report",), ("list", "--json")):
            self.command(*args)
        for agent_id in agent_ids:
            for args in (("logs", agent_id), ("logs", agent_id, "--json"), ("logs", agent_id, "--raw"),
                         ("status", agent_id, "--json")):
                self.command(*args)
        sid = self.session_id
        paths = [f"/api/sessions/{sid}", f"/api/sessions/{sid}/agents", f"/api/sessions/{sid}/reports"]
        for agent_id in agent_ids:
            paths += [f"/api/sessions/{sid}/agents/{agent_id}", f"/api/sessions/{sid}/agents/{agent_id}/events?from=0"]
        for path in paths:
            self.blobs[f"GET {path}"] = self.server.get(path).content
        page, start = b"", 0
        while True:  # the whole log, page by page
            got = self.server.get(f"/api/sessions/{sid}/events", params={"from": str(start), "limit": "5000"}).json()
            page += json.dumps(got, ensure_ascii=False).encode()
            if not got["events"] or got["next"] == start:
                break
            start = got["next"]
        self.blobs["GET events pages"] = page
        replay = bytearray()
        with httpx.stream("GET", self.server.api(f"/api/sessions/{sid}/stream"), params={"from": "0"},
                          timeout=30) as response:
            for chunk in response.iter_bytes():
                replay += chunk
                if b"event: ready" in replay:
                    break
        self.blobs["SSE replay"] = bytes(replay)

    def close(self) -> None:
        self.server.stop()
        self._client.close()
        self._reader.join(timeout=10)
        self.blobs["SSE live"] = bytes(self.live)


def assert_no_piece(workspace_dir: Path, served: Served, secrets: list[str]) -> None:
    pieces = fragments(secrets)
    found: dict[str, list[str]] = {}
    for path in (workspace_dir / ".orch").rglob("*"):
        if path.is_file():
            hit = leaks(path.read_bytes(), pieces, context=60)
            if hit:
                found[str(path.relative_to(workspace_dir))] = [h.decode(errors="replace") for h in hit[:3]]
    for where, blob in served.blobs.items():
        hit = leaks(blob, pieces, context=60)
        if hit:
            found[where] = [h.decode(errors="replace") for h in hit[:3]]
    assert not found, "\n".join(f"{where}: {hits}" for where, hits in found.items())


# --------------------------------------------------------------------------- the shapes

STDERR = "gemini-stderr-retries"  # gemini makes a status event of every "Attempt N failed" line
SHAPE_NAMES = ["claude-text-deltas", "claude-messages", "codex-messages", "gemini-deltas", "opencode-text-parts",
               "qwen-text-deltas", STDERR]


def _cli(shape: str) -> str:
    return "gemini" if shape == STDERR else SHAPES[shape][0]


def _out_line(shape: str, text: str) -> str:
    return json.dumps(SHAPES[shape][1](text), ensure_ascii=False, separators=(",", ":"))


def _stderr_lines(first: str, second: str) -> list[str]:
    """A key cut over two stderr lines: the first a retry gemini reports, the second its continuation."""
    return [f"{second}", f"Attempt 2 failed:{first}"]


@pytest.fixture
def stand_in(workspace_dir, tmp_path, monkeypatch):
    """Every CLI's binary is the stand-in that prints a feed's steps, waiting for go-N before step N."""
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
    for n in range(1, 1000):
        (feed / f"go-{n}").touch()
    kill_agents_left(workspace_dir / ".orch")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a guard against a hang, not a timing assertion (~150 steps, each ingested)
@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_a_key_cut_at_every_offset_between_two_ingests_leaves_no_piece_written_or_served(
        stand_in, workspace_dir, shape):
    cuts = every_cut()
    pairs = halves(cuts)
    # Step n: the second half of key n-1, words, the first half of key n. Each step is
    # ingested (by this test and by the dashboard's feed) before the next is printed.
    steps: list[list[str]] = []
    for n in range(len(pairs) + 1):
        second = pairs[n - 1][1] if n else "hello."
        first = pairs[n][0] if n < len(pairs) else " bye."
        if shape == STDERR:
            steps.append(_stderr_lines(first, second))
        else:
            steps.append([_out_line(shape, second), _out_line(shape, first)])
    raw_name = "stderr.log" if shape == STDERR else "stdout.jsonl"
    sizes, total = [], 0
    for n, lines in enumerate(steps, 1):
        data = "".join(line + "\n" for line in lines)
        if n == 1:
            opening = json.dumps(OPENING[_cli(shape)]) + "\n"
            if shape == STDERR:
                (stand_in / "out-1").write_text(opening)
            else:
                data = opening + data
        (stand_in / f"{'err' if shape == STDERR else 'out'}-{n}").write_text(data)
        total += len(data.encode())
        sizes.append(total)
    store = Workspace().create(workspace_dir)
    served = Served(workspace_dir, store.id)
    try:
        agent_id = run_orch("launch", "--cli", _cli(shape), "--role", "worker", "--prompt", "hi",
                            check=True).stdout.split()[-1]
        raw = store.agent_dir(agent_id) / raw_name
        for n, size in enumerate(sizes[:-1], 1):
            wait_until(lambda: raw.exists() and raw.stat().st_size >= size, what=f"step {n} written")
            sync_agent(store, agent_id)
            if n % 40 == 0:  # the conductor looking in part-way
                served.command("wait", "--json", "--timeout", "0")
                served.command("status", "--json")
            (stand_in / f"go-{n + 1}").touch()
        wait_until(lambda: sync_agent(store, agent_id)[1].state not in LIVE_AGENT_STATES, 120, what="the run to end")
        served.collect([agent_id])
    finally:
        served.close()
    assert raw.stat().st_size == sizes[-1]  # every step printed and kept: masking moves no byte
    per_line = {"claude-messages": '"kind":"text"', "codex-messages": '"kind":"text"',
                "opencode-text-parts": '"kind":"text"', STDERR: '"status":"retrying"'}
    if shape in per_line:  # an event of every line: each half was there to be built into one
        assert (store.path / "events.jsonl").read_text().count(per_line[shape]) >= len(cuts)
    assert_no_piece(workspace_dir, served, [secret for _, secret, _ in cuts])


# --------------------------------------------------------------------------- two runs

RUNS_CLI = """#!/bin/sh
# One run per call: prints out-N to stdout and err-N to stderr, N counting the calls.
feed="$ORCH_SPLIT_FEED"
n=$(( $(cat "$feed/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$feed/count"
[ -f "$feed/out-$n" ] && cat "$feed/out-$n"
[ -f "$feed/err-$n" ] && cat "$feed/err-$n" >&2
exit 0
"""


def _claude_run(text_pieces: list[str]) -> str:
    """A whole claude run as it streams: the init, each piece as a delta, the message, the result."""
    whole = "".join(text_pieces)
    lines = [OPENING["claude"]]
    lines += [SHAPES["claude-text-deltas"][1](piece) for piece in text_pieces]
    lines.append({"type": "assistant", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                   "model": "m", "content": [{"type": "text", "text": whole}]},
                  "session_id": SID, "parent_tool_use_id": None})
    lines.append({"type": "result", "subtype": "success", "is_error": False, "result": whole, "session_id": SID,
                  "num_turns": 1, "total_cost_usd": 0.001, "usage": {"input_tokens": 3, "output_tokens": 5}})
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


RUN_SHAPES: dict[str, tuple[str, Callable[[str, str], tuple[str, str]]]] = {
    # name -> (CLI, (second half of the previous key, first half of the next) -> (stdout, stderr))
    "claude-whole-runs": ("claude", lambda second, first: (_claude_run([second, " and ", first]), "")),
    "claude-stderr": ("claude", lambda second, first: (json.dumps(OPENING["claude"]) + "\n",
                                                        f"{second}\nError:{first}\n")),
    "codex-messages": ("codex", lambda second, first: (
        json.dumps(OPENING["codex"]) + "\n" + "".join(_out_line("codex-messages", t) + "\n" for t in (second, first)),
        "")),
    "gemini-deltas": ("gemini", lambda second, first: (
        json.dumps(OPENING["gemini"]) + "\n" + "".join(_out_line("gemini-deltas", t) + "\n" for t in (second, first)),
        "")),
    "opencode-text-parts": ("opencode", lambda second, first: (
        json.dumps(OPENING["opencode"]) + "\n"
        + "".join(_out_line("opencode-text-parts", t) + "\n" for t in (second, first)), "")),
}


@pytest.fixture
def runs_stand_in(workspace_dir, tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "cli"
    exe.parent.mkdir()
    exe.write_text(RUNS_CLI)
    exe.chmod(0o755)
    for cli in ("claude", "codex", "gemini", "opencode", "qwen"):
        monkeypatch.setenv(f"ORCH_{cli.upper()}_BIN", str(exe))
    feed = tmp_path / "feed"
    feed.mkdir()
    monkeypatch.setenv("ORCH_SPLIT_FEED", str(feed))
    yield feed
    kill_agents_left(workspace_dir / ".orch")


def _every_third(cuts: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return [cut for i, cut in enumerate(cuts) if i % 3 == 0]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a guard against a hang (up to ~150 runs of the stand-in)
@pytest.mark.parametrize("shape", list(RUN_SHAPES))
def test_a_key_cut_between_two_runs_of_one_agent_leaves_no_piece_written_or_served(
        runs_stand_in, workspace_dir, shape):
    cli, make = RUN_SHAPES[shape]
    # Every offset for claude (whole runs with their echoes, and stderr); every third for the others.
    cuts = every_cut() if cli == "claude" else _every_third(every_cut())
    pairs = halves(cuts)
    for n in range(len(pairs) + 1):  # run n+1: the second half of key n-1, words, the first half of key n
        out, err = make(pairs[n - 1][1] if n else "hello.", pairs[n][0] if n < len(pairs) else " bye.")
        (runs_stand_in / f"out-{n + 1}").write_text(out)
        (runs_stand_in / f"err-{n + 1}").write_text(err)
    store = Workspace().create(workspace_dir)
    served = Served(workspace_dir, store.id)
    try:
        agent_id = run_orch("launch", "--cli", cli, "--role", "worker", "--prompt", "hi",
                            check=True).stdout.split()[-1]
        for n in range(len(pairs) + 1):
            if n:
                resume_agent(store, agent_id, f"go on ({n})")
            wait_until(lambda: sync_agent(store, agent_id)[1].state not in LIVE_AGENT_STATES, 60,
                       what=f"run {n + 1} to end")
            if n % 40 == 39:
                served.command("wait", "--json", "--timeout", "0")
        served.collect([agent_id])
    finally:
        served.close()
    agent = store.read_agent(agent_id)
    assert len(agent.runs) == len(pairs) + 1
    assert_no_piece(workspace_dir, served, [secret for _, secret, _ in cuts])


# --------------------------------------------------------------------------- the hold, step by step


def _assistant_line(text: str) -> bytes:
    return json.dumps(SHAPES["claude-messages"][1](text)).encode() + b"\n"


def _texts(store, agent_id: str) -> list[str]:
    return [e.data["text"] for _, e in store.scan_events(agent=agent_id) if e.data.get("kind") == "text"]


def test_a_line_where_a_key_starts_waits_for_its_rest_or_is_released_masked(workspace_dir):
    from test_split_secrets import _agent_of_its_own

    store, agent_id = _agent_of_its_own(workspace_dir, "claude")
    raw = store.agent_dir(agent_id) / "stdout.jsonl"

    def write(data: bytes) -> None:
        with open(raw, "ab") as f:
            f.write(data)

    write(json.dumps(OPENING["claude"]).encode() + b"\n" + _assistant_line("first words."))
    held_at = raw.stat().st_size
    write(_assistant_line("deploy with ghp_1a2B3c"))  # a key's start: no event may be built from it yet
    agent = sync_agent(store, agent_id)[1]
    assert agent.ingest.stdout_offset == held_at and _texts(store, agent_id) == ["first words."]
    assert "1a2B3c" not in agent.model_dump_json()

    write(_assistant_line("4d5E6f7g8h9i0jKlMnOpQ done."))  # its rest: now both lines go on, masked
    agent = sync_agent(store, agent_id)[1]
    assert agent.ingest.stdout_offset == raw.stat().st_size
    assert _texts(store, agent_id) == ["first words.", "deploy with " + "*" * 10, "*" * 21 + " done."]

    write(_assistant_line("a word like sk-learn"))  # held; then it turns out to be ordinary text
    agent = sync_agent(store, agent_id)[1]
    write(_assistant_line(" is a library."))
    sync_agent(store, agent_id)
    assert _texts(store, agent_id)[-2:] == ["a word like sk-learn", " is a library."]

    # A start followed by no text but more than HOLD_LIMIT bytes of other lines is released: masked as a key.
    write(_assistant_line("then AKIA12345"))
    tool = json.dumps({"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "x" * 4000}]}}).encode() + b"\n"
    write(tool * (HOLD_LIMIT // len(tool) + 2))
    agent = sync_agent(store, agent_id)[1]
    assert agent.ingest.stdout_offset == raw.stat().st_size
    assert _texts(store, agent_id)[-1] == "then " + "*" * 9 and b"AKIA12345" not in raw.read_bytes()
