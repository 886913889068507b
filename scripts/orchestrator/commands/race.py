"""orch pick — a person chooses a race's winner before it is merged."""

from __future__ import annotations

import click

from ..criteria.evaluate import evaluate
from ..engine.race import pick as record_pick
from ..runtime.ingest import refresh_session
from .common import json_option, open_session, print_json, session_option


@click.command()
@click.argument("task_id")
@click.argument("agent_id")
@click.option("--why", default="", help="Why this candidate (recorded with the choice and in the report).")
@session_option
@json_option
def pick(task_id, agent_id, why, session_id, as_json):
    """Choose AGENT's build as the winner of TASK's race, overriding the judge (before the merge)."""
    store = open_session(session_id)
    line = record_pick(store, task_id, agent_id, why)
    race = store.read_session().race(task_id)
    refresh_session(store)  # the advice judges fresh state, as `orch check` does
    advice = evaluate(store).next_command  # engine/advice.py: the same advice as orch check
    if as_json:
        print_json({"session": store.id, "race": task_id, "picked": agent_id, "why": why, "state": race.state.value,
                    "next": advice})
        return
    click.echo(line)
    if advice:
        click.echo(f"Next: {advice}")


COMMANDS = [pick]
