"""Every `[sim: …]` directive form the sim documents runs without a traceback and does what it says."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchtest import orch_env

FORMS = {  # directive → the exit code it must end with
    "stall=0.2": 0, "stall": 0, "fail=500": None, "fail=quota": None, "quota": None, "fail": None,
    "fail=soon": None, "exit=7": 7, "exit": 1, "exit=x": 1, "silent=0.1": 0, "silent": 0, "garbage=3": 3,
    "garbage": 3, "lines=3 interval=0.01": 0, "lines=x interval=y": 0, "duration=0.2": 0, "duration=x": 0,
    "pace=0": 0, "pace=fast": 0, "write=a.txt": 0, 'shell="echo hi"': 0, "deny=write": 0, "deny=shell": 0,
    "careful": 0, "login": 1, "role=reviewer exit=2": 0, "role=worker exit=2": 2,
}


BARE_STALL = 1.5  # seconds a bare `stall` lasts here (ORCH_SIM_STALL; a minute by default)


def _sim(tmp_path, directive: str, fmt: str = "claude") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.sim", "-p", f"do it [sim: {directive}]",
                           "--role", "worker", "--format", fmt, "--permission", "edit"], cwd=tmp_path,
                          env=orch_env({"ORCH_SIM_PACE": "0", "ORCH_SIM_STALL": str(BARE_STALL)}),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("directive", sorted(FORMS))
def test_every_directive_form_runs_without_a_traceback(tmp_path, directive):
    started = time.monotonic()
    proc = _sim(tmp_path, directive)
    if directive == "stall":  # one line, then nothing for the default stall, then it carries on
        assert time.monotonic() - started >= BARE_STALL
        assert "Thinking about it..." in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    expected = FORMS[directive]
    if expected is None:
        assert proc.returncode != 0 and proc.stdout.strip()  # a model error, said in the stream
    else:
        assert proc.returncode == expected, proc.stdout + proc.stderr


def test_quota_in_either_spelling_is_a_429_rate_limit(tmp_path):
    for directive in ("fail=quota", "quota"):
        out = _sim(tmp_path, directive).stdout
        assert "429" in out or "rate limit" in out, out


def test_runs_limits_a_misbehaviour_to_the_first_runs_in_a_folder(tmp_path):
    codes = [_sim(tmp_path, "exit=2 runs=2").returncode for _ in range(3)]
    assert codes == [2, 2, 0]


def test_login_prints_what_claude_prints_without_credentials(tmp_path):
    proc = _sim(tmp_path, "login")
    assert proc.returncode == 1 and "Not logged in · Please run /login" in proc.stdout
