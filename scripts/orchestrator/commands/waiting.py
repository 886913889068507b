"""orch wait / monitor / check — watching a session and judging whether it is finished."""

from __future__ import annotations

import sys
import time

import click

from ..criteria.evaluate import evaluate
from ..core.models import AgentState
from ..runtime.ingest import refresh_session
from ..views.digest_form import digest_text
from ..views.render import AGENT_HEADER, agent_rows, table
from ..engine.wait import wait_for_change
from ..notify.consumer import notify_new_events
from ..runtime.watch import SessionWatcher
from .common import json_option, open_session, print_json, session_option, style, use_color


def print_digest(d: dict) -> None:
    click.echo(digest_text(d))


@click.command()
@session_option
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Return after this many seconds.")
@click.option("--idle-after", type=float, default=30.0, show_default=True,
              help="Report an agent left idle this long.")
@click.option("--silent-after", type=float, default=None,
              help="Seconds without output before a running agent counts as silent (default 90, ORCH_SILENT_AFTER).")
@click.option("--any", "any_event", is_flag=True, help="Return on any new event, not only meaningful ones.")
@json_option
def wait(session_id, timeout, idle_after, silent_after, any_event, as_json):
    """Block until something worth acting on happens (or the timeout), then print a digest."""
    if timeout < 0:
        raise click.BadParameter("must be >= 0", param_hint="--timeout")
    from ..engine import wait as waiting

    store = open_session(session_id)
    # A wait the fast path began and handed over goes on from its start, for the time left.
    digest = wait_for_change(store, timeout=timeout, idle_after=idle_after, silent_after=silent_after,
                             any_event=any_event, since=waiting.handed_over_at)
    if as_json:
        print_json(digest)
    else:
        print_digest(digest)


@click.command()
@session_option
@click.option("--interval", type=float, default=1.0, show_default=True, help="Redraw at most this often.")
@click.option("--once", is_flag=True, help="Draw one frame and exit (what /orch-monitor shows).")
def monitor(session_id, interval, once):
    """A continuously updating view of the session until it ends (Ctrl-C to leave)."""
    store = open_session(session_id)
    tty = use_color() and not once
    with SessionWatcher(store) as watcher:
        while True:
            refresh_session(store)
            session = store.read_session()
            agents = store.agents()
            result = evaluate(store)
            frame = [f"orch monitor — session {session.id} ({session.state.value}, round {session.round}) — "
                     f"{session.goal or 'no goal'}", ""]
            frame.append(table(agent_rows(agents, click.style if tty else None), AGENT_HEADER) if agents
                         else "No agents yet.")
            open_b = [b for b in session.blockers if b.state.value != "verified"]
            frame += ["", f"tasks: {sum(1 for t in session.tasks if t.state.value == 'done')}/{len(session.tasks)} done"
                      f"   blockers open: {len(open_b)}/{len(session.blockers)}"
                      f"   criteria: {'MET' if result.ok else 'not met'}"]
            if session.todo:
                frame.append(f"in progress: {session.todo}")
            for a in agents:
                if a.state in (AgentState.DENIED, AgentState.FAILED, AgentState.SILENT, AgentState.BLOCKED_BY_POLICY):
                    frame.append(style(f"! {a.id} {a.state.value}: {a.state_reason}", fg="red"))
            if result.next_command:
                frame.append(f"next: {result.next_command}")
            if tty:
                click.echo("\x1b[H\x1b[2J", nl=False)
            click.echo("\n".join(frame))
            live = any(a.state in (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT) for a in agents)
            if once or (session.state.value != "active" and not live):
                return
            if not tty:
                click.echo("")
            sys.stdout.flush()
            notify_new_events(store)  # a live view runs for long: tell what its syncs let in as it goes
            watcher.sleep(5.0)
            time.sleep(interval)


COMMANDS = [wait, monitor]
