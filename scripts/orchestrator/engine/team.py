"""A new session's review panel and race pool, from the command line or the policy's `[team]`.

A seat is a CLI, or a sim member's stream shape ("sim/gemini"): a panel's members and a race's
candidates are each of a different seat, since different vendors catch different defects and
build in different ways. Everything here is checked before a session exists: a bad seat, a
member named twice, a CLI that is not installed or a race wider than the CLIs at hand is a
one-line error and nothing is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..adapters import OFFLINE_CLI, get_adapter, installed_clis, parse_seat
from ..core.errors import InvalidInput
from ..core.models import Team

MAX_RACE = 8


def seat(cli: str, variant: Optional[str]) -> str:
    return f"{cli}/{variant}" if variant else cli


def split_seats(text: str, what: str) -> list[str]:
    """"codex,gemini" → the seats, checked (known CLI and variant, none twice)."""
    seats = [s.strip() for s in str(text).split(",") if s.strip()]
    if not seats:
        raise InvalidInput(f"{what}: name the CLIs, separated by commas")
    for s in seats:
        parse_seat(s)
    twice = sorted({s for s in seats if seats.count(s) > 1})
    if twice:
        raise InvalidInput(f"{what} names {', '.join(twice)} twice: each member is of a different CLI")
    return seats


def _runnable(seats: Sequence[str]) -> None:
    for s in seats:
        get_adapter(parse_seat(s)[0]).executable()  # CliMissing: a one-line error before anything exists


def add_panel(team: Team, reviewers: Sequence[str], reviewer_given: bool) -> list[str]:
    """Seat a panel on the team (its first member is the team's reviewer); notes for the user."""
    if not reviewers:
        return []
    reviewers = list(reviewers)
    lead = seat(team.reviewer, team.sim_formats.get("reviewer"))
    if reviewer_given and lead not in reviewers:
        raise InvalidInput(f"--reviewer {lead} is not one of --reviewers {','.join(reviewers)}: name it there, "
                           "or leave --reviewer out")
    _runnable(reviewers)
    if reviewer_given:
        reviewers.remove(lead)
        reviewers.insert(0, lead)
    cli, variant = parse_seat(reviewers[0])
    team.reviewer = cli
    if variant:
        team.sim_formats["reviewer"] = variant
    else:
        team.sim_formats.pop("reviewer", None)
    team.reviewers = reviewers if len(reviewers) > 1 else []
    builder = seat(team.implementer, team.sim_formats.get("implementer"))
    notes = []
    if len(reviewers) > 1:
        notes.append(f"review panel: {', '.join(reviewers)} review each merged commit in parallel; one ledger")
    if builder in reviewers:
        notes.append(f"{builder} both builds and reviews: a reviewer from another vendor catches more")
    return notes


def race_pool(team: Team, spec: Optional[str], installed: Optional[list[str]] = None) -> list[str]:
    """Set the team's race (`--race N` or `--race A,B`): how wide, and which seats in which order.
    N takes the implementer's seat first, then the other CLIs at hand (for the sim, its other stream
    shapes). Notes for the user."""
    if spec is None or str(spec).strip() in ("", "0", "1"):
        return []
    text = str(spec).strip()
    if text.isdigit():
        n = int(text)
        if n > MAX_RACE:
            raise InvalidInput(f"--race {n}: at most {MAX_RACE} implementers race one task")
        first = seat(team.implementer, team.sim_formats.get("implementer"))
        if team.implementer == OFFLINE_CLI:
            others = [seat(OFFLINE_CLI, v) for v in get_adapter(OFFLINE_CLI).variants]
        else:
            others = list(installed if installed is not None else installed_clis())
        pool = [first] + [s for s in others if s != first]
        if len(pool) < n:
            raise InvalidInput(f"--race {n} needs {n} different CLIs; at hand: {', '.join(pool)} — race fewer, or "
                               "install another CLI")
        pool = pool[:n]
    else:
        pool = split_seats(text, "--race")
        if len(pool) < 2:
            raise InvalidInput("--race needs at least two CLIs (or a number of implementers, e.g. --race 2)")
        n = len(pool)
    _runnable(pool)
    team.racers, team.race = pool, n
    return [f"race: every implement task is built by {n} implementers at once ({', '.join(pool)}), each in its own "
            "worktree; the project's tests pick the winner"]


def check_race_place(team: Team, cwd: Path, no_worktrees: bool, given: bool) -> list[str]:
    """Races need worktrees (each candidate builds on its own branch): an explicit --race in a
    folder without them is an error; the policy's is dropped with a note."""
    from ..worktrees.git import repo_top

    if not team.racers:
        return []
    why = "--no-worktrees" if no_worktrees else None if repo_top(cwd) is not None else f"{cwd} is not in a git repository"
    if why is None:
        return []
    if given:
        raise InvalidInput(f"--race needs worktrees (each candidate builds on its own branch), and {why}: "
                           + ("leave --no-worktrees out" if no_worktrees else "run `git init` there first")
                           + ", or leave --race out")
    team.racers, team.race = [], 0
    return [f"the policy's [team] race is not used: {why} (races need worktrees)"]
