"""pydantic models for everything orch keeps on disk or prints as JSON.

One model per file orch writes; `schemas/` is generated from these (see schema.py).
Every lifecycle is one enum plus one transition table (lifecycle.py).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

try:  # orch uses no pydantic plugin: skip scanning every installed distribution for one (~50 ms a start)
    from pydantic.plugin import _loader as _plugin_loader

    if _plugin_loader._plugins is None:
        _plugin_loader._plugins = {}
except (ImportError, AttributeError):  # another pydantic layout: it only costs time
    pass

from .ids import is_valid_id


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


class Model(BaseModel):
    """Base: unknown keys are kept, so a newer orch's files still load in an older one."""

    # NaN and infinities are written as bare constants, not as null, so that the store's
    # writer (store.jsonsafe) can find and clamp them rather than lose the field.
    model_config = ConfigDict(extra="allow", populate_by_name=True, use_enum_values=False,
                              ser_json_inf_nan="constants")


# --------------------------------------------------------------------------- enums


class Permission(str, Enum):
    READ = "read"
    EDIT = "edit"
    FULL = "full"

    @property
    def rank(self) -> int:
        return {"read": 0, "edit": 1, "full": 2}[self.value]


class Role(str, Enum):
    ARCHITECT = "architect"
    IMPLEMENTER = "implementer"
    REVIEWER = "reviewer"
    WORKER = "worker"
    VERIFIER = "verifier"  # orch's own pseudo-agent: runs the project's tests on integration commits


class AgentState(str, Enum):
    STARTING = "starting"  # process spawned, no output yet
    RUNNING = "running"  # output seen recently
    SILENT = "silent"  # alive but nothing written for a while (not yet a stall verdict)
    IDLE = "idle"  # its run ended well; waiting for the next task
    DENIED = "denied"  # its run ended with work refused by a permission check
    BLOCKED_BY_POLICY = "blocked-by-policy"  # denied, and policy forbids the next rung
    DONE = "done"  # retired: nothing left for it
    FAILED = "failed"  # run ended badly (error, crash, garbage)
    ABORTED = "aborted"  # ended on request
    PARKED = "parked"  # its CLI hit a usage or rate limit: resumes in the same CLI session at resume_at


class TaskKind(str, Enum):
    SPEC = "spec"
    IMPLEMENT = "implement"
    REVIEW = "review"
    FIX = "fix"
    VERIFY = "verify"
    MERGE = "merge"  # resolve a merge conflict between an agent's branch and the integration branch
    ADHOC = "adhoc"  # started by hand with `orch launch`


class TaskState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BlockerState(str, Enum):
    FOUND = "found"
    ASSIGNED = "assigned"
    FIXED = "fixed"
    VERIFIED = "verified"
    REOPENED = "reopened"


class BlockerSource(str, Enum):
    REVIEW = "review"  # a reviewer reported it; a reviewer verifies its fix
    VERIFICATION = "verification"  # the project's tests failed; a green run on a later commit verifies its fix


class VerifyRunState(str, Enum):
    """One run of the project's tests on one integration commit (engine/verification.py)."""

    PENDING = "pending"  # decided and recorded; the verifier's run is not started yet
    RUNNING = "running"  # the verifier's run is recorded (its number in agent_run)
    FINISHED = "finished"  # the command ran (passed, failed, or there was no test command): see the result
    ERROR = "error"  # it could not run (the verifier's run failed, was aborted, or printed no result)


class RaceState(str, Enum):
    """One implement task given to several implementers of different CLIs at once (engine/race.py)."""

    RUNNING = "running"  # candidates are building, each in its own worktree from the same commit
    TESTING = "testing"  # every candidate ended (or the time limit passed): each one's work, merged onto the
    #                      integration commit without touching the branch, is being tested
    REVIEWING = "reviewing"  # the tests did not tell the best candidates apart: the reviewers read each one
    DECIDED = "decided"  # the winner is chosen (by the judge, or a person's `orch pick`); its merge is next
    MERGED = "merged"  # the winner's branch is merged; the others stay as branches
    FAILED = "failed"  # no candidate produced work: the raced task failed (`orch retry` builds it once)


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class SessionState(str, Enum):
    ACTIVE = "active"
    COMPLETE = "complete"  # criteria held and the report was written
    STOPPED = "stopped"  # round limit or policy limit reached with work left
    ABORTED = "aborted"
    PAUSED = "paused"  # a budget was reached: nothing new starts until it is raised (spend/gate.py)


class EndRequest(str, Enum):
    """Why orch itself ended a run (recorded on the run before its process is signalled)."""

    ABORT = "abort"  # orch abort, or the user's decision
    STALL = "stall"  # silent past the stall limit: nudged or restarted
    WALL_TIME = "wall_time"  # ran past the policy's run_wall_seconds
    NEVER_STARTED = "never_started"  # recorded, but orch was stopped before its process existed
    BUDGET = "budget"  # the session's budget was reached with on_budget = "stop"


