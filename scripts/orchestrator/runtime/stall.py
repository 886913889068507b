"""One setting governs stalls: the stall threshold also decides when an agent counts as silent.

ORCH_STALL_AFTER (or the policy's `stall_after_seconds`) below the display threshold for
silence (ORCH_SILENT_AFTER, 90 s) must still nudge on time, so a waiter wakes at the
smaller of the two.
"""

from __future__ import annotations

import os

from ..core.errors import OrchError
from ..store.sessions import SessionStore
from .ingest import silent_after_default


def stall_after(store: SessionStore) -> float:
    """The session's stall threshold: ORCH_STALL_AFTER, else the workspace policy's."""
    try:
        return float(os.environ["ORCH_STALL_AFTER"])
    except (KeyError, ValueError):
        pass
    from ..safety.policy import load_policy, workspace_of

    try:
        return float(load_policy(workspace_of(store)).limits.stall_after_seconds)
    except (OrchError, OSError, ValueError):
        return silent_after_default()


def silence_threshold(store: SessionStore) -> float:
    """Seconds of quiet after which a waiter looks at an agent again: silent, or stalled."""
    return min(silent_after_default(), stall_after(store))
