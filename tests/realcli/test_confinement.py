"""The lab's confinement, checked with plain commands (no agent CLI needed).

Commands run in the lab see only loopback, reach the stub there, get the scratch
environment and nothing of ours, and whatever they leave running is stopped at close.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .lab import Lab
from .netns import Namespace, NamespaceUnavailable, Scratch

PY = sys.executable


@pytest.fixture
def bare_lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab without the agent CLIs (no install needed)."""
    try:
        lab = Lab(tmp_path / "lab", bin_dir=None)
    except NamespaceUnavailable as exc:
        pytest.skip(f"no loopback-only network namespace can be made here: {exc}")
    try:
        yield lab
    finally:
        lab.close()


def test_inside_there_is_only_loopback_and_no_route_out(bare_lab: Lab) -> None:
    work = bare_lab.workdir("probe")
    links = bare_lab.run(["ip", "-o", "link", "show"], cwd=work)
    assert links.returncode == 0, links.describe()
    assert [line.split(":")[1].strip() for line in links.stdout.decode().splitlines()] == ["lo"]
    for family in ("-4", "-6"):
        routes = bare_lab.run(["ip", family, "route", "show"], cwd=work)
        assert routes.returncode == 0 and routes.stdout.strip() == b"", routes.describe()


def test_the_stub_answers_inside_and_is_invisible_outside(bare_lab: Lab) -> None:
    probe = (f"import urllib.request as u; r = u.urlopen(u.Request('http://127.0.0.1:{bare_lab.port}/', method='HEAD'));"
             " print(r.status, r.headers['Server'])")
    inside = bare_lab.run([PY, "-c", probe], cwd=bare_lab.workdir("probe"))
    assert inside.returncode == 0 and inside.stdout.decode().startswith("200 orch-model-stub"), inside.describe()
    try:
        outside = httpx.head(f"http://127.0.0.1:{bare_lab.port}/", timeout=2)
    except httpx.ConnectError:
        return  # nothing listens on that port in our own namespace
    assert "orch-model-stub" not in outside.headers.get("server", "")


def test_commands_get_the_scratch_environment_and_nothing_of_ours(bare_lab: Lab, monkeypatch) -> None:
    monkeypatch.setenv("ORCH_TEST_CANARY", "leaked")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-real-looking-key")
    shown = bare_lab.run([PY, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                         cwd=bare_lab.workdir("probe"), env={"EXTRA_FOR_ORCH": "1"})
    env = json.loads(shown.stdout)
    root = str(bare_lab.root)
    assert "ORCH_TEST_CANARY" not in env and env["ANTHROPIC_API_KEY"] != "a-real-looking-key"
    assert env["EXTRA_FOR_ORCH"] == "1"
    for name in ("HOME", "TMPDIR", "XDG_RUNTIME_DIR", "CODEX_HOME", "CLAUDE_CODE_TMPDIR", "XDG_CONFIG_HOME"):
        assert env[name].startswith(root), name
    assert env["ANTHROPIC_BASE_URL"] == env["GOOGLE_GEMINI_BASE_URL"] == f"http://127.0.0.1:{bare_lab.port}"
    assert stat.S_IMODE(os.stat(env["XDG_RUNTIME_DIR"]).st_mode) == 0o700
    config = (Path(env["CODEX_HOME"]) / "config.toml").read_text()
    assert f'base_url = "http://127.0.0.1:{bare_lab.port}/v1"' in config and "[analytics]\nenabled = false" in config
    settings = json.loads((Path(env["HOME"]) / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"


def test_close_stops_detached_processes_left_inside(tmp_path: Path) -> None:
    try:
        lab = Lab(tmp_path / "lab", bin_dir=None)
    except NamespaceUnavailable as exc:
        pytest.skip(f"no loopback-only network namespace can be made here: {exc}")
    try:
        # a daemon-like grandchild in its own session, as a detached agent would be
        started = lab.run([PY, "-c", (
            "import os, subprocess, sys;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True,"
            " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")],
            cwd=lab.workdir("probe"))
        orphan = int(started.stdout)
        assert orphan in lab.leftovers()
        holder = lab.ns.pid
    finally:
        lab.close()
    assert not Path(f"/proc/{orphan}").exists() or "Z" in Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1][:3]
    assert not Path(f"/proc/{holder}").exists()


def test_run_kills_the_whole_process_group_at_its_timeout(bare_lab: Lab) -> None:
    result = bare_lab.run(["sh", "-c", "sleep 600 & sleep 600"], cwd=bare_lab.workdir("probe"), timeout=0.5)
    assert result.timed_out and result.returncode == -9
    assert bare_lab.leftovers() == []


def test_namespace_is_new_and_loopback_only() -> None:
    try:
        ns = Namespace()
    except NamespaceUnavailable as exc:
        pytest.skip(f"no loopback-only network namespace can be made here: {exc}")
    try:
        assert os.stat(ns.path).st_ino != os.stat("/proc/self/ns/net").st_ino
        assert ns.processes() == []
    finally:
        ns.close()


def test_stale_gemini_lock_is_removed(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    scratch.create(port=1)
    lock = scratch.home / ".gemini" / "projects.json.lock"
    lock.mkdir()
    (lock / "owner").write_text("a run that died")
    assert scratch.clear_gemini_lock() is True
    assert not lock.exists() and scratch.clear_gemini_lock() is False


def test_capture_paths_are_neutral(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path / "x")
    work = scratch.workdir("claude")
    slug = str(work).replace("/", "-").replace("_", "-").replace(".", "-")
    text = f'{{"cwd":"{work}","memory":"{scratch.home}/.claude/projects/{slug}/memory/"}}'
    assert scratch.neutral(text) == '{"cwd":"/workspace/claude","memory":"/home/orch/.claude/projects/-workspace-claude/memory/"}'
