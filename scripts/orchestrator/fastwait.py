"""The fast path of `orch wait`: waiting on a live session whose ingest owner is current, without
click, pydantic or a watchdog thread.

While agents are live and the session's ingest owner (runtime/ingest/daemon.py) does the
ingest, a waiter only reads: the event log from where the previous wait stopped, the
session and its agents as stored, and the clock. It sleeps on one inotify watch of the
session folder (runtime/inotify.py) — the bell the ingest rings after a batch a waiter acts
on, session.json — and on the due times, and prints the digest the full command prints
(views/digest_form.py: the same code over the same stored form), writing wait.json as it
does. The limits the due times need are the ones the owner recorded from the policy, used
only when this process's settings and the policy file are those the owner read.

With nothing live it answers too when the full command would answer at once: every agent's
output ingested to its end, it judges the quiet state (the criteria, the step's work, a
person's decision, the session's end, a due time ahead) over the stored form with the full
wait's own function (criteria/advice.quiet_reason); a wait that would sleep is the full command's.

Anything else — `--any`, no current owner while an agent is live, limits that do not hold
here, a silence threshold of its own, a file that does not read — and `try_fast_wait` returns
None before waiting, or, once waiting, hands over: the full command goes on for the time
that is left (engine/wait.py's `handed_over_at` keeps the wait's start, so `waited_seconds` counts it all).

ORCH_FULL_PATH=1 turns it off (tests compare both).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .core.ids import is_valid_id
from .core.meaningful import MEANINGFUL_KINDS, MEANINGFUL_OUTPUT, MEANINGFUL_STATES, meaningful
from .fastpath import tell_new_events
from .runtime.owner import LIVE_AGENT_STATES, RUNNING_STATES, owner_current, read_owner, record_alive, waiter_limits
from .store.paths import active_id, agent_ids, state_root
from .store.reread import Reread, read_json

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Optional

LIVENESS_CHECK = 2.0  # seconds: the owner is looked at again this often
MAX_HAPPENED = 200  # lines of a digest's "what happened"; the rest is counted


class _HandOver(Exception):
    """Something the fast path does not do: the full command carries on."""


def _options(args: list[str]) -> Optional[dict[str, Any]]:
    """wait's options the fast path takes (anything else: None, the full command parses it)."""
    opts: dict[str, Any] = {"session": None, "timeout": 60.0, "idle_after": 30.0, "json": False}
    names = {"--session": "session", "-s": "session", "--timeout": "timeout", "--idle-after": "idle_after"}
    i = 0
    while i < len(args):
        arg = args[i]
        name, value = (arg.split("=", 1) + [None])[:2] if arg.startswith("--") and "=" in arg else (arg, None)
        if name == "--json" and value is None:
            opts["json"] = True
        elif name in names:
            if value is None:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            key = names[name]
            if key == "session":
                opts[key] = value
            else:
                try:
                    opts[key] = float(value)
                except ValueError:
                    return None
        else:
            return None  # --any, --silent-after, --help, anything unknown
        i += 1
    if opts["timeout"] < 0 or opts["timeout"] != opts["timeout"]:
        return None  # the full command says what is wrong
    return opts


class _Stored:
    """The session's agents (and session.json) as stored, each read again only when replaced."""

    def __init__(self, session_dir: Path):
        self.dir = session_dir
        self.files = Reread()

    def read(self) -> tuple[dict[str, Any], list[tuple[Path, dict[str, Any]]]]:
        session = self.files.get("session.json", self.dir / "session.json", read_json)
        if not isinstance(session, dict):
            raise _HandOver("session.json")
        out = []
        agents_dir = self.dir / "agents"
        for agent_id in agent_ids(self.dir):
            agent = self.files.get(agent_id, os.path.join(agents_dir, agent_id, "meta.json"), _agent_loader(agent_id))
            if agent is not None:
                out.append((agents_dir / agent_id, agent))
        return session, out


def _agent_loader(agent_id: str):
    def load(path: str) -> dict[str, Any]:
        try:
            agent = read_json(path)
        except ValueError:
            agent = None
        if not isinstance(agent, dict) or agent.get("id") != agent_id:
            raise _HandOver(f"{agent_id}'s meta.json")  # the full command reports it, once
        return agent
    return load


