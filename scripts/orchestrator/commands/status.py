"""orch list / status — where every agent stands (on state as fresh as a sync's: read as the session's
ingest owner keeps it, else synced first; the only writes are ingest's)."""

from __future__ import annotations

import click

from ..runtime.ingest import refresh_session, sync_agent
from ..runtime.owner import owner_line, owner_summary
from ..runtime.runs import require_agent
from ..views.render import AGENT_HEADER, agent_rows, table
from ..views.summary import agent_summary
from ..views.table import list_text, status_text
from .common import json_option, open_session, print_json, session_option, use_color


@click.command("list")
@session_option
@click.option("--worktrees", is_flag=True, help="List the session's git worktrees and branches instead.")
@json_option
def list_agents(session_id, worktrees, as_json):
    """List the session's agents, one line each (or, with --worktrees, its worktrees)."""
    store = open_session(session_id)
    refresh_session(store)
    agents = store.agents()
    if worktrees:
        _list_worktrees(store.read_session(), agents, as_json)
        return
    if as_json:
        print_json([agent_summary(a) for a in agents])
        return
    # The same renderer as the fast read path (fastpath.py), over the stored form.
    click.echo(list_text(store.id, [a.model_dump(mode="json") for a in agents], colour=use_color()))


def _list_worktrees(session, agents, as_json: bool) -> None:
    from ..engine import integration

    if not integration.uses_worktrees(session):
        if as_json:
            print_json([])
            return
        click.echo(f"Session {session.id} works in the shared folder"
                   f"{': ' + session.git.reason if session.git else ''}; it has no worktrees.")
        return
    rows = integration.listing(session, agents)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        gone = "" if r["present"] else "  (removed)"
        click.echo(f"{r['name']}  {r['branch']}  {r['worktree']}{gone}")


@click.command()
@click.argument("agent_id", required=False)
@session_option
@json_option
def status(agent_id, session_id, as_json):
    """State of every agent (or one): activity, tools, files, denials, tokens, exit code."""
    store = open_session(session_id)
    if agent_id:
        require_agent(store, agent_id)
        sync_agent(store, agent_id)
        agent = store.read_agent(agent_id)
        if as_json:
            print_json(agent_summary(agent))
            return
        s = agent_summary(agent)
        click.echo(table(agent_rows([agent], use_color()), AGENT_HEADER))
        click.echo(f"\nstate: {s['state']} — {s['reason']}")
        click.echo(f"CLI session: {s['cli_session_id'] or '-'}   pid: {s['pid'] or '-'}   runs: {s['runs']}   "
                   f"permission: {s['rung']}")
        if s["files_changed"]:
            click.echo("files changed: " + ", ".join(s["files_changed"]))
        for d in s["denials"]:
            click.echo(f"denied: {d.get('tool')} {d.get('target') or ''} (run {d.get('run')})")
        if s["errors"]:
            click.echo("errors: " + " | ".join(s["errors"]))
        if agent.stats.last_text:
            click.echo(f"last said: {agent.stats.last_text[:300]}")
        return
    refresh_session(store)
    session = store.read_session()
    agents = store.agents()
    if as_json:
        print_json({"session": session.id, "goal": session.goal, "state": session.state.value,
                    "reason": session.stop_reason, "round": session.round,
                    "waiting": {t.id: t.waiting for t in session.tasks if t.waiting and t.state.value == "queued"},
                    "agents": [agent_summary(a) for a in agents], "ingest": owner_summary(store.path)})
        return
    # The same renderer as the fast read path (fastpath.py), over the stored form.
    stored = [a.model_dump(mode="json") for a in agents]
    click.echo(status_text(session.model_dump(mode="json"), stored, colour=use_color(),
                           ingest=owner_line(store.path, stored)))


COMMANDS = [list_agents, status]
