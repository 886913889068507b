"""Only what JSON can hold, so that every file orch writes can be read back.

Agent CLIs print what they print: a lone surrogate escape (`"cut \\ud83d"`, an emoji cut in
half), `NaN`, `1e999`. Python's json accepts all three, but UTF-8 cannot encode a lone
surrogate and JSON has no NaN or infinity: stored as they are, they break every later
write (or become `null` where a number must be). Here they are replaced — U+FFFD for a
lone surrogate, 0 for NaN, ±FLOAT_LIMIT for an infinity — and each replacement is named,
so the caller can record the oddity.
"""

from __future__ import annotations

import json
import math
import re
TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:  # the fast read paths print through dumps_text without loading pydantic
    from typing import Any

    from pydantic import BaseModel

FLOAT_LIMIT = 1e15  # where an infinite number is clamped (no real cost or count comes near)
INT_LIMIT = 2 ** 53  # the largest integer every JSON reader holds exactly

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """text with every lone surrogate replaced by U+FFFD (a valid pair is left joined)."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    # A pair written as two escapes arrives as two surrogates: join it back when valid.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_float(value: float) -> float:
    """value, or 0.0 for NaN, or ±FLOAT_LIMIT for an infinity or anything beyond it."""
    if math.isnan(value):
        return 0.0
    return max(-FLOAT_LIMIT, min(FLOAT_LIMIT, value))


def clean_value(value: Any, notes: list[str], where: str = "") -> Any:
    """value with strings, floats and keys made storable; each replacement appended to notes."""
    if isinstance(value, str):
        fixed = clean_text(value)
        if fixed is not value and fixed != value:
            notes.append(f"{where or 'text'}: lone surrogate replaced by U+FFFD")
        return fixed
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) <= FLOAT_LIMIT:
            return value
        notes.append(f"{where or 'number'}: {value!r} stored as {clean_float(value)!r}")
        return clean_float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {clean_value(str(k), notes, where): clean_value(v, notes, f"{where}.{k}" if where else str(k))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(v, notes, where) for v in value]
    return value


def model_json(model: "BaseModel", indent: int | None = 2) -> bytes:
    """A model as JSON bytes that parse back: the fast path, or a cleaned copy when it cannot.

    Models write NaN and infinities as bare constants (core.models.Model), so a cheap scan
    of the bytes finds them; a lone surrogate makes pydantic refuse. Either takes the
    cleaned path, which writes neither.
    """
    try:
        data = model.model_dump_json(indent=indent).encode()
    except (ValueError, UnicodeError):  # PydanticSerializationError is a ValueError
        data = None
    if data is not None and b"NaN" not in data and b"Infinity" not in data:
        return data
    notes: list[str] = []
    cleaned = clean_value(model.model_dump(mode="json"), notes)
    if data is not None and not notes:
        return data  # the word was in some text, not a number
    return json.dumps(cleaned, indent=indent, ensure_ascii=False, allow_nan=False).encode()


def dumps_line(data: Any) -> bytes:
    """One compact JSON line of plain data, cleaned only when it must be."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"
    except (ValueError, UnicodeError):
        notes: list[str] = []
        return json.dumps(clean_value(data, notes), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode() + b"\n"


def dumps_text(data: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """JSON text of plain data that every JSON reader accepts — what orch prints or serves.

    NaN and infinities (never JSON) and lone surrogates are replaced as clean_value does,
    only when there are any; anything json cannot encode (a date, a path) is written as text."""
    kw: dict[str, Any] = {"indent": indent, "ensure_ascii": False, "allow_nan": False, "default": str}
    if compact:
        kw["separators"] = (",", ":")
    try:
        text = json.dumps(data, **kw)
        text.encode("utf-8")  # a lone surrogate passes json.dumps (ensure_ascii off) but not the wire
        return text
    except (ValueError, UnicodeError):
        return json.dumps(clean_value(data, []), **kw)
