"""Reading a reviewer's reply into a verdict: strict where the model kept to the format,
tolerant where it did not, and never an approval by accident.

The order of attempts, each taking the LAST candidate in the text (a model that drafts,
quotes the example or corrects itself puts its final answer last):

1. fenced blocks (```json … ```): strict JSON → `fenced-json`; JSON-like → `loose`
2. bare {...} objects in the text: strict JSON → `json`; JSON-like → `loose`
3. prose and Markdown (verdict_prose.py) → `loose`
4. nothing → `none`: verdict changes_requested, no blockers, no ids. A reply nobody can
   read must not approve anything, and must not invent blockers either; the coordinator
   sees `none` and asks the reviewer once more (review_prompts.reask_prompt).

A candidate counts only if it carries a verdict (any synonym) or, lacking one, blockers
or reopened ids (then the verdict is changes_requested). An approval that lists blockers
contradicts itself and is read as changes_requested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .loose_json import MAX_SPAN_CHARS, object_spans, read_loose_object
from ..core.models import ReviewBlocker, Severity, Verdict
from .verdict_prose import MAX_DESCRIPTION_CHARS, blocker_from_line, read_prose
from .verdict_words import (
    VerdictReading,
    clean_path,
    ledger_id,
    ledger_ids_in,
    line_number,
    severity_from_word,
    split_location,
    verdict_from_value,
    verification_from_word,
)

ParseMethod = Literal["json", "fenced-json", "loose", "none"]

MAX_TEXT_CHARS = 200_000  # longer replies are cut from the front: the verdict comes last
MAX_OBJECTS_TRIED = 40  # bare objects tried, counted from the end of the text
MAX_BLOCKERS = 100
MAX_SUMMARY_CHARS = 4000

_VERDICT_KEYS = ("verdict", "decision", "status", "result", "outcome", "recommendation", "conclusion",
                 "review", "review_verdict", "overall", "overall_verdict", "final_verdict", "approval")
_APPROVAL_FLAG_KEYS = ("approved", "approve", "lgtm", "accepted", "passed", "pass")
_SUMMARY_KEYS = ("summary", "overview", "assessment", "rationale", "explanation", "reasoning",
                 "comment", "comments", "notes", "message", "details")
_BLOCKER_KEYS = ("blockers", "blocking_issues", "issues", "findings", "problems", "defects", "bugs",
                 "concerns", "required_changes", "changes", "errors")
_VERIFIED_KEYS = ("verified", "verified_ids", "verified_blockers", "fixed", "resolved", "confirmed", "closed")
_REOPENED_KEYS = ("reopened", "reopen", "reopened_ids", "reopened_blockers", "not_fixed", "unresolved",
                  "still_open", "still_broken", "failed")
_VERIFICATION_KEYS = ("verification", "verifications", "checks", "blocker_status", "blocker_statuses",
                      "results_by_blocker", "per_blocker")

_ITEM_ID_KEYS = ("id", "blocker_id", "ref", "key", "number")
_ITEM_FILE_KEYS = ("file", "path", "file_path", "filepath", "filename", "location", "where", "source")
_ITEM_LINE_KEYS = ("line", "line_number", "lineno", "line_no", "lines", "start_line", "row")
_ITEM_SEVERITY_KEYS = ("severity", "priority", "level", "importance", "impact", "sev")
_ITEM_DESCRIPTION_KEYS = ("description", "issue", "problem", "message", "detail", "details", "text",
                          "reason", "explanation", "finding", "summary", "comment", "what")
_ITEM_TITLE_KEYS = ("title", "name", "headline")
_ITEM_FIX_KEYS = ("suggestion", "fix", "suggested_fix", "recommendation", "remedy", "expected")
_ITEM_STATE_KEYS = ("status", "state", "verdict", "result", "verified")

_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[\w+.-]*)[^`{\n]*$")


@dataclass
class ParsedVerdict:
    """A reviewer's verdict as orch understood it, and how (parse_method, notes)."""

    verdict: Verdict
    summary: str = ""
    blockers: list[ReviewBlocker] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    parse_method: ParseMethod = "none"
    notes: list[str] = field(default_factory=list)  # what was tolerated or corrected, for the log

    @property
    def understood(self) -> bool:
        """False when nothing in the reply could be read as a verdict (re-ask the reviewer)."""
        return self.parse_method != "none"


