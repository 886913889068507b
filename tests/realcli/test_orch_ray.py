"""A genuine CLI placed on a Ray node by orch, denied, and recovered into the same CLI session.

The Ray cluster (a head, and a second node offering `orch_agent` and the CLI's resource)
runs inside the lab's loopback-only namespace with the lab's scratch environment — the
node's own CLI login — so the CLI on the node reaches nothing but the model stub. orch
runs there too, with `[runner] kind = "ray"` in its policy.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver

pytest.importorskip("ray")

pytestmark = [pytest.mark.realcli, pytest.mark.slow]

CLI = "codex"  # writes through its shell: a relative path lands in the node's checkout
ENDED = ("idle", "denied", "failed", "aborted", "done", "blocked-by-policy")
RUN_TIMEOUT = 120.0


def _git(cwd, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_a_genuine_cli_on_a_ray_node_is_recovered_from_a_denial_in_the_same_session(lab: Lab) -> None:
    from orchestrator.runtime.runners.ray_names import AGENT_RESOURCE, cli_resource
    from raycluster import RayCluster

    cluster = RayCluster(ns=lab.ns, env=lab.env())
    try:
        cluster.add_node("two", {AGENT_RESOURCE: 2, cli_resource(CLI): 2}, env=lab.env())
        orch = OrchDriver(lab)
        _git(orch.project, "init", "-q", "-b", "main")
        (orch.project / "README.md").write_text("notes\n")
        _git(orch.project, "add", "-A")
        _git(orch.project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
        orch.home.mkdir(parents=True, exist_ok=True)
        (orch.home / "policy.toml").write_text(f'[runner]\nkind = "ray"\naddress = "{cluster.address}"\n')
        content = "written on the Ray node after orch raised the permission\n"
        lab.stub.script(
            S.write("notes.txt", content, say="Writing notes.txt.", prompt_contains="ORCH_DENY", last_input="prompt"),
            S.reply("ORCH_DENY I was not allowed to write notes.txt.", last_input="tool_result"),
            S.write("notes.txt", content, say="Retrying the write.", prompt_contains="orch: the permission check stopped",
                    last_input="prompt"),
            S.reply("ORCH_DENY done: notes.txt is written.", last_input="tool_result"),
        )
        agent = orch.launch(CLI, "implementer", "ORCH_DENY write notes.txt", permission="read")
        denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
        assert denied["state"] == "denied", orch.evidence(agent) + cluster.log_tail()
        (denial,) = denied["denials"]
        session_id = denied["cli_session_id"]

        step = orch.json("step")
        assert any(a.startswith(f"{agent}: escalated read → edit") for a in step["actions"]), step
        status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
        assert status["state"] == "idle", orch.evidence(agent)
        assert status["cli_session_id"] == session_id and status["runs"] == 2 and status["recoveries"] == 1
        assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_DENY done: notes.txt is written."

        # Both runs ran on the second node (the resumed session lives there), and the file the
        # CLI wrote in the node's checkout came back into the project as a file, not a commit.
        node = next(n for n, res in cluster.node_resources().items() if res.get(AGENT_RESOURCE))
        records = [json.loads((orch.session_dir() / "agents" / agent / f"run-{n}.json").read_text()) for n in (1, 2)]
        assert [r["node"] for r in records] == [node, node] and [r["runner"] for r in records] == ["ray", "ray"]
        assert (orch.project / "notes.txt").read_text() == content
        assert _git(orch.project, "rev-list", "--count", "HEAD") == "1"
        assert lab.stub.unmatched() == []
    finally:
        cluster.close()
