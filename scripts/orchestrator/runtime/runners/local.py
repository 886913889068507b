"""The local runner: each run under supervise.sh on this machine (orch's original behaviour)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ...core.errors import ProcessError
from ..ceiling import wrap_command
from ..procs import terminate_group
from .base import RunStart

SUPERVISOR = Path(__file__).resolve().parent.parent / "supervise.sh"
DETACH_TIMEOUT = 10.0


class LocalRunner:
    kind = "local"

    def check_workspace(self, cwd: Path) -> None:
        return None  # any folder the policy allows

    def start(self, run: RunStart) -> None:
        """supervise.sh detaches at once; the argv travels as arguments and the environment as
        the environment, never through a file: both may hold a prompt or a key. Under a
        ceiling, supervise.sh starts the exec wrapper (runtime/confine.py), which restricts
        itself and becomes the CLI, and removes the run's private temp folder when it ends."""
        env = {**os.environ, **run.env}
        argv, tmp = list(run.argv), []
        try:
            if run.ceiling is not None:
                wrapped = wrap_command(run.ceiling, run.argv, env, f"{run.agent_dir.parent.parent.name}-"
                                       f"{run.agent_dir.name}-{run.n}")
                argv, tmp = wrapped.argv, (["--tmp", wrapped.tmpdir] if wrapped.tmpdir else [])
            proc = subprocess.Popen(
                ["/bin/sh", str(SUPERVISOR), "detach", str(run.agent_dir), str(run.n), *tmp, "--", *argv],
                cwd=run.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            )
            proc.wait(timeout=DETACH_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            if tmp and not isinstance(e, subprocess.TimeoutExpired):  # nothing started that could use it
                shutil.rmtree(tmp[1], ignore_errors=True)
            raise ProcessError(f"could not start the supervisor for {run.agent_dir.name}: {e}") from None

    def stop(self, record: dict, grace: float) -> str:
        pid = record.get("pid")
        return terminate_group(pid, record.get("proc_start"), grace) if pid else "no process"

    def reattach(self, agent_dir: Path, n: int, record: dict) -> bool:
        return False  # a local CLI dies with nobody left to wait on it: nothing runs elsewhere