#: The head of an event line as the store writes it (compact JSON, `ts` then `kind`), at each
#: line's start in a stretch of the log.
_HEAD = re.compile(rb'^\{"ts":"[^"\\\n]*","kind":"([a-z_.]+)"', re.M)
#: The kinds whose events wake a waiter only for some data, and the bytes such data is written
#: with: a line without them is only counted (one with them is parsed and judged exactly).
_ONLY_WITH = {
    "agent.output": [f'"kind":"{k}"'.encode() for k in sorted(MEANINGFUL_OUTPUT)],
    "agent.state": [f'"to":"{s}"'.encode() for s in sorted(MEANINGFUL_STATES)],
}
#: The log is read this much at a time: a stretch of plain progress is counted whole.
SCAN_CHUNK = 1 << 16


def _scan(events_path: Path, offset: int, counts: dict[str, int], hits: list[str], more: int,
          chunk: int = SCAN_CHUNK) -> tuple[int, int]:
    """Count the events from `offset` by kind and describe the ones a waiter acts on (as
    EventScan and is_meaningful do); returns the offset read to and the hits left out. Read
    a stretch of whole lines at a time: one whose every line is an event line as the store
    writes it, of kinds and bytes that wake no one (plain progress, most of the log while
    agents stream), is counted from the lines' heads at once; any other stretch line by line."""
    try:
        f = open(events_path, "rb")
    except FileNotFoundError:
        return offset, more
    with f:
        f.seek(offset)
        held = b""
        while True:
            data = f.read(chunk)
            if not data:
                break
            held += data
            cut = held.rfind(b"\n") + 1
            if not cut:
                continue  # a line longer than a chunk: read on
            whole, held = held[:cut], held[cut:]
            offset += cut
            if not _count_quiet(whole, counts):
                more = _scan_lines(whole, counts, hits, more)
    return offset, more  # a last line without its newline is being written: the next scan reads it


def _count_quiet(whole: bytes, counts: dict[str, int]) -> bool:
    """Count a stretch of whole lines by kind when every line is a store-written event line
    that wakes no one; False (nothing counted) otherwise."""
    lines = whole.count(b"\n")
    kinds = _HEAD.findall(whole)
    if len(kinds) != lines or whole.count(b"}\n") != lines:  # a blank, torn or foreign line
        return False
    found: dict[bytes, int] = {}
    for kind in kinds:
        found[kind] = found.get(kind, 0) + 1
    for raw in found:
        kind = raw.decode()
        if kind in MEANINGFUL_KINDS or any(n in whole for n in _ONLY_WITH.get(kind, ())):
            return False
    for raw, n in found.items():
        kind = raw.decode()
        counts[kind] = counts.get(kind, 0) + n
    return True


def _scan_lines(whole: bytes, counts: dict[str, int], hits: list[str], more: int) -> int:
    """_scan's line-by-line reading of a stretch of whole lines; returns the hits left out."""
    from .views.digest_form import describe

    for line in whole[:-1].split(b"\n"):  # (split on newlines alone, as a file's lines are)
        line += b"\n"
        if not line.strip():
            continue
        head = _HEAD.match(line)
        if head is not None and line.endswith(b"}\n"):  # a whole event line as the store writes it
            kind = head.group(1).decode()
            needles = _ONLY_WITH.get(kind)
            if kind not in MEANINGFUL_KINDS and (needles is None or not any(n in line for n in needles)):
                counts[kind] = counts.get(kind, 0) + 1  # counted without parsing it: it wakes no one
                continue
        try:
            e = json.loads(line)
            kind = e["kind"]
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash in an earlier life
        if not isinstance(kind, str):
            continue
        counts[kind] = counts.get(kind, 0) + 1
        if meaningful(kind, e.get("data")):
            if len(hits) < MAX_HAPPENED:
                hits.append(describe(e))
            else:
                more += 1
    return more


