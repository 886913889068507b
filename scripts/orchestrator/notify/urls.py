"""Notification URLs: where they come from, and how they are shown (never whole: they hold tokens)."""

from __future__ import annotations

import os
import re
from typing import Optional

from .settings import URLS_ENV, NotifyPolicy

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)


def mask_url(url: str) -> str:
    """'tgram://123:ABC/456' -> 'tgram://***': the scheme says where, the rest may be a secret."""
    m = _SCHEME.match(url.strip())
    return f"{m.group(1)}://***" if m else "***"


def notify_urls(policy: NotifyPolicy, env: Optional[dict] = None) -> list[str]:
    """The policy's URLs plus those in $ORCH_NOTIFY_URLS (space- or comma-separated), deduplicated."""
    env = os.environ if env is None else env
    extra = [u for u in re.split(r"[\s,]+", env.get(URLS_ENV, "")) if u]
    out: list[str] = []
    for u in list(policy.urls) + extra:
        if u not in out:
            out.append(u)
    return out


def scrub_urls(text: str, urls: list[str]) -> str:
    """text with every URL (and its secret-looking parts) masked: for errors from a sender."""
    for u in urls:
        masked = mask_url(u)
        text = text.replace(u, masked)
        m = _SCHEME.match(u)
        if m:
            for part in re.split(r"[/:@?&=#]+", m.group(2)):
                if len(part) >= 6:
                    text = text.replace(part, "***")
    return text
