"""opencode, Qwen Code and GitHub Copilot CLI at a provider's limit, out of credit, with a
wrong key, and resumed: their genuine captures through each adapter.

The captures were recorded in the lab against the stub's OpenAI-compatible answers
(tests/realcli/scenarios.py OPEN_LIMIT_SCENARIOS and SLOW_SCENARIOS; CLI_PERMISSIONS_SPEC.md
§9): a persistent 429 whose words say "Please try again in 20s." while `retry-after` says
1 s, OpenAI's `insufficient_quota` 429, OpenRouter's 402, OpenAI's and a gateway's 401.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter, limits, summarize
from orchestrator.adapters.login import says_not_logged_in
from orchestrator.runtime.ingest.run_files import parse_run_files
from orchestrator.core.models import AgentEventKind as K, AgentState, FailureKind, LimitNotice, Outcome, RunAccumulator
from orchestrator.runtime.ingest.classify import classify_run
from orchestrator.spend.pricing import price_per_call
from test_adapter_limits import CAPTURES, RECORDED, events_of, kinds, lines

OPEN_CLIS = ("opencode", "qwen", "copilot")
RESETS_IN = timedelta(seconds=20)  # what the words say; retry-after said 1 s


@pytest.fixture
def recorded_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen Code's words carry no time: read as if live, at RECORDED."""
    monkeypatch.setattr(limits, "now", lambda: RECORDED)


def _error_time(name: str):
    """When the CLI said it: opencode's `error` line (epoch ms), Copilot's `session.error` (ISO)."""
    for stream, line in lines(name):
        obj = json.loads(line) if stream == "stdout" else {}
        if obj.get("type") == "error":
            return limits.from_epoch(obj["timestamp"])
        if obj.get("type") == "session.error":
            return limits.from_iso(obj["timestamp"])
    return RECORDED  # Qwen Code: the parse-time clock


@pytest.mark.parametrize("cli, retries", [("opencode", 6), ("qwen", 0), ("copilot", 5)])
def test_a_persistent_429_is_one_rate_limit_hit_reset_when_the_words_say(cli: str, retries: int,
                                                                          recorded_clock: None) -> None:
    name = f"{cli}_rate_limit"
    events = events_of(name)
    (hit,) = kinds(events, K.LIMIT_HIT)
    assert (hit.limit_kind, hit.limit_scope) == ("rate", "minute")
    # "Please try again in 20s" wins over retry-after 1: not a back-off of orch's own
    assert hit.resets_at == _error_time(name) + RESETS_IN
    assert "Please try again in 20s" in hit.message
    (error,) = kinds(events, K.ERROR)
    (finished,) = kinds(events, K.RUN_FINISHED)
    assert events.index(hit) < events.index(error) < events.index(finished)
    assert finished.outcome is Outcome.ERROR
    # opencode's failed attempts are on its log (stderr), Copilot's on stdout; Qwen Code says nothing
    retrying = [e for e in kinds(events, K.STATUS) if e.status == "retrying"]
    assert len(retrying) == retries
    assert all(events.index(r) < events.index(hit) or r.stream == "stderr" for r in retrying)


@pytest.mark.parametrize("name", [f"{cli}_{case}" for cli in OPEN_CLIS for case in ("billing", "credits")])
def test_out_of_credit_is_a_billing_limit_with_no_reset(name: str, recorded_clock: None) -> None:
    events = events_of(name)
    (hit,) = kinds(events, K.LIMIT_HIT)
    assert (hit.limit_kind, hit.limit_scope, hit.resets_at) == ("billing", None, None)
    words = "exceeded your current quota" if name.endswith("billing") else "Insufficient credits"
    assert words in hit.message
    (finished,) = kinds(events, K.RUN_FINISHED)
    assert events.index(hit) < events.index(finished) and finished.outcome is Outcome.ERROR


@pytest.mark.parametrize("name", [f"{cli}_{case}" for cli in OPEN_CLIS for case in ("unauthorized",
                                                                                     "unauthorized_gateway")])