def _write_cursor(session_dir: Path, cursor: dict[str, Any]) -> None:
    """wait.json, written as the store writes a model: atomically, two-space JSON."""
    from .store.jsonsafe import dumps_text

    path = session_dir / "wait.json"
    tmp = session_dir / f".wait.json.{os.getpid()}.tmp"
    tmp.write_text(dumps_text(cursor, indent=2) + "\n")
    os.replace(tmp, path)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _wait(session_dir: Path, opts: dict[str, Any], started: float) -> dict[str, Any]:
    from .core.clock import clock_steps, due_clock, due_key, json_time
    from .criteria.advice import quiet_reason
    from .criteria.completion import judge, raw_sizes
    from .views.digest_form import digest, idle_alerts

    stored = _Stored(session_dir)
    record = read_owner(session_dir)
    limits = waiter_limits(session_dir, record)
    session, agents = stored.read()
    if limits is None or any(a.get("state") in LIVE_AGENT_STATES for _, a in agents) and (
            record.get("state") not in RUNNING_STATES or not record_alive(record) or not owner_current(session_dir, agents)):
        raise _HandOver("not on the fast path")  # (with nothing live, each look below asks _settled)
    try:
        cursor = read_json(session_dir / "wait.json")
    except FileNotFoundError:
        cursor = {}
    if not isinstance(cursor, dict):
        raise _HandOver("wait.json")
    cursor = {"events_offset": 0, "at": None, "idle_reported": {}, "told": "", "told_at": -1, "dues_told": [],
              **cursor}
    before = json.dumps(cursor, sort_keys=True)
    events_path = session_dir / "events.jsonl"
    try:
        size = events_path.stat().st_size
    except FileNotFoundError:
        size = 0
    end = cursor["events_offset"] if isinstance(cursor["events_offset"], int) and cursor["events_offset"] <= size else 0
    counts: dict[str, int] = {}
    hits: list[str] = []
    more = 0
    notify = None  # `--timeout 0` looks once and never sleeps: no watch (nor ctypes) for it
    if opts["timeout"] > 0:
        from .runtime import inotify

        notify = inotify.Inotify(str(session_dir))  # before the first look: a bell after it is seen
    try:
        if notify is not None and notify.watch(str(session_dir), inotify.IN_MOVED_TO | inotify.IN_CREATE) is None:
            raise _HandOver("the session folder is gone")
        checked = time.monotonic()
        look_at, rang = 0.0, True  # when the events and agents are next read (the first look: now)
        while True:
            if time.monotonic() - checked >= LIVENESS_CHECK:
                checked = time.monotonic()
                record = read_owner(session_dir)
                if record.get("state") not in RUNNING_STATES or not record_alive(record) \
                        or waiter_limits(session_dir, record) != limits:
                    raise _HandOver("the owner ended")
            if rang or time.monotonic() >= look_at:  # else woken for the owner's liveness alone
                end, more = _scan(events_path, end, counts, hits, more)
                session, pairs = stored.read()
                agents_now = [a for _, a in pairs]
                live = any(a.get("state") in LIVE_AGENT_STATES for a in agents_now)
                if not live:
                    _settled(session_dir, limits, pairs)  # what is stored is final, or the full command syncs
                at = _now()
                idle, idle_due = ([], None) if session.get("coordinated") else \
                    idle_alerts(agents_now, cursor["idle_reported"], opts["idle_after"], at)
                triggers = hits + ([f"… and {more} more"] if more else []) + idle
                dues = clock_steps(session, agents_now, limits["stall_after_seconds"], limits["run_wall_seconds"])
                reached = [d for d in dues if d["at"] <= at and due_key(d) not in cursor["dues_told"]]
                ahead = [d for d in dues if d["at"] > at]
                shown = reached[0] if reached else (ahead[0] if ahead else None)
                woke: Optional[tuple[str, str, str]] = None
                if triggers:
                    woke = ("event", f"{len(triggers)} thing(s) happened", "")
                elif reached:
                    woke = ("due", f"due at {due_clock(reached[0])}: {reached[0]['what']}", reached[0]["command"])
                elif not live:
                    # As the full wait (engine/wait.py) answers a quiet session, when it answers at once.
                    if session.get("state") in ("complete", "aborted"):
                        woke = ("ended", "the session has ended", "")
                        triggers = [woke[1]]
                    elif end != cursor["told_at"]:
                        woke = quiet_reason(session, agents_now, judge(session, agents_now, raw_sizes(session_dir)),
                                            at, limits["on_usage_limit"], due_ahead=bool(ahead))
                    if woke is None:
                        if opts["timeout"] - (time.monotonic() - started) > 0:
                            raise _HandOver("nothing is live")  # it would sleep: the full command's
                        woke = ("timeout", "timed out, nothing new", "")
                else:
                    remaining = opts["timeout"] - (time.monotonic() - started)
                    if remaining <= 0:
                        woke = ("timeout", "timed out, nothing new", "")
                if woke is not None:
                    break
                # Until then only a bell (a batch a waiter acts on, session.json, the owner's
                # record) is a reason to read again: plain progress rings none, and what the
                # clock brings (a due step, an idle alert, the timeout) is known now.
                waits = [remaining]
                if ahead:
                    waits.append((ahead[0]["at"] - _now()).total_seconds() + 0.01)
                if idle_due is not None:
                    waits.append(idle_due)
                look_at = time.monotonic() + max(min(waits), 0.0)
            rang = bool(notify.read(max(min(look_at, checked + LIVENESS_CHECK) - time.monotonic(), 0.0)))
    finally:
        if notify is not None:
            notify.close()
    cursor["events_offset"] = end
    at = _now()
    current = {due_key(d) for d in dues}
    cursor["dues_told"] = sorted({k for k in cursor["dues_told"] if k in current}
                                 | {due_key(d) for d in dues if d["at"] <= at})
    cursor["told_at"] = end
    if woke[0] != "timeout":
        cursor["told"] = f"{woke[1]}: {woke[2]}" if woke[2] else woke[1]
    if json.dumps(cursor, sort_keys=True) != before:  # nothing new: nothing written
        cursor["at"] = json_time(_now())
        _write_cursor(session_dir, cursor)
    session, pairs = stored.read()
    agents_now = [a for _, a in pairs]
    # (no damaged agent here: a meta.json that does not read hands over, the full command reports it)
    verdict = judge(session, agents_now, raw_sizes(session_dir), damaged=[])
    return digest(session, agents_now, verdict, counts, triggers, time.monotonic() - started,
                  timed_out=woke[0] == "timeout", woke=woke, due=shown)