class FailureKind(str, Enum):
    """Why a run that ended badly failed (the classifier's verdict, in agent.exited events)."""

    NEVER_STARTED = "never_started"
    STALLED = "stalled"
    WALL_TIME = "wall_time"
    BUDGET = "budget"
    ABORTED = "aborted"
    DENIED = "denied"
    QUOTA = "quota"
    BILLING = "billing"  # the CLI's account is out of credit: no wait helps (a person, or another CLI)
    GARBAGE = "garbage"
    NO_OUTPUT = "no_output"
    MAX_TURNS = "max_turns"
    ERROR = "error"
    LOST = "lost"
    CRASH = "crash"


class Outcome(str, Enum):
    SUCCESS = "success"
    ERROR = "error"
    MAX_TURNS = "max_turns"
    INCOMPLETE = "incomplete"


# --------------------------------------------------------------------------- usage


_USAGE_LIMIT = 1e15  # where an infinite count or cost is clamped (store.jsonsafe.FLOAT_LIMIT)


class Usage(Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: Optional[str] = None  # the model the run used, as the CLI named it
    cached_input_tokens: int = 0  # part of input_tokens read from a prompt cache (priced lower)
    cost_estimated: bool = False  # the CLI reported no price: orch computed it (spend/pricing.py)
    price_known: bool = True  # False when some tokens are of a model no price is known for

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        """A CLI's NaN, 1e999 or null (a file written before this check) becomes a finite
        number; what was replaced is kept in `repaired`, so the oddity stays on record."""
        if not isinstance(data, dict):
            return data
        fixed = {}
        for key in ("input_tokens", "output_tokens", "cost_usd"):
            value = data.get(key, 0)
            if key in data and (value is None or (isinstance(value, float) and not math.isfinite(value))):
                new = 0 if value is None or math.isnan(value) else math.copysign(_USAGE_LIMIT, value)
                fixed[key] = new if key == "cost_usd" else int(new)
        if not fixed:
            return data
        note = ", ".join(f"{k} {data[k]!r} → {v!r}" for k, v in fixed.items())
        return {**data, **fixed, "repaired": note}

    def plus(self, other: "Usage") -> "Usage":
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            model=other.model or self.model,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cost_estimated=self.cost_estimated or other.cost_estimated,
            price_known=self.price_known and other.price_known,
        )

    def minus(self, base: "Usage") -> "Usage":
        """This running total less an earlier one (a resumed thread's new part); never negative."""
        return self.model_copy(update={
            "input_tokens": max(self.input_tokens - base.input_tokens, 0),
            "output_tokens": max(self.output_tokens - base.output_tokens, 0),
            "cached_input_tokens": max(self.cached_input_tokens - base.cached_input_tokens, 0),
            "cost_usd": max(round(self.cost_usd - base.cost_usd, 10), 0.0)})


# --------------------------------------------------------------------------- normalized agent events


class AgentEventKind(str, Enum):
    SESSION_STARTED = "session_started"
    TEXT = "text"
    TOOL_STARTED = "tool_started"
    TOOL_FINISHED = "tool_finished"
    FILE_CHANGED = "file_changed"
    DENIAL = "denial"
    USAGE = "usage"
    ERROR = "error"
    STATUS = "status"  # retries, compaction, other liveness hints
    LIMIT_HIT = "limit_hit"  # a usage or rate limit refused the run (counted once per limit)
    LIMIT_WARNING = "limit_warning"  # close to a limit, or over it on extra usage; the run goes on
    RUN_FINISHED = "run_finished"
    UNKNOWN = "unknown"


class AgentEvent(Model):
    """One normalized thing an agent CLI did, whatever CLI it was."""

    kind: AgentEventKind
    stream: Literal["stdout", "stderr", "rollout", "exit"] = "stdout"
    session_id: Optional[str] = None
    text: Optional[str] = None
    tool: Optional[str] = None
    tool_id: Optional[str] = None
    target: Optional[str] = None  # command line, file path or other object of a tool call
    ok: Optional[bool] = None
    path: Optional[str] = None
    change: Optional[str] = None  # add, modify, delete
    message: Optional[str] = None
    usage: Optional[Usage] = None
    usage_cumulative: bool = False  # codex reports thread totals on resume
    outcome: Optional[Outcome] = None
    status: Optional[str] = None  # STATUS events: "retrying", "compacting", ...
    limit_kind: Optional[str] = None  # LIMIT_* events: "usage" (a plan's quota), "rate" (requests/tokens per minute) or "billing" (out of credit)
    limit_scope: Optional[str] = None  # "five_hour", "weekly", "daily", "minute", or None when the CLI does not say
    resets_at: Optional[datetime] = None  # LIMIT_* events: when the limit lifts (UTC), when the CLI says
    raw_type: Optional[str] = None
    data: Optional[dict[str, Any]] = None


class Denial(Model):
    tool: str
    target: Optional[str] = None
    message: str = ""
    at: Optional[datetime] = None
    run: Optional[int] = None
    tool_id: Optional[str] = None


class LimitNotice(Model):
    """A usage or rate limit one run ran into (hit) or came close to (warning)."""

    hit: bool  # True: the limit refused the run; False: a warning, the run went on
    kind: Optional[str] = None  # "usage" | "rate" | "billing" (out of credit: never waited out)
    scope: Optional[str] = None  # "five_hour" | "weekly" | "daily" | "minute" | None
    resets_at: Optional[datetime] = None
    message: str = ""  # the CLI's own words


