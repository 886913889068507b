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


from ..adapters import OFFLINE_CLI, REAL_CLIS, demo_formats, demo_panel, get_adapter, installed_clis, parse_seat
from ..criteria.advice import at_round_limit, continue_steps, more_rounds
from ..engine.continuation import requeue_failed
from ..engine.coordinator import step as coordinator_step
from ..engine.integration import ensure_set_up, git_line, shared
from ..core.errors import CliMissing, InvalidInput
from ..core.models import Event, EventKind, SessionState, Team
from ..store.sessions import SessionStore, Workspace
from .common import cwd_path, json_option, open_session, print_json, session_option, workspace

DEMO_GOAL = "Build a small text utilities library"
DEMO_FORMATS = demo_formats()


class SeatType(click.ParamType):
    """A CLI, or the sim speaking one CLI's stream shape: `codex`, `sim/gemini`."""

    name = "CLI"

    def convert(self, value, param, ctx):
        from ..core.errors import OrchError

        try:
            parse_seat(value)
        except OrchError as e:
            self.fail(e.message, param, ctx)
        return value


CLI_CHOICE = SeatType()


def choose_team(architect: Optional[str], implementer: Optional[str], reviewer: Optional[str],
                implementers: int, reviewers: Optional[str] = None, race: Optional[str] = None,
                cwd: Optional[Path] = None, no_worktrees: bool = False) -> tuple[Team, list[str]]:
    """Fill in unnamed roles from the installed CLIs; the reviewer from another vendor if possible;
    a review panel and a race from the options, else the policy's [team] (engine/team.py)."""
    from ..engine import team as seats
    from ..safety.policy import load_policy

    notes: list[str] = []
    reviewer_given = reviewer is not None
    variants: dict[str, Optional[str]] = {}
    for role, given in (("architect", architect), ("implementer", implementer), ("reviewer", reviewer)):
        if given:
            variants[role] = parse_seat(given)[1]
    architect, implementer, reviewer = (parse_seat(x)[0] if x else None for x in (architect, implementer, reviewer))
    defaults = load_policy(workspace()).team
    panel = seats.split_seats(reviewers, "--reviewers") if reviewers else \
        ([] if reviewer_given else list(defaults.reviewers))
    if panel and not reviewer:
        reviewer, variants["reviewer"] = parse_seat(panel[0])
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
    formats = {r: variants.get(r) or DEMO_FORMATS[r] for r, c in (("architect", architect),
                                                                   ("implementer", implementer),
                                                                   ("reviewer", reviewer)) if c == OFFLINE_CLI}
    team = Team(architect=architect, implementer=implementer, reviewer=reviewer, implementers=implementers,
                sim_formats=formats)
    notes += seats.add_panel(team, panel, reviewer_given)
    given = race is not None
    notes += seats.race_pool(team, race if given else str(defaults.race), have)
    notes += seats.check_race_place(team, cwd or Path.cwd(), no_worktrees, given)
    if team.reviewers:  # the panel's members say what the lone-reviewer note said
        notes = [n for n in notes if not n.startswith("the reviewer uses the same CLI")]
    return team, notes


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
    click.option("--reviewers", default=None, metavar="CLI,CLI",
                 help="A review panel: reviewers of different CLIs on each merged commit, one ledger "
                      "(default: the policy's [team] reviewers)."),
    click.option("--race", default=None, metavar="N|CLI,CLI",
                 help="Give each implement task to N implementers of different CLIs (or these CLIs) at once; "
                      "the project's tests pick the one merged (default: the policy's [team] race)."),
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
def start(goal, architect, implementer, reviewer, reviewers, race, implementers, max_rounds, cwd, no_worktrees,
          as_json):
    """Create a coordinated session for GOAL (then drive it with `orch step` or `/orchestrate`)."""
    _check_policy(cwd)
    team, notes = choose_team(architect, implementer, reviewer, implementers, reviewers, race, cwd_path(cwd),
                              no_worktrees)
    store = create_session(workspace(), goal, team, max_rounds, cwd_path(cwd), no_worktrees)
    notes.append(git_line(store.read_session().git))
    if as_json:
        print_json({"session": store.id, "team": team, "notes": notes})
        return
    for n in notes:
        click.echo(f"note: {n}", err=True)
    reviewing = f"review panel {', '.join(team.reviewers)}" if team.reviewers else f"reviewer {team.reviewer}"
    click.echo(f"session {store.id}: architect {team.architect}, implementer {team.implementer}"
               f" x{team.implementers}, {reviewing}, up to {max_rounds} rounds", err=True)
    click.echo(store.id)


