"""opencode, Qwen Code and GitHub Copilot CLI refused by the stub's OpenAI-compatible
answers, run directly as orch runs them: what each CLI really did (its own retries, exit
code, lines) and what orch's adapter reads from it.

The scenarios (scenarios.OPEN_LIMIT_SCENARIOS) also save the fresh captures the drift guard
compares; the slow ones (SLOW_SCENARIOS) run side by side in the background (conftest.slow_bank).
"""

from __future__ import annotations

import re

import pytest

from .lab import Lab, RunResult
from .scenarios import OPEN_RATE_RESETS_IN
from .test_limits_direct import normalized, of_kind

#: started in the background with this module's first test (realcli/conftest.py slow_bank)
SLOW_SCENARIOS_READ = ("qwen_rate_limit", "opencode_billing", "qwen_billing", "copilot_billing")

pytestmark = pytest.mark.realcli

OPEN_CLIS = ("opencode", "qwen", "copilot")
#: How each ends a run the provider refused: opencode and Copilot exit 1; Qwen Code turns the
#: model error into "[API Error: …]" text and exits 0.
REFUSED_EXIT = {"opencode": 1, "qwen": 0, "copilot": 1}


def events_of(lab: Lab, cli: str, result: RunResult) -> list:
    """The run through orch's adapter, Copilot's session log included (orch reads it at the end)."""
    if cli != "copilot":
        return normalized(lab, cli, result)
    from orchestrator.adapters import get_adapter

    parser = get_adapter(cli).new_parser()
    events = [e for stream, data in (("stdout", result.stdout), ("stderr", result.stderr))
              for line in data.splitlines() for e in parser.feed(stream, line)]
    log = lab.copilot_session_log(result)
    if log is not None:
        events += [e for line in log.read_bytes().splitlines() for e in parser.feed("rollout", line)]
    return events + parser.finish(result.returncode)


@pytest.mark.parametrize("cli", ["opencode", "copilot"])
def test_a_persistent_429_is_retried_by_the_cli_then_one_rate_limit_hit(cli: str, lab: Lab, scenario_bank) -> None:
    case = f"{cli}_rate_limit"
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == 1, result.describe()
    sent = lab.requests_of(result, "chat")
    assert len(sent) == 6  # five retries of its own, each after retry-after (1 s), not after the 20 s the words say
    assert sent[-1]["time"] - sent[0]["time"] < 15
    events = events_of(lab, cli, result)
    (hit,) = of_kind(events, "limit_hit")
    assert (hit.limit_kind, hit.limit_scope) == ("rate", "minute")
    assert f"Please try again in {OPEN_RATE_RESETS_IN}s" in hit.message
    # each retry shows (opencode: its log on stderr, orch's --print-logs; Copilot: assistant.turn_retry)
    assert len([e for e in of_kind(events, "status") if e.status == "retrying"]) >= 5


@pytest.mark.parametrize("cli", OPEN_CLIS)
def test_a_402_for_want_of_credit_is_not_retried_and_is_a_billing_limit(cli: str, lab: Lab, scenario_bank) -> None:
    case = f"{cli}_credits"
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == REFUSED_EXIT[cli], result.describe()
    assert len(lab.requests_of(result, "chat")) == 1
    (hit,) = of_kind(events_of(lab, cli, result), "limit_hit")
    assert (hit.limit_kind, hit.resets_at) == ("billing", None) and "Insufficient credits" in hit.message


@pytest.mark.parametrize("cli", OPEN_CLIS)
@pytest.mark.parametrize("which", ["unauthorized", "unauthorized_gateway"])
def test_a_wrong_key_reads_as_not_logged_in_by_its_words(cli: str, which: str, lab: Lab, scenario_bank) -> None:
    from orchestrator.adapters.login import says_not_logged_in

    case = f"{cli}_{which}"
    result = scenario_bank.run(case, lab)[case]
    assert result.returncode == REFUSED_EXIT[cli], result.describe()
    events = events_of(lab, cli, result)
    assert of_kind(events, "limit_hit") == []
    errors = [e.message for e in of_kind(events, "error")]
    assert errors and all(says_not_logged_in(re.sub(r"\b401\b", "", e)) for e in errors), errors


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("case, requests", [("qwen_rate_limit", 7), ("opencode_billing", 6), ("qwen_billing", 7),
                                            ("copilot_billing", 6)])
def test_slow_refusals_the_clis_retry_for_a_minute_or_more(case: str, requests: int, slow_bank) -> None:
    """A minute or more of each CLI's own back-off: run in the background (slow_bank)."""
    cli = case.split("_", 1)[0]
    lab, result = slow_bank.result(case)
    assert result.returncode == REFUSED_EXIT[cli], result.describe()
    sent = lab.requests_of(result, "chat")
    # Qwen Code (orch's maxRetries 0) still retries seven times whatever retry-after says;
    # an insufficient_quota 429 comes without retry-after, so every CLI backs off on its own
    assert len(sent) == requests and sent[-1]["time"] - sent[0]["time"] > 30
    (hit,) = of_kind(events_of(lab, cli, result), "limit_hit")
    assert hit.limit_kind == ("rate" if case.endswith("rate_limit") else "billing")