class RunSummary(Model):
    """What `orch parse --json` prints: the verdict on one run of one CLI."""

    cli: str
    session_id: Optional[str] = None
    outcome: Outcome = Outcome.INCOMPLETE
    denied: bool = False  # some of the work was refused, whatever the final status said
    final_text: str = ""
    tool_calls: int = 0
    denials: list[Denial] = Field(default_factory=list)
    files_changed: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    errors: list[str] = Field(default_factory=list)
    limits: list[LimitNotice] = Field(default_factory=list)
    malformed_lines: int = 0
    unknown_events: int = 0


# --------------------------------------------------------------------------- agents


class Run(Model):
    """One process of an agent: the first launch, or a resume with a new prompt."""

    n: int
    argv: list[str]  # redacted
    cwd: str
    permission: Permission
    rung: Optional[str] = None
    prompt: str = ""  # redacted
    task: Optional[str] = None
    started_at: datetime
    pid: Optional[int] = None
    proc_start: Optional[int] = None  # /proc/<pid>/stat starttime: pids are reused
    supervisor_pid: Optional[int] = None
    ended_at: Optional[datetime] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    stdout_start: int = 0  # byte offsets where this run's output begins
    stderr_start: int = 0
    outcome: Optional[Outcome] = None
    final_text: str = ""  # redacted; what the task's result is read from (e.g. a verdict)
    end_request: Optional[EndRequest] = None  # orch ended it (why, as an enum); None: it ended by itself
    note: Optional[str] = None  # the same, in words for people
    failure: Optional[FailureKind] = None  # set when the run ended badly
    # The run's exit was never recorded (its supervisor was killed, or could not write
    # run-N.json), yet its stream holds a complete result: a success whose exit code is unknown.
    exit_unknown: bool = False
    lost: Optional[str] = None  # the runner's reason when the run was lost with its machine (its CLI session too)
    files_changed: list[str] = Field(default_factory=list)  # what its stream said it wrote (capped)
    tool_calls: int = 0  # tool calls its stream showed


class StreamDigest(Model):
    """A whole stream as the remote node saw it: what the local copy is checked against."""

    bytes: int
    lines: int
    sha256: str


class RunRecord(Model):
    """agents/<id>/run-<n>.json, written by the run's supervisor (supervise.sh, or the ray runner's pump)."""

    n: int
    supervisor_pid: int
    supervisor_start: Optional[int] = None
    started_at: datetime
    pid: Optional[int] = None
    pgid: Optional[int] = None
    proc_start: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None  # 128+N exit codes are read as signal N
    ended_at: Optional[datetime] = None
    # The ray runner's (runtime/runners/ray_pump.py); absent for local runs.
    runner: Optional[Literal["ray"]] = None
    address: Optional[str] = None  # the Ray cluster
    actor: Optional[str] = None  # the run's named, detached actor
    node: Optional[str] = None  # the Ray node id it was placed on
    host: Optional[str] = None
    remote_pid: Optional[int] = None  # the CLI's pid on that node
    cwd: Optional[str] = None
    base: Optional[str] = None  # the commit the run started from
    stdout_base: Optional[int] = None  # local stream sizes when the run began: copy offsets start there
    stderr_base: Optional[int] = None
    attaches: Optional[int] = None  # pumps restarted for this run
    git: Optional[str] = None  # how the run's commits came back
    lost: Optional[str] = None  # why the run's exit can never be known (its node died)
    streams: Optional[dict[str, StreamDigest]] = None  # stdout/stderr as the node saw them


class OwnerState(str, Enum):
    """The session's ingest owner (runtime/ingest/daemon.py), as its record says."""

    STARTING = "starting"  # elected (it holds the session's .ingest.lock), catching up
    WATCHING = "watching"  # ingesting as the agents write
    ENDING = "ending"  # nothing live: exits unless a launch comes first (a starter then waits for it)
    ENDED = "ended"  # exited (`reason` says why)


class OwnerLimits(Model):
    """What a waiter that leaves the ingest to the owner needs of the policy, as the owner read it:
    the clock-driven steps' limits and the silence threshold it marks agents silent by — with the
    policy file's stamp and the settings that decided them, so a waiter whose own differ reads
    the policy itself."""

    stall_after_seconds: float
    run_wall_seconds: int
    silent_after: float
    on_usage_limit: Optional[str] = None  # what a step does with an agent parked by a limit (wait, fallback, ask)
    policy_stamp: Optional[list[int]] = None  # policy.toml's mtime_ns, size, inode (None: no file)
    settings: dict[str, Optional[str]] = Field(default_factory=dict)  # ORCH_STALL_AFTER, ORCH_SILENT_AFTER


class IngestOwner(Model):
    """ingest.json: the session's ingest owner — its process, recorded like a run's (pid and start
    time, so liveness is checked the same way), what it is doing, and its batch window."""

    pid: int
    proc_start: Optional[int] = None
    host: str  # liveness is only checkable on this machine
    started_at: datetime
    state: OwnerState = OwnerState.STARTING
    # seconds: an agent's plain progress waits at most this long to be committed (ORCH_INGEST_WINDOW,
    # stretched while many agents stream); what it acts on at once never waits
    window: float
    ended_at: Optional[datetime] = None
    reason: str = ""  # why it ended
    retry_after: Optional[datetime] = None  # it could not run (the kernel refused a watch): not before then
    limits: Optional[OwnerLimits] = None  # what a waiter needs of the policy, as the owner read it