def parse_verdict(text: str) -> ParsedVerdict:
    """Read a reviewer's reply; never raises, never approves what it cannot read."""
    try:
        return _parse(text)
    except Exception as exc:  # the contract is "never raises": a reader bug costs a re-ask, not the session
        return ParsedVerdict(
            verdict=Verdict.CHANGES_REQUESTED, parse_method="none",
            notes=[f"parser failed: {type(exc).__name__}: {exc}"],
        )


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced code block, in order; an unclosed one runs to the end."""
    lines = text.split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group("fence")
        body: list[str] = []
        i += 1
        while i < len(lines):
            candidate = lines[i].strip()
            if candidate and set(candidate) == {fence[0]} and len(candidate) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        blocks.append((opening.group("info").lower(), "\n".join(body)))
        i += 1
    return blocks


# --------------------------------------------------------------------------- the attempts


def _parse(text: Any) -> ParsedVerdict:
    text = _as_text(text)
    notes: list[str] = []
    if len(text) > MAX_TEXT_CHARS:
        notes.append(f"reply of {len(text)} characters: only the last {MAX_TEXT_CHARS} were read")
        text = text[-MAX_TEXT_CHARS:]

    for _, content in reversed(fenced_blocks(text)):
        found = _read_candidate(content)
        if found:
            reading, strict = found
            return _finish(reading, "fenced-json" if strict else "loose", notes)

    spans = [(a, b) for a, b in object_spans(text) if b - a <= MAX_SPAN_CHARS]
    for start, end in reversed(spans[-MAX_OBJECTS_TRIED:]):
        found = _read_candidate(text[start:end])
        if found:
            reading, strict = found
            return _finish(reading, "json" if strict else "loose", notes)

    prose = read_prose(text)
    if prose.verdict is not None:
        return _finish(prose, "loose", notes)
    return ParsedVerdict(
        verdict=Verdict.CHANGES_REQUESTED, parse_method="none",
        notes=notes + ["no verdict found: no JSON verdict object and no verdict line"],
    )


def _as_text(text: Any) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    return "" if text is None else str(text)


def _read_candidate(candidate: str) -> Optional[tuple[VerdictReading, bool]]:
    """A verdict from one block or object, and whether it was strictly well-formed."""
    stripped = candidate.strip()
    try:
        strict = json.loads(stripped)
    except (ValueError, RecursionError):
        strict = None
    if isinstance(strict, dict):
        reading = read_verdict_object(strict)
        if reading:
            return reading, reading.exact
    start = stripped.find("{")
    if start < 0:
        return None
    loose = read_loose_object(stripped[start:])
    if loose is None or loose == strict:
        return None
    reading = read_verdict_object(loose)
    if reading is None:
        return None
    reading.notes.insert(0, "the JSON was malformed (comments, quotes or commas) and was read forgivingly")
    return reading, False


def _finish(reading: VerdictReading, method: ParseMethod, notes: list[str]) -> ParsedVerdict:
    """The checks every verdict goes through, whichever reader produced it."""
    notes = notes + reading.notes
    verdict = reading.verdict or Verdict.CHANGES_REQUESTED
    blockers = reading.blockers
    if len(blockers) > MAX_BLOCKERS:
        notes.append(f"{len(blockers)} blockers reported: only the first {MAX_BLOCKERS} were kept")
        blockers = blockers[:MAX_BLOCKERS]
    if verdict == Verdict.APPROVE and (blockers or reading.reopened):
        verdict = Verdict.CHANGES_REQUESTED
        notes.append("approve with blockers or reopened ids contradicts itself: read as changes_requested")
    if verdict == Verdict.CHANGES_REQUESTED and not blockers and not reading.reopened:
        notes.append("changes requested without a blocker or a reopened id")
    summary = reading.summary.strip()
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[:MAX_SUMMARY_CHARS]
    return ParsedVerdict(
        verdict=verdict, summary=summary, blockers=blockers,
        verified=reading.verified, reopened=reading.reopened, parse_method=method, notes=notes,
    )


# --------------------------------------------------------------------------- one verdict object


def _normalize_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> tuple[Optional[str], Any]:
    for key in keys:
        if key in fields and fields[key] not in (None, "", [], {}):
            return key, fields[key]
    return None, None


def read_verdict_object(obj: dict[str, Any], depth: int = 0) -> Optional[VerdictReading]:
    """A verdict from one parsed JSON object, whatever its keys are called; None if it holds none."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        fields.setdefault(_normalize_key(key), value)
    reading = VerdictReading(exact=True)

    raw_verdict = fields.get("verdict")
    reading.verdict = verdict_from_value(raw_verdict) if isinstance(raw_verdict, str) else None
    if reading.verdict is None or raw_verdict.strip().lower() not in ("approve", "changes_requested"):
        reading.exact = False
    if reading.verdict is None:
        for key in _VERDICT_KEYS + _APPROVAL_FLAG_KEYS:
            value = fields.get(key)
            if key in _APPROVAL_FLAG_KEYS and not isinstance(value, bool):
                continue
            if key in _VERDICT_KEYS and isinstance(value, bool):
                continue  # "status": true says nothing about approval
            found = verdict_from_value(value)
            if found:
                reading.verdict = found
                reading.notes.append(f"verdict read from the key {key!r}")
                break

    summary_key, summary = _first(fields, _SUMMARY_KEYS)
    if isinstance(summary, list):
        summary = " ".join(str(s) for s in summary if isinstance(s, (str, int, float)))
    reading.summary = summary if isinstance(summary, str) else ""
    reading.exact = reading.exact and summary_key in (None, "summary")

    blockers_key, raw_blockers = _first(fields, _BLOCKER_KEYS)
    reading.exact = reading.exact and blockers_key in (None, "blockers")
    reading.blockers = _read_blockers(raw_blockers, reading.notes)

    for keys, target, canonical in ((_VERIFIED_KEYS, reading.verified, "verified"),
                                    (_REOPENED_KEYS, reading.reopened, "reopened")):
        key, value = _first(fields, keys)
        reading.exact = reading.exact and key in (None, canonical)
        if isinstance(value, dict):  # {"B-2": "still crashes on empty input"}: the keys are the ids
            value = list(value)
        _add_ids(target, _read_ids(value))
    _, verification = _first(fields, _VERIFICATION_KEYS)
    if verification is not None:
        reading.exact = False
        _read_verification_map(verification, reading)

    if reading.verdict is None:
        if reading.blockers or reading.reopened:
            reading.verdict = Verdict.CHANGES_REQUESTED
            reading.exact = False
            reading.notes.append("no verdict key: changes_requested inferred from the blockers listed")
        elif depth < 2:
            # a wrapper such as {"review": {"verdict": ...}}
            for value in obj.values():
                if isinstance(value, dict):
                    inner = read_verdict_object(value, depth + 1)
                    if inner:
                        inner.exact = False
                        return inner
            return None
        else:
            return None
    return reading


