"""End-to-end latency the conductor sees: an agent's last line and exit → the waiting
`orch wait` process has printed its digest.

The conductor (Claude Code, or a person) runs `scripts/orch wait` as a process and reads
what it prints. Here an agent runs under the real supervisor; an `orch wait` process is
already waiting when the agent prints its result line and exits. Measured, per trial:

    line landed    mtime of stdout.jsonl after the result line
    exit recorded  mtime of run-1.json once the supervisor wrote the exit code
    printed        the moment the waiting process's digest has been read in full

Baseline in the same run: a conductor polling `orch status` once a second (its latency is
the wait until its next poll plus one status process).

    python bench/wait_process.py [--trials 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT, median, pct, print_table, scratch, verdict

LAUNCHER = str(ROOT / "scripts" / "orch")


def orch(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([LAUNCHER, *args], capture_output=True, text=True, timeout=120, **kw)


def one_trial(base: Path, stall: float) -> tuple[float, float, float]:
    """Launch an agent that goes quiet for `stall` s then finishes; return (line→print, exit→print, exit→line)."""
    proc = orch("launch", "--cli", "sim", "--role", "worker", "--prompt", f"finish after a pause [sim: stall={stall}]",
                cwd=base)
    agent = proc.stdout.strip().splitlines()[-1]
    orch("wait", "--timeout", "5", "--idle-after", "3600", cwd=base)  # consumes "launched"; the agent is in its pause
    folder = next((base / ".orch" / "sessions").glob(f"*/agents/{agent}"))
    stdout, record = folder / "stdout.jsonl", folder / "run-1.json"
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch_files() -> None:  # timestamps of the last line landing and of the exit record
        size = stdout.stat().st_size
        while not done.is_set():
            now_size = stdout.stat().st_size
            if now_size > size:
                seen["line"], size = time.time(), now_size
            if "exit" not in seen and b"exit_code" in record.read_bytes():
                seen["exit"] = time.time()
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch_files, daemon=True)
    watcher.start()
    waiter = subprocess.Popen([LAUNCHER, "wait", "--timeout", "60", "--idle-after", "3600", "--json"], cwd=base, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    out = waiter.stdout.read()
    printed = time.time()
    waiter.wait()
    done.set()
    watcher.join()
    digest = json.loads(out)
    assert any("exited" in h for h in digest["happened"]), digest["happened"]
    orch("abort", "--all", cwd=base)
    return (printed - seen["line"]) * 1000, (printed - seen["exit"]) * 1000, (seen["exit"] - seen["line"]) * 1000


def polling_baseline(base: Path, trials: int, interval: float = 1.0) -> list[float]:
    """A conductor that runs `orch status` every second: the exit is seen at its next poll."""
    out = []
    for i in range(trials):
        phase = (i + 0.5) / trials * interval  # exits land evenly across the polling period
        t0 = time.time()
        orch("status", cwd=base)
        cost = time.time() - t0
        out.append((interval - phase + cost) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    args = ap.parse_args()
    base = scratch("wait-process")
    os.environ.pop("ORCH_HOME", None)  # the processes find .orch from their cwd, as a conductor's do
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "scripts" / "orchestrator")],
                   stdout=subprocess.DEVNULL)
    line, exit_, gap = [], [], []
    for _ in range(args.trials):
        a, b, c = one_trial(base, stall=2.0)
        line.append(a)
        exit_.append(b)
        gap.append(c)
    poll = polling_baseline(base, args.trials)
    rows = [
        ["result line lands → digest printed", f"{median(line):.1f}", f"{pct(line, 95):.1f}"],
        ["exit recorded → digest printed", f"{median(exit_):.1f}", f"{pct(exit_, 95):.1f}"],
        ["(line lands → exit recorded, the supervisor)", f"{median(gap):.1f}", f"{pct(gap, 95):.1f}"],
        ["baseline: `orch status` polled every 1 s", f"{median(poll):.1f}", f"{pct(poll, 95):.1f}"],
    ]
    print_table(f"`orch wait` as a process, end to end ({args.trials} trials; ms)", ["what", "median", "p95"], rows)
    print(f"\ntarget: line → digest median < 50 ms: {verdict(median(line) < 50)}")


if __name__ == "__main__":
    main()