class AgentStats(Model):
    tool_calls: int = 0
    files_changed: list[str] = Field(default_factory=list)
    denials: list[Denial] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    errors: list[str] = Field(default_factory=list)
    malformed_lines: int = 0
    unknown_events: int = 0
    last_text: str = ""
    repaired_values: int = 0  # values a CLI printed that JSON cannot hold, stored replaced (store.jsonsafe)


class RunAccumulator(Model):
    """The current run's verdict so far, folded from its normalized events (kept in the cursor)."""

    events: int = 0
    output: bool = False  # the CLI itself said something (not only what orch inferred at exit)
    denial_keys: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    status: Optional[str] = None  # the latest STATUS hint (retrying, compacting, ...)
    outcome: Optional[Outcome] = None
    final_text: str = ""
    usage: Optional[Usage] = None  # this run's own usage
    cumulative: Optional[Usage] = None  # the CLI's thread total, when it reports one
    limit: Optional[LimitNotice] = None  # the usage or rate limit that refused this run, if one did
    files: list[str] = Field(default_factory=list)  # files its stream said it wrote (capped)
    tool_calls: int = 0


class EchoMark(Model):
    """A piece of a secret masked where a run's text began (it continued a secret the text
    before ended in): its length and a salted SHA-256, never the text."""

    length: int
    salt: str
    digest: str


class TextTail(Model):
    """The last pieces of text an agent wrote on one raw stream: byte ranges, never the text."""

    ranges: list[list[int]] = Field(default_factory=list)
    # A secret reaches the end of what was read (a key of letters, digits, - and _: "word";
    # one with . / + = ~ too: "token"; a private key's "block"; a quoted value under a
    # secret-looking key, up to its quote: "quoted"): the next piece may go on with it.
    open: Optional[Literal["word", "token", "block", "quoted"]] = None
    # Where the piece masked as the rest of such a secret shows again in the same run (claude
    # repeats a message's deltas in the whole message and in its result), it is masked too.
    echo: Optional[EchoMark] = None


class IngestCursor(Model):
    """How far an agent's raw files have been normalized (the `ingest` field of its meta.json)."""

    stdout_offset: int = 0
    stderr_offset: int = 0
    parser_state: dict[str, Any] = Field(default_factory=dict)
    run: int = 0  # the run whose output the parser state belongs to
    finished_runs: list[int] = Field(default_factory=list)
    run_acc: RunAccumulator = Field(default_factory=RunAccumulator)  # the current run's verdict so far
    closed_usage: Usage = Field(default_factory=Usage)  # usage of the runs already finished
    closed_malformed: int = 0
    thread_id: Optional[str] = None  # CLI session the cumulative usage belongs to
    thread_base: Usage = Field(default_factory=Usage)  # its cumulative usage before this run
    # Side files outlive a run (codex appends every turn of a thread to one rollout): how
    # far each was read, so a resumed run reads only its own part.
    side_offsets: dict[str, int] = Field(default_factory=dict)
    # Per raw stream: a secret cut between two ingests is found when its end arrives.
    text_tail: dict[str, TextTail] = Field(default_factory=dict)


class OneTimeGrant(Model):
    """`orch allow`: the run that holds a grant beyond the policy, and the grant to return to."""

    run: int
    permission: Permission
    allowed_tools: list[str] = Field(default_factory=list)
    dangerous: bool = False


class Agent(Model):
    """agents/<id>/meta.json"""

    id: str
    session: str
    role: Role
    cli: str
    permission: Permission
    rung: Optional[str] = None
    state: AgentState = AgentState.STARTING
    state_reason: str = ""
    state_since: datetime = Field(default_factory=now)
    cwd: str
    cli_session_id: Optional[str] = None
    current_task: Optional[str] = None
    created_at: datetime = Field(default_factory=now)
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    last_activity_at: Optional[datetime] = None
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    runs: list[Run] = Field(default_factory=list)
    stats: AgentStats = Field(default_factory=AgentStats)
    recoveries: int = 0
    nudges: int = 0
    restarts: int = 0
    allowed_tools: list[str] = Field(default_factory=list)  # narrow grants, CLI syntax
    dangerous: bool = False  # bypass flags allowed (only when the policy says so)
    pending_action: Optional[Denial] = None  # blocked-by-policy: exactly what it wanted
    one_time_grant: Optional[OneTimeGrant] = None  # set by `orch allow` until that run ends
    sim_format: Optional[str] = None  # the stream format a sim agent speaks
    branch: Optional[str] = None  # the git branch it works on (its worktree is cwd); None: the shared folder
    ingest: IngestCursor = Field(default_factory=IngestCursor)  # how far its output is normalized
    limit: Optional[LimitNotice] = None  # parked: the limit it hit
    resume_at: Optional[datetime] = None  # parked: when orch resumes it (the reset plus a grace, or a backoff)
    parks: int = 0  # times parked in a row without a reset time (the backoff grows with it)
    parked_seconds: float = 0.0  # time spent parked, over its life

    @field_validator("id", "session")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        if not is_valid_id(v):
            raise ValueError(f"not a valid id: {v!r}")
        return v


# --------------------------------------------------------------------------- work


