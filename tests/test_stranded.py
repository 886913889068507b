"""No state strands a session: from wherever it stands, the command orch advises works and leads on.

Each test drives real `orch` processes and real sim agents into a state that used to strand a
session — agents aborted, a hand-launched agent beside the coordinated team, a launch racing
a step, the round limit, a failed task retried, a kill between an assignment and its start,
a run whose CLI never started — and then follows what orch says to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


from orchtest import orch_argv, orch_env, run_orch, wait_until

SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
SLOW = {"ORCH_SIM_PACE": "0.05"}


def _session_dir(workspace: Path) -> Path:
    return next((workspace / ".orch" / "sessions").iterdir())


def _session(workspace: Path) -> dict:
    return json.loads((_session_dir(workspace) / "session.json").read_text())


def _events(workspace: Path) -> list[dict]:
    return [json.loads(line) for line in (_session_dir(workspace) / "events.jsonl").read_text().splitlines()]


def _task(workspace: Path, task_id: str) -> dict:
    return next(t for t in _session(workspace)["tasks"] if t["id"] == task_id)


def _meta(workspace: Path, agent: str) -> dict:
    return json.loads((_session_dir(workspace) / "agents" / agent / "meta.json").read_text())


def _next(text: str) -> str:
    """The command a `Next: …` line advises, without its comment."""
    found = re.findall(r"(?m)(?:^Next: |— next: )(orch [^#\n]*)", text)
    assert found, text
    return found[-1].strip()


def _stepped_to_completion() -> bool:
    """One turn of the conductor's cycle: done when the criteria hold, else a step."""
    if run_orch("check").returncode == 0:
        return True
    run_orch("step", check=True)
    return False


def _follow(advice: str, **kw) -> subprocess.CompletedProcess:
    assert advice.startswith("orch "), advice
    return run_orch(*advice.split()[1:], **kw)


