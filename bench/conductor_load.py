"""Orch's cost the way a conductor pays it: 100 stand-in claudes streaming, a conductor looping.

For each line rate, in one run:

    agents      N stand-in claudes (bench/standin_claude.py, through ORCH_CLAUDE_BIN), each
                printing claude-shaped lines — a text, a tool call, the tool's result — at
                the rate, under the real supervisor (supervise.sh), the kernel ceiling and all
    conductor   `scripts/orch wait --timeout 30 --json`, then `scripts/orch step`, again and
                again, as Claude Code runs them (a process each, through the launcher)
    CPU         every orch process over the measured window: the conductor's commands with
                the children they reaped (getrusage of the loop's process), the session's
                ingest owner and the supervisors (/proc), beside the agents' own CPU
    latency     a denial line appended to a quiet agent's output while `orch wait` waits →
                that process has printed its digest (the conductor has read it)
    reads       `orch status`, `list`, `check` and `wait --timeout 0` as whole processes while
                the agents stream, and again once they have finished, beside `python -c pass`
    memory      the ingest owner's RSS, a supervisor's PSS, the largest conductor command

Targets (issue 27): orch under 5 % of a core at 100 × 1 line/s, under 15 % at 100 × 10 lines/s;
wait latency median under 50 ms under that load; live reads within 5× a bare interpreter.

    python bench/conductor_load.py [--agents 100] [--rates 1,10] [--seconds 60] [--denials 15] [--runs 11]
    python bench/conductor_load.py --without-owner ...   # every command ingests for itself (ORCH_INGEST_OWNER=off)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, pct, print_table, scratch, timed, verdict

LAUNCHER = str(ROOT / "scripts" / "orch")
STANDIN = str(Path(__file__).resolve().parent / "standin_claude.py")
TICK = os.sysconf("SC_CLK_TCK")
WAIT_TIMEOUT = 30


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process (and of the children it reaped) from /proc; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICK


def memory_kb(pid: int, field: str) -> int:
    """Pss: or Rss: of a process (smaps_rollup), in kB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def inotify_watching(pid: int) -> bool:
    """The process holds an inotify instance with a watch (it has started waiting)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                if "inotify wd:" in Path(f"/proc/{pid}/fdinfo/{fd}").read_text():
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


def denial_line(tag: str) -> bytes:
    return json.dumps({"type": "system", "subtype": "permission_denied", "tool_name": "Bash",
                       "tool_use_id": f"toolu_bench_{tag}", "message": "This command requires approval",
                       "session_id": "bench"}).encode() + b"\n"


# ------------------------------------------------------------------ the conductor's side (a process)

def conductor_loop(cwd: str, seconds: float, out: str) -> None:
    """`orch wait --timeout 30` then `orch step`, for `seconds`: the conductor's commands and their CPU."""
    end = time.monotonic() + seconds
    waits = steps = 0
    while time.monotonic() < end:
        left = end - time.monotonic()
        subprocess.run([LAUNCHER, "wait", "--timeout", str(min(WAIT_TIMEOUT, max(left, 0.5))), "--json"], cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waits += 1
        if time.monotonic() >= end:
            break
        subprocess.run([LAUNCHER, "step"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steps += 1
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(out).write_text(json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "waits": waits, "steps": steps,
                                     "maxrss_kb": usage.ru_maxrss}))


def latency_loop(cwd: str, marker_stdout: str, denials: int, out: str) -> None:
    """A denial appended while `orch wait` waits → the digest printed; then `orch step`, as the conductor would."""
    rng = random.Random(27)
    lat, cycles = [], []
    for i in range(denials):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen([LAUNCHER, "wait", "--timeout", "60", "--json"], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not inotify_watching(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:  # it returned before the denial (something else happened): again
            proc.communicate()
            continue
        time.sleep(rng.uniform(0.2, 0.8))
        with open(marker_stdout, "ab", buffering=0) as f:
            t0 = time.time()
            f.write(denial_line(f"{os.getpid()}-{i}"))
        data = proc.stdout.read()
        t1 = time.time()
        proc.wait()
        digest = json.loads(data)
        if any("denied" in h for h in digest["happened"]):
            lat.append((t1 - t0) * 1000)
        subprocess.run([LAUNCHER, "step"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cycles.append((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime))
    Path(out).write_text(json.dumps({"latencies": lat, "cycle_cpu": cycles}))


# ------------------------------------------------------------------ the harness

READS = [("status",), ("list",), ("check",), ("wait", "--timeout", "0")]


def reads(cwd: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Each read command's median ms and its ratio to `python -c pass`, measured interleaved."""
    times: dict[str, list[float]] = {"bare": []}
    for _ in range(runs):
        times["bare"] += timed([sys.executable, "-c", "pass"], cwd, 1)
        for argv in READS:
            times.setdefault(" ".join(argv), []).extend(timed([LAUNCHER, *argv], cwd, 1))
    bare = median(times["bare"])
    return {k: (median(v), median(v) / bare) for k, v in times.items()}


def owner_pid(session_dir: Path) -> int:
    try:
        record = json.loads((session_dir / "ingest.json").read_text())
    except (OSError, ValueError):
        return 0
    return record.get("pid") or 0 if record.get("state") in ("starting", "watching") else 0


def one_load(base: Path, agents: int, rate: float, seconds: float, denials: int, runs: int) -> dict:
    from orchestrator.adapters import Grant
    from orchestrator.core.models import Permission, Role
    from orchestrator.runtime.workers import launch_agent
    from orchestrator.store.sessions import Workspace

    ws = base / f"rate-{rate:g}"
    ws.mkdir()
    os.environ["ORCH_HOME"] = str(ws / ".orch")
    store = Workspace(ws / ".orch").create(ws)
    total = 5 + seconds + denials * 4 + runs * 4 + 20  # the agents outlive every phase, then finish
    prompt = f"stream rate={rate:g} seconds={total:.0f}"
    t = time.monotonic()
    launched = [launch_agent(store, cli="claude", role=Role.WORKER, cwd=ws, grant=Grant(level=Permission.READ),
                             prompt=prompt) for _ in range(agents)]
    marker = launch_agent(store, cli="claude", role=Role.WORKER, cwd=ws, grant=Grant(level=Permission.READ),
                          prompt=f"stay quiet rate=0.0001 seconds={total:.0f}")
    launch_s = time.monotonic() - t
    records = [json.loads((store.agent_dir(a.id) / "run-1.json").read_text()) for a in launched + [marker]]
    time.sleep(5.0)  # settle: every launch ingested, the streams at their pace
    owner = owner_pid(store.path)

    def orch_cpu_parts() -> tuple[float, float, float]:
        return (cpu_seconds(owner, children=True) if owner else 0.0,
                sum(cpu_seconds(r["supervisor_pid"]) for r in records), sum(cpu_seconds(r["pid"]) for r in records))

    o0, s0, a0 = orch_cpu_parts()
    w0 = time.monotonic()
    out = ws / "conductor.json"
    subprocess.run([sys.executable, __file__, "--conductor", str(ws), str(seconds), str(out)], cwd=ws, check=True)
    wall = time.monotonic() - w0
    o1, s1, a1 = orch_cpu_parts()
    cond = json.loads(out.read_text())
    owner_rss, owner_pss = (memory_kb(owner, "Rss:"), memory_kb(owner, "Pss:")) if owner else (0, 0)
    sup_pss = [memory_kb(r["supervisor_pid"], "Pss:") for r in records]
    lat_out = ws / "latency.json"
    marker_stdout = store.agent_dir(marker.id) / "stdout.jsonl"
    subprocess.run([sys.executable, __file__, "--latency", str(ws), str(marker_stdout), str(denials), str(lat_out)],
                   cwd=ws, check=True)
    lat = json.loads(lat_out.read_text())
    live_reads = reads(ws, runs)
    return {"rate": rate, "agents": agents, "launch_s": launch_s, "wall": wall, "conductor": cond,
            "conductor_pct": cond["cpu"] / wall * 100, "owner_pct": (o1 - o0) / wall * 100,
            "supervisors_pct": (s1 - s0) / wall * 100, "agents_pct": (a1 - a0) / wall * 100,
            "owner_pid": owner, "owner_rss_mb": owner_rss / 1024, "owner_pss_mb": owner_pss / 1024,
            "supervisor_pss_mb": (sum(sup_pss) / len(sup_pss) / 1024) if sup_pss else 0.0,
            "latencies": lat["latencies"], "cycle_cpu": lat["cycle_cpu"], "live_reads": live_reads,
            "ws": ws, "store": store, "ends_in": total - (time.monotonic() - t)}


def settle(result: dict, grace: float = 120.0) -> dict:
    """Once the agents have finished: the owner's exit, then the read commands on the settled session."""
    store = result["store"]
    deadline = time.monotonic() + max(result["ends_in"], 0) + grace
    while time.monotonic() < deadline:
        states = [a.get("state") for _, a in _stored(store.path)]
        record = _record(store.path)
        if not any(s in ("starting", "running", "silent") for s in states) and record.get("state") in ("ended", None):
            break
        time.sleep(0.5)
    return _record(store.path)


def _stored(session_dir: Path):
    from orchestrator.runtime.owner import stored_agents

    return stored_agents(session_dir)


def _record(session_dir: Path) -> dict:
    try:
        return json.loads((session_dir / "ingest.json").read_text())
    except (OSError, ValueError):
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--rates", default="1,10", help="lines per second per agent, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="the measured window of the conductor loop")
    ap.add_argument("--denials", type=int, default=15, help="latency samples per rate")
    ap.add_argument("--runs", type=int, default=11, help="runs of each read command")
    ap.add_argument("--without-owner", action="store_true", help="ORCH_INGEST_OWNER=off: every command ingests")
    ap.add_argument("--conductor", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--latency", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.conductor:
        conductor_loop(args.conductor[0], float(args.conductor[1]), args.conductor[2])
        return
    if args.latency:
        latency_loop(args.latency[0], args.latency[1], int(args.latency[2]), args.latency[3])
        return
    base = scratch("conductor")
    os.environ["ORCH_CLAUDE_BIN"] = STANDIN
    if args.without_owner:
        os.environ["ORCH_INGEST_OWNER"] = "off"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "scripts" / "orchestrator")],
                   stdout=subprocess.DEVNULL)
    load = os.getloadavg()
    results = [one_load(base, args.agents, float(r), args.seconds, args.denials, args.runs)
               for r in args.rates.split(",")]
    records = [settle(r) for r in results]
    settled_reads = reads(results[-1]["ws"], args.runs)
    mode = "without an ingest owner (every command ingests)" if args.without_owner else "with the ingest owner"
    rows = []
    for r, rec in zip(results, records):
        orch = r["conductor_pct"] + r["owner_pct"] + r["supervisors_pct"]
        c = r["conductor"]
        lat = r["latencies"]
        rows += [
            [f"{r['agents']} × {r['rate']:g} line/s", "orch total CPU (% of a core)", f"{orch:.2f}",
             f"agents' own: {r['agents_pct']:.1f}"],
            ["", f"  conductor: {c['waits']} waits + {c['steps']} steps (with their children)",
             f"{r['conductor_pct']:.2f}", ""],
            ["", "  ingest owner", f"{r['owner_pct']:.2f}", f"pid {r['owner_pid'] or '-'}"],
            ["", "  supervisors (all)", f"{r['supervisors_pct']:.3f}", ""],
            ["", "wait latency, denial → digest printed (ms, median / p95)",
             f"{median(lat):.1f} / {pct(lat, 95):.1f}", f"{len(lat)} of {args.denials} seen"],
            ["", "one wait + step cycle (CPU s, median)", f"{median(r['cycle_cpu']):.2f}", ""],
            ["", "memory: owner RSS / PSS; supervisor PSS; largest command RSS (MB)",
             f"{r['owner_rss_mb']:.1f} / {r['owner_pss_mb']:.1f}; {r['supervisor_pss_mb']:.2f}; "
             f"{c['maxrss_kb'] / 1024:.1f}", ""],
            ["", "owner at the end", rec.get("state", "-"), rec.get("reason", "")],
        ]
        for name, (ms, ratio) in r["live_reads"].items():
            if name != "bare":
                rows.append(["", f"live `orch {name}` (ms, ×bare)", f"{ms:.1f} ({ratio:.1f}×)",
                             f"bare {r['live_reads']['bare'][0]:.1f} ms"])
    for name, (ms, ratio) in settled_reads.items():
        if name != "bare":
            rows.append(["settled", f"`orch {name}` (ms, ×bare)", f"{ms:.1f} ({ratio:.1f}×)",
                         f"bare {settled_reads['bare'][0]:.1f} ms"])
    print_table(f"Conductor load, {mode} (load average at start {load[0]:.1f}, "
                f"{args.seconds:g} s window, {os.cpu_count()} cores)", ["load", "measure", "orch", "beside"], rows)
    for r in results:
        orch = r["conductor_pct"] + r["owner_pct"] + r["supervisors_pct"]
        target = 5.0 if r["rate"] <= 1 else 15.0
        lives = [ratio for k, (_, ratio) in r["live_reads"].items() if k != "bare"]
        print(f"{r['rate']:g} line/s: CPU < {target:g} %: {verdict(orch < target)}; wait median < 50 ms: "
              f"{verdict(median(r['latencies']) < 50)}; live reads ≤ 5×: {verdict(max(lives) <= 5)}")


if __name__ == "__main__":
    main()
