"""How a run ended: the verdict on a run whose process is gone, from what it left behind.

Pure: given the run, its accumulated verdict, its denials, its exit record and the tail of
its stderr, return the agent's next state, the reason in words, and the failure kind.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

from ...adapters.limits import BILLING, is_billing_text
from ...core.models import AgentState, Denial, EndRequest, FailureKind, Outcome, Run, RunAccumulator

QUOTA_WORDS = ("429", "rate limit", "rate_limit", "quota", "resource_exhausted", "too many requests",
               "usage limit", "insufficient_quota")

_STDERR_NOISE = re.compile(
    r"^(reading additional input from stdin|warning: 256-color|ripgrep is not available|\[startup\]|"
    r"at |[\s{}\[\](),;]*$)", re.I)
_STDERR_TELLING = re.compile(r"error|fail|denied|refused|not found|no such|exception|invalid|unauthori|"
                             r"forbidden|quota|rate.limit|cannot|could not|exiting", re.I)

#: Notes older orch versions wrote instead of an EndRequest (sessions on disk keep working).
_LEGACY_NOTES = (("never started", EndRequest.NEVER_STARTED), ("nudge", EndRequest.STALL),
                 ("limit", EndRequest.WALL_TIME), ("abort requested", EndRequest.ABORT))
_REQUESTED = {EndRequest.NEVER_STARTED: FailureKind.NEVER_STARTED, EndRequest.STALL: FailureKind.STALLED,
              EndRequest.WALL_TIME: FailureKind.WALL_TIME, EndRequest.BUDGET: FailureKind.BUDGET}


class RunVerdict(NamedTuple):
    state: AgentState
    reason: str
    failure: Optional[FailureKind]


def telling_line(tail: str) -> str:
    """The stderr line that best says why a run failed (not a banner, not a stack frame)."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    useful = [line for line in lines if not _STDERR_NOISE.match(line)]
    for line in reversed(useful):
        if _STDERR_TELLING.search(line):
            return line
    return useful[-1] if useful else ""


def limit_reason(limit, fallback: str = "") -> str:
    """In words: which limit, and the CLI's own words."""
    if limit is None:
        return f"rate-limited or out of quota: {fallback[:200]}"
    what = {"usage": "usage limit", "rate": "rate limit"}.get(limit.kind or "", "usage or rate limit")
    scope = f", {limit.scope.replace('_', '-')} window" if limit.scope else ""
    return f"{what}{scope}: {limit.message[:200] or fallback[:200]}"


def end_request_of(run: Run) -> Optional[EndRequest]:
    """Why orch ended the run, if it did (the enum; older runs only have the note)."""
    if run.end_request is not None:
        return run.end_request
    for prefix, request in _LEGACY_NOTES:
        if run.note and run.note.startswith(prefix):
            return request
    return None


def result_is_complete(acc: RunAccumulator) -> bool:
    """The stream holds the CLI's own terminal success result (not one orch inferred at exit)."""
    return acc.outcome is Outcome.SUCCESS and acc.output


def classify_run(run: Run, acc: RunAccumulator, denials: list[Denial], exit_code: Optional[int],
                 malformed: int, stderr_tail: str, aborted: bool, lost: Optional[str] = None) -> RunVerdict:
    """The agent's state after this run, why, and (when it failed) the kind of failure.

    `lost`: the runner's reason when the run's process can never report its exit (the
    machine it ran on died). Such a run failed as lost even when the stream holds a complete
    result: its work was on that machine and never came home (the exit is recorded only after
    the commits are taken back), and its CLI session went with it."""
    request = end_request_of(run)
    if lost and exit_code is None and request is not EndRequest.ABORT and not aborted:
        return RunVerdict(AgentState.FAILED, f"lost: {lost}", FailureKind.LOST)
    if exit_code is None and request is EndRequest.NEVER_STARTED and result_is_complete(acc):
        request = None  # no pid record, but a complete result: it started, and it finished
    if request in _REQUESTED:
        return RunVerdict(AgentState.FAILED, run.note or request.value, _REQUESTED[request])
    if request is EndRequest.ABORT or aborted:
        return RunVerdict(AgentState.ABORTED, run.note or "aborted", FailureKind.ABORTED)
    if denials:
        what = "; ".join(f"{d.tool} {d.target or ''}".strip() for d in denials[:3])
        return RunVerdict(AgentState.DENIED, f"{len(denials)} denied call(s): {what}", FailureKind.DENIED)
    outcome = acc.outcome or Outcome.INCOMPLETE
    if exit_code == 0 and outcome is Outcome.SUCCESS and acc.limit is None:
        return RunVerdict(AgentState.IDLE, "finished its task", None)
    if exit_code is None and result_is_complete(acc):
        # The supervisor was lost, but the CLI said it finished: running it again would
        # spend the tokens and apply the side effects twice.
        return RunVerdict(AgentState.IDLE, "finished its task (exit code unknown: its supervisor was lost)", None)
    errors = acc.errors
    blob = " ".join(errors + [acc.final_text, stderr_tail]).lower()
    code = "unknown (its supervisor was lost)" if exit_code is None else str(exit_code)
    if (acc.limit is not None and acc.limit.kind == BILLING) or (acc.limit is None and is_billing_text(blob)):
        # Out of credit: no reset will come, so no timed retry — another CLI or a person.
        words = (acc.limit.message if acc.limit is not None else "") or (errors or [stderr_tail])[0]
        return RunVerdict(AgentState.FAILED, f"out of credit (billing): {words[:200]}", FailureKind.BILLING)
    if acc.limit is not None or any(w in blob for w in QUOTA_WORDS):
        # Not a failure: the work waits for the limit to reset (or goes to another CLI).
        return RunVerdict(AgentState.PARKED, limit_reason(acc.limit, (errors or [stderr_tail])[0]), FailureKind.QUOTA)
    if not acc.output and malformed:
        kind, reason = FailureKind.GARBAGE, f"printed no valid output ({malformed} malformed lines), exit {code}"
    elif not acc.output:
        kind, reason = FailureKind.NO_OUTPUT, f"exited with code {code} without printing anything"
    elif outcome is Outcome.MAX_TURNS:
        kind, reason = FailureKind.MAX_TURNS, "stopped at its turn limit"
    elif outcome is Outcome.ERROR:
        kind, reason = FailureKind.ERROR, f"error: {(errors or [acc.final_text])[0][:200]}"
    elif exit_code is None:
        kind, reason = FailureKind.LOST, "the process is gone and its exit code is unknown (its supervisor was killed)"
    else:
        kind, reason = FailureKind.CRASH, f"exited with code {code} before finishing"
    telling = telling_line(stderr_tail)
    if telling and kind in (FailureKind.GARBAGE, FailureKind.NO_OUTPUT, FailureKind.CRASH, FailureKind.LOST,
                            FailureKind.ERROR):
        reason += f" — stderr: {telling[:200]}"
    return RunVerdict(AgentState.FAILED, reason, kind)
