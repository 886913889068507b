"""Reading a verdict that a reviewer wrote as prose or Markdown instead of the JSON asked for.

The fallback after every JSON reading failed. It understands labelled lines
("**Verdict:** APPROVE"), verdict lines on their own ("LGTM", "REQUEST CHANGES"),
headings that open a section ("## Blockers", "### Verified"), blocker lines
(`- [high] src/app.py:42 — missing null check`, `BLOCKER: src/app.py:42: ...`) and
per-blocker verification lines (`- B-1: fixed`, `B-2 — still broken`). It never invents
approval: only an explicit approval word is read as one.
"""

from __future__ import annotations

import re
from typing import Optional

from ..core.models import ReviewBlocker, Severity, Verdict
from .verdict_words import (
    VerdictReading,
    find_file_ref,
    ledger_id,
    ledger_ids_in,
    normalize_words,
    severity_from_word,
    standalone_verdict,
    verdict_from_value,
    verification_from_word,
)

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+(?P<body>.+)$")
_FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>[\w+.-]*)")
_SEPARATOR = r"\s*(?:[:\uff1a=|]|\s[-\u2013\u2014]\s)\s*"
_VERDICT_LABEL = re.compile(
    r"^(?:overall |final |review |my )?(?P<label>verdict|decision|status|result|outcome|recommendation|conclusion)"
    + _SEPARATOR + r"(?P<value>\S.*?)\s*\|?\s*$",
    re.IGNORECASE,
)
# "Result: all tests pass" is not a verdict: after these labels only a bare verdict counts.
_WEAK_LABELS = {"status", "result", "outcome"}
_SUMMARY_LABEL = re.compile(r"^(?:summary|overview|assessment|tl;?dr)" + _SEPARATOR + r"(?P<value>\S.*)$", re.I)
_BLOCKER_LABEL = re.compile(
    r"^(?:blocker|blocking issue|issue|problem|finding|bug|defect)s?\s*(?:#?\d+)?" + _SEPARATOR + r"(?P<value>\S.*)$",
    re.IGNORECASE,
)
_SECTION_LABEL = re.compile(r"^(?P<title>[^:]{2,60}):\s*$")
_LEADING_TAG = re.compile(
    r"^\s*(?:\[(?P<bracket>[^\]]{1,24})\]|\((?P<paren>[^)]{1,24})\)|\*\*(?P<bold>[^*]{1,24})\*\*"
    r"|(?P<word>[A-Za-z][A-Za-z0-9-]{1,14}(?:\s*#?\d{1,4})?)\s*(?:[:\uff1a]|\s[-\u2013\u2014]\s))\s*"
)
_SEVERITY_ANYWHERE = re.compile(r"(?i)\(?\bseverity\s*[:=]?\s*(?P<word>\w+)\)?")
_LEADING_PUNCTUATION = re.compile(r"^[\s:\uff1a|,;)\]*`\-\u2013\u2014]+")
_LABEL_WORDS = {"blocker", "blockers", "issue", "problem", "finding", "bug", "defect"}
_PROSE_FENCES = {"", "text", "txt", "plain", "plaintext", "markdown", "md", "yaml", "yml"}
_NOTHING_FOUND = {"none", "no", "n a", "na", "nothing", "none found", "no blockers", "no issues", "0", "nil", "null"}

MAX_DESCRIPTION_CHARS = 2000


def _plain(line: str) -> str:
    """A line without Markdown emphasis, code marks, quote marks or leading emoji."""
    text = re.sub(r"\*\*|__|`|~~", "", line).strip()
    text = text.strip("*_> \t")
    return re.sub(r"^[^\w#\[(]+", "", text).strip()


