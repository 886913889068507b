"""The project's own test command, allowed from the start to the agents that build.

Without it every session began with a deny → recover cycle: the implementer ran the unit
tests, its CLI refused, orch climbed one narrow rung and resumed it. The command is derived
from the workspace (package.json → npm test, Cargo.toml → cargo test, go.mod → go test,
a Makefile test target → make test, else Python's unittest and pytest), granted only as
the CLI's narrow rule (claude `Bash(cmd:*)`, gemini `run_shell_command(cmd)`), and only
when the policy's allowed rules cover it and no forbidden rule matches: never beyond the
role's ceiling, which the launch gate applies afterwards as always.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core.models import Denial, Permission, Role
from .policy import Policy, narrow_rule_hit, shell_tools

BUILDING_ROLES = frozenset({Role.IMPLEMENTER, Role.WORKER, Role.ARCHITECT})
PYTHON_TESTS = ("python3 -m unittest", "pytest")


def project_test_commands(workspace: Path) -> tuple[str, ...]:
    """The commands that run this workspace's tests, most specific first."""
    pkg = workspace / "package.json"
    if pkg.is_file():
        try:
            if json.loads(pkg.read_text()).get("scripts", {}).get("test"):
                return ("npm test",)
        except (ValueError, OSError, AttributeError):
            pass
    if (workspace / "Cargo.toml").is_file():
        return ("cargo test",)
    if (workspace / "go.mod").is_file():
        return ("go test ./...",)
    makefile = workspace / "Makefile"
    try:
        if makefile.is_file() and re.search(r"(?m)^test\s*:", makefile.read_text(errors="replace")):
            return ("make test",)
    except OSError:
        pass
    return PYTHON_TESTS  # Python projects, and an empty folder a team is about to fill


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
