"""Helpers for tests that drive orch the way users do: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]


def orch_argv(*args: str) -> list[str]:
    """argv that runs the orch CLI of this checkout with the current interpreter."""
    return [sys.executable, "-m", "orchestrator", *args]


def orch_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "scripts") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_orch(*args: str, cwd: Optional[Path] = None, timeout: float = 120, check: bool = False,
             env: Optional[dict[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run `orch ARGS` as a real subprocess; returns the completed process (text mode)."""
    proc = subprocess.run(orch_argv(*args), cwd=cwd, env=orch_env(env), capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def orch_json(*args: str, **kw: Any) -> Any:
    proc = run_orch(*args, "--json", check=True, **kw)
    return json.loads(proc.stdout)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll a condition until it is truthy or the deadline passes (then fail, saying what)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}: last={last!r}")


def kill_agents_left(state_root: Path) -> None:
    """SIGKILL the process group of every agent run recorded under a state folder (a test's clean-up)."""
    for record in state_root.glob("sessions/*/agents/*/run-*.json"):
        try:
            pid = json.loads(record.read_text()).get("pid")
            if isinstance(pid, int) and pid > 1:
                os.killpg(pid, signal.SIGKILL)
        except (ValueError, OSError):
            pass
