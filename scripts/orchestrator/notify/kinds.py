"""The event kinds that may send a notification: the consumer reads only lines of these kinds."""

from __future__ import annotations

from ..core.meaningful import NOTIFY_KINDS
from ..core.models import EventKind

#: The kinds that may send one (a usage limit's parking says "limit_parked" with its own
#: event, agent.parked; an exit for a usage limit then does not). The plain values live in
#: core/meaningful.py, where the fast read paths look them up without loading the models.
TRIGGER_KINDS = frozenset(EventKind(value) for value in NOTIFY_KINDS)
