"""The outbox: a notification is one line appended to a spool file, then a detached sender's job.

What to tell comes from the event log (notify/consumer.py). `orch step` and every other orch
command are short-lived, and an endpoint may be slow or down: nothing here waits on the
network. `enqueue` appends to <state root>/notify/spool.jsonl — once per key: a key already
in the spool or the sender's log is not queued again — and makes sure a sender process
(notify/sender.py, detached, one per workspace) is running; the sender retries, records the
outcome, and gives up after a bound. The spool holds no URL: the sender reads them from the
policy and $ORCH_NOTIFY_URLS itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Optional

from ..core.models import Session, now
from ..safety.redaction import redact_text
from ..store.sessions import SessionStore
from .messages import Message, render
from .settings import load_notify_settings
from .urls import notify_urls

SPOOL = "spool.jsonl"
LOG = "log.jsonl"
SENDER_LOCK = "sender.lock"
SPOOL_LOCK = "spool.lock"
SENDER_PID = "sender.pid"  # a sender started and not yet holding its lock


def notify_dir(root: Path) -> Path:
    return root / "notify"


def root_of(store: SessionStore) -> Path:
    """The state root a session lives in (<root>/sessions/<id>)."""
    return store.path.parent.parent


def enqueue(root: Path, session: Session, messages: list[Message]) -> int:
    """Append the messages the policy wants sent to the spool and wake the sender; returns how many."""
    policy = load_notify_settings(root)
    if not notify_urls(policy):
        return 0
    wanted = [m for m in messages if m.what in policy.on]
    if not wanted:
        return 0
    d = notify_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d / SPOOL_LOCK):
        known = _keys(d) if any(m.key for m in wanted) else set()
        lines = []
        for m in wanted:
            if m.key and m.key in known:
                continue  # told already (or a reader died between spooling it and moving its cursor)
            known.add(m.key)
            title, body = render(m, session, root)
            lines.append(json.dumps({"id": uuid.uuid4().hex, "ts": now().isoformat(), "session": session.id,
                                     "what": m.what, "key": m.key, "title": redact_text(title),
                                     "body": redact_text(body)}) + "\n")
        if lines:
            with open(d / SPOOL, "a", encoding="utf-8") as f:
                f.write("".join(lines))
    if lines:
        wake_sender(root)
    return len(lines)


def _keys(d: Path) -> set[str]:
    keys = set()
    for name in (SPOOL, LOG):
        try:
            for line in (d / name).read_text(encoding="utf-8").splitlines():
                try:
                    key = json.loads(line).get("key")
                except ValueError:
                    continue
                if key:
                    keys.add(key)
        except OSError:
            continue
    return keys


class _locked:
    """An exclusive flock on a file, as a context manager."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self.f

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def sender_running(root: Path) -> bool:
    """True while a sender holds the workspace's sender lock."""
    path = notify_dir(root) / SENDER_LOCK
    try:
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


_spawned: list[int] = []  # senders this process started: reaped, so none lingers as a zombie


def _alive(pid: int) -> bool:
    """True when pid is a running (not zombie) notification sender."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"orchestrator.notify.sender" in f.read()
    except (OSError, IndexError):
        return False


def wake_sender(root: Path) -> Optional[int]:
    """Start a detached sender unless one runs or is starting; its pid, or None.

    posix_spawn (vfork underneath) rather than fork: forking a big Python process costs
    tens of milliseconds, spawning costs about one. The sender clears sender.pid before it
    lets go of its lock and looks at the spool once more after, so a message appended at
    any moment is seen by a sender.
    """
    for pid in list(_spawned):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                _spawned.remove(pid)
        except ChildProcessError:
            _spawned.remove(pid)
    d = notify_dir(root)
    if sender_running(root):
        return None
    try:
        starting = int((d / SENDER_PID).read_text().strip() or 0)
    except (OSError, ValueError):
        starting = 0
    if starting and _alive(starting):
        return None
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "orchestrator.notify.sender", str(root)], env,
                         file_actions=devnull, setsid=True)
    _spawned.append(pid)
    (d / SENDER_PID).write_text(str(pid))
    return pid
