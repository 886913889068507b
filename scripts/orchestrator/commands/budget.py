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
    from ..spend.budget import measure, total_usage
    from ..spend.gate import load_budget
    from ..views.table import cost_label
    from ..spend.raise_budget import parse_raise, raise_budget
    from ..spend.status import budget_status

    store = open_session(session_id)
    if raises:
        for line in raise_budget(store, dict(parse_raise(r) for r in raises)):
            if not as_json:
                click.echo(line)
        if not as_json and store.read_session().state.value == "paused":
            click.echo(f"the session continues at its next step: orch step, or orch resume {store.id}")
    if as_json:
        print_json(budget_status(store))
        return
    session = store.read_session()
    agents = store.agents()
    limits = load_budget(store)
    spends = measure(limits, agents)
    total = total_usage(agents)
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
    then = f"then `orch resume {session.id}` carries it on" if session.state.value == "paused" else \
        "nothing new starts past a reached limit until then"
    for key in dict.fromkeys(s.limit_key for s in spends if s.reached):  # each reached limit once, in order
        click.echo(f"Next: orch budget --raise {key}=N --session {session.id}   # N: the new limit, as you "
                   f"decide; {then}")


COMMANDS = [budget]