def test_a_wrong_key_is_no_limit_and_reads_as_not_logged_in_by_its_words(name: str) -> None:
    cli = name.split("_", 1)[0]
    summary = parse_run_files(cli, CAPTURES / f"{name}.jsonl", CAPTURES / f"{name}.stderr")
    assert summary.outcome is Outcome.ERROR and summary.limits == []
    (error,) = summary.errors
    assert says_not_logged_in(error), error
    # the words alone say it: without the status number, as a CLI or a proxy may print it
    unnumbered = re.sub(r"\(?(HTTP )?401\)?:?", "", error)
    assert "401" not in unnumbered and says_not_logged_in(unnumbered), unnumbered


@pytest.mark.parametrize("words", [
    "Incorrect API key provided: sk-proj-***. You can find your API key at https://platform.openai.com/account/api-keys.",
    "invalid x-api-key", '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
    "Error: No authentication information found.", "OpenAI API key is required to use OpenAI authentication.",
    "Missing API key for OpenAI-compatible auth. Set the OPENAI_API_KEY environment variable.",
    "Stub API key is missing. Pass it using the 'apiKey' parameter or the STUB_API_KEY environment variable.",
])
def test_login_failures_are_recognised_by_their_words(words: str) -> None:
    assert says_not_logged_in(words)


@pytest.mark.parametrize("words", ["Rate limit reached … Please try again in 20s.", "fake server injected error 400",
                                   "Insufficient credits. Add more using https://openrouter.ai/settings/credits"])
def test_other_failures_are_not_login_failures(words: str) -> None:
    assert not says_not_logged_in(words)


def _accumulator(events) -> RunAccumulator:
    acc = RunAccumulator(output=True, outcome=Outcome.ERROR)
    for e in events:
        if e.kind is K.ERROR:
            acc.errors.append(e.message)
        elif e.kind is K.LIMIT_HIT:
            acc.limit = LimitNotice(hit=True, kind=e.limit_kind, scope=e.limit_scope, resets_at=e.resets_at,
                                    message=e.message or "")
    return acc


def test_out_of_credit_fails_the_run_for_a_person_or_another_cli_never_a_timed_retry() -> None:
    from orchestrator.core.models import Permission, Run, now

    run = Run(n=1, argv=["qwen"], cwd="/w", permission=Permission.EDIT, started_at=now())
    verdict = classify_run(run, _accumulator(events_of("qwen_billing")), [], 0, 0, "", aborted=False)
    assert (verdict.state, verdict.failure) == (AgentState.FAILED, FailureKind.BILLING)
    assert verdict.reason.startswith("out of credit (billing): ")
    # a rate limit still parks, and so do quota words without a limit notice
    rate = classify_run(run, _accumulator(events_of("copilot_rate_limit")), [], 1, 0, "", aborted=False)
    assert (rate.state, rate.failure) == (AgentState.PARKED, FailureKind.QUOTA)
    # claude's words for an API key out of credit, no adapter notice: billing too
    acc = RunAccumulator(output=True, outcome=Outcome.ERROR, errors=[
        "API Error: 400 Your credit balance is too low to access the Anthropic API."])
    assert classify_run(run, acc, [], 1, 0, "", aborted=False).failure is FailureKind.BILLING


# ---------------------------------------------------------------- usage per run

def test_opencode_counts_cache_reads_and_names_the_model_from_its_log() -> None:
    s = parse_run_files("opencode", CAPTURES / "opencode_resume.jsonl", CAPTURES / "opencode_resume.stderr")
    # tokens.input excludes the 8 cached tokens, which are in cache.read
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.cached_input_tokens) == (12, 20, 8)
    assert s.usage.model == "stub-model"
    assert s.usage.cost_estimated and not s.usage.price_known  # opencode priced it 0: no price, not $0


