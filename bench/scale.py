"""Scale: 100 simulated agents streaming at once on this machine.

Measures orch's own cost while they stream — the conductor's `orch wait` loop (ingesting
every line as it is written) and the per-run supervisors — as CPU share and memory per
supervised agent, and the wait latency for a denial under that load. The agents' own
CPU (100 Python processes printing) is shown for scale, not counted as orch's.
Targets: under 5% of a core and under 5 MB per agent.

    python bench/scale.py [--agents 100 --seconds 30 --rate 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, pct, print_table, scratch, verdict

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return 0.0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def conductor(state_root: str, seconds: float, out: str) -> None:
    """The measured side: an `orch wait` loop, as a conductor runs it, for `seconds`."""
    from orchestrator.store.sessions import Workspace
    from orchestrator.engine.wait import wait_for_change

    store = Workspace(Path(state_root)).resolve(None)
    wait_for_change(store, timeout=0)  # catch up with the launches first
    offset = store.events_size()
    latencies, waits = [], 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        wait_for_change(store, timeout=min(2.0, max(end - time.monotonic(), 0.0)))
        returned = time.time()
        waits += 1
        events, offset = store.read_events_to_end(offset)
        for _, e in events:
            tool_id = str(e.data.get("tool_id") or "")
            if e.kind.value == "denial" and tool_id.startswith("bench-"):
                latencies.append((returned - float(tool_id[6:])) * 1000)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime + usage.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    Path(out).write_text(json.dumps({"cpu": cpu, "wall": time.monotonic() - started, "waits": waits,
                                     "latencies": latencies, "maxrss_kb": usage.ru_maxrss}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=10.0, help="lines per second per agent")
    ap.add_argument("--conductor", nargs=3, metavar=("STATE", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.conductor:
        conductor(args.conductor[0], float(args.conductor[1]), args.conductor[2])
        return

    from orchestrator.adapters import Grant
    from orchestrator.core.models import Permission, Role
    from orchestrator.runtime.ingest import sync_session
    from orchestrator.store.sessions import Workspace
    from orchestrator.runtime.workers import abort_agent, launch_agent

    base = scratch("scale")
    store = Workspace().create(base)
    lines = int(args.seconds * args.rate) + 50
    interval = 1.0 / args.rate
    t = time.perf_counter()
    agents = [launch_agent(store, cli="sim", role=Role.WORKER, cwd=base, grant=Grant(level=Permission.READ),
                           prompt=f"stream [sim: lines={lines} interval={interval:.4f}]")
              for _ in range(args.agents)]
    marker = launch_agent(store, cli="sim", role=Role.WORKER, cwd=base, grant=Grant(level=Permission.READ),
                          prompt="[sim: hang]")
    launch_s = time.perf_counter() - t
    sync_session(store)
    out = base / "conductor.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cond = subprocess.Popen([sys.executable, __file__, "--conductor", str(base / ".orch"), str(args.seconds), str(out)],
                            env=env, cwd=str(ROOT / "bench"))
    records = [json.loads((store.agent_dir(a.id) / "run-1.json").read_text()) for a in agents]
    sup_cpu0 = sum(proc_cpu_seconds(r["supervisor_pid"]) for r in records)
    agent_cpu0 = sum(proc_cpu_seconds(r["pid"]) for r in records)
    stdout = store.agent_dir(marker.id) / "stdout.jsonl"
    time.sleep(1.0)
    wall0 = time.monotonic()
    sent = 0
    while time.monotonic() - wall0 < args.seconds - 2.0:
        time.sleep(2.0)
        line = {"type": "system", "subtype": "permission_denied", "tool_name": "Bash",
                "tool_use_id": f"bench-{time.time():.6f}", "message": "This command requires approval"}
        with open(stdout, "ab", buffering=0) as f:
            f.write(json.dumps(line).encode() + b"\n")
        sent += 1
    pss = [pss_kb(r["supervisor_pid"]) for r in records]
    sup_cpu = sum(proc_cpu_seconds(r["supervisor_pid"]) for r in records) - sup_cpu0
    agent_cpu = sum(proc_cpu_seconds(r["pid"]) for r in records) - agent_cpu0
    cond.wait(timeout=args.seconds + 60)
    res = json.loads(out.read_text())
    lat = res["latencies"]
    for a in agents + [marker]:
        abort_agent(store, a.id, grace=1)
    conductor_pct = res["cpu"] / res["wall"] * 100
    sup_pct = sup_cpu / (time.monotonic() - wall0) * 100
    orch_pct = conductor_pct + sup_pct
    per_agent_mb = (sum(pss) / len(pss) / 1024) if pss else 0.0
    cond_mb_per_agent = res["maxrss_kb"] / 1024 / args.agents
    total_lines = args.agents * args.rate * args.seconds
    rows = [
        ["agents streaming", f"{args.agents} × {args.rate:g} lines/s ({total_lines / args.seconds:.0f} lines/s)"],
        ["launch of all agents", f"{launch_s:.1f} s"],
        ["conductor (orch wait loop) CPU", f"{conductor_pct:.2f} % of a core ({res['waits']} waits)"],
        ["supervisors CPU (all)", f"{sup_pct:.3f} % of a core"],
        ["orch total CPU", f"{orch_pct:.2f} % of a core"],
        ["agents' own CPU (context)", f"{agent_cpu / (time.monotonic() - wall0) * 100:.0f} % of a core"],
        ["memory per supervised agent (PSS)", f"{per_agent_mb:.2f} MB"],
        ["conductor RSS / agents", f"{cond_mb_per_agent:.2f} MB"],
        ["wait latency under load (median / p99)", f"{median(lat):.1f} / {pct(lat, 99):.1f} ms ({len(lat)}/{sent} seen)"],
    ]
    print_table(f"Scale: {args.agents} simulated agents streaming for {args.seconds:g} s", ["measure", "value"], rows)
    print(f"target < 5 % of a core: {verdict(orch_pct < 5)}; target < 5 MB per agent: "
          f"{verdict(per_agent_mb + cond_mb_per_agent < 5)}")


if __name__ == "__main__":
    main()
