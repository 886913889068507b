"""The words reviewers use, mapped onto orch's vocabulary.

Verdict words ("LGTM", "request changes"), severities in other words ("major", "nit"),
per-blocker verification words ("fixed", "still broken"), blocker ids in their many
spellings, and file references (`src/app.py:42`). Shared by the JSON and the prose
readers of a verdict (verdicts.py, verdict_prose.py) so that both understand a reviewer
the same way, together with the one shape both readings take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..core.models import ReviewBlocker, Severity, Verdict

# A verdict counts as approval only when one of these words is in the reviewer's text;
# the tests hold the parser to it.
APPROVAL_EVIDENCE = re.compile(r"(?i)approv|lgtm|accept|pass|looks good|ship it")

# "changes" is checked before "approve": "not approved", "cannot approve" and
# "approve with changes" all mean the work is not accepted.
_CHANGES = re.compile(
    r"\b(?:changes? requested|request(?:ing|ed|s)? (?:for )?changes?|changes? (?:required|needed)"
    r"|needs? (?:more )?(?:work|changes?|revision|fix(?:es|ing)?)|with (?:required )?changes"
    r"|reject(?:ed|s|ion)?|revise|rework|not ok|nack|fail(?:ed|s|ure)?|block(?:ed|ing)?"
    r"|do not (?:approve|merge)|don t (?:approve|merge)|can ?not approve|can t approve"
    r"|not (?:yet )?approved?|disapproved?|unapproved)\b"
)
_APPROVE = re.compile(r"\b(?:approve[ds]?|approval|lgtm|accept(?:ed|s)?|pass(?:ed|es)?|ship it|looks good(?: to me)?)\b")
_BARE_CHANGES = {"changes", "change", "revisions", "no"}

# Whole lines that are a verdict on their own ("LGTM", "**REQUEST CHANGES**").
_STANDALONE_APPROVE = {
    "approve", "approved", "lgtm", "accept", "accepted", "looks good", "looks good to me",
    "ship it", "verdict approve", "verdict approved",
}
_STANDALONE_CHANGES = {
    "request changes", "requesting changes", "changes requested", "changes required",
    "reject", "rejected", "needs work", "needs changes", "needs revision", "not approved",
    "verdict changes requested", "verdict request changes", "verdict reject",
}

_SEVERITY_WORDS: dict[str, Severity] = {
    **dict.fromkeys(["critical", "crit", "p0", "showstopper", "fatal", "sev0", "sev1"], Severity.CRITICAL),
    **dict.fromkeys(["high", "blocker", "blocking", "major", "important", "serious", "severe",
                     "error", "p1", "sev2"], Severity.HIGH),
    **dict.fromkeys(["medium", "med", "moderate", "normal", "warning", "warn", "p2", "sev3"], Severity.MEDIUM),
    **dict.fromkeys(["low", "minor", "nit", "nitpick", "nits", "trivial", "cosmetic", "style",
                     "info", "suggestion", "optional", "p3", "p4", "sev4"], Severity.LOW),
}

_STILL_BROKEN = re.compile(
    r"\b(?:reopen(?:ed|s)?|not (?:yet )?(?:fixed|verified|resolved|addressed)|unresolved|unfixed"
    r"|still (?:open|broken|fails?|failing|present|there|happens|reproduces)|broken|fail(?:ed|s|ing)?"
    r"|regress(?:ed|ion)?|partial(?:ly)?|incomplete)\b"
)
_CONFIRMED = re.compile(r"\b(?:verified|fixed|resolved|pass(?:ed|es)?|confirmed|addressed|done|closed)\b")
_ONE_WORD_VERIFICATION: dict[str, Literal["verified", "reopened"]] = {
    "ok": "verified", "yes": "verified", "true": "verified", "good": "verified",
    "no": "reopened", "false": "reopened", "open": "reopened", "still": "reopened",
}

# B-3, b-3, B3, "blocker 3", "#3" (the last two only where an id is expected).
_LEDGER_ID_IN_TEXT = re.compile(r"\b(?:[Bb]-|B)(\d{1,6})\b")
_LEDGER_ID_ALONE = re.compile(r"(?i)(?:b|blocker)?\s*[-_#]?\s*(\d{1,6})")

_PATH = r"(?:[\w.\-]+/)*[\w\-][\w.\-]*\.[A-Za-z][A-Za-z0-9]{0,9}"
_DIR_PATH = r"(?:[\w.\-]+/)+[\w.\-]*[\w\-]"
_FILE_REF = re.compile(
    rf"(?<![\w/.\-@])(?P<path>{_PATH}|{_DIR_PATH})"
    r"(?:(?::|#L|:L)(?P<line>\d+)(?:[-:]\d+)?|,?\s+(?:on\s+|at\s+)?(?:line|ln|l\.)\s*(?P<line2>\d+)"
    r"|\s*\((?:line\s+|L)?(?P<line3>\d+)\))?",
    re.IGNORECASE,
)
_NOT_PATHS = {"e.g", "i.e", "etc", "vs", "a.k.a", "n.b", "p.s"}


def normalize_words(text: str) -> str:
    """Lower case, underscores and punctuation as spaces, one space between words."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower().replace("'", "")).split())


