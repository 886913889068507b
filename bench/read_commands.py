"""Start-up cost of the read commands: `orch status` and `orch check` as whole processes,
the way the conductor runs them (through scripts/orch), beside a bare `python -c pass`
measured in the same run.

Two sessions: a settled one (every agent finished and ingested: the fast read path,
fastpath.py) and one with a live agent (the full command, which syncs first). Target: the
settled case within 5× the bare interpreter.

    python bench/read_commands.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from common import ROOT, median, pct, print_table, scratch, timed, verdict

LAUNCHER = str(ROOT / "scripts" / "orch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    base = scratch("read-commands")
    os.environ.pop("ORCH_HOME", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "scripts" / "orchestrator")],
                   stdout=subprocess.DEVNULL)
    settled = base / "settled"
    subprocess.run([LAUNCHER, "demo", "--dir", str(settled)], stdout=subprocess.DEVNULL, check=True)
    live = base / "live"
    live.mkdir()
    subprocess.run([LAUNCHER, "launch", "--cli", "sim", "--role", "worker", "--prompt", "work [sim: stall=600]"],
                   cwd=live, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    try:
        bare = timed([sys.executable, "-c", "pass"], base, args.runs)
        rows = [["python -c pass (baseline)", f"{median(bare):.1f}", f"{pct(bare, 95):.1f}", "1.0×"]]
        ratios = {}
        for label, cwd in (("settled session", settled), ("live agent, full command", live)):
            for cmd in ("status", "check"):
                t = timed([LAUNCHER, cmd], cwd, args.runs)
                ratio = median(t) / median(bare)
                ratios[(label, cmd)] = ratio
                rows.append([f"orch {cmd}, {label}", f"{median(t):.1f}", f"{pct(t, 95):.1f}", f"{ratio:.1f}×"])
        print_table(f"read commands as processes ({args.runs} runs each; ms)", ["what", "median", "p95", "vs bare"],
                    rows)
        ok = all(ratios[("settled session", c)] <= 5 for c in ("status", "check"))
        print(f"\ntarget: settled status and check within 5× python -c pass: {verdict(ok)}")
    finally:
        subprocess.run([LAUNCHER, "abort", "--all"], cwd=live, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
