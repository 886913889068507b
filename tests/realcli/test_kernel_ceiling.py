"""The kernel's write ceiling with the genuine CLIs, in the lab: nothing lands outside it.

Through orch, claude and codex agents run commands they were granted (the project's
tests, which write outside the workspace and inside it) and write with their own tools;
and run directly under the same ceiling orch builds (runtime/ceiling.wrap_command), the
bypass modes — where the CLI itself checks nothing — try their own write tools outside.
After each run the files outside do not exist; at edit the files inside do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.runtime.ceiling import Ceiling, kernel_status, wrap_command

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .scenarios import ARGS

pytestmark = [pytest.mark.realcli,
              pytest.mark.skipif(not kernel_status()[0], reason=f"no Landlock here: {kernel_status()[1]}")]

ENDED = ("idle", "denied", "failed", "aborted", "done", "blocked-by-policy")
RUN_TIMEOUT = 90.0
TEST_COMMAND = "python3 -m unittest discover -s tests"


def plant_writing_tests(project: Path, outside: Path) -> None:
    """A project whose unit test writes outside the workspace and inside it, and says what happened."""
    (project / "tests").mkdir()
    (project / "tests" / "test_writes.py").write_text(
        "import unittest\n"
        "class Writes(unittest.TestCase):\n"
        "    def test_writes(self):\n"
        f"        for path in ({str(outside / 'from-test')!r}, 'inside-from-test'):\n"
        "            try:\n"
        "                open(path, 'w').write('x')\n"
        "                print('WROTE', path)\n"
        "            except OSError as e:\n"
        "                print('REFUSED', path, e.strerror)\n")


def outside_of(lab: Lab) -> Path:
    """A folder beside the project, in no ceiling."""
    path = lab.scratch.root / "outside"
    path.mkdir(exist_ok=True)
    return path


def test_claude_implementer_runs_its_granted_tests_which_write_only_inside(lab: Lab) -> None:
    orch = OrchDriver(lab)
    outside = outside_of(lab)
    plant_writing_tests(orch.project, outside)
    lab.stub.script(
        S.shell(TEST_COMMAND, say="Running the tests.", prompt_contains="ORCH_KERNEL", last_input="prompt"),
        S.reply("ORCH_KERNEL done.", last_input="tool_result", tool_result_contains="Ran 1 test"),
    )
    agent = orch.launch("claude", "implementer", "ORCH_KERNEL run the tests")  # edit, the test command granted

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "idle", orch.evidence(agent)
    assert sorted(outside.iterdir()) == []
    assert (orch.project / "inside-from-test").read_text() == "x"
    (result,) = [r for r in lab.stub.requests("anthropic") if r["conversation"]["last_input"] == "tool_result"]
    assert f"REFUSED {outside / 'from-test'} Permission denied" in result["conversation"]["tool_result"]
    (launched,) = orch.events("agent.launched", agent)
    assert launched["data"]["confinement"].startswith("Landlock ABI")
    assert lab.stub.unmatched() == []


def test_claude_reviewer_granted_the_tests_writes_nothing_at_all(lab: Lab) -> None:
    orch = OrchDriver(lab)
    outside = outside_of(lab)
    plant_writing_tests(orch.project, outside)
    lab.stub.script(
        S.shell(TEST_COMMAND, say="Running the tests.", prompt_contains="ORCH_REVIEW", last_input="prompt"),
        S.reply("ORCH_REVIEW the tests could not run.", last_input="tool_result"),
        S.shell(TEST_COMMAND, say="Running them again.", prompt_contains="orch: the permission check stopped",
                last_input="prompt"),
        S.reply("ORCH_REVIEW done.", last_input="tool_result", tool_result_contains="Ran 1 test"),
    )
    agent = orch.launch("claude", "reviewer", "ORCH_REVIEW run the unit tests")
    assert orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)["state"] == "denied", orch.evidence(agent)
    step = orch.json("step")
    assert any(f"Bash({TEST_COMMAND})" in a for a in step["actions"]), step

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] == "idle" and status["permission"] == "read", orch.evidence(agent)
    assert sorted(outside.iterdir()) == [] and not (orch.project / "inside-from-test").exists()
    result = [r for r in lab.stub.requests("anthropic") if r["conversation"]["last_input"] == "tool_result"][-1]
    shown = result["conversation"]["tool_result"]
    assert f"REFUSED {outside / 'from-test'} Permission denied" in shown
    assert "REFUSED inside-from-test Permission denied" in shown
    assert lab.stub.unmatched() == []


def test_codex_implementer_keeps_its_own_sandbox_and_nothing_lands_outside(lab: Lab) -> None:
    orch = OrchDriver(lab)
    outside = outside_of(lab)
    lab.stub.script(
        S.shell(f"touch {outside}/by-shell; echo in > inside.txt", prompt_contains="ORCH_CODEX", last_input="prompt"),
        S.reply("ORCH_CODEX done.", last_input="tool_result"),
    )
    agent = orch.launch("codex", "implementer", "ORCH_CODEX write it")

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)

    assert status["state"] in ("idle", "denied"), orch.evidence(agent)
    assert sorted(outside.iterdir()) == []
    assert (orch.project / "inside.txt").read_text() == "in\n"
    (launched,) = orch.events("agent.launched", agent)
    assert launched["data"]["confinement"].startswith("codex's own sandbox confines its tools")


BYPASS = {"claude": ["--permission-mode", "bypassPermissions"], "codex": ["--dangerously-bypass-approvals-and-sandbox"],
          "gemini": ["--yolo"]}


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_in_bypass_mode_the_clis_own_write_tools_stop_at_the_ceiling(cli: str, lab: Lab) -> None:
    """Nothing in the CLI checks anything here: the kernel alone keeps the writes in."""
    outside, work = outside_of(lab), lab.workdir(cli)
    write = S.patch if cli == "codex" else S.write
    lab.stub.script(
        write(str(outside / "by-tool.txt"), "escaped\n", prompt_contains="CASE_CEILING", last_input="prompt"),
        write(str(work / "inside.txt"), "inside\n", last_input="tool_result"),
        S.shell(f"touch {outside}/by-shell; echo SHELL=$?", last_input="tool_result"),
        S.reply("CASE_CEILING done.", last_input="tool_result"),
    )
    ceiling = Ceiling(cli=cli, read_only=False, roots=(str(work),))
    argv = [cli, *ARGS[cli]("CASE_CEILING write the files", *BYPASS[cli])]
    wrapped = wrap_command(ceiling, argv, lab.env(), f"lab-{cli}", tmp_base=str(lab.scratch.tmp))

    result = lab.run(wrapped.argv, cwd=work)

    assert result.returncode == 0 and not result.timed_out, result.describe()
    assert sorted(outside.iterdir()) == [], result.describe()
    assert (work / "inside.txt").read_text() == "inside\n", result.describe()
    last = lab.requests_of(result)[-1]["conversation"]["tool_result"]
    assert "SHELL=1" in last, last
    assert lab.stub.unmatched() == []


def test_tcp_connect_ports_let_claude_reach_its_model_and_nothing_else(lab: Lab) -> None:
    """Landlock limits TCP by port: the model's port is listed, a connection elsewhere is refused
    by the kernel (EACCES, not the ECONNREFUSED of a closed port)."""
    if kernel_status()[0] < 4:
        pytest.skip("TCP rules need Landlock ABI 4")
    work = lab.workdir("claude")
    probe = "python3 -c 'import socket; s = socket.socket(); print(\"CONNECT\", s.connect_ex((\"127.0.0.1\", 9)))'"
    lab.stub.script(S.shell(probe, prompt_contains="CASE_NET", last_input="prompt"),
                    S.reply("CASE_NET done.", last_input="tool_result"))
    ceiling = Ceiling(cli="claude", read_only=False, roots=(str(work),), connect_ports=(lab.port,))
    argv = ["claude", *ARGS["claude"]("CASE_NET connect", "--permission-mode", "bypassPermissions")]
    result = lab.run(wrap_command(ceiling, argv, lab.env(), "lab-net", tmp_base=str(lab.scratch.tmp)).argv, cwd=work)
    assert result.returncode == 0, result.describe()
    assert "CONNECT 13" in lab.requests_of(result)[-1]["conversation"]["tool_result"]
    assert lab.stub.unmatched() == []
