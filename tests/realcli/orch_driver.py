"""Driving orch itself inside a lab: its commands, its state root, its view of an agent.

`OrchDriver(lab)` runs `orch …` inside the lab's namespace with the lab's scratch
environment plus `ORCH_HOME` (a folder in the scratch tree), so the agents orch starts
inherit exactly that confined environment. orch is run as `python -m orchestrator` with
this interpreter — what scripts/orch execs once its virtual environment is ready — so a
stale launcher stamp can never make it try `pip install` inside a network-less namespace.

Waiting is on conditions with deadlines: `wait_for_state` loops on `orch wait` (which
blocks until something meaningful happens) and `orch status`, and on failure says what
orch, the agent's raw output and the stub saw.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from .lab import Lab, RunResult

ORCH = [sys.executable, "-m", "orchestrator"]
COMMAND_TIMEOUT = 60.0


class OrchFailed(AssertionError):
    """An orch command or a wait that did not end as the test needs; carries the evidence."""


class OrchDriver:
    """orch's commands in one lab, against one state root and one project folder."""

    def __init__(self, lab: Lab, project: str = "project"):
        self.lab = lab
        self.project = lab.workdir(project)
        self.home = lab.scratch.root / "orch-home"
        self.env = {"ORCH_HOME": str(self.home)}

    # ---- running commands
    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT, ok: bool = True) -> RunResult:
        """`orch ARGS` in the project folder; with ok, a non-zero exit fails the test."""
        result = self.lab.run([*ORCH, *args], cwd=self.project, env=self.env, timeout=timeout)
        if ok and (result.returncode != 0 or result.timed_out):
            raise OrchFailed(f"orch {' '.join(args)} failed:\n{result.describe()}\n{self.evidence()}")
        return result

    def json(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """The JSON an `orch … --json` command printed."""
        result = self.run(*args, "--json", timeout=timeout)
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise OrchFailed(f"orch {' '.join(args)} --json printed no JSON:\n{result.describe()}") from None

    def launch(self, cli: str, role: str, prompt: str, permission: Optional[str] = None) -> str:
        """`orch launch`; the new agent's id (the last line it prints)."""
        args = ["launch", "--cli", cli, "--role", role, "--prompt", prompt]
        if permission:
            args += ["--permission", permission]
        lines = self.run(*args).stdout.decode().split()
        if not lines:
            raise OrchFailed("orch launch printed no agent id")
        return lines[-1]

    def status(self, agent: str) -> dict:
        return self.json("status", agent)

    # ---- waiting
    def wait_for_state(self, agent: str, states: Iterable[str], timeout: float) -> dict:
        """Block (on `orch wait`) until the agent is in one of `states`; its status then."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(agent)
            if status["state"] in wanted:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise OrchFailed(f"{agent} did not reach {sorted(wanted)} within {timeout:.0f} s; it is "
                                 f"{status['state']} ({status['reason']})\n{self.evidence(agent)}")
            self.run("wait", "--timeout", f"{min(left, 20.0):.1f}", timeout=left + 30)

    # ---- what orch wrote
    def session_dir(self) -> Path:
        """The folder of the workspace's active session."""
        active = (self.home / "active").read_text().strip()
        return self.home / "sessions" / active

    def audit(self) -> list[dict]:
        """audit.jsonl of the active session (permission changes)."""
        path = self.session_dir() / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def events(self, kind: Optional[str] = None, agent: Optional[str] = None) -> list[dict]:
        """events.jsonl of the active session, optionally of one kind and one agent."""
        path = self.session_dir() / "events.jsonl"
        out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in out if (kind is None or e["kind"] == kind) and (agent is None or e.get("agent") == agent)]

    def exits(self, agent: str) -> list[dict]:
        """The agent's `agent.exited` events as `orch logs --json` prints them, oldest first."""
        lines = self.run("logs", agent, "--json").stdout.decode().splitlines()
        return [e for e in (json.loads(line) for line in lines if line.strip()) if e["kind"] == "agent.exited"]

    def evidence(self, agent: Optional[str] = None) -> str:
        """What a failed wait should show: orch's status, the agent's raw output, the stub's log."""
        parts = []
        try:
            result = self.lab.run([*ORCH, "status"], cwd=self.project, env=self.env, timeout=COMMAND_TIMEOUT)
            parts.append("--- orch status\n" + result.stdout.decode(errors="replace")[-3000:])
            if agent:
                raw = self.lab.run([*ORCH, "logs", agent, "--raw", "-n", "40"], cwd=self.project, env=self.env,
                                   timeout=COMMAND_TIMEOUT)
                parts.append(f"--- {agent}'s raw output\n" + raw.stdout.decode(errors="replace")[-6000:])
        except Exception as exc:  # evidence is best effort: the test's own failure comes first
            parts.append(f"(orch status failed: {exc})")
        try:
            conversations = [(r.get("api"), r.get("conversation"), r.get("unmatched"))
                             for r in self.lab.stub.requests()]
            parts.append("--- model requests (api, conversation, unmatched)\n"
                         + "\n".join(json.dumps(c)[:600] for c in conversations[-12:]))
            parts.append("--- steps left\n" + json.dumps(self.lab.stub.pending())[:2000])
        except Exception as exc:
            parts.append(f"(the stub's log is unavailable: {exc})")
        return "\n".join(parts)

