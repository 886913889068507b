"""Incremental cost: `orch status` after 1 KB is appended to a 200 MB log vs a 20 MB log.

Both logs belong to live agents whose backlog was already ingested; what is timed is the
status call after 1 KB more arrives. The ingest reads only the new bytes, so the two must
cost the same. Timed twice: the whole `orch status` process (interpreter start included)
and the in-process work (ingest + render) that the log size could affect.
Target: under 100 ms, and within 1.5x of each other.

    python bench/incremental_cost.py [--big-mb 200 --small-mb 20 --repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, median, print_table, scratch, verdict

from orchestrator.adapters import Grant
from orchestrator.core.models import Permission, Role
from orchestrator.runtime.ingest import sync_agent
from orchestrator.views.summary import agent_summary
from orchestrator.store.sessions import Workspace
from orchestrator.runtime.workers import abort_agent, launch_agent

CHUNK_LINE = json.dumps({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                         "delta": {"type": "text_delta", "text": "x" * 900}}, "session_id": "bench"}).encode() + b"\n"
KB_LINE = json.dumps({"type": "assistant", "message": {"id": "msg_bench", "role": "assistant", "model": "bench",
                      "content": [{"type": "text", "text": "y" * 900}]}, "session_id": "bench"}).encode() + b"\n"


def grow(path, mb: int) -> None:
    block = CHUNK_LINE * 1024
    with open(path, "ab") as f:
        for _ in range(max(1, (mb << 20) // len(block))):
            f.write(block)


def status_process(env) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator", "status"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--small-mb", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows, results = [], {}
    labels = (f"{args.small_mb} MB log", f"{args.big_mb} MB log")
    for label, mb in zip(labels, (args.small_mb, args.big_mb)):
        base = scratch(f"incr{mb}")
        store = Workspace().create(base)
        agent = launch_agent(store, cli="sim", role=Role.WORKER, prompt="[sim: hang]", cwd=base,
                             grant=Grant(level=Permission.READ))
        stdout = store.agent_dir(agent.id) / "stdout.jsonl"
        grow(stdout, mb)
        t = time.perf_counter()
        sync_agent(store, agent.id)  # ingest the backlog once
        backlog_s = time.perf_counter() - t
        env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc_ms, work_ms = [], []
        for _ in range(args.repeat):
            with open(stdout, "ab") as f:
                f.write(KB_LINE)
            proc_ms.append(status_process(env))
            with open(stdout, "ab") as f:
                f.write(KB_LINE)
            t = time.perf_counter()
            sync_agent(store, agent.id)
            agent_summary(store.read_agent(agent.id))
            work_ms.append((time.perf_counter() - t) * 1000)
        size = stdout.stat().st_size / (1 << 20)
        results[label] = (median(proc_ms), median(work_ms))
        rows.append([label, f"{size:.0f}", f"{backlog_s:.1f}", f"{median(proc_ms):.0f}", f"{median(work_ms):.2f}"])
        abort_agent(store, agent.id, grace=1)
    print_table("Incremental cost of `orch status` after 1 KB more (ms, median)",
                ["log", "size MB", "first ingest s", "orch status process", "ingest + render in-process"], rows)
    (p_small, w_small), (p_big, w_big) = results[labels[0]], results[labels[1]]
    ratio_p, ratio_w = p_big / p_small, w_big / max(w_small, 1e-6)
    print(f"{labels[1]} / {labels[0]}: process {ratio_p:.2f}x, in-process {ratio_w:.2f}x")
    print(f"target in-process < 100 ms and within 1.5x: {verdict(w_big < 100 and ratio_w <= 1.5)}")
    print(f"target whole process < 100 ms: {verdict(p_big < 100)} "
          f"(the Python interpreter and imports alone take most of it)")


if __name__ == "__main__":
    main()
