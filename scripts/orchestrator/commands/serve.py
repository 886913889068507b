"""orch serve — the live dashboard on a loopback port."""

from __future__ import annotations

import errno
import socket
from typing import Optional

import click

from ..core.errors import OrchError
from ..dashboard.guard import check_bind_host, is_loopback, url_host, workspace_token
from ..notify.serving import forget_serving, record_serving
from ..store.sessions import Workspace
from .common import session_option, workspace

DEFAULT_PORT = 8765


def _pick_session(ws: Workspace, session_id: Optional[str]) -> Optional[str]:
    """The named session, else the active one, else the newest; None in an empty workspace."""
    if session_id:
        return ws.open(session_id).id
    active = ws.active_id()
    if active:
        return active
    ids = ws.session_ids()
    return max(ids, key=lambda s: ws.open(s).read_session().created_at) if ids else None


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket bound before the app is built, so a --port 0 port is known to the Host check."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OrchError(f"port {port} on {host} is in use: pass --port 0 for a free one") from None
        raise OrchError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on: keep the loopback default unless you mean to share the page.")
@session_option
def serve(port: int, host: str, session_id: Optional[str]) -> None:
    """The live dashboard: every session of this workspace, updating as agents work.

    Prints the page's address; the link carries the workspace's token, which the page
    needs to abort an agent, allow or deny what it was blocked on, or raise a budget.
    """
    from ..dashboard.app import run_server

    bind_host = check_bind_host(host)
    ws = workspace()
    chosen = _pick_session(ws, session_id)
    sock = bind_socket(bind_host, port)
    actual_port = sock.getsockname()[1]
    base = f"http://{url_host(bind_host)}:{actual_port}/"
    token = workspace_token(ws.root)  # the workspace's, not a session's: it works before any session exists
    click.echo(f"orch dashboard: {base}{f'?session={chosen}' if chosen else ''}#token={token}")
    if chosen:
        click.echo(f"session {chosen}; writes need the header X-Orch-Token: {token}", err=True)
    else:
        click.echo(f"no session under {ws.root} yet: the page shows the first one when it appears; "
                   f"writes need the header X-Orch-Token: {token}", err=True)
    if not is_loopback(bind_host):
        click.echo(f"warning: listening on {bind_host}, not loopback: anyone who can reach it can read this "
                   "session (writes still need the token)", err=True)
    try:  # from the line on: a Ctrl-C the moment it is read stops the server, not aborts the command
        click.echo("Ctrl-C to stop.", err=True)
        record_serving(ws.root, base)  # notifications link to the page while it is up
        run_server(ws, sock, bind_host=bind_host, default_session=chosen)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled: the shutdown is done, not aborted
    finally:
        sock.close()
        forget_serving(ws.root)
    click.echo("orch dashboard stopped.", err=True)


COMMANDS = [serve]
