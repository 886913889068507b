"""The fast read path: `orch status`, `orch list` and `orch check` without click, pydantic or a sync.

When there is nothing for a command to sync, the answer is a pure function of the stored
JSON: every agent of the session is settled (not live, its last run finished and every
byte of its output ingested, no half-committed batch), or agents are live and the
session's ingest owner is current (runtime/owner.py: it runs, and nothing it has yet to
commit is older than it may be — the full command would not sync either). Then these
commands read the files with the standard json module and print with the same renderers
the full commands use (views/table.py, criteria/completion.py), in a fraction of the
start-up time. In every other case (an owner gone or behind, --json, an agent id,
anything unusual) `try_fast` returns None and the full command runs, syncing first.

ORCH_FULL_PATH=1 turns the fast path off (tests compare both).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .core.ids import is_valid_id
from .core.meaningful import NOTIFY_KINDS
from .runtime.owner import owner_current, owner_line
from .store.paths import active_id, agent_ids, state_root
from .store.reread import read_json

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Optional

LIVE = ("starting", "running", "silent")


def _session_arg(args: list[str]) -> tuple[bool, Optional[str]]:
    """(understood, session id) from what follows the command name."""
    if not args:
        return True, None
    if len(args) == 2 and args[0] in ("--session", "-s"):
        return True, args[1]
    if len(args) == 1 and args[0].startswith("--session="):
        return True, args[0].split("=", 1)[1]
    return False, None


def _settled(folder: Path, agent: dict[str, Any]) -> bool:
    """Nothing for a sync to do for this agent."""
    runs = agent.get("runs") or []
    cursor = agent.get("ingest") or {}
    if not runs or agent.get("state") in LIVE or runs[-1].get("n") not in (cursor.get("finished_runs") or []):
        return False
    base = os.fspath(folder) + os.sep
    for name, key in (("stdout.jsonl", "stdout_offset"), ("stderr.log", "stderr_offset")):
        try:
            if os.stat(base + name).st_size != cursor.get(key, 0):
                return False
        except FileNotFoundError:
            if cursor.get(key, 0):
                return False
    try:
        if os.stat(base + ".lock").st_size:  # a batch a killed ingest left to settle
            return False
    except FileNotFoundError:
        pass
    return not os.path.exists(f"{base}run-{len(runs) + 1}.json")


def _load(session_dir: Path) -> Optional[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The session and its agents as stored, or None when a command would sync first: an
    agent is not settled and the session's ingest owner is not current."""
    try:
        session = json.loads((session_dir / "session.json").read_bytes())
        stored = []
        agents_dir = session_dir / "agents"
        for agent_id in agent_ids(session_dir):
            folder = agents_dir / agent_id
            agent = read_json(os.path.join(agents_dir, agent_id, "meta.json"))
            if not isinstance(agent, dict):
                return None
            stored.append((folder, agent))
        if not all(_settled(folder, agent) for folder, agent in stored) and not owner_current(session_dir, stored):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # the full command says what is wrong, in one line
    if not isinstance(session, dict):
        return None
    return session, [agent for _, agent in stored]


#: A line of a kind that may notify holds one of these (the event's kind is written this way).
_NOTIFY_NEEDLES = tuple(f'"kind":"{k}"'.encode() for k in sorted(NOTIFY_KINDS))
_OVERLAP = max(len(n) for n in _NOTIFY_NEEDLES) - 1  # a needle cut by a chunk's end is found whole


def tell_new_events(session_dir: Path) -> None:
    """What a full command does as it ends (notify/consumer.py): queue the notifications the
    events past the notify cursor call for. Looked at here without the models — only when
    the bytes past the cursor hold the kind of an event that may notify is the consumer
    loaded (it judges each event exactly). Never raises."""
    try:
        size = (session_dir / "events.jsonl").stat().st_size
        try:
            offset = json.loads((session_dir / "notify.json").read_bytes()).get("events_offset", 0)
        except FileNotFoundError:
            offset = 0
        if not isinstance(offset, int) or offset > size:
            offset = 0
        if offset >= size:
            return
        due, tail = False, b""
        with open(session_dir / "events.jsonl", "rb") as f:
            f.seek(offset)
            while not due:
                data = f.read(1 << 20)
                if not data:
                    break
                data = tail + data
                due = any(n in data for n in _NOTIFY_NEEDLES)
                tail = data[-_OVERLAP:]
        if due:
            from .notify.consumer import notify_new_events
            from .store.sessions import SessionStore

            notify_new_events(SessionStore(session_dir))
    except Exception:  # a notification must never break the command that let the events in
        return


def try_fast(argv: list[str]) -> Optional[int]:
    """Run `status`/`list`/`check` on the fast path and return the exit code, or None to run the full command."""
    if os.environ.get("ORCH_FULL_PATH") or not argv or argv[0] not in ("status", "check", "list"):
        return None
    ok, session_id = _session_arg(argv[1:])
    if not ok:
        return None
    try:
        root = state_root()
        session_id = session_id or active_id(root)
        if not session_id or not is_valid_id(session_id):
            return None
        session_dir = root / "sessions" / session_id
        loaded = _load(session_dir)
        if loaded is None:
            return None
        session, agents = loaded
        colour = sys.stdout.isatty()
        if argv[0] == "status":
            from .views.table import status_text

            sys.stdout.write(status_text(session, agents, colour=colour, ingest=owner_line(session_dir, agents)) + "\n")
            tell_new_events(session_dir)
            return 0
        if argv[0] == "list":
            from .views.table import list_text

            sys.stdout.write(list_text(session["id"], agents, colour=colour) + "\n")
            tell_new_events(session_dir)
            return 0
        from .criteria.completion import check_text, judge, raw_sizes

        verdict = judge(session, agents, raw_sizes(session_dir))
        sys.stdout.write(check_text(verdict) + "\n")
        tell_new_events(session_dir)
        return 0 if verdict["ok"] else 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
