"""Names a Ray-placed run is known by: its actor, its git refs, the resources it asks for."""

from __future__ import annotations

from pathlib import Path

NAMESPACE = "orch"  # every orch actor lives in this Ray namespace
AGENT_RESOURCE = "orch_agent"  # a node offers it to take agent runs at all


def cli_resource(cli: str) -> str:
    """The resource a node offers for a CLI that is installed (and logged in) there: cli_<registry name>."""
    return f"cli_{cli}"


def node_resources(cli: str) -> dict[str, float]:
    """What one run asks of its node."""
    return {AGENT_RESOURCE: 1, **({cli_resource(cli): 1} if cli else {})}


def _ids(agent_dir: Path) -> tuple[str, str]:
    """(session id, agent id) from <root>/sessions/<session>/agents/<agent>."""
    return agent_dir.parent.parent.name, agent_dir.name


def actor_name(agent_dir: Path, n: int) -> str:
    """The run's named, detached actor: found again after orch or the pump restarts."""
    session, agent = _ids(agent_dir)
    return f"{session}/{agent}/run-{n}"


def ref_key(agent_dir: Path, n: int) -> str:
    """The run's git refs live under refs/orch/{ship,runs}/<this>."""
    session, agent = _ids(agent_dir)
    return f"{session}/{agent}/{n}"
