"""Notifications through Apprise to a real local HTTP receiver, from real orch processes.

The receiver is an http.server the test starts; orch's detached sender posts to it with
an Apprise `json://127.0.0.1:PORT/` URL. A hanging receiver must not slow a step.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.core.models import AgentState, Event, EventKind, NotifyCursor
from orchestrator.notify.consumer import notify_new_events
from orchestrator.notify.outbox import notify_dir, sender_running
from orchestrator.runtime.ingest import sync_agent
from orchestrator.store.sessions import Workspace
from orchtest import orch_env, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


class Receiver:
    """A real HTTP server collecting the JSON bodies posted to it."""

    def __init__(self):
        self.messages: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _policy(ws: Path, text: str) -> None:
    (ws / ".orch").mkdir(exist_ok=True)
    (ws / ".orch" / "policy.toml").write_text(text)


def _launch(*args: str) -> str:
    return run_orch("launch", "--cli", "sim", *args, check=True).stdout.strip().splitlines()[-1]


def _no_sender_left(ws: Path) -> None:
    wait_until(lambda: not sender_running(ws / ".orch"), timeout=30, what="the sender to exit")


def test_one_message_per_configured_event_with_session_reason_and_command(workspace_dir, receiver):
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\n'
                           '[budget]\nsession_usd = 0.005\n')
    env = {"ORCH_SILENT_AFTER": "0.5", "ORCH_STALL_AFTER": "1"}
    # blocked_by_policy: a reviewer asks to write; its ceiling is read
    reviewer = _launch("--role", "reviewer", "--prompt", "note it [sim: write=review-notes.txt]")
    # failed: a crash; limit_parked: a rate limit; stalled: silence past the stall limit
    crash = _launch("--role", "worker", "--prompt", "[sim: exit=3]")
    quota = _launch("--role", "worker", "--prompt", "[sim: fail=quota]")
    stall = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "think [sim: stall=60]",
                 env=env, check=True).stdout.strip().splitlines()[-1]
    store = Workspace(workspace_dir / ".orch").open(Workspace(workspace_dir / ".orch").active_id())

    def settled():
        for a in (reviewer, crash, quota):
            sync_agent(store, a)
        s = {a.id: a.state for a in store.agents()}
        return s[reviewer] is AgentState.DENIED and s[crash] is AgentState.FAILED and s[quota] is AgentState.PARKED
    wait_until(settled, timeout=30, what="agents to settle")
    wait_until(lambda: run_orch("step", env=env, check=True) and
               store.read_agent(reviewer).state is AgentState.BLOCKED_BY_POLICY and
               store.read_agent(stall).nudges >= 1, timeout=30, interval=0.3, what="blocked and nudged")
    run_orch("abort", stall, "--grace", "1")

    def got(what_words: str):
        return [m for m in receiver.messages if what_words in m["title"]]
    wait_until(lambda: got("blocked by policy") and got(f"{crash} failed") and got("usage or rate limit")
               and got("silent"), timeout=60, what="one message per event")
    sid = store.id
    for m in receiver.messages:
        body = m["message"]
        assert f"Session: {sid}" in body and f"Project: {workspace_dir}" in body
        assert "What happened: " in body and "Waiting for: " in body and "Answer: cd " in body
    [blocked] = got("blocked by policy")
    assert f"orch allow {reviewer} --session {sid}" in blocked["message"]
    assert "review-notes.txt" in blocked["message"]
    [failed] = got(f"{crash} failed")
    # A hand-launched agent's task is never retried by itself: the message names the command that does.
    assert "exit" in failed["message"] and "not retried by itself" in failed["message"]
    assert re.search(rf"orch retry T-\d+ --session {sid}", failed["message"]), failed["message"]
    [parked] = got("usage or rate limit")
    assert quota in parked["title"]
    assert len(got("silent")) == 1
    _no_sender_left(workspace_dir)
    # Every outcome is recorded, in the workspace's log and in the session's events.
    log = [json.loads(l) for l in (notify_dir(workspace_dir / ".orch") / "log.jsonl").read_text().splitlines()]
    assert {e["status"] for e in log} == {"sent"} and len(log) == len(receiver.messages)
    assert [e for _, e in store.read_events() if e.kind is EventKind.NOTIFY]
    # No URL (it may hold a token) in anything orch wrote.
    for path in (workspace_dir / ".orch").rglob("*"):
        if path.is_file() and path.name != "policy.toml":
            assert f"127.0.0.1:{receiver.port}" not in path.read_text(errors="replace"), path


def test_budget_and_complete_messages(workspace_dir, receiver):
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\non = ["budget", "complete"]\n'
                           '[budget]\nsession_usd = 0.005\n')
    proc = run_orch("run", "Build a small text utilities library", *SIM_TEAM, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    wait_until(lambda: [m for m in receiver.messages if "paused: budget reached" in m["title"]], timeout=30,
               what="the budget message")
    [paused] = [m for m in receiver.messages if "paused" in m["title"]]
    assert "orch budget --raise session_usd=N" in paused["message"] and "of $0.0050" in paused["message"]
    sid = Workspace(workspace_dir / ".orch").active_id()
    run_orch("budget", "--raise", "session_usd=1", check=True)
    assert run_orch("resume", sid, timeout=180).returncode == 0
    wait_until(lambda: [m for m in receiver.messages if "complete" in m["title"]], timeout=30, what="complete")
    run_orch("report", check=True)  # reporting again tells no one twice
    _no_sender_left(workspace_dir)
    assert len([m for m in receiver.messages if "complete" in m["title"]]) == 1
    assert all(f"Session: {sid}" in m["message"] for m in receiver.messages)


def test_a_hanging_receiver_does_not_slow_a_step_and_is_given_up(workspace_dir):
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections, never answers
    port = hang.getsockname()[1]
    try:
        _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{port}/?cto=1&rto=1"]\n'
                               'give_up_after_seconds = 5\n')
        store = Workspace(workspace_dir / ".orch").create(workspace_dir, goal="g")
        d = notify_dir(workspace_dir / ".orch")
        queued = []
        for i in range(5):
            store.append_event(Event(kind=EventKind.NOTE, reason="nothing to tell"))
            store.append_event(Event(kind=EventKind.POLICY_BLOCKED, agent=f"worker-{i}", reason="wanted git push"))
            queued.append(notify_new_events(store))
            # The reader only spooled the message and woke the detached sender: it returned while
            # the endpoint had not answered (the sender is still at it, nothing given up yet).
            assert sender_running(workspace_dir / ".orch") or (d / "sender.pid").read_text().strip()
            if i == 0:
                assert not (d / "log.jsonl").is_file()
        assert queued == [1] * 5
        wait_until(lambda: (d / "log.jsonl").is_file() and
                   len((d / "log.jsonl").read_text().splitlines()) == 5, timeout=60, what="all given up")
        log = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
        assert {e["status"] for e in log} == {"dropped"}
        assert all(str(port) not in json.dumps(e) for e in log)
        _no_sender_left(workspace_dir)
    finally:
        hang.close()


def test_the_store_only_stores_and_the_log_is_told_once(workspace_dir, receiver):
    """Appending an event sends nothing; the reader of the log tells it, once — also when a
    reader died after spooling and before moving its cursor (the cursor set back here)."""
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\n')
    root = workspace_dir / ".orch"
    store = Workspace(root).create(workspace_dir, goal="Ship it")
    store.append_event(Event(kind=EventKind.POLICY_BLOCKED, agent="reviewer-1", reason="Write notes.md needs edit"))
    assert not (notify_dir(root) / "spool.jsonl").exists() and not sender_running(root)
    assert notify_new_events(store) == 1
    assert notify_new_events(store) == 0  # nothing new past the cursor
    store.write_notify_cursor(NotifyCursor())  # as if the reader was killed before its cursor write
    assert notify_new_events(store) == 0  # the outbox knows the event's key
    store.append_event(Event(kind=EventKind.NOTE, reason="quiet"))
    assert notify_new_events(store) == 0 and store.read_notify_cursor().events_offset == store.events_size()
    wait_until(lambda: receiver.messages, timeout=30, what="the message")
    _no_sender_left(workspace_dir)
    assert [m["title"] for m in receiver.messages] == ["orch: reviewer-1 is blocked by policy: Write notes.md needs edit"]


READER = ("import sys; from orchestrator.store.sessions import Workspace; "
          "from orchestrator.notify.consumer import notify_new_events; "
          "notify_new_events(Workspace(sys.argv[1]).open(sys.argv[2]))")


def test_readers_side_by_side_and_killed_at_any_moment_tell_each_event_exactly_once(workspace_dir, receiver):
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\n')
    root = workspace_dir / ".orch"
    store = Workspace(root).create(workspace_dir, goal="g")
    rng = random.Random(26)
    told = []
    for batch in range(4):
        for i in range(2):
            agent = f"worker-{batch}-{i}"
            store.append_event(Event(kind=EventKind.NOTE, reason="progress"))
            store.append_event(Event(kind=EventKind.POLICY_BLOCKED, agent=agent, reason="wanted git push"))
            told.append(f"orch: {agent} is blocked by policy: wanted git push")
        readers = [subprocess.Popen([sys.executable, "-c", READER, str(root), store.id], env=orch_env())
                   for _ in range(3)]
        time.sleep(rng.uniform(0, 0.4))  # a random moment of the readers' work, not a wait for a state
        readers[0].kill()  # SIGKILL: before, while or after it spools, or while it moves the cursor
        for r in readers:
            r.wait(timeout=60)
    notify_new_events(store)  # whatever the killed readers left is read by the next one
    wait_until(lambda: len(receiver.messages) >= len(told), timeout=60, what="every message")
    _no_sender_left(workspace_dir)
    assert sorted(m["title"] for m in receiver.messages) == sorted(told)
    log = [json.loads(l) for l in (notify_dir(root) / "log.jsonl").read_text().splitlines()]
    assert len({e["key"] for e in log}) == len(log) == len(told)


def test_a_read_command_tells_what_its_sync_let_in(workspace_dir, receiver):
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\non = ["failed"]\n')
    crash = _launch("--role", "worker", "--prompt", "[sim: exit=3]")
    store = Workspace(workspace_dir / ".orch").open(Workspace(workspace_dir / ".orch").active_id())
    wait_until(lambda: "exit_code" in json.loads((store.agent_dir(crash) / "run-1.json").read_text() or "{}"),
               what="the exit record")
    run_orch("status", check=True)  # its sync reads the exit: the failure is told as the command ends
    wait_until(lambda: [m for m in receiver.messages if f"{crash} failed" in m["title"]], timeout=30,
               what="the failure message")
    _no_sender_left(workspace_dir)


def test_a_cli_that_is_not_logged_in_is_told_as_not_retried(workspace_dir, receiver):
    """orch never retries a CLI that is not logged in (engine/continuation.py): the message says so."""
    _policy(workspace_dir, f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/"]\non = ["failed"]\n')
    proc = run_orch("run", "Build a small text utilities library [sim: login role=implementer]", *SIM_TEAM,
                    timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    wait_until(lambda: [m for m in receiver.messages if "implementer-1 failed" in m["title"]]
               and [m for m in receiver.messages if "session stopped" in m["title"]], timeout=30,
               what="the failure and the stop")
    _no_sender_left(workspace_dir)
    [failed] = [m for m in receiver.messages if "implementer-1 failed" in m["title"]]
    assert "not logged in, so orch does not retry it" in failed["message"] and "orch retry T-" in failed["message"]
    assert not [m for m in receiver.messages if "orch retries" in m["message"]]


def test_notify_test_sends_one_message(workspace_dir, receiver):
    _policy(workspace_dir, "")
    proc = run_orch("notify", "--test", env={"ORCH_NOTIFY_URLS": f"json://127.0.0.1:{receiver.port}/"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "json://***: sent" in proc.stdout and str(receiver.port) not in proc.stdout
    assert [m["title"] for m in receiver.messages] == ["orch: test notification"]
    none = run_orch("notify", "--test")
    assert none.returncode == 2 and none.stderr.startswith("orch: no notification URL")
    shown = run_orch("policy", "show", env={}).stdout
    assert "urls = []" in shown


def test_a_message_links_the_running_dashboard_without_its_token(workspace_dir):
    from orchestrator.notify.messages import message_for, render
    from orchestrator.notify.serving import forget_serving, record_serving

    root = workspace_dir / ".orch"
    store = Workspace(root).create(workspace_dir, goal="Ship it")
    ev = Event(kind=EventKind.POLICY_BLOCKED, agent="reviewer-1", reason="Write notes.md needs edit")
    message = message_for(ev, store.read_session())
    title, body = render(message, store.read_session(), root)
    assert title == "orch: reviewer-1 is blocked by policy: Write notes.md needs edit"
    assert "Dashboard:" not in body  # no `orch serve` running
    record_serving(root, "http://127.0.0.1:8765/")  # as `orch serve` does (this process stands in for it)
    try:
        _, body = render(message, store.read_session(), root)
        assert f"Dashboard: http://127.0.0.1:8765/?session={store.id}" in body and "token" not in body
        assert f"Answer: cd {workspace_dir} && orch allow reviewer-1 --session {store.id}" in body
    finally:
        forget_serving(root)
    assert not (root / "serve.json").exists()
