"""One step anyone can reuse: run the project's tests on commit X and get a structured result.

The verification gate runs the same program (verify/runner.py) as its `verifier` pseudo-agent
(supervised, ingested, confined); `check_commit` runs it in the caller's process, for a
caller that wants an answer now — e.g. judging race candidates on their commits. Both see
the same command, the same environment and the same reading of the output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .failures import effective_failures
from .runner import RUNNER


def runner_argv(request: dict[str, Any]) -> list[str]:
    """The verifier's command line for one request ({"id", "commit", "command", "timeout"})."""
    return [sys.executable, "-m", RUNNER, "--spec", json.dumps(request)]


@dataclass
class CommitResult:
    """What the project's tests said about one commit."""

    commit: str
    passed: bool  # nothing counts as failing (no test command at all also passes: see `command`)
    command: list[str] = field(default_factory=list)  # empty: the tree has no test command
    source: str = ""  # where the command came from, or why there is none
    failures: list[str] = field(default_factory=list)  # what counts: every failing test not declared known
    failing: list[str] = field(default_factory=list)  # every failing test the output named
    exit_code: Optional[int] = None
    timed_out: bool = False
    seconds: float = 0.0
    first_error: str = ""
    tail: str = ""
    error: str = ""  # the command could not run at all (then passed is False)

    @classmethod
    def from_result(cls, result: dict[str, Any], known: Iterable[str] = ()) -> "CommitResult":
        if result.get("error"):
            return cls(commit=str(result.get("commit", "")), passed=False, error=str(result["error"]))
        failures = effective_failures(result, known)
        return cls(commit=str(result.get("commit", "")), passed=not failures, command=list(result.get("command") or []),
                   source=str(result.get("source") or ""), failures=failures, failing=list(result.get("failing") or []),
                   exit_code=result.get("exit_code"), timed_out=bool(result.get("timed_out")),
                   seconds=float(result.get("seconds") or 0), first_error=str(result.get("first_error") or ""),
                   tail=str(result.get("tail") or ""))


def check_commit(repo: Path, checkout: Path, commit: str, command: Optional[Sequence[str]] = None,
                 timeout: float = 600, known: Iterable[str] = (), confine: bool = True) -> CommitResult:
    """Check commit out in `checkout` (a detached worktree orch owns, made when missing, cleaned)
    and run the project's tests there: the `[verify] command` argv when given, else the one the
    tree declares — under the kernel's ceiling of a read-level agent (it writes only a private
    temp folder) wherever the kernel has Landlock, as the verifier's supervised runs are."""
    from ..runtime.ceiling import confined_argv, private_tmpdir
    from ..worktrees.checkout import checkout_commit

    checkout_commit(Path(repo), Path(checkout), commit)
    request = {"id": f"check-{commit[:12]}", "commit": commit, "command": list(command) if command else None,
               "timeout": timeout}
    tmp = private_tmpdir(f"check-{commit[:12]}")
    try:
        argv = confined_argv(runner_argv(request), read_only=True, tmpdir=tmp) if confine else runner_argv(request)
        proc = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=timeout + 60,
                              env={**os.environ, "TMPDIR": tmp})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next((x["result"] for x in reversed(lines) if x.get("type") == "result"), None)
    if result is None:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return CommitResult(commit=commit, passed=False, error=f"the verifier printed no result: {tail}")
    return CommitResult.from_result(result, known)