def verdict_from_value(value: Any) -> Optional[Verdict]:
    """A verdict from a verdict field's value ("APPROVED", "request_changes", True); None if unclear."""
    if isinstance(value, bool):
        return Verdict.APPROVE if value else Verdict.CHANGES_REQUESTED
    if not isinstance(value, str):
        return None
    words = normalize_words(value)
    if not words:
        return None
    if _CHANGES.search(words) or words in _BARE_CHANGES:
        return Verdict.CHANGES_REQUESTED
    if _APPROVE.search(words):
        return Verdict.APPROVE
    return None


def standalone_verdict(line: str) -> Optional[Verdict]:
    """A verdict from a line that says nothing else ("LGTM", "**REQUEST CHANGES**")."""
    words = normalize_words(line)
    if words in _STANDALONE_CHANGES:
        return Verdict.CHANGES_REQUESTED
    if words in _STANDALONE_APPROVE:
        return Verdict.APPROVE
    return None


def severity_from_word(value: Any) -> Optional[Severity]:
    """orch's severity for a reviewer's word ("major" → high, "nit" → low); None if none."""
    if not isinstance(value, str):
        return None
    for word in normalize_words(value).split():
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
    return None


def verification_from_word(value: Any) -> Optional[Literal["verified", "reopened"]]:
    """Whether a per-blocker status says the fix holds or not; None if it says neither."""
    if isinstance(value, bool):
        return "verified" if value else "reopened"
    if not isinstance(value, str):
        return None
    words = normalize_words(value)
    if words in _ONE_WORD_VERIFICATION:
        return _ONE_WORD_VERIFICATION[words]
    if _STILL_BROKEN.search(words):  # first: "not fixed" contains "fixed"
        return "reopened"
    if _CONFIRMED.search(words):
        return "verified"
    return None


def ledger_id(value: Any) -> Optional[str]:
    """A blocker id as the ledger spells it (B-3) from 3, "#3", "b3", "B-3 (fixed)"; else the text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"B-{value}" if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().strip("`*\"'")
    if not text:
        return None
    alone = _LEDGER_ID_ALONE.fullmatch(text)
    if alone:
        return f"B-{int(alone.group(1))}"
    inside = _LEDGER_ID_IN_TEXT.search(text)
    if inside:
        return f"B-{int(inside.group(1))}"
    return text[:80]


def ledger_ids_in(text: str) -> list[str]:
    """Every blocker id (B-3, B3, b-3) mentioned in free text, in order, once each."""
    ids: list[str] = []
    for m in _LEDGER_ID_IN_TEXT.finditer(text):
        found = f"B-{int(m.group(1))}"
        if found not in ids:
            ids.append(found)
    return ids


def line_number(value: Any) -> Optional[int]:
    """A positive line number from 42, 42.0, "42", "L42", "42-50"; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 < value < 10**9 else None
    if isinstance(value, str):
        m = re.search(r"\d{1,9}", value)
        if m and int(m.group(0)) > 0:
            return int(m.group(0))
    if isinstance(value, list) and value:
        return line_number(value[0])
    return None


@dataclass
class VerdictReading:
    """What one reader made of a reply, before the checks every verdict goes through."""

    verdict: Optional[Verdict] = None
    exact: bool = False  # the reply followed the requested format to the letter
    summary: str = ""
    blockers: list[ReviewBlocker] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileRef:
    """A file mentioned in a reviewer's text, where it was, and the line if one was given."""

    path: str
    line: Optional[int]
    start: int
    end: int


def clean_path(path: str) -> str:
    """A path as a reviewer wrote it, without quotes, backticks or a leading ./"""
    path = path.strip().strip("`'\"*")
    while path.startswith("./"):
        path = path[2:]
    return path.replace("\\", "/")


def split_location(location: str) -> tuple[str, Optional[int]]:
    """"src/app.py:42" → ("src/app.py", 42); a location without a line keeps it None."""
    location = clean_path(location)
    m = re.fullmatch(r"(.+?)(?::|#L|:L|,?\s+line\s+)(\d{1,9})(?:[-:]\d+)?", location, re.IGNORECASE)
    if m:
        return clean_path(m.group(1)), int(m.group(2))
    return location, None


def find_file_ref(text: str) -> Optional[FileRef]:
    """The most convincing file reference in text: with a line, then with a folder, first wins."""
    best: Optional[tuple[int, FileRef]] = None
    for m in _FILE_REF.finditer(text):
        path = m.group("path")
        if path.lower().rstrip(".") in _NOT_PATHS:
            continue
        line = next((int(g) for g in (m.group("line"), m.group("line2"), m.group("line3")) if g), None)
        rank = (2 if line else 0) + (1 if "/" in path else 0)
        ref = FileRef(path=clean_path(path), line=line, start=m.start(), end=m.end())
        if best is None or rank > best[0]:
            best = (rank, ref)
    return best[1] if best else None
