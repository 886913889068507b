"""The session's ingest owner: one process per session ingests while agents are live.

Its lifecycle with real processes and signals (started by the first launch, one owner
however many start it, started again by any command after a SIGKILL, gone once nothing is
live), that commands reading its state answer what a sync would, that `orch wait` leaves
agents' bytes to it and is woken by its batches, and the precise test of urgent lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter
from orchestrator.runtime.procs import is_same_process
from orchtest import kill_agents_left, orch_argv, orch_env, run_orch, wait_until
from test_crash_consistency import _check_session

DAEMON = "orchestrator.runtime.ingest.daemon"


@pytest.fixture(autouse=True)
def _no_agent_left_behind(workspace_dir):
    yield
    kill_agents_left(workspace_dir / ".orch")
    for pid in _owner_pids(under=workspace_dir):  # this test's owners: never another test's, nor a user's
        os.kill(pid, signal.SIGKILL)


def _session_dir(root: Path) -> Path:
    return next((root / "sessions").iterdir())


def _record(root: Path) -> dict:
    try:
        return json.loads((_session_dir(root) / "ingest.json").read_text())
    except (FileNotFoundError, StopIteration, ValueError):
        return {}


def _alive(record: dict) -> bool:
    return bool(record) and is_same_process(record.get("pid"), record.get("proc_start"))


def _owner_pids(session_dir: Path | None = None, under: Path | None = None) -> list[int]:
    """The ingest owner processes running (of one session, or of the sessions under a folder)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if DAEMON.encode() in argv and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") \
                and (session_dir is None or str(session_dir).encode() in argv) \
                and (under is None or any(a.startswith(str(under).encode() + b"/") for a in argv)):
            out.append(int(entry))
    return out


def _launch(prompt: str, env: dict | None = None) -> str:
    return run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", prompt, check=True,
                    env=env).stdout.split()[-1]


def test_the_first_launch_starts_one_owner_it_runs_as_recorded_and_ends_when_nothing_is_live(workspace_dir):
    root = workspace_dir / ".orch"
    _launch("work [sim: hang]")
    record = wait_until(lambda: _record(root).get("state") == "watching" and _record(root), what="a watching owner")
    assert _alive(record) and record["host"] == os.uname().nodename and record["window"] > 0
    assert _owner_pids(_session_dir(root)) == [record["pid"]]
    status = run_orch("status", check=True).stdout
    assert f"ingest: owner pid {record['pid']}" in status
    assert json.loads(run_orch("status", "--json", check=True).stdout)["ingest"]["running"] is True
    # The agent ends: the owner ingests its exit, then ends, having nothing left to do.
    run_orch("abort", "worker-1", check=True)
    ended = wait_until(lambda: _record(root).get("state") == "ended" and _record(root), timeout=60,
                       what="the owner to end")
    assert ended["reason"] == "nothing live" and ended["pid"] == record["pid"]
    wait_until(lambda: not is_same_process(record["pid"], record["proc_start"]), what="the owner's exit")
    meta = json.loads(next(root.glob("sessions/*/agents/worker-1/meta.json")).read_text())
    assert meta["state"] == "aborted" and meta["runs"][0]["ended_at"]
    # Whichever of the owner and `orch abort` ingested the end, the reason is the command's.
    assert meta["state_reason"] == "aborted on request" and meta["runs"][0]["note"] == "aborted on request"
    assert "ingest:" not in run_orch("status", check=True).stdout  # settled: nothing to say


def test_a_file_the_agent_names_relative_to_its_folder_is_recorded_so_whoever_ingests_it(workspace_dir):
    """The ingest owner runs in the session folder; a file an agent's CLI names relative to
    the agent's own folder is that folder's file in files_changed, as when a command ingests."""
    root = workspace_dir / ".orch"
    standin = Path(__file__).resolve().parents[1] / "bench" / "standin_claude.py"
    run_orch("launch", "--cli", "claude", "--role", "worker", "--prompt", "stream rate=20 seconds=1",
             check=True, env={"ORCH_CLAUDE_BIN": str(standin)})
    wait_until(lambda: _record(root).get("state") == "ended", timeout=60, what="the owner to ingest it all and end")
    meta = json.loads(next(root.glob("sessions/*/agents/worker-1/meta.json")).read_text())
    assert meta["state"] == "idle" and meta["stats"]["tool_calls"] >= 3, meta["state"]  # finished, not yet collected
    assert meta["stats"]["files_changed"] == ["src/textutils/parse.py"]  # the stand-in's Edit target
    assert meta["runs"][0]["files_changed"] == ["src/textutils/parse.py"]
    assert not any(t[0] for t in meta["ingest"]["parser_state"].get("tools", []))  # every call answered


