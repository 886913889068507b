"""Agents as detached, supervised processes: launch, resume (a new run), abort.

An agent is a team member with a CLI session; each prompt it gets is a run, one process,
started through supervise.sh so that its output goes straight to files and its exit is
recorded even when no orch process is alive.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Optional

from ..core.lifecycle import LIVE_AGENT_STATES, move, transition
from ..adapters import Command, Grant, LaunchSpec, get_adapter
from ..core.errors import InvalidInput
from ..core.models import (
    Agent, AgentState, EndRequest, Event, EventKind, Permission, Role, Run, Task, TaskKind, TaskState, now,
)
from .owner import check_settings, ensure_owner
from .procs import is_same_process
from .runners import LocalRunner, RunStart, runner_for_policy, runner_of_record
from .runs import adapter_for, agent_grant, live_run, read_run_record, require_agent
from ..safety.redaction import redact_argv, redact_text
from ..store.sessions import AgentLock, SessionStore

DEFAULT_LEVEL = {
    Role.ARCHITECT: Permission.EDIT,
    Role.IMPLEMENTER: Permission.EDIT,
    Role.REVIEWER: Permission.READ,
    Role.WORKER: Permission.EDIT,
    Role.VERIFIER: Permission.READ,  # orch's own test runner (engine/verification.py)
}
START_TIMEOUT = 10.0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _policy_gate(store: SessionStore, cli: str, role: Role, cwd: Path, grant: Grant) -> Grant:
    """Confine the working directory and cap the grant at the role's ceiling.

    Contract with policy.py: `gate_launch(store, *, cli, role, cwd, grant) -> Grant` raises
    PolicyError when cwd is outside the allowed directories (or the policy file is invalid)
    and returns the grant capped at the role's ceiling, never above it.
    """
    from ..safety.policy import gate_launch  # the policy owns confinement and ceilings

    return gate_launch(store, cli=cli, role=role, cwd=cwd, grant=grant)


def _starting_grant(store: SessionStore, adapter, role: Role, cwd: Path) -> Grant:
    """The role's usual level, plus the project's test command for the roles that build."""
    from ..safety.policy import load_policy, workspace_of
    from ..safety.test_command import starting_tools

    level = DEFAULT_LEVEL[role]
    return Grant(level=level, tools=starting_tools(load_policy(workspace_of(store)), adapter, role, level, cwd))


def _check_command(store: SessionStore, command: Command, spec: LaunchSpec) -> None:
    """Refuse a built command with a shell string, a forbidden pattern or an unallowed bypass.

    The prompt is the task's text, not part of the command: a goal may well say "never git
    push" without that being a request to run it.
    """
    from ..safety.policy import check_argv, load_policy, workspace_of

    texts = {spec.prompt, spec.system_prompt}
    check_argv([a for a in command.argv if a not in texts], load_policy(workspace_of(store)),
               dangerous_ok=spec.grant.dangerous)


def _new_run(store: SessionStore, agent: Agent, command: Command, spec: LaunchSpec, task_id: Optional[str]) -> Run:
    d = store.agent_dir(agent.id)
    return Run(
        n=len(agent.runs) + 1, argv=[_clip(a) for a in redact_argv(command.argv)], cwd=str(command.cwd),
        permission=spec.grant.level, rung=spec.grant.name, prompt=redact_text(spec.prompt), task=task_id,
        started_at=now(), stdout_start=_file_size(d / "stdout.jsonl"), stderr_start=_file_size(d / "stderr.log"),
    )


def _clip(arg: str, limit: int = 300) -> str:
    return arg if len(arg) <= limit else arg[:limit] + f"…(+{len(arg) - limit} chars)"


def _runner(store: SessionStore, adapter):
    """The runner new runs start on, as the workspace's policy says ([runner]) — except orch's
    own work that belongs on this machine (adapter.runs_here: the verifier)."""
    from ..safety.policy import load_policy, workspace_of

    if adapter.runs_here:
        return LocalRunner()
    return runner_for_policy(load_policy(workspace_of(store)))


def _spawn(store: SessionStore, agent: Agent, run: Run, command: Command, runner, resumes: bool,
           ceiling=None) -> dict:
    """Start the run through the runner and wait for its supervisor's pid record."""
    runner.start(RunStart(agent_dir=store.agent_dir(agent.id), n=run.n, argv=list(command.argv),
                          cwd=Path(command.cwd), env=dict(command.env), cli=agent.cli, resumes=resumes,
                          ceiling=ceiling))
    deadline = time.monotonic() + START_TIMEOUT
    record: dict = {}
    while time.monotonic() < deadline:
        record = read_run_record(store, agent.id, run.n)
        if record.get("pid") or "exit_code" in record:
            break
        time.sleep(0.005)
    return record


