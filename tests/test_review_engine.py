"""Peer review: verdict parsing (strict, fenced, loose, none), prompts, the blocker ledger
across rounds, and the reviews/ files."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.review.blocker_ledger import SIMILAR_DESCRIPTION
from orchestrator.core.errors import NotFound
from orchestrator.core.lifecycle import IllegalTransition
from orchestrator.review.loose_json import object_spans, read_loose_object
from orchestrator.core.models import (
    BlockerState,
    Review,
    ReviewBlocker,
    Role,
    Session,
    Severity,
    Task,
    TaskKind,
    Verdict,
)
from orchestrator.review.engine import (
    apply_review,
    apply_verification,
    assign_blockers,
    file_blockers,
    fix_prompt,
    ledger_rows,
    load_reviews,
    mark_fixed,
    open_blockers,
    parse_verdict,
    reask_prompt,
    record_review,
    release_blockers,
    review_from_verdict,
    review_prompt,
    similar_descriptions,
    verify_prompt,
)
from orchestrator.store.sessions import Workspace
from orchestrator.review.verdict_words import APPROVAL_EVIDENCE

H, L, M, C = Severity.HIGH, Severity.LOW, Severity.MEDIUM, Severity.CRITICAL
APPROVE, CHANGES = Verdict.APPROVE, Verdict.CHANGES_REQUESTED

# --------------------------------------------------------------------------- realistic replies

CLAUDE_PROSE_AND_FENCE = """\
I've reviewed the implementation against `specifications/SPEC.md`.

**What works well:** option parsing, the help text and the exit codes all match the spec.

**Problems:** an empty config file crashes the program, and there's no test for it.

```json
{
  "verdict": "changes_requested",
  "summary": "Options parse correctly, but an empty config file crashes the program.",
  "blockers": [
    {
      "id": "N1",
      "file": "src/app.py",
      "line": 42,
      "severity": "high",
      "description": "load_config() returns None for an empty file and main() calls .get() on it."
    },
    {
      "id": "N2",
      "file": "tests/test_app.py",
      "line": null,
      "severity": "medium",
      "description": "No test covers an empty config file."
    }
  ],
  "verified": [],
  "reopened": []
}
```
"""

CODEX_TERSE = (
    '{"verdict":"approve","summary":"All 12 spec examples hold; tests pass.",'
    '"blockers":[],"verified":["B-1","B-2"],"reopened":[]}'
)

GEMINI_MARKDOWN = """\
## Code Review

**Verdict:** REQUEST CHANGES

### Summary
The feature is mostly complete but has two correctness issues.

### Blockers
1. **[HIGH]** `src/app.py:42` — missing null check on `user`
2. [minor] src/util.py line 7: the helper swallows every exception
3. `src/__init__.py` (major): exports nothing the spec names

### Suggestions (non-blocking)
- [low] src/app.py:10 — consider a clearer variable name
"""

TWO_JSON_BLOCKS = """\
The format asks for something like:
```json
{"verdict": "approve", "summary": "example only"}
```
Having run the tests, my actual verdict:
```json
{"verdict": "changes_requested", "summary": "A typo breaks the import.",
 "blockers": [{"id": "N1", "file": "pkg/core.py", "line": 3, "severity": "critical",
               "description": "imports `colections` instead of `collections`"}],
 "verified": [], "reopened": []}
```
"""

TRAILING_COMMA = """\
```json
{
  "verdict": "approve",
  "summary": "Both fixes hold.",
  "blockers": [],
  "verified": ["B-1", "B-2",],
  "reopened": [],
}
```"""

SINGLE_QUOTES_AND_SYNONYMS = """\
```
{'status': 'LGTM',   // no blockers this time
 'issues': [],
 'fixed': ['b1', 2, '#3']}
```"""

LOOSE_KEYS_CHANGES = """\
Here is my assessment:
{"Decision": "REJECT", "Findings": [{"path": "src/x.py:12", "priority": "P1",
  "message": "race condition on the counter", "suggestion": "take the lock first"}]}
"""

BLOCKER_LINES = """\
Reviewed the database layer.

BLOCKER: src/db.py:88: SQL is built by string concatenation
BLOCKER: src/db.py:120: the connection is never closed
"""

VERIFY_PROSE = """\
## Verification

- B-1: fixed, the null check is in place and tested
- B-2 — still broken: an empty list still raises IndexError

