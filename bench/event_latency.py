"""Event latency: a line appended to an agent's stdout → `orch wait` returning with it.

orch's wait (inotify via watchdog) side by side with a 1-second polling loop, in the same
run, over the same kind of event: a permission denial, the kind of line a conductor must
react to at once. Target: orch's median under 50 ms and p99 under 250 ms.

    python bench/event_latency.py [--events 200]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from common import median, pct, print_table, scratch, verdict

from orchestrator.adapters import Grant
from orchestrator.core.models import Permission, Role
from orchestrator.runtime.ingest import sync_session
from orchestrator.store.sessions import Workspace
from orchestrator.engine.wait import is_meaningful, wait_for_change
from orchestrator.runtime.workers import launch_agent


def denial_line(i: int) -> bytes:
    return json.dumps({"type": "system", "subtype": "permission_denied", "tool_name": "Bash",
                       "tool_use_id": f"toolu_bench_{i}", "message": "This command requires approval",
                       "session_id": "bench"}).encode() + b"\n"


def append(path, data: bytes) -> float:
    with open(path, "ab", buffering=0) as f:
        t0 = time.perf_counter()
        f.write(data)
    return t0


def orch_wait_latencies(store, stdout, n: int) -> list[float]:
    out = []
    for i in range(n):
        ready, result = threading.Event(), []
        t = threading.Thread(target=lambda: result.append((wait_for_change(store, timeout=10, ready=ready),
                                                           time.perf_counter())))
        t.start()
        ready.wait(10)
        t0 = append(stdout, denial_line(i))
        t.join()
        digest, t1 = result[0]
        assert any("denied" in h for h in digest["happened"]), digest["happened"]
        out.append((t1 - t0) * 1000)
    return out


def polling_latencies(store, stdout, n: int, interval: float = 1.0) -> list[float]:
    """The baseline: a loop that wakes on a fixed 1-second tick, ingests, looks for new events."""
    out = []
    offset = store.events_size()
    start = time.perf_counter()
    for i in range(n):
        phase = (i * 0.618) % 1.0 * interval  # append at varied points of the polling cycle
        time.sleep(phase)
        t0 = append(stdout, denial_line(100000 + i))
        while True:
            tick = start + (int((time.perf_counter() - start) / interval) + 1) * interval
            time.sleep(max(tick - time.perf_counter(), 0))
            sync_session(store)
            events, offset = store.read_events_to_end(offset)
            if any(is_meaningful(e) for _, e in events):
                out.append((time.perf_counter() - t0) * 1000)
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--baseline-events", type=int, default=None, help="default: same as --events")
    args = ap.parse_args()
    base = scratch("latency")
    store = Workspace().create(base)
    agent = launch_agent(store, cli="sim", role=Role.WORKER, prompt="[sim: hang]", cwd=base,
                         grant=Grant(level=Permission.READ))
    stdout = store.agent_dir(agent.id) / "stdout.jsonl"
    time.sleep(0.5)
    wait_for_change(store, timeout=0)  # settle: the launch itself is an event
    orch = orch_wait_latencies(store, stdout, args.events)
    poll = polling_latencies(store, stdout, args.baseline_events or args.events)
    rows = [["orch wait (inotify)", len(orch), f"{median(orch):.1f}", f"{pct(orch, 99):.1f}", f"{max(orch):.1f}"],
            ["1 s polling loop", len(poll), f"{median(poll):.1f}", f"{pct(poll, 99):.1f}", f"{max(poll):.1f}"]]
    print_table("Event latency: line appended → wait returns (ms)", ["method", "events", "median", "p99", "max"], rows)
    print(f"target median < 50 ms, p99 < 250 ms: {verdict(median(orch) < 50 and pct(orch, 99) < 250)}")
    from orchestrator.runtime.workers import abort_agent
    abort_agent(store, agent.id, grace=1)


if __name__ == "__main__":
    main()
