"""Usage and rate limits: the genuine captures through each adapter, and the words they are read from.

The captures were recorded against the model stub's limit answers (tests/realcli/
scenarios.py LIMIT_SCENARIOS; CLI_PERMISSIONS_SPEC.md "Usage limits and rate limits").
Each limit is one LIMIT_HIT (before the run's end) with its reset as an absolute UTC
time; a CLI retrying on its own is no hit until the run fails; a warning is a
LIMIT_WARNING and the run goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.adapters import get_adapter, limits, summarize
from orchestrator.cli import cli
from orchestrator.core.models import AgentEventKind as K

CAPTURES = Path(__file__).parent / "fixtures" / "cli-captures"
VARIANTS = Path(__file__).parent / "fixtures" / "cli-variants"
UTC = timezone.utc
BERLIN = "Europe/Berlin"  # the TZ the limit captures ran with (their .cmd files say so)
# When the limit captures were recorded (the codex rollout's task_complete timestamp).
RECORDED = datetime(2026, 12, 2, 13, 23, 2, tzinfo=UTC)


@pytest.fixture
def recorded_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the captures as if live: the recording day's clock, the recording zone."""
    monkeypatch.setattr(limits, "now", lambda: RECORDED)
    monkeypatch.setenv("TZ", BERLIN)


def lines(name: str, folder: Path = CAPTURES) -> list[tuple[str, bytes]]:
    pairs = []
    for stream, suffix in (("stdout", ".jsonl"), ("stderr", ".stderr"), ("rollout", ".rollout.jsonl")):
        path = folder / f"{name}{suffix}"
        if path.exists():
            pairs += [(stream, line) for line in path.read_bytes().split(b"\n") if line]
    return pairs


def events_of(name: str, folder: Path = CAPTURES, exit_code: int = 1) -> list:
    parser = get_adapter(name.split("_", 1)[0]).new_parser()
    events = [e for stream, line in lines(name, folder) for e in parser.feed(stream, line)]
    return events + parser.finish(exit_code)


def kinds(events, kind) -> list:
    return [e for e in events if e.kind is kind]


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- captures → one LIMIT_HIT

# name: (kind, scope, resets_at (UTC), the CLI's words begin)
HITS = {
    "claude_usage_limit": ("usage", "five_hour", at(2026, 12, 2, 15, 22, 52), "You've hit your session limit · resets"),
    "claude_rate_limit": ("rate", None, None, "API Error: Request rejected (429) · "),
    "codex_usage_limit": ("usage", None, at(2026, 12, 2, 15, 23), "You’ve hit your usage limit. Upgrade to Pro"),
    "codex_rate_limit": ("rate", None, None, "exceeded retry limit, last status: 429 Too Many Requests"),
    "gemini_usage_limit": ("usage", "daily", at(2026, 12, 3, 8, 0),  # midnight Pacific (PST)
                           "[API Error: You have exhausted your daily quota on this model.]"),
    "gemini_rate_limit": ("rate", "minute", at(2026, 12, 2, 13, 23, 28, 897000) + timedelta(seconds=7200),
                          "[API Error: You exceeded your current quota"),
    "gemini_rate_limit_exhausted": ("rate", "minute", at(2026, 12, 2, 13, 27, 53, 714000),
                                    "[API Error: You exceeded your current quota"),
}


@pytest.mark.parametrize("name", sorted(HITS))
def test_a_limit_is_one_limit_hit_with_its_reset_in_utc(name: str, recorded_clock: None) -> None:
    kind, scope, resets_at, words = HITS[name]
    events = events_of(name)
    (hit,) = kinds(events, K.LIMIT_HIT)
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at) == (kind, scope, resets_at)
    assert hit.message.startswith(words)
    assert hit.resets_at is None or hit.resets_at.tzinfo is not None
    assert kinds(events, K.LIMIT_WARNING) == []
    (finished,) = kinds(events, K.RUN_FINISHED)
    assert finished.outcome.value == "error" and events.index(hit) < events.index(finished)
    assert hit.stream == "stdout"  # said on stdout, before the run's end


def test_claude_says_it_three_times_and_it_counts_once(recorded_clock: None) -> None:
    said = [json.loads(line) for stream, line in lines("claude_usage_limit") if stream == "stdout"]
    assert [l["type"] for l in said] == ["system", "rate_limit_event", "assistant", "result"]
    parser = get_adapter("claude").new_parser()
    per_line = [[e.kind for e in parser.feed("stdout", json.dumps(l).encode())] for l in said]
    assert per_line[1] == []  # the rejected event waits for claude's words…
    assert per_line[2][0] is K.LIMIT_HIT  # …which come on the synthetic assistant line
    assert K.LIMIT_HIT not in per_line[3]  # and the result repeats them: no second hit