def test_one_owner_however_many_commands_start_one_at_once(workspace_dir):
    root = workspace_dir / ".orch"
    _launch("work [sim: hang]")
    first = wait_until(lambda: _alive(_record(root)) and _record(root), what="the owner")
    os.kill(first["pid"], signal.SIGKILL)
    wait_until(lambda: not _alive(first), what="the owner's death")
    session_dir = _session_dir(root)
    # Six commands find it gone at once, and three owners are started by hand besides.
    commands = [subprocess.Popen(orch_argv("status"), env=orch_env({"ORCH_FULL_PATH": "1"}), cwd=workspace_dir,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(6)]
    starters = [subprocess.Popen([sys.executable, "-m", DAEMON, str(session_dir)], env=orch_env(), cwd=session_dir,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(3)]
    for p in commands:
        assert p.wait(timeout=120) == 0
    # One owner runs, and it is the one recorded; every other starter has left.
    second = wait_until(lambda: _alive(_record(root)) and _record(root).get("state") == "watching" and _record(root),
                        what="a new owner")
    wait_until(lambda: _owner_pids(session_dir) == [second["pid"]], what="exactly one owner process")
    assert second["pid"] != first["pid"]
    for p in starters:
        if p.pid != second["pid"]:
            assert p.wait(timeout=60) == 0  # the election lost: left at once, quietly


def test_a_sigkilled_owner_is_started_again_by_the_next_command_and_loses_nothing(workspace_dir):
    root = workspace_dir / ".orch"
    agent = _launch("stream [sim: lines=300 interval=0.02]")
    first = wait_until(lambda: _alive(_record(root)) and _record(root), what="the owner")
    out = root / "sessions" / _session_dir(root).name / "agents" / agent / "stdout.jsonl"
    wait_until(lambda: out.exists() and out.stat().st_size > 2000, what="some output")
    os.kill(first["pid"], signal.SIGKILL)
    run_orch("list", check=True)  # finds the owner gone while the agent streams: starts one
    second = wait_until(lambda: _alive(_record(root)) and _record(root), what="a new owner")
    assert second["pid"] != first["pid"]
    # The new owner carries the ingest to the end; every line is in the log exactly once.
    wait_until(lambda: _record(root).get("state") == "ended", timeout=120, what="the run's end")
    _check_session(_session_dir(root))  # against a fresh parse of the raw output: nothing lost, nothing twice
    texts = [e for e in _events(root) if e["kind"] == "agent.output" and e["data"].get("kind") == "text"]
    assert len(texts) == len({e["data"]["text"] for e in texts}) > 300


def _events(root: Path) -> list[dict]:
    return [json.loads(line) for line in (_session_dir(root) / "events.jsonl").read_text().splitlines() if line]


def _stable(text: str) -> str:
    """Output with the clock taken out (ages, waited time, seconds to a due time)."""
    text = re.sub(r"\d+(h\d+m|m\d+s|s) ago", "AGO", text)
    text = re.sub(r"after [0-9.]+ s", "after T s", text)
    text = re.sub(r"\(in \d+ s\)", "(in T s)", text)
    return re.sub(r'"(waited_seconds|seconds_since_activity|in_seconds)": [0-9.e-]+', r'"\1": T', text)


def test_reads_while_the_owner_runs_answer_what_a_sync_and_the_full_commands_answer(workspace_dir):
    root = workspace_dir / ".orch"
    for _ in range(3):
        _launch("work [sim: hang]")
    wait_until(lambda: _record(root).get("state") == "watching", what="the owner")
    session_dir = _session_dir(root)
    wait_until(lambda: all(json.loads(m.read_text())["state"] == "running"
                           for m in session_dir.glob("agents/*/meta.json")), what="three running agents")
    cursor = session_dir / "wait.json"
    run_orch("wait", "--timeout", "0")  # the launches are told; from here nothing changes
    told = cursor.read_bytes()
    for argv in (["status"], ["list"], ["check"], ["wait", "--timeout", "0.2"], ["wait", "--timeout", "0.2", "--json"]):
        answers = []
        for env in ({}, {"ORCH_FULL_PATH": "1"}, {"ORCH_FULL_PATH": "1", "ORCH_INGEST_OWNER": "off"}):
            cursor.write_bytes(told)
            proc = subprocess.run(orch_argv(*argv), env=orch_env(env), cwd=workspace_dir, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode in (0, 1) and proc.stdout, proc.stderr
            answers.append((proc.returncode, _stable(proc.stdout).replace("by each command (ORCH_INGEST_OWNER is off)",
                                                                          "OWNER").split("\ningest:")[0]))
        assert answers[0] == answers[1] == answers[2], argv
    # The fast paths took them: neither pydantic nor click was loaded, nor typing (unless the
    # interpreter loads it anyway); a wait that never sleeps holds no inotify watch (no ctypes).
    bare = _imported(workspace_dir, "-c", "pass")
    for argv in (["status"], ["list"], ["check"], ["wait", "--timeout", "0"]):
        modules = _imported(workspace_dir, "-m", "orchestrator", *argv)
        assert not {"pydantic", "click", "watchdog"} & modules, (argv, sorted(modules)[:30])
        assert "typing" not in modules - bare, argv
    assert "orchestrator.runtime.inotify" not in _imported(workspace_dir, "-m", "orchestrator", "wait", "--timeout", "0")


def _imported(ws: Path, *args: str) -> set[str]:
    """The modules a Python process run in ws with these arguments imports (-X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], env=orch_env(), cwd=ws,
                          capture_output=True, text=True, timeout=120)
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_the_advice_to_wait_names_a_few_working_agents_and_counts_the_rest(workspace_dir):
    """A conductor reads the "Next:" line after every wait: with many agents working it names six
    and counts the rest (a hundred names would be most of the digest), and it still runs as it is."""
    root = workspace_dir / ".orch"
    for _ in range(8):
        _launch("work [sim: hang]")
    session_dir = _session_dir(root)
    wait_until(lambda: [json.loads(m.read_text())["state"] for m in session_dir.glob("agents/*/meta.json")]
               == ["running"] * 8, what="eight running agents")
    for argv in (["wait", "--timeout", "0"], ["check"]):
        for env in ({}, {"ORCH_FULL_PATH": "1"}):  # the fast path and the full command say the same
            out = run_orch(*argv, env=env).stdout
            advice = next(line for line in out.splitlines() if "agents are working" in line)
            assert advice.endswith("agents are working: worker-1, worker-2, worker-3, worker-4, worker-5, worker-6 "
                                   "and 2 more"), out
    command = advice[advice.index("orch "):].split("#")[0].split()  # after "Next:" (check) or "- " (wait)
    assert command[:2] == ["orch", "wait"]
    waiting = subprocess.Popen(orch_argv(*command[1:], "--json"), env=orch_env(), cwd=workspace_dir,
                               stdout=subprocess.PIPE, text=True)  # followed as it is
    wait_until(lambda: waiting.poll() is not None or (session_dir / "wait.json").exists() and _sleeping(waiting.pid),
               what="the advised wait to sleep")
    run_orch("abort", "worker-8", check=True)
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and any("worker-8" in line for line in json.loads(out)["happened"]), out


SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]


def _same_settled_wait(ws: Path, why: str) -> None:
    """`orch wait --timeout 0` on a session with nothing live: its fast path answers, from the
    same cursor, what the full command answers (text and JSON, the cursor it leaves), and
    imports neither pydantic nor click."""
    session_dir = _session_dir(ws / ".orch")
    cursor = session_dir / "wait.json"
    run_orch("wait", "--timeout", "0", check=True)  # what happened is told; the quiet state is not yet
    told = json.dumps({**json.loads(cursor.read_text()), "told_at": -1}).encode()
    for argv in (["wait", "--timeout", "0"], ["wait", "--timeout", "0", "--json"]):
        answers = []
        for env in ({}, {"ORCH_FULL_PATH": "1"}):
            cursor.write_bytes(told)
            proc = subprocess.run(orch_argv(*argv), env=orch_env(env), cwd=ws, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0 and proc.stdout and "Traceback" not in proc.stderr, proc.stderr
            left = {k: v for k, v in json.loads(cursor.read_text()).items() if k != "at"}
            answers.append((_stable(proc.stdout), left))
            printed = proc.stdout
        assert answers[0] == answers[1], (argv, answers)
    assert json.loads(printed)["woke"]["why"] == why, printed
    cursor.write_bytes(told)
    assert not {"pydantic", "click"} & _imported(ws, "-m", "orchestrator", "wait", "--timeout", "0"), why  # fast path


def test_a_settled_sessions_wait_is_answered_by_the_fast_path_as_the_full_command_answers(tmp_path, monkeypatch):
    """Nothing live: the criteria hold, a step has work, a person must decide, the session has
    ended, or a due time lies ahead — the fast path says what the full wait says, at once."""
    def workspace(name: str) -> Path:
        ws = tmp_path / name
        ws.mkdir()
        monkeypatch.chdir(ws)
        monkeypatch.setenv("ORCH_HOME", str(ws / ".orch"))
        return ws

    def settled(ws: Path) -> None:
        wait_until(lambda: _record(ws / ".orch").get("state") == "ended", timeout=120, what="the owner's end")

    # An agent launched by hand has finished: a step collects its task; then every criterion holds.
    ws = workspace("done")
    _launch("quick [sim: lines=3 interval=0.01]")
    settled(ws)
    _same_settled_wait(ws, "work")
    run_orch("step", check=True)
    _same_settled_wait(ws, "done")
    run_orch("report", check=True)  # finalized: the session has ended
    _same_settled_wait(ws, "ended")
    # The architect has written its specification: the next step has work (harvest, assign).
    ws = workspace("work")
    run_orch("start", "Build a small text utilities library", *SIM_TEAM, check=True)
    run_orch("step", check=True)
    settled(ws)
    _same_settled_wait(ws, "work")
    # A usage limit parks the implementer 300 s: a due time ahead, nothing to say yet.
    ws = workspace("parked")
    (ws / ".orch").mkdir()
    (ws / ".orch" / "policy.toml").write_text("[limits]\nlimit_grace_seconds = 0\n")
    run_orch("start", "Build a small text utilities library [sim@implementer: limit=300 runs=1]", *SIM_TEAM,
             check=True)
    for _ in range(6):
        run_orch("step", check=True)
        if any(json.loads(m.read_text())["state"] == "parked" for m in _session_dir(ws / ".orch").glob("agents/*/meta.json")):
            break
        run_orch("wait", "--timeout", "30", check=True)
    settled(ws)
    run_orch("wait", "--timeout", "0", check=True)  # tells the park; from here only the clock is ahead
    _same_settled_wait(ws, "timeout")
    run_orch("abort", "--all", check=True)  # its agents aborted: the step starts the others' tasks
    _same_settled_wait(ws, "work")
    # The architect's tokens pass the budget: the step pauses the session, and a person decides.
    ws = workspace("paused")
    (ws / ".orch").mkdir()
    (ws / ".orch" / "policy.toml").write_text("[budget]\nsession_tokens = 100\n")
    run_orch("start", "Build a small text utilities library", *SIM_TEAM, check=True)
    run_orch("step", check=True)
    settled(ws)
    run_orch("step", check=True)
    assert json.loads((_session_dir(ws / ".orch") / "session.json").read_text())["state"] == "paused"
    _same_settled_wait(ws, "decision")


def _sleeping(pid: int) -> bool:
    """The process is asleep in a wait (its state in /proc is S)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"
    except (OSError, IndexError):
        return False


def _watches(pid: int) -> list[str]:
    """The inotify watches a process holds (its fdinfo lines)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            out += [line for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                    if line.startswith("inotify wd:")]
        except OSError:
            continue
    return out


def test_wait_watches_only_the_owners_batches_and_returns_on_a_denial(workspace_dir):
    root = workspace_dir / ".orch"
    agent = _launch("work [sim: hang]")
    streamer = _launch("stream [sim: lines=100000 interval=0.01]")
    wait_until(lambda: _record(root).get("state") == "watching", what="the owner")
    run_orch("wait", "--timeout", "0")
    waiter = subprocess.Popen(orch_argv("wait", "--timeout", "60", "--json"), env=orch_env(), cwd=workspace_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watches = wait_until(lambda: _watches(waiter.pid), what="the waiter's watch")
    # One watch, on the session folder, for files replaced or created there: no agent folder,
    # no appends — an agent streaming 100 lines a second never wakes it.
    assert len(watches) == 1, watches
    mask = int(re.search(r"mask:([0-9a-f]+)", watches[0]).group(1), 16)
    assert mask & 0x2 == 0  # no IN_MODIFY
    time.sleep(1.0)  # (a second of streaming the waiter sleeps through; not a synchronisation)
    assert waiter.poll() is None
    stdout = _session_dir(root) / "agents" / agent / "stdout.jsonl"
    with open(stdout, "ab") as f:
        f.write(json.dumps({"type": "system", "subtype": "permission_denied", "tool_name": "Bash",
                            "tool_use_id": "toolu_t1", "message": "This command requires approval"}).encode() + b"\n")
    out, err = waiter.communicate(timeout=60)
    digest = json.loads(out)
    assert any(f"{agent} was denied" in h for h in digest["happened"]), digest["happened"]
    assert not any(streamer in h for h in digest["happened"])
    run_orch("abort", "--all", check=True)


def test_urgent_lines_are_told_by_their_keys_not_by_words_in_a_tool_result():
    claude = get_adapter("claude")
    quiet = {"type": "user", "message": {"role": "user", "content": [
        {"tool_use_id": "t1", "type": "tool_result", "content": "0 errors, 2 failed permission checks", "is_error": False}]},
        "tool_use_result": {"stdout": "error: nothing"}}
    assert not claude.urgent_bytes("stdout", json.dumps(quiet).encode() + b"\n")
    assert not claude.urgent_bytes("stdout", json.dumps({"type": "assistant", "message": {"content": [
        {"type": "text", "text": 'I saw "type": "result" and "is_error": true in the log'}]}}).encode())
    refused = dict(quiet, message={"role": "user", "content": [
        {"tool_use_id": "t1", "type": "tool_result", "content": "This command requires approval", "is_error": True}]})
    for line in (refused, {"type": "system", "subtype": "permission_denied"}, {"type": "result", "is_error": False},
                 {"type": "rate_limit_event", "rate_limit_info": {}}, {"type": "system", "subtype": "init"}):
        assert claude.urgent_bytes("stdout", json.dumps(line).encode()), line
    assert claude.urgent_bytes("stderr", b"Error: invalid API key\n")
    # A CLI without a shape of its own: the words, but a tool that worked is no error.
    codex = get_adapter("codex")
    assert not codex.urgent_bytes("stdout", b'{"type":"item.completed","item":{"is_error":false,"text":"ok"}}\n')
    assert codex.urgent_bytes("stdout", b'{"type":"turn.completed"}\n')
    assert get_adapter("sim").urgent_bytes("stdout", json.dumps(refused).encode())  # as the CLI it speaks


def test_a_bad_window_setting_is_one_line_and_no_owner(workspace_dir):
    proc = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hello",
                    env={"ORCH_INGEST_WINDOW": "soon"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("orch: ORCH_INGEST_WINDOW"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_fast_read_queues_the_notifications_of_what_the_owner_ingested(workspace_dir):
    # Notifications are a reader of the log (notify/consumer.py), run by every full command as
    # it ends: a fast read of a session whose owner ingested an exit must do the same, or a
    # conductor that only reads would leave a person untold.
    root = workspace_dir / ".orch"
    _launch("work [sim: hang]")
    wait_until(lambda: _record(root).get("state") == "watching", what="the owner")
    quick = _launch("quick [sim: lines=3 interval=0.01]")
    session_dir = _session_dir(root)
    wait_until(lambda: json.loads((session_dir / "agents" / quick / "meta.json").read_text())["state"]
               not in ("starting", "running", "silent"), what="the owner to ingest the quick agent's exit")
    events = session_dir / "events.jsonl"
    told = json.loads((session_dir / "notify.json").read_text())["events_offset"]
    exits = [json.loads(line) for line in events.read_bytes()[told:].splitlines() if b'"agent.exited"' in line]
    assert exits, "the exit was told before the owner ingested it"
    proc = run_orch("status")
    assert proc.returncode == 0 and "ingest: owner pid" in proc.stdout, proc.stderr
    assert json.loads((session_dir / "notify.json").read_text())["events_offset"] == events.stat().st_size > told


def _scan_as_the_full_wait(events_path: Path, **kw) -> tuple[int, list[str], list]:
    """fastwait._scan over the whole log, asserted equal to what the full wait makes of it
    (EventScan's end and events, counted by kind; is_meaningful's, described); returns
    (end, hits, the full wait's events)."""
    from orchestrator.core.meaningful import is_meaningful
    from orchestrator.fastwait import _scan
    from orchestrator.store.event_scan import EventScan
    from orchestrator.views.digest import describe

    counts: dict[str, int] = {}
    hits: list[str] = []
    end, more = _scan(events_path, 0, counts, hits, 0, **kw)
    scan = EventScan(events_path)
    full = [e for _, e in scan]
    assert end == scan.end and more == 0
    want: dict[str, int] = {}
    for e in full:
        want[e.kind.value] = want.get(e.kind.value, 0) + 1
    assert counts == want
    assert hits == [describe(e) for e in full if is_meaningful(e)]
    return end, hits, full


def test_the_fast_wait_counts_plain_progress_from_its_head_and_judges_the_rest_as_the_full_wait(tmp_path):
    """fastwait._scan counts a line that wakes no one without parsing it; what it counts and
    what it tells must be what the full wait's EventScan and is_meaningful make of the log."""
    from orchestrator.core.models import Event, EventKind
    from orchestrator.store.sessions import Workspace

    store = Workspace(tmp_path / ".orch").create(tmp_path)
    out = EventKind.AGENT_OUTPUT
    events = [
        Event(kind=out, agent="w-1", data={"kind": "text", "text": 'says "kind":"denial" in its text'}),
        Event(kind=out, agent="w-1", data={"kind": "denial", "tool": "Bash"}, reason="Bash was denied"),
        Event(kind=out, agent="w-2", data={"kind": "tool_call", "tool": "Read", "raw": {"kind": "error"}}),
        Event(kind=out, agent="w-2", data={"kind": "error", "message": "boom"}),
        Event(kind=EventKind.AGENT_STATE, agent="w-1", data={"from": "starting", "to": "running"}),
        Event(kind=EventKind.AGENT_STATE, agent="w-2", data={"from": "running", "to": "denied"}),
        Event(kind=EventKind.TASK_FINISHED, agent="w-1", task="T-1", data={"outcome": "done"}),
        Event(kind=EventKind.DECISION, reason="a note of the coordinator's"),
    ] * 3
    store.append_events(events)
    with open(store.events_path, "ab") as f:  # a line torn by a crash, then a line being written
        f.write(b'{"ts":"2026-12-07T00:00:00Z","kind":"agent.outp\n{"ts":"2026-12-07T00:00:01Z","kind":"decis')
    end, hits, full = _scan_as_the_full_wait(store.events_path)
    assert len(hits) == 3 * 4


@pytest.mark.parametrize("chunk", [97, 1000, 1 << 16])
def test_the_fast_wait_counts_a_stretch_of_plain_progress_at_once_and_judges_the_rest_as_the_full_wait(
        tmp_path, chunk):
    """_scan reads the log a stretch at a time: a stretch of plain progress is counted from
    its heads at once, a stretch with anything else (a waking event, a blank or torn line, a
    line longer than the stretch) line by line. Whatever the stretch size, the counts, the
    hits and the end are what EventScan and is_meaningful make of the log."""
    from orchestrator.core.models import Event, EventKind
    from orchestrator.fastwait import _scan
    from orchestrator.store.sessions import Workspace

    store = Workspace(tmp_path / ".orch").create(tmp_path)
    out = EventKind.AGENT_OUTPUT
    plain = [Event(kind=out, agent=f"w-{i % 7}", data={"kind": "text", "text": f"step {i} " + "x" * (i % 50)})
             for i in range(300)]
    plain += [Event(kind=EventKind.AGENT_STATE, agent="w-1", data={"from": "starting", "to": "running"})]
    waking = [Event(kind=out, agent="w-2", data={"kind": "denial", "tool": "Bash"}, reason="Bash was denied"),
              Event(kind=EventKind.AGENT_EXITED, agent="w-3", data={"exit_code": 0}),
              Event(kind=EventKind.AGENT_STATE, agent="w-4", data={"from": "running", "to": "idle"})]
    store.append_events(plain)
    store.append_events([Event(kind=out, agent="w-5", data={"kind": "text", "text": "long " + "y" * 3000})])
    store.append_events(plain[:40] + waking[:1] + plain[40:])
    with open(store.events_path, "ab") as f:
        f.write(b"\n")  # a blank line, as a hand edit leaves
    store.append_events(plain + waking[1:] + plain)
    with open(store.events_path, "ab") as f:  # a line torn by a crash, then more, then a line being written
        f.write(b'{"ts":"2026-12-07T00:00:00Z","kind":"agent.outp\n')
    store.append_events(plain[:100])
    with open(store.events_path, "ab") as f:
        f.write(b'{"ts":"2026-12-07T00:00:01Z","kind":"decis')
    end, hits, full = _scan_as_the_full_wait(store.events_path, chunk=chunk)
    assert len(full) > 1000 and len(hits) == 3
    counts2: dict[str, int] = {}
    end2, _ = _scan(store.events_path, end, counts2, [], 0, chunk=chunk)  # from where it stopped: nothing new
    assert end2 == end and counts2 == {}
