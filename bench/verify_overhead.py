"""What the verification gate adds to a session's wall time: the demo's session (the offline sim
team, its goal, one implementer, the sim's usual pace) run in a fresh git repository, with the
gate on and with `[verify] enabled = false`, alternating so the machine's load hits both alike.

Besides the wall time, each row says what the time bought: the verification runs and the
time spent inside the test command, the rounds and tasks, and whether the project's tests pass
on the session's final commit (checked here, for both, with the same command). With the gate
off the demo's planted regression — a merge that drops `__version__` — is never caught.

    python bench/verify_overhead.py [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, print_table, scratch

GOAL = "Build a small text utilities library"
TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim", "--implementers", "1"]


def one_session(base: Path, name: str, gate: bool) -> dict:
    repo = base / name
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".orch").mkdir()
    if not gate:
        (repo / ".orch" / "policy.toml").write_text("[verify]\nenabled = false\n")
    env = {**os.environ, "ORCH_HOME": str(repo / ".orch"), "PYTHONPATH": str(ROOT / "scripts")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", GOAL, *TEAM], cwd=repo, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the session in {repo} ended with {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr}")
    session = json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())
    runs = (session.get("verification") or {}).get("runs") or []
    return {"wall": wall, "runs": len(runs), "test_seconds": sum(r.get("seconds") or 0 for r in runs),
            "rounds": len(session["rounds"]), "tasks": len(session["tasks"]),
            "final_tests": final_tests(repo, session["git"]["integration_branch"])}


def final_tests(repo: Path, branch: str) -> str:
    """The project's tests on the session's final commit, run here the same way for both modes."""
    tree = repo.parent / f"{repo.name}-final"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), branch], cwd=repo, check=True)
    proc = subprocess.run([sys.executable, "-B", "-m", "unittest", "discover", "-s", "tests", "-t", "."], cwd=tree,
                          capture_output=True, text=True)
    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return "pass" if proc.returncode == 0 else f"FAIL ({last})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("ORCH_SIM_PACE", "0.05")  # the demo's pace, not the tests' zero
    base = scratch("verify-overhead")
    results: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(args.trials):
        for gate in ((True, False) if i % 2 == 0 else (False, True)):
            results[gate].append(one_session(base, f"{'on' if gate else 'off'}-{i}", gate))
    rows = []
    for gate in (False, True):
        rs = results[gate]
        walls = [r["wall"] for r in rs]
        rows.append(["gate on" if gate else "gate off ([verify] enabled = false)",
                     f"{median(walls):.1f} s", f"{min(walls):.1f}–{max(walls):.1f} s",
                     f"{median([r['runs'] for r in rs]):.0f}", f"{median([r['test_seconds'] for r in rs]):.1f} s",
                     f"{median([r['rounds'] for r in rs]):.0f}", f"{median([r['tasks'] for r in rs]):.0f}",
                     ", ".join(sorted({r['final_tests'] for r in rs}))])
    off, on = (median([r["wall"] for r in results[g]]) for g in (False, True))
    print_table(f"Verification gate on the demo's session ({args.trials} trials each, alternating; load average "
                f"{os.getloadavg()[0]:.1f})",
                ["mode", "wall, median", "range", "verification runs", "inside the tests", "rounds", "tasks",
                 "final commit's tests"], rows)
    print(f"\nthe gate adds {on - off:+.1f} s ({(on - off) / off:+.0%}) to the session; with it off the final commit "
          "fails its own tests")


if __name__ == "__main__":
    main()
