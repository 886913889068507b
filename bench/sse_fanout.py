"""Dashboard fan-out: with 100 SSE clients connected, how long from a change to every client.

Two kinds of change, interleaved in one run:
  - an event appended to the session's events.jsonl (what the coordinator writes);
  - a line written to a live agent's stdout, which the server itself must ingest first.
Side by side, in the same run and over the same changes: clients that poll the events API
once a second (the naive baseline). Target: SSE median under 200 ms.

Clients run in several processes (25 connections each), so one Python process parsing for
100 connections does not become what is measured. Latency is wall clock: every change
carries the time it was made, and each client subtracts it from the time it read it.

    python bench/sse_fanout.py [--clients 100] [--pollers 10] [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

from common import ROOT, median, pct, print_table, scratch, verdict

from orchestrator.adapters import Grant
from orchestrator.core.models import Event, EventKind, Permission, Role
from orchestrator.store.sessions import Workspace
from orchestrator.runtime.workers import abort_agent, launch_agent

PER_PROCESS = 25
MARK = "fanout-bench"


def agent_line(i: int) -> bytes:
    """A line in the stream shape the hanging sim agent speaks (claude's), stamped."""
    text = f"{MARK} line {i} sent {time.time():.6f}"
    return json.dumps({"type": "assistant", "session_id": "bench", "message": {
        "id": f"msg_bench_{i}", "role": "assistant", "content": [{"type": "text", "text": text}]}}).encode() + b"\n"


def sent_at(event: dict) -> tuple[str, float] | None:
    """(kind of change, when it was made) for a benchmark event, else None."""
    if event.get("kind") == "note" and event.get("reason", "").startswith(MARK):
        return "appended", event["data"]["sent"]
    text = (event.get("data") or {}).get("text") or ""
    if event.get("kind") == "agent.output" and text.startswith(MARK):
        return "agent line", float(text.rsplit(" ", 1)[1])
    return None


# --------------------------------------------------------------------------- client processes


def sse_clients(base: str, session: str, n: int, expected: int, ready, out) -> None:
    """n stream connections in one process; reports every (kind, latency ms) it saw."""
    import httpx

    async def one(client: httpx.AsyncClient, results: list) -> None:
        seen = 0
        buf = ""
        fields: dict[str, str] = {}
        async with client.stream("GET", f"{base}/api/sessions/{session}/stream") as r:
            async for chunk in r.aiter_text():
                now = time.time()
                *lines, buf = (buf + chunk).split("\n")
                for line in lines:
                    if line:
                        key, _, value = line.partition(": ")
                        fields[key] = value
                        continue
                    if fields.get("event") == "ready":
                        ready.put(1)
                    elif fields.get("event") == "event":
                        hit = sent_at(json.loads(fields["data"]))
                        if hit:
                            results.append((hit[0], (now - hit[1]) * 1000))
                            seen += 1
                    fields = {}
                if seen >= expected:
                    return

    async def run() -> None:
        results: list = []
        limits = httpx.Limits(max_connections=n + 5)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=limits) as client:
            await asyncio.wait_for(asyncio.gather(*(one(client, results) for _ in range(n))), 600)
        out.put(("sse", results))

    asyncio.run(run())


def polling_clients(base: str, session: str, n: int, expected: int, start: int, ready, out,
                    interval: float = 1.0) -> None:
    """The baseline: n clients that ask for new events once a second."""
    import httpx

    async def one(client: httpx.AsyncClient, results: list) -> None:
        offset, seen = start, 0
        await asyncio.sleep(random.random() * interval)  # clients are not in step with each other
        ready.put(1)
        while seen < expected:
            page = (await client.get(f"{base}/api/sessions/{session}/events",
                                     params={"from": offset, "limit": 5000})).json()
            now = time.time()
            for event in page["events"]:
                hit = sent_at(event)
                if hit:
                    results.append((hit[0], (now - hit[1]) * 1000))
                    seen += 1
            offset = page["next"]
            await asyncio.sleep(interval)

    async def run() -> None:
        results: list = []
        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.wait_for(asyncio.gather(*(one(client, results) for _ in range(n))), 600)
        out.put(("poll", results))

    asyncio.run(run())


# --------------------------------------------------------------------------- the run


def start_server(session: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", "0", "--session", session],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    first = proc.stdout.readline()
    if not first.startswith("orch dashboard: "):
        raise SystemExit(f"orch serve did not start: {first!r}")
    url = first.split(": ", 1)[1].strip()
    return proc, url.split("/?", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--pollers", type=int, default=10)
    ap.add_argument("--changes", type=int, default=200, help="changes made (half of each kind)")
    ap.add_argument("--gap", type=float, default=0.05, help="mean seconds between changes")
    args = ap.parse_args()

    base_dir = scratch("sse")
    store = Workspace().create(base_dir, goal="SSE fan-out benchmark")
    agent = launch_agent(store, cli="sim", role=Role.WORKER, prompt="[sim: hang]", cwd=base_dir,
                         grant=Grant(level=Permission.READ))
    stdout = store.agent_dir(agent.id) / "stdout.jsonl"
    server, base = start_server(store.id)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    procs = []
    try:
        start = store.events_size()
        remaining = args.clients
        while remaining > 0:
            n = min(PER_PROCESS, remaining)
            remaining -= n
            procs.append(ctx.Process(target=sse_clients, args=(base, store.id, n, args.changes, ready, out)))
        if args.pollers:
            procs.append(ctx.Process(target=polling_clients,
                                     args=(base, store.id, args.pollers, args.changes, start, ready, out)))
        for p in procs:
            p.start()
        for _ in range(args.clients + args.pollers):
            ready.get(timeout=120)
        time.sleep(1.0)  # let the launch's own events settle before measuring

        for i in range(args.changes):
            if i % 2 == 0:
                store.append_event(Event(kind=EventKind.NOTE, reason=f"{MARK} event {i}", data={"sent": time.time()}))
            else:
                with open(stdout, "ab", buffering=0) as f:
                    f.write(agent_line(i))
            time.sleep(random.expovariate(1 / args.gap))

        results: dict[str, list[tuple[str, float]]] = {"sse": [], "poll": []}
        for _ in procs:
            who, got = out.get(timeout=600)
            results[who] += got
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
        abort_agent(store, agent.id, grace=1)

    rows = []
    sse_all = [ms for _, ms in results["sse"]]
    for who, label, clients in (("sse", "SSE stream (orch serve)", args.clients),
                                ("poll", "1 s polling of /events", args.pollers)):
        for kind in ("appended", "agent line"):
            ms = [m for k, m in results[who] if k == kind]
            if not ms:
                continue
            rows.append([label, kind, clients, len(ms), f"{median(ms):.1f}", f"{pct(ms, 99):.1f}", f"{max(ms):.1f}"])
    print_table(f"Change → arrival at each client (ms), {args.changes} changes, "
                f"{args.clients} SSE clients + {args.pollers} polling clients at once",
                ["client", "change", "clients", "deliveries", "median", "p99", "max"], rows)
    print(f"target: SSE median < 200 ms over all deliveries ({median(sse_all):.1f} ms): "
          f"{verdict(median(sse_all) < 200)}")
    complete = len(sse_all) == args.clients * args.changes
    print(f"every SSE client got every change: {'yes' if complete else 'NO'} "
          f"({len(sse_all)} of {args.clients * args.changes})")


if __name__ == "__main__":
    os.environ.setdefault("ORCH_SILENT_AFTER", "3600")  # the hanging agent is meant to be quiet
    main()
