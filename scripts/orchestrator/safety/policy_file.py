"""Reading a policy TOML file: parse it, remember the line of every key, merge over defaults.

tomllib says where a syntax error is but forgets where each key was; the line map here
lets a validation error (a bad value, an unknown role) name its line too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Optional

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ..core.errors import PolicyError

_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_TABLE_ARRAY = re.compile(r"^\[\[\s*(.+?)\s*\]\]")
_TABLE = re.compile(r"^\[\s*(.+?)\s*\]")


def parse_toml(path: Path, text: str) -> dict[str, Any]:
    """The document, or PolicyError naming the file and the line of the syntax error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        m = _ERROR_LINE.search(message)
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise PolicyError(f"invalid policy {where}: {_ERROR_LINE.sub('', message).strip()} (TOML syntax)") from None


def read_policy_text(path: Path) -> str:
    """The file's text; unreadable or not UTF-8 is a one-line PolicyError."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"invalid policy {path}: not UTF-8 text") from None
    except OSError as e:
        raise PolicyError(f"cannot read policy {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------- key → line


def _split_key(key: str) -> list[str]:
    """`a."b.c".d` → ["a", "b.c", "d"]."""
    parts, buf, quote = [], "", ""
    for ch in key:
        if quote:
            if ch == quote:
                quote = ""
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return [p for p in parts if p != ""]


def _scan_value(text: str, depth: int) -> tuple[int, Optional[str]]:
    """Bracket depth after a piece of a value, and an unclosed multi-line string delimiter."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            delim = text[i:i + 3]
            end = text.find(delim, i + 3)
            if end < 0:
                return depth, delim
            i = end + 3
            continue
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if (ch == '"' and text[j] == "\\") else 1
            i = j + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth, None


def _key_and_value(line: str) -> Optional[tuple[str, str]]:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return line[:i], line[i + 1:]
    return None


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) where each dotted key or table is written."""
    lines: dict[str, int] = {}
    table: list[str] = []
    depth, open_string = 0, None
    for no, raw in enumerate(text.splitlines(), 1):
        if open_string:
            end = raw.find(open_string)
            if end < 0:
                continue
            rest, open_string = raw[end + 3:], None
            depth, open_string = _scan_value(rest, depth)
            continue
        if depth > 0:
            depth, open_string = _scan_value(raw, depth)
            continue
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        m = _TABLE_ARRAY.match(s) or _TABLE.match(s)
        if m:
            table = _split_key(m.group(1))
            _record(lines, table, no)
            continue
        kv = _key_and_value(s)
        if kv is None:
            continue
        _record(lines, table + _split_key(kv[0]), no)
        depth, open_string = _scan_value(kv[1], 0)
    return lines


def _record(lines: dict[str, int], path: list[str], no: int) -> None:
    for n in range(1, len(path) + 1):
        lines.setdefault(".".join(path[:n]), no)


def line_of(lines: dict[str, int], loc: Iterable[Any]) -> Optional[int]:
    """The line of the deepest written key along a validation error's location."""
    parts = [str(p) for p in loc if isinstance(p, str) and not p.startswith("[")]
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


# --------------------------------------------------------------------------- merging

#: Tables whose entries are whole rules: a user entry that sets `pattern` replaces the
#: default rule (its examples belong to the old pattern); otherwise keys merge.
RULE_TABLES = ("forbidden", "allowed")


def merge(defaults: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the user's document: tables merge key by key, lists replace."""
    out = dict(defaults)
    for key, value in user.items():
        if key in RULE_TABLES and isinstance(value, dict) and isinstance(out.get(key), dict):
            rules = dict(out[key])
            for name, rule in value.items():
                base = rules.get(name)
                if isinstance(rule, dict) and isinstance(base, dict) and "pattern" not in rule:
                    rules[name] = {**base, **rule}
                else:
                    rules[name] = rule
            out[key] = rules
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def leaves(doc: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) for every non-table value of a document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, doc
