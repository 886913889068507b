"""Parse throughput: normalizing a large captured-format stream vs bare json.loads per line.

For each CLI, a ~32 MB stream is made by repeating the lines of its genuine captures;
orch's parser (what `orch parse` and the ingest run) is timed against `json.loads` of every
line of the same file. Target: at least half the speed of bare json.loads.

    python bench/parse_throughput.py [--mb 32]
"""

from __future__ import annotations

import argparse
import json
import time

from common import ROOT, print_table, verdict

from orchestrator.adapters import get_adapter

CAPTURES = [ROOT / "tests" / "fixtures" / "cli-captures", ROOT.parent / "shared" / "cli-captures"]


def capture_lines(cli: str) -> list[bytes]:
    folder = next(p for p in CAPTURES if p.is_dir())
    lines = []
    for f in sorted(folder.glob(f"{cli}_*.jsonl")):
        lines += [line for line in f.read_bytes().splitlines() if line.strip()]
    return lines


def build(cli: str, mb: int) -> list[bytes]:
    base = capture_lines(cli)
    size = sum(len(x) + 1 for x in base)
    return base * max(1, (mb << 20) // size)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=32)
    args = ap.parse_args()
    rows, ok = [], True
    for cli in ("claude", "codex", "gemini"):
        lines = build(cli, args.mb)
        mb = sum(len(x) + 1 for x in lines) / (1 << 20)

        def bare():
            loads = json.loads
            for line in lines:
                loads(line)

        def orch():
            parser = get_adapter(cli).new_parser()
            feed = parser.feed
            for line in lines:
                feed("stdout", line)

        t_bare, t_orch = best_of(bare), best_of(orch)
        ratio = t_bare / t_orch
        ok &= ratio >= 0.5
        rows.append([cli, f"{mb:.1f}", f"{len(lines):,}", f"{mb / t_bare:.1f}", f"{mb / t_orch:.1f}", f"{ratio:.2f}"])
    print_table("Parse throughput (MB/s, best of 3)",
                ["cli", "MB", "lines", "json.loads", "orch parser", "orch / json.loads"], rows)
    print(f"target orch >= 0.5 x json.loads for every CLI: {verdict(ok)}")


if __name__ == "__main__":
    main()
