"""orch allow / deny / audit — the user's word on what the policy blocked, and the trail."""

from __future__ import annotations

import click

from .common import json_option, open_session, print_json, session_option

# The engine is imported inside each command: every orch invocation loads this module,
# and only allow/deny need the recovery machinery.


@click.command()
@click.argument("agent_id")
@session_option
def allow(agent_id: str, session_id) -> None:
    """Grant a blocked agent, once, what it was refused, and resume it in the same CLI session."""
    from ..recovery.recover import allow_pending
    from ..runtime.workers import require_agent

    store = open_session(session_id)
    require_agent(store, agent_id)
    agent, decision = allow_pending(store, agent_id)
    click.echo(f"{agent_id}: allowed once at {decision.grant.name} [{decision.rule}]; resumed (run {agent.runs[-1].n})")


@click.command()
@click.argument("agent_id")
@click.option("--retire", is_flag=True, help="Retire the agent instead of letting it continue without the action.")
@session_option
def deny(agent_id: str, retire: bool, session_id) -> None:
    """Refuse what a blocked agent asked for: it continues without it (or is retired)."""
    from ..recovery.recover import deny_pending
    from ..runtime.workers import require_agent

    store = open_session(session_id)
    require_agent(store, agent_id)
    agent = deny_pending(store, agent_id, retire=retire)
    if retire:
        click.echo(f"{agent_id}: denied; retired")
    else:
        click.echo(f"{agent_id}: denied; resumed without it (run {agent.runs[-1].n})")


@click.command()
@session_option
@json_option
def audit(session_id, as_json: bool) -> None:
    """The session's permission changes: escalations, blocks, allows, denies."""
    store = open_session(session_id)
    entries = store.read_audit()
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo(f"Session {store.id} has no permission changes yet.")
        return
    for e in entries:
        target = f" {e.denied_target}" if e.denied_target else ""
        rungs = f" {e.rung_before} → {e.rung_after}" if e.rung_after else f" at {e.rung_before}"
        click.echo(f"{e.ts:%H:%M:%S} {e.agent} {e.action}{rungs}: {e.denied_tool}{target} [{e.rule}]")


COMMANDS = [allow, deny, audit]
