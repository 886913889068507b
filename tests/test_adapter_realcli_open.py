"""Every rung of the opencode, Qwen Code and GitHub Copilot CLI adapters, run by the genuine CLI (as
test_adapter_realcli.py does for the first three): the exact argv and env the adapter
builds are accepted, the refusal at `read` is seen, and the next rung (or the narrow
grant the adapter proposes) lets the same call through — also as a resume of the same
CLI session, with extra folders and a system prompt.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import Grant
from orchestrator.core.models import Permission
from test_adapter_realcli import launch, shell_steps, write_steps

pytestmark = [pytest.mark.realcli, pytest.mark.slow]

READ, EDIT, FULL = Permission.READ, Permission.EDIT, Permission.FULL
CLIS = ("opencode", "qwen", "copilot")
SHELL = {"opencode": "bash", "qwen": "run_shell_command", "copilot": "bash"}
# The narrow rule for `touch marker.txt`: the command itself, or (Copilot) its program with any arguments.
NARROW_TOUCH = {"opencode": "bash(touch marker.txt)", "qwen": "run_shell_command(touch marker.txt)",
                "copilot": "shell(touch)"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One lab for the module, with ORCH_<CLI>_BIN pointing at the pinned binaries."""
    from realcli.lab import Lab
    from realcli.netns import INSTALL_SCRIPT, Namespace, NamespaceUnavailable

    try:
        Namespace().close()
    except NamespaceUnavailable as exc:
        pytest.skip(f"no loopback-only network namespace here: {exc}")
    given = os.environ.get("ORCH_REALCLI_BIN")
    if given:
        bin_dir = Path(given)
    else:
        proc = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"the pinned CLIs could not be installed: {proc.stderr[-500:]}")
        bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    saved = {cli: os.environ.get(f"ORCH_{cli.upper()}_BIN") for cli in CLIS}
    for cli in saved:
        os.environ[f"ORCH_{cli.upper()}_BIN"] = str(bin_dir / cli)
    the_lab = Lab(tmp_path_factory.mktemp("ladder-open"), bin_dir)
    yield the_lab
    the_lab.close()
    for cli, value in saved.items():
        if value is None:
            os.environ.pop(f"ORCH_{cli.upper()}_BIN", None)
        else:
            os.environ[f"ORCH_{cli.upper()}_BIN"] = value


@pytest.mark.parametrize("cli", CLIS)
def test_denied_at_read_then_resumed_one_rung_up(lab, cli):
    adapter = get_adapter(cli)
    shared = lab.workdir(f"{cli}-shared")
    first, cwd = launch(lab, cli, f"{cli}-resume", Grant(READ), write_steps(lab.workdir(f"{cli}-resume") / "a.txt"),
                        "write a.txt", extra_dirs=[shared], system_prompt="Keep answers short.")
    assert first.denied and len(first.denials) == 1, first
    assert adapter.level_needed(first.denials[0]) is EDIT
    assert not (cwd / "a.txt").exists()
    second, _ = launch(lab, cli, f"{cli}-resume", Grant(EDIT), write_steps(cwd / "a.txt"), "-continue: retry the write",
                       cli_session_id=first.session_id, resume=True, extra_dirs=[shared],
                       system_prompt="Keep answers short.")
    assert second.session_id == first.session_id and not second.denied, second
    assert (cwd / "a.txt").read_text() == "hello\n"
    # the system prompt reached the model in both runs, and the resume carried the first
    sent = [r for r in lab.stub.requests("chat") if "retry the write" in r["conversation"]["prompt"]]
    assert sent and "Keep answers short." in str(sent[-1]["body"]) and "write a.txt" in str(sent[-1]["body"])


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("dangerous", [False, True])
def test_full_runs_a_shell_command_that_writes(lab, cli, dangerous):
    folder = f"{cli}-full-{dangerous}"
    summary, cwd = launch(lab, cli, folder, Grant(FULL, dangerous=dangerous), shell_steps("touch made-by-shell"),
                          "make the marker")
    assert not summary.denied, summary
    assert (cwd / "made-by-shell").exists()


@pytest.mark.parametrize("cli", CLIS)
def test_edit_alone_does_not_open_the_shell(lab, cli):
    summary, cwd = launch(lab, cli, f"{cli}-edit-shell", Grant(EDIT), shell_steps("touch nope"), "make the marker")
    assert [d.tool for d in summary.denials] == [SHELL[cli]] and not (cwd / "nope").exists()


@pytest.mark.parametrize("cli", CLIS)
def test_the_narrow_grant_lets_exactly_that_command_through(lab, cli):
    adapter = get_adapter(cli)
    denied, cwd = launch(lab, cli, f"{cli}-narrow", Grant(READ), shell_steps("touch marker.txt"), "make the marker")
    assert [d.tool for d in denied.denials] == [SHELL[cli]]
    rule = adapter.narrow_tool_for(denied.denials[0])
    assert rule == NARROW_TOUCH[cli]
    allowed, _ = launch(lab, cli, f"{cli}-narrow", Grant(EDIT, tools=(rule,)), shell_steps("touch marker.txt"),
                        "make the marker")
    assert not allowed.denied and (cwd / "marker.txt").exists()
    other, _ = launch(lab, cli, f"{cli}-narrow", Grant(EDIT, tools=(rule,)), shell_steps("mkdir build"),
                      "make the folder")
    assert other.denied and not (cwd / "build").exists()
