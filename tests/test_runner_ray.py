"""Agents placed on a real Ray cluster through the runner boundary (runtime/runners/).

One cluster per module: a head with no agent resources, and worker nodes started as their
own `ray start` processes with `orch_agent` and `cli_sim`, each with its own sim memory
(the node's own "CLI login"). orch itself runs inside the cluster's loopback-only
namespace, exactly as a user would run it, with a policy that says `[runner] kind = "ray"`.
"""

from __future__ import annotations

import hashlib
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
    session = next(ws.glob(".orch/sessions/*")).name
    integration = f"orch/{session}"  # where the agents' branches were merged (worktrees/), when git is there
    merged = _git(ws, "ls-tree", "-r", "--name-only", integration).split() if _git(
        ws, "branch", "--list", integration) else []
    return {"integration": merged, "tasks": sorted((t["kind"], t["state"]) for t in r["tasks"]),
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

    every_run = _records(remote)
    records = [json.loads(p.read_text()) for p in sorted(remote.glob(".orch/sessions/*/agents/*/run-*.json"))
               if p.parent.name != "verifier"]
    node = _agent_node(cluster)
    assert records and all(r["runner"] == "ray" and r["node"] == node for r in records), records
    # orch's own tests of the integration commit ran here, where that worktree is
    verifier = list(remote.glob(".orch/sessions/*/agents/verifier/run-*.json"))
    assert verifier and all(json.loads(p.read_text()).get("runner", "local") == "local" for p in verifier)
    assert all(r["exit_code"] == 0 and "lost" not in r for r in records)
    import jsonschema  # the pump's record is a RunRecord too (schemas/ is generated from the models)

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "run-record.schema.json").read_text())
    for r in records:
        jsonschema.validate(r, schema)
    implementer_runs = [r for r in records if "/implementer" in r["actor"]]
    assert implementer_runs, [r["actor"] for r in records]
    # the same output as a local run: every run's stream is there, parsed into the same events
    for meta in remote.glob(".orch/sessions/*/agents/*/meta.json"):
        agent = json.loads(meta.read_text())
        assert (meta.parent / "stdout.jsonl").stat().st_size > 0, agent["id"]
        assert all(run["outcome"] == "success" for run in agent["runs"]), agent["id"]
    shape = _shape(remote)
    assert "SPEC.md" in shape["integration"], shape  # the agents' work was merged as a local run's is
    assert shape == _shape(local)
    # the implementers' work came back as files in the user's own checkout: nothing committed on main
    assert _git(remote, "rev-list", "--count", "HEAD") == "1"
    assert _git(remote, "for-each-ref", "--format=%(refname)", "refs/orch/runs")
    # nothing is left running on the cluster: every actor was removed at its run's end
    kinds = Counter(e["kind"] for e in _events(remote))
    assert kinds["agent.exited"] == len(every_run)
    _assert_streams_whole(remote)


