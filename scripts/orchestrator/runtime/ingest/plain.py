"""The plain-text lines a CLI printed instead of its JSON stream (e.g. "Not logged in · Please run /login").

A run that printed nothing parseable still said why, in words: those words belong in the
failure's reason, where the conductor and the user read them.
"""

from __future__ import annotations

from ...safety.redaction import redact_text
from ...store.sessions import SessionStore

PLAIN_TAIL_BYTES = 4096


def plain_stdout_tail(store: SessionStore, agent_id: str, start: int = 0, lines: int = 3) -> str:
    """The last non-JSON lines of an agent's stdout since byte `start`, redacted."""
    try:
        with open(store.agent_dir(agent_id) / "stdout.jsonl", "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(start, size - PLAIN_TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines()]
    plain = [line for line in text if line and not line.startswith(("{", "["))]
    return redact_text("\n".join(plain[-lines:]))