def _drive(store: SessionStore, time_limit: Optional[float]):
    """The autopilot; Ctrl-C leaves the agents working and says how to carry on or stop them."""
    from ..views.progress import Progress

    try:
        with Progress(store, sys.stdout, tty=sys.stdout.isatty()) as progress:
            from ..engine.autopilot import run_autopilot  # (not for `orch step`: its watcher, its waits)

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
def run(goal, architect, implementer, reviewer, reviewers, race, implementers, max_rounds, cwd, no_worktrees,
        time_limit):
    """Autopilot: start a session for GOAL and drive it until the completion criteria hold."""
    _check_policy(cwd)
    team, notes = choose_team(architect, implementer, reviewer, implementers, reviewers, race, cwd_path(cwd),
                              no_worktrees)
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
            if at_round_limit(session.model_dump(mode="json")):
                raise InvalidInput(f"session {session.id} stopped at its round limit ({session.max_rounds}): allow "
                                   f"more with `{more_rounds(session.model_dump(mode='json'))}`")
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
    from ..criteria.evaluate import evaluate

    store = open_session(session_id)
    result = coordinator_step(store)
    if as_json:
        print_json({"session": result.session, "session_state": result.session_state, "actions": result.actions,
                    "next": evaluate(store).next_command})
        return
    if not result.actions and result.session_state == "stopped":  # a step cannot move a stopped session
        session = store.read_session()
        click.echo(f"Session {session.id} is stopped: {session.stop_reason or 'no reason given'}")
    elif not result.actions:
        click.echo("Nothing to do in this step.")
    for a in result.actions:
        click.echo(f"- {a}")
    advice = evaluate(store).next_command  # what works from here: the same advice as orch check
    if advice:
        click.echo(f"Next: {advice}")


DEMO_PREFIX = "orch-demo-"
DEMOS_KEPT = 3  # temporary demo folders kept: this one and the two before it
DEMO_BUSY = 600  # seconds: a demo folder written to this recently may still be running; never removed


@click.command()
@click.argument("goal", required=False, default=DEMO_GOAL)
@click.option("--dir", "demo_dir", default=None,
              help=f"Folder for the demo (default: a new {DEMO_PREFIX}* folder in the temporary folder, where the "
                   f"{DEMOS_KEPT} newest are kept and older ones removed).")
@click.option("--time-limit", type=float, default=120.0, show_default=True)
@click.option("--panel", is_flag=True, help="Review with a panel of two reviewers speaking two CLIs' stream shapes.")
@click.option("--serve", "serve_too", is_flag=True,
              help="Show the demo's dashboard while it runs (its own `orch serve`), and after it until Ctrl-C.")
