"""The per-run supervisor: the only process that waits on an agent CLI.

    python -m orchestrator.supervisor AGENT_DIR RUN_N   (the run's spec arrives on stdin)

It detaches (double fork, own session), starts the CLI in its own process group with
stdout and stderr appended straight to files in the agent's folder, records the pid and
the process start time (pids are reused), waits, and records the exit code or signal and
the end time in run-<n>.json — whether or not any orch command is still alive. The spec
travels on stdin, never through a file, because it holds the prompt and environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .procs import proc_start_time

def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _detach() -> None:
    """Fork so the launcher can reap us at once, and leave its session and terminal."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(sig, signal.SIG_IGN)


def supervise(agent_dir: Path, n: int, spec: dict[str, Any]) -> int:
    """Run one CLI process to its end and record what happened."""
    record_path = agent_dir / f"run-{n}.json"
    record: dict[str, Any] = {"n": n, "supervisor_pid": os.getpid(), "supervisor_start": proc_start_time(os.getpid()),
                              "started_at": _now()}
    env = dict(os.environ)
    env.update(spec.get("env_add") or {})
    for key in spec.get("env_remove") or []:
        env.pop(key, None)
    child: Optional[subprocess.Popen] = None
    with open(agent_dir / "stdout.jsonl", "ab", buffering=0) as out, \
            open(agent_dir / "stderr.log", "ab", buffering=0) as err:
        try:
            child = subprocess.Popen(
                spec["argv"], cwd=spec["cwd"], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True, close_fds=True,
            )
        except OSError as e:
            err.write(f"orch: could not start {spec['argv'][0]}: {e.strerror or e}\n".encode())
            record.update(exit_code=127, ended_at=_now(), note=f"could not start: {e.strerror or e}")
            _write_json(record_path, record)
            return 127
    record.update(pid=child.pid, pgid=child.pid, proc_start=proc_start_time(child.pid))
    _write_json(record_path, record)

    def forward(signum: int, _frame: Any) -> None:  # a TERM for us is a TERM for the agent
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    code = child.wait()
    record["ended_at"] = _now()
    if code < 0:
        record.update(exit_code=128 - code, signal=-code)
    else:
        record.update(exit_code=code)
    _write_json(record_path, record)
    return 0


def main(argv: list[str]) -> int:
    agent_dir, n = Path(argv[1]), int(argv[2])
    spec = json.loads(sys.stdin.read())
    sys.stdin.close()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _detach()
    return supervise(agent_dir, n, spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
