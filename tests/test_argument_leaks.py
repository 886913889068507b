"""The argument rules close the leaks the kernel's ceiling was built for, and their class.

What broke: the default `allowed.run-tests` rule let a read-only reviewer run
`python3 -m unittest tempfile.mkdtemp` (unittest imports and calls whatever a name names),
and `pytest --benchmark-storage=file:///tmp/x --benchmark-autosave` (a `://` value skipped
the outside-path check). A module runner now takes only test names and paths of the
workspace; a URL is a place like a path (file: URLs are their path, any other is outside);
and the same shape elsewhere — plugin options that write, options that import a module by
name, test runners' flags that write elsewhere — refuses a grant at the read level.
"""

from __future__ import annotations


import pytest

from orchestrator.safety.policy import argument_hit, load_policy_file
from orchtest import orch_json, run_orch, wait_until


@pytest.fixture
def project(tmp_path):
    ws = (tmp_path / "ws")
    (ws / "tests").mkdir(parents=True)
    (ws / "tests" / "test_a.py").write_text("import unittest\n")
    (ws / "pkg").mkdir()
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "mod.py").write_text("")
    return ws.resolve()


# (command, refused at read, refused at any level)
CASES = [
    # unittest runs any zero-argument callable it is named: only the workspace's tests may be named
    ("python3 -m unittest tempfile.mkdtemp", "args.outside", "args.outside"),
    ("python3 -m unittest compileall.compile_path", "args.outside", "args.outside"),
    ("python3 -m unittest ensurepip.bootstrap", "args.outside", "args.outside"),
    ("python3 -m unittest http.server.test", "args.outside", "args.outside"),
    ("python3 -m unittest -v tests.test_a tempfile.mkdtemp", "args.outside", "args.outside"),
    ("python3 -m unittest ../elsewhere/test_x.py", "args.outside", "args.outside"),
    ("python3 -m unittest tests.test_a", None, None),
    ("python3 -m unittest tests/test_a.py", None, None),
    ("python3 -m unittest pkg.test_mod.Case.test_one", None, None),
    ("python3 -m unittest mod", None, None),
    ("python3 -m unittest -k tempfile.mkdtemp tests.test_a", None, None),  # -k takes a pattern
    ("python3 -m unittest discover -s tests -t . -p 'test_*.py'", None, None),
    ("python3 -m unittest", None, None),
    # URLs are places: file: URLs are their path, any other scheme is outside
    ("pytest --benchmark-storage=file:///tmp/x --benchmark-autosave", "args.writes", "args.outside"),
    ("pytest --benchmark-storage=file:///tmp/x", "args.writes", "args.outside"),
    ("python3 -m pytest --junitxml=file:///tmp/r.xml", "args.writes", "args.outside"),
    ("pytest --base-url=https://example.com", "args.outside", "args.outside"),
    ("pytest --cov-report=html:file:///tmp/cov", "args.writes", "args.outside"),
    ("cargo test --target-dir=file:///tmp/t", "args.writes", "args.outside"),
    # the same shape elsewhere: plugins' options that write, options that import by name
    ("pytest --benchmark-autosave", "args.writes", None),
    ("pytest --benchmark-json=bench.json", "args.writes", None),
    ("pytest --alluredir=allure", "args.writes", None),
    ("pytest --snapshot-update", "args.writes", None),
    ("pytest --force-regen", "args.writes", None),
    ("pytest --pyargs tempfile", "args.code", None),
    ("pytest -W error::tempfile.Warn", "args.code", None),
    ("python3 -W ignore::tempfile.Warn -m unittest", "args.code", None),
    ("pytest -p pytest_cov", "args.code", None),
    ("cargo test --doc -- --persist-doctests /tmp/d", "args.writes", "args.outside"),
    ("go test -test.testlogfile=/tmp/log ./...", "args.writes", "args.outside"),
    ("npm test -- --outputFile=file:///tmp/o.json", "args.writes", "args.outside"),
]


@pytest.mark.parametrize("command,read_only,always", CASES, ids=[c[0] for c in CASES])
def test_module_runners_urls_and_writing_options(project, command, read_only, always):
    for strict, expected in ((True, read_only), (False, always)):
        hit = argument_hit(command, cwd=project, roots=[project], read_only=strict)
        assert (hit.rule if hit else None) == expected, (strict, hit)


def test_the_two_leaks_are_no_longer_pre_approved_for_a_reviewer(project):
    policy = load_policy_file(None)
    for command in ("python3 -m unittest tempfile.mkdtemp",
                    "pytest --benchmark-storage=file:///tmp/x --benchmark-autosave"):
        hit, refused = policy.allowed_check(command, cwd=project, roots=[project])
        assert hit is None and refused is not None, command
    assert policy.allowed_hit("python3 -m unittest tests.test_a", cwd=project, roots=[project]) is not None


def test_without_a_folder_to_resolve_in_only_a_bare_runner_passes():
    assert argument_hit("python3 -m unittest", read_only=True) is None
    assert argument_hit("python3 -m unittest tests.test_a", read_only=True).rule == "args.outside"


def test_a_reviewer_asking_for_unittest_tempfile_mkdtemp_is_blocked_not_granted(workspace_dir, tmp_path, monkeypatch):
    """The issue's reproduction, end to end: the denied call is not pre-approved, so the
    reviewer (read ceiling) is blocked by policy with the exact call. Allowed once by the
    user, it runs — and its folder is made in the run's private temp folder, which is gone
    when the run ends: nothing appears in the user's $TMPDIR."""
    user_tmp = tmp_path / "user-tmp"
    user_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(user_tmp))
    agent = run_orch("launch", "--cli", "sim", "--role", "reviewer", "--prompt",
                     "verify [sim: shell='python3 -m unittest tempfile.mkdtemp']", check=True).stdout.split()[-1]
    wait_until(lambda: orch_json("status", agent)["state"] == "denied", timeout=60, what="the denial")
    step = orch_json("step")
    status = wait_until(lambda: (s := orch_json("status", agent))["state"] == "blocked-by-policy" and s, timeout=60,
                        what="the reviewer to be blocked")
    assert status["runs"] == 1 and not any("escalated" in a for a in step["actions"]), step
    assert "python3 -m unittest tempfile.mkdtemp" in status["reason"]

    run_orch("allow", agent, check=True)
    wait_until(lambda: (s := orch_json("status", agent))["runs"] == 2 and s["state"] in ("idle", "failed", "denied"),
               timeout=60, what="the allowed run to end")
    from orchestrator.runtime.ceiling import kernel_status

    if kernel_status()[0]:
        raw = next(workspace_dir.glob(f".orch/sessions/*/agents/{agent}/stdout.jsonl")).read_text()
        assert f"returned {user_tmp}/orch-" in raw  # it ran, in the run's private temp folder...
        assert sorted(user_tmp.iterdir()) == []  # ...which went with the run