class Task(Model):
    id: str
    kind: TaskKind
    role: Role
    title: str
    prompt: str = ""
    round: int = 0
    state: TaskState = TaskState.QUEUED
    agent: Optional[str] = None
    blockers: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    attempts: int = 0
    result: str = ""
    avoid_clis: list[str] = Field(default_factory=list)  # CLIs (cli or cli/variant) parked by a limit: not for this task
    waiting: str = ""  # why a queued task is held back (a concurrency cap), shown in status
    retry_at: Optional[datetime] = None  # a failed attempt's back-off: not assigned before this
    cli: Optional[str] = None  # `orch retry --cli`: only an agent on this CLI may take it
    files_changed: list[str] = Field(default_factory=list)  # from git: what its agent's branch changed
    commit: Optional[str] = None  # its work's commit on the agent's branch (None: nothing changed)
    merged: Optional[str] = None  # the integration branch's tip once that work was merged
    conflicts: list[str] = Field(default_factory=list)  # a merge task: the files in conflict
    # Only an agent on exactly this CLI (cli or cli/variant) takes it: a panel member's review or
    # verification, a race candidate's build.
    seat: Optional[str] = None
    race: Optional[str] = None  # a race candidate: the raced task (Session.races) this build competes for
    # The run of its agent that serves it (the agent's run count + 1 when it was given the task):
    # an agent with fewer runs never started it (orch was killed in between), whatever its state.
    for_run: Optional[int] = None
    avoid_agents: list[str] = Field(default_factory=list)  # agents whose attempt changed nothing: someone else
    unchanged: int = 0  # runs that ended it without changing anything (implement, fix)
    # Its agents changed nothing, again and again: done without a change, for the reviewer to confirm or refuse.
    no_change: bool = False


class BlockerTransition(Model):
    state: BlockerState
    at: datetime = Field(default_factory=now)
    round: int = 0
    by: Optional[str] = None
    note: str = ""


class BlockerFiling(Model):
    """One reviewer reporting a blocker: the first report files it, a later one from another
    reviewer confirms it (review/blocker_ledger.py says by which rule the two were matched)."""

    reviewer: str  # agent id
    cli: str = ""  # the reviewer's CLI (cli or cli/variant)
    review: str = ""  # the review (R-n) it was reported in
    round: int = 0
    rule: Literal["first", "id", "similar", "same-place", "same-text"] = "first"
    score: Optional[float] = None  # the rule's measure: description similarity, or lines apart for same-place
    file: str = ""  # where this reviewer said it is
    line: Optional[int] = None
    description: str = ""  # in this reviewer's words (cut at 300 characters)
    at: datetime = Field(default_factory=now)


class Blocker(Model):
    id: str
    file: str = ""
    line: Optional[int] = None
    severity: Severity = Severity.HIGH
    description: str
    state: BlockerState = BlockerState.FOUND
    round_found: int = 0
    found_by: Optional[str] = None  # review id
    fix_task: Optional[str] = None
    history: list[BlockerTransition] = Field(default_factory=list)
    source: BlockerSource = BlockerSource.REVIEW
    tests: list[str] = Field(default_factory=list)  # verification: the failing tests it is about
    merge: Optional[str] = None  # verification: the task whose merge broke them (None: failing at the base)
    author: Optional[str] = None  # verification: the agent to fix it (that merge's author); None: the coordinator picks
    filed_by: list[BlockerFiling] = Field(default_factory=list)  # review: every reviewer that reported it, first filer first


class Verdict(str, Enum):
    APPROVE = "approve"
    CHANGES_REQUESTED = "changes_requested"


class ReviewBlocker(Model):
    id: Optional[str] = None
    file: str = ""
    line: Optional[int] = None
    severity: Severity = Severity.HIGH
    description: str


class Review(Model):
    """reviews/<id>.json"""

    id: str
    round: int
    reviewer: str  # agent id
    cli: str
    task: Optional[str] = None
    verdict: Verdict
    summary: str = ""
    blockers: list[ReviewBlocker] = Field(default_factory=list)
    verified: list[str] = Field(default_factory=list)  # blocker ids confirmed fixed
    reopened: list[str] = Field(default_factory=list)  # blocker ids still broken
    parse_method: Literal["json", "fenced-json", "loose", "none"] = "json"
    created_at: datetime = Field(default_factory=now)


class RoundRecord(Model):
    n: int
    started_at: datetime = Field(default_factory=now)
    ended_at: Optional[datetime] = None
    phase: str = "build"  # build, review, fix, verify, closed
    note: str = ""


class Team(Model):
    architect: str = "sim"
    implementer: str = "sim"
    reviewer: str = "sim"
    implementers: int = 1
    sim_formats: dict[str, str] = Field(default_factory=dict)  # role -> stream shape, for sim members
    # A review panel: several reviewers of different CLIs (cli or cli/variant) on the same commit.
    # Empty: one reviewer, `reviewer` above (with a panel it is the first member).
    reviewers: list[str] = Field(default_factory=list)
    race: int = 0  # every implement task is raced by this many implementers (0: only tasks the plan marks)
    racers: list[str] = Field(default_factory=list)  # the CLIs (cli or cli/variant) a race takes, in order


