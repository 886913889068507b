"""The genuine Claude Code with orch as its plugin, inside the lab (loopback-only namespace,
scratch home, model stub): the commands load, the conductor's Bash calls are allowed by the
commands' own frontmatter, and the Stop hook holds the conductor while the session has work,
then lets it go once the session is complete. Also installed the way users do it: marketplace
add, install, list, and a thin command run from the installed plugin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from . import script as S
from .lab import Lab, RunResult
from .netns import REPO

pytestmark = pytest.mark.realcli

LAUNCHER = REPO / "scripts" / "orch"
SEVEN = {"orch:orchestrate", "orch:orch-monitor", "orch:orch-list", "orch:orch-logs", "orch:orch-abort",
         "orch:orch-status", "orch:orch-report"}
TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


@pytest.fixture(scope="module")
def orch_venv() -> str:
    """orch's ready virtual environment, made outside the lab (inside it there is no registry)."""
    proc = subprocess.run([str(LAUNCHER)], env={**os.environ, "ORCH_PRINT_VENV": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def claude(lab: Lab, prompt: str, cwd: Path, env: dict[str, str], *extra: str, timeout: float = 240) -> RunResult:
    return lab.run(["claude", "-p", prompt, "--output-format", "stream-json", "--verbose", *extra], cwd=cwd,
                   env=env, timeout=timeout)


def init_line(result: RunResult) -> dict:
    return next(line for line in result.lines if line.get("type") == "system" and line.get("subtype") == "init")


def tool_results(result: RunResult) -> list[dict]:
    return [c for line in result.lines if line.get("type") == "user"
            for c in line["message"]["content"] if isinstance(c, dict) and c.get("type") == "tool_result"]


def texts_of_user_lines(result: RunResult) -> list[str]:
    out = []
    for line in result.lines:
        if line.get("type") != "user":
            continue
        content = line["message"]["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            out += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
    return out


def hook_events(project: Path, session: str) -> list[dict]:
    lines = (project / ".orch" / "sessions" / session / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "hook"]


def test_plugin_dir_loads_the_seven_commands_and_the_stop_hook_holds_the_conductor(lab: Lab, orch_venv: str):
    project = lab.workdir("project")
    # a slow sim team, so the architect is still at work when the conductor tries to stop
    env = {"ORCH_VENV": orch_venv, "ORCH_SIM_HOME": str(lab.scratch.root / "sim"), "ORCH_SIM_PACE": "0.4"}
    started = lab.run([str(LAUNCHER), "start", "Build a small text utilities library", *TEAM], cwd=project, env=env)
    assert started.returncode == 0, started.describe()
    session = started.stdout.decode().split()[-1]
    conductor = str(uuid.uuid4())
    orch = f'"{REPO}/scripts/orch"'
    lab.stub.script(
        # /orch:orchestrate with no goal: take over the active session, as the file says
        S.shell(f"{orch} hook claim {conductor} && {orch} step", say="Taking over the session.",
                prompt_contains="# Conduct:"),
        S.reply("The architect is at work. I will stop here.", last_input="tool_result"),
        # the Stop hook's feedback sends the "model" back: it drives the session to its end
        S.shell(f"{orch} resume {session}", say="Back to work.", prompt_contains="Stop hook feedback"),
        S.reply("The session is complete.", last_input="tool_result"),
    )
    result = claude(lab, "/orch:orchestrate", project, env, "--plugin-dir", str(REPO), "--session-id", conductor)
    assert result.returncode == 0, result.describe()
    init = init_line(result)
    assert {c for c in init["slash_commands"] if c.startswith("orch:")} == SEVEN
    assert {"name": "orch", "path": str(REPO), "source": "orch@inline"} in init["plugins"]

    first, second = tool_results(result)
    assert not first.get("is_error"), first  # allowed by orchestrate.md's allowed-tools, not refused
    assert f"is conducted by Claude Code session {conductor}" in first["content"]
    assert "architect-1" in first["content"]
    feedback = [t for t in texts_of_user_lines(result) if t.startswith("Stop hook feedback:")]
    assert len(feedback) == 1, texts_of_user_lines(result)
    assert f"orch session {session} is not finished" in feedback[0]
    # What holds at any timing: on a loaded machine the architect may have finished by the time
    # the conductor tries to stop. Until a step retires it, it is named among the agents not
    # done, and the next command either waits for it or takes the step.
    assert re.search(r"agent\(s\) not done: [^\n]*architect-1 \((starting|running|silent|idle|denied)\)",
                     feedback[0]), feedback[0]
    if "Running agents:\n- architect-1" in feedback[0]:
        assert f'Run next: "{REPO}/scripts/orch" wait --timeout 60' in feedback[0]
    else:
        assert re.search(rf'Run next: "{re.escape(str(REPO))}/scripts/orch" (step|wait)', feedback[0]), feedback[0]
    assert not second.get("is_error") and "criteria hold" in second["content"]

    final = next(line for line in result.lines if line.get("type") == "result")
    assert final["subtype"] == "success" and final["result"] == "The session is complete."
    assert lab.stub.unmatched() == [] and lab.stub.pending() == []
    stops = [e for e in hook_events(project, session) if e["data"]["hook"] == "stop"]
    assert [e["data"]["decision"] for e in stops] == ["block", "allow"]
    assert stops[-1]["reason"] == "stop allowed: the session is complete"
    assert stops[-1]["data"]["stop_hook_active"] is True
    status = lab.run([str(LAUNCHER), "check"], cwd=project, env=env)
    assert status.returncode == 0, status.describe()


def test_installed_from_the_marketplace_like_users_do(lab: Lab, orch_venv: str):
    project = lab.workdir("elsewhere")
    env = {"ORCH_VENV": orch_venv}
    for args, says in ((["plugin", "validate", "--strict", str(REPO / ".claude-plugin" / "plugin.json")],
                        "Validation passed"),
                       (["plugin", "validate", str(REPO)], "Validation passed"),  # the marketplace file
                       (["plugin", "marketplace", "add", str(REPO)], "Successfully added marketplace: orch"),
                       (["plugin", "install", "orch@orch"], "Successfully installed plugin: orch@orch"),
                       (["plugin", "list"], "orch@orch")):
        done = lab.run(["claude", *args], cwd=project, env=env, timeout=120)
        assert done.returncode == 0 and says in done.stdout.decode(), done.describe()

    # a thin command from the installed plugin, in a project with no orch session yet
    lab.stub.script(S.reply("Listed.", last_input="prompt"))
    probe = claude(lab, "/orch:orch-list", project, env)
    (plugin,) = [p for p in init_line(probe)["plugins"] if p["name"] == "orch"]
    assert plugin["source"] == "orch@orch"
    orch = f'"{plugin["path"]}/scripts/orch"'  # as the command text spells it (the path may end in "/")
    lab.stub.script(S.shell(f"{orch} status", say="Checking orch.", prompt_contains="scripts/orch\" status"),
                    S.reply("There is no orch session in this project yet.", last_input="tool_result"))
    result = claude(lab, "/orch:orch-status", project, env)
    assert result.returncode == 0, result.describe()
    (answer,) = tool_results(result)  # the Bash tool reports the exit code, then orch's one line
    code, message = answer["content"].split("\n")
    assert code == "Exit code 2" and message.startswith("orch: no active orch session in ")
    assert lab.stub.unmatched() == []
    assert not (project / ".orch").exists()  # the Stop hook had nothing to do, and wrote nothing
