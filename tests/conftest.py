"""Shared test fixtures: every test gets its own orch state, sim memory and workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _hermetic_state(tmp_path_factory, monkeypatch):
    """No test reads or writes the repository's or the user's orch state."""
    base = tmp_path_factory.mktemp("orch-state")
    monkeypatch.setenv("ORCH_HOME", str(base / ".orch"))
    monkeypatch.setenv("ORCH_SIM_HOME", str(base / "sim"))
    monkeypatch.setenv("ORCH_SIM_PACE", os.environ.get("ORCH_TEST_SIM_PACE", "0"))
    yield


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch):
    """A scratch workspace, also the current directory; its state lives in ./.orch."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    monkeypatch.setenv("ORCH_HOME", str(ws / ".orch"))
    return ws


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ORCH_NO_SKIPS=1 (scripts/test, once it set up everything) a skip is a failure that says why: what a machine lacks
    (a namespace, chromium, Landlock) must not quietly leave a promise untested there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ORCH_NO_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where nothing may be (ORCH_NO_SKIPS=1): {reason}"