class MergeRecord(Model):
    """One merge of an agent's branch into the integration branch (or its conflict)."""

    task: str
    agent: str
    branch: str
    outcome: Literal["merged", "conflict", "already"]
    commit: Optional[str] = None  # the integration branch's tip after it
    files: list[str] = Field(default_factory=list)  # merged: what the branch changed; conflict: the conflicting files
    merge_task: Optional[str] = None  # conflict: the task that resolves it
    at: datetime = Field(default_factory=now)


class LandRecord(Model):
    """One `orch land`: the session's changes taken into the user's tree (and branch)."""

    mode: Literal["apply", "commit", "squash", "merge"]
    result: str  # the integration branch's tip that was taken
    branch: Optional[str] = None  # the user's branch (None: a detached HEAD)
    commit: Optional[str] = None  # commit/merge: the new commit on the user's branch
    files: list[str] = Field(default_factory=list)  # paths written in the working tree
    uncommitted: list[str] = Field(default_factory=list)  # commit/merge: changed, but holding the user's own work too
    at: datetime = Field(default_factory=now)


class WorktreeSeal(Model):
    """One of orch's worktrees as orch made it (worktrees/trust.py): where its git folder is,
    the branch it is on, and a digest of each file an agent could change to point orch's git
    elsewhere. orch's git runs there only while all of them still match."""

    git_dir: str  # its admin folder, <repository>/.git/worktrees/<name>
    branch: Optional[str] = None  # the branch checked out there (None: detached, the reviewer's)
    files: dict[str, str] = Field(default_factory=dict)  # ".git", "gitdir", "commondir", "config.worktree" -> sha256 ("" absent)


class GitRecord(Model):
    """How the session uses git: worktrees per writing agent, or the shared folder."""

    mode: Literal["worktrees", "shared"]
    reason: str = ""  # shared: why (not a repository, --no-worktrees, no git)
    repo: Optional[str] = None  # the top of the user's work tree
    subdir: str = ""  # the workspace inside it (agents work in the same subfolder of their worktree)
    base: Optional[str] = None  # the commit the session started from (HEAD plus uncommitted changes)
    head: Optional[str] = None  # the user's HEAD at start
    integration_branch: Optional[str] = None
    worktrees_dir: Optional[str] = None  # the folder holding <session>/<agent> worktrees
    merges: list[MergeRecord] = Field(default_factory=list)
    # The policy's [git] land when the session started: how `orch land` takes the result by default
    # ("branch" and "merge" as older orch versions wrote them: "branch" means "apply").
    land: Literal["apply", "commit", "squash", "merge", "branch"] = "apply"
    landed: Optional[str] = None  # `orch land`: the commit it made on the user's branch (None: not landed, or no commit)
    land_note: str = ""  # what the last `orch land` did, in words
    landings: list[LandRecord] = Field(default_factory=list)  # every `orch land`, in order
    common_dir: Optional[str] = None  # the repository's .git, named explicitly in every git call about a worktree
    config: dict[str, str] = Field(default_factory=dict)  # the repository's own config at start: "scope key" -> digest
    trees: dict[str, WorktreeSeal] = Field(default_factory=dict)  # worktree name (integration, agent id) -> its seal
    withheld: list[str] = Field(default_factory=list)  # the user's files that look like secrets: never committed, copied into agents' worktrees
    withheld_changes: list[str] = Field(default_factory=list)  # the user's tracked files whose uncommitted change holds a credential: left out of the base
    untracked: list[str] = Field(default_factory=list)  # the user's untracked files the base took in


class KnownFailure(Model):
    """A failing test a person declared out of scope (`orch verify --known-failure`, or the policy)."""

    test: str
    why: str = ""
    source: Literal["command", "policy"] = "command"
    at: datetime = Field(default_factory=now)


class VerifyRun(Model):
    """One run of the project's tests on one commit of the integration branch."""

    id: str  # V-n
    commit: str
    purpose: Literal["base", "tip", "bisect", "race"]
    state: VerifyRunState = VerifyRunState.PENDING
    state_reason: str = ""
    agent_run: Optional[int] = None  # the verifier agent's run that carries it out
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    command: list[str] = Field(default_factory=list)  # what ran (empty: no test command on this commit)
    command_source: str = ""  # "policy", or how it was found ("pytest.ini", "package.json" …)
    exit_code: Optional[int] = None
    timed_out: bool = False
    seconds: float = 0.0
    failing: list[str] = Field(default_factory=list)  # every failing test the output named
    files: dict[str, str] = Field(default_factory=dict)  # failing test → its file, where known
    first_error: str = ""  # the first line that says why, from the output
    tail: str = ""  # the end of the output (redacted)
    judged: bool = False  # its result has been compared, blamed and applied to the ledger
    race: Optional[str] = None  # purpose race: "<raced task>/<candidate agent>" whose trial merge it tests


class Bisect(Model):
    """Several merges landed between a passing and a failing run: which one broke which tests."""

    good: str  # the last commit known not to fail these tests
    bad: str  # a commit known to fail them
    tests: list[str]  # the newly failing tests being traced
    commits: list[str]  # the first-parent commits after good, up to bad (each a merge)
    lo: int = -1  # index in commits of the newest commit known good (-1: good itself)
    hi: int = 0  # index of the oldest commit known bad


