"""No avoidable denial: the agents that build may run the project's own tests from the start,
as a narrow rule in their CLI's syntax, and nothing beyond it."""

from __future__ import annotations

import json

import pytest

from orchtest import orch_json, run_orch

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


def test_a_sim_session_runs_its_tests_without_a_single_denial(workspace_dir):
    run_orch("run", "Build a small text utilities library", *SIM_TEAM, check=True)
    report = json.loads(next(workspace_dir.glob(".orch/sessions/*/reports/session-report.json")).read_text())
    assert report["denials"] == [] and report["finalized"]
    ran = [e for e in map(json.loads, next(workspace_dir.glob(".orch/sessions/*/events.jsonl")).read_text()
                          .splitlines()) if "unittest" in json.dumps(e)]
    assert ran, "the implementer really ran the unit tests"


@pytest.mark.parametrize("fmt,rule", [("claude", "Bash(python3 -m unittest:*)"),
                                      ("gemini", "run_shell_command(python3 -m unittest)")])
def test_the_rule_is_narrow_per_cli_and_only_for_roles_that_build(workspace_dir, fmt, rule):
    builder = run_orch("launch", "--cli", "sim", "--format", fmt, "--role", "implementer", "--prompt", "hi",
                       check=True).stdout.split()[-1]
    reviewer = run_orch("launch", "--cli", "sim", "--format", fmt, "--role", "reviewer", "--prompt", "hi",
                        check=True).stdout.split()[-1]
    assert orch_json("status", builder)["rung"] == f"edit+{rule},{rule.replace('python3 -m unittest', 'pytest')}"
    assert orch_json("status", reviewer)["rung"] == "read"


def test_the_project_decides_the_command_and_the_policy_can_withhold_it(workspace_dir):
    (workspace_dir / "package.json").write_text('{"scripts": {"test": "node test.js"}}')
    agent = run_orch("launch", "--cli", "sim", "--role", "implementer", "--prompt", "hi", check=True).stdout.split()[-1]
    assert orch_json("status", agent)["rung"] == "edit+Bash(npm test:*)"
    (workspace_dir / ".orch" / "policy.toml").write_text("[allowed.run-tests]\nenabled = false\n")
    agent = run_orch("launch", "--cli", "sim", "--role", "implementer", "--prompt", "hi", check=True).stdout.split()[-1]
    assert orch_json("status", agent)["rung"] == "edit"
