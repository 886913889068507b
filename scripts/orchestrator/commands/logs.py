"""orch logs — an agent's events in readable form, or the CLI's own lines (--raw)."""

from __future__ import annotations

from typing import Optional

import click

from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import Event
from ..runtime.ingest import sync_agent
from ..runtime.runs import require_agent
from ..runtime.watch import SessionWatcher
from ..store.sessions import SessionStore
from ..views.render import event_line
from .common import json_option, open_session, session_option


def _agent_events(store: SessionStore, agent_id: str, offset: int = 0) -> tuple[list[tuple[int, Event]], int]:
    events, end = store.read_events_to_end(offset)
    return [(o, e) for o, e in events if e.agent == agent_id], end


def _tail_raw(store: SessionStore, agent_id: str, n: Optional[int]) -> list[str]:
    d = store.agent_dir(agent_id)
    lines: list[str] = []
    for name in ("stdout.jsonl", "stderr.log"):
        p = d / name
        if p.exists():
            prefix = "" if name == "stdout.jsonl" else "[stderr] "
            lines += [prefix + l for l in p.read_text(errors="replace").splitlines()]
    return lines[-n:] if n else lines


@click.command()
@click.argument("agent_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the agent ends.")
@click.option("--tail", "-n", "tail_n", type=int, default=None, help="Only the last N lines.")
@click.option("--raw", is_flag=True, help="The CLI's own lines instead of normalized events.")
@session_option
@json_option
def logs(agent_id, follow, tail_n, raw, session_id, as_json):
    """An agent's events in readable form (--raw for the CLI's own output)."""
    from ..safety.redaction import redact_text

    store = open_session(session_id)
    require_agent(store, agent_id)
    sync_agent(store, agent_id)
    if raw:
        for line in _tail_raw(store, agent_id, tail_n):
            click.echo(redact_text(line))
        return
    events, end = _agent_events(store, agent_id)
    shown = events[-tail_n:] if tail_n else events
    for offset, e in shown:
        click.echo(print_json_line(offset, e) if as_json else event_line(e))
    if not follow:
        if not events and not as_json:
            click.echo(f"{agent_id} has not produced any events yet.")
        return
    with SessionWatcher(store) as watcher:
        while True:
            sync_agent(store, agent_id)
            new, end = _agent_events(store, agent_id, end)
            for offset, e in new:
                click.echo(print_json_line(offset, e) if as_json else event_line(e))
            agent = store.read_agent(agent_id)
            if agent.state not in LIVE_AGENT_STATES:
                click.echo(f"-- {agent_id} is {agent.state.value}: {agent.state_reason}", err=True)
                return
            watcher.sleep(2.0)


def print_json_line(offset: int, e: Event) -> str:
    import json

    return json.dumps({"id": offset, **e.model_dump(mode="json", exclude_none=True)}, ensure_ascii=False)


COMMANDS = [logs]