def _section_kind(title: str) -> tuple[str, Optional[Severity]]:
    """What a heading opens: blockers, verified, reopened, verification, summary, verdict, nonblocking, other."""
    words = normalize_words(title)
    severity = severity_from_word(title)
    if re.search(r"\b(?:non blocking|nice to have|suggestions?|optional|nits?|follow ups?|future|praise|strengths)\b", words):
        return "nonblocking", None
    if re.search(r"\b(?:reopen(?:ed)?|still (?:open|broken|failing)|not fixed|unresolved|regressions?)\b", words):
        return "reopened", severity
    if re.search(r"\b(?:verification|verifications|verify|checks?)\b", words):
        return "verification", None  # each line's own words say verified or reopened
    if re.search(r"\b(?:verified|fixed|resolved|confirmed|closed)\b", words):
        return "verified", severity
    if re.search(r"\b(?:blockers?|blocking|issues?|findings?|problems?|bugs?|defects?|required changes|must fix|concerns?|changes requested)\b", words):
        return "blockers", severity
    if re.search(r"\b(?:summary|overview|assessment|tl ?dr)\b", words):
        return "summary", None
    if re.search(r"\b(?:verdict|decision|recommendation|conclusion|outcome)\b", words):
        return "verdict", None
    if severity is not None:  # "### Critical", "## Minor": a list of blockers of that severity
        return "blockers", severity
    return "other", None


def _take_leading_tags(body: str) -> tuple[str, Optional[Severity], Optional[str]]:
    """Strip `[high]`, `(minor)`, `**Major**`, `[B-2]`, `BLOCKER:` from the front of a line."""
    severity: Optional[Severity] = None
    blocker_id: Optional[str] = None
    for _ in range(4):
        m = _LEADING_TAG.match(body)
        if not m:
            break
        tag = next(g for g in (m.group("bracket"), m.group("paren"), m.group("bold"), m.group("word")) if g)
        tag_severity = severity_from_word(tag)
        tag_ids = ledger_ids_in(tag)
        if tag_severity and severity is None and len(tag.split()) <= 2:
            severity = tag_severity
        elif tag_ids and blocker_id is None and len(tag.split()) <= 2:
            blocker_id = tag_ids[0]
        elif m.group("word") and normalize_words(tag).split()[0] in _LABEL_WORDS:
            pass  # a label, dropped
        else:
            break
        body = body[m.end():]
    return body, severity, blocker_id


def blocker_from_line(
    text: str, default_severity: Optional[Severity] = None, require_file: bool = True,
    require_severity: bool = False,
) -> Optional[ReviewBlocker]:
    """A blocker from one line such as `[high] src/app.py:42 — missing null check`; None if it is not one."""
    body, severity, blocker_id = _take_leading_tags(text.strip())
    body = _LEADING_PUNCTUATION.sub("", body)
    masked = re.sub(r"[`*]", " ", body)  # same length, so positions found here hold in body
    ref = find_file_ref(masked)
    description = body
    if ref and not masked[: ref.start].strip():
        description = _LEADING_PUNCTUATION.sub("", body[ref.end:])
        description, later_severity, later_id = _take_leading_tags(description)
        description = _LEADING_PUNCTUATION.sub("", description)
        severity = severity or later_severity
        blocker_id = blocker_id or later_id
    if severity is None:
        m = _SEVERITY_ANYWHERE.search(description)
        if m and severity_from_word(m.group("word")):
            severity = severity_from_word(m.group("word"))
            description = (description[: m.start()] + description[m.end():]).strip()
    description = description.strip().strip("*").strip()
    if not description and ref:
        description = body.strip()
    if not description or normalize_words(description) in _NOTHING_FOUND:
        return None
    if (ref is None and require_file) or (severity is None and require_severity):
        return None
    return ReviewBlocker(
        id=blocker_id,
        file=ref.path if ref else "",
        line=ref.line if ref else None,
        severity=severity or default_severity or Severity.HIGH,
        description=description[:MAX_DESCRIPTION_CHARS],
    )


def _add_ids(target: list[str], ids: list[str]) -> None:
    for blocker_id in ids:
        if blocker_id not in target:
            target.append(blocker_id)


