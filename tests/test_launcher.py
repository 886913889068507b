"""scripts/orch: the first call makes a virtual environment, later calls go straight in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "scripts" / "orch"


def _run(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_first_use_installs_once_even_when_called_twice_at_once_then_starts_fast(tmp_path):
    data = tmp_path / "plugin-data"
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_VENV", "PYTHONPATH")}
    env["CLAUDE_PLUGIN_DATA"] = str(data)  # what Claude Code gives a plugin for its own files
    first = [subprocess.Popen([str(LAUNCHER), "--version"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in first]
    assert all(p.returncode == 0 for p in first), outs
    assert all("orch, version" in out for out, _ in outs)
    # the two racing first calls: one installed, the other waited for it
    assert sum("setting up" in err for _, err in outs) == 1, outs
    venv = data / "venv"
    assert (venv / "bin" / "python").exists() and (venv / ".orch-stamp").exists()
    marks = {p.name: p.stat().st_mtime_ns for p in (venv / ".orch-stamp", venv / ".orch-install.log")}
    again = _run(env, "--version")
    assert again.returncode == 0 and "setting up" not in again.stderr
    # no pip run: a stamp check and the interpreter's start (how fast: bench/read_commands.py)
    assert {p.name: p.stat().st_mtime_ns for p in (venv / ".orch-stamp", venv / ".orch-install.log")} == marks
    print_venv = subprocess.run([str(LAUNCHER)], env={**env, "ORCH_PRINT_VENV": "1"}, capture_output=True, text=True)
    assert print_venv.stdout.strip() == str(venv)


def test_a_missing_python_is_one_clear_line(tmp_path):
    # A PATH with the shell tools the launcher uses, and no Python at all.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "cat", "cksum", "cut", "mkdir", "flock", "tail"):
        found = next(p for p in ("/usr/bin", "/bin") if (Path(p) / tool).exists())
        (tools / tool).symlink_to(Path(found) / tool)
    env = {"PATH": str(tools), "HOME": str(tmp_path), "ORCH_VENV": str(tmp_path / "venv"),
           "ORCH_PYTHON": str(tmp_path / "no-such-python")}
    proc = subprocess.run(["/bin/bash", str(LAUNCHER), "--version"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("orch: needs Python 3.10 or newer")
    assert proc.stderr.count("\n") == 1


def test_scripts_test_help_answers_at_once_and_sets_nothing_up(tmp_path):
    """`scripts/test --help` says what it would set up without setting anything up: run here
    from a folder holding nothing but the script (no launcher, no venv, an empty HOME)."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    (clone / "scripts" / "test").write_bytes((ROOT / "scripts" / "test").read_bytes())
    (clone / "scripts" / "test").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    for flag in ("--help", "-h"):
        proc = subprocess.run([str(clone / "scripts" / "test"), "-x", flag], capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
        assert proc.returncode == 0 and proc.stdout.startswith("usage: scripts/test"), proc.stdout + proc.stderr
        assert "chromium" in proc.stdout and proc.stderr == ""
    assert sorted(str(p.relative_to(clone)) for p in clone.rglob("*")) == ["scripts", "scripts/test"]
    assert not list(home.iterdir())


def test_the_launchers_lock_file_is_ignored_not_tracked():
    """scripts/orch makes `.venv.lock` beside its venv on every first run: git must not see it."""
    tracked = subprocess.run(["git", "ls-files", "--", ".venv.lock"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.returncode == 0 and tracked.stdout == ""
    assert subprocess.run(["git", "check-ignore", "-q", ".venv.lock"], cwd=ROOT).returncode == 0


def test_ci_runs_the_suite_with_skips_turned_into_failures(tmp_path):
    """Where scripts/test set up everything (CI runs it as it is), ORCH_NO_SKIPS defaults to 1:
    a test that would skip fails, saying why."""
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec bash scripts/test")
    assert 'export ORCH_NO_SKIPS="${ORCH_NO_SKIPS:-$set_up_all}"' in (ROOT / "scripts" / "test").read_text()
    (tmp_path / "test_machine.py").write_text("import pytest\n\n\ndef test_needs_a_widget():\n"
                                             "    pytest.skip('no widget on this machine')\n")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "-rfs",
            str(tmp_path / "test_machine.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    env.pop("ORCH_NO_SKIPS", None)  # scripts/test sets it for the suite it runs
    skipped = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**env, "ORCH_NO_SKIPS": "1"},
                            cwd=tmp_path)
    assert failed.returncode == 1 and "no widget on this machine" in failed.stdout, failed.stdout
