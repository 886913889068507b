"""orch retry — continue a task that failed its attempts (optionally on another CLI)."""

from __future__ import annotations

import click

from ..adapters import ADAPTERS
from ..engine.continuation import retry_task
from ..engine.coordinator import step as coordinator_step
from .common import json_option, open_session, print_json, session_option


@click.command()
@click.argument("task_id")
@click.option("--cli", type=click.Choice(list(ADAPTERS)), default=None,
              help="Run it on this CLI instead (e.g. when the first one is not logged in).")
@session_option
@json_option
def retry(task_id, cli, session_id, as_json):
    """Re-queue a failed task (reactivating its stopped session) and start it at once."""
    store = open_session(session_id)
    line = retry_task(store, task_id, cli)
    result = coordinator_step(store)
    if as_json:
        print_json({"session": store.id, "retried": task_id, "cli": cli, "session_state": result.session_state,
                    "actions": result.actions})
        return
    click.echo(line)
    for a in result.actions:
        click.echo(f"- {a}")
    click.echo(f"Next: orch wait   # the conductor loop goes on (or `orch resume {store.id}` for the autopilot)")


COMMANDS = [retry]
