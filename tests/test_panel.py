"""A review panel: reviewers of different CLIs on the same merged commit, one de-duplicated ledger.

The matching rules are checked directly on the ledger; the panel end to end with real orch
processes and real sim reviewers speaking different CLIs' formats (codex's terse JSON,
gemini's Markdown prose with a coverage check, claude's fenced JSON), in a real repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.core.models import Review, ReviewBlocker, Session, Severity, Verdict
from orchestrator.review.blocker_ledger import (
    SAME_PLACE_LINES, SAME_TEXT_JACCARD, apply_review, filers, match_blocker, word_jaccard,
)
from orchtest import run_orch
from test_worktrees import GOAL, repo  # noqa: F401 - repo: a fixture

PANEL = ["--architect", "sim", "--implementer", "sim", "--reviewers", "sim/codex,sim/gemini"]


# ---------------------------------------------------------------- the rules, on the ledger


def _review(rid: str, reviewer: str, *blockers: ReviewBlocker, cli: str = "sim") -> Review:
    return Review(id=rid, round=1, reviewer=reviewer, cli=cli, verdict=Verdict.CHANGES_REQUESTED,
                  blockers=[b.model_copy() for b in blockers], parse_method="fenced-json")


def _b(file: str, line, text: str, severity: Severity = Severity.HIGH) -> ReviewBlocker:
    return ReviewBlocker(file=file, line=line, description=text, severity=severity)


CLAMP_A = _b("pkg/core.py", 12, "R3: clamp() misses its edge case — `clamp(1, 3, 0) raises ValueError` fails")
CLAMP_B = _b("pkg/core.py", 14, "R3 is not met — clamp must refuse bad input with ValueError, and it does not")
MEAN = _b("pkg/extras.py", 30, "mean() divides by zero for an empty list instead of raising ValueError")


def test_same_place_joins_two_reviewers_wording_one_defect_differently_and_records_who_and_how():
    s = Session(id="s-1", workspace="/tmp")
    assert word_jaccard(CLAMP_A.description, CLAMP_B.description) < SAME_TEXT_JACCARD  # not near-identical words
    filed = apply_review(s, _review("R-1", "reviewer-1", CLAMP_A, MEAN, cli="sim/codex")).filed
    assert [b.id for b in filed] == ["B-1", "B-2"]
    update = apply_review(s, _review("R-2", "reviewer-2", CLAMP_B, cli="sim/gemini"))
    assert update.filed == []
    b1 = s.blocker("B-1")
    assert filers(b1) == ["reviewer-1", "reviewer-2"]
    first, second = b1.filed_by
    assert (first.rule, first.cli, first.review) == ("first", "sim/codex", "R-1")
    assert (second.rule, second.score, second.cli, second.line) == ("same-place", 2.0, "sim/gemini", 14)
    assert second.description.startswith("R3 is not met")  # each reviewer's own words are kept
    assert filers(s.blocker("B-2")) == ["reviewer-1"]


def test_the_panel_rules_never_join_two_reports_of_one_reviewer():
    s = Session(id="s-1", workspace="/tmp")
    apply_review(s, _review("R-1", "reviewer-1", CLAMP_A))
    assert match_blocker(s, CLAMP_B, "reviewer-1") is None  # its own second finding there: another problem
    assert match_blocker(s, CLAMP_B, "reviewer-2").rule == "same-place"
    s = Session(id="s-2", workspace="/tmp")
    apply_review(s, _review("R-1", "reviewer-1", CLAMP_A, CLAMP_B))
    assert [b.id for b in s.blockers] == ["B-1", "B-2"]  # one review, two findings: two problems


def test_same_place_needs_lines_close_together_and_code_names_that_agree():
    s = Session(id="s-1", workspace="/tmp")
    apply_review(s, _review("R-1", "reviewer-1", _b("pkg/core.py", 12, "`parse()` returns None on empty input")))
    far = _b("pkg/core.py", 12 + SAME_PLACE_LINES + 1, "a wholly other remark about this place in the module")
    assert match_blocker(s, far, "reviewer-2") is None
    near_other_code = _b("pkg/core.py", 13, "`save()` leaves the file open on error")
    assert match_blocker(s, near_other_code, "reviewer-2") is None  # same place, different code: two problems
    near = _b("./pkg/core.py", 13, "here the function forgets the empty case")
    found = match_blocker(s, near, "reviewer-2")
    assert (found.blocker.id, found.rule, found.score) == ("B-1", "same-place", 1.0)


def test_same_text_joins_near_identical_words_wherever_they_point_but_not_across_files():
    s = Session(id="s-1", workspace="/tmp")
    text = "mean of an empty list must raise ValueError instead of returning zero"
    apply_review(s, _review("R-1", "reviewer-1", _b("pkg/extras.py", 30, text)))
    no_place = _b("", None, "Mean of an empty list must raise ValueError, instead of returning zero!")
    found = match_blocker(s, no_place, "reviewer-2")
    assert (found.rule, found.score) == ("same-text", 1.0)
    other_file = _b("pkg/other.py", None, text)
    assert match_blocker(s, other_file, "reviewer-2") is None
    loosely = _b("", None, "an empty list makes mean return zero")
    assert word_jaccard(text, loosely.description) < SAME_TEXT_JACCARD
    assert match_blocker(s, loosely, "reviewer-2") is None


@pytest.mark.parametrize("first, second, joined", [
    # two defects worded alike (0.625): the bar sits above them, since joining hides one defect
    ("the retry loop never sleeps between attempts", "the retry loop sleeps too long between attempts", False),
    # alike words (0.71) about two functions: the code names disagree, so two problems
    ("missing null check in `parse()` when input is empty", "missing null check in `save()` when input is empty",
     False),
    # the same words after case and punctuation: one problem
    ("Mean of an empty list must raise ValueError.", "mean of an empty list must raise valueerror", True),
])
def test_same_text_is_near_identical_words_and_nothing_looser(first, second, joined):
    s = Session(id="s-1", workspace="/tmp")
    apply_review(s, _review("R-1", "reviewer-1", _b("pkg/extras.py", 30, first)))
    found = match_blocker(s, _b("", None, second), "reviewer-2")  # the second report names no place
    assert (found.rule if found else None) == ("same-text" if joined else None)


def test_a_confirmation_fills_in_the_place_raises_the_severity_and_replays_change_nothing():
    s = Session(id="s-1", workspace="/tmp")
    text = "mean of an empty list must raise ValueError instead of returning zero"
    apply_review(s, _review("R-1", "reviewer-1", _b("", None, text, Severity.MEDIUM)))
    confirm = _review("R-2", "reviewer-2", _b("pkg/extras.py", 30, text, Severity.CRITICAL))
    apply_review(s, confirm)
    b = s.blocker("B-1")
    assert (b.file, b.line, b.severity) == ("pkg/extras.py", 30, Severity.CRITICAL)
    before = b.model_dump()
    apply_review(s, confirm)  # a step replayed after a crash
    apply_review(s, _review("R-3", "reviewer-2", _b("pkg/extras.py", 30, text)))  # the same reviewer again
    assert s.blocker("B-1").model_dump() == before and len(s.blockers) == 1


# ---------------------------------------------------------------- the panel, end to end


def _session(repo: Path) -> dict:
    return json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())


def _report(repo: Path) -> dict:
    return json.loads(next((repo / ".orch").glob("sessions/*/reports/session-report.json")).read_text())


def _reviews(repo: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text())
            for p in (repo / ".orch").glob("sessions/*/reviews/R-*.json")}


def test_two_sim_reviewers_of_different_formats_file_one_deduplicated_ledger_with_attribution(repo):
    proc = run_orch("run", GOAL, *PANEL, env={"ORCH_SIM_PACE": "0.02"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session, report = _session(repo), _report(repo)
    assert session["state"] == "complete" and session["team"]["reviewers"] == ["sim/codex", "sim/gemini"]
    reviewers = {a["id"]: a["cli"] for a in report["agents"] if a["role"] == "reviewer"}
    assert sorted(reviewers.values()) == ["sim/codex", "sim/gemini"]
    by_seat = {cli: rid for rid, cli in reviewers.items()}

    # both reviewed the same merged commit, in parallel, each keeping its own verdict
    reviews = [t for t in session["tasks"] if t["kind"] == "review"]
    assert sorted(t["seat"] for t in reviews) == ["sim/codex", "sim/gemini"] and len({t["round"] for t in reviews}) == 1
    first_verdicts = {v["reviewer"]: v for v in session["verdicts"] if v["kind"] == "review"}
    assert set(first_verdicts) == set(reviewers)
    assert all(v["verdict"] == "changes_requested" for v in first_verdicts.values())
    stored = _reviews(repo)
    # two formats, read by two different paths of the verdict reader
    assert {stored[v["review"]]["parse_method"] for v in first_verdicts.values()} == {"loose"}
    assert all(stored[v["review"]]["cli"] == "sim" for v in first_verdicts.values())

    ledger = [b for b in session["blockers"] if b["source"] == "review"]
    shared = [b for b in ledger if len({f["reviewer"] for f in b["filed_by"]}) == 2]
    only_gemini = [b for b in ledger if [f["reviewer"] for f in b["filed_by"]] == [by_seat["sim/gemini"]]]
    assert len(ledger) == 4 and len(shared) == 2 and len(only_gemini) == 2, ledger
    for b in shared:  # the defect both found: one blocker, two reports, the rule that joined them recorded
        assert b["file"].endswith(".py") and not b["file"].startswith("tests/")
        first, second = b["filed_by"]
        assert first["rule"] == "first" and second["rule"] in ("same-place", "similar")
        assert second["score"] is not None and first["review"] != second["review"]
    assert {b["filed_by"][1]["rule"] for b in shared} == {"same-place", "similar"}
    for b in only_gemini:  # the gap only the reviewer that reads the tests reports
        assert b["file"].startswith("tests/test_") and b["severity"] == "medium"

    # each blocker verified by a reviewer that filed it
    for b in ledger:
        assert b["state"] == "verified"
        verifier = next(h["by"] for h in reversed(b["history"]) if h["state"] == "verified")
        assert verifier in {f["reviewer"] for f in b["filed_by"]}, b
    verifies = [t for t in session["tasks"] if t["kind"] == "verify"]
    assert {t["seat"] for t in verifies} == {"sim/codex", "sim/gemini"}

    # the report: per reviewer, filed / unique / confirmed / later verified, and its cost
    panel = {r["cli"]: r for r in report["panel"]["reviewers"]}
    assert (panel["sim/codex"]["filed"], panel["sim/codex"]["unique"], panel["sim/codex"]["confirmed"],
            panel["sim/codex"]["verified"]) == (2, 0, 2, 2)
    assert (panel["sim/gemini"]["filed"], panel["sim/gemini"]["unique"], panel["sim/gemini"]["confirmed"],
            panel["sim/gemini"]["verified"]) == (4, 2, 2, 4)
    assert all(r["tokens"] > 0 and r["cost"] == "price unknown" for r in panel.values())
    assert (report["panel"]["reports"], report["panel"]["ledger"], report["panel"]["merged"]) == (6, 4, 2)
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "## Review panel" in md and "unique to it" in md and "6 report(s) became 4 blocker(s)" in md

    # orch status says which reviewer found what (the fast read path and the full command alike)
    for env in ({}, {"ORCH_FULL_PATH": "1"}):
        status = run_orch("status", env=env, check=True).stdout
        ids = ", ".join(b["id"] for b in ledger if by_seat["sim/gemini"] in {f["reviewer"] for f in b["filed_by"]})
        assert f"panel: {by_seat['sim/gemini']} (sim/gemini) filed 4 blocker(s) ({ids}): 2 unique to it, 2 " \
               "confirmed by another, 4 verified fixed" in status
    assert "filed by " in md and "(same-place)" in md  # each blocker says who reported it


def test_a_member_over_its_own_budget_leaves_the_panel_and_another_verifies_its_blockers(repo):
    """agent_usd caps each reviewer: the claude-format reviewer (the only one whose sim reports a
    price) passes it after its review; the session does not pause, and the codex-format member
    verifies what the other filed alone."""
    state = repo / ".orch"
    state.mkdir(exist_ok=True)
    (state / "policy.toml").write_text("[budget]\nagent_usd = 0.003\n")
    goal = GOAL + " [sim@reviewer/claude: thorough]"
    proc = run_orch("run", goal, "--architect", "sim/gemini", "--implementer", "sim/codex",
                    "--reviewers", "sim/claude,sim/codex", env={"ORCH_SIM_PACE": "0.02"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(repo)
    events = [json.loads(line) for line in next(state.glob("sessions/*/events.jsonl")).read_text().splitlines()]
    assert session["state"] == "complete"
    assert not [e for e in events if e["kind"] == "budget.reached"], "the panel's budget must not pause the session"
    agents = {a.name: json.loads((a / "meta.json").read_text()) for a in state.glob("sessions/*/agents/*")}
    claude = next(a for a in agents.values() if a["role"] == "reviewer" and a.get("sim_format") == "claude")
    codex = next(a for a in agents.values() if a["role"] == "reviewer" and a.get("sim_format") == "codex")
    assert claude["stats"]["usage"]["cost_usd"] >= 0.003
    alone = [e for e in events if e["kind"] == "budget.warning" and e["data"].get("alone")]
    assert [e["agent"] for e in alone] == [claude["id"]]
    assert "over its own budget" in alone[0]["reason"]
    # what only the claude-format reviewer filed (the coverage gaps) was verified by the other member
    mine = [b for b in session["blockers"] if [f["reviewer"] for f in b["filed_by"]] == [claude["id"]]]
    assert mine and all(b["file"].startswith("tests/") for b in mine)
    for b in mine:
        assert b["state"] == "verified"
        assert next(h["by"] for h in reversed(b["history"]) if h["state"] == "verified") == codex["id"]
    assert not [t for t in session["tasks"] if t["kind"] == "verify" and t["seat"] == "sim/claude"]
    rerouted = [e for e in events if e["kind"] == "decision" and "over its budget" in (e["reason"] or "")
                and "another panel member verifies it" in e["reason"]]
    assert rerouted and all(claude["id"] in e["reason"] for e in rerouted)


def test_a_member_whose_cli_keeps_failing_leaves_the_panel_and_the_session_completes(repo):
    goal = GOAL + " [sim@reviewer/gemini: exit=3]"
    proc = run_orch("run", goal, *PANEL, env={"ORCH_SIM_PACE": "0.02", "ORCH_RETRY_BACKOFF": "0"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = _session(repo)
    gemini = next(t for t in session["tasks"] if t["kind"] == "review" and t["seat"] == "sim/gemini")
    assert gemini["state"] == "cancelled" and gemini["attempts"] == 2
    (benched,) = session["benched"].items()
    assert "the panel goes on without it" in benched[1]
    assert all(b["state"] == "verified" for b in session["blockers"])
    assert {v["cli"] for v in session["verdicts"]} == {"sim/codex"}


@pytest.mark.parametrize("args, says", [
    (["--reviewers", "sim/codex,sim/codex"], "names sim/codex twice"),
    (["--reviewers", "sim/nonsense"], "sim has no variant 'nonsense'"),
    (["--reviewers", "nonsense"], "unknown CLI 'nonsense'"),
    (["--reviewer", "sim/claude", "--reviewers", "sim/codex,sim/gemini"], "is not one of --reviewers"),
])
def test_a_bad_panel_is_one_line_and_nothing_is_created(workspace_dir, args, says):
    proc = run_orch("start", GOAL, "--architect", "sim", "--implementer", "sim", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("orch: ") and len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr
    assert not (workspace_dir / ".orch" / "sessions").exists()


def test_the_policy_seats_a_panel_and_refuses_a_bad_one_naming_its_line(workspace_dir):
    state = workspace_dir / ".orch"
    state.mkdir()
    (state / "policy.toml").write_text('[team]\nreviewers = ["sim/codex", "sim/gemini"]\n')
    started = json.loads(run_orch("start", GOAL, "--architect", "sim", "--implementer", "sim", "--json",
                                  check=True).stdout)
    assert started["team"]["reviewers"] == ["sim/codex", "sim/gemini"] and started["team"]["reviewer"] == "sim"
    (state / "policy.toml").write_text('[team]\nreviewers = ["sim/codex", "sim/codex"]\n')
    proc = run_orch("start", GOAL, "--architect", "sim", "--implementer", "sim")
    assert proc.returncode == 2 and "policy.toml:2" in proc.stderr and "named twice" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_orch_demo_panel_shows_two_reviewers_side_by_side(tmp_path):
    demo = tmp_path / "demo"
    proc = run_orch("demo", "--panel", "--dir", str(demo), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a review panel of 2: codex's, gemini's formats" in proc.stdout
    assert "panel:   6 report(s) from 2 reviewers became 4 blocker(s) (2 found by both)" in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines() if "unique to it" in line]
    assert len(lines) == 2 and any("(sim/codex): filed 2, 0 unique" in x for x in lines)
    assert any("(sim/gemini): filed 4, 2 unique" in x for x in lines)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=demo, capture_output=True, text=True).stdout
    assert log.splitlines() == ["orch: Build a small text utilities library"]


def test_a_queued_verification_of_a_member_that_left_the_panel_goes_to_another_member(workspace_dir):
    """A member benched after its verification was queued: the next step gives the task to
    another member (and drops a review still queued for the one that left)."""
    from orchestrator.core.models import (
        Agent, AgentState, Blocker, BlockerFiling, BlockerState, Permission, Role, RoundRecord, Task, TaskKind,
        Team,
    )
    from orchestrator.store.sessions import Workspace

    store = Workspace().create(workspace_dir, goal="g", coordinated=True,
                               team=Team(architect="sim", implementer="sim", reviewer="sim",
                                         reviewers=["sim/codex", "sim/gemini"], sim_formats={"reviewer": "codex"}))
    for n, fmt in ((1, "codex"), (2, "gemini")):
        agent = Agent(id=f"reviewer-{n}", session=store.id, role=Role.REVIEWER, cli="sim", sim_format=fmt,
                      permission=Permission.READ, cwd=str(workspace_dir), state=AgentState.IDLE)
        store.agent_dir(agent.id).mkdir(parents=True, exist_ok=True)
        store.write_agent(agent)
    with store.edit_session() as s:
        s.round, s.rounds = 2, [RoundRecord(n=1), RoundRecord(n=2)]
        s.blockers = [Blocker(id="B-1", file="a.py", description="d", state=BlockerState.FIXED,
                              filed_by=[BlockerFiling(reviewer="reviewer-1", cli="sim/codex")])]
        s.tasks = [Task(id="T-1", kind=TaskKind.VERIFY, role=Role.REVIEWER, title="Verify B-1", round=2,
                        prompt="Verify the fixes of B-1.", blockers=["B-1"], seat="sim/codex", agent="reviewer-1"),
                   Task(id="T-2", kind=TaskKind.REVIEW, role=Role.REVIEWER, title="Review", round=2,
                        prompt="Review it.", seat="sim/codex")]
        s.benched = {"reviewer-1": "failed T-0 (exit 3): the panel goes on without it"}
    step = json.loads(run_orch("step", "--json", check=True).stdout)
    session = store.read_session()
    verify, review = session.task("T-1"), session.task("T-2")
    assert (verify.seat, verify.agent, verify.state.value) == ("sim/gemini", "reviewer-2", "running")
    assert review.state.value == "cancelled" and "left the panel" in review.result
    assert any("sim/gemini verifies B-1 instead" in a for a in step["actions"])
