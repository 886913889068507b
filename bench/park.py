"""Quiet through a park: `orch run` and `orch wait` while all remaining work waits for a
usage limit to reset (the sim's claude-shaped limit, `[sim@implementer: limit=S]`).

Measured from the real processes: the lines `orch run` prints while asleep, its process
tree's CPU time from /proc over the park, its inotify instances (`anon_inode:inotify`
descriptors, sampled every second) over the whole run, and when an `orch wait
--timeout 600` started during the park of a conductor-driven session returns, against
the reset time it reports. Baseline: what issue 22 measured before (a 45-s park).

    python bench/park.py [--seconds 95]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from common import ROOT, print_table, scratch, verdict

TICK = os.sysconf("SC_CLK_TCK")
TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
GOAL = "Build a small text utilities library"


def orch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def env_for(ws: Path) -> dict[str, str]:
    return {**os.environ, "ORCH_HOME": str(ws / ".orch"),
            "PYTHONPATH": str(ROOT / "scripts") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def tree_cpu(root: int) -> float:
    """utime+stime+cutime+cstime of a process and its descendants, in seconds."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stats[int(name)] = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree = {root}
    while True:
        more = {p for p, f in stats.items() if int(f[1]) in tree} - tree
        if not more:
            break
        tree |= more
    return sum(sum(int(x) for x in stats[p][11:15]) for p in tree if p in stats) / TICK


def inotify(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return n


def workspace(base: Path, name: str) -> Path:
    ws = base / name
    (ws / ".orch").mkdir(parents=True)
    (ws / ".orch" / "policy.toml").write_text("[limits]\nlimit_grace_seconds = 0\n")
    return ws


def autopilot(ws: Path, seconds: int) -> dict:
    proc = subprocess.Popen(orch_argv("run", f"{GOAL} [sim@implementer: limit={seconds} runs=1]", *TEAM), cwd=ws,
                            env=env_for(ws), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    samples: list[tuple[float, float, int]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            samples.append((time.monotonic(), tree_cpu(proc.pid), inotify(proc.pid)))
        except OSError:
            break
        time.sleep(1.0)
    reader.join(timeout=10)
    at = next(i for i, (_, line) in enumerate(lines) if "sleeping until it resets" in line)
    start, end = lines[at][0], lines[at + 1][0]
    window = [(t, c) for t, c, _ in samples if start + 1 <= t <= end - 1]
    cpu = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else float("nan")
    counts = [n for _, _, n in samples if n]
    asleep = [line for t, line in lines if start < t < end]
    return {"code": proc.returncode, "asleep_s": end - start, "asleep_lines": len(asleep), "lines": len(lines),
            "cpu": cpu, "inotify": (min(counts), max(counts)) if counts else (0, 0)}


def conductor(ws: Path, seconds: int) -> dict:
    env = env_for(ws)
    subprocess.run(orch_argv("start", f"{GOAL} [sim@implementer: limit={seconds} runs=1]", *TEAM), cwd=ws, env=env,
                   capture_output=True, check=True)
    for _ in range(20):  # follow the advice until the park begins
        digest = json.loads(subprocess.run(orch_argv("wait", "--timeout", "60", "--json"), cwd=ws, env=env,
                                           capture_output=True, text=True).stdout)
        if digest.get("due") and digest["due"]["cause"] == "limit_reset":
            break
        subprocess.run(orch_argv("step"), cwd=ws, env=env, capture_output=True)
    started = time.time()
    digest = json.loads(subprocess.run(orch_argv("wait", "--timeout", "600", "--json"), cwd=ws, env=env,
                                       capture_output=True, text=True).stdout)
    returned = time.time()
    reset = datetime.fromisoformat(digest["due"]["at"].replace("Z", "+00:00")).timestamp()
    return {"waited": returned - started, "after_reset": returned - reset, "woke": digest["woke"]["why"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=95, help="how far ahead the usage limit resets")
    args = ap.parse_args()
    base = scratch("park")
    results: dict = {}
    threads = [threading.Thread(target=lambda: results.update(run=autopilot(workspace(base, "run"), args.seconds))),
               threading.Thread(target=lambda: results.update(wait=conductor(workspace(base, "wait"), args.seconds)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run, wait = results["run"], results["wait"]
    lo, hi = run["inotify"]
    rows = [
        ["`orch run`: lines printed while asleep", f"{run['asleep_lines']} in {run['asleep_s']:.0f} s "
         f"({run['lines']} in the whole run)", "3,183 in 76 s", "0 (one line per change)",
         verdict(run["asleep_lines"] == 0)],
        ["`orch run`: CPU while asleep (process tree, /proc)", f"{run['cpu'] * 100:.2f} % of a core", "~30 %", "< 5 %",
         verdict(run["cpu"] < 0.05)],
        ["`orch run`: inotify instances over the run", f"{lo}–{hi}", "9 → 120, then died", "1, constant",
         verdict(lo == hi == 1)],
        ["`orch wait --timeout 600` during the park", f"returned after {wait['waited']:.1f} s ({wait['woke']}), "
         f"{wait['after_reset']:+.2f} s from the reset", "after 0.0 s", "at the reset (≥ 0 s)",
         verdict(wait["after_reset"] >= 0 and wait["woke"] == "due")],
        ["`orch run` finished", f"exit {run['code']}", "died: inotify limit", "exit 0", verdict(run["code"] == 0)],
    ]
    print_table(f"Parked by a usage limit resetting {args.seconds} s ahead", ["measure", "measured", "baseline (before)",
                                                                              "target", ""], rows)


if __name__ == "__main__":
    main()
