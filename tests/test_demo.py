"""`orch demo` in the temporary folder: where it is, the older demo folders it clears, and
`orch demo --serve`, its own live dashboard (a real demo, a real server, real signals)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from orchtest import orch_argv, orch_env, wait_until


def _old_demo(tmp: Path, name: str, age: float, with_state: bool = True) -> Path:
    """A demo folder as an earlier `orch demo` left it, last written `age` seconds ago."""
    d = tmp / name
    log = d / ".orch" / "sessions" / "20260101-000000-abcd" / "events.jsonl"
    if with_state:
        log.parent.mkdir(parents=True)
        log.write_text("{}\n")
    else:
        d.mkdir()
    for p in [log, d] if with_state else [d]:
        os.utime(p, (time.time() - age, time.time() - age))
    return d


def test_a_served_demo_shows_its_dashboard_and_clears_all_but_the_newest_demo_folders(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # three demos written to moments ago (running, maybe), two from hours ago, and a folder that
    # only looks like one (no orch state in it)
    recent = [_old_demo(tmp, f"orch-demo-recent{i}", age=10 * (i + 1)) for i in range(3)]
    old = [_old_demo(tmp, f"orch-demo-old{i}", age=3600 * (i + 1)) for i in range(2)]
    not_a_demo = _old_demo(tmp, "orch-demo-notes", age=3600 * 9, with_state=False)
    proc = subprocess.Popen(orch_argv("demo", "--serve"), cwd=tmp_path, env=orch_env({"TMPDIR": str(tmp)}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: "queue.Queue[str]" = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def line_starting(prefix: str) -> str:
        while True:
            line = lines.get(timeout=240)
            seen.append(line)
            if line.startswith(prefix):
                return line

    try:
        removed = line_starting("removed ")
        link = line_starting("dashboard: ").split(": ", 1)[1].strip()
        assert "#token=" in link
        base = link.split("#")[0].split("?")[0]
        sessions = wait_until(lambda: httpx.get(f"{base}api/sessions", timeout=10).json(), what="the demo's session")
        assert len(sessions) == 1  # the demo's own folder: its session, nothing of this workspace
        line_starting("the dashboard stays up at ")
        assert httpx.get(f"{base}api/sessions", timeout=10).json()[0]["state"] == "complete"
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(seen) + proc.stdout.read()
    assert proc.returncode == 0, out + proc.stderr.read()
    # The three newest demos are kept (this one and the two before it); a third written to a
    # moment ago may still be running, and a folder without orch's state is not a demo: they stay.
    assert "removed 2 older demo folder(s)" in removed
    assert all(d.exists() for d in recent) and not any(d.exists() for d in old) and not_a_demo.exists()
    workspace = next(line for line in out.splitlines() if line.startswith("workspace: ")).split(": ", 1)[1]
    assert Path(workspace).parent == tmp and Path(workspace).is_dir()
    assert "this demo's folder stays until a later demo removes it" in out
    assert "look around: cd " + workspace in out
    wait_until(lambda: _refused(base), what="the demo's dashboard to stop with it")


def _refused(base: str) -> bool:
    try:
        httpx.get(f"{base}api/sessions", timeout=2)
    except httpx.TransportError:
        return True
    return False
