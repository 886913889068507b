"""Pieces every command shares: finding the session, printing JSON, colour only on a tty."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click
from pydantic import BaseModel

from ..safety.redaction import redact
from ..store.jsonsafe import dumps_text
from ..store.sessions import SessionStore, Workspace

session_option = click.option(
    "--session", "-s", "session_id", default=None, metavar="ID",
    help="Session id (default: the active session of this workspace).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def workspace() -> Workspace:
    return Workspace()


def open_session(session_id: Optional[str]) -> SessionStore:
    """The named session, else the folder's active one, else its last; a one-line error when there is none.
    Whatever events the command lets into its log are told (notifications) as it ends."""
    ws = workspace()
    if session_id is None and ws.active_id() is None and ws.session_ids():
        store = ws.open(ws.session_ids()[-1])  # ids sort by creation time
    else:
        store = ws.resolve(session_id)
    return notify_when_done(store)


def notify_when_done(store: SessionStore) -> SessionStore:
    """Read the session's new events for notifications when the command ends, however it ends
    (the store only stores: notify/consumer.py is the reader that tells a person)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        from ..notify.consumer import notify_new_events

        ctx.call_on_close(lambda: notify_new_events(store))
    return store


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


def print_json(obj: Any) -> None:
    """obj as JSON on stdout: redacted, and always JSON (no NaN or Infinity: store.jsonsafe)."""
    click.echo(dumps_text(redact(to_jsonable(obj)), indent=2))


def use_color() -> bool:
    return sys.stdout.isatty()


def style(text: str, **kw: Any) -> str:
    return click.style(text, **kw) if use_color() else text


def cwd_path(value: Optional[str]) -> Path:
    return Path(value).resolve() if value else Path.cwd()
