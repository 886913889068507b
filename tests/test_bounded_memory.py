"""What orch holds in memory does not grow with what an agent printed.

An agent prints one 200 MB line, or a million lines (100,000 of them text events); then
`orch wait`, `orch status --json`, `orch logs` (plain, --raw, --tail) and `orch logs` of
another agent run as real processes, and each one's peak resident memory is measured from
outside: it runs as the only child of a small wrapper that reports
getrusage(RUSAGE_CHILDREN).ru_maxrss (the kernel's high-water mark of that child). Each
must stay under 100 MB. Before: the 200 MB line made `orch wait` use 1.48 GB and
`orch logs --raw` 855 MB, and 100k lines of one agent made `orch logs` of another use
197 MB.

A line over the limit (ORCH_MAX_LINE_BYTES, 8 MB by default) is one malformed line: an
event that says so with its start and length, the raw file kept whole and scrubbed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.core.models import AgentState
from orchestrator.store.sessions import Workspace
from orchtest import kill_agents_left, orch_argv, orch_env, run_orch, wait_until

LIMIT_MB = 100
SID = "5d0f6a40-0c1e-4c4e-9d1a-2f0e2b7c9a11"

PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
sys.stderr.buffer.write(proc.stderr)
sys.stdout.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {proc.returncode} {len(proc.stdout)}\\n")
"""

# The stand-in claude: an init line, then what BIG_MODE says, then a result line.
BIG_CLI = """#!{python}
import json, os, sys
out = sys.stdout.buffer
def line(obj):
    out.write(json.dumps(obj).encode() + b"\\n")
line({{"type": "system", "subtype": "init", "session_id": "{sid}", "model": "m", "cwd": "/w"}})
mode = os.environ["BIG_MODE"]
if mode == "line":  # one line of BIG_BYTES, a key planted across the first 1 MB boundary of its text
    size, key = int(os.environ["BIG_BYTES"]), os.environ["BIG_KEY"]
    head = b'{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"text","text":"'
    out.write(head)
    block = b"a" * (1 << 20)
    written = len(head)
    plant = (1 << 20) - 10 - written
    out.write(block[:plant] + key.encode())
    written += plant + len(key)
    while written + len(block) < size:
        out.write(block)
        written += len(block)
    tail = b'"}}]}}}}\\n'
    out.write(b"a" * (size - written - len(tail)) + tail)  # BIG_BYTES in all, its newline included
elif mode == "lines":  # BIG_LINES lines: every tenth a text message, the rest streamed deltas
    delta = json.dumps({{"type": "stream_event", "event": {{"type": "content_block_delta", "index": 0,
                        "delta": {{"type": "text_delta", "text": "word "}}}}, "session_id": "{sid}"}}).encode() + b"\\n"
    text = json.dumps({{"type": "assistant", "message": {{"role": "assistant",
                        "content": [{{"type": "text", "text": "progress"}}]}}, "session_id": "{sid}"}}).encode() + b"\\n"
    block = delta * 9 + text
    for _ in range(int(os.environ["BIG_LINES"]) // 10):
        out.write(block)
else:
    line({{"type": "assistant", "message": {{"role": "assistant", "content": [{{"type": "text", "text": "short"}}]}}}})
line({{"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "{sid}"}})
out.flush()
"""


@pytest.fixture
def big_cli(workspace_dir, tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.write_text(BIG_CLI.format(python=sys.executable, sid=SID))
    exe.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(exe))
    yield exe
    kill_agents_left(workspace_dir / ".orch")


def peak_mb(*args: str, env: dict | None = None) -> float:
    """Run `orch ARGS` as the only child of a wrapper; its peak resident memory in MB."""
    proc = subprocess.run([sys.executable, "-c", PEAK, *orch_argv(*args)], env=orch_env(env), capture_output=True,
                          text=True, timeout=900)
    kb, code, printed = proc.stdout.split()
    assert code == "0", f"orch {' '.join(args)} exited {code}: {proc.stderr[-500:]}"
    assert int(printed) > 0 or args[0] == "wait", f"orch {' '.join(args)} printed nothing"
    return int(kb) / 1024


def _launch(env: dict[str, str]) -> str:
    return run_orch("launch", "--cli", "claude", "--role", "worker", "--prompt", "go", check=True,
                    env=env).stdout.split()[-1]


def _exited(store, agent_id: str) -> bool:
    record = store.agent_dir(agent_id) / "run-1.json"
    return record.is_file() and "exit_code" in json.loads(record.read_text())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a guard against a hang: scrubbing 200 MB is ~20 s of CPU, more under load
