"""orch budget — spend against the policy's limits, and raising them."""

from __future__ import annotations

import click

from .common import json_option, open_session, print_json, session_option


@click.command("budget")
@session_option
@click.option("--raise", "raises", multiple=True, metavar="KEY=VALUE",
              help="Set a limit (session_usd, agent_usd, session_tokens, agent_tokens) in the workspace's "
                   "policy file, e.g. --raise session_usd=20; a paused session continues at its next step.")
@json_option
def budget(session_id, raises, as_json) -> None:
    """Show what the session and each agent spent against the policy's [budget]."""
    from ..core.models import AuditEntry, Event, EventKind
    from ..spend.budget import measure, total_usage
    from ..spend.gate import load_budget
    from ..spend.pricing import cost_label
    from ..spend.raise_budget import parse_raise, raise_limits
    from ..safety.policy import workspace_of

    store = open_session(session_id)
    if raises:
        values = dict(parse_raise(r) for r in raises)
        changes = raise_limits(workspace_of(store), values)
        for key, before, after in changes:
            text = f"budget {key}: {before if before is not None else 'unset'} -> {after:g}"
            store.append_audit(AuditEntry(agent="session", action="budget_raised", denied_tool=key,
                                          rung_before=None if before is None else f"{before:g}",
                                          rung_after=f"{after:g}", rule="orch budget --raise (user)"))
            store.append_event(Event(kind=EventKind.POLICY_DECISION, reason=text, data={"key": key, "after": after}))
            if not as_json:
                click.echo(text)
    session = store.read_session()
    agents = store.agents()
    limits = load_budget(store)
    spends = measure(limits, agents)
    total = total_usage(agents)
    if as_json:
        print_json({"session": session.id, "state": session.state.value, "reason": session.stop_reason,
                    "spent": total, "budget": limits,
                    "limits": [{"key": s.key, "spent": s.spent, "limit": s.limit, "share": round(s.share, 4),
                                "reached": s.reached} for s in spends],
                    "agents": [{"id": a.id, "cli": a.cli, "usage": a.stats.usage} for a in agents]})
        return
    state = session.state.value + (f": {session.stop_reason}" if session.stop_reason else "")
    click.echo(f"Session {session.id} ({state})")
    click.echo(f"Spent: {cost_label(total)}, {total.input_tokens + total.output_tokens} tokens")
    if not spends:
        click.echo("No budget set: add [budget] session_usd = N (or agent_usd, session_tokens, agent_tokens) "
                   "to the policy, or `orch budget --raise session_usd=N`.")
    for s in spends:
        mark = "REACHED" if s.reached else ("warning" if s.share >= limits.warn_at else "ok")
        click.echo(f"- {s.key}: {s.text()} ({s.share:.0%}) {mark}")
    for a in agents:
        u = a.stats.usage
        click.echo(f"  {a.id} ({a.cli}): {cost_label(u)}, {u.input_tokens + u.output_tokens} tokens"
                   + (f", model {u.model}" if u.model else ""))


COMMANDS = [budget]