def read_prose(text: str) -> VerdictReading:
    """Whatever verdict, blockers and verification a prose or Markdown reply states."""
    reading = VerdictReading()
    labelled: list[Verdict] = []
    standalone: list[Verdict] = []
    section, section_severity = "none", None
    expecting_verdict = False
    summary_label = ""
    summary_lines: list[str] = []
    summary_closed = False
    first_prose = ""
    open_fence: Optional[str] = None
    skipping_fence = False

    for raw in text.splitlines():
        fence = _FENCE.match(raw)
        if fence and open_fence is None:
            open_fence = fence.group("fence")
            skipping_fence = fence.group("info").lower() not in _PROSE_FENCES
            continue
        if open_fence is not None and raw.strip() and set(raw.strip()) <= {open_fence[0]} \
                and len(raw.strip()) >= len(open_fence):
            open_fence = None
            continue
        if open_fence is not None and skipping_fence:
            continue  # code, diffs and logs inside fences are not the reviewer's findings
        line = raw.strip()
        if not line:
            summary_closed = summary_closed or bool(summary_lines)
            continue

        heading = _HEADING.match(line)
        item = _LIST_ITEM.match(line) if not heading else None
        body = item.group("body") if item else (heading.group("title") if heading else line)
        plain = _plain(body)

        label = _VERDICT_LABEL.match(plain)
        if label:
            weak = label.group("label").lower() in _WEAK_LABELS
            read = standalone_verdict if weak else verdict_from_value
            verdict = read(label.group("value"))
            if verdict:
                labelled.append(verdict)
                expecting_verdict = False
                continue

        if heading or (not item and _SECTION_LABEL.match(plain)):
            section, section_severity = _section_kind(plain.rstrip(":"))
            expecting_verdict = section == "verdict"
            verdict = standalone_verdict(plain)
            if verdict:
                standalone.append(verdict)
            continue

        verdict = standalone_verdict(plain)
        if verdict is None and expecting_verdict:
            verdict = verdict_from_value(plain)
        if verdict:
            (labelled if expecting_verdict else standalone).append(verdict)
            expecting_verdict = False
            continue
        expecting_verdict = False

        summary = _SUMMARY_LABEL.match(plain)
        if summary:
            summary_label = summary_label or summary.group("value")
            continue

        ids = ledger_ids_in(body)
        if ids:
            # the line's own words first ("B-2: still broken" under "Fixed"), then its section
            state = verification_from_word(re.sub(r"\b(?:[Bb]-|B)\d+\b", " ", plain))
            if state is None and section in ("verified", "reopened") and (item or len(plain) < 80):
                state = section
            if state:
                _add_ids(reading.verified if state == "verified" else reading.reopened, ids)
                continue

        blocker: Optional[ReviewBlocker] = None
        labelled_blocker = _BLOCKER_LABEL.match(plain)
        if labelled_blocker and section != "nonblocking":
            blocker = blocker_from_line(body, section_severity, require_file=False)
        elif item and section == "blockers":
            blocker = blocker_from_line(body, section_severity, require_file=False)
        elif item and section == "reopened":
            blocker = blocker_from_line(body, section_severity, require_file=True)
        elif section not in ("nonblocking", "summary") and (item or body.startswith("[")):
            # outside a blockers section a bullet is a blocker only if it says how bad and where
            blocker = blocker_from_line(body, None, require_file=True, require_severity=True)
        if blocker:
            if blocker.id is None and ids:
                blocker.id = ledger_id(ids[0])
            reading.blockers.append(blocker)
            continue

        if section == "summary" and not summary_closed and not item:
            summary_lines.append(plain)
        elif not first_prose and not item and not heading and len(plain) > 3:
            first_prose = plain

    if labelled:
        reading.verdict = labelled[-1]
    elif standalone:
        reading.verdict = standalone[-1]
    elif reading.blockers or reading.reopened:
        reading.verdict = Verdict.CHANGES_REQUESTED
        reading.notes.append("no verdict word: changes_requested inferred from the blockers listed")
    reading.summary = summary_label or " ".join(summary_lines) or first_prose
    return reading