def test_codex_says_it_on_stdout_and_in_the_rollout_and_it_counts_once(recorded_clock: None) -> None:
    events = events_of("codex_usage_limit")
    assert len(kinds(events, K.LIMIT_HIT)) == 1
    # the rollout alone (stdout lost) still tells it, with the rollout's own time of day
    parser = get_adapter("codex").new_parser()
    from_rollout = [e for stream, line in lines("codex_usage_limit") if stream == "rollout"
                    for e in parser.feed(stream, line)]
    assert kinds(from_rollout, K.LIMIT_HIT) == []  # told at finish, for the rollout's last turn only
    (hit,) = kinds(parser.finish(1), K.LIMIT_HIT)
    assert (hit.stream, hit.limit_kind, hit.resets_at) == ("rollout", "usage", at(2026, 12, 2, 15, 23))


def test_a_resumed_threads_earlier_limit_is_not_this_runs(recorded_clock: None) -> None:
    rollout = [line for stream, line in lines("codex_usage_limit") if stream == "rollout"]
    later = [{"timestamp": "2026-12-02T18:00:00.000Z", "type": "turn_context", "payload": {"turn_id": "turn-2"}},
             {"timestamp": "2026-12-02T18:00:05.000Z", "type": "event_msg",
              "payload": {"type": "task_complete", "turn_id": "turn-2", "last_agent_message": "done"}}]
    parser = get_adapter("codex").new_parser()
    for line in rollout + [json.dumps(o).encode() for o in later]:
        parser.feed("rollout", line)
    assert kinds(parser.finish(0), K.LIMIT_HIT) == []


def test_the_claude_word_reset_is_read_when_no_event_precedes_it(recorded_clock: None) -> None:
    said = [l for stream, l in lines("claude_usage_limit") if stream == "stdout" and b"rate_limit_event" not in l]
    parser = get_adapter("claude").new_parser()
    (hit,) = [e for line in said for e in parser.feed("stdout", line) if e.kind is K.LIMIT_HIT]
    # "resets 4:22pm (Europe/Berlin)": minute precision, from claude's words alone
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at) == ("usage", "five_hour", at(2026, 12, 2, 15, 22))


def test_a_rejected_event_without_words_is_reported_at_the_end() -> None:
    event = [l for stream, l in lines("claude_usage_limit") if b"rate_limit_event" in l]
    parser = get_adapter("claude").new_parser()
    assert parser.feed("stdout", event[0]) == []
    restored = get_adapter("claude").new_parser(json.loads(json.dumps(parser.state())))
    (hit, finished) = restored.finish(None)
    assert hit.kind is K.LIMIT_HIT and finished.kind is K.RUN_FINISHED
    assert (hit.limit_scope, hit.resets_at, hit.stream) == ("five_hour", at(2026, 12, 2, 15, 22, 52), "exit")


# ---------------------------------------------------------------- the CLI's own retries

def test_claude_api_retries_are_status_until_the_run_fails() -> None:
    parser = get_adapter("claude").new_parser()
    seen: list = []
    for stream, line in lines("claude_rate_limit"):
        got = parser.feed(stream, line)
        if json.loads(line).get("subtype") == "api_retry":
            assert [e.kind for e in got] == [K.STATUS] and got[0].status == "retrying"
            assert not any(e.kind is K.LIMIT_HIT for e in seen)
        seen += got
    assert len(kinds(seen, K.LIMIT_HIT)) == 1


def test_claude_recovering_after_retries_is_no_limit() -> None:
    events = events_of("claude_api_retry", VARIANTS, exit_code=0)
    assert kinds(events, K.LIMIT_HIT) == [] and kinds(events, K.STATUS)


def test_codex_reconnects_are_status_until_the_run_fails() -> None:
    events = events_of("codex_rate_limit")
    retrying = [e for e in kinds(events, K.STATUS) if e.status == "retrying"]
    (hit,) = kinds(events, K.LIMIT_HIT)
    assert len(retrying) == 5 and all(events.index(r) < events.index(hit) for r in retrying)


