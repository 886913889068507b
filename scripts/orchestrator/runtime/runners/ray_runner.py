"""The ray runner: each run a named, detached actor on a Ray cluster, copied home by a pump.

This process never connects to Ray itself (connecting costs seconds and a driver per
process): it starts the run's pump (ray_pump.py), a detached local process that outlives
orch exactly as supervise.sh does, and that stands in the run record as the run's process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ...core.errors import InvalidInput, ProcessError
from ..ceiling import ENV_NAME
from ..procs import is_same_process, terminate_group
from .base import RunStart
from .git_ship import workspace

MAX_ATTACHES = 5  # pumps restarted for one run before its end is taken as unknown
REMOTE_STOP_EXTRA = 30.0  # a pump asked to stop needs the node's grace plus a round trip
ATTACH_TIMEOUT = 10.0


class RayRunner:
    kind = "ray"

    def __init__(self, address: str = "auto", forward_env: tuple[str, ...] = ()):
        self.address = address
        self.forward_env = forward_env

    def check_workspace(self, cwd: Path) -> None:
        if importlib.util.find_spec("ray") is None:
            raise InvalidInput("the ray runner needs Ray in orch's environment: pip install 'orch[ray]'")
        workspace(cwd)  # a git work tree with a commit, or a one-line refusal

    def _pump(self, agent_dir: Path, n: int, cwd: Path, env: dict[str, str], args: list[str]) -> None:
        """Start a pump detached (the shell exits at once: no orch process is its parent)."""
        log = open(agent_dir / f"pump-{n}.log", "ab")
        argv = [sys.executable, "-m", "orchestrator.runtime.runners.ray_pump", str(agent_dir), str(n),
                "--address", self.address, "--cwd", str(cwd), *args]
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", '"$@" </dev/null &', "pump", *argv], cwd=cwd, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    close_fds=True)
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ProcessError(f"could not start the Ray pump for {agent_dir.name}: {e}") from None
        finally:
            log.close()

    def start(self, run: RunStart) -> None:
        # The adapter's own variables always travel (they make the command what it is);
        # of orch's environment, only the names the policy lists.
        # The run's ceiling travels as a variable too; the actor applies it to its own checkout.
        ceiling = {ENV_NAME: run.ceiling.to_json()} if run.ceiling is not None else {}
        forward = sorted(set(run.env) | set(ceiling) | {n for n in self.forward_env if n in os.environ})
        env = {**os.environ, **run.env, **ceiling, "RAY_USAGE_STATS_ENABLED": "0"}
        self._pump(run.agent_dir, run.n, run.cwd, env,
                   ["--cli", run.cli, "--forward", ",".join(forward), *(["--resumes"] if run.resumes else []),
                    "--", *run.argv])

    def stop(self, record: dict, grace: float) -> str:
        """TERM the pump, which stops the CLI on its node and records the exit."""
        pid = record.get("pid")
        return terminate_group(pid, record.get("proc_start"), grace + REMOTE_STOP_EXTRA) if pid else "no process"

    def reattach(self, agent_dir: Path, n: int, record: dict) -> bool:
        path = agent_dir / f"run-{n}.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if "ended_at" in raw or raw.get("attaches", 0) >= MAX_ATTACHES:
            return False
        cwd = Path(raw.get("cwd") or _run_cwd(agent_dir, n) or ".")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self._pump(agent_dir, n, cwd if cwd.is_dir() else agent_dir, env, ["--reattach"])
        # Wait for the new pump to stand in the record: a second sync meanwhile must not start a third.
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while time.monotonic() < deadline:
            try:
                now = json.loads(path.read_text())
            except (OSError, ValueError):
                now = {}
            if now.get("pid") != raw.get("pid") or "ended_at" in now:
                return True
            time.sleep(0.02)
        return is_same_process(raw.get("pid"), raw.get("proc_start"))


def _run_cwd(agent_dir: Path, n: int) -> str:
    """The run's working folder, from the agent's meta.json (the pump needs it to take commits back)."""
    try:
        runs = json.loads((agent_dir / "meta.json").read_text()).get("runs", [])
        return next((r.get("cwd", "") for r in runs if r.get("n") == n), "")
    except (OSError, ValueError, AttributeError):
        return ""
