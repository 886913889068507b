"""Every rung of every adapter, run by the genuine CLI: the exact argv and env the adapter
builds are accepted, the refusal at `read` is seen, and the next rung (or the narrow
grant the adapter proposes) lets the same call through — also as a resume of the same
CLI session, with extra folders and a system prompt.

Runs inside the real-CLI lab (tests/realcli: loopback-only namespace, scratch home, the
scripted model stub); skipped, with the reason, where the lab cannot be made.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import Grant, LaunchSpec
from orchestrator.core.models import Permission, Role, RunSummary
from orchestrator.runtime.ingest.run_files import parse_run_files

pytestmark = [pytest.mark.realcli, pytest.mark.slow]

READ, EDIT, FULL = Permission.READ, Permission.EDIT, Permission.FULL
AFTER = "Tool finished. Result was: {tool_result}"
RUN_NUMBERS = itertools.count(1)


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
    saved = {cli: os.environ.get(f"ORCH_{cli.upper()}_BIN") for cli in ("claude", "codex", "gemini")}
    for cli in saved:
        os.environ[f"ORCH_{cli.upper()}_BIN"] = str(bin_dir / cli)
    the_lab = Lab(tmp_path_factory.mktemp("ladder"), bin_dir)
    yield the_lab
    the_lab.close()
    for cli, value in saved.items():
        if value is None:
            os.environ.pop(f"ORCH_{cli.upper()}_BIN", None)
        else:
            os.environ[f"ORCH_{cli.upper()}_BIN"] = value


def launch(lab, cli: str, folder: str, grant: Grant, steps: tuple, prompt: str, **spec_fields) -> tuple[RunSummary, Path]:
    """Build the command with the adapter, run it in the lab, parse what it wrote."""
    adapter = get_adapter(cli)
    cwd = lab.workdir(folder)
    cmd = adapter.build_command(LaunchSpec(role=Role.IMPLEMENTER, prompt=prompt, cwd=cwd, grant=grant, **spec_fields))
    adapter.prepare_launch({**lab.env(), **cmd.env})
    lab.stub.script(*steps)
    result = lab.run(cmd.argv, cwd=cwd, env=cmd.env, timeout=90)
    assert result.returncode == 0 and not result.timed_out, result.describe()
    out = lab.root / f"{folder}-run{next(RUN_NUMBERS)}"
    stdout, stderr = Path(f"{out}.out"), Path(f"{out}.err")
    stdout.write_bytes(result.stdout)
    stderr.write_bytes(result.stderr)
    rollout = lab.codex_rollout(result) if cli == "codex" else None
    summary = parse_run_files(cli, stdout, stderr, rollout)
    assert summary.outcome.value == "success" and summary.malformed_lines == 0, result.describe()
    if cmd.cli_session_id:
        assert summary.session_id == cmd.cli_session_id  # a pinned or resumed id is the CLI's own
    return summary, cwd


def write_steps(path: Path) -> tuple:
    from realcli import script as S
    return (S.write(str(path), "hello\n", say="Writing.", last_input="prompt"), S.reply(AFTER, last_input="tool_result"))


def shell_steps(command: str) -> tuple:
    from realcli import script as S
    return (S.shell(command, say="Running.", last_input="prompt"), S.reply(AFTER, last_input="tool_result"))


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
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


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
@pytest.mark.parametrize("dangerous", [False, True])
def test_full_runs_a_shell_command_that_writes(lab, cli, dangerous):
    folder = f"{cli}-full-{dangerous}"
    summary, cwd = launch(lab, cli, folder, Grant(FULL, dangerous=dangerous), shell_steps("touch made-by-shell"),
                          "make the marker")
    assert not summary.denied, summary
    assert (cwd / "made-by-shell").exists()


@pytest.mark.parametrize("cli", ["claude", "gemini"])
def test_the_narrow_grant_lets_exactly_that_command_through(lab, cli):
    adapter = get_adapter(cli)
    denied, cwd = launch(lab, cli, f"{cli}-narrow", Grant(READ), shell_steps("touch marker.txt"), "make the marker")
    assert [d.tool for d in denied.denials] == [{"claude": "Bash", "gemini": "run_shell_command"}[cli]]
    rule = adapter.narrow_tool_for(denied.denials[0])
    assert rule == {"claude": "Bash(touch marker.txt)", "gemini": "run_shell_command(touch marker.txt)"}[cli]
    allowed, _ = launch(lab, cli, f"{cli}-narrow", Grant(EDIT, tools=(rule,)), shell_steps("touch marker.txt"),
                        "make the marker")
    assert not allowed.denied and (cwd / "marker.txt").exists()
    if cli == "gemini":  # claude's acceptEdits already allows filesystem commands such as mkdir
        other, _ = launch(lab, cli, f"{cli}-narrow", Grant(EDIT, tools=(rule,)), shell_steps("mkdir build"),
                          "make the folder")
        assert other.denied and not (cwd / "build").exists()
