"""The verification gate: the project's own tests on every integration commit, with real git,
real test commands (unittest, pytest, node --test) and real sim sessions.

A merge that breaks a test is blamed on its author (bisecting when several merges landed
between two runs), fixed by that author and verified by a green run; failures already at
the session's base are the team's work; a person can declare a failing test out of scope;
a session whose final commit fails its tests is not complete.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchtest import ROOT, orch_env, run_orch, wait_until
from test_worktrees import GOAL, SIM_TEAM, agents_of, git, repo, session_of, user_state  # noqa: F401 - repo: a fixture

RUNNER = [sys.executable, "-m", "orchestrator.verify.runner"]
CONFINE = [sys.executable, str(ROOT / "tests" / "confine.py")]


def run_runner(tree: Path, spec: dict, confined_to: Path | None = None, timeout: float = 120) -> tuple[dict, str]:
    """The verifier's program on a tree, as the verifier runs it: (its result, the test output)."""
    env = orch_env({"TMPDIR": str(confined_to)} if confined_to else None)
    argv = RUNNER + ["--spec", json.dumps(spec)]
    if confined_to is not None:
        argv = CONFINE + [str(confined_to), "--"] + argv
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 3 and confined_to is not None:
        pytest.skip("this kernel has no Landlock")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1]["type"] == "result"
    return lines[-1]["result"], proc.stderr


