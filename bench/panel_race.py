"""What a review panel and a race cost a session, beside one reviewer and no race: the demo's
session (the offline sim team, its goal) in a fresh git repository, the configurations
alternating so the machine's load hits them alike.

    one reviewer    --reviewer sim/codex
    panel of two    --reviewers sim/codex,sim/gemini (the gemini-format reviewer also reads the tests)
    race of two     --race 2 on the core task (the architect's plan marks it), one reviewer (the
                    demo's two candidates fail the same test: the reviewer reads both, a tie)

Each row: wall time, tokens (all agents; the reviewers'; the implementers'), blockers in the
ledger, the reports the panel merged, verification runs (a race adds one per candidate), and
whether the final commit passes its own tests. The sim's findings are scripted, so the "found"
columns show the machinery (one ledger, attribution), not how many defects real models
catch — the README cites measurements of that.

    python bench/panel_race.py [--trials 3]
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
BASE = ["--architect", "sim", "--implementer", "sim"]
CONFIGS = {
    "one reviewer": (GOAL, BASE + ["--reviewer", "sim/codex"]),
    "panel of two": (GOAL, BASE + ["--reviewers", "sim/codex,sim/gemini"]),
    "race of two": (GOAL + " [sim@architect: race=core]", BASE + ["--reviewer", "sim/codex", "--race", "2"]),
}


def one_session(base: Path, name: str, goal: str, team: list[str]) -> dict:
    repo = base / name
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {**os.environ, "ORCH_HOME": str(repo / ".orch"), "ORCH_SIM_HOME": str(repo / ".sim"),
           "PYTHONPATH": str(ROOT / "scripts")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", goal, *team], cwd=repo, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the session in {repo} ended with {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr}")
    state = repo / ".orch"
    session = json.loads(next(state.glob("sessions/*/session.json")).read_text())
    report = json.loads(next(state.glob("sessions/*/reports/session-report.json")).read_text())

    def tokens(role: str) -> int:
        return sum(a["usage"]["input_tokens"] + a["usage"]["output_tokens"] for a in report["agents"]
                   if role in (a["role"], "*"))
    review = [b for b in session["blockers"] if b["source"] == "review"]
    return {"wall": wall, "tokens": tokens("*"), "reviewers": tokens("reviewer"), "builders": tokens("implementer"),
            "blockers": len(review), "reports": sum(len(b["filed_by"]) for b in review),
            "runs": len((session.get("verification") or {}).get("runs") or []),
            "agents": len([a for a in report["agents"] if a["role"] != "verifier"]),
            "final": "pass" if "passed on the final commit" in report["verification"].get("final", "") else "FAIL"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("ORCH_SIM_PACE", "0.05")  # the demo's pace, not the tests' zero
    base = scratch("panel-race")
    names = list(CONFIGS)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(args.trials):
        for name in (names if i % 2 == 0 else list(reversed(names))):
            goal, team = CONFIGS[name]
            results[name].append(one_session(base, f"{name.replace(' ', '-')}-{i}", goal, team))
    rows = []
    for name in names:
        rs = results[name]
        m = lambda key: median([r[key] for r in rs])  # noqa: E731 - a column's median
        rows.append([name, f"{m('wall'):.1f} s", f"{m('tokens'):.0f}", f"{m('reviewers'):.0f}", f"{m('builders'):.0f}",
                     f"{m('agents'):.0f}", f"{m('blockers'):.0f}", f"{m('reports'):.0f}", f"{m('runs'):.0f}",
                     ", ".join(sorted({r['final'] for r in rs}))])
    print_table(f"A review panel and a race on the demo's session ({args.trials} trials each, alternating; load "
                f"average {os.getloadavg()[0]:.1f})",
                ["configuration", "wall, median", "tokens", "reviewers' tokens", "implementers' tokens", "agents",
                 "blockers in the ledger", "reports filed", "verification runs", "final commit's tests"], rows)
    one, panel, race = (median([r["wall"] for r in results[n]]) for n in names)
    print(f"\nthe panel adds {panel - one:+.1f} s ({(panel - one) / one:+.0%}); the race adds {race - one:+.1f} s "
          f"({(race - one) / one:+.0%}) to the session")


if __name__ == "__main__":
    main()
