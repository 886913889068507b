"""A codex refusal that never reaches the sandbox, through orch: detected, then recovered.

Codex answers an escalation request (`sandbox_permissions: "require_escalated"`) under its
headless approval policy `never` with a refusal to the model before anything runs: no
stdout item, a clean turn.completed, exit 0. orch must still see the denial (from the
rollout's function_call_output, the stderr router line and the model's later message,
counted once) and recover it one rung up in the same codex thread.
"""

from __future__ import annotations

import pytest

from . import script as S
from .lab import Lab
from .orch_driver import OrchDriver
from .test_orch_agents import ENDED, RUN_TIMEOUT, own_session_id

pytestmark = pytest.mark.realcli

REFUSAL = "you cannot ask for escalated permissions if the approval policy is Never"


def test_codex_escalation_refused_under_never_is_recovered_one_rung_up(lab: Lab) -> None:
    orch = OrchDriver(lab)
    # The implementer may reach full here (the shipped policy stops it at edit).
    orch.home.mkdir(parents=True, exist_ok=True)
    (orch.home / "policy.toml").write_text('[roles.implementer]\nmax_level = "full"\n')
    # $TMPDIR is outside the edit rung's writable roots (orch excludes /tmp and $TMPDIR there)
    # and inside the full rung's: the model asks to escalate for it, then at full just writes.
    target = lab.scratch.tmp / "escalated.txt"
    command = f"printf 'escalated\\n' > {target}"
    lab.stub.script(
        S.tool("exec_command", {"cmd": command, "sandbox_permissions": "require_escalated",
                                "justification": "Allow writing escalated.txt in $TMPDIR?"},
               prompt_contains="ORCH_ESCALATE", last_input="prompt"),
        S.reply("ORCH_ESCALATE I was not allowed: {tool_result}", last_input="tool_result",
                tool_result_contains=REFUSAL),
        S.tool("exec_command", {"cmd": command}, prompt_contains="orch: the permission check stopped",
               last_input="prompt"),
        S.reply("ORCH_ESCALATE done: escalated.txt is written.", last_input="tool_result",
                tool_result_contains="exited with code 0"),
    )
    agent = orch.launch("codex", "implementer", "ORCH_ESCALATE write escalated.txt in $TMPDIR", permission="edit")

    denied = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert denied["state"] == "denied", orch.evidence(agent)
    assert denied["exit_code"] == 0  # codex itself reported a clean run
    assert not target.exists()
    (denial,) = denied["denials"]  # rollout, stderr and the model's message: one action, one denial
    assert denial["tool"] == "shell" and denial["run"] == 1, denial
    assert REFUSAL in denial["message"], denial
    session_id = denied["cli_session_id"]
    assert session_id == own_session_id(orch, agent)

    step = orch.json("step")
    assert any(a.startswith(f"{agent}: escalated edit → full") for a in step["actions"]), step

    status = orch.wait_for_state(agent, ENDED, RUN_TIMEOUT)
    assert status["state"] == "idle", orch.evidence(agent)
    assert target.read_text() == "escalated\n"
    assert status["cli_session_id"] == session_id
    assert status["runs"] == 2 and status["permission"] == "full" and status["recoveries"] == 1
    assert status["denials"] == [denial]  # the resumed run's rollout holds the first turn: not counted again
    assert orch.exits(agent)[-1]["data"]["final_text"] == "ORCH_ESCALATE done: escalated.txt is written."
    (escalation,) = orch.audit()
    assert escalation["agent"] == agent and escalation["action"] == "escalated"
    assert (escalation["rung_before"], escalation["rung_after"]) == ("edit", "full")
    assert escalation["denied_tool"] == "shell"
    assert lab.stub.unmatched() == []
