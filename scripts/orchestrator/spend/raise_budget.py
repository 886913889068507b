"""`orch budget --raise KEY=VALUE`: change a `[budget]` limit in the workspace's policy file.

The file is edited as text (one line per key, in the `[budget]` table, comments and
everything else untouched), validated as a whole, and restored when the result is invalid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..core.errors import InvalidInput, PolicyError
from ..store.sessions import Workspace
from .budget import LIMIT_KEYS

_TABLE = re.compile(r"^\s*\[([^\]]+)\]\s*(?:#.*)?$")


def parse_raise(text: str) -> tuple[str, float]:
    """'session_usd=20' -> ('session_usd', 20.0); a bare number raises session_usd."""
    key, sep, value = text.partition("=")
    if not sep:
        key, value = "session_usd", text
    key = key.strip()
    if key not in LIMIT_KEYS:
        raise InvalidInput(f"--raise {text!r}: the key must be one of {', '.join(LIMIT_KEYS)}")
    try:
        number = float(value.strip().lstrip("$"))
    except ValueError:
        raise InvalidInput(f"--raise {text!r}: {value.strip()!r} is not a number") from None
    if not number > 0 or number != number or number == float("inf"):
        raise InvalidInput(f"--raise {text!r}: a limit must be a positive number")
    if key.endswith("_tokens"):
        if number != int(number):
            raise InvalidInput(f"--raise {text!r}: a token limit is a whole number")
        number = int(number)
    return key, number


def set_budget_lines(text: str, values: dict[str, float]) -> str:
    """The policy text with each key set in its [budget] table (the table added when missing)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if (m := _TABLE.match(line)) and m.group(1).strip() == "budget"),
                 None)
    rendered = {k: f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items()}
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[budget]"] + list(rendered.values())
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if _TABLE.match(lines[i])), len(lines))
    done = set()
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if key in rendered and "=" in lines[i]:
            lines[i] = rendered[key]
            done.add(key)
    missing = [rendered[k] for k in rendered if k not in done]
    lines[start + 1:start + 1] = missing
    return "\n".join(lines) + "\n"


def raise_limits(ws: Workspace, values: dict[str, float]) -> list[tuple[str, Optional[float], float]]:
    """Write the new limits into ws's policy file; returns (key, before, after) per key."""
    from ..safety.policy import load_policy

    before = load_policy(ws).budget
    path: Path = ws.policy_path
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(set_budget_lines(old or "", values), encoding="utf-8")
    try:
        load_policy(ws)
    except PolicyError:
        if old is None:
            path.unlink()
        else:
            path.write_text(old, encoding="utf-8")
        raise
    return [(k, getattr(before, k), v) for k, v in values.items()]


def raise_budget(store, values: dict[str, float]) -> list[str]:
    """Raise limits for the session's workspace and record each change (audit and events); one line each."""
    from ..core.models import AuditEntry, Event, EventKind
    from ..safety.policy import workspace_of

    lines = []
    for key, before, after in raise_limits(workspace_of(store), values):
        text = f"budget {key}: {'unset' if before is None else f'{before:g}'} -> {after:g}"
        store.append_audit(AuditEntry(agent="session", action="budget_raised", denied_tool=key,
                                      rung_before=None if before is None else f"{before:g}",
                                      rung_after=f"{after:g}", rule="orch budget --raise (user)"))
        store.append_event(Event(kind=EventKind.POLICY_DECISION, reason=text, data={"key": key, "after": after}))
        lines.append(text)
    return lines
