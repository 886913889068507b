"""Where an agent's runs execute, behind one small interface (see base.py).

`local` (supervise.sh on this machine) is the default; `ray` places each run on a Ray
cluster. The policy's `[runner]` table chooses for new runs; a run already started is
stopped and reattached by the runner that its record names, so changing the policy
never orphans a live run. Nothing above this package knows where an agent runs.
"""

from __future__ import annotations

from pathlib import Path

from .base import Runner, RunStart
from .local import LocalRunner


def runner_for_policy(policy) -> Runner:
    """The runner the policy's [runner] table asks for (new runs start there)."""
    if policy.runner.kind == "ray":
        from .ray_runner import RayRunner

        return RayRunner(address=policy.runner.address, forward_env=tuple(policy.runner.env))
    return LocalRunner()


def runner_of_record(record: dict) -> Runner:
    """The runner that started a run, from its run-N.json (a record without a runner: local)."""
    if record.get("runner") == "ray":
        from .ray_runner import RayRunner

        return RayRunner(address=record.get("address") or "auto")
    return LocalRunner()


def reattach(agent_dir: Path, n: int, record: dict) -> bool:
    """Restart the supervisor of a run whose supervisor died but whose work may go on
    elsewhere; True when one was restarted (the run is not over)."""
    return runner_of_record(record).reattach(agent_dir, n, record)


__all__ = ["Runner", "RunStart", "LocalRunner", "runner_for_policy", "runner_of_record", "reattach"]
