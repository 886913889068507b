"""The detached notification sender: `python -m orchestrator.notify.sender STATE_ROOT`.

One per workspace (an flock on notify/sender.lock). It sends every spooled message to
every URL with Apprise, retries a failed URL with a growing pause, records each outcome
in notify/log.jsonl and in the session's events, drops a message it could not send within
the policy's give_up_after_seconds, and exits when the spool is empty.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from .outbox import LOG, SENDER_LOCK, SENDER_PID, SPOOL, SPOOL_LOCK, _locked, notify_dir
from .settings import load_notify_settings
from .urls import mask_url, notify_urls, scrub_urls

MAX_PAUSE = 30.0


def send_one(url: str, title: str, body: str) -> Optional[str]:
    """Send to one Apprise URL; None when it went, else why not (URLs masked)."""
    import apprise

    a = apprise.Apprise()
    if not a.add(url):
        return f"{mask_url(url)} is not a URL Apprise understands"
    try:
        ok = a.notify(title=title, body=body)
    except Exception as e:  # a plugin's own bug must not end the sender
        return scrub_urls(f"{mask_url(url)}: {type(e).__name__}: {e}", [url])
    return None if ok else f"{mask_url(url)} refused or did not answer"


def _read_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class Sender:
    def __init__(self, root: Path):
        self.root = root
        self.dir = notify_dir(root)
        self.tries: dict[str, dict[str, Any]] = {}  # message id -> {done: [url index], attempts, next_at}

    def settings(self):
        policy = load_notify_settings(self.root)
        return notify_urls(policy), policy.give_up_after_seconds

    def pending(self) -> list[dict[str, Any]]:
        finished = {e.get("id") for e in _read_lines(self.dir / LOG)}
        return [m for m in _read_lines(self.dir / SPOOL) if m.get("id") not in finished]

    def record(self, message: dict[str, Any], status: str, attempts: int, errors: list[str]) -> None:
        entry = {"id": message.get("id"), "key": message.get("key"), "session": message.get("session"),
                 "what": message.get("what"), "status": status, "attempts": attempts,
                 "errors": errors[-3:], "at": datetime.now().astimezone().isoformat()}
        with open(self.dir / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self._session_event(message, status, attempts, errors)

    def _session_event(self, message: dict[str, Any], status: str, attempts: int, errors: list[str]) -> None:
        from ..core.models import Event, EventKind
        from ..store.sessions import Workspace

        try:
            store = Workspace(self.root).open(str(message.get("session")))
            store.append_event(Event(kind=EventKind.NOTIFY, reason=f"notification {status} ({message.get('what')}): "
                                                                    f"{message.get('title', '')}"[:300],
                                     data={"status": status, "what": message.get("what"), "attempts": attempts,
                                           "errors": errors[-3:]}))
        except Exception:
            pass

    def work_once(self) -> Optional[float]:
        """Try what is due; seconds until the next try, or None when nothing is left."""
        messages = self.pending()
        if not messages:
            return None
        urls, give_up = self.settings()
        now = time.time()
        next_due = MAX_PAUSE
        for m in messages:
            t = self.tries.setdefault(m["id"], {"done": [], "attempts": 0, "next_at": 0.0, "errors": []})
            try:
                created = datetime.fromisoformat(m["ts"]).timestamp()
            except (KeyError, ValueError):
                created = now
            if not urls:
                self.record(m, "dropped", t["attempts"], ["no notification URL is configured any more"])
                continue
            if now - created > give_up:
                self.record(m, "dropped", t["attempts"], t["errors"] + [f"not sent within {give_up:g} s"])
                continue
            if t["next_at"] > now:
                next_due = min(next_due, t["next_at"] - now)
                continue
            t["attempts"] += 1
            for i, url in enumerate(urls):
                if i in t["done"]:
                    continue
                error = send_one(url, m.get("title", "orch"), m.get("body", ""))
                if error is None:
                    t["done"].append(i)
                else:
                    t["errors"].append(error)
            if len(t["done"]) >= len(urls):
                self.record(m, "sent", t["attempts"], t["errors"])
            else:
                pause = min(2.0 ** t["attempts"], MAX_PAUSE)
                t["next_at"] = time.time() + pause
                next_due = min(next_due, pause)
        # Look again within a second: new messages may arrive while one waits for its retry.
        return min(max(next_due, 0.05), 1.0)

    def compact(self) -> None:
        """Empty the spool once everything in it is recorded (under the spool lock: no append is lost)."""
        with _locked(self.dir / SPOOL_LOCK):
            if not self.pending():
                (self.dir / SPOOL).write_text("")


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    d = notify_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    sender = Sender(root)
    lock = open(d / SENDER_LOCK, "a")
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another sender has the spool
        (d / SENDER_PID).write_text(str(os.getpid()))
        while True:
            wait = sender.work_once()
            if wait is None:
                break
            time.sleep(wait)
        sender.compact()
        (d / SENDER_PID).write_text("")  # before the unlock: a waker now starts a new sender
        fcntl.flock(lock, fcntl.LOCK_UN)
        # A message appended between the last look and the unlock saw a sender running and
        # started none: look once more, now that the lock is free.
        if not sender.pending():
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
