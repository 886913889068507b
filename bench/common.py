"""Shared bits of the benchmarks: a scratch workspace, percentiles, a printed table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def scratch(name: str) -> Path:
    """A fresh folder with orch's state and the sim's memory inside it (set in os.environ)."""
    base = Path(tempfile.mkdtemp(prefix=f"orch-bench-{name}-"))
    os.environ["ORCH_HOME"] = str(base / ".orch")
    os.environ["ORCH_SIM_HOME"] = str(base / "sim")
    os.environ.setdefault("ORCH_SIM_PACE", "0")
    return base


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def timed(argv: list[str], cwd: Path, runs: int) -> list[float]:
    """Wall milliseconds of each of `runs` runs of a whole process, its output discarded."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
    return out