class Verification(Model):
    """The verification gate of a session: its settings when it started and every run."""

    enabled: bool = True
    reason: str = ""  # why it is off, or where the command comes from
    command: list[str] = Field(default_factory=list)  # [verify] command (empty: found per commit)
    timeout_seconds: float = 600
    runs: list[VerifyRun] = Field(default_factory=list)
    bisect: Optional[Bisect] = None
    known_failures: list[KnownFailure] = Field(default_factory=list)

    def run(self, run_id: str) -> Optional[VerifyRun]:
        return next((r for r in self.runs if r.id == run_id), None)


class RaceCandidate(Model):
    """One implementer's build in a race: where it is, what it changed, what the tests said."""

    seat: str  # its CLI (cli or cli/variant)
    task: str  # its own implement task
    agent: Optional[str] = None  # the implementer hired for it
    branch: Optional[str] = None  # orch/<session>--race-<task>-<agent>: kept whatever the outcome
    commit: Optional[str] = None  # its work's commit on that branch (None: it committed nothing)
    files: list[str] = Field(default_factory=list)
    lines: int = 0  # lines added plus removed since the race's base: the size of its change
    ended: str = ""  # how its build ended: "finished", or why it is out (failed, time limit, over budget)
    trial: Optional[str] = None  # its branch merged onto `onto` (a commit on no branch), where its tests ran
    onto: Optional[str] = None  # the integration commit the trial merge was made onto
    conflicts: list[str] = Field(default_factory=list)  # the trial merge conflicted in these files
    run: Optional[str] = None  # the verification run (V-n) on its trial commit
    tests: str = ""  # "passed", "failed", "error", "no tests", "off" (the gate is off), "conflict", "" (not yet)
    failing: list[str] = Field(default_factory=list)  # the failing tests that count
    # Read by the reviewers when the tests tied it with the best (engine/race.py): their review
    # tasks, then the blockers they reported on it (None: not reviewed), one line per review.
    reviews: list[str] = Field(default_factory=list)
    blockers: Optional[int] = None
    review_notes: list[str] = Field(default_factory=list)
    rank: Optional[int] = None  # 1 = the judge's first choice
    outcome: str = ""  # "won: …", "lost: …" or "out: …", in words


class RacePick(Model):
    """A person's choice of winner (`orch pick TASK AGENT`), honoured when the race is decided."""

    agent: str
    why: str = ""
    at: datetime = Field(default_factory=now)


class Race(Model):
    """An implement task given to several implementers of different CLIs; the tests judge (engine/race.py)."""

    task: str  # the raced task: its id names the candidates' branches
    title: str = ""
    state: RaceState = RaceState.RUNNING
    state_reason: str = ""
    base: str  # the integration commit every candidate's worktree starts from
    started_at: datetime = Field(default_factory=now)
    deadline: datetime  # still-running candidates are stopped then, and the race is judged without them
    candidates: list[RaceCandidate] = Field(default_factory=list)
    pick: Optional[RacePick] = None
    winner: Optional[str] = None  # the winning candidate's agent
    decided_by: Literal["", "judge", "person"] = ""
    decided_at: Optional[datetime] = None
    merged_at: Optional[datetime] = None

    def candidate(self, agent_or_task: str) -> Optional[RaceCandidate]:
        return next((c for c in self.candidates if agent_or_task in (c.agent, c.task)), None)


class VerdictRecord(Model):
    """Each recorded review in short, for the panel's side-by-side view (reviews/ holds it whole)."""

    review: str
    round: int
    task: Optional[str] = None
    kind: str = "review"  # review | verify
    reviewer: str
    cli: str
    verdict: Verdict
    blockers: list[str] = Field(default_factory=list)  # ledger ids it reported (filed or confirmed)
    filed: list[str] = Field(default_factory=list)  # of those, the ones it filed first
    verified: list[str] = Field(default_factory=list)
    reopened: list[str] = Field(default_factory=list)
    parse_method: str = ""
    at: datetime = Field(default_factory=now)


class Session(Model):
    """session.json"""

    id: str
    goal: str = ""
    state: SessionState = SessionState.ACTIVE
    workspace: str  # the folder agents work in
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    ended_at: Optional[datetime] = None
    coordinated: bool = False  # created by `orch start`/`run`: the coordinator plans its work
    team: Team = Field(default_factory=Team)
    max_rounds: int = 3
    round: int = 0
    rounds: list[RoundRecord] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    blockers: list[Blocker] = Field(default_factory=list)
    todo: Optional[str] = None  # the conductor's one in-progress item
    stop_reason: str = ""
    continued_at: Optional[datetime] = None  # when a person last continued it (`orch resume`, `orch retry`)
    next_seq: dict[str, int] = Field(default_factory=dict)  # per-prefix id counters
    spend_warned: list[str] = Field(default_factory=list)  # budget limits already warned about (spend/gate.py)
    git: Optional[GitRecord] = None  # None: a session from before worktrees, or not coordinated
    verification: Optional[Verification] = None  # the project's tests on each integration commit (worktrees only)
    races: list[Race] = Field(default_factory=list)  # implement tasks raced by several implementers (engine/race.py)
    verdicts: list[VerdictRecord] = Field(default_factory=list)  # every reviewer's verdict, in order
    # Agents that take no more work, and why: a race's losers (their worktree holds the losing
    # build), a panel member whose CLI failed its tasks (the panel goes on without it).
    benched: dict[str, str] = Field(default_factory=dict)

    def race(self, task_id: str) -> Optional[Race]:
        return next((r for r in self.races if r.task == task_id), None)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        if not is_valid_id(v):
            raise ValueError(f"not a valid session id: {v!r}")
        return v

    def task(self, task_id: str) -> Optional[Task]:
        return next((t for t in self.tasks if t.id == task_id), None)

    def blocker(self, blocker_id: str) -> Optional[Blocker]:
        return next((b for b in self.blockers if b.id == blocker_id), None)

    def new_id(self, prefix: str) -> str:
        n = self.next_seq.get(prefix, 0) + 1
        self.next_seq[prefix] = n
        return f"{prefix}-{n}"


