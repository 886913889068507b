"""Process identity and signals: a pid is never trusted alone, because pids are reused."""

from __future__ import annotations

import os
import signal
import time

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Optional


def _stat_fields(pid: int) -> Optional[list[str]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return raw[raw.rfind(")") + 2:].split()


def proc_start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_same_process(pid: Optional[int], start: Optional[int]) -> bool:
    """True while the process that was started (pid and start time) is still running."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):  # gone, or a zombie waiting to be reaped
        return False
    return start is None or int(fields[19]) == start


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the group. (The kernel never hands out a
    pid still in use as a process group id, so the group is the one that was started.)"""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def terminate_group(pid: int, start: Optional[int], grace: float = 5.0) -> str:
    """TERM the process's group, then KILL it after `grace` seconds. Returns how it ended.

    The whole group: a CLI's child may outlive its parent on TERM (GitHub Copilot CLI's
    native binary, behind a Node loader that exits at once, goes on shutting down), so the
    group is killed unless all of it is gone within the grace."""
    if not is_same_process(pid, start):
        return "already-gone"
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_same_process(pid, start) and not group_alive(pid):
            return "terminated"
        time.sleep(0.02)
    signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and (is_same_process(pid, start) or group_alive(pid)):
        time.sleep(0.02)
    return "killed"
