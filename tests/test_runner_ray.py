"""Agents placed on a real Ray cluster through the runner boundary (runtime/runners/).

One cluster per module: a head with no agent resources, and worker nodes started as their
own `ray start` processes with `orch_agent` and `cli_sim`, each with its own sim memory
(the node's own "CLI login"). orch itself runs inside the cluster's loopback-only
namespace, exactly as a user would run it, with a policy that says `[runner] kind = "ray"`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray")

from orchtest import orch_argv, orch_env, wait_until  # noqa: E402
from realcli.netns import Namespace, NamespaceUnavailable  # noqa: E402

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"
AGENT_NODE = {"orch_agent": 4, "cli_sim": 4}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from raycluster import RayCluster

    try:
        ns = Namespace()
    except NamespaceUnavailable as e:
        pytest.skip(f"no loopback-only namespace for the Ray cluster: {e}")
    c = RayCluster(ns=ns)
    c.own_ns = True
    try:
        c.add_node("two", AGENT_NODE, env={"ORCH_SIM_HOME": str(tmp_path_factory.mktemp("node-two-sim"))})
        yield c
    finally:
        c.close()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def _repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# text utilities\n")
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    return path


def _ray_policy(ws: Path, address: str, forward=("ORCH_SIM_PACE",)) -> None:
    (ws / ".orch").mkdir(exist_ok=True)
    (ws / ".orch" / "policy.toml").write_text(
        f'[runner]\nkind = "ray"\naddress = "{address}"\nenv = {json.dumps(list(forward))}\n')


def _orch(cluster, ws: Path, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cluster.ns.wrap(orch_argv(*args)), cwd=ws, env=orch_env({"ORCH_HOME": str(ws / ".orch"), **(env or {})}),
                          capture_output=True, text=True, timeout=timeout)


def _report(ws: Path) -> dict:
    return json.loads(next(ws.glob(".orch/sessions/*/reports/session-report.json")).read_text())


def _records(ws: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(ws.glob(".orch/sessions/*/agents/*/run-*.json"))]


def _events(ws: Path) -> list[dict]:
    return [json.loads(line) for line in next(ws.glob(".orch/sessions/*/events.jsonl")).read_text().splitlines()]


def _shape(ws: Path) -> dict:
    """What must not depend on where agents ran: tasks, roles, verdicts, files left in the tree."""
    r = _report(ws)
    changed = sorted(line[3:] for line in _git(ws, "status", "--porcelain", "--untracked-files=all").splitlines())
    return {"tasks": sorted((t["kind"], t["state"]) for t in r["tasks"]),
            "roles": sorted(a["role"] for a in r["agents"]), "finalized": r["finalized"],
            "ok": r["criteria"]["ok"], "changed": changed,
            "files": {p: (ws / p).read_text() for p in changed if (ws / p).is_file()}}


def _agent_node(cluster) -> str:
    return next(n for n, res in cluster.node_resources().items() if res.get("orch_agent"))


def test_a_sim_session_placed_on_the_second_node_matches_a_local_run(cluster, tmp_path):
    local = _repo(tmp_path / "local")
    proc = _orch(cluster, local, "run", GOAL, *SIM_TEAM)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    remote = _repo(tmp_path / "remote")
    _ray_policy(remote, cluster.address)
    proc = _orch(cluster, remote, "run", GOAL, *SIM_TEAM)
    assert proc.returncode == 0, proc.stdout + proc.stderr + cluster.log_tail()

    records = _records(remote)
    node = _agent_node(cluster)
    assert records and all(r["runner"] == "ray" and r["node"] == node for r in records), records
    assert all(r["exit_code"] == 0 and "lost" not in r for r in records)
    implementer_runs = [r for r in records if "/implementer" in r["actor"]]
    assert implementer_runs, [r["actor"] for r in records]
    # the same output as a local run: every run's stream is there, parsed into the same events
    for meta in remote.glob(".orch/sessions/*/agents/*/meta.json"):
        agent = json.loads(meta.read_text())
        assert (meta.parent / "stdout.jsonl").stat().st_size > 0, agent["id"]
        assert all(run["outcome"] == "success" for run in agent["runs"]), agent["id"]
    assert _shape(remote) == _shape(local)
    # the implementers' work came back as files in the user's own checkout: nothing committed on main
    assert _git(remote, "rev-list", "--count", "HEAD") == "1"
    assert _git(remote, "for-each-ref", "--format=%(refname)", "refs/orch/runs")
    # nothing is left running on the cluster: every actor was removed at its run's end
    kinds = Counter(e["kind"] for e in _events(remote))
    assert kinds["agent.exited"] == len(records)
