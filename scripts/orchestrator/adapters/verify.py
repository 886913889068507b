"""The verifier's adapter: orch's own pseudo-agent that runs the project's tests.

Not a coding-agent CLI: no model, no permissions to climb, no conversation. It runs
`python -m orchestrator.verify.runner` (verify/runner.py) with the verification request as
its prompt, through the same supervised launch path as every agent — so the run is detached,
crash-safe, ingested, visible in status, logs and the dashboard, and confined like any
read-level agent. Its stdout is JSON lines (start, heartbeats, the result); the test
command's own output goes to stderr.log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from ..core.models import AgentEventKind as K, Outcome
from .base import Adapter, Command, Grant, LaunchSpec, StreamParser
from .streams import JsonLineParser, clip
from ..verify.runner import RUNNER


class VerifyParser(JsonLineParser):
    """start → TEXT; heartbeat → STATUS (the run is alive); result → TEXT (its summary) and
    RUN_FINISHED whose text is the result as JSON (what engine/verification.py reads)."""

    def on_stdout(self, obj: dict[str, Any]) -> list:
        kind = obj.get("type")
        if kind == "start":
            cmd = " ".join(str(a) for a in obj.get("command") or []) or "no test command"
            return [self.event(K.TEXT, text=clip(f"running `{cmd}` on {str(obj.get('commit', ''))[:12]} "
                                                 f"({obj.get('source', '')})"))]
        if kind == "heartbeat":
            return [self.event(K.STATUS, status="testing", message=f"tests running for {obj.get('seconds')} s")]
        if kind == "result" and isinstance(obj.get("result"), dict):
            result = obj["result"]
            return [self.event(K.TEXT, text=clip(str(result.get("summary", "")), 2000))] + \
                self.run_finished(Outcome.SUCCESS, json.dumps(result, ensure_ascii=False))
        return [self.unknown(obj)]


class VerifyAdapter(Adapter):
    name = "verify"
    binary = "python"
    install_hint = "it ships with orch; reinstall orch if it is missing"
    runs_here = True  # the integration worktree is on this machine, not on a Ray node

    def executable(self) -> str:
        return sys.executable

    def build_command(self, spec: LaunchSpec) -> Command:
        # the prompt is the request itself (JSON, engine/verification.py), passed as it was given
        argv = [self.executable(), "-m", RUNNER, "--spec", spec.prompt]
        return Command(argv=argv, env={}, cwd=spec.cwd)

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        return [], {}  # nothing to grant: the test command runs as it is, confined like a read-level agent

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> StreamParser:
        return VerifyParser(state)
