"""orch retry — continue a task that failed its attempts (optionally on another CLI)."""

from __future__ import annotations

import click

from ..adapters import ADAPTERS
from ..engine.continuation import retry_task
from ..engine.coordinator import step as coordinator_step
from ..criteria.evaluate import evaluate
from .common import json_option, open_session, print_json, session_option


@click.command()
@click.argument("task_id")
@click.option("--cli", type=click.Choice(list(ADAPTERS)), default=None,
              help="Run it on this CLI instead (e.g. when the first one is not logged in).")
@session_option
@json_option
def retry(task_id, cli, session_id, as_json):
    """Re-queue a failed task (reactivating its stopped session) and start it at once.

    The step that follows starts it on a free agent or a new one (an ad-hoc task: on the agent
    launched for it), unless a concurrency cap or its CLI's usage limit holds it back, as it says."""
    store = open_session(session_id)
    line = retry_task(store, task_id, cli)
    result = coordinator_step(store)
    if as_json:
        print_json({"session": store.id, "retried": task_id, "cli": cli, "session_state": result.session_state,
                    "actions": result.actions, "next": evaluate(store).next_command})
        return
    click.echo(line)
    for a in result.actions:
        click.echo(f"- {a}")
    advice = evaluate(store).next_command  # from the state the step left: the same advice as orch check
    if advice:
        click.echo(f"Next: {advice}")


COMMANDS = [retry]
