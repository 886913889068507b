"""orch clean — remove a finished session's worktrees and branches."""

from __future__ import annotations

import click

from ..core.errors import InvalidInput
from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import SessionState
from ..engine import integration
from .common import json_option, print_json, workspace


@click.command()
@click.argument("session_id")
@click.option("--discard", is_flag=True, help="Also when the integration branch holds work no branch of yours has.")
@json_option
def clean(session_id, discard, as_json):
    """Remove SESSION's worktrees and branches (its integration branch too: take the result first)."""
    store = workspace().open(session_id)
    session = store.read_session()
    if not integration.uses_worktrees(session):
        click.echo(f"session {session.id} worked in the shared folder: it has no worktrees or branches")
        return
    live = [a.id for a in store.agents() if a.state in LIVE_AGENT_STATES]
    if live:
        raise InvalidInput(f"session {session.id} still has working agents ({', '.join(live)}): "
                           f"wait for them or `orch abort --all` first")
    if session.state is SessionState.ACTIVE and not discard:
        raise InvalidInput(f"session {session.id} is still active: finish it (`orch report`), or pass --discard")
    if not discard and integration.unlanded(session):
        raise InvalidInput(f"{session.git.integration_branch} holds the session's result and no branch of yours "
                           f"has it yet: `git merge {session.git.integration_branch}` first, or pass --discard")
    trees, branches = integration.clean(session)
    if as_json:
        print_json({"session": session.id, "worktrees": [str(t) for t in trees], "branches": branches})
        return
    click.echo(f"removed {len(trees)} worktree(s) and {len(branches)} branch(es) of session {session.id}")
    for b in branches:
        click.echo(f"- branch {b}")


COMMANDS = [clean]
