"""orch check — exit 0 only when every completion criterion holds (on state as fresh as a sync's)."""

from __future__ import annotations

import sys

import click

from ..criteria.completion import check_text
from ..criteria.evaluate import evaluate
from ..runtime.ingest import refresh_session
from .common import json_option, open_session, print_json, session_option


@click.command()
@session_option
@json_option
def check(session_id, as_json):
    """Exit 0 only when every completion criterion holds; else exit 1 and list what is missing."""
    store = open_session(session_id)
    refresh_session(store)
    result = evaluate(store)
    if as_json:
        print_json(result)
    else:
        click.echo(check_text(result.model_dump(mode="json")))
    sys.exit(0 if result.ok else 1)


COMMANDS = [check]
