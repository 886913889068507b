"""Usage and rate limits as the CLIs word them, read into one shape.

Each CLI reports a limit its own way (specifications/CLI_PERMISSIONS_SPEC.md, "Usage
limits and rate limits"): claude a `rate_limit_event` with an epoch and a synthetic
"You've hit your session limit · resets 3:12pm (UTC)"; codex "You’ve hit your usage
limit. … try again at 3:12 PM." in the codex process's local time; gemini the Gemini
API's quota message ("Please retry in 30s", "exhausted your daily quota"); opencode, Qwen
Code and Copilot relay an OpenAI-compatible API's 429 ("Please try again in 20s",
`retry-after`, `insufficient_quota`). The helpers here turn those words into an absolute
UTC reset time, a kind and a scope; each parser decides which of its lines are limits and
reports a limit once.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python 3.8; orch needs 3.10
    ZoneInfo = None  # type: ignore[assignment,misc]
    ZoneInfoNotFoundError = Exception  # type: ignore[assignment,misc]

USAGE = "usage"  # a plan's quota (claude.ai, ChatGPT, Gemini per day): waits hours
RATE = "rate"  # requests or tokens per minute (an API key's 429): waits seconds to minutes
BILLING = "billing"  # the account is out of credit (insufficient_quota): no wait helps, a person or another CLI does

FIVE_HOUR, WEEKLY, DAILY, MINUTE = "five_hour", "weekly", "daily", "minute"

#: claude's rateLimitType -> scope (any seven_day* window is a weekly one).
CLAUDE_SCOPES = {"five_hour": FIVE_HOUR, "seven_day": WEEKLY, "seven_day_opus": WEEKLY,
                 "seven_day_sonnet": WEEKLY, "seven_day_overage_included": WEEKLY}
#: claude's own names for its windows in "You've hit your … limit".
CLAUDE_LIMIT_NAMES = {"session": FIVE_HOUR, "weekly": WEEKLY, "opus": WEEKLY, "sonnet": WEEKLY}
#: codex's window lengths (rate_limits.*.window_minutes) -> scope.
CODEX_WINDOWS = {300: FIVE_HOUR, 10080: WEEKLY, 1440: DAILY, 1: MINUTE}
#: Google resets per-day quotas of the Gemini API at midnight Pacific time.
GOOGLE_QUOTA_ZONE = "America/Los_Angeles"

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), 1)}


def now() -> datetime:
    """The parse-time clock (UTC), for words without a date; tests replace it."""
    return datetime.now(timezone.utc)


def zone(name: Optional[str]) -> Optional[tzinfo]:
    """The IANA zone of that name, UTC for "UTC"/"GMT", None when unknown."""
    if not name:
        return None
    if name.upper() in ("UTC", "GMT", "Z", "ETC/UTC"):
        return timezone.utc
    if ZoneInfo is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_zone() -> Optional[tzinfo]:
    """The zone a CLI started by orch formats local times in: $TZ, else the system's (None)."""
    name = os.environ.get("TZ", "").lstrip(":")
    return zone(name) if name else None


def localize(naive: datetime, tz: Optional[tzinfo]) -> datetime:
    """A wall-clock time in tz (the system's local zone when None) as UTC."""
    if tz is None:
        return naive.astimezone(timezone.utc)  # naive = system local time, DST-aware
    return naive.replace(tzinfo=tz).astimezone(timezone.utc)


def from_epoch(value: Any) -> Optional[datetime]:
    """UTC time from epoch seconds (milliseconds are recognized too); None for anything odd."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    if value > 1e11:  # milliseconds
        value = value / 1000
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def from_iso(value: Any) -> Optional[datetime]:
    """UTC time from an ISO 8601 timestamp ("2026-12-02T13:13:19.460Z"); None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _hour(hour: int, ampm: str) -> int:
    hour %= 12
    return hour + 12 if ampm.lower() == "pm" else hour


# ---------------------------------------------------------------- claude

# "resets 3:12pm (UTC)", "resets 9am (Europe/Berlin)", "resets Dec 5, 2:23pm (Europe/Berlin)",
# "resets Jan 5, 2027, 9am (UTC)": Date.toLocaleString("en-US") plus claude's zone name.
_CLAUDE_RESET = re.compile(
    r"resets\s+(?:(?P<mon>[A-Za-z]{3})[a-z]*\s+(?P<day>\d{1,2}),\s*(?:(?P<year>\d{4}),\s*)?)?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]m)\s*(?:\((?P<tz>[^)]+)\))?", re.I)
