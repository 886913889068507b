"""A `Lab`: one confined place where real CLIs (or orch itself) run against the model stub.

A lab is a loopback-only network namespace, a scratch home with the CLIs' configuration,
and the model stub running inside that namespace. Everything a test starts goes through
`Lab.run` / `Lab.spawn` / `Lab.cli`, which enter the namespace and use the scratch
environment (and nothing else) — so an `orch launch …` run there passes the same confined
environment on to the agents it starts. `Lab.close` stops every process left in the
namespace, whatever started it and however the test ended.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from .netns import Namespace, Scratch, wait_for_line
from .script import StubControl

STUB = Path(__file__).resolve().parent / "stub.py"
DEFAULT_TIMEOUT = 60.0
#: The events of Copilot's session log (~/.copilot/session-state/<id>/events.jsonl) orch reads.
COPILOT_LOG_TYPES = frozenset({"session.start", "session.resume", "session.usage_record", "session.shutdown"})


@dataclass
class RunResult:
    """One finished command: what it printed, how it ended, how long it took."""

    argv: list[str]
    cwd: Path
    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed: float
    timed_out: bool = False
    env_extra: dict[str, str] = field(default_factory=dict)
    first_request: int = 0  # the stub's log entries [first_request, end_request) came during this run
    end_request: int = 0

    @property
    def lines(self) -> list[dict]:
        """stdout's JSON object lines (other lines are skipped)."""
        out = []
        for raw in self.stdout.splitlines():
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def describe(self) -> str:
        return (f"{shlex.join(self.argv)} → rc={self.returncode} after {self.elapsed:.2f}s"
                f"{' (timed out)' if self.timed_out else ''}\n--- stdout\n{self.stdout.decode(errors='replace')[-4000:]}"
                f"\n--- stderr\n{self.stderr.decode(errors='replace')[-4000:]}")