def _add_ids(target: list[str], ids: list[str]) -> None:
    for blocker_id in ids:
        if blocker_id not in target:
            target.append(blocker_id)


def _read_ids(value: Any) -> list[str]:
    """Blocker ids from ["B-1", 2, "#3"], "B-1, B-2" or [{"id": "B-1"}]."""
    if value is None:
        return []
    if isinstance(value, str):
        found = ledger_ids_in(value)
        if found:
            return found
        parts = [p for p in re.split(r"[,;\s]+", value) if p]
        return [i for i in (ledger_id(p) for p in parts) if i]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        found_id = ledger_id(int(value))
        return [found_id] if found_id else []
    if isinstance(value, list):
        ids: list[str] = []
        for item in value:
            if isinstance(item, dict):
                _, raw_id = _first({_normalize_key(k): v for k, v in item.items()}, _ITEM_ID_KEYS)
                item_id = ledger_id(raw_id)
                ids += [item_id] if item_id else []
            else:
                ids += _read_ids(item)
        return list(dict.fromkeys(ids))
    return []


def _read_verification_map(value: Any, reading: VerdictReading) -> None:
    """{"B-1": "verified", "B-2": "still broken"} or [{"id": "B-1", "status": "fixed"}]."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                fields = {_normalize_key(k): v for k, v in item.items()}
                _, raw_id = _first(fields, _ITEM_ID_KEYS)
                _, state = _first(fields, _ITEM_STATE_KEYS)
                if state is None and isinstance(fields.get("verified"), bool):
                    state = fields["verified"]
                pairs.append((raw_id, state))
    for raw_id, state in pairs:
        blocker_id = ledger_id(raw_id)
        outcome = verification_from_word(state)
        if blocker_id and outcome:
            _add_ids(reading.verified if outcome == "verified" else reading.reopened, [blocker_id])


def _read_blockers(value: Any, notes: list[str]) -> list[ReviewBlocker]:
    if value is None:
        return []
    if isinstance(value, dict):
        # {"src/app.py": "missing check"} or {"N1": {...}}: the key names the file or the id
        items = []
        for key, item in value.items():
            item = dict(item) if isinstance(item, dict) else {"description": item}
            key_text = str(key)
            slot = "id" if re.fullmatch(r"(?i)[a-z]{0,3}-?\d{1,4}", key_text) else "file"
            item.setdefault(slot, key_text)
            items.append(item)
        value = items
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list):
        notes.append(f"blockers given as {type(value).__name__}: ignored")
        return []
    blockers: list[ReviewBlocker] = []
    for item in value:
        blocker: Optional[ReviewBlocker] = None
        if isinstance(item, dict):
            blocker = _blocker_from_fields(item, notes)
        elif isinstance(item, str):
            blocker = blocker_from_line(item, require_file=False)
        if blocker is None:
            notes.append(f"a blocker without a description was dropped: {str(item)[:80]!r}")
            continue
        blockers.append(blocker)
    return blockers


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return "; ".join(t for t in (_text_of(v) for v in value) if t)
    return ""


def _blocker_from_fields(item: dict[str, Any], notes: list[str]) -> Optional[ReviewBlocker]:
    fields: dict[str, Any] = {}
    for key, value in item.items():
        fields.setdefault(_normalize_key(key), value)
    _, description = _first(fields, _ITEM_DESCRIPTION_KEYS)
    _, title = _first(fields, _ITEM_TITLE_KEYS)
    description, title = _text_of(description), _text_of(title)
    if title and description and not description.lower().startswith(title.lower()):
        description = f"{title}: {description}"
    description = description or title
    if not description:
        return None
    _, fix = _first(fields, _ITEM_FIX_KEYS)
    fix = _text_of(fix)
    if fix:
        separator = " " if description.endswith((".", "!", "?")) else ". "
        description = f"{description}{separator}Suggested fix: {fix}"

    _, raw_file = _first(fields, _ITEM_FILE_KEYS)
    file, line_in_path = split_location(_text_of(raw_file)) if raw_file is not None else ("", None)
    _, raw_line = _first(fields, _ITEM_LINE_KEYS)
    line = line_number(raw_line) if raw_line is not None else line_in_path

    _, raw_severity = _first(fields, _ITEM_SEVERITY_KEYS)
    severity = severity_from_word(_text_of(raw_severity)) if raw_severity is not None else None
    if raw_severity is not None and severity is None:
        notes.append(f"unknown severity {str(raw_severity)[:40]!r}: read as high")
    _, raw_id = _first(fields, _ITEM_ID_KEYS)
    blocker_id = _text_of(raw_id)[:80] or None
    if blocker_id and ledger_ids_in(blocker_id) and len(blocker_id) <= 8:
        blocker_id = ledger_id(blocker_id)  # "b3", "B3" → "B-3": it names a ledger blocker
    return ReviewBlocker(
        id=blocker_id,
        file=clean_path(file),
        line=line,
        severity=severity or Severity.HIGH,
        description=description[:MAX_DESCRIPTION_CHARS],
    )