@contextmanager
def _flock(path: Path) -> Iterator[int]:
    """Hold orch's own flock on a lock file (as another orch process would)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _waits_for_lock(pid: int, path: Path) -> bool:
    """True while process pid is blocked waiting for the flock on path (/proc/locks: `->`)."""
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


# ---------------------------------------------------------------- 4: abort, then resume
def test_abort_all_then_resume_finishes_the_session(workspace_dir):
    """Ctrl-C names `orch abort --all`; after it, `orch resume` must carry on: aborted agents
    free their places in the team and new ones take the work."""
    sid = run_orch("start", "Build it [sim@implementer: stall=60 runs=1]", *SIM_TEAM, check=True).stdout.strip()
    def implementing() -> bool:
        run_orch("step", env=SLOW)
        return any(t["kind"] == "implement" and t["state"] == "running" for t in _session(workspace_dir)["tasks"])

    wait_until(implementing, timeout=120, interval=0.5, what="an implementer at work")
    aborted = run_orch("abort", "--all", "--grace", "1", check=True)
    assert "implementer-1: aborted" in aborted.stdout
    check = run_orch("check")
    assert _next(check.stdout) == "orch step", check.stdout  # the next step starts the work again
    done = run_orch("resume", sid, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _session(workspace_dir)["state"] == "complete"
    started = [e["agent"] for e in _events(workspace_dir) if e["kind"] in ("agent.launched", "agent.resumed")]
    after_abort = started[started.index("implementer-1") + 1:]
    assert "implementer-1" not in after_abort and any(a.startswith("implementer-") for a in after_abort)


def test_an_aborted_run_is_not_counted_as_a_failed_attempt(workspace_dir):
    """Found by the model test: a task whose run was aborted, then failed once, stopped the session
    as "failed 2 times". An abort is the user's act, not the task's failure."""
    run_orch("start", "Build it [sim@implementer: stall=60 runs=1]", *SIM_TEAM, check=True)

    def implementing() -> bool:
        run_orch("step")
        return any(t["kind"] == "implement" and t["state"] == "running" for t in _session(workspace_dir)["tasks"])

    wait_until(implementing, timeout=120, interval=0.5, what="an implementer at work")
    task = next(t for t in _session(workspace_dir)["tasks"] if t["kind"] == "implement" and t["state"] == "running")
    assert task["attempts"] == 1
    run_orch("abort", task["agent"], "--grace", "1", check=True)
    after = _task(workspace_dir, task["id"])
    assert after["state"] == "queued" and after["attempts"] == 0


# ---------------------------------------------------------------- 5: hand-launched agents
def test_a_hand_launched_agent_in_a_git_session_never_breaks_a_step(workspace_dir):
    subprocess.run(["git", "init", "-q", str(workspace_dir)], check=True)
    sid = run_orch("start", "Build it", *SIM_TEAM, check=True).stdout.strip()
    worker = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hello", check=True).stdout.split()[-1]
    done = run_orch("resume", sid, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    # It works in the user's checkout, outside the session's worktrees: it is given none of their tasks.
    assert [t["id"] for t in _session(workspace_dir)["tasks"] if t["agent"] == worker] == ["T-1"]


def test_an_aborted_hand_launched_task_is_cancelled_not_stranded(workspace_dir):
    sid = run_orch("start", "Build it", *SIM_TEAM, check=True).stdout.strip()
    worker = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "think [sim: hang]",
                      check=True).stdout.split()[-1]
    run_orch("abort", worker, "--grace", "1", check=True)
    assert _task(workspace_dir, "T-1")["state"] == "cancelled"  # its user stopped it: nobody else takes it
    done = run_orch("resume", sid, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_parallel_first_launches_share_one_session(workspace_dir):
    procs = [subprocess.Popen(orch_argv("launch", "--cli", "sim", "--role", "worker", "--prompt", f"hi {i}"),
                              env=orch_env(), cwd=workspace_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    sessions = list((workspace_dir / ".orch" / "sessions").iterdir())
    assert len(sessions) == 1, [o[1] for o in outs]
    assert len({o[0].split()[-1] for o in outs}) == 6  # six agents, one session


def test_a_launch_and_a_step_at_once_fail_nothing_and_make_no_new_session(workspace_dir):
    """A step that runs while a launch has recorded its task but not yet its agent must neither
    start that agent itself ("already exists", a failed task, a stopped session) nor make the
    next launch open a new session."""
    run_orch("start", "Build it", *SIM_TEAM, check=True)
    folder = _session_dir(workspace_dir)
    agent_lock = folder / "agents" / "worker-1" / ".lock"
    agent_lock.parent.mkdir(parents=True)
    with _flock(agent_lock):  # the launch records its task, then waits here to write its agent
        launch = subprocess.Popen(orch_argv("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi"),
                                  env=orch_env(), cwd=workspace_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        wait_until(lambda: _waits_for_lock(launch.pid, agent_lock), timeout=60, what="the launch at its agent")
        step = subprocess.Popen(orch_argv("step"), env=orch_env(), cwd=workspace_dir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_until(lambda: _waits_for_lock(step.pid, folder / ".step.lock") or _waits_for_lock(step.pid, agent_lock),
                   timeout=60, what="the step to meet the launch")
    outs = [launch.communicate(timeout=120), step.communicate(timeout=120)]
    assert launch.returncode == 0 and step.returncode == 0, outs
    session = _session(workspace_dir)
    assert session["state"] == "active", session["stop_reason"]
    assert not [t for t in session["tasks"] if t["state"] == "failed"]
    again = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi again", check=True)
    assert "note:" not in again.stderr and len(list((workspace_dir / ".orch" / "sessions").iterdir())) == 1


def test_launch_into_a_stopped_session_names_what_continues_it(workspace_dir):
    proc = run_orch("run", "Build it", *SIM_TEAM, "--max-rounds", "1", timeout=300)
    assert proc.returncode == 1
    sid = _session(workspace_dir)["id"]
    refused = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"orch resume {sid} --max-rounds 2" in refused.stderr
    assert len(list((workspace_dir / ".orch" / "sessions").iterdir())) == 1


# ---------------------------------------------------------------- 6: the round limit
def test_the_round_limit_advises_the_command_that_allows_more_rounds(workspace_dir):
    proc = run_orch("run", "Build it", *SIM_TEAM, "--max-rounds", "1", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sid = _session(workspace_dir)["id"]
    advice = _next(proc.stdout)  # `orch run` says it where it stops
    assert advice == f"orch resume {sid} --max-rounds 2"
    assert _next(run_orch("check").stdout) == advice
    assert _next(run_orch("step").stdout) == advice
    assert json.loads(run_orch("wait", "--timeout", "1", "--json").stdout)["next"][0].startswith(advice + " ")
    plain = run_orch("resume", sid)
    assert plain.returncode == 2 and advice in plain.stderr  # plain resume refuses, naming the same command
    done = _follow(advice, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _session(workspace_dir)["state"] == "complete"


# ---------------------------------------------------------------- 7: retry
def test_retry_starts_the_task_at_once_and_no_retired_agent_works_again(workspace_dir):
    proc = run_orch("run", "Build it [sim: exit=2 role=reviewer runs=2]", *SIM_TEAM, timeout=300,
                    env={"ORCH_RETRY_BACKOFF": "0.2"})
    assert proc.returncode == 1 and "failed 2 times" in proc.stdout, proc.stdout
    review = next(t for t in _session(workspace_dir)["tasks"] if t["kind"] == "review")
    retried = run_orch("retry", review["id"])
    assert retried.returncode == 0, retried.stdout + retried.stderr
    # Started by the retry itself (a new reviewer: the failed one freed its place), not just queued.
    assert re.search(rf"{review['id']} assigned to new reviewer reviewer-\d+", retried.stdout), retried.stdout
    assert _task(workspace_dir, review["id"])["state"] == "running"
    wait_until(_stepped_to_completion, timeout=180, interval=0.3, what="the session to complete")
    events = _events(workspace_dir)
    retired = {e["agent"]: i for i, e in enumerate(events) if e["kind"] == "agent.state"
               and e["data"].get("to") == "done"}
    for agent, at in retired.items():
        later = [e for e in events[at:] if e["kind"] in ("task.assigned", "agent.resumed") and e.get("agent") == agent]
        assert not later, f"{agent} was retired, then given work: {later}"


def test_a_login_failure_notification_does_not_promise_a_retry(workspace_dir):
    from orchestrator.core.models import Event, EventKind, Session, Task, TaskKind, Role
    from orchestrator.notify.messages import message_for

    session = Session(id="s1", workspace=str(workspace_dir), coordinated=True,
                      tasks=[Task(id="T-2", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title="x", attempts=1)])
    login = Event(kind=EventKind.AGENT_EXITED, agent="implementer-1", task="T-2",
                  reason="error: Not logged in · Please run /login", data={"failure": "error"})
    m = message_for(login, session)
    assert "not retr" in m.waiting_for and "retries" not in m.waiting_for and m.command.startswith("orch retry T-2")
    crash = Event(kind=EventKind.AGENT_EXITED, agent="implementer-1", task="T-2", reason="exited with code 2",
                  data={"failure": "crash"})
    assert "orch retries T-2" in message_for(crash, session).waiting_for  # the first of two attempts


# ---------------------------------------------------------------- 8: killed between an assignment and its start
def test_a_task_given_to_its_agent_but_never_started_is_started_by_the_next_step(workspace_dir):
    """SIGKILL a step after it recorded that the agent runs the task again, before the run was
    recorded: the agent is failed and its current_task already names the task. The next step
    must start it (not judge the old run again, not do nothing)."""
    worker = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hi [sim: exit=3 runs=1]",
                      check=True).stdout.split()[-1]
    wait_until(lambda: "failed" in run_orch("step").stdout, timeout=60, interval=0.2, what="the first run to fail")
    folder = _session_dir(workspace_dir)
    with _flock(folder / ".step.lock"):  # `orch retry` re-queues, then waits for the step lock: killed there
        retry = subprocess.Popen(orch_argv("retry", "T-1"), env=orch_env(), cwd=workspace_dir,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: _waits_for_lock(retry.pid, folder / ".step.lock"), timeout=60, what="retry at the lock")
        retry.kill()
        retry.wait()
    assert _task(workspace_dir, "T-1")["state"] == "queued"
    agent_lock = folder / "agents" / worker / ".lock"
    with _flock(folder / ".lock") as session_lock:  # the step syncs, then waits for the session
        step = subprocess.Popen(orch_argv("step"), env=orch_env(), cwd=workspace_dir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        wait_until(lambda: _waits_for_lock(step.pid, folder / ".lock"), timeout=60, what="the step at the session")
        with _flock(agent_lock):  # ... and then at the agent's lock, with the assignment recorded
            fcntl.flock(session_lock, fcntl.LOCK_UN)
            wait_until(lambda: _waits_for_lock(step.pid, agent_lock), timeout=60, what="the step at the agent")
            step.kill()
            step.wait()
    task, meta = _task(workspace_dir, "T-1"), _meta(workspace_dir, worker)
    assert task["state"] == "running" and task["agent"] == worker and meta["current_task"] == "T-1"
    assert len(meta["runs"]) == 1 and meta["state"] == "failed"
    check = run_orch("check")
    assert _next(check.stdout) == "orch step", check.stdout
    out = run_orch("step", check=True).stdout
    assert "never started: starting it now" in out, out
    wait_until(lambda: _stepped_to_completion(), timeout=60, interval=0.3, what="the restarted task to finish")
    meta = _meta(workspace_dir, worker)
    assert len(meta["runs"]) == 2 and meta["runs"][1]["task"] == "T-1" and meta["runs"][1]["exit_code"] == 0


# ---------------------------------------------------------------- 9: a CLI session that never existed
def test_a_run_whose_cli_never_started_is_not_resumed_by_session_id(workspace_dir, tmp_path):
    """The first run's CLI never started (here: the supervisor cannot find setsid), so the CLI
    session id orch chose names no conversation: the next run must start a fresh one."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "date", "sed", "mv"):  # what supervise.sh needs, except setsid
        os.symlink(subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip(),
                   bare / tool)
    worker = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hi",
                      env={"PATH": str(bare)}, check=True).stdout.split()[-1]
    wait_until(lambda: "failed" in run_orch("step").stdout, timeout=60, interval=0.2, what="the run to fail")
    assert "setsid" in _meta(workspace_dir, worker)["state_reason"]
    check = run_orch("check")
    advice = _next(check.stdout)
    assert advice == "orch retry T-1", check.stdout
    _follow(advice, check=True)
    wait_until(lambda: _stepped_to_completion(), timeout=60, interval=0.3, what="the retried task to finish")
    runs = _meta(workspace_dir, worker)["runs"]
    assert len(runs) == 2 and "--resume" not in runs[1]["argv"] and "--session-id" in runs[1]["argv"]
    assert runs[1]["exit_code"] == 0