def _live_remote_run(ws: Path, role: str = "implementer"):
    """(agent folder, record) of a run of `role` that is placed, has printed, and has not ended."""
    for path in sorted(ws.glob(f".orch/sessions/*/agents/{role}-*/run-*.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError:
            continue
        out = path.parent / "stdout.jsonl"
        if r.get("node") and "ended_at" not in r and out.is_file() and out.stat().st_size > r["stdout_base"]:
            return path.parent, r
    return None


def _start_run(cluster, ws: Path, pace: str):
    return subprocess.Popen(cluster.ns.wrap(orch_argv("run", GOAL, *SIM_TEAM)), cwd=ws,
                            env=orch_env({"ORCH_HOME": str(ws / ".orch"), "ORCH_SIM_PACE": pace}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _assert_streams_whole(ws: Path) -> None:
    """Each run's copy here hashes as the node's stream did, and the whole stream parsed afresh is
    what the ingest counted: no line lost, none twice."""
    from orchestrator.runtime.ingest.run_files import parse_run_files

    for meta_path in ws.glob(".orch/sessions/*/agents/*/meta.json"):
        meta = json.loads(meta_path.read_text())
        out = meta_path.parent / "stdout.jsonl"
        data = out.read_bytes()
        records = [json.loads((meta_path.parent / f"run-{r['n']}.json").read_text()) for r in meta["runs"]]
        for i, rec in enumerate(records):
            if "streams" not in rec:
                continue  # lost with its node: its stream ends where the node died
            end = records[i + 1]["stdout_base"] if i + 1 < len(records) else len(data)
            copy, node = data[rec["stdout_base"]:end], rec["streams"]["stdout"]
            # the ingest masks secrets in place, byte for byte: size and lines are the node's, the hash is when nothing was masked
            assert (len(copy), copy.count(b"\n")) == (node["bytes"], node["lines"]), f"{meta['id']} run {rec['n']}"
            assert b"*" in copy or hashlib.sha256(copy).hexdigest() == node["sha256"], f"{meta['id']} run {rec['n']}"
        lines = data.splitlines()
        assert all(json.loads(line) is not None for line in lines), f"{meta['id']}: a torn line"
        fresh = parse_run_files(meta.get("sim_format") or meta["cli"], out, None, None)  # sim speaks a format
        assert fresh.tool_calls == meta["stats"]["tool_calls"], meta["id"]


def test_sigkilled_orch_run_then_resume_reattaches_and_loses_no_line(cluster, tmp_path):
    ws = _repo(tmp_path / "ws")
    _ray_policy(ws, cluster.address)
    proc = _start_run(cluster, ws, "0.3")
    agent_dir, record = wait_until(lambda: _live_remote_run(ws), timeout=180, what="an implementer mid-run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # orch's side of the run dies too (its pump), as if the machine orch runs on had rebooted
    os.kill(record["pid"], signal.SIGKILL)
    session = next(ws.glob(".orch/sessions/*")).name
    resumed = _orch(cluster, ws, "resume", session, env={"ORCH_SIM_PACE": "0.3"}, timeout=280)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = json.loads((agent_dir / f"run-{record['n']}.json").read_text())
    assert after["attaches"] >= 1 and after["exit_code"] == 0 and after["node"] == record["node"], after
    assert _report(ws)["finalized"]
    _assert_streams_whole(ws)


def test_a_node_dying_mid_run_ends_the_run_lost_and_the_task_restarts_on_another_node(cluster, tmp_path,
                                                                                      tmp_path_factory):
    ws = _repo(tmp_path / "ws")
    _ray_policy(ws, cluster.address)
    proc = _start_run(cluster, ws, "0.3")
    agent_dir, record = wait_until(lambda: _live_remote_run(ws), timeout=180, what="an implementer mid-run")
    cluster.kill_raylet("two")
    wait_until(lambda: not any(r.get("orch_agent") for r in cluster.node_resources().values()), timeout=120,
               what="the head to declare node two dead")
    cluster.add_node("three", AGENT_NODE, env={"ORCH_SIM_HOME": str(tmp_path_factory.mktemp("node-three-sim"))})
    out, _ = proc.communicate(timeout=280)
    assert proc.returncode == 0, out.decode(errors="replace")
    lost = [(p.parent, json.loads(p.read_text())) for p in ws.glob(".orch/sessions/*/agents/*/run-*.json")]
    lost = [(d, r) for d, r in lost if "lost" in r]
    assert lost, "no run was running on node two when it died"
    assert all("node" in r["lost"] and "exit_code" not in r for _, r in lost), lost
    events = _events(ws)
    exited = [e for e in events if e["kind"] == "agent.exited" and e["data"].get("failure") == "lost"]
    assert len(exited) == len(lost) and all(e["reason"].startswith("lost: ") for e in exited)
    assert any("fresh CLI session" in (e.get("reason") or "") for e in events if e["kind"] == "decision")
    new_node = _agent_node(cluster)
    runs = [(m.parent, run) for m in ws.glob(".orch/sessions/*/agents/*/meta.json")
            for run in json.loads(m.read_text())["runs"]]
    for agent_dir, rec in lost:
        task = next(run["task"] for d, run in runs if d == agent_dir and run["n"] == rec["n"])
        later = sorted((run["started_at"], d, run) for d, run in runs
                       if run["task"] == task and run["started_at"] > rec["started_at"] and (d, run["n"]) != (agent_dir, rec["n"]))
        assert later, f"{task} was not restarted after its run was lost"
        _, d, again = later[0]
        # restarted on the node still alive, in a fresh CLI session: the old one died with node two
        assert json.loads((d / f"run-{again['n']}.json").read_text())["node"] == new_node
        assert "--resume" not in again["argv"] or d != agent_dir
    assert _report(ws)["finalized"]
    _assert_streams_whole(ws)


_RUN_ONE = r"""
import json, os, sys, time
from pathlib import Path
from orchestrator.runtime.runners import RunStart
from orchestrator.runtime.runners.ray_runner import RayRunner
from orchestrator.store.sessions import Workspace

address, work = sys.argv[1], Path(sys.argv[2])
store = Workspace(work / ".orch").create(work, goal="env")
d = store.agent_dir("worker-1")
d.mkdir(parents=True)
show = "import os; print(' '.join(f'{k}={os.environ.get(k)}' for k in ('ORCH_LISTED', 'ORCH_UNLISTED', 'ORCH_ADAPTER')))"
RayRunner(address, forward_env=("ORCH_LISTED",)).start(RunStart(
    agent_dir=d, n=1, argv=[sys.executable, "-c", show], cwd=work, env={"ORCH_ADAPTER": "from-adapter"}, cli="sim"))
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    record = json.loads((d / "run-1.json").read_text()) if (d / "run-1.json").exists() else {}
    if "ended_at" in record:
        break
    time.sleep(0.05)
print(json.dumps({"record": record, "stdout": (d / "stdout.jsonl").read_text()}))
"""


def test_only_the_variables_the_policy_lists_reach_the_node(cluster, tmp_path):
    work = _repo(tmp_path / "ws")
    env = orch_env({"ORCH_LISTED": "listed", "ORCH_UNLISTED": "secret-stays-home"})
    proc = subprocess.run(cluster.ns.wrap([orch_argv()[0], "-c", _RUN_ONE, cluster.address, str(work)]), env=env,
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["record"]["exit_code"] == 0, got
    assert got["stdout"].split() == ["ORCH_LISTED=listed", "ORCH_UNLISTED=None", "ORCH_ADAPTER=from-adapter"]


_NAMED_ACTORS = r"""
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps([a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]))
"""


def test_aborting_a_remote_agent_stops_its_cli_on_the_node_and_removes_its_actor(cluster, tmp_path):
    ws = _repo(tmp_path / "ws")
    _ray_policy(ws, cluster.address)
    launched = _orch(cluster, ws, "launch", "--cli", "sim", "--role", "worker", "--prompt", "[sim: hang]")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    agent = launched.stdout.split()[-1]
    record_path = next(ws.glob(f".orch/sessions/*/agents/{agent}/run-1.json"))
    placed = wait_until(lambda: json.loads(record_path.read_text()).get("remote_pid"), timeout=120,
                        what="the run to be placed")
    aborted = _orch(cluster, ws, "abort", agent)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    record = json.loads(record_path.read_text())
    assert record["signal"] == 15 and record["exit_code"] == 143, record
    assert not Path(f"/proc/{placed}").exists() or "Z" in Path(f"/proc/{placed}/stat").read_text().split(")")[-1][:3]
    status = json.loads(_orch(cluster, ws, "status", agent, "--json").stdout)
    assert status["state"] == "aborted"

    def actors():
        out = subprocess.run(cluster.ns.wrap([orch_argv()[0], "-c", _NAMED_ACTORS, cluster.address]),
                             capture_output=True, text=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])
    wait_until(lambda: record["actor"] not in actors(), timeout=60, interval=1, what="the actor to be removed")


def test_a_remote_run_is_confined_by_the_kernel_on_its_node(cluster, tmp_path):
    """The actor applies the run's ceiling to its own checkout: the agent's writes reach the
    checkout (and come home), nothing lands anywhere else on the node."""
    from orchestrator.runtime.ceiling import kernel_status

    if not kernel_status()[0]:
        pytest.skip(f"no Landlock here: {kernel_status()[1]}")
    ws = _repo(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    _ray_policy(ws, cluster.address)
    with open(ws / ".orch" / "policy.toml", "a") as f:
        f.write('\n[roles.worker]\nmax_level = "full"\n')
    command = f"touch {outside}/by-shell; echo in > inside.txt"
    launched = _orch(cluster, ws, "launch", "--cli", "sim", "--role", "worker", "--permission", "full", "--prompt",
                     f"work [sim: write={outside}/by-tool shell='{command}']")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    agent = launched.stdout.split()[-1]
    record_path = next(ws.glob(f".orch/sessions/*/agents/{agent}/run-1.json"))
    wait_until(lambda: "ended_at" in json.loads(record_path.read_text()), timeout=180, interval=0.5,
               what="the remote run to end")
    assert json.loads(record_path.read_text())["exit_code"] == 0
    assert sorted(outside.iterdir()) == []
    assert (ws / "inside.txt").read_text() == "in\n"  # the checkout's change came home as a file
    raw = next(ws.glob(f".orch/sessions/*/agents/{agent}/stdout.jsonl")).read_text()
    assert f"EACCES: permission denied, open '{outside}/by-tool'" in raw and "Permission denied" in raw
    launched_event = next(e for e in _events(ws) if e["kind"] == "agent.launched")
    assert launched_event["data"]["confinement"].startswith("Landlock ABI")


def _agent_nodes(cluster) -> list[str]:
    return [name for name in cluster.nodes if name != "head" and cluster.raylet_of(name)]


def test_a_run_lost_after_its_result_but_before_its_work_came_home_is_lost(cluster, tmp_path, tmp_path_factory):
    """The node dies after the CLI printed a complete success, before its commits were taken
    back: the stream's result does not make the task done — the work never came home. The run
    is lost; what continues it starts a fresh CLI session (the old one died with the node)."""
    ws = _repo(tmp_path / "ws")
    _ray_policy(ws, cluster.address)
    launched = _orch(cluster, ws, "launch", "--cli", "sim", "--role", "worker", "--prompt",
                     "write the notes [sim: write=notes.txt linger=600]")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    agent = launched.stdout.split()[-1]
    agent_dir = next(ws.glob(f".orch/sessions/*/agents/{agent}"))
    stdout = agent_dir / "stdout.jsonl"
    wait_until(lambda: stdout.exists() and '"type":"result"' in stdout.read_text(), timeout=180,
               what="the complete result copied home")
    for name in _agent_nodes(cluster):
        cluster.kill_raylet(name)
    record_path = agent_dir / "run-1.json"
    wait_until(lambda: "lost" in json.loads(record_path.read_text()), timeout=120, what="the run recorded lost")
    cluster.add_node(f"after-{tmp_path.name[-12:]}", AGENT_NODE,
                     env={"ORCH_SIM_HOME": str(tmp_path_factory.mktemp("node-after-sim"))})
    assert "exit_code" not in json.loads(record_path.read_text())
    status = json.loads(_orch(cluster, ws, "status", agent, "--json").stdout)
    assert status["state"] == "failed" and status["reason"].startswith("lost: "), status
    assert not (ws / "notes.txt").exists()  # its work never came home
    assert "Next: orch step" in _orch(cluster, ws, "check").stdout  # collect it: a hand-launched task stays failed
    _orch(cluster, ws, "step")
    check = _orch(cluster, ws, "check")
    assert "Next: orch retry T-1" in check.stdout, check.stdout
    retried = _orch(cluster, ws, "retry", "T-1")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "(same CLI session)" not in retried.stdout
    runs = json.loads((agent_dir / "meta.json").read_text())["runs"]
    assert len(runs) == 2 and "--resume" not in runs[1]["argv"] and "--session-id" in runs[1]["argv"]
    _orch(cluster, ws, "abort", agent)


def test_a_finished_collected_run_is_never_relabelled_lost(tmp_path):
    """Whatever goes wrong after a remote run's exit is on record (its node dying while its actor
    is removed), the pump never turns that exit into `lost`."""
    import argparse

    from orchestrator.runtime.runners.ray_pump import Pump

    d = tmp_path / "agent"
    d.mkdir()
    (d / "run-1.json").write_text(json.dumps({"n": 1, "exit_code": 0, "signal": None, "ended_at": "2026-01-01T00:00:00"}))
    args = argparse.Namespace(agent_dir=str(d), n=1, address="x", cli="sim", cwd=str(tmp_path), forward="",
                              reattach=True, resumes=False, argv=[])
    pump = Pump(args)
    pump.end_lost("the Ray node running it died or its actor was killed (ActorUnavailableError)")
    record = json.loads((d / "run-1.json").read_text())
    assert record["exit_code"] == 0 and "lost" not in record
