"""Notifications as a reader of the event log: what happened since the cursor, told once.

The store only stores. Whoever has just let events into a session's log — a command that
synced or stepped (through commands/common.py, as the command ends), the autopilot after
each step and wait, the hooks, the dashboard's feed — calls `notify_new_events`, which reads
the log from its cursor (`notify.json`, a byte offset, as the dashboard's feed reads by
offset), queues the messages those events call for (notify/outbox.py) and moves the cursor.

Exactly once, whoever reads and whenever a reader dies: the cursor moves under the
session's notify lock, so two readers never read the same events; and every message is
spooled under a key naming its event (`<session>@<offset>`), which the outbox queues only
once — so a reader killed after spooling and before moving the cursor makes the next
reader find the same events and queue nothing twice. With no URL configured the cursor
still moves: notifications tell what happens while they are configured, not the past.
"""

from __future__ import annotations

from ..core.models import now
from ..store.sessions import SessionStore
from .kinds import TRIGGER_KINDS
from .messages import may_notify, message_for
from .outbox import enqueue, root_of
from .settings import load_notify_settings
from .urls import notify_urls


def notify_new_events(store: SessionStore) -> int:
    """Queue the notifications the events past the cursor call for and move the cursor; how
    many were queued. Cheap when nothing is new (a stat and a small read); never raises."""
    try:
        size = store.events_size()
        if store.read_notify_cursor().events_offset >= size:
            return 0
        with store.notify_lock():
            return _read_and_queue(store)
    except Exception:  # a notification must never break the command that let the events in
        return 0


def _read_and_queue(store: SessionStore) -> int:
    cursor = store.read_notify_cursor()
    if cursor.events_offset > store.events_size():
        cursor.events_offset = 0  # a log that shrank was replaced: read it from its start
    root = root_of(store)
    wanted = bool(notify_urls(load_notify_settings(root)))
    scan = store.scan_events(cursor.events_offset, kinds=[k.value for k in TRIGGER_KINDS] if wanted else [])
    keyed = []
    session = None
    for offset, event in scan:
        if event.kind not in TRIGGER_KINDS or not may_notify(event):
            continue
        session = session or store.read_session()
        message = message_for(event, session, root)
        if message is not None:
            message.key = message.key or f"{store.id}@{offset}"
            keyed.append(message)
    queued = enqueue(root, session, keyed) if keyed else 0
    if scan.end != cursor.events_offset:
        cursor.events_offset, cursor.at = scan.end, now()
        store.write_notify_cursor(cursor)
    return queued