_CLAUDE_HIT = re.compile(r"you've (?:hit|reached) your (?P<name>[\w ]*?)\s*limit", re.I)


def claude_scope(rate_limit_type: Any) -> Optional[str]:
    return CLAUDE_SCOPES.get(rate_limit_type) if isinstance(rate_limit_type, str) else None


def claude_scope_from_text(text: str) -> Optional[str]:
    """The scope claude names in "You've hit your session limit" (session, weekly, Opus, Sonnet)."""
    m = _CLAUDE_HIT.search(text)
    if not m:
        return None
    words = m.group("name").lower().split()
    return next((CLAUDE_LIMIT_NAMES[w] for w in words if w in CLAUDE_LIMIT_NAMES), None)


def is_claude_usage_text(text: str) -> bool:
    """True for claude's subscription-limit words ("You've hit your session limit · resets …")."""
    return bool(_CLAUDE_HIT.search(text)) or "out of extra usage" in text.lower()


def claude_reset_from_text(text: str, reference: datetime) -> Optional[datetime]:
    """The reset time in claude's words, as UTC; the next such moment after `reference`."""
    m = _CLAUDE_RESET.search(text)
    if not m:
        return None
    tz = zone((m.group("tz") or "").strip()) or local_zone()
    ref_local = reference.astimezone(tz) if tz else reference.astimezone()
    hour, minute = _hour(int(m.group("h")), m.group("ampm")), int(m.group("m") or 0)
    try:
        if m.group("mon"):
            month = _MONTHS.get(m.group("mon").lower()[:3])
            if not month:
                return None
            year = int(m.group("year") or ref_local.year)
            naive = datetime(year, month, int(m.group("day")), hour, minute)
            if not m.group("year") and localize(naive, tz) < reference - timedelta(days=1):
                naive = naive.replace(year=year + 1)  # "Jan 2" read on Dec 30
        else:
            naive = datetime(ref_local.year, ref_local.month, ref_local.day, hour, minute)
            if localize(naive, tz) < reference - timedelta(minutes=1):
                naive += timedelta(days=1)  # "resets 9am" said at 11pm: tomorrow's 9am
    except ValueError:
        return None
    return localize(naive, tz)


# ---------------------------------------------------------------- codex

_CODEX_HIT = re.compile(r"hit your usage limit", re.I)
# "try again at 3:12 PM." (the same day) or "try again at Dec 5th, 2026 2:23 PM." (another day),
# in the local time of the codex process.
_CODEX_RESET = re.compile(
    r"try again at\s+(?:(?P<mon>[A-Za-z]{3})[a-z]*\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,\s*(?P<year>\d{4})\s+)?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>[AP]M)", re.I)
_CODEX_RATE = re.compile(r"exceeded retry limit, last status: 429", re.I)


def is_codex_usage_text(text: str) -> bool:
    return bool(_CODEX_HIT.search(text))


def is_codex_rate_text(text: str) -> bool:
    return bool(_CODEX_RATE.search(text))


def codex_reset_from_text(text: str, reference: datetime) -> Optional[datetime]:
    """codex's "try again at …" as UTC (minute precision; a bare time is on `reference`'s day)."""
    m = _CODEX_RESET.search(text)
    if not m:
        return None
    tz = local_zone()
    ref_local = reference.astimezone(tz) if tz else reference.astimezone()
    hour, minute = _hour(int(m.group("h")), m.group("ampm")), int(m.group("m"))
    try:
        if m.group("mon"):
            month = _MONTHS.get(m.group("mon").lower()[:3])
            if not month:
                return None
            naive = datetime(int(m.group("year")), month, int(m.group("day")), hour, minute)
        else:
            naive = datetime(ref_local.year, ref_local.month, ref_local.day, hour, minute)
    except ValueError:
        return None
    return localize(naive, tz)


def codex_scope(window_minutes: Any) -> Optional[str]:
    return CODEX_WINDOWS.get(window_minutes) if isinstance(window_minutes, int) else None


# ---------------------------------------------------------------- gemini

_DELAY = re.compile(r"(?:retry in|retry after)\s+(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)\b", re.I)
_GEMINI_DAILY = re.compile(r"exhausted your daily quota|per ?day", re.I)
_GEMINI_QUOTA = re.compile(r"exceeded your current quota|quota exceeded|resource_exhausted|exhausted your daily quota",
                           re.I)


def retry_delay(text: str) -> Optional[float]:
    """Seconds from "Please retry in 30s", "Suggested retry after 1.5s", "retry in 500ms" (the longest)."""
    found = [float(m.group("n")) / (1000 if m.group("unit").lower() == "ms" else 1) for m in _DELAY.finditer(text)]
    return max(found) if found else None


