"""Faults with real processes and real signals: SIGKILLed orch commands, 32 at once.

The proof of "no line lost, none counted twice": the normalized events in events.jsonl
must equal, kind for kind, what a fresh parser makes of the agent's raw output.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from orchestrator.adapters import get_adapter
from orchestrator.store.sessions import Workspace
from orchestrator.store.tail import iter_lines
from orchtest import orch_argv, orch_env, orch_json, run_orch, wait_until

STREAM = "[sim: lines=300 interval=0.004]"


def _store():
    return Workspace().resolve(None)


def _launch(prompt: str) -> str:
    return run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", prompt, check=True).stdout.split()[-1]


def _expected_kinds(agent_id: str) -> Counter:
    """What a fresh parser makes of the agent's raw files (stdout and stderr)."""
    store = _store()
    agent = store.read_agent(agent_id)
    parser = get_adapter("sim", agent.sim_format).new_parser()
    d = store.agent_dir(agent_id)
    events = []
    for stream, name in (("stdout", "stdout.jsonl"), ("stderr", "stderr.log")):
        for line in iter_lines(d / name):
            if line.strip():
                events += parser.feed(stream, line)
    events += parser.finish(agent.exit_code)
    return Counter(e.kind.value for e in events)


def _logged_kinds(agent_id: str) -> Counter:
    return Counter(e.data["kind"] for _, e in _store().read_events() if e.agent == agent_id
                   and e.kind.value == "agent.output")


def _assert_every_file_intact(root: Path) -> None:
    for path in root.rglob("*.json"):
        json.loads(path.read_text())  # raises on a torn file
    for path in root.rglob("events.jsonl"):
        data = path.read_bytes()
        assert data.endswith(b"\n")
        for line in data.splitlines():
            json.loads(line)


def _assert_exactly_once(agent_ids: list[str]) -> None:
    for a in agent_ids:
        expected, logged = _expected_kinds(a), _logged_kinds(a)
        assert logged == expected, f"{a}: logged {dict(logged)} != parsed {dict(expected)}"
        assert expected["text"] >= 300


def _all_finished(agent_ids):
    states = {x["id"]: x["state"] for x in orch_json("list")}
    return all(states[a] not in ("starting", "running", "silent") for a in agent_ids)


def test_sigkilled_orch_commands_lose_nothing_and_count_nothing_twice(workspace_dir):
    agents = [_launch(STREAM) for _ in range(3)]
    rng = random.Random(7)
    kinds = [("status",), ("list",), ("wait", "--timeout", "0.3", "--any"), ("check",), ("logs", agents[0], "-n", "3")]
    killed, tried = 0, 0
    while killed < 8:  # count the kills that landed mid-command, however long a slow machine takes
        tried += 1
        assert tried < 400, f"only {killed} of {tried} kills landed mid-command"
        args = rng.choice(kinds)
        proc = subprocess.Popen(orch_argv(*args), env=orch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    wait_until(lambda: _all_finished(agents), timeout=60, what="agents to finish")
    status = orch_json("status")
    assert {a["id"]: a["state"] for a in status["agents"]} == {a: "idle" for a in agents}
    assert all(a["exit_code"] == 0 for a in status["agents"])
    _assert_exactly_once(agents)
    _assert_every_file_intact(workspace_dir / ".orch")


def test_thirty_two_commands_at_once_on_one_session(workspace_dir):
    agents = [_launch(STREAM) for _ in range(2)]
    commands = [("status",), ("list",), ("wait", "--timeout", "1", "--any"), ("check",), ("logs", agents[1], "-n", "5"),
                ("status", agents[0]), ("sessions",), ("monitor", "--once")] * 4
    procs = [subprocess.Popen(orch_argv(*c), env=orch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    results = [(c, p.wait(timeout=120), p.stderr.read()) for c, p in zip(commands, procs)]
    for c, code, err in results:
        assert code in (0, 1), f"orch {' '.join(c)} exited {code}: {err}"
        assert "Traceback" not in err
    wait_until(lambda: _all_finished(agents), timeout=60, what="agents to finish")
    _assert_exactly_once(agents)
    _assert_every_file_intact(workspace_dir / ".orch")


def test_a_sigkilled_launch_leaves_no_unknown_process(workspace_dir):
    # How long a launch takes depends on the machine's load: measure one, then kill the
    # others at moments spread over that span, so some land before, in and after the spawn.
    t = time.monotonic()
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi", check=True)
    span = time.monotonic() - t
    rng = random.Random(11)
    for i in range(8):
        proc = subprocess.Popen(orch_argv("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi"),
                                env=orch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(span * (i + rng.random()) / 8)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = _store()
    # Every agent orch knows of ends as finished, or as "never started"; none is left running unknown.
    for agent_id in store.agent_ids():
        agent = store.read_agent(agent_id)
        for run in agent.runs:
            rec_path = store.agent_dir(agent_id) / f"run-{run.n}.json"
            if rec_path.exists():
                wait_until(lambda: "exit_code" in json.loads(rec_path.read_text()), what=f"{agent_id} exit")
    _assert_every_file_intact(workspace_dir / ".orch")
    listed = orch_json("list", env={})
    assert all(a["state"] in ("idle", "failed", "starting") for a in listed)
