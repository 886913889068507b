"""The blocker ledger: every blocker's life from found to verified, across rounds.

    found → assigned → fixed → verified
                ↑        ↓        ↓
                └─ reopened ←─────┘          (and assigned → found when a fix task is dropped)

The functions change `session.blockers` in memory and return what changed; the
coordinator calls them inside `store.edit_session()` (the session lock) and turns the
returned values into `blocker.filed` / `blocker.state` events. Every state change goes
through lifecycle.move (an illegal one raises) and leaves a BlockerTransition in the
blocker's history. Calls are idempotent: replaying the same review or task after a
crash changes nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Iterable, Optional, Sequence

from ..core.errors import NotFound
from ..core.lifecycle import IllegalTransition, move
from ..core.models import (
    Blocker, BlockerFiling, BlockerSource, BlockerState, BlockerTransition, Review, ReviewBlocker, Session, Severity,
    Verdict,
)
from .verdict_words import clean_path, ledger_id, normalize_words

SIMILAR_DESCRIPTION = 0.6  # word-overlap or sequence similarity at which two reports are one problem
SIMILAR_DESCRIPTION_NEAR_LINE = 0.45  # the bar when both name the same file within NEAR_LINES
NEAR_LINES = 5
# Two reviewers of a panel describe one defect in their own words; two more rules match their
# reports (never two reports of one reviewer, which meant two problems). REVIEW_SYSTEM_SPEC.md
# gives the reasons for both numbers.
SAME_PLACE_LINES = 3  # "same-place": the same file, lines at most this far apart (the def and its faulty line)
SAME_TEXT_JACCARD = 0.7  # "same-text": near-identical descriptions, wherever they point
_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
_STOP_WORDS = frozenset(
    "a an the is are was be to of in on for at by with and or it its this that not no as from "
    "when if should must does do".split()
)


@dataclass(frozen=True)
class BlockerChange:
    """One state change of one blocker (before is None when the blocker was just filed)."""

    blocker: str
    before: Optional[BlockerState]
    after: BlockerState
    round: int
    by: Optional[str]
    note: str

    def event_data(self) -> dict[str, Any]:
        """The `data` of the blocker.state event that records this change."""
        return {
            "blocker": self.blocker,
            "from": self.before.value if self.before else None,
            "to": self.after.value,
            "by": self.by,
            "note": self.note,
        }


@dataclass
class VerificationOutcome:
    """What a verdict did to the fixed blockers, and what it left undecided."""

    verified: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)  # still fixed after this review: ask again
    ignored: list[str] = field(default_factory=list)  # "B-9: no such blocker", one reason per id
    changes: list[BlockerChange] = field(default_factory=list)


@dataclass
class ReviewLedgerUpdate:
    """Everything one review did to the ledger (file_blockers, then apply_verification)."""

    filed: list[Blocker]
    verification: VerificationOutcome


# --------------------------------------------------------------------------- matching


def _number(blocker_id: str) -> tuple[str, int]:
    head, _, tail = blocker_id.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (blocker_id, 0)


def _words(text: str) -> list[str]:
    return [w for w in normalize_words(text).split() if w not in _STOP_WORDS]


def _identifiers(text: str) -> set[str]:
    """Code names in a description: `quoted`, called(), snake_case, camelCase."""
    found = {m.strip().lower().rstrip("()") for m in re.findall(r"`([^`]+)`", text)}
    found |= {m.lower() for m in re.findall(r"\b([A-Za-z_]\w*)\(", text)}
    found |= {m.lower() for m in re.findall(r"\b([A-Za-z]\w*_\w+|[a-z]+[A-Z]\w*)\b", text)}
    return {f for f in found if f}


def word_jaccard(a: str, b: str) -> float:
    """Overlap of the content words of two descriptions: |A ∩ B| / |A ∪ B| after dropping case,
    punctuation and stop words (0 when either has none)."""
    set_a, set_b = set(_words(a)), set(_words(b))
    return len(set_a & set_b) / len(set_a | set_b) if set_a and set_b else 0.0


def names_disagree(a: str, b: str) -> bool:
    """Both descriptions name code and share no name: two problems ("`parse()`" vs "`save()`")."""
    names_a, names_b = _identifiers(a), _identifiers(b)
    return bool(names_a and names_b and not names_a & names_b)


def similar_descriptions(a: str, b: str, threshold: float = SIMILAR_DESCRIPTION) -> bool:
    """True when two blocker descriptions read as the same problem.

    Word overlap or word-order similarity must reach the threshold, and when both name
    code (`parse()`, load_config) they must share a name: "missing null check in
    `parse()`" and "missing null check in `save()`" are two problems.
    """
    words_a, words_b = _words(a), _words(b)
    if not words_a or not words_b:
        return words_a == words_b
    names_a, names_b = _identifiers(a), _identifiers(b)
    if names_a and names_b and not names_a & names_b:
        return False
    set_a, set_b = set(words_a), set(words_b)
    overlap = len(set_a & set_b) / len(set_a | set_b)
    sequence = SequenceMatcher(None, words_a, words_b, autojunk=False).ratio()
    return max(overlap, sequence) >= threshold


def same_file(a: str, b: str) -> bool:
    """True when two paths name the same file (one may be absolute or carry a ./ prefix)."""
    a, b = clean_path(a), clean_path(b)
    return a == b or (bool(a) and bool(b) and (a.endswith("/" + b) or b.endswith("/" + a)))


def is_open(blocker: Blocker) -> bool:
    """A blocker is open until its fix is verified (by a reviewer, or by the tests for the verifier's)."""
    return blocker.state != BlockerState.VERIFIED


def reviewer_verifies(blocker: Blocker) -> bool:
    """A reviewer's blocker is verified by a reviewer; the verifier's by a green run of the tests."""
    return blocker.source is not BlockerSource.VERIFICATION


@dataclass(frozen=True)
class Match:
    """A reported blocker taken for a ledger blocker, and the rule that said so."""

    blocker: Blocker
    rule: str  # "id" | "similar" | "same-place" | "same-text"
    score: Optional[float] = None  # similarity (similar, same-text) or lines apart (same-place)


def _reported_by(blocker: Blocker, reviewer: Optional[str]) -> bool:
    return reviewer is not None and any(f.reviewer == reviewer for f in blocker.filed_by)


def _similar(blocker: Blocker, reported: ReviewBlocker) -> Optional[float]:
    """The original rule: same file and a similar description (a lower bar within NEAR_LINES)."""
    if not same_file(blocker.file, reported.file):
        return None
    near = blocker.line is not None and reported.line is not None and abs(blocker.line - reported.line) <= NEAR_LINES
    threshold = SIMILAR_DESCRIPTION_NEAR_LINE if near else SIMILAR_DESCRIPTION
    if not similar_descriptions(blocker.description, reported.description, threshold):
        return None
    words_a, words_b = _words(blocker.description), _words(reported.description)
    return round(max(word_jaccard(blocker.description, reported.description),
                     SequenceMatcher(None, words_a, words_b, autojunk=False).ratio()), 3)


def _same_place(blocker: Blocker, reported: ReviewBlocker) -> Optional[float]:
    """Panel rule: the same file, lines at most SAME_PLACE_LINES apart, no disagreeing code names."""
    if blocker.line is None or reported.line is None or not blocker.file or not same_file(blocker.file, reported.file):
        return None
    apart = abs(blocker.line - reported.line)
    if apart > SAME_PLACE_LINES or names_disagree(blocker.description, reported.description):
        return None
    return float(apart)


def _same_text(blocker: Blocker, reported: ReviewBlocker) -> Optional[float]:
    """Panel rule: near-identical descriptions (word Jaccard ≥ SAME_TEXT_JACCARD), files not
    contradicting each other (the same, or one not given), no disagreeing code names."""
    if blocker.file and reported.file and not same_file(blocker.file, reported.file):
        return None
    score = word_jaccard(blocker.description, reported.description)
    if score < SAME_TEXT_JACCARD or names_disagree(blocker.description, reported.description):
        return None
    return round(score, 3)


def match_blocker(session: Session, reported: ReviewBlocker, reviewer: Optional[str] = None) -> Optional[Match]:
    """The ledger blocker a reported one is, with the rule that matched (the first rule that
    matches any blocker wins, blockers in ledger order):

    1. `id`: its id names a ledger blocker (any state);
    2. `similar`: an open blocker in the same file with a similar description;
    3. `same-place`: an open blocker another reviewer reported, in the same file within
       SAME_PLACE_LINES lines;
    4. `same-text`: an open blocker another reviewer reported with a near-identical description.

    Rules 3 and 4 join reports of *different* reviewers (a panel): two reports of one reviewer
    in the same place are two problems. Deterministic: the same ledger and report always give
    the same answer."""
    if reported.id:
        # exact ids only: the parser already spells B3/b-3 as B-3, and a reviewer's own
        # labels ("1", "N1") must never be taken for ledger blockers
        named = session.blocker(reported.id)
        if named is not None:
            return Match(named, "id")
    candidates = [b for b in session.blockers if is_open(b)]
    for rule, test in (("similar", _similar), ("same-place", _same_place), ("same-text", _same_text)):
        for blocker in candidates:
            if rule != "similar" and (not blocker.filed_by or _reported_by(blocker, reviewer)):
                continue  # the panel rules join different reviewers' reports of review blockers only
            score = test(blocker, reported)
            if score is not None:
                return Match(blocker, rule, score)
    return None


def matching_blocker(session: Session, reported: ReviewBlocker, reviewer: Optional[str] = None) -> Optional[Blocker]:
    """The ledger blocker a reported one is (see match_blocker), or None."""
    found = match_blocker(session, reported, reviewer)
    return found.blocker if found is not None else None


def filers(blocker: Blocker) -> list[str]:
    """The reviewers that reported a blocker, first filer first."""
    return list(dict.fromkeys(f.reviewer for f in blocker.filed_by))


# --------------------------------------------------------------------------- changes


def _require(session: Session, blocker_id: str) -> Blocker:
    blocker = session.blocker(blocker_id)
    if blocker is None:
        raise NotFound(f"no blocker {blocker_id!r} in session {session.id}")
    return blocker


def _change(blocker: Blocker, new: BlockerState, round: int, by: Optional[str], note: str) -> BlockerChange:
    before = blocker.state
    blocker.state = move(before, new, what=f"blocker {blocker.id}")
    blocker.history.append(BlockerTransition(state=new, round=round, by=by, note=note))
    return BlockerChange(blocker=blocker.id, before=before, after=new, round=round, by=by, note=note)


def _task_actor(session: Session, task_id: str) -> str:
    task = session.task(task_id)
    return task.agent if task is not None and task.agent else task_id


def file_blockers(session: Session, review: Review) -> list[Blocker]:
    """File the review's new blockers as B-n (found); a report matching a ledger blocker is not filed again.

    Each reported blocker in `review.blockers` gets the ledger id it was filed as or
    matched, so record the review after this call and the stored verdict names B-ids.
    """
    if review.parse_method == "none":
        return []
    filed: list[Blocker] = []
    for reported in review.blockers:
        found = match_blocker(session, reported, review.reviewer)
        if found is not None:
            reported.id = found.blocker.id
            _confirm(found, reported, review)
            continue
        blocker_id = session.new_id("B")
        location = reported.file + (f":{reported.line}" if reported.file and reported.line else "")
        note = f"found in review {review.id}" + (f" at {location}" if location else "")
        blocker = Blocker(
            id=blocker_id, file=reported.file, line=reported.line, severity=reported.severity,
            description=reported.description, state=BlockerState.FOUND, round_found=review.round,
            found_by=review.id,
            history=[BlockerTransition(state=BlockerState.FOUND, round=review.round, by=review.reviewer, note=note)],
            filed_by=[_filing(reported, review, "first", None)],
        )
        session.blockers.append(blocker)
        reported.id = blocker_id
        filed.append(blocker)
    return filed


def _filing(reported: ReviewBlocker, review: Review, rule: str, score: Optional[float]) -> BlockerFiling:
    return BlockerFiling(reviewer=review.reviewer, cli=review.cli, review=review.id, round=review.round, rule=rule,
                         score=score, file=reported.file, line=reported.line,
                         description=" ".join(reported.description.split())[:300])


def _confirm(found: Match, reported: ReviewBlocker, review: Review) -> None:
    """Another reviewer's report of a ledger blocker: recorded once per reviewer, with the rule that
    matched; it fills in a place the first report lacked, and raises the severity to the higher one."""
    blocker = found.blocker
    if blocker.source is not BlockerSource.REVIEW or _reported_by(blocker, review.reviewer):
        return
    blocker.filed_by.append(_filing(reported, review, found.rule, found.score))
    if not blocker.file and reported.file:
        blocker.file, blocker.line = reported.file, reported.line
    elif blocker.line is None and reported.line is not None and same_file(blocker.file, reported.file):
        blocker.line = reported.line
    if _SEVERITY_RANK[reported.severity] > _SEVERITY_RANK[blocker.severity]:
        blocker.severity = reported.severity


def assign_blockers(session: Session, blocker_ids: Iterable[str], task_id: str, round: int) -> list[BlockerChange]:
    """Give blockers (found or reopened) to a fix task; one already on that task is left as it is."""
    changes: list[BlockerChange] = []
    for blocker_id in blocker_ids:
        blocker = _require(session, blocker_id)
        if blocker.state == BlockerState.ASSIGNED and blocker.fix_task == task_id:
            continue
        note = f"fix task {task_id}"
        if blocker.state == BlockerState.ASSIGNED:
            note += f" (taken from {blocker.fix_task})"
        changes.append(_change(blocker, BlockerState.ASSIGNED, round, _task_actor(session, task_id), note))
        blocker.fix_task = task_id
    return changes


def release_blockers(session: Session, blocker_ids: Iterable[str], round: int, reason: str) -> list[BlockerChange]:
    """Take assigned blockers back to found (their fix task was cancelled), ready to assign again."""
    changes: list[BlockerChange] = []
    for blocker_id in blocker_ids:
        blocker = _require(session, blocker_id)
        if blocker.state == BlockerState.FOUND:
            continue
        changes.append(_change(blocker, BlockerState.FOUND, round, blocker.fix_task, f"released: {reason}"))
        blocker.fix_task = None
    return changes


def mark_fixed(session: Session, blocker_ids: Iterable[str], task_id: str, round: int) -> list[BlockerChange]:
    """Record that a fix task finished its blockers (assigned → fixed); an already fixed one is left."""
    changes: list[BlockerChange] = []
    for blocker_id in blocker_ids:
        blocker = _require(session, blocker_id)
        if blocker.state == BlockerState.FIXED:
            continue
        if blocker.state != BlockerState.ASSIGNED:  # found/reopened → fixed is the tests' move, not a fix task's
            raise IllegalTransition(f"blocker {blocker.id}: a fix task cannot mark a {blocker.state.value} blocker "
                                    "fixed (it was never assigned to one)")
        note = f"fixed by task {task_id}"
        if blocker.fix_task and blocker.fix_task != task_id:
            note += f" (it was assigned to {blocker.fix_task})"
        changes.append(_change(blocker, BlockerState.FIXED, round, _task_actor(session, task_id), note))
        blocker.fix_task = task_id
    return changes


def apply_verification(session: Session, review: Review, asked: Optional[Sequence[str]] = None) -> VerificationOutcome:
    """Apply a verdict's verified/reopened ids to fixed blockers; see REVIEW_SYSTEM_SPEC for the rules.

    `asked` is the ids the reviewer was asked to verify; by default the `blockers` of the
    review's task. It matters only for an approval that names no ids, which verifies
    every asked-about blocker that is fixed.
    """
    outcome = VerificationOutcome()
    if review.parse_method == "none":
        outcome.unverified = [b.id for b in session.blockers if b.state == BlockerState.FIXED]
        return outcome

    reopen: list[str] = [ledger_id(i) or i for i in review.reopened]
    reported_again: list[str] = []
    for reported in review.blockers:
        existing = matching_blocker(session, reported, review.reviewer)
        # a verified blocker matches only when named by id: similar text may be a new problem
        if existing is not None and existing.state in (BlockerState.FIXED, BlockerState.VERIFIED) \
                and reviewer_verifies(existing):
            reported_again.append(existing.id)
    reopen += [i for i in reported_again if i not in reopen]

    verify: list[str] = []
    for blocker_id in (ledger_id(i) or i for i in review.verified):
        if blocker_id in reopen:
            outcome.ignored.append(f"{blocker_id}: named as verified and as still broken; reopened wins")
        elif blocker_id not in verify:
            verify.append(blocker_id)
    if review.verdict == Verdict.APPROVE and not review.verified and not reopen:
        if asked is None:
            task = session.task(review.task) if review.task else None
            asked = task.blockers if task is not None else []
        verify = [i for i in asked if (b := session.blocker(i)) is not None and b.state == BlockerState.FIXED]

    summary = " ".join(review.summary.split())[:200]
    tests_decide = [i for i in reopen + verify if (b := session.blocker(i)) is not None and not reviewer_verifies(b)]
    for blocker_id in dict.fromkeys(tests_decide):
        outcome.ignored.append(f"{blocker_id}: the project's tests decide it (a green run), not a review")
    reopen = [i for i in reopen if i not in tests_decide]
    verify = [i for i in verify if i not in tests_decide]
    for blocker_id in reopen:
        blocker = session.blocker(blocker_id)
        if blocker is None:
            outcome.ignored.append(f"{blocker_id}: no such blocker")
        elif blocker.state in (BlockerState.FIXED, BlockerState.VERIFIED):
            how = "reported again" if blocker_id in reported_again and blocker_id not in review.reopened else "reopened"
            note = f"{how} by review {review.id}" + (f": {summary}" if summary else "")
            outcome.changes.append(_change(blocker, BlockerState.REOPENED, review.round, review.reviewer, note))
            outcome.reopened.append(blocker_id)
        elif blocker.state != BlockerState.REOPENED:
            outcome.ignored.append(f"{blocker_id}: {blocker.state.value}, not fixed yet")
    for blocker_id in verify:
        blocker = session.blocker(blocker_id)
        if blocker is None:
            outcome.ignored.append(f"{blocker_id}: no such blocker")
        elif blocker.state == BlockerState.FIXED:
            how = "verified" if review.verified else "verified by an approval naming no ids"
            note = f"{how} in review {review.id}"
            outcome.changes.append(_change(blocker, BlockerState.VERIFIED, review.round, review.reviewer, note))
            outcome.verified.append(blocker_id)
        elif blocker.state != BlockerState.VERIFIED:
            outcome.ignored.append(f"{blocker_id}: {blocker.state.value}, nothing to verify")
    outcome.unverified = [b.id for b in session.blockers if b.state == BlockerState.FIXED]
    return outcome


# --------------------------------------------------------------------------- the verifier's blockers


def file_test_failure(session: Session, *, tests: Sequence[str], file: str, description: str, merge: Optional[str],
                      author: Optional[str], run_id: str, round: int) -> Blocker:
    """File the verifier's blocker: tests a merge broke (assigned to its author), or tests
    failing at the session's base (merge None: work for the team, assigned by the coordinator)."""
    blocker_id = session.new_id("B")
    note = (f"found by run {run_id}: {merge}'s merge broke {len(tests)} test(s)" if merge
            else f"found by run {run_id}: {len(tests)} test(s) fail at the session's base")
    blocker = Blocker(
        id=blocker_id, file=file, line=None, severity=Severity.HIGH, description=description,
        state=BlockerState.FOUND, round_found=round, found_by=run_id, source=BlockerSource.VERIFICATION,
        tests=list(tests), merge=merge, author=author,
        history=[BlockerTransition(state=BlockerState.FOUND, round=round, by="verifier", note=note)],
    )
    session.blockers.append(blocker)
    return blocker


def resolve_by_tests(session: Session, blocker_id: str, note: str, round: int) -> list[BlockerChange]:
    """A green run shows the verifier's blocker fixed: fixed → verified; found or reopened (no fix
    task held it: later work fixed it) → fixed → verified. Any other state changes nothing."""
    blocker = _require(session, blocker_id)
    if reviewer_verifies(blocker) or blocker.state in (BlockerState.ASSIGNED, BlockerState.VERIFIED):
        return []
    changes = []
    if blocker.state in (BlockerState.FOUND, BlockerState.REOPENED):
        changes.append(_change(blocker, BlockerState.FIXED, round, "verifier", f"fixed by later work: {note}"))
    changes.append(_change(blocker, BlockerState.VERIFIED, round, "verifier", note))
    return changes


def reopen_by_tests(session: Session, blocker_id: str, note: str, round: int) -> list[BlockerChange]:
    """The tests still fail after the verifier's blocker was fixed: fixed → reopened."""
    blocker = _require(session, blocker_id)
    if reviewer_verifies(blocker) or blocker.state is not BlockerState.FIXED:
        return []
    return [_change(blocker, BlockerState.REOPENED, round, "verifier", note)]


def apply_review(session: Session, review: Review, asked: Optional[Sequence[str]] = None) -> ReviewLedgerUpdate:
    """Everything a recorded review does to the ledger: file its new blockers, apply its verification."""
    filed = file_blockers(session, review)
    return ReviewLedgerUpdate(filed=filed, verification=apply_verification(session, review, asked))


# --------------------------------------------------------------------------- reading the ledger


def open_blockers(session: Session) -> list[Blocker]:
    """Blockers not yet verified, in filing order."""
    return sorted((b for b in session.blockers if is_open(b)), key=lambda b: _number(b.id))


def blockers_in(session: Session, *states: BlockerState) -> list[Blocker]:
    """Blockers in any of the given states, in filing order."""
    return sorted((b for b in session.blockers if b.state in states), key=lambda b: _number(b.id))


def ledger_rows(session: Session) -> list[dict[str, Any]]:
    """One JSON-ready row per blocker for reports: where, how bad, its path through the states."""
    rows = []
    for blocker in sorted(session.blockers, key=lambda b: _number(b.id)):
        history = [
            {"state": t.state.value, "round": t.round, "by": t.by, "note": t.note, "at": t.at.isoformat()}
            for t in blocker.history
        ]
        verified_round = next(
            (t.round for t in reversed(blocker.history) if t.state == BlockerState.VERIFIED), None
        ) if blocker.state == BlockerState.VERIFIED else None
        rows.append({
            "id": blocker.id,
            "file": blocker.file,
            "line": blocker.line,
            "location": blocker.file + (f":{blocker.line}" if blocker.file and blocker.line else ""),
            "severity": blocker.severity.value,
            "description": blocker.description,
            "state": blocker.state.value,
            "resolved": blocker.state == BlockerState.VERIFIED,
            "round_found": blocker.round_found,
            "round_verified": verified_round,
            "found_by": blocker.found_by,
            "fix_task": blocker.fix_task,
            "times_reopened": sum(1 for t in blocker.history if t.state == BlockerState.REOPENED),
            "source": blocker.source.value,
            "filed_by": [f.model_dump(mode="json") for f in blocker.filed_by],
            "verified_by": next((t.by for t in reversed(blocker.history) if t.state == BlockerState.VERIFIED), None)
            if blocker.state == BlockerState.VERIFIED else None,
            "path": " → ".join(f"{t.state.value} (r{t.round})" for t in blocker.history),
            "history": history,
        })
    return rows