def _begin(store: SessionStore, lock: AgentLock, agent: Agent, spec: LaunchSpec, task_id: Optional[str],
           kind: EventKind) -> Agent:
    """Record the run and its events as one batch, then start it: a crash in between leaves a
    run that never started (which the ingest reports as failed), never a process nobody knows
    about, and never a recorded run without its event."""
    adapter = adapter_for(agent)
    command = adapter.build_command(spec)
    _check_command(store, command, spec)
    runner = _runner(store, adapter)
    runner.check_workspace(Path(command.cwd))  # refused before anything is recorded
    from ..safety.kernel import describe as describe_ceiling, run_ceiling  # the policy owns the ceiling

    ceiling = run_ceiling(store, agent, spec.grant)  # so is a run the kernel cannot confine as required
    adapter.prepare_launch({**os.environ, **command.env})
    run = _new_run(store, agent, command, spec, task_id)
    agent.runs.append(run)
    state_event = transition(agent, AgentState.STARTING, f"run {run.n} starting")
    agent.pid = None
    agent.exit_code = None
    agent.ended_at = None
    agent.current_task = task_id
    agent.started_at = agent.started_at or run.started_at
    agent.last_activity_at = run.started_at
    if command.cli_session_id and not agent.cli_session_id:
        agent.cli_session_id = command.cli_session_id
    lock.commit(agent, ([state_event] if state_event is not None else []) + [Event(
        kind=kind, agent=agent.id, task=task_id,
        reason=f"run {run.n} at {spec.grant.name}",
        data={"run": run.n, "cli": agent.cli, "role": agent.role.value,
              "permission": spec.grant.level.value, "rung": spec.grant.name, "argv": run.argv,
              "cli_session_id": agent.cli_session_id, "confinement": describe_ceiling(ceiling)},
    )])
    record = _spawn(store, agent, run, command, runner, bool(spec.resume), ceiling)
    # The pid is also in run-N.json, where the ingest finds it if orch dies right here.
    run.pid, run.proc_start, run.supervisor_pid = record.get("pid"), record.get("proc_start"), record.get("supervisor_pid")
    agent.pid = run.pid
    store.write_agent(agent)
    ensure_owner(store.path)  # the session's ingest owner runs while anything is live
    return agent


def _refuse_overwrite(store: SessionStore, agent_id: str) -> None:
    """A new agent may replace only a meta.json with no run in it: never a damaged one
    (CorruptFile, left as it is), never one with runs."""
    if os.path.lexists(store.agent_dir(agent_id) / "meta.json") and store.read_agent(agent_id).runs:
        raise InvalidInput(f"agent {agent_id} already exists in session {store.id}")


def launch_agent(
    store: SessionStore, *, cli: str, role: Role, prompt: str, cwd: Path,
    grant: Optional[Grant] = None, task_id: Optional[str] = None, sim_format: Optional[str] = None,
    create_task: bool = False, agent_id: Optional[str] = None, branch: Optional[str] = None,
) -> Agent:
    """Create an agent and start its first run, detached. Returns its meta once it has a pid."""
    if not prompt.strip():
        raise InvalidInput("the prompt is empty")
    cwd = Path(cwd).resolve()
    if not cwd.is_dir():
        raise InvalidInput(f"working directory {cwd} does not exist")
    adapter = get_adapter(cli, sim_format)
    adapter.executable()  # a missing CLI is a one-line error before anything is written
    check_settings()  # and so is a bad ORCH_INGEST_WINDOW
    grant = _policy_gate(store, cli, role, cwd, grant or _starting_grant(store, adapter, role, cwd))
    with store.edit_session() as session:
        agent_id = agent_id or session.new_id(role.value)
        if create_task:
            task = Task(id=session.new_id("T"), kind=TaskKind.ADHOC, role=role,
                        title=redact_text(prompt.strip().splitlines()[0])[:80],
                        prompt=redact_text(prompt), round=session.round, state=TaskState.RUNNING, agent=agent_id,
                        started_at=now(), attempts=1)
            session.tasks.append(task)
            task_id = task.id
    store.agent_dir(agent_id).mkdir(parents=True, exist_ok=True)
    cli_session_id = str(uuid.uuid4()) if adapter.assigns_session_id else None
    agent = Agent(
        id=agent_id, session=store.id, role=role, cli=cli, permission=grant.level,
        allowed_tools=list(grant.tools), dangerous=grant.dangerous, rung=grant.name, cwd=str(cwd),
        sim_format=adapter.variant, branch=branch,
    )
    with store.agent_lock(agent_id) as lock:
        _refuse_overwrite(store, agent_id)
        store.write_agent(agent)
        spec = LaunchSpec(role=role, prompt=prompt, cwd=cwd, grant=grant, cli_session_id=cli_session_id,
                          sim_format=agent.sim_format, state_dir=store.path.parent.parent)
        return _begin(store, lock, agent, spec, task_id, EventKind.AGENT_LAUNCHED)


