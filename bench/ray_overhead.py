"""Overhead of a Ray-placed agent run against a local one, through the same runner interface.

A real local Ray cluster (a head, and a second node offering `orch_agent`, each its own
`ray start`) inside a loopback-only network namespace; the same small program is started
by the local runner (supervise.sh) and by the ray runner (pump + detached actor), and
measured from orch's side:

  start      runner.start() → the program's first byte in stdout.jsonl
  line       a line printed by the program (it stamps the time) → that line in stdout.jsonl,
             the file `orch wait` watches (orch wait's own latency, event_latency.py, adds to both)
  stream     MB/s of one agent stream from its first byte (the program writes as fast as it can)
  cpu        orch's CPU per streaming agent (supervisor, or pump: its CPU s per wall s) at 20 lines/s
  memory     RSS of orch's process per run (supervisor / pump), and of the Ray actor on the node

    python bench/ray_overhead.py [--trials 5] [--mb 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, print_table, scratch

sys.path.insert(0, str(ROOT / "tests"))

EMIT = r"""
import json, sys, time
mode, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = sys.stdout.buffer
if mode == "lines":
    for i in range(n):
        out.write(json.dumps({"type": "bench", "i": i, "t": time.time(), "pad": "x" * 150}).encode() + b"\n")
        out.flush()
        time.sleep(gap)
else:
    block = (b"y" * 1023 + b"\n") * 1024
    for _ in range(n):
        out.write(block)
    out.flush()
"""


def _stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class Bench:
    def __init__(self, runner, store, name: str, cwd: Path):
        self.runner, self.store, self.name, self.cwd, self.count = runner, store, name, cwd, 0

    def start(self, *program: str):
        from orchestrator.runtime.runners import RunStart

        self.count += 1
        agent_dir = self.store.agent_dir(f"{self.name}-{self.count}")
        agent_dir.mkdir(parents=True)
        argv = [sys.executable, "-c", EMIT, *program]
        t0 = time.perf_counter()
        self.runner.start(RunStart(agent_dir=agent_dir, n=1, argv=argv, cwd=self.cwd,
                                   cli="bench"))
        return agent_dir, t0

    @staticmethod
    def record(agent_dir: Path) -> dict:
        try:
            return json.loads((agent_dir / "run-1.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_end(self, agent_dir: Path, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.record(agent_dir)
            if "ended_at" in rec:
                return rec
            time.sleep(0.01)
        raise TimeoutError(f"{agent_dir.name} did not end")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def measure(bench: Bench, trials: int, mb: int) -> dict:
    starts, lines = [], []
    for _ in range(trials):
        d, t0 = bench.start("lines", "20", "0.05")
        out = d / "stdout.jsonl"
        while _size(out) == 0:
            time.sleep(0.001)
        starts.append((time.perf_counter() - t0) * 1000)
        seen = 0
        while "ended_at" not in bench.record(d) or seen < 20:
            data = out.read_bytes().splitlines()
            now = time.time()
            for line in data[seen:]:
                if line.endswith(b"}"):
                    lines.append((now - json.loads(line)["t"]) * 1000)
                    seen += 1
            time.sleep(0.002)
    # stream throughput
    d, _ = bench.start("block", str(mb), "0")
    while _size(d / "stdout.jsonl") == 0:
        time.sleep(0.001)
    t0 = time.perf_counter()  # from the first byte: the start is measured above
    while _size(d / "stdout.jsonl") < mb * 1024 * 1024:
        time.sleep(0.005)
    mbps = mb / (time.perf_counter() - t0)
    bench.wait_end(d)
    # CPU and memory of orch's side per streaming agent, and the actor's on the node
    d, _ = bench.start("lines", "200", "0.05")
    while not bench.record(d).get("pid") or _size(d / "stdout.jsonl") == 0:
        time.sleep(0.01)
    rec = bench.record(d)
    watched = rec.get("supervisor_pid") or rec["pid"]
    time.sleep(1.0)
    cpu0, _ = _stat(watched)
    w0 = time.perf_counter()
    time.sleep(5.0)
    cpu1, rss = _stat(watched)
    cpu = (cpu1 - cpu0) / (time.perf_counter() - w0)
    remote = bench.record(d).get("remote_pid")
    actor_rss = _stat(_ppid(remote))[1] if remote else 0
    bench.wait_end(d)
    return {"start": median(starts), "line": median(lines), "mbps": mbps, "cpu": cpu, "rss": rss,
            "actor_rss": actor_rss}


def inner(address: str, trials: int, mb: int) -> None:
    from orchestrator.runtime.runners import LocalRunner
    from orchestrator.runtime.runners.ray_runner import RayRunner
    from orchestrator.store.sessions import Workspace

    base = scratch("ray")
    work = base / "ws"
    work.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(["git", "-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b", *args], check=True)
    os.environ["ORCH_HOME"] = str(work / ".orch")
    store = Workspace(work / ".orch").create(work, goal="bench")
    local = measure(Bench(LocalRunner(), store, "local", work), trials, mb)
    ray_ = measure(Bench(RayRunner(address=address), store, "ray", work), trials, mb)
    rows = [
        ["start: runner.start → first byte (median ms)", f"{local['start']:.0f}", f"{ray_['start']:.0f}"],
        ["line printed → in stdout.jsonl (median ms)", f"{local['line']:.1f}", f"{ray_['line']:.1f}"],
        ["one agent stream (MB/s)", f"{local['mbps']:.0f}", f"{ray_['mbps']:.1f}"],
        ["orch's CPU per streaming agent at 20 lines/s (%)", f"{local['cpu'] * 100:.1f}", f"{ray_['cpu'] * 100:.1f}"],
        ["orch's RSS per run: supervisor / pump (MB)", f"{local['rss'] / 2**20:.0f}", f"{ray_['rss'] / 2**20:.0f}"],
        ["the Ray actor's RSS on the node (MB)", "-", f"{ray_['actor_rss'] / 2**20:.0f}"],
    ]
    print_table(f"Ray-placed agent vs local ({trials} trials; {mb} MB stream; head + 1 node on this machine)",
                ["measure", "local (baseline)", "ray"], rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.inner, args.trials, args.mb)
        return
    import importlib.util

    from orchestrator.runtime.runners.ray_names import AGENT_RESOURCE, cli_resource
    from realcli.netns import Namespace, NamespaceUnavailable

    if importlib.util.find_spec("ray") is None:
        print("\nRay-placed agent vs local: skipped (Ray is not installed: pip install 'orch[ray]')")
        return
    try:
        ns = Namespace()
    except NamespaceUnavailable as e:
        print(f"\nRay-placed agent vs local: skipped (no loopback-only namespace for the cluster: {e})")
        return
    from raycluster import RayCluster

    cluster = RayCluster(ns=ns)
    cluster.own_ns = True
    try:
        cluster.add_node("two", {AGENT_RESOURCE: 4, cli_resource("bench"): 4})
        subprocess.run(cluster.ns.wrap([sys.executable, __file__, "--inner", cluster.address,
                                        "--trials", str(args.trials), "--mb", str(args.mb)]),
                       check=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