Verdict: needs work
"""

VERIFY_MAP = """\
```json
{"verdict": "changes_requested", "summary": "One of two holds.",
 "verification": {"B-4": "verified", "B-5": "not fixed"}}
```"""

SIM_STYLE = """\
Review finished: approve.

```json
{
  "verdict": "approve",
  "summary": "Re-ran the examples behind 1 blocker(s).",
  "blockers": [],
  "verified": [
    "B-1"
  ],
  "reopened": []
}
```"""

WRAPPED = '{"review": {"decision": "Approved", "comments": "Ship it."}}'

APPROVE_BUT_BLOCKERS = """\
```json
{"verdict": "approve", "summary": "Fine apart from one thing.",
 "blockers": [{"file": "a.py", "line": 1, "severity": "low", "description": "typo in the docstring"}]}
```"""

LGTM_ONLY = "LGTM 🚀"

NEGATED_APPROVAL = "I read everything.\n\nVerdict: not approved — see the discussion above."

SEVERITY_HEADINGS = """\
### 🔴 Critical
- `src/auth.py:10` the token is compared with ==, not in constant time

### 🟡 Minor
- typo in README.md

### Nits
- src/app.py:3 rename `x` to something telling

**Decision: Request changes**
"""

YAML_FENCE = "```yaml\nverdict: approve\nsummary: both fixes hold\n```"

UNCLOSED_FENCE = """\
Done.
```json
{"verdict": "changes_requested", "summary": "cut off", "blockers": [
  {"file": "src/a.py", "line": 5, "severity": "high", "description": "off by one in the loop bound"}]}
"""

CASES = [
    # name, text, verdict, method, blockers as (file, line, severity), verified, reopened
    ("claude prose + fenced json", CLAUDE_PROSE_AND_FENCE, CHANGES, "fenced-json",
     [("src/app.py", 42, H), ("tests/test_app.py", None, M)], [], []),
    ("codex terse json", CODEX_TERSE, APPROVE, "json", [], ["B-1", "B-2"], []),
    ("gemini markdown, bold headings", GEMINI_MARKDOWN, CHANGES, "loose",
     [("src/app.py", 42, H), ("src/util.py", 7, L), ("src/__init__.py", None, H)], [], []),
    ("two json blocks: the last wins", TWO_JSON_BLOCKS, CHANGES, "fenced-json", [("pkg/core.py", 3, C)], [], []),
    ("trailing commas", TRAILING_COMMA, APPROVE, "loose", [], ["B-1", "B-2"], []),
    ("single quotes, comment, synonyms", SINGLE_QUOTES_AND_SYNONYMS, APPROVE, "loose", [], ["B-1", "B-2", "B-3"], []),
    ("keys in other cases and synonyms", LOOSE_KEYS_CHANGES, CHANGES, "loose", [("src/x.py", 12, H)], [], []),
    ("BLOCKER: file:line: lines", BLOCKER_LINES, CHANGES, "loose", [("src/db.py", 88, H), ("src/db.py", 120, H)], [], []),
    ("verification in prose", VERIFY_PROSE, CHANGES, "loose", [], ["B-1"], ["B-2"]),
    ("verification map", VERIFY_MAP, CHANGES, "loose", [], ["B-4"], ["B-5"]),
    ("sim agent's reply", SIM_STYLE, APPROVE, "fenced-json", [], ["B-1"], []),
    ("wrapped object", WRAPPED, APPROVE, "loose", [], [], []),
    ("approve that lists a blocker", APPROVE_BUT_BLOCKERS, CHANGES, "fenced-json", [("a.py", 1, L)], [], []),
    ("LGTM alone", LGTM_ONLY, APPROVE, "loose", [], [], []),
    ("negated approval", NEGATED_APPROVAL, CHANGES, "loose", [], [], []),
    ("severity headings, nits left out", SEVERITY_HEADINGS, CHANGES, "loose",
     [("src/auth.py", 10, C), ("README.md", None, L)], [], []),
    ("yaml-ish fence", YAML_FENCE, APPROVE, "loose", [], [], []),
    ("unclosed fence", UNCLOSED_FENCE, CHANGES, "fenced-json", [("src/a.py", 5, H)], [], []),
]


@pytest.mark.parametrize(
    "text,verdict,method,blockers,verified,reopened",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_realistic_replies_are_read(text, verdict, method, blockers, verified, reopened):
    parsed = parse_verdict(text)
    assert parsed.verdict == verdict
    assert parsed.parse_method == method
    assert [(b.file, b.line, b.severity) for b in parsed.blockers] == blockers
    assert parsed.verified == verified
    assert parsed.reopened == reopened
    assert all(b.description for b in parsed.blockers)


def test_strict_reply_keeps_every_field():
    parsed = parse_verdict(CLAUDE_PROSE_AND_FENCE)
    assert parsed.summary == "Options parse correctly, but an empty config file crashes the program."
    first = parsed.blockers[0]
    assert first.id == "N1"
    assert first.description == "load_config() returns None for an empty file and main() calls .get() on it."
    assert parsed.notes == []
    assert parsed.understood


def test_the_last_block_wins_even_when_the_first_is_the_echoed_example():
    parsed = parse_verdict(TWO_JSON_BLOCKS)
    assert parsed.summary == "A typo breaks the import."
    assert "colections" in parsed.blockers[0].description


def test_loose_markdown_descriptions_lose_their_tags_and_locations():
    parsed = parse_verdict(GEMINI_MARKDOWN)
    assert [b.description for b in parsed.blockers] == [
        "missing null check on `user`",
        "the helper swallows every exception",
        "exports nothing the spec names",
    ]
    assert parsed.summary == "The feature is mostly complete but has two correctness issues."


def test_synonym_fields_are_mapped_and_noted():
    parsed = parse_verdict(LOOSE_KEYS_CHANGES)
    assert parsed.blockers[0].description == "race condition on the counter. Suggested fix: take the lock first"
    assert any("decision" in note for note in parsed.notes)


def test_approval_that_lists_blockers_is_changes_requested_and_says_why():
    parsed = parse_verdict(APPROVE_BUT_BLOCKERS)
    assert parsed.verdict == CHANGES
    assert any("contradicts" in note for note in parsed.notes)


@pytest.mark.parametrize("word,verdict", [
    ("APPROVE", APPROVE), ("Approved.", APPROVE), ("**LGTM**", APPROVE), ("✅ Looks good to me", APPROVE),
    ("REQUEST CHANGES", CHANGES), ("Changes requested", CHANGES), ("REJECT", CHANGES), ("Needs work", CHANGES),
])
def test_verdict_words_on_their_own_line(word, verdict):
    parsed = parse_verdict(f"I went through every file.\n\n{word}\n")
    assert parsed.verdict == verdict
    assert parsed.parse_method == "loose"


@pytest.mark.parametrize("label,verdict", [
    ("**Verdict:** ✅ APPROVE", APPROVE), ("Decision: request changes", CHANGES),
    ("Status - approved", APPROVE), ("| Verdict | REJECT |", CHANGES), ("Final verdict: cannot approve yet", CHANGES),
])
def test_labelled_verdict_lines(label, verdict):
    assert parse_verdict(f"Some words first.\n{label}\n").verdict == verdict


def test_a_test_result_is_not_a_verdict():
    assert parse_verdict("Ran the suite.\nResult: all tests pass\n").parse_method == "none"


@pytest.mark.parametrize("value,severity", [
    ("blocker", H), ("major", H), ("minor", L), ("nit", L), ("P0", C), ("moderate", M), ("CRITICAL", C),
])
def test_severities_in_other_words(value, severity):
    text = json.dumps({"verdict": "changes_requested", "blockers": [
        {"file": "a.py", "line": 1, "severity": value, "description": "the loop never ends"}]})
    assert parse_verdict(text).blockers[0].severity == severity


def test_unknown_severity_reads_as_high_with_a_note():
    text = json.dumps({"verdict": "changes_requested", "blockers": [
        {"file": "a.py", "severity": "purple", "description": "the loop never ends"}]})
    parsed = parse_verdict(text)
    assert parsed.blockers[0].severity == H
    assert any("purple" in note for note in parsed.notes)


def test_location_field_carries_the_line():
    text = json.dumps({"verdict": "changes_requested", "issues": [
        {"location": "./src/app.py:17", "description": "wrong default"}]})
    blocker = parse_verdict(text).blockers[0]
    assert (blocker.file, blocker.line) == ("src/app.py", 17)


@pytest.mark.parametrize("text", [
    "", "   ", "I looked at the code and have thoughts.", "```python\nprint('hi')\n```",
    '{"foo": 1}', "[1, 2, 3]", "Verdict: maybe", "I would approve this if the tests passed, but",
    "{{{{{{{{", "}" * 50, "```json\n{\"verdict\": \"perhaps\"}\n```",
])
def test_unreadable_replies_are_none_and_never_approve(text):
    parsed = parse_verdict(text)
    assert parsed.parse_method == "none"
    assert parsed.verdict == CHANGES
    assert parsed.blockers == [] and parsed.verified == [] and parsed.reopened == []
    assert not parsed.understood


