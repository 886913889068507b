"""The project's own test command, allowed from the start to the agents that build.

Without it every session began with a deny → recover cycle: the implementer ran the unit
tests, its CLI refused, orch climbed one narrow rung and resumed it. The command is derived
from the workspace by verify/command.py (package.json → npm test, Cargo.toml → cargo test,
go.mod → go test, a Makefile test target → make test, else Python's unittest and pytest),
the same detection the verification gate uses, granted only as
the CLI's narrow rule (claude `Bash(cmd:*)`, gemini `run_shell_command(cmd)`), and only
when the policy's allowed rules cover it and no forbidden rule matches: never beyond the
role's ceiling, which the launch gate applies afterwards as always.
"""

from __future__ import annotations

from pathlib import Path

from ..core.models import Denial, Permission, Role
from ..verify.command import PYTHON_TESTS, project_test_commands
from .policy import Policy, narrow_rule_hit, shell_tools

BUILDING_ROLES = frozenset({Role.IMPLEMENTER, Role.WORKER, Role.ARCHITECT})
__all__ = ["BUILDING_ROLES", "PYTHON_TESTS", "project_test_commands", "starting_tools"]


def starting_tools(policy: Policy, adapter, role: Role, level: Permission, workspace: Path) -> tuple[str, ...]:
    """Narrow rules, in the CLI's syntax, for the project's test commands (empty when none may be granted)."""
    if role not in BUILDING_ROLES or level is Permission.READ:
        return ()
    tools: list[str] = []
    for command in project_test_commands(workspace):
        if policy.allowed_hit(command) is None:
            continue  # only what the policy's allowed rules already cover
        for shell in sorted(shell_tools()):
            rule = adapter.prefix_tool_for(Denial(tool=shell, target=command))
            if rule and narrow_rule_hit(policy, rule, command) is None and rule not in tools:
                tools.append(rule)
                break
    return tuple(tools)
