"""The runner interface: start a run, stop it, and (for remote runs) reattach to it.

A run's contract with everything above the runner is the agent folder:
  - stdout.jsonl and stderr.log receive the CLI's raw bytes, appended in order;
  - run-N.json holds the supervising process's pid and start time (`pid`, `proc_start`,
    `supervisor_pid`, `supervisor_start`) while the run lives, then `exit_code`,
    `signal` and `ended_at` — or `lost` (why) and `ended_at` when the run's exit can
    never be known (its node died).
The ingest reads those files and judges liveness by the recorded pid, whatever the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

from ..ceiling import Ceiling


@dataclass(frozen=True)
class RunStart:
    """What a runner needs to start one run of an agent's CLI."""

    agent_dir: Path
    n: int
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)  # the adapter's additions to orch's environment
    cli: str = ""  # the registry name: a remote runner places the run where this CLI is installed
    resumes: bool = False  # continues the previous run's CLI session, which lives where that run ran
    ceiling: Optional[Ceiling] = None  # what the kernel lets the run write (None: not confined)


class Runner(Protocol):
    kind: str

    def check_workspace(self, cwd: Path) -> None:
        """Raise InvalidInput when runs cannot start in cwd with this runner (before anything is recorded)."""

    def start(self, run: RunStart) -> None:
        """Start the run detached; its supervisor writes run-N.json (the caller waits for it)."""

    def stop(self, record: dict, grace: float) -> str:
        """End the run (TERM, then KILL after grace); how it ended: terminated, killed, already-gone."""

    def reattach(self, agent_dir: Path, n: int, record: dict) -> bool:
        """Restart a dead supervisor whose run goes on elsewhere; False when there is nothing to reattach."""