def test_gemini_attempts_are_status_and_a_successful_retry_is_no_limit() -> None:
    events = events_of("gemini_rate_limit_retried", exit_code=0)
    assert kinds(events, K.LIMIT_HIT) == []
    assert [e.status for e in kinds(events, K.STATUS)] == ["retrying"]
    events = events_of("gemini_rate_limit_exhausted")
    assert len([e for e in kinds(events, K.STATUS) if e.status == "retrying"]) == 10
    assert len(kinds(events, K.LIMIT_HIT)) == 1


# ---------------------------------------------------------------- warnings

def test_claude_close_to_its_weekly_limit_is_a_warning() -> None:
    events = events_of("claude_limit_warning", exit_code=0)
    (warning,) = kinds(events, K.LIMIT_WARNING)
    assert (warning.limit_kind, warning.limit_scope, warning.resets_at) == ("usage", "weekly", at(2026, 12, 3, 13, 22, 55))
    assert warning.data["utilization"] == 0.8
    assert kinds(events, K.LIMIT_HIT) == [] and kinds(events, K.RUN_FINISHED)[0].outcome.value == "success"


def test_claude_over_its_limit_on_extra_usage_is_a_warning() -> None:
    line = json.dumps({"type": "rate_limit_event", "rate_limit_info": {
        "status": "rejected", "resetsAt": 1796224972, "rateLimitType": "five_hour", "isUsingOverage": True,
        "overageStatus": "allowed"}, "session_id": "s"}).encode()
    parser = get_adapter("claude").new_parser()
    (warning,) = parser.feed("stdout", line)
    assert warning.kind is K.LIMIT_WARNING and "extra usage" in warning.message
    assert parser.finish(0)[0].kind is K.RUN_FINISHED  # nothing pending


def test_codex_close_to_its_limit_is_a_warning_from_the_rollout() -> None:
    events = events_of("codex_limit_warning", exit_code=0)
    (warning,) = kinds(events, K.LIMIT_WARNING)
    assert (warning.stream, warning.limit_scope, warning.resets_at) == ("rollout", "five_hour", at(2026, 12, 2, 14, 13, 11))
    assert warning.data["used_percent"] == 92.0


# ---------------------------------------------------------------- what orch parse prints