def resume_agent(
    store: SessionStore, agent_id: str, prompt: str, *, grant: Optional[Grant] = None,
    task_id: Optional[str] = None, fresh_session: bool = False,
) -> Agent:
    """A new run of the agent in the same CLI session (context carries over).

    With a grant, the agent's permission changes to it first (recovery climbs the ladder
    this way). With fresh_session, the CLI starts a new session instead (a restart).
    """
    with store.agent_lock(agent_id) as lock:
        agent = store.read_agent(agent_id)
        if agent.state in LIVE_AGENT_STATES:
            run = agent.runs[-1] if agent.runs else None
            if run and is_same_process(run.pid, run.proc_start):
                raise InvalidInput(f"agent {agent_id} is still running (pid {run.pid}); wait for it or abort it")
        if grant is not None:
            grant = _policy_gate(store, agent.cli, agent.role, Path(agent.cwd), grant)
            agent.permission, agent.allowed_tools, agent.dangerous = grant.level, list(grant.tools), grant.dangerous
            agent.rung = grant.name
        move(agent.state, AgentState.STARTING, agent.id)  # checked before anything changes
        resume = session_shown(agent) and not fresh_session
        session_id = agent.cli_session_id if resume else (
            str(uuid.uuid4()) if adapter_for(agent).assigns_session_id else None)
        if not resume:
            agent.cli_session_id = None
        spec = LaunchSpec(role=agent.role, prompt=prompt, cwd=Path(agent.cwd), grant=agent_grant(agent),
                          cli_session_id=session_id, resume=resume, sim_format=agent.sim_format,
                          state_dir=store.path.parent.parent)
        return _begin(store, lock, agent, spec, task_id, EventKind.AGENT_RESUMED)


def session_shown(agent: Agent) -> bool:
    """Whether the agent's CLI session can be resumed: only once a run's stream has shown it. An id
    orch chose for a run that never started (orch killed while starting it) names no conversation."""
    return bool(agent.cli_session_id) and agent.ingest.thread_id == agent.cli_session_id


def end_current_run(store: SessionStore, agent_id: str, request: EndRequest, note: str, grace: float = 5.0) -> str:
    """Stop the agent's current process group (TERM, then KILL after grace) and wait for its
    supervisor to record the exit. The request tells the ingest why the run ended."""
    agent = store.read_agent(agent_id)
    if not agent.runs:
        return "no process"
    with store.edit_agent(agent_id) as a:
        a.runs[-1].end_request, a.runs[-1].note = request, note
    run = agent.runs[-1]
    record = read_run_record(store, agent_id, run.n) or {"pid": run.pid, "proc_start": run.proc_start}
    how = runner_of_record(record).stop(record, grace) if record.get("pid") else "no process"
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and "ended_at" not in read_run_record(store, agent_id, run.n):
        rec = read_run_record(store, agent_id, run.n)
        if not is_same_process(rec.get("supervisor_pid"), rec.get("supervisor_start")):
            break  # no supervisor left to record it; the ingest reports the exit as unknown
        time.sleep(0.01)
    return how


def abort_agent(store: SessionStore, agent_id: str, grace: float = 5.0, reason: str = "aborted on request") -> Agent:
    """End the agent's process group (TERM, then KILL after grace) and record it as aborted."""
    # The run's end request carries the reason: whoever ingests the end (this command, the
    # session's ingest owner, a waiter) records the agent aborted for it (ingest/classify.py).
    how = end_current_run(store, agent_id, EndRequest.ABORT, reason, grace)
    with store.agent_lock(agent_id) as lock:
        a = store.read_agent(agent_id)
        state_event = transition(a, AgentState.ABORTED, reason)
        a.ended_at = a.ended_at or now()
        if a.runs:
            rec = read_run_record(store, agent_id, a.runs[-1].n)
            a.runs[-1].ended_at = a.runs[-1].ended_at or now()
            if "exit_code" in rec:
                a.runs[-1].exit_code = rec["exit_code"]
                a.runs[-1].signal = rec.get("signal")
                a.exit_code = rec["exit_code"]
        agent = a
        lock.commit(agent, ([state_event] if state_event else []) + [Event(
            kind=EventKind.AGENT_ABORTED, agent=agent_id, task=agent.current_task, reason=reason,
            data={"how": how, "exit_code": agent.exit_code})])
    if agent.current_task:
        release_task(store, agent.current_task, reason)
    return agent


def release_task(store: SessionStore, task_id: str, reason: str) -> None:
    """A task whose agent was aborted: a coordinated task goes back to the queue (another agent
    takes it); a hand-launched one is cancelled — its user stopped it — even when it had failed."""
    event = None
    with store.edit_session() as session:
        task = session.task(task_id)
        adhoc = task is not None and (task.kind is TaskKind.ADHOC or not session.coordinated)
        if task is not None and (task.state is TaskState.RUNNING or (adhoc and task.state is TaskState.FAILED)):
            event = transition(task, TaskState.CANCELLED if adhoc else TaskState.QUEUED, reason)
            if not adhoc:
                task.agent = None
                task.attempts = max(task.attempts - 1, 0)  # an abort is not a failed attempt
    if event is not None:
        store.append_event(event)


__all__ = ["launch_agent", "resume_agent", "abort_agent", "end_current_run", "release_task", "adapter_for",
           "agent_grant", "read_run_record", "live_run", "require_agent", "DEFAULT_LEVEL"]
