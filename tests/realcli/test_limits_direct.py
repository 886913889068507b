"""Usage and rate limits: each genuine CLI refused by the stub's limit answer, and what orch reads.

Each test runs one limit scenario (scenarios.LIMIT_SCENARIOS, which also saves the fresh
captures the drift guard compares), checks what the CLI really did (exit code, requests,
its own retries, the lines it printed), then feeds its output through orch's adapter: one
LIMIT_HIT (or a LIMIT_WARNING), with the reset time the stub's answer carried.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest

from .lab import Lab, RunResult
from .scenarios import LIMIT_RESETS_IN, LIMIT_TZ

#: started in the background with this module's first test (realcli/conftest.py slow_bank)
SLOW_SCENARIOS_READ = ("gemini_rate_limit_exhausted",)

pytestmark = pytest.mark.realcli


def normalized(lab: Lab, cli: str, result: RunResult, rollout: bool = False) -> list:
    """The run's AgentEvents through orch's adapter: stdout, stderr, (codex) rollout, finish."""
    from orchestrator.adapters import get_adapter

    parser = get_adapter(cli).new_parser()
    events = []
    streams = [("stdout", result.stdout), ("stderr", result.stderr)]
    if rollout:
        path = lab.codex_rollout(result)
        assert path is not None, f"no codex rollout for this run:\n{result.describe()}"
        streams.append(("rollout", path.read_bytes()))
    for stream, data in streams:
        for line in data.splitlines():
            events += parser.feed(stream, line)
    return events + parser.finish(result.returncode)


def of_kind(events: list, kind: str) -> list:
    return [e for e in events if e.kind.value == kind]


def the_limit(lab: Lab, result: RunResult) -> dict:
    """The limit answer the stub sent during this run (its log keeps status, headers, body)."""
    sent = [r["limit"] for r in lab.requests_of(result) if r.get("limit")]
    assert sent, f"the stub sent no limit answer:\n{result.describe()}"
    return sent[-1]


def epoch(value) -> datetime:
    return datetime.fromtimestamp(int(value), timezone.utc)


def result_time(result: RunResult) -> Optional[datetime]:
    final = next((l for l in reversed(result.lines) if l.get("type") == "result"), {})
    stamp = final.get("timestamp")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


# ---------------------------------------------------------------- claude

def test_claude_subscription_limit_is_one_limit_hit_at_the_headers_reset(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("claude_usage_limit", lab)["claude_usage_limit"]
    assert result.returncode == 1, result.describe()
    assert len(lab.requests_of(result)) == 1  # a subscription's 429 is not retried
    reset = epoch(the_limit(lab, result)["headers"]["anthropic-ratelimit-unified-reset"])
    kinds = [l["type"] for l in result.lines]
    assert kinds == ["system", "rate_limit_event", "assistant", "result"], kinds
    info = result.lines[1]["rate_limit_info"]
    assert info["status"] == "rejected" and info["rateLimitType"] == "five_hour" and epoch(info["resetsAt"]) == reset
    words = result.lines[2]["message"]["content"][0]["text"]
    assert words.startswith("You've hit your session limit · resets ") and words.endswith(f"({LIMIT_TZ})")
    assert result.lines[2]["error"] == "rate_limit"
    assert result.lines[-1]["is_error"] is True and result.lines[-1]["api_error_status"] == 429

    events = normalized(lab, "claude", result)
    (hit,) = of_kind(events, "limit_hit")  # three lines say it; it counts once
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at, hit.message) == ("usage", "five_hour", reset, words)
    assert events.index(hit) < events.index(of_kind(events, "run_finished")[0])


def test_claude_near_its_weekly_limit_warns_and_finishes(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("claude_limit_warning", lab)["claude_limit_warning"]
    assert result.returncode == 0, result.describe()
    event = next(l for l in result.lines if l.get("type") == "rate_limit_event")
    assert event["rate_limit_info"]["status"] == "allowed_warning"
    assert event["rate_limit_info"]["rateLimitType"] == "seven_day"
    assert lab.requests_of(result)[0].get("limit") is None  # a normal answer, with warning headers
    events = normalized(lab, "claude", result)
    assert of_kind(events, "limit_hit") == []
    (warning,) = of_kind(events, "limit_warning")
    assert (warning.limit_kind, warning.limit_scope) == ("usage", "weekly")
    assert warning.resets_at == epoch(event["rate_limit_info"]["resetsAt"])
    assert of_kind(events, "run_finished")[0].outcome.value == "success"


def test_claude_api_key_429_is_retried_by_claude_then_one_rate_limit_hit(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("claude_rate_limit", lab)["claude_rate_limit"]
    assert result.returncode == 1, result.describe()
    assert len(lab.requests_of(result)) == 3  # the first try and CLAUDE_CODE_MAX_RETRIES=2 retries
    retries = [l for l in result.lines if l.get("subtype") == "api_retry"]
    assert [(r["attempt"], r["error_status"], r["error"]) for r in retries] == [(1, 429, "rate_limit"),
                                                                               (2, 429, "rate_limit")]
    assert not any(l.get("type") == "rate_limit_event" for l in result.lines)  # an API key has no unified limit
    assert result.lines[-1]["result"].startswith("API Error: Request rejected (429) · ")

    events = normalized(lab, "claude", result)
    (hit,) = of_kind(events, "limit_hit")
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at) == ("rate", None, None)
    retrying = [e for e in events if e.kind.value == "status" and e.status == "retrying"]
    assert len(retrying) == 2 and events.index(retrying[-1]) < events.index(hit)  # retries first, then the hit


# ---------------------------------------------------------------- codex

def test_codex_usage_limit_is_one_limit_hit_at_the_minute_codex_prints(lab: Lab, scenario_bank,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    result = scenario_bank.run("codex_usage_limit", lab)["codex_usage_limit"]
    assert result.returncode == 1, result.describe()
    assert len(lab.requests_of(result)) == 1
    reset = epoch(the_limit(lab, result)["body"]["error"]["resets_at"])
    kinds = [l["type"] for l in result.lines]
    assert kinds == ["thread.started", "turn.started", "error", "turn.failed"], kinds
    words = result.lines[2]["message"]
    assert words.startswith("You’ve hit your usage limit.") and " try again at " in words
    assert result.lines[3]["error"]["message"] == words

    monkeypatch.setenv("TZ", LIMIT_TZ)  # codex printed the time in its local zone, the one orch passed on
    events = normalized(lab, "codex", result, rollout=True)
    (hit,) = of_kind(events, "limit_hit")  # error, turn.failed and the rollout's task_complete: once
    assert (hit.limit_kind, hit.message) == ("usage", words)
    assert hit.resets_at == reset.replace(second=0)  # codex prints minutes
    assert of_kind(events, "limit_warning") == []  # the rollout's window at 100% is the hit itself


def test_codex_retries_a_rate_limit_429_five_times_then_one_rate_limit_hit(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("codex_rate_limit", lab)["codex_rate_limit"]
    assert result.returncode == 1, result.describe()
    sent = lab.requests_of(result)
    assert len(sent) == 6  # codex's five stream retries, honouring retry-after
    assert sent[-1]["time"] - sent[0]["time"] >= 5 * 0.9
    errors = [l["message"] for l in result.lines if l["type"] == "error"]
    assert [e.split(" (", 1)[0] for e in errors[:5]] == [f"Reconnecting... {n}/5" for n in range(1, 6)]
    assert result.lines[-1]["error"]["message"].startswith("exceeded retry limit, last status: 429 Too Many Requests")
    events = normalized(lab, "codex", result)
    (hit,) = of_kind(events, "limit_hit")
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at) == ("rate", None, None)
    retrying = [e for e in of_kind(events, "status") if e.status == "retrying"]
    assert len(retrying) == 5 and events.index(retrying[-1]) < events.index(hit)


def test_codex_near_its_limit_says_so_only_in_the_rollout(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("codex_limit_warning", lab)["codex_limit_warning"]
    assert result.returncode == 0, result.describe()
    assert [l["type"] for l in result.lines][-1] == "turn.completed"
    assert lab.requests_of(result)[0].get("limit") is None  # a normal answer, with warning headers
    assert of_kind(normalized(lab, "codex", result), "limit_warning") == []  # stdout alone: nothing
    events = normalized(lab, "codex", result, rollout=True)
    (warning,) = of_kind(events, "limit_warning")
    assert (warning.limit_kind, warning.limit_scope, warning.data["used_percent"]) == ("usage", "five_hour", 92.0)
    sent = lab.requests_of(result)[0]["time"]
    assert abs((warning.resets_at - epoch(sent)).total_seconds() - 3000) <= 2
    assert of_kind(events, "limit_hit") == []


# ---------------------------------------------------------------- gemini

def test_gemini_daily_quota_is_one_limit_hit_at_pacific_midnight(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("gemini_usage_limit", lab)["gemini_usage_limit"]
    assert result.returncode == 173, result.describe()
    assert len(lab.requests_of(result)) == 1  # a per-day quota is not retried
    final = result.lines[-1]
    assert final["type"] == "result" and final["status"] == "error"
    assert "You have exhausted your daily quota on this model." in final["error"]["message"]
    (hit,) = of_kind(normalized(lab, "gemini", result), "limit_hit")
    assert (hit.limit_kind, hit.limit_scope) == ("usage", "daily")
    from zoneinfo import ZoneInfo

    pacific = hit.resets_at.astimezone(ZoneInfo("America/Los_Angeles"))
    assert (pacific.hour, pacific.minute) == (0, 0)
    assert timedelta(0) < hit.resets_at - result_time(result) <= timedelta(days=1)


def test_gemini_long_retry_delay_is_not_retried_and_resets_after_it(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("gemini_rate_limit", lab)["gemini_rate_limit"]
    assert result.returncode == 173, result.describe()
    assert len(lab.requests_of(result)) == 1  # a retryDelay over 300 s: gemini gives up at once
    message = result.lines[-1]["error"]["message"]
    assert f"Suggested retry after {LIMIT_RESETS_IN}s." in message
    (hit,) = of_kind(normalized(lab, "gemini", result), "limit_hit")
    assert (hit.limit_kind, hit.limit_scope) == ("rate", "minute")
    assert hit.resets_at == result_time(result) + timedelta(seconds=LIMIT_RESETS_IN)


def test_gemini_retrying_a_short_429_itself_is_no_limit_hit(lab: Lab, scenario_bank) -> None:
    result = scenario_bank.run("gemini_rate_limit_retried", lab)["gemini_rate_limit_retried"]
    assert result.returncode == 0, result.describe()
    first, second = lab.requests_of(result)
    assert second["time"] - first["time"] >= 5  # gemini waits at least its 5 s initial backoff
    assert "Attempt 1 failed: You exceeded your current quota" in result.stderr.decode()
    events = normalized(lab, "gemini", result)
    assert of_kind(events, "limit_hit") == []
    assert [e.status for e in of_kind(events, "status")] == ["retrying"]
    assert of_kind(events, "run_finished")[0].outcome.value == "success"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gemini_gives_up_on_a_short_429_after_ten_attempts(slow_bank) -> None:
    """About 4 minutes of gemini's own back-off (5 s doubling to 30 s): run in the background (slow_bank)."""
    lab, result = slow_bank.result("gemini_rate_limit_exhausted")
    assert result.returncode == 173, result.describe()
    assert len(lab.requests_of(result)) == 10
    events = normalized(lab, "gemini", result)
    assert len([e for e in of_kind(events, "status") if e.status == "retrying"]) == 10
    (hit,) = of_kind(events, "limit_hit")
    assert (hit.limit_kind, hit.limit_scope) == ("rate", "minute")
    assert hit.resets_at == result_time(result) + timedelta(seconds=1)
