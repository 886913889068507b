"""Where a workspace's state is, and which session is active — without pydantic, so that the
fast read path (`fastpath.py`) and the store (`sessions.py`) find the same folders."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.ids import is_valid_id

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Optional

STATE_DIR_NAME = ".orch"


def state_root(cwd: Optional[Path] = None) -> Path:
    """Where orch keeps its state: $ORCH_HOME, else the nearest .orch upward, else ./.orch."""
    env = os.environ.get("ORCH_HOME")
    if env:
        return Path(env).expanduser().resolve()
    start = (cwd or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if (d / STATE_DIR_NAME / "sessions").is_dir():
            return d / STATE_DIR_NAME
    return start / STATE_DIR_NAME


def active_id(root: Path) -> Optional[str]:
    """The id in `<root>/active` when it names an existing session, else None."""
    try:
        value = (root / "active").read_text().strip()
    except FileNotFoundError:
        return None
    if value and is_valid_id(value) and (root / "sessions" / value / "session.json").is_file():
        return value
    return None


def natural_key(name: str) -> tuple:
    """implementer-2 before implementer-10."""
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def agent_ids(session_dir: Path) -> list[str]:
    """The session's agents (those with a meta.json — whatever it is: one replaced by a folder is a
    damaged agent, reported and never written over, not an agent that is not there), in natural order."""
    try:  # (os.scandir and string paths: every read command lists the agents)
        entries = os.scandir(os.path.join(session_dir, "agents"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        return sorted((e.name for e in entries if os.path.lexists(os.path.join(e.path, "meta.json"))), key=natural_key)
