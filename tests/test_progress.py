"""`orch run` shows progress: live status lines on a pseudo-terminal, bounded heartbeats when piped,
and one line per decision instead of four."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import time

from orchestrator.store.sessions import Workspace
from orchestrator.views.progress import Progress
from orchtest import orch_argv, orch_env, orch_json, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
SLOW_GOAL = "Build a small text utilities library [sim: role=implementer stall=8]"


def _read_pty(master: int, proc: subprocess.Popen, deadline: float) -> list[tuple[float, str]]:
    """Everything the process writes to its terminal, chunk by chunk, with the time each arrived."""
    chunks: list[tuple[float, str]] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
        elif proc.poll() is not None:
            break
    return chunks


def test_on_a_terminal_each_working_agent_has_a_status_line_redrawn_at_least_every_2_s(workspace_dir):
    master, slave = pty.openpty()
    proc = subprocess.Popen(orch_argv("run", SLOW_GOAL, *SIM_TEAM), env=orch_env(), stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    try:
        chunks = _read_pty(master, proc, time.monotonic() + 120)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = "".join(c for _, c in chunks)
    assert proc.returncode == 0, text[-3000:]
    draws = []  # (when, which run's elapsed time) of each redraw of the implementer's line
    for t, c in chunks:
        m = re.search(r"⋯ implementer-1 \(T-\d+\) (?:running|silent|starting) \d+:\d\d \(run (\d+)\): "
                      r"\d+ tool call\(s\).*tokens", c)
        if m:
            draws.append((t, int(m.group(1))))
    assert len(draws) >= 5, text[-3000:]  # the implementer stalls ~8 s: its line is redrawn all along
    # between two redraws of the same run, never more than 2 s
    gaps = [b[0] - a[0] for a, b in zip(draws, draws[1:]) if b[1] == a[1]]
    assert gaps and max(gaps) <= 2.0, (gaps, draws)
    assert "\x1b[" in text  # redrawn in place, not appended


def test_piped_output_has_at_most_one_heartbeat_per_agent_per_interval_and_no_echoes(workspace_dir):
    proc = run_orch("run", SLOW_GOAL, *SIM_TEAM, env={"ORCH_HEARTBEAT": "3"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out and "⋯" not in out
    beats = re.findall(r"^  … implementer-1 \(T-\d+\) \w+ (\d+):(\d\d) \(run (\d+)\):", out, re.M)
    assert beats, out  # an ~8 s stall with 3 s heartbeats
    seconds = [(int(m) * 60 + int(s), run) for m, s, run in beats]
    # within one run beats are a heartbeat apart (a second of rounding)
    assert all(b[0] - a[0] >= 2 for a, b in zip(seconds, seconds[1:]) if a[1] == b[1]), seconds
    # one line per finished task: the step's line, not the digest's exit/idle/task.finished echoes
    assert out.count("finished T-1") == 1
    assert " exited (code 0)" not in out and "is now idle" not in out and "task.finished" not in out
    assert "launched (" not in out and "has been idle for" not in out


def test_the_default_heartbeat_is_at_most_one_line_per_agent_per_30_s(workspace_dir):
    agent = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "think [sim: stall=60]",
                     check=True).stdout.split()[-1]
    wait_until(lambda: orch_json("status", agent)["state"] == "running", what="running")
    store = Workspace(workspace_dir / ".orch").resolve(None)
    clock = [0.0]
    out = io.StringIO()
    progress = Progress(store, out, tty=False, clock=lambda: clock[0])
    assert progress.heartbeat == 30.0
    for _ in range(95):  # 95 ticks of one simulated second
        progress._beat()
        clock[0] += 1.0
    assert out.getvalue().count(f"… {agent} ") == 3  # at 30, 60 and 90 s
    run_orch("abort", "--all", check=True)