# ---------------------------------------------------------------- 11: work that changed nothing is not done
def test_an_implement_task_that_changed_nothing_goes_back_to_its_agent(workspace_dir):
    """The implementer's first reply claims the work without doing it: not done — asked again,
    with that fact, and this time it builds it."""
    proc = run_orch("run", "Build it [sim@implementer: lazy runs=1]", *SIM_TEAM, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "implementer-1's reply to T-2 changed no file: asked again, with that fact" in proc.stdout
    runs = [r for r in _meta(workspace_dir, "implementer-1")["runs"] if r["task"] == "T-2"]
    assert [bool(r["files_changed"]) for r in runs] == [False, True]
    assert not _task(workspace_dir, "T-2")["no_change"]


def test_a_task_two_agents_leave_unchanged_is_put_to_the_reviewer(workspace_dir):
    proc = run_orch("run", "Build it [sim@implementer: lazy runs=3]", *SIM_TEAM, "--max-rounds", "1", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "implementer-1 changed no file for T-2 again: handing it to another agent" in proc.stdout
    assert "finished T-2 (implement: Implement component core) without a change, for the reviewer" in proc.stdout
    t2 = _task(workspace_dir, "T-2")
    assert t2["state"] == "done" and t2["no_change"] and t2["agent"] != "implementer-1"
    review = next(t for t in _session(workspace_dir)["tasks"] if t["kind"] == "review")
    assert "These tasks ended without any change, although two agents were asked: T-2" in review["prompt"]
