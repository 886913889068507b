"""Races: one implement task built by implementers of different CLIs at once, judged by the tests.

End to end with real orch processes, real sim implementers in their own worktrees, real git
and the project's real tests run by the verifier on each candidate merged onto the integration
commit; the judge's order, the plan's race field and the trial merge checked directly.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.core.models import Race, RaceCandidate, Session, Task, TaskKind, TaskState, Role, now
from orchestrator.engine.due import DueCause, due_steps
from orchestrator.engine.plan_prompts import read_task_list
from orchestrator.engine.race import rank
from orchestrator.safety.policy import Limits
from orchestrator.worktrees.trial import change_size, trial_merge
from orchtest import orch_argv, orch_env, orch_json, run_orch
from test_worktrees import GOAL, git, repo  # noqa: F401 - repo: a fixture

TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
# core is raced by a claude-format implementer that builds carefully (its tests pass) and a
# codex-format one whose own tests fail; extras is built once (the plan says "race": 0).
RACED_GOAL = (GOAL + " [sim@architect: race=core] [sim@implementer/claude: careful] "
              "[sim@implementer/codex: failing-tests]")
ENV = {"ORCH_SIM_PACE": "0.02"}


def _session(repo: Path) -> dict:
    return json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())


def _events(repo: Path) -> list[dict]:
    return [json.loads(line) for line in next((repo / ".orch").glob("sessions/*/events.jsonl")).read_text().splitlines()]


def _report(repo: Path) -> dict:
    return json.loads(next((repo / ".orch").glob("sessions/*/reports/session-report.json")).read_text())


def _is_ancestor(repo: Path, a: str, b: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=repo).returncode == 0


def test_a_race_merges_the_candidate_whose_tests_pass_and_keeps_the_other_as_a_branch(repo):
    proc = run_orch("run", RACED_GOAL, *TEAM, "--race", "2", env=ENV, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(repo)
    sid, tasks = session["id"], {t["id"]: t for t in session["tasks"]}
    assert session["state"] == "complete"
    (race,) = session["races"]
    parent = tasks[race["task"]]
    assert parent["title"] == "Implement component core" and parent["state"] == "done"
    extras = next(t for t in tasks.values() if t["title"] == "Implement component extras")
    assert extras["race"] is None and extras["seat"] is None  # the plan said "race": 0 for it

    cands = {c["seat"]: c for c in race["candidates"]}
    assert set(cands) == {"sim/claude", "sim/codex"}
    good, bad = cands["sim/claude"], cands["sim/codex"]
    # each in its own worktree, on its own race branch, from the same integration commit
    for c in (good, bad):
        assert c["branch"] == f"orch/{sid}--race-{race['task']}-{c['agent']}"
        assert git(repo, "merge-base", c["branch"], f"orch/{sid}") == race["base"] or \
            _is_ancestor(repo, race["base"], c["commit"])
        assert tasks[c["task"]]["seat"] == c["seat"] and tasks[c["task"]]["state"] == "done"
    assert good["agent"] != bad["agent"]
    # the tests ran on each candidate merged onto the integration commit, not on any branch
    runs = {r["id"]: r for r in session["verification"]["runs"]}
    for c in (good, bad):
        run = runs[c["run"]]
        assert run["purpose"] == "race" and run["commit"] == c["trial"] and run["race"] == f"{race['task']}/{c['agent']}"
        parents = git(repo, "rev-list", "--parents", "-n", "1", c["trial"]).split()[1:]
        assert parents == [c["onto"], c["commit"]]
        assert not _is_ancestor(repo, c["trial"], f"orch/{sid}")
    assert good["tests"] == "passed" and good["failing"] == []
    assert bad["tests"] == "failed" and bad["failing"]
    # the passing one won and is merged; the failing one is kept, unmerged, as a branch
    assert (race["state"], race["winner"], race["decided_by"]) == ("merged", good["agent"], "judge")
    assert good["rank"] == 1 and good["outcome"].startswith("won: its tests pass")
    assert bad["rank"] == 2 and bad["outcome"].startswith("lost: ") and "failing test" in bad["outcome"]
    assert _is_ancestor(repo, good["commit"], f"orch/{sid}")
    assert not _is_ancestor(repo, bad["commit"], f"orch/{sid}")
    assert git(repo, "rev-parse", bad["branch"]) == bad["commit"]
    (merge,) = [m for m in session["git"]["merges"] if m["task"] == race["task"]]
    assert (merge["agent"], merge["branch"], merge["outcome"]) == (good["agent"], good["branch"], "merged")
    assert parent["agent"] == good["agent"] and parent["merged"] == merge["commit"]
    assert session["benched"] == {bad["agent"]: f"lost race {race['task']}: its work stays on {bad['branch']}"}
    # the loser took no other work after the race, and retired
    assert not [t for t in tasks.values() if t["agent"] == bad["agent"] and t["id"] != bad["task"]]

    report = _report(repo)
    (shown,) = report["races"]
    assert [c["agent"] for c in shown["candidates"]] == [good["agent"], bad["agent"]]
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "## Races" in md and bad["branch"] in md
    status = run_orch("status", check=True).stdout
    assert f"race {race['task']} (merged): {good['agent']} (sim/claude) won: its tests pass" in status
    assert f"{bad['agent']} (sim/codex) lost: " in status and f"kept as {bad['branch']}" in status
    # `orch clean` keeps the loser's branch (what a person compares), like the result
    run_orch("clean", check=True)
    assert git(repo, "rev-parse", bad["branch"]) == bad["commit"]
    assert git(repo, "for-each-ref", f"refs/orch/race/{sid}") == ""


def test_when_the_tests_tie_the_reviewers_read_each_candidate_and_the_fewest_blockers_win(repo):
    """Both candidates pass the tests (the hasty one's only failure is declared out of scope), so
    the reviewer reads each; the careful one wins on blockers although its change is larger.
    Those blockers decide the race and are not filed: the merged work is reviewed as usual."""
    state = repo / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text('[verify]\nknown_failures = ["test_version"]\n')
    goal = GOAL + " [sim@architect: race=core] [sim@implementer/claude: careful]"
    proc = run_orch("run", goal, *TEAM, "--race", "2", env=ENV, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(repo)
    tasks = {t["id"]: t for t in session["tasks"]}
    (race,) = session["races"]
    cands = {c["seat"]: c for c in race["candidates"]}
    careful, hasty = cands["sim/claude"], cands["sim/codex"]
    assert (careful["tests"], hasty["tests"]) == ("passed", "passed")
    assert careful["lines"] > hasty["lines"]  # the size alone would have picked the hasty one
    for c in (careful, hasty):
        (review,) = [tasks[t] for t in c["reviews"]]
        assert (review["kind"], review["race"], review["state"]) == ("review", race["task"], "done")
        assert c["review_notes"] and c["review_notes"][0].startswith(review["agent"])
    assert careful["blockers"] < hasty["blockers"]
    assert (race["winner"], race["decided_by"]) == (careful["agent"], "judge")
    assert "fewer blockers" in careful["outcome"] and "the reviewers found" in hasty["outcome"]
    # the race's reviews filed nothing: the ledger holds the merged work's review only
    race_reviews = set(careful["reviews"] + hasty["reviews"])
    assert session["blockers"] and not [v for v in session["verdicts"] if v["task"] in race_reviews]
    assert [t for t in tasks.values() if t["kind"] == "review" and t["race"] is None]
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "| tests | blockers | lines |" in md and f"{hasty['agent']}'s review: " in md


def _step_until(repo: Path, done, what: str, limit: float = 180) -> dict:
    """Drive the session as a conductor does — `orch step`, then `orch wait` — until done(session)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run_orch("step", check=True, env=ENV)
        session = _session(repo)
        if done(session):
            return session
        run_orch("wait", "--timeout", "5", env=ENV)
    raise AssertionError(f"timed out waiting for {what}: {json.dumps(_session(repo).get('races'))[:2000]}")


def test_orch_pick_overrides_the_judge_before_the_merge_and_the_choice_is_recorded(repo):
    started = json.loads(run_orch("start", RACED_GOAL, *TEAM, "--race", "2", "--json", check=True).stdout)
    assert started["team"]["racers"] == ["sim/claude", "sim/codex"]
    session = _step_until(repo, lambda s: any(c["agent"] for r in s["races"] for c in r["candidates"]), "the race")
    (race,) = session["races"]
    loser = next(c for c in race["candidates"] if c["seat"] == "sim/codex")
    for bad, says in ((["T-99", loser["agent"]], "is not a raced task"), ([race["task"], "nobody-1"], "not a candidate")):
        proc = run_orch("pick", *bad)
        assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and says in proc.stderr, proc.stderr
    picked = run_orch("pick", race["task"], loser["agent"], "--why", "its approach is simpler to extend", check=True)
    assert f"{loser['agent']} (sim/codex) is picked to win race {race['task']}" in picked.stdout
    (advised,) = [line[len("Next: "):] for line in picked.stdout.splitlines() if line.startswith("Next: ")]
    command = advised.split("#")[0].split()  # engine/advice.py's: candidates build, or a step has work
    assert command[:2] in (["orch", "step"], ["orch", "wait"]), advised
    run_orch(*command[1:], check=True, env=ENV)  # the Next the command printed works from here
    done = run_orch("resume", session["id"], env=ENV, timeout=360)
    session = _session(repo)
    (race,) = session["races"]
    assert race["state"] == "merged" and race["winner"] == loser["agent"] and race["decided_by"] == "person"
    assert race["pick"]["why"] == "its approach is simpler to extend"
    won = next(c for c in race["candidates"] if c["agent"] == loser["agent"])
    assert won["tests"] == "failed" and won["rank"] == 2 and won["outcome"].startswith("won: picked by a person")
    assert _is_ancestor(repo, won["commit"], f"orch/{session['id']}")
    assert [e["kind"] for e in _events(repo) if e["kind"] == "race.picked"] == ["race.picked"]
    # its failing tests are then the team's to fix: the gate blames the merge, the session goes on
    assert done.returncode == 0, done.stdout + done.stderr
    too_late = run_orch("pick", race["task"], won["agent"])
    assert too_late.returncode == 2 and "too late to pick" in too_late.stderr


def test_a_kill_anywhere_between_judging_and_merging_loses_nothing_and_merges_once(repo):
    """SIGKILL `orch step` at many moments of the step that judges and merges the race, then a
    crash left exactly after git's merge and before orch recorded it; every time the race is
    merged once, with one merge commit of the winner."""
    started = json.loads(run_orch("start", RACED_GOAL, *TEAM, "--race", "2", "--json", check=True).stdout)
    sid = started["session"]

    def judged(s):  # every candidate's tests are in: the next step judges and merges
        v = {r["id"]: r for r in (s.get("verification") or {}).get("runs", [])}
        return any(r["state"] == "testing" and all(c["run"] and v[c["run"]]["state"] == "finished"
                                                   for c in r["candidates"] if c["commit"]) for r in s["races"])
    _step_until(repo, judged, "every candidate tested")
    kills = 0
    for delay in [0.3 + 0.08 * i for i in range(25)]:
        proc = subprocess.Popen(orch_argv("step"), env=orch_env(ENV), cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if _session(repo)["races"][0]["state"] == "merged":
            break
    assert kills, "no step was killed: the machine is too fast for these delays"
    done = run_orch("resume", sid, env=ENV, timeout=360)
    assert done.returncode == 0, done.stdout + done.stderr
    session = _session(repo)
    (race,) = session["races"]
    winner = next(c for c in race["candidates"] if c["agent"] == race["winner"])
    assert race["state"] == "merged" and winner["seat"] == "sim/claude"
    records = [m for m in session["git"]["merges"] if m["task"] == race["task"]]
    assert len(records) == 1 and records[0]["outcome"] in ("merged", "already")
    merges_of_winner = [line for line in git(repo, "rev-list", "--merges", "--parents", f"orch/{sid}").splitlines()
                        if line.split()[2:] == [winner["commit"]]]
    assert len(merges_of_winner) == 1
    assert [e for e in _events(repo) if e["kind"] == "race.state" and e["data"]["to"] == "merged"]


def test_a_merge_made_but_not_recorded_is_found_in_already_on_the_next_step(repo):
    """The state a kill leaves right after git merged the winner and before the session was
    written: the next step judges again (the same verdict) and finds the branch merged."""
    started = json.loads(run_orch("start", RACED_GOAL, *TEAM, "--race", "2", "--json", check=True).stdout)
    sid = started["session"]

    def judged(s):
        v = {r["id"]: r for r in (s.get("verification") or {}).get("runs", [])}
        return any(r["state"] == "testing" and all(c["run"] and v[c["run"]]["state"] == "finished"
                                                   for c in r["candidates"] if c["commit"]) for r in s["races"])
    session = _step_until(repo, judged, "every candidate tested")
    good = next(c for c in session["races"][0]["candidates"] if c["seat"] == "sim/claude")
    integration = repo / ".orch" / "worktrees" / sid / "integration"
    git(integration, "merge", "--no-ff", "--no-edit", "-m", "merged before the kill", good["branch"])
    tip = git(integration, "rev-parse", "HEAD")
    run_orch("step", check=True)
    session = _session(repo)
    (race,) = session["races"]
    (record,) = [m for m in session["git"]["merges"] if m["task"] == race["task"]]
    assert (race["state"], race["winner"], record["outcome"], record["commit"]) == ("merged", good["agent"], "already", tip)
    assert git(repo, "rev-parse", f"orch/{sid}") == tip  # nothing merged twice


def test_budgets_and_caps_hold_a_race_nothing_more_starts_until_raised(repo):
    """max_agents = 1 runs one candidate at a time; a session budget below the first candidate's
    cost pauses the race before the second starts; raising it lets the race finish."""
    state = repo / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text("[limits]\nmax_agents = 1\n[budget]\nsession_usd = 0.001\n")
    goal = GOAL + " [sim@architect: race=core] [sim@implementer/claude: careful]"
    proc = run_orch("run", goal, "--architect", "sim/gemini", "--implementer", "sim", "--reviewer", "sim/codex",
                    "--race", "2", env=ENV, timeout=360)
    assert proc.returncode == 3 and "paused: budget reached" in proc.stdout, proc.stdout + proc.stderr
    session = _session(repo)
    (race,) = session["races"]
    first, second = race["candidates"]
    assert first["seat"] == "sim/claude" and first["agent"] and second["agent"] is None
    meta = json.loads(next(state.glob(f"sessions/*/agents/{first['agent']}/meta.json")).read_text())
    assert meta["state"] not in ("starting", "running", "silent")  # on_budget = "finish": its run ended by itself
    assert meta["stats"]["usage"]["cost_usd"] > 0.001  # what paused the session: one candidate's spend
    assert {t["id"]: t for t in session["tasks"]}[second["task"]]["state"] == "queued"
    launched = [e["agent"] for e in _events(repo) if e["kind"] == "agent.launched"]
    assert first["agent"] in launched and len([a for a in launched if a.startswith("implementer")]) == 1
    status = run_orch("status", check=True).stdout
    assert f"race {race['task']} (running)" in status
    # a pick now is recorded, and what it says to do next is the paused session's (engine/advice.py), not a step
    picked = run_orch("pick", race["task"], first["agent"], check=True).stdout
    assert "Next: orch budget --raise session_usd=N" in picked, picked
    run_orch("budget", "--raise", "session_usd=5", check=True)
    done = run_orch("resume", session["id"], env=ENV, timeout=360)
    assert done.returncode == 0, done.stdout + done.stderr
    (race,) = _session(repo)["races"]
    assert race["state"] == "merged" and all(c["agent"] for c in race["candidates"])


def test_at_the_time_limit_a_candidate_still_building_is_stopped_and_the_race_judged_without_it(repo):
    state = repo / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text("[race]\ntime_limit_seconds = 6\n")
    goal = GOAL + " [sim@architect: race=core] [sim@implementer/claude: careful] [sim@implementer/codex: hang]"
    proc = run_orch("run", goal, *TEAM, "--race", "2", env=ENV, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (race,) = _session(repo)["races"]
    cands = {c["seat"]: c for c in race["candidates"]}
    assert race["state"] == "merged" and race["winner"] == cands["sim/claude"]["agent"]
    late = cands["sim/codex"]
    assert late["commit"] is None and late["outcome"].startswith("out: its run failed")
    assert f"race {race['task']}'s time limit passed" in json.dumps(_events(repo))
    stopped = [e for e in _events(repo) if e["kind"] == "decision" and e.get("agent") == late["agent"]
               and "time limit passed: stopped" in (e.get("reason") or "")]
    assert len(stopped) == 1
    assert not [a for a in (json.loads(p.read_text()) for p in state.glob("sessions/*/agents/*/meta.json"))
                if a["state"] in ("starting", "running", "silent")]


def _fingerprint(repo: Path) -> tuple:
    s = _session(repo)
    agents = [json.loads(p.read_text()) for p in sorted(repo.glob(".orch/sessions/*/agents/*/meta.json"))]
    return (s["state"], s["round"], tuple((t["id"], t["state"]) for t in s["tasks"]),
            tuple((r["task"], r["state"], tuple(c.get("outcome") or "" for c in r["candidates"])) for r in s["races"]),
            tuple((a["id"], a["state"], len(a["runs"])) for a in agents),
            tuple((v["id"], v["state"], v["judged"]) for v in (s.get("verification") or {}).get("runs", [])))


def test_a_candidate_parked_by_a_usage_limit_is_out_at_the_time_limit_and_the_advice_leads_home(repo):
    """A conductor that only follows orch's advice (`orch check`'s first Next) takes a race home:
    while one candidate waits out a usage limit that resets in an hour and nothing runs, the advice
    is to wait for the race's time limit — never a step with nothing to do — and at the limit the
    parked candidate is out and the race is judged without it."""
    state = repo / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text("[race]\ntime_limit_seconds = 25\n")  # well after the other work
    goal = GOAL + " [sim@architect: race=core] [sim: careful] [sim@implementer/codex: limit=3600]"
    sid = run_orch("start", goal, *TEAM, "--race", "2", check=True).stdout.split()[-1]
    seen_quiet, advised = set(), []
    for _ in range(80):
        checked = run_orch("check", "--json")
        assert checked.returncode in (0, 1), checked.stderr
        r = json.loads(checked.stdout)
        if r["session_state"] == "complete":
            break
        advice = r["next_command"]
        advised.append(advice)
        command = advice.partition("#")[0].split()
        assert command[:2] in (["orch", "step"], ["orch", "wait"], ["orch", "report"]), advised
        if not r["live_agents"] and command[1] == "step":  # nothing runs: the same step from the same state loops
            key = (_fingerprint(repo), re.sub(r"\d\d:\d\d:\d\d UTC|\d+ s\b|--timeout \d+", "T", advice))
            assert key not in seen_quiet, f"the advice loops: {advice} from {key[0]}"
            seen_quiet.add(key)
        proc = run_orch(*command[1:], env=ENV, timeout=300)
        assert proc.returncode == 0, (advice, proc.stdout, proc.stderr)
    else:
        raise AssertionError(f"not home after 80 advised commands: {advised[-5:]}")
    session = _session(repo)
    assert session["id"] == sid and session["state"] == "complete"
    (race,) = session["races"]
    cands = {c["seat"]: c for c in race["candidates"]}
    parked = cands["sim/codex"]
    assert (race["state"], race["winner"]) == ("merged", cands["sim/claude"]["agent"])
    assert parked["commit"] is None and "parked by a usage limit at the race's time limit" in parked["outcome"]
    waits = [a for a in advised if f"race {race['task']}'s time limit is at" in a]
    assert waits and all(a.startswith("orch wait") for a in waits), "\n".join(advised)
    meta = json.loads(next(state.glob(f"sessions/*/agents/{parked['agent']}/meta.json")).read_text())
    assert meta["state"] == "done"  # out of the race, benched, retired: its limit no longer holds its CLI


def test_a_race_no_candidate_finishes_stops_the_session_and_the_retry_it_names_builds_the_task_once(repo):
    goal = (GOAL + " [sim@architect: race=core] [sim@implementer/codex: exit=3] [sim@implementer/gemini: exit=3]")
    proc = run_orch("run", goal, "--architect", "sim", "--implementer", "sim/claude", "--reviewer", "sim/codex",
                    "--race", "sim/codex,sim/gemini", env=ENV, timeout=360)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    session = _session(repo)
    (race,) = session["races"]
    parent = {t["id"]: t for t in session["tasks"]}[race["task"]]
    assert race["state"] == "failed" and parent["state"] == "failed" and session["state"] == "stopped"
    assert all(c["outcome"].startswith("out: its run failed") for c in race["candidates"])
    check = run_orch("check")
    assert f"Next: orch retry {race['task']}" in check.stdout
    retried = run_orch("retry", race["task"], env=ENV, check=True)
    assert "Next: orch wait" in retried.stdout
    done = run_orch("resume", session["id"], env=ENV, timeout=360)
    assert done.returncode == 0, done.stdout + done.stderr
    session = _session(repo)
    parent = {t["id"]: t for t in session["tasks"]}[race["task"]]
    builder = next(a for a in _report(repo)["agents"] if a["id"] == parent["agent"])
    assert parent["state"] == "done" and parent["merged"] and builder["cli"] == "sim/claude"
    assert parent["agent"] not in {c["agent"] for c in race["candidates"]}  # built afresh, not in a loser's worktree
    assert session["races"][0]["state"] == "failed"  # the record stays: what was tried, and how it ended


# ---------------------------------------------------------------- the pieces


def test_the_plan_says_which_tasks_race_and_how_wide():
    reply = ('Tasks:\n```json\n{"tasks": [{"title": "a", "race": 3}, {"title": "b", "race": false}, '
             '{"title": "c"}, {"title": "d", "race": true}, {"title": "e", "race": "lots"}]}\n```')
    assert [(t.title, t.race) for t in read_task_list(reply)][:4] == [("a", 3), ("b", 0), ("c", None), ("d", 2)]


def _cand(seat: str, tests: str, failing: int, lines: int, n: int) -> RaceCandidate:
    return RaceCandidate(seat=seat, task=f"T-{n}", agent=f"implementer-{n}", commit="c" * 40, tests=tests,
                         failing=[f"t{i}" for i in range(failing)], lines=lines)


def test_the_judge_ranks_tests_first_then_size_then_who_finished_first():
    s = Session(id="s-1", workspace="/tmp")
    t0 = now()
    for n in range(1, 6):
        s.tasks.append(Task(id=f"T-{n}", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title="x",
                            state=TaskState.DONE, ended_at=t0 + timedelta(seconds=10 - n)))
    race = Race(task="T-9", base="b" * 40, deadline=t0, candidates=[
        _cand("a", "failed", 1, 5, 1), _cand("b", "passed", 0, 90, 2), _cand("c", "passed", 0, 40, 3),
        _cand("d", "conflict", 0, 1, 4), _cand("e", "passed", 0, 40, 5)])
    race.candidates.append(RaceCandidate(seat="f", task="T-6", agent="implementer-6", ended="failed"))
    ranked = [c.seat for c in rank(s, race)]
    # passing first (the smaller change first; equal size: the one that finished first), then failing,
    # then the one whose work conflicts; a candidate without work is not ranked at all
    assert ranked == ["e", "c", "b", "a", "d"]


def test_a_trial_merge_is_a_commit_on_no_branch_or_the_files_that_conflict(tmp_path):
    r = tmp_path / "r"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "a.txt").write_text("one\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "base")
    base = git(r, "rev-parse", "HEAD")
    git(r, "checkout", "-q", "-b", "cand")
    (r / "b.txt").write_text("new\n")
    (r / "a.txt").write_text("one\ncand\n")
    git(r, "commit", "-qam", "cand", "--allow-empty")
    git(r, "add", ".")
    git(r, "commit", "-qm", "cand files")
    git(r, "checkout", "-q", "main")
    (r / "c.txt").write_text("main\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "main moved")
    onto = git(r, "rev-parse", "HEAD")
    trial = trial_merge(r, onto, "cand", "refs/orch/race/s/T-1/x", "trial")
    assert trial.conflicts == [] and git(r, "rev-parse", "refs/orch/race/s/T-1/x") == trial.commit
    assert git(r, "show", f"{trial.commit}:b.txt") == "new" and git(r, "show", f"{trial.commit}:c.txt") == "main"
    assert git(r, "rev-parse", "main") == onto and git(r, "status", "--porcelain") == ""  # nothing moved
    assert change_size(r, base, "cand") == 2
    (r / "a.txt").write_text("one\nmain\n")
    git(r, "commit", "-qam", "main edits a")
    clash = trial_merge(r, git(r, "rev-parse", "HEAD"), "cand", "refs/orch/race/s/T-1/y", "trial")
    assert clash.commit is None and clash.conflicts == ["a.txt"]


def test_a_running_race_has_its_time_limit_as_a_due_step():
    s = Session(id="s-1", workspace="/tmp")
    deadline = now() + timedelta(seconds=120)
    s.races.append(Race(task="T-2", base="b" * 40, deadline=deadline))
    (due,) = [d for d in due_steps(s, [], Limits()) if d.cause is DueCause.RACE_TIME]
    assert (due.at, due.task) == (deadline, "T-2") and "judges the race" in due.what


@pytest.mark.parametrize("args, says", [
    (["--race", "9"], "at most 8"),
    (["--race", "4"], "needs 4 different CLIs"),
    (["--race", "sim/claude,sim/claude"], "twice"),
    (["--race", "2", "--no-worktrees"], "needs worktrees"),
])
def test_a_bad_race_is_one_line_and_nothing_is_created(repo, args, says):
    proc = run_orch("start", GOAL, *TEAM, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("orch: ") and len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr
    assert not (repo / ".orch" / "sessions").exists()


def test_a_race_outside_a_repository_is_refused_in_one_line(workspace_dir):
    proc = run_orch("start", GOAL, *TEAM, "--race", "2")
    assert proc.returncode == 2 and "needs worktrees" in proc.stderr and "git init" in proc.stderr
    assert orch_json("sessions") == []