def _settled(session_dir: Path, limits: dict[str, Any], pairs: list[tuple[Path, dict[str, Any]]]) -> None:
    """Hand over unless the stored state of a session with nothing live is final: every agent's
    meta.json read, its output ingested to its end (no byte, run record or batch left for a
    sync), and the limits the owner recorded say what a step does with a parked agent."""
    from .runtime.owner import agent_behind

    if limits.get("on_usage_limit") not in ("wait", "fallback", "ask"):
        raise _HandOver("limits recorded before on_usage_limit")
    if len(pairs) != len(agent_ids(session_dir)):
        raise _HandOver("an agent folder without its meta.json")  # the full command counts it
    wall = time.time()
    if any(agent_behind(folder, agent, wall, -1.0) for folder, agent in pairs):
        raise _HandOver("output not ingested")


def try_fast_wait(argv: list[str]) -> Optional[int]:
    """Run `wait` on the fast path and return the exit code; None to run the full command (with
    the time left, when the fast path had begun waiting)."""
    if os.environ.get("ORCH_FULL_PATH") or not argv or argv[0] != "wait":
        return None
    opts = _options(argv[1:])
    if opts is None:
        return None
    started = time.monotonic()
    try:
        root = state_root()
        session_id = opts["session"] or active_id(root)
        if not session_id or not is_valid_id(session_id):
            return None
        result = _wait(root / "sessions" / session_id, opts, started)
    except _HandOver:
        waited = time.monotonic() - started
        if waited > 0.05:  # it waited: the full command goes on for the rest
            from .engine import wait as waiting

            waiting.handed_over_at = started
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # the full command says what is wrong, in one line
    from .safety.redaction import redact
    from .store.jsonsafe import dumps_text
    from .views.digest_form import digest_text

    if opts["json"]:
        sys.stdout.write(dumps_text(redact(result), indent=2) + "\n")
    else:
        sys.stdout.write(digest_text(result) + "\n")
    sys.stdout.flush()  # the conductor reads the digest now; telling a person comes after
    tell_new_events(root / "sessions" / session_id)
    return 0