@pytest.mark.parametrize("value", [None, b'{"verdict": "approve"}', 42, ["LGTM"]])
def test_any_input_type_is_survived(value):
    parsed = parse_verdict(value)
    assert parsed.parse_method in ("json", "fenced-json", "loose", "none")


def test_bytes_are_decoded():
    assert parse_verdict(b'{"verdict": "approve"}').verdict == APPROVE


def test_deeply_nested_and_huge_replies_do_not_break_the_parser():
    deep = '{"verdict": ' + "[" * 5000 + "]" * 5000 + "}"
    assert parse_verdict(deep).parse_method == "none"
    huge = "x" * 300_000 + "\n```json\n" + CODEX_TERSE + "\n```"
    parsed = parse_verdict(huge)
    assert parsed.verdict == APPROVE
    assert any("only the last" in note for note in parsed.notes)


# --------------------------------------------------------------------------- fuzzing

VALID_REPLIES = [CLAUDE_PROSE_AND_FENCE, CODEX_TERSE, GEMINI_MARKDOWN, TRAILING_COMMA, VERIFY_PROSE, SIM_STYLE]
NO_LETTERS = st.text(alphabet=st.sampled_from(list("{}[]\"',:;`#*-_ \n\t0123456789/\\.()<>|~")), max_size=60)


