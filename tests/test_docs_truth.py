"""What the README and the output say is what the code does."""

from __future__ import annotations

import re
import subprocess

from orchestrator.store.sessions import Workspace
from orchestrator.views.reports import build_report
from orchtest import ROOT, orch_json, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


def _readme_list(after: str) -> list[str]:
    text = (ROOT / "README.md").read_text().replace("\n", " ")
    listed = re.split(r"[;.]", text[text.index(after) + len(after):])[0]
    return [w for w in re.findall(r"\b([a-z]+)\b", listed.split(":", 1)[-1]) if w != "and"]


def test_the_readme_names_exactly_the_commands_that_take_json_and_session():
    json_cmds = _readme_list("`--json` is taken by")
    session_cmds = _readme_list("`--session ID` (default: this folder's active session) is taken by")
    assert "run" not in json_cmds and "status" in json_cmds and "serve" in session_cmds
    for cmd in json_cmds:
        assert "--json" in run_orch(cmd, "--help", check=True).stdout, cmd
    for cmd in session_cmds:
        assert "--session" in run_orch(cmd, "--help", check=True).stdout, cmd
    for cmd in ("run", "resume", "demo", "allow", "deny", "monitor", "serve"):
        assert cmd not in json_cmds and "--json" not in run_orch(cmd, "--help", check=True).stdout


def test_orch_list_prints_one_line_per_agent(workspace_dir):
    ids = [run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi", check=True).stdout.split()[-1]
           for _ in range(2)]
    wait_until(lambda: all(a["state"] == "idle" for a in orch_json("list")), what="both idle")
    lines = run_orch("list", check=True).stdout.splitlines()
    assert [line.split()[0] for line in lines] == ids


def test_a_finalized_report_says_so_everywhere_and_git_status_stays_clean(workspace_dir):
    subprocess.run(["git", "init", "-q", str(workspace_dir)], check=True)
    run_orch("run", "Build a small text utilities library", *SIM_TEAM, check=True)
    store = Workspace(workspace_dir / ".orch").resolve(None)
    assert build_report(store).finalized  # what /api/sessions/ID/reports serves
    assert "/.orch/" in (workspace_dir / ".git" / "info" / "exclude").read_text().splitlines()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=workspace_dir, capture_output=True, text=True)
    assert ".orch" not in status.stdout


def test_the_design_cites_only_files_that_exist():
    design = (ROOT / "specifications" / "DESIGN.md").read_text()
    package = ROOT / "scripts" / "orchestrator"
    start = design.index("| part | modules | owns |")
    table = design[start:design.index("\n## ", start)]  # the package table, up to the next section
    cited = 0
    for row in [r for r in table.splitlines()[2:] if r.startswith("|")]:
        part, modules = row.split("|")[1], row.split("|")[2]
        folders = [f.rstrip("/") for f in re.findall(r"`([\w/]+/)`", part)]
        for name in re.findall(r"`([\w./]+)`", modules):
            if not any((package / folder / name).exists() for folder in folders + [""]):
                raise AssertionError(f"DESIGN.md cites {name} under {folders}, which is not in the package")
            cited += 1
    assert cited > 30