def test_one_200_mb_line_is_read_in_bounded_memory_and_kept_as_one_malformed_line(big_cli, workspace_dir):
    size = 200 << 20
    key = "ghp_" + "Q7w" * 12
    agent_id = _launch({"BIG_MODE": "line", "BIG_BYTES": str(size), "BIG_KEY": key})
    store = Workspace().resolve(None)
    wait_until(lambda: _exited(store, agent_id), timeout=300, what="the 200 MB line to be printed")
    raw = store.agent_dir(agent_id) / "stdout.jsonl"
    before = raw.stat().st_size
    peaks = {"wait (ingests it)": peak_mb("wait", "--json", "--timeout", "0")}
    for args in (("status", "--json"), ("logs", agent_id), ("logs", agent_id, "--raw"),
                 ("logs", agent_id, "--raw", "-n", "2"), ("wait", "--json", "--timeout", "0")):
        peaks[" ".join(args)] = peak_mb(*args)
    print("peak MB:", {k: round(v, 1) for k, v in peaks.items()})
    assert {k: v for k, v in peaks.items() if v >= LIMIT_MB} == {}, peaks

    agent = store.read_agent(agent_id)
    assert agent.state is AgentState.IDLE  # the lines around it were read as usual
    assert agent.stats.malformed_lines == 1
    assert raw.stat().st_size == before  # kept whole: no offset moved
    with open(raw, "rb") as f:  # and scrubbed in place, across the windows it was read in
        f.seek(1 << 20)
        assert key.encode() not in f.read(4 << 20) and b"*" * len(key) in raw.read_bytes()[: 2 << 20]
    notes = [e.data for _, e in store.scan_events(agent=agent_id) if e.data.get("raw_type") == "oversized_line"]
    assert len(notes) == 1
    long_line = size - len(b"\n")  # its length without its newline
    assert notes[0]["data"]["bytes"] == long_line and notes[0]["data"]["limit"] == 8 << 20
    head = notes[0]["data"]["head"]
    assert head.startswith('{"type":"assistant"') and head.endswith(f"…[orch: line of {long_line} bytes cut to "
                                                                    "its first 1000]")
    shown = run_orch("logs", agent_id, "--raw", "-n", "2", check=True).stdout
    assert f"…[orch: line of {long_line} bytes cut to its first {8 << 20}]" in shown
    assert len(shown) < (8 << 20) + 1000 and key not in shown


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a guard against a hang: a million lines are ~1 min of ingest
def test_a_million_lines_and_another_agents_logs_stay_in_bounded_memory(big_cli, workspace_dir):
    lines = 1_000_000
    loud = _launch({"BIG_MODE": "lines", "BIG_LINES": str(lines)})
    quiet = _launch({"BIG_MODE": "short"})
    store = Workspace().resolve(None)
    wait_until(lambda: _exited(store, loud) and _exited(store, quiet), timeout=300, what="a million lines printed")
    peaks = {"wait (ingests them)": peak_mb("wait", "--json", "--timeout", "0")}
    for args in (("status", "--json"), ("logs", quiet), ("logs", quiet, "--raw"), ("logs", loud, "-n", "20"),
                 ("logs", loud, "--raw", "-n", "20"), ("logs", loud)):
        peaks[" ".join(args)] = peak_mb(*args)
    print("peak MB:", {k: round(v, 1) for k, v in peaks.items()})
    assert {k: v for k, v in peaks.items() if v >= LIMIT_MB} == {}, peaks
    agent = store.read_agent(loud)
    assert agent.state is AgentState.IDLE and agent.ingest.stdout_offset == (store.agent_dir(loud) / "stdout.jsonl").stat().st_size
    texts = sum(1 for _, e in store.scan_events(agent=loud) if e.data.get("kind") == "text")
    assert texts == lines // 10  # every one, each once, though committed in parts


def test_the_line_limit_is_settable_and_a_bad_value_is_one_line(big_cli, workspace_dir):
    env = {"BIG_MODE": "line", "BIG_BYTES": str(1 << 20), "BIG_KEY": "ghp_" + "Zx9" * 12,
           "ORCH_MAX_LINE_BYTES": str(64 << 10)}
    agent_id = _launch(env)
    store = Workspace().resolve(None)
    wait_until(lambda: _exited(store, agent_id), timeout=60, what="the run to end")
    run_orch("status", "--json", check=True, env={"ORCH_MAX_LINE_BYTES": str(64 << 10)})
    notes = [e.data for _, e in store.scan_events(agent=agent_id) if e.data.get("raw_type") == "oversized_line"]
    assert [n["data"]["limit"] for n in notes] == [64 << 10]
    for bad in ("lots", "-1", "100"):
        proc = run_orch("status", "--json", env={"ORCH_MAX_LINE_BYTES": bad})
        assert proc.returncode == 2 and proc.stderr.startswith("orch: ORCH_MAX_LINE_BYTES must be")
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