def _check_invariants(text, parsed):
    assert parsed.parse_method in ("json", "fenced-json", "loose", "none")
    assert not any(note.startswith("parser failed") for note in parsed.notes), parsed.notes
    if parsed.verdict == APPROVE:
        assert APPROVAL_EVIDENCE.search(text), "approved a reply that holds no approval word"
        assert not parsed.blockers and not parsed.reopened
    if parsed.parse_method == "none":
        assert parsed.verdict == CHANGES and not parsed.blockers and not parsed.verified


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_fuzz_random_text_never_raises_and_never_approves_without_a_word(text):
    _check_invariants(text, parse_verdict(text))


@settings(max_examples=200, deadline=None)
@given(NO_LETTERS)
def test_fuzz_text_without_letters_is_never_an_approval(text):
    parsed = parse_verdict(text)
    assert parsed.verdict != APPROVE
    _check_invariants(text, parsed)


@st.composite
def mutated_replies(draw):
    text = draw(st.sampled_from(VALID_REPLIES))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate"]))
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, min(len(text), a + 40)))
        if kind == "delete":
            text = text[:a] + text[b:]
        elif kind == "insert":
            text = text[:a] + draw(st.text(max_size=20)) + text[a:]
        elif kind == "duplicate":
            text = text[:b] + text[a:b] + text[b:]
        else:
            text = text[:a]
    return text


@settings(max_examples=400, deadline=None)
@given(mutated_replies())
def test_fuzz_mutated_replies_never_raise_and_keep_the_invariants(text):
    _check_invariants(text, parse_verdict(text))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]\"',: \nab1/*#\\")), max_size=200))
def test_fuzz_loose_json_reader_never_raises(text):
    found = read_loose_object(text)
    assert found is None or isinstance(found, dict)
    spans = object_spans(text)
    for (start, end), following in zip(spans, spans[1:]):
        assert end <= following[0]  # outermost spans never overlap
    assert all(text[s] == "{" and text[e - 1] == "}" for s, e in spans)


# --------------------------------------------------------------------------- prompts


def _blocker(session, description, file="src/app.py", line=42, severity=H):
    """File one blocker through a review, as the coordinator would."""
    review = _review(session, blockers=[ReviewBlocker(file=file, line=line, severity=severity, description=description)])
    return file_blockers(session, review)[0]


def test_review_prompt_is_self_contained_and_its_example_parses_strictly():
    prompt = review_prompt("Build a todo CLI", ["specifications/SPEC.md"], ["todo/cli.py", "tests/test_cli.py"], 1)
    assert "Goal: Build a todo CLI" in prompt
    assert "- specifications/SPEC.md" in prompt and "- todo/cli.py" in prompt
    assert "round 1" in prompt
    example = parse_verdict(prompt)
    assert example.parse_method == "fenced-json"
    assert example.blockers[0].file == "src/app.py"
    assert re.search(r"\bverif(y|ication)\b", prompt, re.I) is None  # the sim routes on these words


