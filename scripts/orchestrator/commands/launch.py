"""orch launch / abort — start one agent by hand, or end agents' processes."""

from __future__ import annotations

from pathlib import Path

import click

from ..adapters import ADAPTERS, OFFLINE_CLI, get_adapter
from ..core.errors import InvalidInput
from ..core.models import AgentState, Permission, Role
from ..runtime.ingest import sync_agent, sync_session
from ..runtime.finished import nothing_to_abort
from ..runtime.workers import abort_agent, launch_agent, live_run, require_agent
from ..views.summary import agent_summary
from .common import cwd_path, json_option, notify_when_done, open_session, print_json, session_option, workspace


@click.command()
@click.option("--cli", "cli_name", required=True, type=click.Choice(list(ADAPTERS)))
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--prompt", default=None, help="The task, as text.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None, help="The task, from a file.")
@click.option("--cwd", default=None, help="Working directory of the agent (default: here).")
@click.option("--permission", type=click.Choice([p.value for p in Permission]), default=None,
              help="Start at this level (default: the role's usual level, capped by policy).")
@click.option("--format", "sim_format", type=click.Choice(list(get_adapter(OFFLINE_CLI).variants)), default=None,
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
    if sim_format and sim_format not in get_adapter(cli_name).variants:
        raise InvalidInput(f"--format is for a CLI that speaks several stream formats; {cli_name} does not")
    workdir = cwd_path(cwd)
    from ..safety.policy import check_policy

    get_adapter(cli_name).executable()  # a missing CLI or an invalid policy: one line, and no empty session
    check_policy(workspace(), workdir)  # extra_dirs too, resolved against the folder the agent works in
    store, other = workspace().resolve_or_create(session_id, workdir)
    notify_when_done(store)
    if other is not None and other.id == store.id:  # stopped or paused: a person decides first
        steps = next_steps_of(store)
        raise InvalidInput(f"the active session {store.id} is {other.state.value} ({other.stop_reason or 'no reason'}); "
                           f"continue it first (`{steps}`), or launch with --session ID")
    if other is not None:
        click.echo(f"note: the active session {other.id} is {other.state.value}: launching into a new session "
                   f"{store.id}", err=True)
    grant = Grant(level=Permission(permission)) if permission else None
    with store.step_lock():  # never between a step's assignment and its start, nor a step between ours
        agent = launch_agent(store, cli=cli_name, role=Role(role), prompt=prompt, cwd=workdir, grant=grant,
                             sim_format=sim_format, create_task=True)
    if as_json:
        print_json(agent_summary(agent) | {"session": store.id})
        return
    click.echo(f"session {store.id}: launched {agent.id} ({agent.cli}, {agent.role.value}, "
               f"{agent.rung}) pid {agent.pid}", err=True)
    click.echo(agent.id)


def next_steps_of(store) -> str:
    """The first thing that continues the session, as `orch check` says it."""
    from ..criteria.evaluate import evaluate

    return evaluate(store).next_command.partition("#")[0].strip()


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
    sync_session(store)
    if all_agents:
        targets = [a.id for a in store.agents() if live_run(a) or a.state in
                   (AgentState.STARTING, AgentState.RUNNING, AgentState.SILENT, AgentState.IDLE,
                    AgentState.DENIED, AgentState.BLOCKED_BY_POLICY, AgentState.PARKED)]
    else:
        require_agent(store, agent_id)
        targets = [agent_id]
        unchanged = nothing_to_abort(store.read_agent(agent_id))
        if unchanged:  # a finished agent's history is not rewritten as an abort
            if as_json:
                print_json({"agent": agent_id, "aborted": False, "message": unchanged})
            else:
                click.echo(unchanged)
            return
    done = []
    for a in targets:
        abort_agent(store, a, grace=grace)
        sync_agent(store, a)
        done.append(store.read_agent(a))
    if as_json:
        print_json([agent_summary(a) for a in done])
        return
    if not done:
        click.echo("No live agents to abort.")
    for a in done:
        click.echo(f"{a.id}: aborted (exit {a.exit_code if a.exit_code is not None else '-'})")


COMMANDS = [launch, abort]
