"""Every command against damaged and unwritable stores: one `orch:` line, never a traceback.

A small real session (one finished sim agent whose end is not yet ingested) is copied, the
copy damaged one way, and every command of commands.REGISTRY run against it. Whatever the
outcome, stderr is `orch: …` lines only, and a damaged file that a command only read is
left byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from orchestrator.commands import REGISTRY
from orchestrator.core.models import Agent
from orchtest import kill_agents_left, orch_argv, orch_env, run_orch, wait_until

SIM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


def _commands(agent: str, session: str, stdout: str) -> dict[str, tuple]:
    """Arguments for every registered command (None: it never touches this store)."""
    return {
        "abort": ("abort", agent), "allow": ("allow", agent), "audit": ("audit",), "budget": ("budget",),
        "check": ("check",), "clean": ("clean", session), "notify": ("notify",),
        "demo": None,  # works in a new folder of its own, never in this store
        "deny": ("deny", agent), "hook": ("hook", "stop"),
        "launch": ("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi"),
        "list": ("list",), "logs": ("logs", agent, "-n", "3"), "monitor": ("monitor", "--once"),
        "parse": ("parse", stdout, "--cli", "sim"), "pick": ("pick", "T-1", agent), "policy": ("policy", "show"),
        "report": ("report",), "resume": ("resume", session, "--time-limit", "1"), "retry": ("retry", "T-1"),
        "run": ("run", "a goal", *SIM, "--time-limit", "1"), "schema": ("schema", "agent-meta.schema.json"),
        "serve": ("serve", "--port", "0"), "sessions": ("sessions",), "start": ("start", "a goal", *SIM),
        "status": ("status",), "step": ("step",), "wait": ("wait", "--timeout", "0.3"),
        "land": ("land", session), "verify": ("verify", "--known-failure", "tests/test_a.py", "--why", "offline"),
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A workspace whose agent has finished; its end not yet ingested by any command."""
    ws = tmp_path_factory.mktemp("pristine") / "ws"
    ws.mkdir()
    env = {"ORCH_HOME": str(ws / ".orch")}
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hello", cwd=ws, env=env, check=True)
    record = next((ws / ".orch").glob("sessions/*/agents/worker-1")) / "run-1.json"
    wait_until(lambda: record.exists() and "exit_code" in json.loads(record.read_text()), what="the run's end")
    return ws


def _copy(pristine: Path, dest: Path) -> tuple[Path, Path]:
    ws = dest / "ws"
    shutil.copytree(pristine, ws, symlinks=True)
    return ws, next((ws / ".orch").glob("sessions/*"))