def gemini_limit(text: str) -> Optional[tuple[str, str]]:
    """(kind, scope) when gemini's error words are a quota refusal, else None."""
    if not _GEMINI_QUOTA.search(text):
        return None
    if _GEMINI_DAILY.search(text):
        return USAGE, DAILY
    return RATE, MINUTE


def next_google_midnight(reference: datetime) -> datetime:
    """The next midnight Pacific time after `reference` (when per-day Gemini API quotas reset)."""
    tz = zone(GOOGLE_QUOTA_ZONE)
    if tz is None:
        return (reference + timedelta(days=1)).astimezone(timezone.utc)
    local = reference.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day) + timedelta(days=1)
    return localize(midnight, tz)


# ---------------------------------------------------------------- OpenAI-compatible APIs
# What opencode, Qwen Code and Copilot relay from the provider behind them: a 429 whose
# words say "Rate limit reached for … on requests per min (RPM) … Please try again in 20s."
# (with `retry-after: 20`), or an account out of credit ("You exceeded your current quota,
# please check your plan and billing details", code `insufficient_quota`, no delay).

# "try again in 20s", "try again in 1m30s", "try again in 847ms", "try again in 1.5s",
# "Please retry in 30s": OpenAI writes a Go duration, Google seconds.
_TRY_AGAIN = re.compile(r"(?:try again|retry) in\s+(?P<d>(?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.I)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: The words and codes of an account out of credit, as the providers word it.
_BILLING = re.compile(
    r"insufficient_quota|billing_hard_limit|billing hard limit|credit balance is too low|insufficient (?:credits|balance)|"
    r"requires more credits|payment required|arrearage", re.I)
#: OpenAI's wording of insufficient_quota; the Gemini API says the same of a per-minute
#: quota, but always with the delay after it, so these words are billing only without one.
_EXCEEDED_QUOTA = re.compile(r"exceeded your current quota", re.I)
_RATE_WORDS = re.compile(r"\b429\b|rate.?limit|too many requests|resource.?exhausted|quota", re.I)
_PER_MINUTE = re.compile(r"per min|\b[RT]PM\b|per ?minute", re.I)
_PER_DAY = re.compile(r"per day|\b[RT]PD\b|per ?day|daily", re.I)


def duration_seconds(text: str) -> Optional[float]:
    """Seconds of the longest "try again in 20s" / "retry in 1m30s" / "847ms" in the words, or None."""
    found = []
    for m in _TRY_AGAIN.finditer(text or ""):
        found.append(sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(m.group("d"))))
    return max(found) if found else None


def retry_after_seconds(headers: Any, reference: Optional[datetime] = None) -> Optional[float]:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date) in a header map."""
    if not isinstance(headers, dict):
        return None
    low = {str(k).lower(): v for k, v in headers.items() if isinstance(v, (str, int, float))}
    try:
        if "retry-after-ms" in low:
            return max(float(low["retry-after-ms"]) / 1000, 0.0)
        value = low.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(str(value))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max((when - (reference or now())).total_seconds(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def is_billing_text(text: str) -> bool:
    """True when the words say the account is out of credit (no wait lifts it)."""
    if not text:
        return False
    if _BILLING.search(text):
        return True
    return bool(_EXCEEDED_QUOTA.search(text)) and duration_seconds(text) is None and "retry after" not in text.lower()


def api_limit(status: Any, text: str, headers: Any = None,
              reference: Optional[datetime] = None) -> Optional[tuple[str, Optional[str], Optional[datetime]]]:
    """(kind, scope, resets_at) when an OpenAI-compatible API's error is a limit, else None.

    A 429 (or its words) is a rate limit, reset at `reference` plus the longest of
    `retry-after` and "try again in …"; out-of-credit words make it billing, with no reset.
    """
    text = text or ""
    limited = status == 429 or (status in (None, 0) and bool(_RATE_WORDS.search(text))) or is_billing_text(text)
    if not limited:
        return None
    if is_billing_text(text) or status == 402:
        return BILLING, None, None
    reference = reference or now()
    delays = [d for d in (retry_after_seconds(headers, reference), duration_seconds(text)) if d is not None]
    resets_at = reference + timedelta(seconds=max(delays)) if delays else None
    scope = DAILY if _PER_DAY.search(text) else MINUTE if _PER_MINUTE.search(text) else None
    return RATE, scope, resets_at
