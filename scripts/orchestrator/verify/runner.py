"""What the verifier pseudo-agent runs: the project's test command on the checkout it is in.

    python -m orchestrator.verify.runner --spec '{"id": "V-3", "commit": "…", "command": null, "timeout": 600}'

It finds the test command (verify/command.py) unless the spec names one, runs it in its own
process group with a time limit, and writes:

    stderr   the command's own output, as it comes (stderr.log: `orch logs verifier --raw`)
    stdout   JSON lines for orch: {"type": "start"}, a {"type": "heartbeat"} every 20 s while
             the command is quiet, and one {"type": "result", "result": {…}} at the end

It exits 0 whenever it produced a result (failing tests are a result, not a crash).
The command can run confined like a read-level agent (it may write only its temp folder):
bytecode is not written (PYTHONDONTWRITEBYTECODE), pytest's cache is off
(-p no:cacheprovider in PYTEST_ADDOPTS), and the caches other test runners write — cargo's
target folder, Go's build cache, npm's cache — go to a folder under $TMPDIR.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .command import find_command
from .failures import FailureScanner

RUNNER = "orchestrator.verify.runner"  # this program, as `python -m` runs it (adapters/verify.py, check.py)
HEARTBEAT = 20.0
KILL_GRACE = 5.0
TAIL_LINES = 60
TAIL_CHARS = 3000
MAX_LIST_CHARS = 8000  # the result is read back from a 20 000-character final text: stay well under


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def scratch_dir(tree: Path) -> Path:
    """Where the command's caches go: under $TMPDIR (the one folder a confined run may write),
    one per checkout, kept between runs so a second run of a compiled project is faster."""
    key = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"orch-verify-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_env(base: dict[str, str], scratch: Path) -> dict[str, str]:
    """The command's environment: the user's own, writing nothing into the checkout or the home folder."""
    env = dict(base)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    addopts = env.get("PYTEST_ADDOPTS", "")
    if "no:cacheprovider" not in addopts:
        env["PYTEST_ADDOPTS"] = (addopts + " -p no:cacheprovider").strip()
    env["CARGO_TARGET_DIR"] = str(scratch / "cargo-target")
    env["GOCACHE"] = str(scratch / "go-build")
    env["npm_config_cache"] = str(scratch / "npm-cache")
    env["npm_config_update_notifier"] = "false"
    env.setdefault("CI", "true")  # test runners that would watch or prompt on a terminal run once
    return env


def canonical_names(tree: Path, names: list[str]) -> list[str]:
    """Each failing test named as pytest names it — `path/to/test_x.py::Class::test` — whatever
    printed it: unittest's dotted names depend on where discovery started (`-s tests` or not),
    and a name must not change between two runs for orch to tell a new failure from an old one."""
    py_files: list[str] = []
    for folder, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
        py_files += [os.path.relpath(os.path.join(folder, f), tree) for f in files if f.endswith(".py")]
        if len(py_files) > 20000:
            break
    out = []
    for name in names:
        if "::" in name or "/" in name or not re.fullmatch(r"[\w.]+( \(failed to import\))?", name):
            out.append(name)  # pytest's own, or a runner whose names are not Python's
            continue
        dotted, _, note = name.partition(" ")
        parts = dotted.split(".")
        found = name
        for i in range(len(parts), 0, -1):
            module = "/".join(parts[:i]) + ".py"
            path = next((f for f in py_files if f == module or f.endswith("/" + module)), None)
            if path is not None:
                found = "::".join([path, *parts[i:]]) + (f" {note}" if note else "")
                break
        out.append(found)
    return out


def test_files(names: list[str]) -> dict[str, str]:
    """The file of each failing test whose name says it."""
    return {n: n.split("::")[0].split(" ")[0] for n in names if n.split("::")[0].split(" ")[0].endswith(".py")}


def _cap(names: list[str]) -> tuple[list[str], int]:
    kept, used = [], 0
    for n in names:
        if used + len(n) > MAX_LIST_CHARS:
            break
        kept.append(n)
        used += len(n) + 4
    return kept, len(names) - len(kept)


def _stop_group(proc: subprocess.Popen) -> None:
    """TERM the command's process group, then KILL what is left after a grace."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if wait is None:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(argv: list[str], tree: Path, timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run the command, its output to our stderr; what happened (exit, time-out, failures, tail)."""
    scanner = FailureScanner()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return {"error": f"the test command {argv[0]!r} cannot run: {e.strerror or e}"}
    previous = signal.signal(signal.SIGTERM, lambda *_: (_stop_group(proc), sys.exit(143)))

    def pump() -> None:
        for raw in iter(proc.stdout.readline, b""):
            sys.stderr.buffer.write(raw)
            sys.stderr.buffer.flush()
            line = raw.decode("utf-8", errors="replace")
            scanner.feed(line)
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    while True:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            timed_out = True
            _stop_group(proc)
            break
        try:
            proc.wait(timeout=min(HEARTBEAT, left))
            break
        except subprocess.TimeoutExpired:
            emit({"type": "heartbeat", "seconds": round(time.monotonic() - started)})
    proc.wait()
    reader.join(timeout=10)
    signal.signal(signal.SIGTERM, previous)
    text = "\n".join(tail)
    return {"exit_code": proc.returncode, "timed_out": timed_out, "seconds": round(time.monotonic() - started, 2),
            "failing": scanner.failing, "first_error": scanner.first_error, "tail": text[-TAIL_CHARS:]}