def _run_all(ws: Path, session: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    env = orch_env({"ORCH_HOME": str(ws / ".orch"), "ORCH_SIM_PACE": "0"})
    agent_dir = session / "agents" / "worker-1"
    table = _commands("worker-1", session.name, str(agent_dir / "stdout.jsonl"))
    assert set(table) == set(REGISTRY), "a command was added: give it arguments here"
    procs = {}
    for name, args in sorted(table.items()):  # all at once: they are built to run concurrently
        if args is None or name in skip:
            continue
        procs[name] = (args, subprocess.Popen(orch_argv(*args), cwd=ws, env=env, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, serving = {}, False
    for name, (args, proc) in procs.items():
        try:
            out, err = proc.communicate("{}", timeout=8 if name == "serve" else 120)
        except subprocess.TimeoutExpired:
            assert name == "serve", f"orch {name} hung"
            proc.kill()  # serving: it started fine (its banner is on stderr)
            out, err = proc.communicate()
            serving = True
        results[name] = (proc.returncode, err)
    for name, (code, err) in results.items():
        args = procs[name][0]
        assert "Traceback" not in err, f"orch {' '.join(args)}:\n{err}"
        lines = [line for line in err.splitlines() if line.strip()]
        if code == 0 or (name == "serve" and serving):
            continue  # it worked (some commands say what they did on stderr)
        assert all(line.startswith(("orch: ", "note: ")) for line in lines), f"orch {' '.join(args)}:\n{err}"
        if code not in (1, 3, 4):  # 1, 3, 4: check failing, stuck, time limit (their own reports)
            assert len(lines) == 1 and lines[0].startswith("orch: "), f"orch {' '.join(args)} exited {code}:\n{err}"
    return results


def _damage_case(name: str, session: Path) -> Path:
    """Damage one internal file; return it (checked unchanged when only read)."""
    d = session / "agents" / "worker-1"
    if name == "run-record-list":
        (d / "run-1.json").write_text("[1, 2]\n")
        return d / "run-1.json"
    if name == "run-record-bad-time":
        rec = json.loads((d / "run-1.json").read_text())
        rec["ended_at"] = "yesterday-ish"
        rec["started_at"] = 12
        (d / "run-1.json").write_text(json.dumps(rec))
        return d / "run-1.json"
    if name == "run-record-bad-fields":
        rec = json.loads((d / "run-1.json").read_text())
        rec.update(exit_code="zero", signal=[], pid="x", proc_start={"a": 1})
        (d / "run-1.json").write_text(json.dumps(rec))
        return d / "run-1.json"
    if name == "lock-record-bad-field":
        (d / ".lock").write_bytes(b'{"token": "t1", "events_size": "abc", "meta_bytes": []}\n{"id": 1}')
        return d / "meta.json"
    if name == "lock-record-garbage-meta":
        # The batch looks landed (its token is in the log) but the meta it carries is junk:
        # settling must not copy unchecked bytes over meta.json.
        token = uuid.uuid4().hex
        size = (session / "events.jsonl").stat().st_size
        with open(session / "events.jsonl", "a") as f:
            f.write(json.dumps({"ts": "2026-01-01T00:00:00Z", "kind": "decision", "data": {"ingest": token}}) + "\n")
        junk = b"\x00not json at all"
        header = json.dumps({"token": token, "events_size": size, "meta_bytes": len(junk)}).encode()
        (d / ".lock").write_bytes(header + b"\n" + junk)
        return d / "meta.json"
    if name == "meta-garbage":
        (d / "meta.json").write_bytes(b'{"id": "worker-1", "runs": [1, 2]')
        return d / "meta.json"
    if name == "session-garbage":
        (session / "session.json").write_bytes(b"\xff\xfe not a session")
        return session / "session.json"
    if name == "wait-cursor-garbage":
        (session / "wait.json").write_text('{"offset": "far"}')
        return session / "wait.json"
    if name == "events-garbage":
        with open(session / "events.jsonl", "ab") as f:
            f.write(b'{"kind": "nonsense", "ts": 5}\n[1,2]\n\xff\xfe\n')
        return session / "events.jsonl"
    raise AssertionError(name)


DAMAGES = ["run-record-list", "run-record-bad-time", "run-record-bad-fields", "lock-record-bad-field",
           "lock-record-garbage-meta", "meta-garbage", "session-garbage", "wait-cursor-garbage", "events-garbage"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_command_on_a_damaged_file_says_one_line(pristine, tmp_path, damage):
    ws, session = _copy(pristine, tmp_path)
    path = _damage_case(damage, session)
    before = path.read_bytes()
    _run_all(ws, session, skip=("run", "start", "launch", "resume", "serve") if damage != "meta-garbage" else ())
    if damage in ("meta-garbage", "session-garbage", "lock-record-garbage-meta", "lock-record-bad-field"):
        after = path.read_bytes()
        if damage.startswith("lock-record"):  # the ingest may update it, but never with the junk
            assert Agent.model_validate_json(after).id == "worker-1"
        else:
            assert after == before, f"{path.name} was rewritten"


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_every_command_on_a_read_only_store_says_one_line(pristine, tmp_path):
    ws, session = _copy(pristine, tmp_path)
    state = ws / ".orch"
    if not _mount("--bind", str(state), str(state)):
        pytest.skip("bind mounts are not permitted here")
    try:
        if not _mount("-o", "remount,ro,bind", str(state)):
            pytest.skip("read-only remounts are not permitted here")
        assert not os.access(state, os.W_OK) or _cannot_write(state)
        before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
        results = _run_all(ws, session)
        assert any(code == 2 for code, _ in results.values())  # writes were refused, and said so
        assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def _cannot_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def test_every_command_on_a_full_disk_says_one_line_and_keeps_every_file(pristine, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)):
        pytest.skip("tmpfs mounts are not permitted here")
    try:
        ws, session = _copy(pristine, disk)
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        state = ws / ".orch"
        before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file() and p.name != ".lock"}
        _run_all(ws, session, skip=("serve",))
        for p, data in before.items():  # every file still whole: the old content or a complete new one
            now = p.read_bytes()
            if p.suffix == ".json":
                json.loads(now)
            elif p.name == "events.jsonl":
                assert now.startswith(data) and now.endswith(b"\n")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---------------------------------------------------------------- odd records (issue 22, item 10)
def _one_agent_session(ws: Path) -> tuple[Path, str]:
    """A coordinated session whose architect finished its run, not yet harvested."""
    env = {"ORCH_HOME": str(ws / ".orch")}
    run_orch("start", "a goal", *SIM, cwd=ws, env=env, check=True)
    run_orch("step", cwd=ws, env=env, check=True)
    session = next((ws / ".orch").glob("sessions/*"))
    record = session / "agents" / "architect-1" / "run-1.json"
    wait_until(lambda: record.exists() and "exit_code" in json.loads(record.read_text()), what="the run's end")
    return session, "architect-1"


def test_a_meta_json_replaced_by_a_folder_is_never_written_over_nor_its_task_rerun(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    session, agent = _one_agent_session(ws)
    meta = session / "agents" / agent / "meta.json"
    meta.unlink()
    meta.mkdir()
    (meta / "keep").write_text("a person's file")
    env = {"ORCH_HOME": str(ws / ".orch")}
    for _ in range(2):
        step = run_orch("step", cwd=ws, env=env)
        assert step.returncode == 0 and "Traceback" not in step.stderr, step.stderr
        assert [line for line in step.stderr.splitlines() if line] == \
            [f"orch: skipped {meta} is not a file; restore it or move it aside"]
    assert meta.is_dir() and (meta / "keep").read_text() == "a person's file"
    assert not list(meta.parent.glob("run-2.json")) and list(session.glob("agents/*")) == [meta.parent]
    started = [json.loads(line) for line in (session / "events.jsonl").read_text().splitlines()]
    assert [e["task"] for e in started if e["kind"] == "agent.launched"] == ["T-1"]  # never started again
    check = run_orch("check", cwd=ws, env=env)
    assert f"{agent} (its meta.json is damaged)" in check.stdout
    assert f"Next: restore or move aside agents/{agent}/meta.json" in check.stdout
    launch = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi", cwd=ws, env=env)
    assert launch.returncode == 0 and meta.is_dir()


def test_a_malformed_denial_is_ignored(tmp_path):
    stream = tmp_path / "stdout.jsonl"
    stream.write_text(
        '{"type":"system","subtype":"init","session_id":"s1","model":"m"}\n'
        '{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1",'
        '"permission_denials":[{"tool_name":7,"tool_use_id":"t1","tool_input":{}},'
        '{"tool_use_id":"t3","tool_input":{"command":"x"}},'
        '{"tool_name":"Bash","tool_use_id":"t2","tool_input":{"command":"rm -rf x"}}]}\n')
    parsed = json.loads(run_orch("parse", "--cli", "claude", str(stream), "--json", check=True).stdout)
    assert [d["tool"] for d in parsed["denials"]] == ["Bash"]


def _children(pid: int, name: str) -> list[int]:
    """The live child processes of pid called name (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(") ")
        except OSError:
            continue
        if rest.split()[1] == str(pid) and head.endswith(f"({name}"):
            found.append(int(stat.parent.name))
    return found


def test_a_full_disk_when_a_run_ends_loses_no_exit_code(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)):
        pytest.skip("tmpfs mounts are not permitted here")
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        env = {"ORCH_HOME": str(disk / ".orch")}
        run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "wait [sim: silent=2]", cwd=ws, env=env,
                 check=True)
        record = next(disk.glob(".orch/sessions/*/agents/worker-1/run-1.json"))
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # the disk fills while the run goes on
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        supervisor = json.loads(record.read_text())["supervisor_pid"]
        # The run ends on the full disk: its supervisor cannot record the exit, and tries again
        # (a `sleep` of its own between tries) instead of giving up.
        wait_until(lambda: _children(supervisor, "sleep"), timeout=60, what="the supervisor to retry its record")
        assert "exit_code" not in json.loads(record.read_text())
        (disk / "filler").unlink()
        wait_until(lambda: "exit_code" in json.loads(record.read_text()), timeout=90, what="the exit recorded")
        assert json.loads(record.read_text())["exit_code"] == 0
        status = json.loads(run_orch("status", "worker-1", "--json", cwd=ws, env=env, check=True).stdout)
        # Judged by its real exit (0, having printed nothing), not as a run whose supervisor was lost.
        assert status["exit_code"] == 0 and "supervisor" not in status["reason"], status
    finally:
        kill_agents_left(disk / ".orch")
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_read_only_finished_session_can_still_be_read(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {"ORCH_HOME": str(ws / ".orch")}
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hello", cwd=ws, env=env, check=True)
    wait_until(lambda: "is done" in run_orch("step", cwd=ws, env=env).stdout, timeout=60, what="the task done")
    assert run_orch("report", cwd=ws, env=env).returncode == 0
    state = ws / ".orch"
    if not _mount("--bind", str(state), str(state)):
        pytest.skip("bind mounts are not permitted here")
    try:
        if not _mount("-o", "remount,ro,bind", str(state)):
            pytest.skip("read-only remounts are not permitted here")
        for args in (("list",), ("logs", "worker-1"), ("status", "--json"), ("wait", "--timeout", "1"), ("status",),
                     ("check",), ("sessions",)):
            proc = run_orch(*args, cwd=ws, env=env)
            assert proc.returncode == 0 and not proc.stderr.strip(), (args, proc.stderr)
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def test_the_dashboard_answers_damaged_session_files_with_one_line_of_json(tmp_path):
    import httpx
    from test_server_support import start_server

    ws = tmp_path / "ws"
    ws.mkdir()
    env = {"ORCH_HOME": str(ws / ".orch")}
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hello", cwd=ws, env=env, check=True)
    session = next((ws / ".orch").glob("sessions/*"))
    server = start_server(env=orch_env(env))
    try:
        sid = session.name
        events = session / "events.jsonl"
        saved = events.read_bytes()
        events.unlink()
        events.mkdir()  # a damaged log: a folder where the file was
        for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/events", f"/api/sessions/{sid}/events?from=0",
                     f"/api/sessions/{sid}/stream"):
            r = server.get(path)
            assert r.status_code == 500 and r.headers["content-type"] == "application/json", (path, r.text)
            assert r.json()["error"].startswith(f"{events}: Is a directory"), r.text
        events.rmdir()
        events.write_bytes(saved)
        (session / "session.json").write_bytes(b"\xff\xfe not a session")
        with httpx.stream("GET", server.api(f"/api/sessions/{sid}/stream"), timeout=10) as r:
            body = r.read().decode()
        assert "event: damaged" in body and "session.json is not a valid Session file" in body, body
        assert not [line for line in server.stderr_lines if "Traceback" in line], server.stderr_lines
    finally:
        server.stop()
