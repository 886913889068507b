"""Drift guard: this run's fresh captures, through orch's adapters, against the committed ones.

Each case the raw scenarios capture (scenarios.CASES) has a committed fixture of the same
name in tests/fixtures/cli-captures. Both go through `drift.normalize` (the adapter's
summary and events, and the raw line shapes, with ids, times and numbers masked); any
difference fails the test and names the line or event that changed. A CLI update that
changes its output format therefore fails here first, before a parser silently misreads it.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from .drift import Capture, differences, normalize
from .netns import REPO
from .scenarios import CASES, cli_of

FIXTURES = REPO / "tests" / "fixtures" / "cli-captures"


def adapter_or_skip(cli: str) -> None:
    try:
        from orchestrator.adapters import get_adapter

        get_adapter(cli).new_parser()
    except ImportError as exc:
        pytest.skip(f"orch's {cli} adapter has not landed yet: {exc}")


OBSERVED = FIXTURES.parent / "cli-variants-observed"


def committed(case: str) -> Path:
    base = FIXTURES / case
    assert Path(f"{base}.jsonl").exists(), f"no committed fixture {base}.jsonl for the raw scenario {case}"
    return base


@pytest.mark.realcli
@pytest.mark.parametrize("case", sorted(CASES))
def test_fresh_capture_matches_the_committed_fixture(case: str, scenario_bank, fresh_captures: Path) -> None:
    cli = cli_of(case)
    adapter_or_skip(cli)
    reference = committed(case)
    fresh, _ = scenario_bank.capture(case, fresh_captures)
    assert Path(f"{fresh}.jsonl").exists(), f"the scenario {CASES[case]} saved no capture {case}"
    got = normalize(cli, Capture.load(fresh))
    found = differences(normalize(cli, Capture.load(reference)), got)
    # A CLI that answers the same request in more than one shape (observed, kept in
    # fixtures/cli-variants-observed/<case>.N.*) matches when it matches any of them.
    for variant in sorted(OBSERVED.glob(f"{case}.*.jsonl")):
        if found and not differences(normalize(cli, Capture.load(Path(str(variant)[:-len(".jsonl")]))), got):
            found = []
    assert not found, (f"the {cli} CLI's output for {case} drifted from {reference.relative_to(REPO)}.*"
                       f" (fresh: {fresh}.*):\n  " + "\n  ".join(found))


# ---- the guard itself, on doctored copies of committed fixtures (no CLI needed)

def doctored(tmp_path: Path, case: str, edit) -> Path:
    base = tmp_path / case
    for ext in (".jsonl", ".stderr", ".cmd"):
        shutil.copy(f"{committed(case)}{ext}", f"{base}{ext}")
    jsonl = Path(f"{base}.jsonl")
    jsonl.write_text(edit(jsonl.read_text()))
    return base


def shift_digits(text: str) -> str:
    """Every non-zero digit changed to another non-zero one (so no number gains a leading 0)."""
    return re.sub(r"[1-9]", lambda m: str(int(m.group()) % 9 + 1), text)


@pytest.mark.parametrize("case", ["claude_tool", "codex_patch", "gemini_tool", "gemini_resume"])
def test_guard_ignores_ids_times_and_numbers(case: str, tmp_path: Path) -> None:
    cli = cli_of(case)
    adapter_or_skip(cli)
    new_session = str(uuid.uuid4())
    base = doctored(tmp_path, case, lambda t: re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", new_session, shift_digits(t)))
    assert differences(normalize(cli, Capture.load(committed(case))), normalize(cli, Capture.load(base))) == []


@pytest.mark.parametrize("case, before, after", [
    ("claude_usage_limit", "resets 4:22pm (Europe/Berlin)", "resets Dec 3, 9am (Europe/Berlin)"),
    ("codex_usage_limit", "try again at 4:23 PM.", "try again at Dec 3rd, 2026 12:05 AM."),
])
def test_guard_ignores_when_a_limit_resets(case: str, before: str, after: str, tmp_path: Path) -> None:
    cli = cli_of(case)
    adapter_or_skip(cli)
    base = doctored(tmp_path, case, lambda t: t.replace(before, after))
    assert Path(f"{base}.jsonl").read_text().count(after) >= 1
    assert differences(normalize(cli, Capture.load(committed(case))), normalize(cli, Capture.load(base))) == []


def test_guard_names_the_line_whose_shape_changed(tmp_path: Path) -> None:
    adapter_or_skip("claude")
    base = doctored(tmp_path, "claude_tool", lambda t: t.replace('"type":"tool_use"', '"type":"server_tool_use"', 1))
    found = "\n".join(differences(normalize("claude", Capture.load(committed("claude_tool"))),
                                  normalize("claude", Capture.load(base))))
    assert "raw stdout line shape #3 changed" in found
    assert "assistant/tool_use  (from stdout line 3)" in found
    assert "assistant/server_tool_use  (from stdout line 3)" in found


def test_guard_names_the_event_whose_meaning_changed(tmp_path: Path) -> None:
    adapter_or_skip("claude")

    def refuse(text: str) -> str:  # the same line shape, but the tool result now reports a refusal
        return text.replace('"content":"hi","is_error":false', '"content":"This command requires approval","is_error":true')

    base = doctored(tmp_path, "claude_tool", refuse)
    found = differences(normalize("claude", Capture.load(committed("claude_tool"))), normalize("claude", Capture.load(base)))
    assert not any("raw stdout line shape" in f for f in found)
    event_change = next(f for f in found if f.startswith("normalized event"))
    assert "stdout line 4" in event_change, found
    assert any(f.startswith("denied: committed False, fresh True") for f in found), found


def test_guard_ignores_copilots_progress_events_but_not_its_record(tmp_path: Path) -> None:
    adapter_or_skip("copilot")

    def reorder(text: str) -> str:  # one more progress line, as a slower machine prints
        lines = text.splitlines(keepends=True)
        extra = next(l for l in lines if '"session.background_tasks_changed"' in l)
        return "".join(lines[:3] + [extra] + lines[3:])

    base = doctored(tmp_path, "copilot_tool", reorder)
    reference = normalize("copilot", Capture.load(committed("copilot_tool")))
    assert differences(reference, normalize("copilot", Capture.load(base))) == []
    (tmp_path / "b").mkdir()
    changed = doctored(tmp_path / "b", "copilot_tool", lambda t: t.replace('"tool.execution_complete"',
                                                                          '"tool.execution_done"', 1))
    assert any("raw stdout line shape" in f for f in differences(reference, normalize("copilot", Capture.load(changed))))
