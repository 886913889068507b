"""Ingest: raw agent output → normalized events → agent state, incrementally.

    read.py      offsets, torn lines, scrubbing the raw files
    split.py     secrets cut in pieces over several lines (deltas, stderr), across ingests too
    fold.py      normalized events → the agent's stats and the run's typed accumulator
    classify.py  a finished run → the agent's next state, why, and the failure kind
    sync.py      the one entry point: sync_agent / sync_session (lock, reconcile, commit),
                 refresh_session (nothing while the session's ingest owner is current)
    resident.py  what a long-lived ingest keeps between batches (the agents it wrote)
    daemon.py    the session's ingest owner: one process syncing agents as they write
"""

from .sync import refresh_session, silent_after_default, stderr_tail, sync_agent, sync_session

__all__ = ["refresh_session", "silent_after_default", "stderr_tail", "sync_agent", "sync_session"]