def demo(goal, demo_dir, time_limit, panel, serve_too):
    """Run a complete session offline with simulated agents, and print where the report is."""
    if demo_dir:
        base = Path(demo_dir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise InvalidInput(f"{base} is not empty: the demo needs a fresh folder")
    else:
        removed = _remove_old_demos(Path(tempfile.gettempdir()), keep=DEMOS_KEPT - 1)
        base = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
        if removed:
            click.echo(f"removed {len(removed)} older demo folder(s) ({DEMOS_KEPT} are kept): {', '.join(removed)}")
    os.environ.setdefault("ORCH_SIM_HOME", str(base / ".orch" / "sim"))
    server = _serve_demo(base) if serve_too else None  # before the session: its page shows it appear
    try:
        _git_init(base)  # a repository, as real work has: its history is what an agent reads first
        ws = Workspace(base / ".orch")
        team = Team(architect=OFFLINE_CLI, implementer=OFFLINE_CLI, reviewer=OFFLINE_CLI, implementers=1,
                    sim_formats=dict(DEMO_FORMATS))
        if panel:
            from ..engine.team import add_panel

            add_panel(team, demo_panel(), reviewer_given=False)
        # The demo's own fresh repository: the result lands in it, where the summary says to look.
        store = create_session(ws, goal, team, max_rounds=3, cwd=base, land="commit")
        shapes = ", ".join(f"{role} speaks {fmt}'s stream format" for role, fmt in team.sim_formats.items())
        if team.reviewers:
            shapes += f"; a review panel of {len(team.reviewers)}: " + ", ".join(
                f"{s.partition('/')[2]}'s" for s in team.reviewers) + " formats"
        click.echo(f"orch demo — offline, simulated agents ({shapes})\nworkspace: {base}\nsession:   {store.id}\n"
                   f"goal:      {goal}\n"
                   + (f"dashboard: {server[1]}\n" if server else "")
                   + "note:      the simulated agents build the same small text-utilities package whatever the "
                   "goal says\n")
        _run_demo(store, base, time_limit, server)
    finally:
        if server is not None and server[0].poll() is None:
            server[0].terminate()
            server[0].wait(timeout=15)


def _run_demo(store: SessionStore, base: Path, time_limit: float, server) -> None:
    result = _drive(store, time_limit)
    click.echo(f"\n{result.message}")
    if store.read_session().state is SessionState.COMPLETE and store.read_session().git.mode == "worktrees":
        from ..engine.landing import describe, land
        from ..views.reports import write_report

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
        panel_report = rep.get("panel") or {}
        if panel_report:
            click.echo(f"panel:   {panel_report['reports']} report(s) from {len(panel_report['members'])} reviewers became "
                       f"{panel_report['ledger']} blocker(s) ({panel_report['merged']} found by both)")
            for r in panel_report["reviewers"]:
                click.echo(f"         {r['reviewer']} ({r['cli']}): filed {r['filed']}, {r['unique']} unique to it, "
                           f"{r['confirmed']} confirmed by the other, {r['verified']} verified fixed; "
                           f"{r['tokens']} tokens, {r['cost']}")
        click.echo(f"report:  {result.report_path}")
        click.echo(f"         {Path(result.report_path).with_suffix('.json')}")
    orch = orch_spelling()
    click.echo(f"look around: cd {base} && {orch} status   (its state is in {base / '.orch'})")
    if not server:
        click.echo(f"dashboard:   cd {base} && {orch} serve   (or `orch demo --serve` next time)")
    if base.name.startswith(DEMO_PREFIX) and base.parent == Path(tempfile.gettempdir()):
        click.echo(f"this demo's folder stays until a later demo removes it (the {DEMOS_KEPT} newest "
                   f"{base.parent / DEMO_PREFIX}* are kept)")
    if server:
        try:  # the line is inside: a Ctrl-C the moment it is read (while echo still flushes) stops it too
            click.echo(f"the dashboard stays up at {server[1]} — Ctrl-C to stop it")
            server[0].wait()
        except KeyboardInterrupt:
            pass
    sys.exit(result.exit_code)


def orch_spelling() -> str:
    """How to spell this orch in a printed command: `orch` when that name on PATH runs this very
    installation (a link to this clone's launcher, or an installed command), else the launcher's path."""
    launcher = Path(__file__).resolve().parents[2] / "orch"
    on_path = shutil.which("orch")
    if on_path and (not launcher.is_file() or Path(on_path).resolve() == launcher.resolve()):
        return "orch"
    return str(launcher) if launcher.is_file() else "orch"


def _remove_old_demos(tmp: Path, keep: int) -> list[str]:
    """Remove the user's older demo folders in tmp, keeping the `keep` newest and any written to
    in the last DEMO_BUSY seconds (a demo still running); the folders removed."""
    import time

    demos = []
    for d in tmp.glob(f"{DEMO_PREFIX}*"):
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid() or not (d / ".orch").is_dir():
                continue
            logs = list((d / ".orch" / "sessions").glob("*/events.jsonl"))
            demos.append((max([d.stat().st_mtime] + [log.stat().st_mtime for log in logs]), d))
        except OSError:
            continue
    demos.sort(reverse=True)
    removed = []
    for last, d in demos[keep:]:
        if time.time() - last < DEMO_BUSY:
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            removed.append(str(d))
    return removed


def _serve_demo(base: Path):
    """`orch serve --port 0` on the demo's state, as a child: (its process, the link it printed)."""
    import subprocess

    env = {**os.environ, "ORCH_HOME": str(base / ".orch")}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", "0"], cwd=base, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    first = proc.stdout.readline().strip()
    if not first.startswith("orch dashboard: "):
        proc.kill()
        proc.wait()
        raise InvalidInput(f"the demo's dashboard did not start ({first or 'it printed nothing'}); "
                           f"`cd {base} && orch serve` shows it")
    return proc, first.split(": ", 1)[1]


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
    from ..criteria.evaluate import evaluate
    from ..runtime.ingest import refresh_session
    from ..views.reports import write_report

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
