"""True cost for every CLI: a price from the tokens and the model when the CLI reports none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.runtime.ingest.run_files import parse_run_files
from orchestrator.cli import cli
from orchestrator.core.models import Usage
from orchestrator.spend.pricing import estimate, price_per_call
from orchestrator.views.table import cost_label

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = FIXTURES / "cli-captures"
VARIANTS = FIXTURES / "cli-variants"


@pytest.fixture
def codex_home(tmp_path, monkeypatch):
    """A CODEX_HOME whose config.toml names the model, as the captures' `-c model=gpt-5.5` did."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text('model = "gpt-5.5"\n')
    monkeypatch.setenv("CODEX_HOME", str(home))
    return home


def test_the_database_is_the_installed_package_and_needs_no_network():
    # genai-prices ships its data; a known model has a price, an invented one has none.
    assert price_per_call("gpt-5.5", 1_000_000, 0) > 0
    assert price_per_call("no-such-model-x1", 1000, 1000) is None


@pytest.mark.parametrize("case", ["codex_text", "codex_tool", "codex_write", "codex_patch"])
def test_codex_capture_costs_are_estimated_from_the_configured_model(case, codex_home):
    s = parse_run_files("codex", CAPTURES / f"{case}.jsonl")
    u = s.usage
    assert u.model == "gpt-5.5"
    assert u.cost_estimated and u.price_known
    assert u.cost_usd == pytest.approx(price_per_call("gpt-5.5", u.input_tokens, u.output_tokens)) and u.cost_usd > 0


def test_codex_model_comes_from_the_rollout(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path))  # no config: the rollout's turn_context names it
    s = parse_run_files("codex", VARIANTS / "codex_rollout_only.jsonl",
                        rollout=VARIANTS / "codex_rollout_only.rollout.jsonl")
    assert s.usage.model == "gpt-5.5" and s.usage.cost_usd > 0 and s.usage.cost_estimated


def test_an_unknown_model_is_price_unknown_never_zero_dollars(codex_home):
    s = parse_run_files("codex", VARIANTS / "codex_unknown_model.jsonl")
    assert s.usage.model == "gpt-unknown-9"
    assert s.usage.price_known is False and s.usage.output_tokens == 40
    assert cost_label(s.usage) == "price unknown"


@pytest.mark.parametrize("case", ["gemini_text", "gemini_tool", "gemini_write", "gemini_deny_shell"])
def test_gemini_capture_costs_are_estimated_per_model(case):
    s = parse_run_files("gemini", CAPTURES / f"{case}.jsonl")
    u = s.usage
    stats = json.loads((CAPTURES / f"{case}.jsonl").read_text().splitlines()[-1])["stats"]["models"]
    expected = sum(price_per_call(m, v["input_tokens"], v["output_tokens"]) for m, v in stats.items())
    assert u.cost_estimated and u.price_known and u.cost_usd == pytest.approx(expected) and u.cost_usd > 0
    assert "(estimated)" in cost_label(u)


def test_claude_reports_its_own_price():
    s = parse_run_files("claude", CAPTURES / "claude_text.jsonl")
    assert s.usage.cost_estimated is False and s.usage.cost_usd > 0 and s.usage.model


def test_sums_keep_the_marks():
    known = estimate(Usage(input_tokens=100, output_tokens=10, model="gpt-5.5"))
    unknown = estimate(Usage(input_tokens=100, output_tokens=10, model="no-such-model-x1"))
    total = known.plus(unknown)
    assert total.cost_estimated and not total.price_known and total.cost_usd == known.cost_usd
    assert cost_label(total).endswith("+ price unknown")


def test_orch_parse_prints_the_estimate(codex_home):
    out = CliRunner().invoke(cli, ["parse", "--cli", "codex", str(CAPTURES / "codex_text.jsonl")])
    assert out.exit_code == 0 and "(estimated)" in out.output, out.output
    out = CliRunner().invoke(cli, ["parse", "--cli", "codex", str(VARIANTS / "codex_unknown_model.jsonl")])
    assert "price unknown" in out.output and "$0.0000" not in out.output, out.output
