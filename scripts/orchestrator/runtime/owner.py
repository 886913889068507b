"""Who ingests a session while its agents are live: the ingest owner's record, whether it is
alive and current, and starting one — without pydantic, so that the fast read path can ask.

One small process per session (runtime/ingest/daemon.py) turns the agents' raw output into
events and state as it is written. It records itself in `ingest.json` with its pid and
start time, exactly as a supervisor records a run, and liveness is checked the same way
(runtime/procs.py). A command that needs fresh state reads it instead of syncing when the
owner is *current*: alive on this machine, and behind by no more than it may be — no
agent's raw bytes, run record or half-committed batch older than `slack(window)` left
unread. Anything else, and the command syncs itself, as before the owner existed.

`ensure_owner` starts one when none runs (the first launch or resume, or any command that
finds it gone while an agent is live); the election is the owner's own (an exclusive
flock on `.ingest.lock`), so two commands starting one at once leave one running.
ORCH_INGEST_OWNER=off never starts one (every command then syncs for itself).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from ..store.reread import read_json
from .procs import is_same_process

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional

RECORD = "ingest.json"
LOCK = ".ingest.lock"
LOG = "ingest.log"
#: seconds: how long plain progress of one agent may wait to be committed (ORCH_INGEST_WINDOW)
DEFAULT_WINDOW = 0.25
RUNNING_STATES = ("starting", "watching")
LIVE_AGENT_STATES = ("starting", "running", "silent")
START_TIMEOUT = 10.0


class BadSetting(ValueError):
    """An ORCH_INGEST_* variable orch cannot use (the commands say so in one line)."""


def ingest_window() -> float:
    """ORCH_INGEST_WINDOW in seconds (default 0.25; 0.01 to 5)."""
    raw = os.environ.get("ORCH_INGEST_WINDOW", "")
    if not raw:
        return DEFAULT_WINDOW
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 5.0:
        raise BadSetting(f"ORCH_INGEST_WINDOW={raw!r} is not a number of seconds from 0.01 to 5")
    return value


def check_settings() -> None:
    """A bad ORCH_INGEST_WINDOW is a one-line `orch:` error before a launch writes anything."""
    try:
        ingest_window()
    except BadSetting as e:
        from ..core.errors import InvalidInput

        raise InvalidInput(str(e)) from None


def owner_wanted() -> bool:
    """False when ORCH_INGEST_OWNER is off (0, off, no, false): commands then ingest for themselves."""
    return os.environ.get("ORCH_INGEST_OWNER", "").strip().lower() not in ("0", "off", "no", "false")


def slack(window: float) -> float:
    """How far behind a live owner may be and still count as current: two of its windows and a
    second to spare (at least 2 s)."""
    return max(2.0, 2 * window + 1.0)


def host_name() -> str:
    """This machine's name, as the owner records it (socket.gethostname's, without importing socket)."""
    return os.uname().nodename


def read_owner(session_dir: Path) -> dict[str, Any]:
    """The owner's record as stored ({} when there is none, or it is damaged)."""
    try:
        record = json.loads((session_dir / RECORD).read_bytes())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def record_alive(record: dict[str, Any]) -> bool:
    """The recorded owner's process still runs, on this machine, and has not said it ended."""
    pid = record.get("pid")
    if type(pid) is not int or record.get("state") not in ("starting", "watching", "ending"):
        return False
    if record.get("host") != host_name():
        return False  # a session folder shared with another machine: its pid means nothing here
    start = record.get("proc_start")
    return is_same_process(pid, start if type(start) is int else None)


def owner_running(session_dir: Path) -> bool:
    """An owner is alive and ingesting (not on its way out)."""
    record = read_owner(session_dir)
    return record.get("state") in RUNNING_STATES and record_alive(record)


def _mtime(path: str) -> Optional[float]:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def agent_behind(folder: Path, agent: dict[str, Any], now: float, late: float) -> bool:
    """True when a sync of this agent (its meta.json as stored) has work older than `late` seconds
    — raw bytes not yet read, a run record newer than the meta — or any at all that no file
    change tells the owner of: a batch left in its lock, a run the meta does not know, a live
    agent whose process is gone (its supervisor was killed with it: the owner would only see it
    at its next liveness check). (Paths as strings: every live read asks this of every agent.)"""
    base = os.fspath(folder) + os.sep
    try:
        if os.stat(base + ".lock").st_size:
            return True
    except FileNotFoundError:
        pass
    runs = agent.get("runs") or []
    cursor = agent.get("ingest") or {}
    if agent.get("state") in LIVE_AGENT_STATES and runs:
        pid, start = runs[-1].get("pid"), runs[-1].get("proc_start")
        if type(pid) is int and not is_same_process(pid, start if type(start) is int else None):
            return True
    if os.path.exists(f"{base}run-{len(runs) + 1}.json"):
        return True
    for name, key in (("stdout.jsonl", "stdout_offset"), ("stderr.log", "stderr_offset")):
        try:
            st = os.stat(base + name)
        except FileNotFoundError:
            continue
        if st.st_size != cursor.get(key, 0) and now - st.st_mtime > late:
            return True
    if runs and runs[-1].get("n") not in (cursor.get("finished_runs") or []):
        record, meta = _mtime(f"{base}run-{len(runs)}.json"), _mtime(base + "meta.json")
        if record is not None and meta is not None and record > meta and now - record > late:
            return True
    return False