def test_review_prompt_summarizes_long_file_lists_and_empty_ones():
    prompt = review_prompt("g", [], [f"f{i}.py" for i in range(100)], 2)
    assert "- f39.py" in prompt and "- f40.py" not in prompt and "60 more" in prompt
    assert "judge the work against the goal" in prompt


def test_verify_prompt_lists_each_blocker_with_its_id():
    session = _session()
    first = _blocker(session, "load_config() returns None for an empty file")
    second = _blocker(session, "R2 `add(1, 1) == 2` does not hold", file="pkg/add.py", line=3, severity=M)
    prompt = verify_prompt("Build a todo CLI", [first, second], 2)
    assert "- B-1 [high] src/app.py:42 — load_config() returns None for an empty file" in prompt
    assert "- B-2 [medium] pkg/add.py:3 — R2 `add(1, 1) == 2` does not hold" in prompt
    assert "(B-1, B-2)" in prompt
    example = parse_verdict(prompt)
    assert example.parse_method == "fenced-json"
    assert not {"B-1", "B-2"} & set(example.verified + example.reopened)  # a copied example confirms nothing


def test_fix_prompt_lists_blockers_and_avoids_the_reviewers_words():
    session = _session()
    blocker = _blocker(session, "missing null\ncheck on `user`")
    prompt = fix_prompt("Build a todo CLI", [blocker])
    assert "- B-1 [high] src/app.py:42 — missing null check on `user`" in prompt
    assert "run the tests" in prompt
    assert "verdict" not in prompt.lower()
    assert re.search(r"\bverif(y|ication)\b", prompt, re.I) is None


def test_reask_prompt_repeats_the_format_and_the_ids_to_judge():
    session = _session()
    blocker = _blocker(session, "wrong default")
    assert "```json" in reask_prompt()
    assert "- B-1 [high] src/app.py:42 — wrong default" in reask_prompt([blocker])


# --------------------------------------------------------------------------- the ledger


def _session() -> Session:
    return Session(id="s-1", workspace="/tmp/work")


def _review(session, verdict=CHANGES, blockers=(), verified=(), reopened=(), round=1, task=None, method="fenced-json"):
    return Review(
        id=session.new_id("R"), round=round, reviewer="reviewer-1", cli="codex", task=task,
        verdict=verdict, blockers=list(blockers), verified=list(verified), reopened=list(reopened),
        parse_method=method, summary="the reviewer's words",
    )


def test_a_blocker_across_rounds_keeps_its_whole_history():
    session = _session()
    parsed = parse_verdict(CLAUDE_PROSE_AND_FENCE)
    review = review_from_verdict(parsed, review_id=session.new_id("R"), round=1, reviewer="reviewer-1",
                                 cli="codex", task="T-3")
    filed = file_blockers(session, review)
    assert [b.id for b in filed] == ["B-1", "B-2"]
    assert [b.id for b in review.blockers] == ["B-1", "B-2"]  # the stored review names ledger ids
    assert filed[0].found_by == "R-1" and filed[0].round_found == 1

    assert assign_blockers(session, ["B-1"], "T-4", 1)[0].after == BlockerState.ASSIGNED
    assert mark_fixed(session, ["B-1"], "T-4", 2)[0].after == BlockerState.FIXED
    reopened = apply_verification(session, _review(session, reopened=["B-1"], round=2))
    assert reopened.reopened == ["B-1"]
    assign_blockers(session, ["B-1"], "T-6", 2)
    mark_fixed(session, ["B-1"], "T-6", 3)
    verified = apply_verification(session, _review(session, APPROVE, verified=["B-1"], round=3))
    assert verified.verified == ["B-1"]

    b1 = session.blocker("B-1")
    assert [(t.state, t.round) for t in b1.history] == [
        (BlockerState.FOUND, 1), (BlockerState.ASSIGNED, 1), (BlockerState.FIXED, 2),
        (BlockerState.REOPENED, 2), (BlockerState.ASSIGNED, 2), (BlockerState.FIXED, 3), (BlockerState.VERIFIED, 3),
    ]
    assert b1.history[3].by == "reviewer-1" and "R-" in b1.history[3].note
    assert [b.id for b in open_blockers(session)] == ["B-2"]
    row = ledger_rows(session)[0]
    assert row["path"] == ("found (r1) → assigned (r1) → fixed (r2) → reopened (r2) → assigned (r2) "
                           "→ fixed (r3) → verified (r3)")
    assert row["resolved"] and row["round_verified"] == 3 and row["times_reopened"] == 1
    assert row["location"] == "src/app.py:42"
    json.dumps(ledger_rows(session))  # JSON-ready for reports