def test_qwen_reports_the_sessions_total_with_its_cache_reads_and_model() -> None:
    first = parse_run_files("qwen", CAPTURES / "qwen_session_first.jsonl")
    resumed = parse_run_files("qwen", CAPTURES / "qwen_resume.jsonl")
    assert (first.usage.input_tokens, first.usage.cached_input_tokens) == (12, 8)
    assert (resumed.usage.input_tokens, resumed.usage.output_tokens, resumed.usage.cached_input_tokens) == (24, 40, 16)
    assert resumed.usage.model == "qwen-stub"
    events = events_of("qwen_resume", exit_code=0)
    assert all(e.usage_cumulative for e in kinds(events, K.USAGE))  # the ingest takes this run's part


def test_copilot_counts_only_this_runs_records_of_its_session_log() -> None:
    first = parse_run_files("copilot", CAPTURES / "copilot_session_first.jsonl",
                            rollout=CAPTURES / "copilot_session_first.rollout.jsonl")
    resumed = parse_run_files("copilot", CAPTURES / "copilot_resume.jsonl",
                              rollout=CAPTURES / "copilot_resume.rollout.jsonl")
    log = [json.loads(line) for line in (CAPTURES / "copilot_resume.rollout.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log].count("session.usage_record") == 2  # both runs are in the session's log…
    assert (first.usage.input_tokens, first.usage.cached_input_tokens) == (12, 0)
    assert (resumed.usage.input_tokens, resumed.usage.output_tokens, resumed.usage.cached_input_tokens) == (12, 20, 8)
    assert resumed.usage.model == "copilot-stub" and resumed.usage.cost_estimated  # …this run's one counts


@pytest.mark.parametrize("name, stderr, rollout, model", [
    ("opencode_resume", True, False, "stub-model"), ("qwen_resume", False, False, "qwen-stub"),
    ("copilot_resume", False, True, "copilot-stub"),
])
def test_cached_tokens_are_priced_as_cache_reads(name: str, stderr: bool, rollout: bool, model: str,
                                                 tmp_path: Path) -> None:
    # The same capture with a model the price database knows in place of the stub's.
    paths = {}
    for suffix, wanted in ((".jsonl", True), (".stderr", stderr), (".rollout.jsonl", rollout)):
        if wanted:
            paths[suffix] = tmp_path / f"{name}{suffix}"
            paths[suffix].write_text((CAPTURES / f"{name}{suffix}").read_text().replace(model, "gpt-4.1"))
    s = parse_run_files(name.split("_", 1)[0], paths[".jsonl"], paths.get(".stderr"), paths.get(".rollout.jsonl"))
    u = s.usage
    assert u.model == "gpt-4.1" and u.cached_input_tokens > 0 and u.cost_estimated and u.price_known
    assert u.cost_usd == pytest.approx(price_per_call("gpt-4.1", u.input_tokens, u.output_tokens, u.cached_input_tokens))
    assert u.cost_usd < price_per_call("gpt-4.1", u.input_tokens, u.output_tokens, 0)


def test_summary_of_a_copilot_run_without_its_log_has_no_invented_usage() -> None:
    s = parse_run_files("copilot", CAPTURES / "copilot_resume.jsonl")
    assert s.usage.input_tokens == 0 and s.usage.output_tokens == 0
    assert summarize("copilot", events_of("copilot_text", exit_code=0)).outcome is Outcome.SUCCESS


def test_any_clis_refusal_in_out_of_credit_words_is_billing() -> None:
    """claude relays a 429 as "API Error: Request rejected (429) · <the API's words>": with an
    account's out-of-credit words the one LIMIT_HIT is of kind billing, not a rate limit to wait out."""
    parser = get_adapter("claude").new_parser()
    out_of_credit = "You exceeded your current quota, please check your plan and billing details. (insufficient_quota)"
    events = []
    for _, line in lines("claude_rate_limit"):
        events += parser.feed("stdout", line.replace(b"This request would exceed your account's rate limit. "
                                                     b"Please try again later.", out_of_credit.encode()))
    (hit,) = kinds(events + parser.finish(1), K.LIMIT_HIT)
    assert (hit.limit_kind, hit.resets_at) == ("billing", None)
    (rate,) = kinds(events_of("claude_rate_limit"), K.LIMIT_HIT)
    assert rate.limit_kind == "rate"  # the same capture with its own words: a rate limit