def test_parse_json_lists_the_limits(recorded_clock: None) -> None:
    base = CAPTURES / "codex_usage_limit"
    out = CliRunner().invoke(cli, ["parse", "--cli", "codex", f"{base}.jsonl", "--stderr", f"{base}.stderr",
                                   "--rollout", f"{base}.rollout.jsonl", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["outcome"] == "error"
    (limit,) = summary["limits"]
    assert limit["hit"] is True and limit["kind"] == "usage" and limit["message"].startswith("You’ve hit")
    assert datetime.fromisoformat(limit["resets_at"].replace("Z", "+00:00")) == at(2026, 12, 2, 15, 23)
    out = CliRunner().invoke(cli, ["parse", "--cli", "claude", str(CAPTURES / "claude_text.jsonl"), "--json"])
    assert json.loads(out.output)["limits"] == []


def test_summary_keeps_one_entry_per_limit() -> None:
    events = events_of("claude_usage_limit")
    summary = summarize("claude", events + kinds(events, K.LIMIT_HIT))
    assert len(summary.limits) == 1 and summary.limits[0].scope == "five_hour"


# ---------------------------------------------------------------- the words

REF = at(2026, 12, 2, 13, 12, 47)


@pytest.mark.parametrize("text, expected", [
    ("You've hit your session limit · resets 3:12pm (UTC)", at(2026, 12, 2, 15, 12)),
    ("You've hit your session limit · resets 9am (Europe/Berlin)", at(2026, 12, 3, 8, 0)),  # tomorrow's 9am
    ("You've hit your session limit · resets 4pm (Europe/Berlin)", at(2026, 12, 2, 15, 0)),
    ("You've hit your weekly limit · resets Dec 5, 2:23pm (Europe/Berlin)", at(2026, 12, 5, 13, 23)),
    ("You've hit your weekly limit · resets Jan 2, 9am (UTC)", at(2027, 1, 2, 9, 0)),  # next year
    ("You've hit your Opus limit · resets Jan 5, 2027, 10am (America/New_York)", at(2027, 1, 5, 15, 0)),
])
def test_claude_reset_words(text: str, expected: datetime) -> None:
    assert limits.claude_reset_from_text(text, REF) == expected
    assert limits.is_claude_usage_text(text)


def test_claude_scope_words() -> None:
    assert limits.claude_scope_from_text("You've hit your session limit · resets 3pm") == "five_hour"
    assert limits.claude_scope_from_text("You've hit your weekly limit · resets Dec 5") == "weekly"
    assert limits.claude_scope_from_text("You've hit your Opus limit") == "weekly"
    assert limits.claude_scope_from_text("API Error: 429") is None


@pytest.mark.parametrize("text, expected", [
    ("You’ve hit your usage limit. Upgrade to Pro (…) or try again at 4:23 PM.", at(2026, 12, 2, 15, 23)),
    ("You've hit your usage limit. Try again at 12:05 AM.", at(2026, 12, 1, 23, 5)),
    ("You’ve hit your usage limit. … or try again at Dec 5th, 2026 2:23 PM.", at(2026, 12, 5, 13, 23)),
    ("You've hit your usage limit. Try again at Jan 1st, 2027 12:30 PM.", at(2027, 1, 1, 11, 30)),
    ("You've hit your usage limit. Try again at Mar 22nd, 2027 9:00 AM.", at(2027, 3, 22, 8, 0)),
    ("You've hit your usage limit. Try again later.", None),
])
def test_codex_reset_words(text: str, expected, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", BERLIN)
    assert limits.codex_reset_from_text(text, REF) == expected
    assert limits.is_codex_usage_text(text)


def test_gemini_words() -> None:
    assert limits.retry_delay("Please retry in 1s.\nSuggested retry after 1s.") == 1
    assert limits.retry_delay("Please retry in 27.5s") == 27.5 and limits.retry_delay("retry in 800ms") == 0.8
    assert limits.gemini_limit("[API Error: You have exhausted your daily quota on this model.]") == ("usage", "daily")
    assert limits.gemini_limit("You exceeded your current quota … Please retry in 2s.") == ("rate", "minute")
    assert limits.gemini_limit("[API Error: fake server injected error 400]") is None
    # per-day quotas reset at midnight Pacific, summer time included
    assert limits.next_google_midnight(at(2026, 7, 1, 12, 0)) == at(2026, 7, 2, 7, 0)


# ---------------------------------------------------------------- the sim's limit=SECONDS

SIM_EXIT = {"claude": 1, "codex": 1, "gemini": 173}  # as the real CLIs exit on a limit


@pytest.mark.parametrize("fmt", sorted(SIM_EXIT))
@pytest.mark.parametrize("seconds", [90, 7200, 400000])
def test_sim_limit_directive_speaks_each_clis_limit(fmt: str, seconds: int, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from orchtest import orch_env, run_orch

    monkeypatch.setenv("TZ", BERLIN)
    out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
    started = datetime.now(UTC)
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        done = subprocess.run([sys.executable, "-m", "orchestrator.sim", "-p", f"work [sim: limit={seconds}]",
                               "--format", fmt], cwd=tmp_path, env=orch_env(), stdout=stdout, stderr=stderr,
                              timeout=60)
    assert done.returncode == SIM_EXIT[fmt]
    parsed = run_orch("parse", "--cli", fmt, str(out), "--stderr", str(err), "--json", check=True)
    summary = json.loads(parsed.stdout)
    assert summary["outcome"] == "error"
    (limit,) = summary["limits"]
    assert limit["hit"] is True and limit["message"]
    resets_at = datetime.fromisoformat(limit["resets_at"].replace("Z", "+00:00"))
    expected = started + timedelta(seconds=seconds)
    slack = 61 if fmt == "codex" else 2  # codex words the time to the minute
    assert -slack <= (resets_at - expected).total_seconds() <= 5, (resets_at, expected)
    if fmt == "claude":
        assert limit["scope"] == ("five_hour" if seconds <= 5 * 3600 else "weekly") and limit["kind"] == "usage"
    elif fmt == "gemini":
        assert (limit["kind"], limit["scope"]) == ("rate", "minute")
        attempts = [l for l in err.read_text().splitlines() if l.startswith("Attempt ")]
        assert len(attempts) == (10 if seconds <= 300 else 0)  # gemini retries short delays itself
    else:
        assert limit["kind"] == "usage"


def test_the_event_log_line_names_the_limit() -> None:
    from orchestrator.core.models import Event, EventKind
    from orchestrator.views.render import event_line

    (hit,) = kinds(events_of("claude_usage_limit"), K.LIMIT_HIT)
    data = hit.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"kind": hit.kind.value}
    line = event_line(Event(kind=EventKind.AGENT_OUTPUT, agent="impl-1", data=data))
    assert "LIMIT HIT (usage five_hour) resets 2026-12-02T15:22:52Z: You've hit your session limit" in line
