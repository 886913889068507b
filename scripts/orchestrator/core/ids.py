"""What orch accepts as an id (a session, agent, task): safe as a file name anywhere."""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """True when value is safe as a file name: no separators, no leading dot."""
    return bool(_ID_RE.match(value)) and ".." not in value
