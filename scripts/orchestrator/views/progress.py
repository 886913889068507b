"""What `orch run` shows while agents work: live status lines on a terminal, heartbeats when piped.

On a terminal, one line per working agent (elapsed time, tools used, last file or words,
tokens so far) is redrawn under the log every second. Piped, each working agent gets at
most one heartbeat line per HEARTBEAT seconds. The log itself keeps one line per decision:
the digest's echoes of what a step already said (launched, exited, now idle, task
finished, the recovery the step named) are left out, and so are idle notices.
A view: it only reads the store.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Callable, Optional, TextIO

from ..core.lifecycle import LIVE_AGENT_STATES as LIVE
from ..core.models import Agent, now
from ..safety.redaction import redact_text
from ..store.sessions import SessionStore

REFRESH = 1.0  # seconds between redraws on a terminal (the ingest refreshes progress every 2 s)
HEARTBEAT = 30.0  # seconds between heartbeat lines per agent when not a terminal (ORCH_HEARTBEAT)

#: Digest lines that repeat what the step's own line says, or that say nothing to act on.
ECHOES = re.compile(
    r" launched \(| exited \(code | is now (idle|done|running|starting|failed|denied)\b| reported (denial|error):|"
    r": task\.finished\b|: recovery — |has been idle for |: task\.(queued|assigned|state)\b|: round\.|"
    r": review\.recorded — |: blocker\.state — ")


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(float(os.environ.get(name, default)), 1.0)
    except ValueError:
        return default


def worth_echoing(happened: str) -> bool:
    """False for a digest line that only repeats a step's decision (or an idle notice)."""
    return not ECHOES.search(happened)


def _tokens(agent: Agent) -> str:
    u = agent.stats.usage
    n = u.input_tokens + u.output_tokens
    return f"{n / 1000:.1f}k tokens" if n >= 1000 else f"{n} tokens"


def _elapsed(agent: Agent) -> str:
    if not agent.runs:
        return "0:00"
    s = int((now() - agent.runs[-1].started_at).total_seconds())
    return f"{s // 60}:{s % 60:02d}"


def status_line(agent: Agent) -> str:
    """One working agent: who, what, for how long, what it last touched, tokens so far."""
    last = ""
    if agent.stats.files_changed:
        last = f", last file {agent.stats.files_changed[-1]}"
    elif agent.stats.last_text:
        last = f", said \"{agent.stats.last_text.strip().splitlines()[0][:50]}\"" if agent.stats.last_text.strip() else ""
    quiet = ""
    if agent.last_activity_at:
        q = int((now() - agent.last_activity_at).total_seconds())
        quiet = f", quiet {q}s" if q >= 10 else ""
    return redact_text(f"{agent.id} ({agent.current_task or '-'}) {agent.state.value} {_elapsed(agent)} "
                       f"(run {len(agent.runs)}): "
                       f"{agent.stats.tool_calls} tool call(s){last}, {_tokens(agent)}{quiet}")


class Progress:
    """The autopilot's echo, with live status lines (tty) or heartbeats (pipe) from a thread."""

    def __init__(self, store: SessionStore, stream: TextIO, tty: bool, refresh: float = REFRESH,
                 heartbeat: Optional[float] = None, clock: Callable[[], float] = time.monotonic):
        self.store, self.stream, self.tty = store, stream, tty
        self.refresh, self.clock = refresh, clock
        self.heartbeat = heartbeat if heartbeat is not None else _env_seconds("ORCH_HEARTBEAT", HEARTBEAT)
        self.lock = threading.Lock()
        self.drawn = 0  # status lines currently on screen (tty)
        self.last_beat: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Progress":
        self.thread = threading.Thread(target=self._loop, name="orch-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            self._clear()

    def echo(self, line: str) -> None:
        """A log line (the autopilot's decisions and the digest's news), minus the echoes."""
        if line.startswith("  · ") and not worth_echoing(line):
            return
        with self.lock:
            self._clear()
            self.stream.write(line + "\n")
            self._draw()
            self.stream.flush()

    # ------------------------------------------------------------------ the thread
    def _working(self) -> list[Agent]:
        try:
            return [a for a in self.store.agents() if a.state in LIVE]
        except (OSError, ValueError):
            return []  # a file mid-swap: the next tick reads it

    def _loop(self) -> None:
        while not self.stopping.wait(self.refresh):
            with self.lock:
                if self.tty:
                    self._clear()
                    self._draw()
                else:
                    self._beat()
                self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the first status line, erase below
            self.drawn = 0

    def _draw(self) -> None:
        if not self.tty:
            return
        lines = [f"  ⋯ {status_line(a)}" for a in self._working()]
        for line in lines:
            self.stream.write(line[:200] + "\n")
        self.drawn = len(lines)

    def _beat(self) -> None:
        t = self.clock()
        for agent in self._working():
            first = self.last_beat.setdefault(agent.id, t)  # the launch line was its first sign
            if t - first >= self.heartbeat:
                self.stream.write(f"  … {status_line(agent)}\n")
                self.last_beat[agent.id] = t