def owner_current(session_dir: Path, agents: Iterable[tuple[Path, dict[str, Any]]]) -> bool:
    """The owner runs and no agent (folder, stored meta) is further behind than it may be."""
    record = read_owner(session_dir)
    if record.get("state") not in RUNNING_STATES or not record_alive(record):
        return False
    window = record.get("window")
    late = slack(window if isinstance(window, (int, float)) else DEFAULT_WINDOW)
    now = time.time()
    return not any(agent_behind(folder, agent, now, late) for folder, agent in agents)


def stored_agents(session_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every agent's folder and meta.json as plain JSON (a damaged one is left out: syncs report it)."""
    out = []
    agents_dir = session_dir / "agents"
    try:
        names = sorted(os.listdir(agents_dir))
    except FileNotFoundError:
        return out
    for name in names:
        folder = agents_dir / name
        try:
            agent = read_json(os.path.join(agents_dir, name, "meta.json"))
        except (OSError, ValueError):
            continue
        if isinstance(agent, dict):
            out.append((folder, agent))
    return out


def anything_live(agents: Iterable[tuple[Path, dict[str, Any]]]) -> bool:
    return any(agent.get("state") in LIVE_AGENT_STATES for _, agent in agents)


def _retry_later(record: dict[str, Any]) -> bool:
    """A previous owner could not run here (the kernel refused it a watch) not long ago."""
    value = record.get("retry_after")
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).timestamp() > time.time()
    except ValueError:
        return False


def start_owner(session_dir: Path) -> None:
    """Start an ingest owner for the session, detached (no orch process is its parent); it
    elects itself, so a second one started meanwhile exits at once."""
    import subprocess

    log = session_dir / LOG
    argv = [sys.executable, "-m", "orchestrator.runtime.ingest.daemon", str(session_dir)]
    # cwd: the session folder, orch's own (`-m` puts the cwd on the import path).
    proc = subprocess.Popen(["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >/dev/null 2>>"$log" &', "owner",
                             str(log), *argv], cwd=session_dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)
    try:
        proc.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()


def ensure_owner(session_dir: Path) -> bool:
    """Start an ingest owner unless one runs (or is switched off, or could not run here lately);
    True when one was started."""
    if not owner_wanted():
        return False
    record = read_owner(session_dir)
    if record.get("state") in RUNNING_STATES and record_alive(record):
        return False
    if record.get("state") == "ended" and _retry_later(record):
        return False
    if record.get("state") not in ("ending", "ended") and _election_held(session_dir):
        return False  # one is starting (its record not written yet): a second would only lose the election
    try:
        start_owner(session_dir)
    except OSError:
        return False  # commands ingest for themselves
    return True


#: The settings that decide the limits a waiter takes from the owner (engine/due.py, runtime/stall.py).
LIMIT_SETTINGS = ("ORCH_STALL_AFTER", "ORCH_SILENT_AFTER")


def limit_settings() -> dict[str, Optional[str]]:
    return {name: os.environ.get(name) for name in LIMIT_SETTINGS}


def policy_stamp(session_dir: Path) -> Optional[list[int]]:
    """The workspace policy's (<state root>/policy.toml) mtime_ns, size and inode; None when there is none."""
    try:
        st = (session_dir.parent.parent / "policy.toml").stat()
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def waiter_limits(session_dir: Path, record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The limits the owner recorded, when they hold for this process too: the policy file is the
    one the owner read and this process's settings are the owner's; else None."""
    limits = record.get("limits")
    if not isinstance(limits, dict) or limits.get("settings") != limit_settings() \
            or limits.get("policy_stamp") != policy_stamp(session_dir):
        return None
    return limits


def _election_held(session_dir: Path) -> bool:
    """True when a process holds the session's owner lock (an owner elected, or starting)."""
    import fcntl

    try:
        fd = os.open(session_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def owner_line(session_dir: Path, agents: Iterable[dict[str, Any]]) -> Optional[str]:
    """What `orch status` says of the ingest while an agent is live or an owner runs (None otherwise):
    the owner's pid and start, or that each command ingests for itself."""
    record = read_owner(session_dir)
    if record_alive(record):
        since = str(record.get("started_at", ""))[11:19]
        return f"ingest: owner pid {record.get('pid')}, since {since} UTC, {record.get('state')}"
    if not any(a.get("state") in LIVE_AGENT_STATES for a in agents):
        return None
    if not owner_wanted():
        return "ingest: by each command (ORCH_INGEST_OWNER is off)"
    why = record.get("reason") if record.get("state") == "ended" else ("killed" if record else "")
    return "ingest: by each command" + (f" (the owner ended: {why})" if why else "")


def owner_summary(session_dir: Path) -> dict[str, Any]:
    """The owner for `status --json`: whether it runs, its pid, start, state and window."""
    record = read_owner(session_dir)
    return {"running": record_alive(record), "pid": record.get("pid"), "started_at": record.get("started_at"),
            "state": record.get("state"), "window": record.get("window"), "reason": record.get("reason") or ""}
