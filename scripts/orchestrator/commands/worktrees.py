"""orch land / orch clean — take a session's result into your tree; remove its worktrees."""

from __future__ import annotations

import click

from ..core.errors import InvalidInput, OrchError
from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import SessionState
from ..engine import integration
from .common import json_option, open_session, print_json


class LandConflicts(OrchError):
    """Landing would overwrite work done after the session started: nothing was written (exit 1)."""

    exit_code = 1


@click.command()
@click.argument("session_id", required=False)
@click.option("--commit", "mode", flag_value="commit", help="Also make the changes one commit on your current branch.")
@click.option("--squash", "mode", flag_value="squash", help="Also stage them in your index (you commit).")
@click.option("--merge", "mode", flag_value="merge",
              help="A merge commit joining the session's history (orch/SESSION) to your branch.")
@click.option("--anyway", is_flag=True, help="Land a session that is not complete (stopped, or still active).")
@json_option
def land(session_id, mode, anyway, as_json):
    """Take SESSION's result (default: this folder's active session) into your working tree.

    The session's changes — from its base, which already held your uncommitted work — are
    applied to the working tree as it is now: your staged and unstaged edits and untracked
    files stay as they are. A file you changed since the session started in the same place
    is a conflict: every one is listed, and nothing is written. The default comes from the
    policy's [git] land ("apply"). Nothing is ever pushed.
    """
    from ..engine.landing import land as land_session

    store = open_session(session_id)
    landing = land_session(store, mode, anyway)
    p = landing.plan
    if as_json:
        print_json({"session": landing.session, "mode": landing.mode, "landed": landing.landed is not None,
                    "conflicts": p.conflicts, "files": landing.landed.files if landing.landed else [],
                    "commit": landing.landed.commit if landing.landed else None,
                    "uncommitted": landing.landed.uncommitted if landing.landed else [],
                    "next_steps": landing.next_steps})
        if p.conflicts:
            raise click.exceptions.Exit(1)
        return
    if p.conflicts:
        for c in p.conflicts:
            click.echo(f"conflict: {c}", err=True)
        raise LandConflicts(f"{len(p.conflicts)} file(s) changed since session {landing.session} started conflict "
                            f"with its changes: nothing was changed — commit or stash your edits to them (or resolve "
                            f"by hand: `git diff {p.base[:12]} {store.read_session().git.integration_branch}`), then "
                            f"run orch land again")
    for line in landing.next_steps:
        click.echo(line)


@click.command()
@click.argument("session_id", required=False)
@click.option("--discard", is_flag=True, help="Also delete the integration branch orch/SESSION (the result).")
@json_option
def clean(session_id, discard, as_json):
    """Remove SESSION's worktrees and its agents' branches (default: this folder's active session).

    The integration branch orch/SESSION — the session's result — stays unless --discard, so
    cleaning never needs the result taken first.
    """
    store = open_session(session_id)
    session = store.read_session()
    if not integration.uses_worktrees(session):
        click.echo(f"session {session.id} worked in the shared folder: it has no worktrees or branches")
        return
    live = [a.id for a in store.agents() if a.state in LIVE_AGENT_STATES]
    if live:
        raise InvalidInput(f"session {session.id} still has working agents ({', '.join(live)}): "
                           f"wait for them or `orch abort --all` first")
    if session.state in (SessionState.ACTIVE, SessionState.PAUSED) and not discard:
        raise InvalidInput(f"session {session.id} is still {session.state.value}: its agents work in these "
                           f"worktrees — finish it (`orch report`) or `orch abort --all`, or pass --discard")
    kept = integration.unlanded(session) and not discard
    trees, branches = integration.clean(session, discard)
    if as_json:
        print_json({"session": session.id, "worktrees": [str(t) for t in trees], "branches": branches,
                    "kept": None if discard else session.git.integration_branch})
        return
    click.echo(f"removed {len(trees)} worktree(s) and {len(branches)} branch(es) of session {session.id}")
    for b in branches:
        click.echo(f"- branch {b}")
    if not discard:
        click.echo(f"kept {session.git.integration_branch}, the session's result"
                   + (f" (not in a branch of yours yet: `orch land {session.id}`)" if kept else ""))


COMMANDS = [land, clean]
