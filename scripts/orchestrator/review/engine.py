"""Peer review: the reviews/ folder, and the one place the coordinator imports review from.

This module's own job is turning a parsed verdict into a Review and keeping it on disk:
reviews/<id>.json (the model) and reviews/<id>.md (a validation report a person reads),
both written atomically and redacted. The rest of peer review lives in one module per job
and is re-exported here:

    review_prompts.py   what the reviewer and the implementer are asked
    verdicts.py         reading a reply into a ParsedVerdict (verdict_prose.py,
                        verdict_words.py and loose_json.py are its parts)
    blocker_ledger.py   the blockers' states across rounds

The order the coordinator follows for one reviewer reply (see REVIEW_SYSTEM_SPEC.md):
parse_verdict → (parse_method "none": reask_prompt once) → review_from_verdict →
under edit_session: apply_review (or file_blockers + apply_verification) →
record_review → events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .blocker_ledger import (
    BlockerChange,
    ReviewLedgerUpdate,
    VerificationOutcome,
    apply_review,
    apply_verification,
    assign_blockers,
    blockers_in,
    file_blockers,
    ledger_rows,
    mark_fixed,
    matching_blocker,
    open_blockers,
    release_blockers,
    similar_descriptions,
)
from ..core.models import Review, Verdict
from ..safety.redaction import redact
from .prompts import fix_prompt, reask_prompt, review_prompt, verify_prompt
from ..store.sessions import SessionStore, read_model, validate_id
from .verdicts import ParsedVerdict, parse_verdict

__all__ = [
    "BlockerChange", "ParsedVerdict", "ReviewLedgerUpdate", "VerificationOutcome",
    "apply_review", "apply_verification", "assign_blockers", "blockers_in", "file_blockers",
    "fix_prompt", "ledger_rows", "load_reviews", "mark_fixed", "matching_blocker", "open_blockers",
    "parse_verdict", "reask_prompt", "record_review", "release_blockers", "review_from_verdict",
    "review_markdown", "review_paths", "review_prompt", "similar_descriptions", "verify_prompt",
]


def review_from_verdict(
    parsed: ParsedVerdict, *, review_id: str, round: int, reviewer: str, cli: str, task: Optional[str] = None
) -> Review:
    """The Review to record for a parsed reply (review_id from session.new_id("R"))."""
    return Review(
        id=review_id, round=round, reviewer=reviewer, cli=cli, task=task,
        verdict=parsed.verdict, summary=parsed.summary,
        blockers=[b.model_copy() for b in parsed.blockers],
        verified=list(parsed.verified), reopened=list(parsed.reopened),
        parse_method=parsed.parse_method,
    )


def review_paths(store: SessionStore, review_id: str) -> tuple[Path, Path]:
    """Where a review's JSON and Markdown live."""
    validate_id(review_id, "review")
    return store.reviews_dir / f"{review_id}.json", store.reviews_dir / f"{review_id}.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def review_markdown(review: Review) -> str:
    """The validation report of one review, in Markdown."""
    verdict = "approved" if review.verdict == Verdict.APPROVE else "changes requested"
    lines = [
        f"# Review {review.id} — round {review.round}: {verdict}",
        "",
        f"- Reviewer: {review.reviewer} ({review.cli})",
        f"- Task: {review.task or '—'}",
        f"- Verdict: **{review.verdict.value}**",
        f"- Read as: {review.parse_method}",
        f"- Recorded: {review.created_at.isoformat(timespec='seconds')}",
        "",
    ]
    if review.parse_method == "none":
        lines += ["> The reply held no verdict orch could read; nothing in it was applied.", ""]
    lines += ["## Summary", "", review.summary.strip() or "(no summary given)", ""]
    lines += [f"## Blockers ({len(review.blockers)})", ""]
    if review.blockers:
        lines += ["| id | location | severity | description |", "|---|---|---|---|"]
        for blocker in review.blockers:
            location = blocker.file + (f":{blocker.line}" if blocker.file and blocker.line else "")
            lines.append(
                f"| {_cell(blocker.id or '—')} | {_cell(f'`{location}`' if location else '—')} "
                f"| {blocker.severity.value} | {_cell(blocker.description)} |"
            )
    else:
        lines.append("No blockers.")
    lines += [
        "",
        "## Verification",
        "",
        f"- Verified: {', '.join(review.verified) or 'none'}",
        f"- Reopened: {', '.join(review.reopened) or 'none'}",
        "",
    ]
    return "\n".join(lines)


def record_review(store: SessionStore, review: Review) -> None:
    """Write reviews/<id>.json and reviews/<id>.md, atomically and redacted."""
    json_path, markdown_path = review_paths(store, review.id)
    redacted = Review.model_validate(redact(review.model_dump(mode="json")))
    payload = json.dumps(redacted.model_dump(mode="json"), indent=2, ensure_ascii=False)
    # Markdown first: a reader that finds the JSON can count on the report being there too.
    store.write_file(markdown_path, review_markdown(redacted).encode())
    store.write_file(json_path, payload.encode() + b"\n")


def _review_order(review: Review) -> tuple[int, str, int]:
    head, _, tail = review.id.rpartition("-")
    return (review.round, head, int(tail)) if tail.isdigit() else (review.round, review.id, 0)


def load_reviews(store: SessionStore) -> list[Review]:
    """Every recorded review of the session, by round then id; a damaged file raises CorruptFile."""
    if not store.reviews_dir.is_dir():
        return []
    reviews = [
        read_model(path, Review)
        for path in store.reviews_dir.glob("*.json")
        if not path.name.startswith(".")
    ]
    return sorted(reviews, key=_review_order)
