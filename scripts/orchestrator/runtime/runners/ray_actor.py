"""The node's side of a Ray-placed run: one actor per run, holding one CLI process.

The actor checks the shipped commit out into a scratch folder on its node, runs the CLI
there under the same rules as supervise.sh (own session and process group, stdin closed,
stdout and stderr appended to files), and serves the output by byte offset: a reader that
asks again from the same offset gets the same bytes, so a restarted pump neither loses
nor duplicates any. The node's own environment (its CLI logins) is the CLI's; orch adds
only the variables it was told to forward. The run's kernel ceiling, when orch sends one,
is applied here as supervise.sh's wrapper applies it on orch's machine (runtime/ceiling.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ..ceiling import ENV_NAME, Ceiling, wrap_command
from .git_ship import check_out, commit_and_bundle

CHUNK = 1 << 20  # at most this many bytes per stream per poll


class AgentRun:
    """One run of an agent's CLI on this node (used as a Ray actor by ray_pump)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.dir: Optional[Path] = None
        self.base = ""
        self.exit_code: Optional[int] = None
        self.signal: Optional[int] = None
        self.ended = threading.Event()

    def start(self, argv: list[str], env: dict[str, str], bundle: bytes, ref: str, relpath: str) -> dict:
        """Check out and start the CLI (once: a second call only says where it runs)."""
        if self.proc is None:
            self.dir = Path(tempfile.mkdtemp(prefix="orch-run-"))
            (self.dir / "in.bundle").write_bytes(bundle)
            self.base = check_out(self.dir / "in.bundle", ref, self.dir / "work")
            cwd = self.dir / "work" / relpath
            cwd.mkdir(parents=True, exist_ok=True)
            env = dict(env)
            full_env = {**os.environ, **env}
            argv = self._confined(argv, env.pop(ENV_NAME, None), full_env)
            full_env.pop(ENV_NAME, None)
            with open(self.dir / "stdout", "ab") as out, open(self.dir / "stderr", "ab") as err:
                self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err, start_new_session=True, close_fds=True)
            threading.Thread(target=self._wait, daemon=True).start()
        return self.where()

    def _confined(self, argv: list[str], ceiling_json: Optional[str], env: dict[str, str]) -> list[str]:
        """The CLI's command under the run's ceiling, applied here: the writable folder is this
        node's checkout (the local worktree and extra folders do not exist here), the state
        folders are the node's CLI's, the private temp folder is inside the scratch folder."""
        if not ceiling_json:
            return argv
        ceiling = replace(Ceiling.from_json(ceiling_json), roots=(str(self.dir / "work"),))
        return wrap_command(ceiling, argv, env, "run", tmp_base=str(self.dir)).argv

    def _wait(self) -> None:
        code = self.proc.wait()
        # As the shell reports it: a signal N is exit code 128+N.
        self.exit_code, self.signal = (128 - code, -code) if code < 0 else (code, None)
        self.ended.set()

    def where(self) -> dict:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "pid": self.proc.pid if self.proc else None,
                "host": os.uname().nodename}

    def poll(self, out_offset: int, err_offset: int, wait: float) -> dict:
        """Output past the offsets (waiting up to `wait` s for some), and the exit once all is read."""
        deadline = time.monotonic() + wait
        while True:
            ended = self.ended.is_set()  # before reading: everything written before the exit is then read
            out, err = self._read("stdout", out_offset), self._read("stderr", err_offset)
            if out or err or ended or time.monotonic() >= deadline:
                drained = ended and len(out) < CHUNK and len(err) < CHUNK
                return {"out": out, "err": err, "exit_code": self.exit_code if drained else None,
                        "signal": self.signal if drained else None, "ended": drained,
                        **({"streams": {n: self._digest(n) for n in ("stdout", "stderr")}} if drained else {})}
            time.sleep(0.02)

    def _read(self, name: str, offset: int) -> bytes:
        try:
            with open(self.dir / name, "rb") as f:
                f.seek(offset)
                return f.read(CHUNK)
        except (FileNotFoundError, TypeError):
            return b""

    def _digest(self, name: str) -> dict:
        """The whole stream's size, lines and sha256, to check the copy against (the ingest masks
        secrets in the copy byte for byte, so its size and lines stay those of the original)."""
        h, size, lines = hashlib.sha256(), 0, 0
        try:
            with open(self.dir / name, "rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    h.update(block)
                    size += len(block)
                    lines += block.count(b"\n")
        except FileNotFoundError:
            pass
        return {"bytes": size, "lines": lines, "sha256": h.hexdigest()}

    def stop(self, grace: float) -> str:
        """TERM the CLI's process group, then KILL it after grace seconds."""
        if self.proc is None or self.ended.is_set():
            return "already-gone"
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return "terminated"
            if self.ended.wait(wait):
                return "terminated" if sig == signal.SIGTERM else "killed"
        return "killed"

    def result(self, author: str) -> Optional[bytes]:
        """The run's new commits as a bundle (what the CLI changed, committed), or None."""
        out = self.dir / "out.bundle"
        if not out.is_file() and not commit_and_bundle(self.dir / "work", self.base, author, out):
            return None
        return out.read_bytes()

    def finish(self) -> None:
        """The pump has everything: remove the scratch folder."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