def _blocker_in(state: BlockerState) -> Session:
    session = _session()
    _blocker(session, "wrong default")
    if state != BlockerState.FOUND:
        assign_blockers(session, ["B-1"], "T-1", 1)
    if state in (BlockerState.FIXED, BlockerState.VERIFIED):
        mark_fixed(session, ["B-1"], "T-1", 1)
    if state == BlockerState.VERIFIED:
        apply_verification(session, _review(session, APPROVE, verified=["B-1"]))
    assert session.blocker("B-1").state == state
    return session


@pytest.mark.parametrize("state,action", [
    (BlockerState.FOUND, lambda s: mark_fixed(s, ["B-1"], "T-1", 1)),  # skips assignment
    (BlockerState.FIXED, lambda s: assign_blockers(s, ["B-1"], "T-2", 2)),  # must be reopened first
    (BlockerState.VERIFIED, lambda s: assign_blockers(s, ["B-1"], "T-2", 2)),  # closed
    (BlockerState.VERIFIED, lambda s: mark_fixed(s, ["B-1"], "T-2", 2)),
    (BlockerState.FIXED, lambda s: release_blockers(s, ["B-1"], 2, "cancelled")),  # only assigned → found
])
def test_illegal_transitions_raise_and_leave_the_blocker_as_it_was(state, action):
    session = _blocker_in(state)
    history = list(session.blocker("B-1").history)
    with pytest.raises(IllegalTransition):
        action(session)
    assert session.blocker("B-1").state == state
    assert session.blocker("B-1").history == history


def test_unknown_blocker_ids_are_not_found():
    with pytest.raises(NotFound):
        assign_blockers(_session(), ["B-9"], "T-1", 1)


def test_a_report_like_an_open_blocker_is_not_filed_twice():
    session = _session()
    _blocker(session, "Missing null check on user input")
    again = _review(session, blockers=[
        ReviewBlocker(file="./src/app.py", line=44, description="missing null check for the user input"),
        ReviewBlocker(file="src/other.py", line=44, description="missing null check for the user input"),
        ReviewBlocker(file="src/app.py", line=90, description="the SQL query is built by concatenation"),
    ])
    filed = file_blockers(session, again)
    assert [(b.id, b.file) for b in filed] == [("B-2", "src/other.py"), ("B-3", "src/app.py")]
    assert [b.id for b in again.blockers] == ["B-1", "B-2", "B-3"]


def test_a_duplicate_inside_one_review_is_filed_once():
    session = _session()
    review = _review(session, blockers=[
        ReviewBlocker(file="a.py", line=3, description="off by one in the loop bound"),
        ReviewBlocker(file="a.py", line=3, description="Off-by-one in the loop bound."),
    ])
    assert [b.id for b in file_blockers(session, review)] == ["B-1"]


def test_replaying_a_review_after_a_crash_files_and_changes_nothing_twice():
    session = _session()
    review = review_from_verdict(parse_verdict(CLAUDE_PROSE_AND_FENCE), review_id="R-1", round=1,
                                 reviewer="reviewer-1", cli="codex")
    replay = review.model_copy(deep=True)
    assert len(apply_review(session, review).filed) == 2
    again = apply_review(session, replay)
    assert again.filed == [] and again.verification.changes == []
    assert len(session.blockers) == 2
    assign_blockers(session, ["B-1"], "T-4", 1)
    assert assign_blockers(session, ["B-1"], "T-4", 1) == []
    mark_fixed(session, ["B-1"], "T-4", 2)
    assert mark_fixed(session, ["B-1"], "T-4", 2) == []


def test_similar_text_on_a_verified_blocker_is_a_new_blocker():
    session = _session()
    _blocker(session, "missing null check on user input")
    assign_blockers(session, ["B-1"], "T-1", 1)
    mark_fixed(session, ["B-1"], "T-1", 1)
    apply_verification(session, _review(session, APPROVE, verified=["B-1"]))
    later = _review(session, blockers=[ReviewBlocker(file="src/app.py", line=42, description="missing null check on user input")], round=3)
    update = apply_review(session, later)
    assert [b.id for b in update.filed] == ["B-2"]
    assert session.blocker("B-1").state == BlockerState.VERIFIED


