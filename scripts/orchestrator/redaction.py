"""Redaction of secrets from everything orch writes or serves.

Two nets: well-known credential shapes (API keys, tokens, private keys, `password=...`),
and the literal values of secret-looking environment variables of this process (which the
agents inherit, so they may echo them back).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Mapping

MASK = "[REDACTED]"

_SHAPES = [
    r"sk-ant-[A-Za-z0-9_\-]{8,}",
    r"sk-(?:proj-)?[A-Za-z0-9_\-]{16,}",
    r"AIza[0-9A-Za-z_\-]{30,}",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_\-]{16,}",
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"ya29\.[0-9A-Za-z_\-]{20,}",
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"(?<=[Bb]earer )[A-Za-z0-9._~+/\-]{12,}=*",
    # key = value, key: value, "key": "value" for secret-looking key names
    r"(?<![A-Za-z0-9])(?i:[A-Za-z0-9_]*(?:api[_-]?key|secret|token|passw(?:or)?d|credential|auth[_-]?key)[A-Za-z0-9_]*)"
    r"[\"']?\s*[:=]\s*[\"']?(?!\[REDACTED\])([^\s\"',;}]{6,})",
]

_SECRET_ENV_NAME = re.compile(
    r"(?i)(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION_ID|PRIVATE)"
)
_NOT_SECRET_ENV = {"TOKENIZERS_PARALLELISM", "GPG_AGENT_INFO", "SSH_AUTH_SOCK", "KEYTIMEOUT"}


def _shape_regex() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _SHAPES))


_SHAPE_RE = _shape_regex()


def secret_env_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (longest first)."""
    env = os.environ if env is None else env
    vals = {
        v
        for k, v in env.items()
        if _SECRET_ENV_NAME.search(k) and k not in _NOT_SECRET_ENV and len(v) >= 6
        and not v.startswith("/") and v.lower() not in {"true", "false", "none", "null"}
    }
    return sorted(vals, key=len, reverse=True)


@lru_cache(maxsize=8)
def _env_regex(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values))


def _replace_shape(m: re.Match[str]) -> str:
    # For `key=value` shapes keep the key, mask the value.
    if m.lastindex:
        start, end = m.span(m.lastindex)
        base = m.start()
        whole = m.group(0)
        return whole[: start - base] + MASK + whole[end - base :]
    return MASK


def redact_text(text: str) -> str:
    """Mask every secret found in text."""
    if not text:
        return text
    env_re = _env_regex(tuple(secret_env_values()))
    if env_re is not None:
        text = env_re.sub(MASK, text)
    return _SHAPE_RE.sub(_replace_shape, text)


def redact(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, strings)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    """Redact each argument of a command line (prompts may carry pasted secrets)."""
    return [redact_text(a) for a in argv]
