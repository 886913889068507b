"""orch start / run / resume / step / demo / report / sessions — a coordinated session."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import click


from ..adapters import ADAPTERS, OFFLINE_CLI, REAL_CLIS, demo_formats, get_adapter, installed_clis
from ..engine.autopilot import run_autopilot
from ..engine.completion import continue_steps
from ..engine.continuation import requeue_failed
from ..engine.coordinator import step as coordinator_step
from ..engine.integration import ensure_set_up, git_line, shared
from ..core.errors import CliMissing, InvalidInput
from ..core.models import Event, EventKind, SessionState, Team
from ..views.reports import write_report
from ..store.sessions import SessionStore, Workspace
from .common import cwd_path, json_option, open_session, print_json, session_option, workspace

CLI_CHOICE = click.Choice(list(ADAPTERS))
DEMO_GOAL = "Build a small text utilities library"
DEMO_FORMATS = demo_formats()


def choose_team(architect: Optional[str], implementer: Optional[str], reviewer: Optional[str],
                implementers: int) -> tuple[Team, list[str]]:
    """Fill in unnamed roles from the installed CLIs; the reviewer from another vendor if possible."""
    notes: list[str] = []
    have = installed_clis()
    if not have and not all((architect, implementer, reviewer)):
        raise CliMissing(f"no agent CLI ({', '.join(REAL_CLIS)}) is installed: install one, or use the offline "
                         "team with `--architect sim --implementer sim --reviewer sim` (or `orch demo`)")
    implementer = implementer or have[0]
    others = [c for c in have if c != implementer]
    reviewer = reviewer or (others[0] if others else implementer)
    architect = architect or next((c for c in have if c not in (implementer, reviewer)), implementer)
    for name in {architect, implementer, reviewer}:
        get_adapter(name).executable()  # a one-line error before anything is created
    if reviewer == implementer and reviewer != OFFLINE_CLI:
        notes.append(f"the reviewer uses the same CLI as the implementer ({reviewer}); "
                     "a reviewer from another vendor catches more")
    formats = {r: DEMO_FORMATS[r] for r, c in (("architect", architect), ("implementer", implementer),
                                               ("reviewer", reviewer)) if c == OFFLINE_CLI}
    return Team(architect=architect, implementer=implementer, reviewer=reviewer, implementers=implementers,
                sim_formats=formats), notes


def create_session(ws: Workspace, goal: str, team: Team, max_rounds: int, cwd: Path,
                   no_worktrees: bool = False, land: Optional[str] = None) -> SessionStore:
    from ..safety.policy import load_policy

    load_policy(ws)  # an invalid policy is a one-line error before any session exists
    if not goal.strip():
        raise InvalidInput("the goal is empty")
    if max_rounds < 1:
        raise InvalidInput("--max-rounds must be at least 1")
    if not cwd.is_dir():
        raise InvalidInput(f"working directory {cwd} does not exist")
    # --no-worktrees is recorded with the session itself; the git set-up follows, and a kill
    # in between is finished by the first step (integration.ensure_set_up).
    no_git = shared("--no-worktrees: agents share the workspace, writers one at a time") if no_worktrees else None
    store = ws.create(cwd, goal=goal.strip(), coordinated=True, team=team, max_rounds=max_rounds, git=no_git)
    if no_git is not None:
        store.append_event(Event(kind=EventKind.GIT_SET_UP, reason=no_git.reason,
                                 data={"git": no_git.model_dump(mode="json", exclude_none=True)}))
    ensure_set_up(store, land)
    return store


def _check_policy(cwd: Optional[str]) -> None:
    """An invalid policy stops a new session before anything is created (one line, exit 2)."""
    from ..safety.policy import check_policy  # loaded on use, like the policy commands

    check_policy(workspace(), cwd_path(cwd))


team_options = [
    click.option("--architect", type=CLI_CHOICE, default=None, help="CLI of the architect."),
    click.option("--implementer", type=CLI_CHOICE, default=None, help="CLI of the implementers."),
    click.option("--reviewer", type=CLI_CHOICE, default=None, help="CLI of the reviewer (best: another vendor)."),
    click.option("--implementers", type=click.IntRange(1, 8), default=1, show_default=True,
                 help="How many implementers may work in parallel."),
    click.option("--max-rounds", type=click.IntRange(1, 50), default=3, show_default=True),
    click.option("--cwd", default=None, help="Folder the team works in (default: here)."),
    click.option("--no-worktrees", is_flag=True, default=False,
                 help="In a git repository, work in the shared folder (writers one at a time) instead of "
                      "a worktree per agent."),
]


def with_team_options(f):
    for opt in reversed(team_options):
        f = opt(f)
    return f


@click.command()
@click.argument("goal")
@with_team_options
@json_option
def start(goal, architect, implementer, reviewer, implementers, max_rounds, cwd, no_worktrees, as_json):
    """Create a coordinated session for GOAL (then drive it with `orch step` or `/orchestrate`)."""
    _check_policy(cwd)
    team, notes = choose_team(architect, implementer, reviewer, implementers)
    store = create_session(workspace(), goal, team, max_rounds, cwd_path(cwd), no_worktrees)
    notes.append(git_line(store.read_session().git))
    if as_json:
        print_json({"session": store.id, "team": team, "notes": notes})
        return
    for n in notes:
        click.echo(f"note: {n}", err=True)
    click.echo(f"session {store.id}: architect {team.architect}, implementer {team.implementer}"
               f" x{team.implementers}, reviewer {team.reviewer}, up to {max_rounds} rounds", err=True)
    click.echo(store.id)


def _drive(store: SessionStore, time_limit: Optional[float]):
    """The autopilot; Ctrl-C leaves the agents working and says how to carry on or stop them."""
    from ..views.progress import Progress

    try:
        with Progress(store, sys.stdout, tty=sys.stdout.isatty()) as progress:
            return run_autopilot(store, time_limit=time_limit, echo=progress.echo)
    except KeyboardInterrupt:
        click.echo(f"\norch: interrupted — the agents keep running in the background; "
                   f"`orch resume {store.id}` carries on, `orch abort --all` stops them", err=True)
        sys.exit(130)


def _finish(result, store: SessionStore) -> None:
    click.echo(f"\n{result.message}")
    if result.report_path:
        click.echo(f"report: {result.report_path}")
    _say_landing(store)
    sys.exit(result.exit_code)


def _say_landing(store: SessionStore) -> None:
    """A complete session in worktrees: how to take its result (`orch land`); a stopped one:
    the command that carries it on."""
    from ..views.reports import git_section

    session = store.read_session()
    lines = git_section(session, session.state is SessionState.COMPLETE).get("landing")
    if lines:
        click.echo("take the result:")
        for line in lines:
            click.echo(f"  {line}")
    steps = continue_steps(session.model_dump(mode="json"))
    if steps:
        click.echo("next:")
        for line in steps:
            click.echo(f"  {line}")


@click.command()
@click.argument("goal")
@with_team_options
@click.option("--time-limit", type=float, default=None, help="Give up after this many seconds (resume later).")
def run(goal, architect, implementer, reviewer, implementers, max_rounds, cwd, no_worktrees, time_limit):
    """Autopilot: start a session for GOAL and drive it until the completion criteria hold."""
    _check_policy(cwd)
    team, notes = choose_team(architect, implementer, reviewer, implementers)
    store = create_session(workspace(), goal, team, max_rounds, cwd_path(cwd), no_worktrees)
    notes.append(git_line(store.read_session().git))
    for n in notes:
        click.echo(f"note: {n}", err=True)
    click.echo(f"session {store.id}: {goal}")
    _finish(_drive(store, time_limit), store)


@click.command()
@click.argument("session_id", required=False)
@click.option("--max-rounds", type=click.IntRange(1, 50), default=None, help="Raise the round limit.")
@click.option("--time-limit", type=float, default=None)
def resume(session_id, max_rounds, time_limit):
    """Continue SESSION (default: this folder's active session) after a crash, a stop or a time limit (autopilot)."""
    ws = workspace()
    store = open_session(session_id)
    ws.set_active(store.id)
    resumed = None
    with store.edit_session() as session:
        if session.state in (SessionState.COMPLETE, SessionState.ABORTED):
            raise InvalidInput(f"session {session.id} is {session.state.value}; nothing to resume")
        if max_rounds:
            session.max_rounds = max_rounds
        if session.state is SessionState.STOPPED:
            if session.round >= session.max_rounds and session.stop_reason.startswith("round limit"):
                raise InvalidInput(f"session {session.id} stopped at its round limit ({session.max_rounds}); "
                                   "pass --max-rounds to allow more")
            resumed = True
    if resumed:  # failed work goes back to the queue; the stop reason stays in the event log
        requeued = requeue_failed(store, f"continued: `orch resume {store.id}`")
    else:
        requeued = []
        store.append_event(Event(kind=EventKind.SESSION_STATE, reason="resumed", data={"state": "active"}))
    click.echo(f"resuming session {store.id}")
    for line in requeued:
        click.echo(f"- {line}")
    _finish(_drive(store, time_limit), store)


@click.command("step")
@session_option
@json_option
def step_cmd(session_id, as_json):
    """One coordinator step: harvest results, recover denials, assign idle agents, advance rounds."""
    store = open_session(session_id)
    result = coordinator_step(store)
    if as_json:
        print_json({"session": result.session, "session_state": result.session_state, "actions": result.actions})
        return
    if not result.actions and result.session_state == "stopped":  # a step cannot move a stopped session
        session = store.read_session()
        steps = continue_steps(session.model_dump(mode="json")) or [f"orch resume {session.id}"]
        click.echo(f"Session {session.id} is stopped: {session.stop_reason or 'no reason given'}")
        click.echo(f"Next: {steps[0]}")
    elif not result.actions:
        click.echo("Nothing to do right now (agents are working, or everything is finished).")
    for a in result.actions:
        click.echo(f"- {a}")


@click.command()
@click.argument("goal", required=False, default=DEMO_GOAL)
@click.option("--dir", "demo_dir", default=None, help="Folder for the demo (default: a new temporary folder).")
@click.option("--time-limit", type=float, default=120.0, show_default=True)
def demo(goal, demo_dir, time_limit):
    """Run a complete session offline with simulated agents, and print where the report is."""
    base = Path(demo_dir).resolve() if demo_dir else Path(tempfile.mkdtemp(prefix="orch-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    if any(base.iterdir()) and demo_dir:
        raise InvalidInput(f"{base} is not empty: the demo needs a fresh folder")
    os.environ.setdefault("ORCH_SIM_HOME", str(base / ".orch" / "sim"))
    _git_init(base)  # a repository, as real work has: its history is what an agent reads first
    ws = Workspace(base / ".orch")
    team = Team(architect=OFFLINE_CLI, implementer=OFFLINE_CLI, reviewer=OFFLINE_CLI, implementers=1,
                sim_formats=DEMO_FORMATS)
    # The demo's own fresh repository: the result lands in it, where the summary says to look.
    store = create_session(ws, goal, team, max_rounds=3, cwd=base, land="commit")
    shapes = ", ".join(f"{role} speaks {fmt}'s stream format" for role, fmt in DEMO_FORMATS.items())
    click.echo(f"orch demo — offline, simulated agents ({shapes})\nworkspace: {base}\nsession:   {store.id}\n"
               f"goal:      {goal}\n"
               "note:      the simulated agents build the same small text-utilities package whatever the "
               "goal says\n")
    result = _drive(store, time_limit)
    click.echo(f"\n{result.message}")
    if store.read_session().state is SessionState.COMPLETE and store.read_session().git.mode == "worktrees":
        from ..engine.landing import describe, land

        # The demo's own fresh repository: its result lands there, as one commit (`orch land --commit`).
        landing = land(store, "commit")
        click.echo(describe(landing) if landing.landed else "; ".join(landing.plan.conflicts or landing.next_steps))
        write_report(store)  # the report says where the result went
    if result.report_path:
        rep = json.loads(Path(result.report_path).with_suffix(".json").read_text())
        verified = sum(1 for b in rep["blockers"] if b["state"] == "verified")
        caught = [c for c in rep.get("verification", {}).get("caught", []) if c["merge"]]
        escalations = sum(1 for r in rep["recoveries"] if r.get("action") == "escalated")
        tokens = rep["usage_total"]["input_tokens"] + rep["usage_total"]["output_tokens"]
        click.echo(f"summary: {len(rep['rounds'])} rounds, {len(rep['blockers'])} blocker(s) found and {verified} "
                   f"verified fixed ({len(caught)} caught by the project's tests after a merge), "
                   f"{len(rep['denials'])} denial(s) with {escalations} recovered, "
                   f"{len(rep['reassignments'])} idle agent(s) reassigned, {tokens} tokens, "
                   f"{rep['wall_seconds']:.1f} s")
        click.echo(f"tests:   {rep.get('verification', {}).get('final') or 'not run'}")
        click.echo(f"report:  {result.report_path}")
        click.echo(f"         {Path(result.report_path).with_suffix('.json')}")
    launcher = Path(__file__).resolve().parents[2] / "orch"
    orch = str(launcher) if launcher.is_file() else (shutil.which("orch") or "orch")
    click.echo(f"look around: cd {base} && {orch} status   (its state is in {base / '.orch'})")
    sys.exit(result.exit_code)


def _git_init(folder: Path) -> None:
    """Make the demo folder a git repository when git is here (a demo without git still runs)."""
    import subprocess

    if shutil.which("git") and not (folder / ".git").exists():
        subprocess.run(["git", "init", "-q", str(folder)], capture_output=True, check=False)


@click.command()
@session_option
@click.option("--final", is_flag=True, help="Finalize: refuse (exit 1) unless every completion criterion holds.")
@json_option
def report(session_id, final, as_json):
    """Write reports/session-report.md and .json (finalizing the session when the criteria hold)."""
    from ..core.errors import OrchError
    from ..engine.coordinator import finalize
    from ..engine.criteria import evaluate
    from ..runtime.ingest import refresh_session

    store = open_session(session_id)
    refresh_session(store)
    ok = evaluate(store).ok
    try:
        if final or (ok and store.read_session().state is SessionState.ACTIVE):
            finalize(store)
    except OrchError as e:
        click.echo(f"orch: {e.message}", err=True)
        sys.exit(1)
    rep, path = write_report(store)
    if as_json:
        print_json(rep)
        return
    click.echo(f"report: {path}")
    click.echo(f"        {Path(path).with_suffix('.json')}")
    _say_landing(store)
    if not rep.finalized:
        click.echo("not finalized: completion criteria do not hold yet:")
        for m in rep.criteria["missing"]:
            click.echo(f"- {m}")


@click.command()
@json_option
def sessions(as_json):
    """List the sessions of this workspace (the active one is marked)."""
    ws = workspace()
    active = ws.active_id()
    rows = []
    for sid in ws.session_ids():
        s = ws.open(sid).read_session()
        rows.append({"id": sid, "active": sid == active, "state": s.state.value, "round": s.round, "goal": s.goal})
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"No sessions under {ws.root}. Start one with `orch start GOAL` or try `orch demo`.")
    for r in rows:
        click.echo(f"{'*' if r['active'] else ' '} {r['id']}  {r['state']:<8} round {r['round']}  {r['goal']}")


COMMANDS = [start, run, resume, step_cmd, demo, report, sessions]