def test_dedupe_tells_apart_problems_in_different_functions():
    assert similar_descriptions("missing null check on user input", "Missing null check for user input.")
    assert not similar_descriptions("missing null check in `parse()`", "missing null check in `save()`")
    assert not similar_descriptions("connection never closed", "SQL built by string concatenation")
    assert SIMILAR_DESCRIPTION > 0.5


def _fixed_session(count=2):
    session = _session()
    for n in range(count):
        _blocker(session, f"problem number {n} in `step_{n}()`", line=10 * (n + 1))
    ids = [b.id for b in session.blockers]
    assign_blockers(session, ids, "T-1", 1)
    mark_fixed(session, ids, "T-1", 2)
    session.tasks.append(Task(id="T-2", kind=TaskKind.VERIFY, role=Role.REVIEWER, title="verify", blockers=ids, round=2))
    return session


def test_a_fixed_blocker_the_verdict_does_not_mention_stays_fixed_and_unverified():
    session = _fixed_session()
    outcome = apply_verification(session, _review(session, CHANGES, verified=["B-1"], round=2, task="T-2"))
    assert outcome.verified == ["B-1"] and outcome.unverified == ["B-2"]
    assert session.blocker("B-2").state == BlockerState.FIXED


def test_an_approval_naming_no_ids_verifies_what_the_reviewer_was_asked_about():
    session = _fixed_session(3)
    session.task("T-2").blockers = ["B-1", "B-2"]
    outcome = apply_verification(session, _review(session, APPROVE, round=2, task="T-2"))
    assert outcome.verified == ["B-1", "B-2"] and outcome.unverified == ["B-3"]
    assert "approval naming no ids" in session.blocker("B-1").history[-1].note


def test_an_approval_naming_no_ids_without_a_task_verifies_nothing():
    session = _fixed_session()
    outcome = apply_verification(session, _review(session, APPROVE, round=2))
    assert outcome.verified == [] and outcome.unverified == ["B-1", "B-2"]
    explicit = apply_verification(session, _review(session, APPROVE, round=2), asked=["B-2"])
    assert explicit.verified == ["B-2"]


def test_an_approval_with_a_partial_list_verifies_only_the_list():
    session = _fixed_session()
    outcome = apply_verification(session, _review(session, APPROVE, verified=["B-2"], round=2, task="T-2"))
    assert outcome.verified == ["B-2"] and outcome.unverified == ["B-1"]


def test_conflicting_and_unknown_ids_are_reported_not_applied():
    session = _fixed_session()
    _blocker(session, "a brand new problem in `other()`", file="src/other.py")
    outcome = apply_verification(session, _review(
        session, CHANGES, verified=["B-1", "B-9", "B-3"], reopened=["B-1"], round=2))
    assert outcome.reopened == ["B-1"] and outcome.verified == []
    assert session.blocker("B-1").state == BlockerState.REOPENED
    assert sorted(outcome.ignored) == sorted([
        "B-1: named as verified and as still broken; reopened wins",
        "B-9: no such blocker",
        "B-3: found, nothing to verify",
    ])


def test_reporting_a_fixed_blocker_again_reopens_it():
    session = _fixed_session()
    again = _review(session, blockers=[ReviewBlocker(file="src/app.py", line=11, description="problem number 0 in `step_0()`")], round=2)
    update = apply_review(session, again)
    assert update.filed == []
    assert update.verification.reopened == ["B-1"]
    assert session.blocker("B-1").history[-1].note.startswith("reported again by review")


def test_a_verdict_nobody_could_read_changes_nothing():
    session = _fixed_session()
    unread = review_from_verdict(parse_verdict("hmm"), review_id="R-9", round=2, reviewer="reviewer-1", cli="gemini")
    update = apply_review(session, unread)
    assert update.filed == [] and update.verification.changes == []
    assert update.verification.unverified == ["B-1", "B-2"]


def test_released_blockers_go_back_to_found_and_can_be_assigned_again():
    session = _session()
    _blocker(session, "wrong default")
    assign_blockers(session, ["B-1"], "T-1", 1)
    change = release_blockers(session, ["B-1"], 1, "fix task cancelled")[0]
    assert (change.before, change.after) == (BlockerState.ASSIGNED, BlockerState.FOUND)
    assert session.blocker("B-1").fix_task is None
    assert assign_blockers(session, ["B-1"], "T-2", 1)[0].event_data() == {
        "blocker": "B-1", "from": "found", "to": "assigned", "by": "T-2", "note": "fix task T-2",
    }