# --------------------------------------------------------------------------- the event log


class EventKind(str, Enum):
    SESSION_CREATED = "session.created"
    SESSION_STATE = "session.state"
    ROUND_STARTED = "round.started"
    ROUND_CLOSED = "round.closed"
    AGENT_LAUNCHED = "agent.launched"
    AGENT_RESUMED = "agent.resumed"
    AGENT_STATE = "agent.state"
    AGENT_EXITED = "agent.exited"
    AGENT_OUTPUT = "agent.output"  # one normalized AgentEvent, in data
    AGENT_ABORTED = "agent.aborted"
    AGENT_PARKED = "agent.parked"  # a usage or rate limit: parked until resume_at
    TASK_QUEUED = "task.queued"
    TASK_ASSIGNED = "task.assigned"
    TASK_FINISHED = "task.finished"
    TASK_STATE = "task.state"
    REVIEW_RECORDED = "review.recorded"
    BLOCKER_FILED = "blocker.filed"
    BLOCKER_STATE = "blocker.state"
    DENIAL = "denial"
    RECOVERY = "recovery"
    POLICY_BLOCKED = "policy.blocked"
    POLICY_DECISION = "policy.decision"  # orch allow / orch deny
    BUDGET_WARNING = "budget.warning"  # spend crossed the policy's warn_at share of a limit
    BUDGET_REACHED = "budget.reached"  # a limit was reached: the session pauses
    TASK_WAITING = "task.waiting"  # a queued task held back by a concurrency cap
    NOTIFY = "notify"  # a notification was queued for sending (spool), or its sending failed
    GIT_SET_UP = "git.set_up"  # how the session uses git, said once at its start (worktrees or shared)
    GIT_MERGED = "git.merged"  # an agent's branch merged into the integration branch
    GIT_CONFLICT = "git.conflict"  # that merge conflicted: a merge task resolves it
    GIT_LANDED = "git.landed"  # `orch land` took the result into the user's tree (and branch)
    VERIFY_STATE = "verify.state"  # a verification run changed state (started, finished with its result, error)
    VERIFY_BLAME = "verify.blame"  # newly failing tests traced to the merge that broke them (or to the base)
    VERIFY_KNOWN = "verify.known"  # a person declared a failing test out of scope, or took it back
    RACE_STARTED = "race.started"  # an implement task went to several implementers at once
    RACE_STATE = "race.state"  # a race was tested, decided (and why), merged, or failed
    RACE_PICKED = "race.picked"  # a person chose a race's winner (`orch pick`)
    GIT_REFUSED = "git.refused"  # an agent's worktree changed since orch made it: orch's git refused it, the task went back
    DECISION = "decision"  # the coordinator's reasoning, one per action
    REPORT_WRITTEN = "report.written"
    HOOK = "hook"
    NOTE = "note"


class Event(Model):
    """One line of events.jsonl. Its id is its byte offset in the file (not stored)."""

    ts: datetime = Field(default_factory=now)
    kind: EventKind
    agent: Optional[str] = None
    task: Optional[str] = None
    round: Optional[int] = None
    reason: Optional[str] = None
    data: dict[str, Any] = Field(default_factory=dict)


class WaitCursor(Model):
    """wait.json: where the previous `orch wait` stopped reading the event log."""

    events_offset: int = 0
    at: Optional[datetime] = None
    idle_reported: dict[str, str] = Field(default_factory=dict)  # agent -> state_since seen
    # Said once, not again at the same point of the log: why the last wait returned, the log
    # offset it had read to then, and the clock-driven steps already reported as due.
    told: str = ""
    told_at: int = -1
    dues_told: list[str] = Field(default_factory=list)


class NotifyCursor(Model):
    """notify.json: how far notifications have read the event log (notify/consumer.py)."""

    events_offset: int = 0  # every event before this byte has been looked at, once
    at: Optional[datetime] = None


class AuditEntry(Model):
    """audit.jsonl: one line per permission change, automatic or by hand."""

    ts: datetime = Field(default_factory=now)
    agent: str  # "session" for a change that concerns the whole session (a budget)
    cli: str = ""
    role: Optional[Role] = None
    action: Literal["escalated", "blocked", "allowed", "denied", "restored",
                    "budget_paused", "budget_resumed", "budget_raised"]
    denied_tool: str = ""
    denied_target: Optional[str] = None
    rung_before: Optional[str] = None
    rung_after: Optional[str] = None
    rule: str = ""  # the policy rule that allowed or forbade it