def summary(result: dict[str, Any]) -> str:
    """One line for people (the agent's last text in status and the dashboard)."""
    commit = (result.get("commit") or "")[:12]
    if result.get("error"):
        return f"could not run the tests on {commit}: {result['error']}"
    if not result.get("command"):
        return f"no test command on {commit}: {result.get('source', '')}"
    cmd = " ".join(result["command"])
    if result.get("timed_out"):
        return f"`{cmd}` on {commit} ran past its time limit ({result.get('seconds', 0):.0f} s)"
    if result.get("exit_code") == 0:
        return f"tests passed on {commit}: `{cmd}` ({result.get('seconds', 0):.1f} s)"
    failing = result.get("failing") or []
    named = (f"{len(failing)} failing: {', '.join(failing[:3])}{' …' if len(failing) > 3 else ''}"
             if failing else f"exit {result.get('exit_code')}, no failing test named")
    return f"tests FAILED on {commit}: `{cmd}` — {named}"


def verify(spec: dict[str, Any], tree: Path) -> dict[str, Any]:
    """One verification: the command (given or found), run, read."""
    result: dict[str, Any] = {"id": spec.get("id"), "commit": spec.get("commit", "")}
    given = spec.get("command")
    if given:
        if not (isinstance(given, list) and all(isinstance(a, str) and a for a in given)):
            return result | {"error": "the [verify] command must be a list of strings (an argv, not a shell line)"}
        argv: Optional[list[str]] = list(given)
        source = "policy"
    else:
        argv, source = find_command(tree)
    result.update({"command": argv or [], "source": source})
    emit({"type": "start", "id": result["id"], "commit": result["commit"], "command": argv or [], "source": source})
    if not argv:
        return result
    try:
        timeout = float(spec.get("timeout") or 600)
    except (TypeError, ValueError):
        timeout = 600.0
    outcome = run_command(argv, tree, timeout, command_env(dict(os.environ), scratch_dir(tree)))
    result.update(outcome)
    if "failing" in result:
        result["failing"] = list(dict.fromkeys(canonical_names(tree, result["failing"])))
        result["files"] = test_files(result["failing"])
        result["failing"], result["more_failing"] = _cap(result["failing"])
        result["files"] = {k: v for k, v in result["files"].items() if k in result["failing"]}
    return result


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="orch-verify", description="run the project's tests for orch's verifier")
    ap.add_argument("--spec", required=True, help="the verification request (JSON)")
    args = ap.parse_args(argv)
    try:
        spec = json.loads(args.spec)
        if not isinstance(spec, dict) or not spec.get("id"):
            raise ValueError("not a verification request")
    except ValueError as e:
        # e.g. a "continue" prompt: the verifier has no conversation to continue
        result = {"error": f"not a verification request ({e})"}
    else:
        result = verify(spec, Path.cwd())
    result["summary"] = summary(result)
    emit({"type": "result", "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