def test_changes_name_the_agent_of_the_task_when_it_is_known():
    session = _session()
    _blocker(session, "wrong default")
    session.tasks.append(Task(id="T-5", kind=TaskKind.FIX, role=Role.IMPLEMENTER, title="fix", agent="implementer-1"))
    assert assign_blockers(session, ["B-1"], "T-5", 1)[0].by == "implementer-1"


# --------------------------------------------------------------------------- the reviews/ files


@pytest.fixture
def store(tmp_path):
    return Workspace(tmp_path / ".orch").create(tmp_path, goal="review tests", activate=False)


def test_record_review_writes_json_and_a_markdown_report_with_every_blocker(store):
    session = _session()
    review = review_from_verdict(parse_verdict(GEMINI_MARKDOWN), review_id="R-1", round=1,
                                 reviewer="reviewer-1", cli="gemini", task="T-3")
    file_blockers(session, review)
    record_review(store, review)

    stored = json.loads((store.reviews_dir / "R-1.json").read_text())
    assert stored["verdict"] == "changes_requested" and stored["parse_method"] == "loose"
    markdown = (store.reviews_dir / "R-1.md").read_text()
    assert markdown.startswith("# Review R-1 — round 1: changes requested")
    for blocker in review.blockers:
        location = blocker.file + (f":{blocker.line}" if blocker.line else "")
        assert f"| {blocker.id} | `{location}` | {blocker.severity.value} |" in markdown
        assert blocker.description.replace("|", "\\|") in markdown
    assert "- Verified: none" in markdown
    assert not [p for p in store.reviews_dir.iterdir() if p.name.endswith(".tmp")]


def test_record_review_redacts_secrets(store):
    secret = "sk-ant-" + "a1B2c3D4e5F6g7H8i9J0"
    review = Review(id="R-2", round=1, reviewer="r", cli="claude", verdict=APPROVE,
                    summary=f"the key {secret} is committed", verified=["B-1"])
    record_review(store, review)
    for suffix in ("json", "md"):
        text = (store.reviews_dir / f"R-2.{suffix}").read_text()
        assert secret not in text and "[REDACTED]" in text
    assert "- Verified: B-1" in (store.reviews_dir / "R-2.md").read_text()


def test_load_reviews_returns_them_in_round_and_id_order(store):
    for review_id, round in (("R-10", 3), ("R-2", 1), ("R-3", 2), ("R-1", 1)):
        record_review(store, Review(id=review_id, round=round, reviewer="r", cli="sim", verdict=CHANGES))
    assert [r.id for r in load_reviews(store)] == ["R-1", "R-2", "R-3", "R-10"]


def test_an_unreadable_review_is_recorded_with_a_warning(store):
    review = review_from_verdict(parse_verdict("no idea"), review_id="R-4", round=1, reviewer="r", cli="sim")
    record_review(store, review)
    assert "held no verdict orch could read" in (store.reviews_dir / "R-4.md").read_text()
    assert load_reviews(store)[0].parse_method == "none"


def test_a_reviewers_own_numbering_is_never_taken_for_ledger_ids():
    session = _fixed_session()
    review = review_from_verdict(parse_verdict(json.dumps({
        "verdict": "changes_requested",
        "blockers": [{"id": 1, "file": "src/new.py", "line": 5, "severity": "high", "description": "leaks a file handle"},
                     {"id": "N2", "file": "src/new.py", "line": 50, "severity": "low", "description": "wrong exit code"}],
    })), review_id="R-5", round=2, reviewer="reviewer-1", cli="codex")
    update = apply_review(session, review)
    assert [b.id for b in update.filed] == ["B-3", "B-4"]
    assert update.verification.changes == []
    assert session.blocker("B-1").state == BlockerState.FIXED


def test_a_blocker_named_by_its_ledger_id_in_any_spelling_is_the_same_blocker():
    session = _fixed_session()
    text = json.dumps({"verdict": "changes_requested",
                       "blockers": [{"id": "b-2", "file": "src/app.py", "description": "still wrong after the fix"}]})
    review = review_from_verdict(parse_verdict(text), review_id="R-6", round=2, reviewer="reviewer-1", cli="codex")
    update = apply_review(session, review)
    assert update.filed == [] and update.verification.reopened == ["B-2"]
