"""schemas/ is generated from the models; every file a real session writes validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from orchestrator.core.schema import SCHEMAS, drifted, render_schemas
from orchtest import run_orch, wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schemas_match_the_models():
    bad = drifted(ROOT / "schemas")
    assert not bad, f"schemas drifted from the models: {bad} — run `orch schema --write schemas`"


def test_check_command_reports_drift(tmp_path):
    assert run_orch("schema", "--check", str(ROOT / "schemas")).returncode == 0
    (tmp_path / "session.schema.json").write_text("{}\n")
    proc = run_orch("schema", "--check", str(tmp_path))
    assert proc.returncode == 1 and "drifted: session.schema.json" in proc.stdout


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(render_schemas()[name]))


def test_files_of_a_real_session_validate(workspace_dir):
    agent = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hello", check=True).stdout.split()[-1]
    wait_until(lambda: json.loads(run_orch("status", agent, "--json", check=True).stdout)["state"] == "idle",
               what="idle")
    run_orch("report", check=False)
    state = workspace_dir / ".orch" / "sessions"
    session_dir = next(state.iterdir())
    checks = {
        "session.schema.json": [session_dir / "session.json"],
        "agent-meta.schema.json": list(session_dir.glob("agents/*/meta.json")),
        "run-record.schema.json": list(session_dir.glob("agents/*/run-*.json")),
        "session-report.schema.json": [session_dir / "reports" / "session-report.json"],
        "notify-cursor.schema.json": [session_dir / "notify.json"],  # the commands read the log for notifications
    }
    for name, paths in checks.items():
        assert paths, name
        for p in paths:
            _validator(name).validate(json.loads(p.read_text()))
    events = (session_dir / "events.jsonl").read_text().splitlines()
    v = _validator("event.schema.json")
    for line in events:
        v.validate(json.loads(line))
    assert len(SCHEMAS) == len(list((ROOT / "schemas").glob("*.schema.json")))
