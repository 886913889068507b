"""The price of a run from its tokens and the model it used, when the CLI reports none.

Prices come from pydantic's `genai-prices` package: a maintained database of model
prices shipped inside the installed package (its data snapshot), so an estimate needs no
network — orch never asks it to fetch newer prices. A model the database does not know
gives no price at all ("price unknown"), never $0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from ..core.models import Usage



@lru_cache(maxsize=256)
def price_per_call(model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Optional[float]:
    """USD for these tokens on this model, or None when the database does not know the model."""
    if not model:
        return None
    try:
        import genai_prices
    except ImportError:  # a broken install: say "price unknown" rather than fail a step
        return None
    cached = max(0, min(cached_input_tokens, input_tokens))
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=input_tokens, cache_read_tokens=cached or None,
                               output_tokens=output_tokens),
            model)
    except (LookupError, ValueError):
        return None
    return float(calc.total_price)


def estimate(usage: Usage, tokens_by_model: Optional[dict[str, tuple[int, int, int]]] = None) -> Usage:
    """The usage with an estimated cost (cost_estimated); price_known False when a model is unknown.

    `tokens_by_model` maps model -> (input, output, cached input) when the CLI breaks its
    tokens down per model; otherwise `usage.model` prices all of `usage`'s tokens.
    """
    if tokens_by_model is None:
        tokens_by_model = {usage.model or "": (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)}
    total, known = 0.0, True
    for model, (inp, out, cached) in tokens_by_model.items():
        if not (inp or out):
            continue
        price = price_per_call(model, inp, out, cached)
        if price is None:
            known = False
        else:
            total += price
    return usage.model_copy(update={"cost_usd": round(total, 10),
                                    "cost_estimated": True, "price_known": known})