def start_stub(control: Path, log: Optional[Path], stderr_path: Path, *,
               wrap: Callable[[list[str]], list[str]] = list, timeout: float = 15.0,
               ) -> tuple[subprocess.Popen, StubControl]:
    """Start the model stub (inside a namespace when `wrap` enters one); its process and handle.

    The stub's stdin stays open for its lifetime: it exits when that pipe closes.
    """
    argv = [sys.executable, str(STUB), "--control", str(control)] + (["--log", str(log)] if log else [])
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(wrap(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)
    try:
        line = wait_for_line(proc.stdout, time.monotonic() + timeout, "model stub")
        if not line:
            raise RuntimeError(f"the model stub exited: {stderr_path.read_text()[-2000:]}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, StubControl(control, int(json.loads(line)["port"]))


class Lab:
    """Namespace + scratch home + model stub; see the module docstring."""

    def __init__(self, root: Path, bin_dir: Optional[Path], captures: Optional[Path] = None,
                 stub_timeout: float = 15.0):
        self.root = root
        self.bin_dir = bin_dir
        self.captures = captures
        self.scratch = Scratch(root)
        self.procs: list[subprocess.Popen] = []
        self._control_dir = Path(tempfile.mkdtemp(prefix="orch-stub-"))  # Unix socket paths must be short
        try:
            self.ns = Namespace()
            self._start_stub(stub_timeout)
            self.scratch.create(self.port)
        except BaseException:
            self.close()
            raise

    # ---- the stub
    def _start_stub(self, timeout: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.stub_log = self.root / "stub-requests.jsonl"
        self.stub_proc, self.stub = start_stub(self._control_dir / "control.sock", self.stub_log,
                                               self.root / "stub.stderr", wrap=self.ns.wrap, timeout=timeout)
        self.port = self.stub.port

    # ---- environment
    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        """The scratch environment every confined command gets (plus `extra`)."""
        return self.scratch.env(self.port, self.bin_dir, extra)

    def workdir(self, name: str) -> Path:
        """A working folder `<scratch>/workspace/<name>` (neutralized to /workspace/<name>)."""
        return self.scratch.workdir(name)

    # ---- running things inside
    def spawn(self, argv: list[str], *, cwd: Path, env: Optional[dict[str, str]] = None,
              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
        """Start a command inside the namespace with the scratch env, in its own process group."""
        proc = subprocess.Popen(self.ns.wrap(list(argv)), cwd=cwd, env=self.env(env), stdin=stdin,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], *, cwd: Path, env: Optional[dict[str, str]] = None,
            timeout: float = DEFAULT_TIMEOUT, input: Optional[bytes] = None) -> RunResult:
        """Run a command inside to its end (its whole process group is killed at `timeout`)."""
        first_request = self.stub.count()
        started = time.monotonic()
        proc = self.spawn(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
        timed_out = False
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        return RunResult(list(argv), cwd, proc.returncode, out, err, time.monotonic() - started, timed_out, dict(env or {}),
                         first_request, self.stub.count())

    def requests_of(self, result: RunResult, api: Optional[str] = None) -> list[dict]:
        """The scripted model requests the stub received during one run."""
        return [r for r in self.stub.requests(api) if result.first_request <= r["n"] < result.end_request]

    def cli(self, name: str, args: Iterable[str], *, cwd: Optional[Path] = None,
            env: Optional[dict[str, str]] = None, timeout: float = DEFAULT_TIMEOUT) -> RunResult:
        """Run one real CLI directly (claude, codex or gemini) in `<scratch>/workspace/<name>`."""
        if name == "gemini":
            self.scratch.clear_gemini_lock()
        return self.run([name, *args], cwd=cwd or self.workdir(name), env=env, timeout=timeout)

    # ---- captures
    def save_capture(self, case: str, result: RunResult, cli: str) -> Path:
        """Write stdout/stderr/cmd (and the stub's log, codex's rollout) as `<case>.*` under captures."""
        if self.captures is None:
            raise RuntimeError("this lab was made without a captures folder")
        self.captures.mkdir(parents=True, exist_ok=True)
        install = str(self.bin_dir.resolve().parent) if self.bin_dir else None

        def neutral(text: str) -> str:  # the same neutral paths as the committed captures
            text = self.scratch.neutral(text)
            return text.replace(install, "/lab/npm") if install else text

        base = self.captures / case
        Path(f"{base}.jsonl").write_text(neutral(result.stdout.decode("utf-8", "replace")))
        Path(f"{base}.stderr").write_text(neutral(result.stderr.decode("utf-8", "replace")))
        env_shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env(result.env_extra).items())
                             if k != "PATH")
        Path(f"{base}.cmd").write_text(neutral(
            f"# model stub: tests/realcli/stub.py on 127.0.0.1:{self.port} inside a loopback-only network namespace\n"
            f"# env: {env_shown}\n"
            f"cd {shlex.quote(str(result.cwd))}; {shlex.join(result.argv)}\n"
            f"# rc={result.returncode} elapsed={result.elapsed:.2f}s{' timed-out' if result.timed_out else ''}\n"))
        requests = self.stub.all_requests()[result.first_request:result.end_request]
        Path(f"{base}.requests.jsonl").write_text(neutral("".join(json.dumps(r) + "\n" for r in requests)))
        if cli == "codex":
            rollout = self.codex_rollout(result)
            if rollout:
                Path(f"{base}.rollout.jsonl").write_text(neutral(rollout.read_text()))
        if cli == "copilot":
            log = self.copilot_session_log(result)
            if log:  # the lines orch reads from it, verbatim (the rest repeats stdout and the prompts)
                kept = [line for line in log.read_text().splitlines(keepends=True)
                        if json.loads(line).get("type") in COPILOT_LOG_TYPES]
                Path(f"{base}.rollout.jsonl").write_text(neutral("".join(kept)))
        return base

    def copilot_session_log(self, result: RunResult) -> Optional[Path]:
        """Copilot's own log of the session a run reported (its `result` line's sessionId), if any."""
        session = next((l.get("sessionId") for l in result.lines if l.get("type") == "result"), None)
        if not session:
            return None
        path = self.scratch.home / ".copilot" / "session-state" / session / "events.jsonl"
        return path if path.is_file() else None

    def codex_rollout(self, result: RunResult) -> Optional[Path]:
        """The rollout file of the codex thread a run reported (thread.started), if any."""
        thread = next((l.get("thread_id") for l in result.lines if l.get("type") == "thread.started"), None)
        if not thread:
            return None
        found = sorted((self.scratch.codex_home / "sessions").rglob(f"rollout-*-{thread}.jsonl"))
        return found[-1] if found else None

    # ---- the end
    def leftovers(self) -> list[int]:
        """Pids still running inside the namespace, besides the stub, the holder and orch's own
        ingest owner (a process of orch's, not of a CLI: it ends once nothing is live)."""
        return [p for p in self.ns.processes() if p != self.stub_proc.pid and not _ingest_owner(p)]

    def close(self) -> None:
        """Stop everything inside, then the stub, then the namespace. Safe to call twice."""
        try:
            for proc in self.procs:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            stub = getattr(self, "stub_proc", None)
            if stub is not None and stub.stdin and not stub.stdin.closed:
                stub.stdin.close()  # the stub's own signal to stop
                try:
                    stub.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if getattr(self, "ns", None) is not None:
                self.ns.close()  # TERM then KILL whatever is still inside
            for proc in [*self.procs, *([stub] if stub is not None else [])]:
                proc.wait()
                for stream in (proc.stdout, proc.stderr, proc.stdin):
                    if stream and not stream.closed:
                        stream.close()
        finally:
            for leftover in self._control_dir.glob("*"):
                leftover.unlink(missing_ok=True)
            self._control_dir.rmdir()

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ingest_owner(pid: int) -> bool:
    """Whether the process is a session's ingest owner (runtime/ingest/daemon.py)."""
    try:
        return b"orchestrator.runtime.ingest.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