def files_of(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


UNITTEST_FILE = """import unittest


class TestMath(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(1 + 1, 2)

    def test_wrong(self):
        self.assertEqual(1 + 1, 3)
"""
PYTEST_FILE = """def test_fine():
    assert True


def test_broken():
    assert {"a": 1} == {"a": 2}
"""


# ---------------------------------------------------------------- the runner: real test commands


@pytest.mark.parametrize("style", ["unittest", "pytest"])
def test_the_runner_names_the_failing_tests_and_writes_nothing_when_it_may_write_only_its_temp_folder(
        tmp_path, style):
    tree, scratch = tmp_path / "tree", tmp_path / "tmp"
    (tree / "tests").mkdir(parents=True)
    scratch.mkdir()
    (tree / "tests" / "__init__.py").write_text("")
    (tree / "tests" / "test_math.py").write_text(UNITTEST_FILE if style == "unittest" else PYTEST_FILE)
    before = files_of(tree)
    result, output = run_runner(tree, {"id": "V-1", "commit": "c0ffee"}, confined_to=scratch)
    assert result["command"][1:3] == ["-m", style]
    assert result["exit_code"] != 0 and not result["timed_out"]
    wanted = "tests/test_math.py::TestMath::test_wrong" if style == "unittest" else "tests/test_math.py::test_broken"
    assert result["failing"] == [wanted], output
    assert result["files"] == {wanted: "tests/test_math.py"}
    assert "AssertionError" in result["first_error"] and wanted.rpartition(":")[2] in output
    assert files_of(tree) == before  # no __pycache__, no .pytest_cache: it could not have written them anyway
    # the confinement is real: the same command may not write the tree
    denied = subprocess.run(CONFINE + [str(scratch), "--", sys.executable, "-c", f"open({str(tree / 'x')!r}, 'w')"],
                            capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_a_tree_without_tests_has_no_test_command_and_a_passing_one_passes(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("nothing to test yet\n")
    result, _ = run_runner(tree, {"id": "V-1", "commit": "c0ffee"})
    assert result["command"] == [] and "no test command" in result["source"]
    (tree / "test_ok.py").write_text("import unittest\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        pass\n")
    result, _ = run_runner(tree, {"id": "V-2", "commit": "c0ffee"})
    assert result["exit_code"] == 0 and result["failing"] == [] and "passed" in result["summary"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_test_runner_failures_are_named_from_its_tap_output(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "package.json").write_text(json.dumps({"name": "t", "scripts": {"test": "node --test"}}))
    (tree / "math.test.js").write_text("const test = require('node:test');\nconst assert = require('node:assert');\n"
                                       "test('adds', () => assert.strictEqual(1 + 1, 2));\n"
                                       "test('breaks', () => assert.strictEqual(1 + 1, 3));\n")
    result, output = run_runner(tree, {"id": "V-1", "commit": "c0ffee"})
    assert result["command"] == ["npm", "test"] and result["source"] == "package.json"
    assert "breaks" in result["failing"] and "adds" not in result["failing"], output


def test_a_command_past_its_time_limit_is_stopped_with_its_whole_process_group(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    pids = tmp_path / "pids"
    script = ("import os, subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
              "time.sleep(300)\n")
    result, _ = run_runner(tree, {"id": "V-1", "commit": "c0ffee", "command": [sys.executable, "-c", script],
                                  "timeout": 2})
    assert result["timed_out"] and "time limit" in result["summary"]
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                   timeout=20, what=f"process {pid} to be gone")


def test_a_command_that_cannot_run_is_an_error_not_a_test_failure(tmp_path):
    result, _ = run_runner(tmp_path, {"id": "V-1", "commit": "c0ffee", "command": ["no-such-test-runner-xyz"]})
    assert "cannot run" in result["error"]


# ---------------------------------------------------------------- what counts, in the criteria


def _session_dict(runs, known=(), enabled=True):
    merges = [{"task": "T-2", "agent": "implementer-1", "branch": "b", "outcome": "merged", "commit": "tip1"}]
    return {"id": "s", "state": "active", "coordinated": True, "tasks": [{"id": "T-1", "kind": "spec", "state": "done",
                                                                          "title": "x"}],
            "git": {"mode": "worktrees", "base": "base0", "merges": merges},
            "verification": {"enabled": enabled, "reason": "off: the policy's [verify] enabled = false",
                             "runs": runs, "known_failures": [{"test": k, "source": "command"} for k in known]}}


def _run(commit, exit_code, failing=(), purpose="tip"):
    return {"id": "V-9", "commit": commit, "purpose": purpose, "state": "finished", "command": ["python3", "-m", "x"],
            "exit_code": exit_code, "failing": list(failing)}


@pytest.mark.parametrize("runs,known,enabled,ok,says", [
    ([_run("tip1", 0)], (), True, True, "passed on the final commit"),
    ([_run("tip1", 1, ["t.test_a"])], (), True, False, "the project's tests fail on the final integration commit"),
    ([_run("tip1", 1, ["t.test_a"])], ("test_a",), True, True, "known failures let through: t.test_a"),
    ([_run("tip1", 1, ["t.test_a", "t.test_b"])], ("test_a",), True, False, "t.test_b"),
    ([_run("tip1", 1, [])], (), True, False, "without naming a failing test"),
    ([_run("base0", 0, purpose="base")], (), True, False, "have not run on the final integration commit"),
    ([_run("tip1", 0), _run("old", 1, ["t.test_a"], purpose="bisect")], (), True, True, "passed"),
    ([], (), False, True, "off"),
])
def test_the_final_commit_criterion(runs, known, enabled, ok, says):
    from orchestrator.criteria.completion import judge

    verdict = judge(_session_dict(runs, known, enabled), [], lambda a, n: 0)
    assert verdict["ok"] is ok, verdict["missing"]
    assert says in verdict["verification"] + " ".join(verdict["missing"])


# ---------------------------------------------------------------- sim sessions, end to end


def run_session(repo: Path, goal: str, *extra: str, expect: int = 0) -> subprocess.CompletedProcess:
    proc = run_orch("run", goal, *SIM_TEAM, *extra, env={"ORCH_SIM_PACE": "0.05"}, timeout=360)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc


def test_a_merge_that_breaks_a_test_is_blamed_on_its_author_who_fixes_it_and_a_green_run_verifies_it(repo):
    before = user_state(repo)
    run_session(repo, GOAL, "--implementers", "2")
    assert user_state(repo) == before
    session = session_of(repo)
    sid, tasks = session["id"], {t["id"]: t for t in session["tasks"]}
    assert session["state"] == "complete"
    core = next(t for t in tasks.values() if t["kind"] == "implement" and t["title"].endswith("core"))
    caught = [b for b in session["blockers"] if b["source"] == "verification"]
    assert len(caught) == 1, caught
    b = caught[0]
    # named: the failing test and the merge that broke it; assigned to that merge's author
    assert b["tests"] == ["tests/test_package.py::TestPackage::test_version"] and b["file"] == "tests/test_package.py"
    assert b["merge"] == core["id"] and b["author"] == core["agent"] and core["id"] in b["description"]
    fix = tasks[b["fix_task"]]
    assert fix["kind"] == "fix" and fix["agent"] == core["agent"] and fix["state"] == "done" and fix["merged"]
    assert [h["state"] for h in b["history"]] == ["found", "assigned", "fixed", "verified"]
    assert b["history"][-1]["by"] == "verifier"
    runs = {r["id"]: r for r in session["verification"]["runs"]}
    assert session["verification"]["runs"][0]["purpose"] == "base"
    green = next(r for r in runs.values() if r["id"] in b["history"][-1]["note"])
    assert green["exit_code"] == 0 and green["state"] == "finished"
    git(repo, "merge-base", "--is-ancestor", fix["merged"], green["commit"])  # it tested the fix
    red = runs[b["found_by"]]
    assert "tests/test_package.py::TestPackage::test_version" in red["failing"]
    git(repo, "merge-base", "--is-ancestor", core["merged"], red["commit"])
    # the reviewer read the tests' result and never judged the verifier's blocker
    review = next(t for t in tasks.values() if t["kind"] == "review")
    assert "Test results: orch ran" in review["prompt"]
    reviews = [json.loads(p.read_text()) for p in (repo / ".orch").glob("sessions/*/reviews/R-*.json")]
    assert all(b["id"] not in r["verified"] + r["reopened"] for r in reviews)
    assert all(b["id"] not in t["blockers"] for t in tasks.values() if t["kind"] == "verify")
    # the verifier: a read-level pseudo-agent in its own detached checkout, visible like any agent
    verifier = agents_of(repo)["verifier"]
    assert verifier["role"] == "verifier" and verifier["permission"] == "read" and verifier["state"] == "done"
    assert Path(verifier["cwd"]).resolve() == (repo / ".orch" / "worktrees" / sid / "verifier").resolve()
    assert verifier["branch"] is None and len(verifier["runs"]) == len(runs)
    assert "verifier" in run_orch("status", check=True).stdout
    logs = run_orch("logs", "verifier", check=True).stdout
    assert "tests FAILED" in logs and "tests passed" in logs
    assert "ERROR: test_version (tests.test_package" in run_orch("logs", "verifier", "--raw", check=True).stdout
    check = json.loads(run_orch("check", "--json").stdout)
    assert check["ok"] and "passed on the final commit" in check["verification"]
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "## Verification" in md and f"**{b['id']}**" in md and f"{core['id']}'s merge" in md


def test_failures_at_the_base_are_the_teams_work_and_stop_no_one_once_they_pass(repo):
    (repo / "tests").mkdir()
    (repo / "tests" / "test_wanted.py").write_text(
        "import unittest\n\n\nclass TestWanted(unittest.TestCase):\n    def test_the_package_has_its_version(self):\n"
        "        import textutilities\n        self.assertEqual(textutilities.__version__, '0.1.0')\n")
    run_session(repo, GOAL + " [sim: careful]")
    session = session_of(repo)
    assert session["state"] == "complete"
    (b,) = [b for b in session["blockers"] if b["source"] == "verification"]
    assert b["tests"] == ["tests/test_wanted.py::TestWanted::test_the_package_has_its_version"]
    assert b["merge"] is None and b["author"] is None  # nobody's merge broke it: the base did
    runs = {r["id"]: r for r in session["verification"]["runs"]}
    assert runs[b["found_by"]]["purpose"] == "base"
    assert [h["state"] for h in b["history"]] == ["found", "fixed", "verified"]  # the team's work made it pass
    assert "fixed by later work" in b["history"][1]["note"] and b["history"][-1]["by"] == "verifier"
    assert not [e for e in _events(repo) if e["kind"] == "verify.blame" and e["data"].get("merge")]


def _events(repo: Path) -> list[dict]:
    path = next((repo / ".orch").glob("sessions/*/events.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


IMPOSSIBLE = ("import unittest\n\n\nclass TestImpossible(unittest.TestCase):\n    def test_impossible(self):\n"
              "        self.assertEqual('what the upstream service says', 'unknown offline')\n")


def test_a_session_whose_final_commit_fails_its_tests_is_not_complete_until_a_person_says_it_is_out_of_scope(repo):
    (repo / "tests").mkdir()
    (repo / "tests" / "test_impossible.py").write_text(IMPOSSIBLE)
    proc = run_session(repo, GOAL + " [sim: careful]", "--max-rounds", "2", expect=1)
    session = session_of(repo)
    sid = session["id"]
    assert session["state"] == "stopped" and session["stop_reason"].startswith("round limit")
    assert f"orch resume {sid} --max-rounds 3" in proc.stdout  # the next command at the round limit: one more round
    (b,) = [b for b in session["blockers"] if b["source"] == "verification"]
    # the team's work: the coordinator gave it to an implementer, whose fix the tests reopened
    path = [h["state"] for h in b["history"]]
    assert path[:4] == ["found", "assigned", "fixed", "reopened"], path
    fix = next(t for t in session["tasks"] if t["id"] == b["fix_task"])
    assert fix["agent"].startswith("implementer") and b["history"][1]["by"] in (fix["id"], fix["agent"])
    assert b["history"][2]["by"] == fix["agent"]
    assert b["history"][3]["by"] == "verifier" and "still failing" in b["history"][3]["note"]
    check = run_orch("check")
    assert check.returncode == 1 and "the project's tests fail on the final integration commit" in check.stdout
    assert run_orch("report", "--final").returncode == 1
    # a person declares the test out of scope, once; nothing else lets it through
    declared = run_orch("verify", "--known-failure", "test_impossible", "--why", "needs the upstream service")
    assert declared.returncode == 0 and "known failure" in declared.stdout
    resumed = run_orch("resume", "--max-rounds", "4", env={"ORCH_SIM_PACE": "0.05"}, timeout=240)  # no id: the active one
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    session = session_of(repo)
    assert session["state"] == "complete"
    b = next(x for x in session["blockers"] if x["id"] == b["id"])
    assert b["state"] == "verified" and "needs the upstream service" in b["history"][-1]["note"]
    report = json.loads(next((repo / ".orch").glob("sessions/*/reports/session-report.json")).read_text())
    assert "known failures let through: tests/test_impossible.py::TestImpossible::test_impossible" in \
        report["verification"]["final"]
    assert [k["test"] for k in report["verification"]["known_failures"]] == ["test_impossible"]
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "Known failures (declared out of scope" in md and "needs the upstream service" in md


def test_a_known_failure_in_the_policy_lets_exactly_that_test_through(repo):
    (repo / "tests").mkdir()
    (repo / "tests" / "test_impossible.py").write_text(IMPOSSIBLE)
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.toml").write_text('[verify]\nknown_failures = ["tests/test_impossible.py", '
                                                '"test_impossible"]\n')
    run_session(repo, GOAL + " [sim: careful]")
    session = session_of(repo)
    assert session["state"] == "complete" and not [b for b in session["blockers"] if b["source"] == "verification"]
    assert {k["source"] for k in session["verification"]["known_failures"]} == {"policy"}


def test_the_gate_off_in_the_policy_runs_nothing_and_the_report_says_so(repo):
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.toml").write_text("[verify]\nenabled = false\n")
    run_session(repo, GOAL + " [sim: careful]")
    assert "verifier" not in agents_of(repo)
    md = next((repo / ".orch").glob("sessions/*/reports/session-report.md")).read_text()
    assert "## Verification" in md and "enabled = false" in md


@pytest.mark.parametrize("setting,says", [
    ('command = "pytest -q"', "verify.command"),
    ('command = ["pytest -q"]', "looks like a shell line"),
    ("timeout_seconds = 0", "verify.timeout_seconds"),
    ('enabled = "yes"', "verify.enabled"),
])
def test_a_bad_verify_setting_is_one_line_and_nothing_is_created(repo, setting, says):
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.toml").write_text(f"[verify]\n{setting}\n")
    proc = run_orch("start", GOAL, *SIM_TEAM)
    assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1
    assert says in proc.stderr, proc.stderr
    assert not list((repo / ".orch").glob("sessions/*"))


def test_verify_without_a_test_or_with_a_stray_why_is_one_line(repo):
    run_orch("start", GOAL, *SIM_TEAM, check=True)
    for args in (["--why", "no test named"], ["--known-failure", " "],
                 ["--known-failure", "a", "--forget", "b"], ["--forget", "never-declared"]):
        proc = run_orch("verify", *args)
        assert proc.returncode == 2 and proc.stderr.startswith("orch: ") and len(proc.stderr.splitlines()) == 1, args


# ---------------------------------------------------------------- bisect, on a real repository


def _drive_gate(store, rounds: int = 12) -> list[str]:
    """Take gate steps as the coordinator does, each run a real verifier process, until settled."""
    from orchestrator.engine.verification import VERIFIER, Gate, settled
    from orchestrator.runtime.ingest import sync_session

    said: list[str] = []
    for _ in range(rounds):
        sync_session(store)
        gate = Gate(store, lambda text, **kw: said.append(text), lambda s, why: said.append(f"STOP {why}"))
        with store.edit_session() as session:
            events = gate.step(session, {a.id: a for a in store.agents()})
        store.append_events(events)
        gate.start()
        if settled(store.read_session()):
            return said

        def ended() -> bool:
            sync_session(store)
            agent = store.read_agent(VERIFIER)
            return agent.runs[-1].n in agent.ingest.finished_runs

        wait_until(ended, timeout=60, what="the verifier's run to end")
    raise AssertionError(f"the gate did not settle: {said}")


def test_several_merges_between_two_runs_are_bisected_and_each_test_blamed_on_the_merge_that_broke_it(repo):
    from orchestrator.core.models import Agent, Permission, Role, Task, TaskKind
    from orchestrator.engine import integration
    from orchestrator.store.sessions import Workspace

    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import one, two\n\n\nclass TestCalc(unittest.TestCase):\n"
        "    def test_one(self):\n        self.assertEqual(one(), 1)\n\n    def test_two(self):\n"
        "        self.assertEqual(two(), 2)\n")
    (repo / "calc.py").write_text("def one():\n    return 1\n\n\ndef two():\n    return 2\n")
    store = Workspace(repo / ".orch").create(repo, goal="calc", coordinated=True)
    edits = {"implementer-1": ("docs.txt", "harmless\n"),  # each in its own worktree, from the base
             "implementer-2": ("calc.py", "def one():\n    return 0\n\n\ndef two():\n    return 2\n"),
             "implementer-3": ("calc.py", "def one():\n    return 1\n\n\ndef two():\n    return 22\n")}
    with store.edit_session() as session:
        session.git = integration.set_up(session.id, repo, repo / ".orch", "")
        agents = []
        for aid in edits:  # every worktree from the base first: three agents working at once
            place = integration.place_new_agent(session, aid, Role.IMPLEMENTER)
            agents.append(Agent(id=aid, session=session.id, role=Role.IMPLEMENTER, cli="sim",
                                permission=Permission.EDIT, cwd=str(place.cwd), branch=place.branch))
        for n, agent in enumerate(agents, start=1):  # then their merges, one after another, before any run
            name, text = edits[agent.id]
            (Path(agent.cwd) / name).write_text(text)
            task = Task(id=f"T-{n}", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title=f"work {n}", agent=agent.id)
            session.tasks.append(task)
            landing = integration.land(session, task, agent)
            assert landing.record.outcome == "merged", landing
    said = _drive_gate(store)
    session = store.read_session()
    runs = session.verification.runs
    assert [r.purpose for r in runs] == ["base", "tip", "bisect", "bisect"], [(r.purpose, r.failing) for r in runs]
    merges = {m.task: m.commit for m in session.git.merges}
    assert [r.commit for r in runs[2:]] == [merges["T-1"], merges["T-2"]]  # two runs for three merges
    blamed = {b.merge: (b.author, b.tests) for b in session.blockers}
    assert blamed == {"T-2": ("implementer-2", ["tests/test_calc.py::TestCalc::test_one"]),
                      "T-3": ("implementer-3", ["tests/test_calc.py::TestCalc::test_two"])}, said
    assert any("bisecting" in line for line in said) and not any(line.startswith("STOP") for line in said)


def test_check_commit_is_one_reusable_step_with_a_structured_result(repo, tmp_path):
    from orchestrator.verify.check import check_commit

    (repo / "tests").mkdir()
    (repo / "tests" / "test_math.py").write_text(UNITTEST_FILE)
    git(repo, "add", "tests")
    git(repo, "commit", "-q", "-m", "a failing test", "--", "tests")
    red = git(repo, "rev-parse", "HEAD")
    (repo / "tests" / "test_math.py").write_text(UNITTEST_FILE.replace("1 + 1, 3", "1 + 1, 2"))
    git(repo, "commit", "-q", "-m", "fixed", "--", "tests")
    green = git(repo, "rev-parse", "HEAD")
    checkout = tmp_path / "checkout"
    first = check_commit(repo, checkout, red)
    assert not first.passed and first.failures == ["tests/test_math.py::TestMath::test_wrong"] and first.exit_code == 1
    assert check_commit(repo, checkout, red, known=["test_wrong"]).passed  # declared out of scope
    second = check_commit(repo, checkout, green)
    assert second.passed and second.command[-3:] == ["discover", "-s", "tests"] and not second.failing
    assert git(checkout, "rev-parse", "HEAD") == green
    broken = check_commit(repo, checkout, green, command=["no-such-runner-xyz"])
    assert not broken.passed and "cannot run" in broken.error


def test_check_commit_runs_the_tests_under_a_read_level_agents_kernel_ceiling(repo, tmp_path):
    from orchestrator.runtime.ceiling import kernel_status
    from orchestrator.verify.check import check_commit

    if not kernel_status()[0]:
        pytest.skip("this kernel has no Landlock")
    outside = tmp_path / "outside.txt"
    (repo / "tests").mkdir()
    (repo / "tests" / "test_write.py").write_text(
        "import os, tempfile, unittest\n\n\nclass TestWrite(unittest.TestCase):\n"
        "    def test_temp_works(self):\n        with tempfile.NamedTemporaryFile() as f:\n            f.write(b'x')\n\n"
        "    def test_outside(self):\n"
        f"        with open({str(outside)!r}, 'w') as f:\n            f.write('escaped')\n")
    git(repo, "add", "tests")
    git(repo, "commit", "-q", "-m", "a test that writes outside", "--", "tests")
    result = check_commit(repo, tmp_path / "checkout", git(repo, "rev-parse", "HEAD"))
    assert result.failures == ["tests/test_write.py::TestWrite::test_outside"], result
    assert not outside.exists()


def test_orch_run_killed_while_the_tests_run_is_resumed_without_running_any_verification_twice(repo):
    import signal

    from orchtest import orch_argv

    proc = subprocess.Popen(orch_argv("run", GOAL, *SIM_TEAM, "--implementers", "2"), cwd=repo,
                            env=orch_env({"ORCH_SIM_PACE": "0.05"}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def testing() -> bool:  # a tip run decided or under way: the moment to pull the plug
        try:
            runs = (session_of(repo).get("verification") or {}).get("runs") or []
        except (StopIteration, ValueError):
            return False
        return any(r["purpose"] == "tip" and r["state"] in ("pending", "running") for r in runs)

    wait_until(testing, timeout=180, interval=0.01, what="a verification run of the tip")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_orch("resume", env={"ORCH_SIM_PACE": "0.05"}, timeout=360)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    session = session_of(repo)
    assert session["state"] == "complete"
    runs = session["verification"]["runs"]
    assert all(r["state"] == "finished" and r["judged"] for r in runs), runs
    verifier = agents_of(repo)["verifier"]
    requests = [json.loads(r["prompt"])["id"] for r in verifier["runs"]]
    assert sorted(requests) == sorted(r["id"] for r in runs)  # one verifier run per verification, none twice
    assert [r["agent_run"] for r in runs] == [requests.index(r["id"]) + 1 for r in runs]
    caught = [b for b in session["blockers"] if b["source"] == "verification"]
    assert len(caught) == 1 and caught[0]["state"] == "verified"  # blamed once, not again after the kill
