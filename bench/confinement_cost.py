"""What the kernel's ceiling costs an agent run: start time and memory of the exec wrapper.

Every confined run starts as `python -I -S …/runtime/confine.py RULES -- CLI…` under
supervise.sh: the wrapper builds the Landlock ruleset, restricts itself and execs the CLI,
so it costs start time once and no process afterwards. Measured, per trial, under the real
supervisor (runtime/supervise.sh) with a stand-in CLI that prints one line and exits:

    start → first byte   supervise.sh started → the CLI's line is in stdout.jsonl
    wrapper still there  whether the process recorded as the run's (run-1.json "pid") was still
                         the wrapper when the CLI's line landed (it should never be: it execs)
    memory               PSS of the supervisor + the CLI, confined or not

Baselines in the same run: the same runs without the wrapper (kernel confinement off), and
the bare start of the interpreter the wrapper runs on.

    python bench/confinement_cost.py [--trials 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, pct, print_table, scratch

from orchestrator.runtime.ceiling import Ceiling, kernel_status, wrap_command

SUPERVISOR = ROOT / "scripts" / "orchestrator" / "runtime" / "supervise.sh"
#: The stand-in CLI: prints its line, then stays a moment so its memory can be read.
CLI = ["sh", "-c", "echo '{\"type\":\"ready\"}'; exec sleep 2"]


def pss_kb(pid: int) -> int:
    """Proportional set size of one process, in kB (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def interpreter_start(trials: int) -> list[float]:
    """`python -I -S -c pass` from start to exit, in ms: what any Python wrapper costs at least."""
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def one_run(base: Path, n: int, confined: bool) -> tuple[float, bool, int]:
    """(start → first byte in ms, whether the run's process was still the wrapper then, PSS of
    supervisor + CLI in kB)."""
    agent = base / f"agent-{n}-{'c' if confined else 'u'}"
    agent.mkdir()
    argv, tmp = list(CLI), []
    if confined:
        wrapped = wrap_command(Ceiling(cli="sim", read_only=False, roots=(str(agent),)), CLI, os.environ, agent.name)
        argv, tmp = wrapped.argv, ["--tmp", wrapped.tmpdir]
    out = agent / "stdout.jsonl"
    started = time.perf_counter()
    supervisor = subprocess.Popen(["/bin/sh", str(SUPERVISOR), "run", str(agent), "1", *tmp, "--", *argv],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out.exists() and out.stat().st_size):
        time.sleep(0.0005)
    first_byte = (time.perf_counter() - started) * 1000
    record = agent / "run-1.json"
    while not record.exists():
        time.sleep(0.0005)
    pid = json.loads(record.read_text())["pid"]
    still_wrapper, memory = "confine.py" in command_of(pid), pss_kb(supervisor.pid) + pss_kb(pid)
    supervisor.wait(timeout=30)
    return first_byte, still_wrapper, memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    args = ap.parse_args()
    abi, why = kernel_status()
    if not abi:
        sys.exit(f"no Landlock on this machine ({why}): nothing to measure")
    base = scratch("confinement")
    results: dict[bool, list[tuple[float, bool, int]]] = {True: [], False: []}
    for n in range(args.trials):
        for confined in (False, True):  # interleaved: the machine's load hits both alike
            results[confined].append(one_run(base, n, confined))
    rows = []
    for confined in (True, False):
        runs = results[confined]
        starts = [r[0] for r in runs]
        rows.append(["with the Landlock wrapper" if confined else "unconfined (baseline)",
                     f"{median(starts):.1f} ms", f"{pct(starts, 95):.1f} ms",
                     f"{sum(r[1] for r in runs)} of {len(runs)}", f"{median([r[2] for r in runs]) / 1024:.2f} MB"])
    bare = interpreter_start(args.trials)
    rows.append(["`python -I -S -c pass` (an interpreter's start)", f"{median(bare):.1f} ms", f"{pct(bare, 95):.1f} ms",
                 "—", "—"])
    print_table(f"Kernel confinement per run (Landlock ABI {abi}, {args.trials} trials, stand-in CLI under "
                f"supervise.sh; load average {os.getloadavg()[0]:.1f})",
                ["run", "start → first byte, median", "p95", "wrapper still there at the first byte",
                 "PSS supervisor + CLI"], rows)
    extra = median([r[0] for r in results[True]]) - median([r[0] for r in results[False]])
    print(f"\nThe wrapper adds {extra:.1f} ms to a run's start (once: it execs the CLI, no process stays behind).")


if __name__ == "__main__":
    main()
