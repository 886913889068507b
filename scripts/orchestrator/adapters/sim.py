"""The sim adapter: orch's built-in agent, speaking one real CLI's stream shape.

Output is parsed by that real CLI's own parser, and narrow grants use that CLI's syntax,
so offline runs exercise exactly the code paths real agents do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.errors import InvalidInput
from ..core.models import Denial, Permission
from .base import Adapter, Command, Grant, LaunchSpec, StreamParser

SIM_FORMATS = ("claude", "codex", "gemini")
DEFAULT_FORMAT = "claude"
#: The offline demo's team: each role speaks another real CLI's stream shape.
DEMO_FORMATS = {"architect": "gemini", "implementer": "claude", "reviewer": "codex"}
#: `orch demo --panel`: two reviewers speaking two other CLIs' shapes (the first is the demo's reviewer).
DEMO_PANEL = ("codex", "gemini")


class SimAdapter(Adapter):
    name = "sim"
    BYPASS_OPTIONS = (("--dangerous", None),)
    assigns_session_id = True
    variants = SIM_FORMATS
    binary = "python"
    install_hint = "it ships with orch; reinstall orch if it is missing"

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """The sim's memory: $ORCH_SIM_HOME, else $XDG_STATE_HOME/orch-sim (sim/agent.py)."""
        from ..sim.agent import sim_home

        return [sim_home(env)], []

    def __init__(self, fmt: str = DEFAULT_FORMAT):
        if fmt not in SIM_FORMATS:
            raise InvalidInput(f"unknown sim format {fmt!r}: choose one of {', '.join(SIM_FORMATS)}")
        self.fmt = fmt
        self.variant = fmt

    def _speaks(self) -> Adapter:
        from . import get_adapter

        return get_adapter(self.fmt)

    @property
    def usage_is_cumulative(self) -> bool:  # type: ignore[override]
        return self._speaks().usage_is_cumulative

    @property
    def narrow_rules_exact(self) -> bool:  # type: ignore[override]
        return self._speaks().narrow_rules_exact

    def executable(self) -> str:
        return sys.executable

    def build_command(self, spec: LaunchSpec) -> Command:
        fmt = spec.sim_format or self.fmt
        argv = [self.executable(), "-m", "orchestrator.sim", "-p", spec.prompt, "--role", spec.role.value,
                "--format", fmt]
        perm_args, env = self.permission_args(spec.grant, spec.cwd)
        argv += perm_args
        if spec.resume and spec.cli_session_id:
            argv += ["--resume", spec.cli_session_id]
        elif spec.cli_session_id:
            argv += ["--session-id", spec.cli_session_id]
        return Command(argv=argv, env=env, cwd=spec.cwd, cli_session_id=spec.cli_session_id)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        args = ["--permission", grant.level.value]
        for tool in grant.tools:
            args += ["--allow", tool]
        if grant.dangerous:
            args.append("--dangerous")
        return args, {}

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        return self._speaks().narrow_tool_for(denial)

    def prefix_tool_for(self, denial: Denial) -> Optional[str]:
        return self._speaks().prefix_tool_for(denial)

    def level_needed(self, denial: Denial) -> Permission:
        return self._speaks().level_needed(denial)

    def urgent_bytes(self, stream: str, data: bytes) -> bool:
        return self._speaks().urgent_bytes(stream, data)

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> StreamParser:
        parser = self._speaks().new_parser(state)
        if getattr(parser, "model", "") is None:
            parser.model = "sim"  # no price is known for it; never a real CLI's configured model
        return parser
