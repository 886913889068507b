"""orch launch / list / status / logs / abort — one agent or all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..errors import InvalidInput
from ..models import AgentState, Event, Permission, Role
from ..monitor import agent_summary, refresh_agent, refresh_session
from ..render import AGENT_HEADER, agent_rows, event_line, table
from ..store import SessionStore
from ..watch import SessionWatcher
from ..workers import abort_agent, launch_agent, live_run, require_agent
from .common import cwd_path, json_option, open_session, print_json, session_option, style, use_color, workspace


@click.command()
# TEMPORARY (branch i18, for the opencode/qwen real-CLI tests): the integrator makes these
# choices come from the adapter registry; until then the two new names are listed by hand.
@click.option("--cli", "cli_name", required=True,
              type=click.Choice(["claude", "codex", "gemini", "opencode", "qwen", "sim"]))
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--prompt", default=None, help="The task, as text.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None, help="The task, from a file.")
@click.option("--cwd", default=None, help="Working directory of the agent (default: here).")
@click.option("--permission", type=click.Choice([p.value for p in Permission]), default=None,
              help="Start at this level (default: the role's usual level, capped by policy).")
@click.option("--format", "sim_format", type=click.Choice(["claude", "codex", "gemini"]), default=None,
              help="sim only: which real CLI's stream shape it speaks.")
@session_option
@json_option
def launch(cli_name, role, prompt, prompt_file, cwd, permission, sim_format, session_id, as_json):
    """Start an agent as a detached, supervised process; prints its id (last line)."""
    from ..adapters import Grant

    if (prompt is None) == (prompt_file is None):
        raise InvalidInput("give exactly one of --prompt and --prompt-file")
    if prompt_file is not None:
        try:
            prompt = Path(prompt_file).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"cannot read prompt file {prompt_file}: {e}") from None
    if sim_format and cli_name != "sim":
        raise InvalidInput("--format is for --cli sim only")
    workdir = cwd_path(cwd)
    store = workspace().resolve_or_create(session_id, workdir)
    grant = Grant(level=Permission(permission)) if permission else None
    agent = launch_agent(store, cli=cli_name, role=Role(role), prompt=prompt, cwd=workdir, grant=grant,
                         sim_format=sim_format, create_task=True)
    if as_json:
        print_json(agent_summary(agent) | {"session": store.id})
        return
    click.echo(f"session {store.id}: launched {agent.id} ({agent.cli}, {agent.role.value}, "
               f"{agent.rung}) pid {agent.pid}", err=True)
    click.echo(agent.id)


@click.command("list")
@session_option
@json_option
def list_agents(session_id, as_json):
    """List the session's agents, one line each."""
    store = open_session(session_id)
    refresh_session(store)
    agents = store.agents()
    if as_json:
        print_json([agent_summary(a) for a in agents])
        return
    if not agents:
        click.echo(f"Session {store.id} has no agents yet. Start one with `orch launch` or `orch step`.")
        return
    click.echo(table(agent_rows(agents, click.style if use_color() else None), AGENT_HEADER))


@click.command()
@click.argument("agent_id", required=False)
@session_option
@json_option
def status(agent_id, session_id, as_json):
    """State of every agent (or one): activity, tools, files, denials, tokens, exit code."""
    store = open_session(session_id)
    if agent_id:
        require_agent(store, agent_id)
        refresh_agent(store, agent_id)
        agent = store.read_agent(agent_id)
        if as_json:
            print_json(agent_summary(agent))
            return
        s = agent_summary(agent)
        click.echo(table(agent_rows([agent], click.style if use_color() else None), AGENT_HEADER))
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
                    "round": session.round, "agents": [agent_summary(a) for a in agents]})
        return
    click.echo(f"Session {session.id} ({session.state.value}, round {session.round}) — "
               f"{session.goal or 'no goal set'}")
    if not agents:
        click.echo("No agents yet.")
        return
    click.echo(table(agent_rows(agents, click.style if use_color() else None), AGENT_HEADER))
    for a in agents:
        if a.state in (AgentState.DENIED, AgentState.FAILED, AgentState.SILENT, AgentState.BLOCKED_BY_POLICY):
            click.echo(style(f"- {a.id} {a.state.value}: {a.state_reason}", fg="red"))


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
    from ..redaction import redact_text

    store = open_session(session_id)
    require_agent(store, agent_id)
    refresh_agent(store, agent_id)
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
            refresh_agent(store, agent_id)
            new, end = _agent_events(store, agent_id, end)
            for offset, e in new:
                click.echo(print_json_line(offset, e) if as_json else event_line(e))
            agent = store.read_agent(agent_id)
            if agent.state not in (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT):
                click.echo(f"-- {agent_id} is {agent.state.value}: {agent.state_reason}", err=True)
                return
            watcher.sleep(2.0)


def print_json_line(offset: int, e: Event) -> str:
    import json

    return json.dumps({"id": offset, **e.model_dump(mode="json", exclude_none=True)}, ensure_ascii=False)


@click.command()
@click.argument("agent_id", required=False)
@click.option("--all", "all_agents", is_flag=True, help="Abort every live agent of the session.")
@click.option("--grace", type=float, default=5.0, show_default=True, help="Seconds between TERM and KILL.")
@session_option
@json_option
def abort(agent_id, all_agents, grace, session_id, as_json):
    """End an agent's whole process group (TERM, then KILL) and record it as aborted."""
    if bool(agent_id) == all_agents:
        raise InvalidInput("name one agent, or pass --all")
    store = open_session(session_id)
    refresh_session(store)
    if all_agents:
        targets = [a.id for a in store.agents() if live_run(a) or a.state in
                   (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT, AgentState.IDLE,
                    AgentState.DENIED, AgentState.BLOCKED_BY_POLICY)]
    else:
        require_agent(store, agent_id)
        targets = [agent_id]
    done = []
    for a in targets:
        abort_agent(store, a, grace=grace)
        refresh_agent(store, a)
        done.append(store.read_agent(a))
    if as_json:
        print_json([agent_summary(a) for a in done])
        return
    if not done:
        click.echo("No live agents to abort.")
    for a in done:
        click.echo(f"{a.id}: aborted (exit {a.exit_code if a.exit_code is not None else '-'})")


COMMANDS = [launch, list_agents, status, logs, abort]
