"""Shared pieces of the dashboard tests: a real `orch serve` process, SSE parsing, waiting.

No tests here. The server always runs as its own process (`python -m orchestrator serve
--port 0`), found through the URL it prints, and is stopped with SIGTERM like a user's
Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlparse

import httpx

from orchestrator.core.models import Role
from orchestrator.store.sessions import SessionStore, Workspace
from orchestrator.runtime.workers import launch_agent

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll a condition with a deadline (the test's own waiting, not the server's)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Server:
    """A running `orch serve`."""

    proc: subprocess.Popen
    url: str  # what it printed, token fragment included
    base: str  # http://127.0.0.1:PORT
    port: int
    session: Optional[str]
    token: Optional[str]
    stderr_lines: list[str] = field(default_factory=list)

    def api(self, path: str) -> str:
        return f"{self.base}{path}"

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.api(path), timeout=10, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.api(path), timeout=30, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_server(env: Optional[dict[str, str]] = None, session: Optional[str] = None,
                 extra_args: tuple[str, ...] = ()) -> Server:
    """Start `orch serve --port 0` and wait for the URL it prints."""
    argv = [sys.executable, "-m", "orchestrator", "serve", "--port", "0", *extra_args]
    if session:
        argv += ["--session", session]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ if env is None else env), cwd=os.getcwd())
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    errors: list[str] = []

    def pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        if stream is proc.stdout:
            lines.put(None)

    threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True).start()
    threading.Thread(target=pump, args=(proc.stderr, errors.append), daemon=True).start()
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"orch serve printed nothing in 30 s; stderr: {errors}") from None
    if first is None or not first.startswith("orch dashboard: "):
        proc.wait(timeout=10)
        raise AssertionError(f"orch serve failed: {first!r}; stderr: {errors}")
    url = first.split(": ", 1)[1]
    parsed = urlparse(url)
    token = parse_qs(parsed.fragment).get("token", [None])[0]
    chosen = parse_qs(parsed.query).get("session", [None])[0]
    server = Server(proc=proc, url=url, base=f"{parsed.scheme}://{parsed.netloc}", port=parsed.port,
                    session=chosen, token=token, stderr_lines=errors)
    wait_until(lambda: _answers(server), 15, "the server to answer")
    return server


def _answers(server: Server) -> bool:
    try:
        return server.get("/api/server").status_code == 200
    except httpx.HTTPError:
        return False


def new_session(workspace_dir: Path, goal: str = "dashboard test") -> SessionStore:
    return Workspace().create(workspace_dir, goal=goal)


def launch_sim(store: SessionStore, workspace_dir: Path, prompt: str, role: Role = Role.WORKER,
               sim_format: Optional[str] = None) -> str:
    """Start a real sim agent process in the session; returns its id."""
    agent = launch_agent(store, cli="sim", role=role, prompt=prompt, cwd=workspace_dir, create_task=True,
                         sim_format=sim_format)
    return agent.id


# --------------------------------------------------------------------------- SSE


@dataclass
class Message:
    event: str
    data: Any
    id: Optional[int] = None


class SSEParser:
    """Turns the bytes of a text/event-stream into messages (the WHATWG rules orch uses)."""

    def __init__(self) -> None:
        self.buf = ""
        self.fields: dict[str, str] = {}

    def feed(self, text: str) -> list[Message]:
        *lines, self.buf = (self.buf + text).split("\n")
        out = []
        for line in lines:
            if line == "":
                if "data" in self.fields:
                    ident = self.fields.get("id")
                    out.append(Message(self.fields.get("event", "message"), json.loads(self.fields["data"]),
                                       int(ident) if ident is not None else None))
                self.fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                self.fields[key] = value[1:] if value.startswith(" ") else value
        return out


class SSEStream:
    """One live stream connection (async): read messages until a condition holds, then close."""

    def __init__(self, client: httpx.AsyncClient, server: Server, session: str, headers: Optional[dict] = None,
                 params: Optional[dict] = None):
        self.client = client
        self.url = server.api(f"/api/sessions/{session}/stream")
        self.headers = headers or {}
        self.params = params or {}
        self.parser = SSEParser()
        self.received: list[Message] = []

    async def __aenter__(self) -> "SSEStream":
        self._cm = self.client.stream("GET", self.url, headers=self.headers, params=self.params)
        self.response = await self._cm.__aenter__()
        assert self.response.status_code == 200, await self.response.aread()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._chunks = self.response.aiter_text()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(*exc)

    async def read_until(self, until: Callable[[list[Message]], bool], timeout: float = 20.0) -> list[Message]:
        """Read until `until(all received so far)` holds; fails at the deadline."""
        import asyncio

        deadline = time.monotonic() + timeout
        while not until(self.received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"stream: condition not met in {timeout} s; got {len(self.received)} "
                                     f"messages, last: {[(m.event, m.id) for m in self.received[-5:]]}")
            try:
                chunk = await asyncio.wait_for(self._chunks.__anext__(), remaining)
            except asyncio.TimeoutError:
                continue
            self.received.extend(self.parser.feed(chunk))
        return self.received

    async def until_ready(self, timeout: float = 20.0) -> list[Message]:
        return await self.read_until(lambda got: any(m.event == "ready" for m in got), timeout)


def event_ids(messages: list[Message]) -> list[int]:
    return [m.id for m in messages if m.event == "event"]
