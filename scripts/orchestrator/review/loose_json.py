"""A forgiving reader for the JSON-like text language models write when they mean JSON.

Accepts what strict JSON refuses but a model's intent is still plain: trailing commas,
single-quoted or smart-quoted strings, unquoted keys and bare words, `//`, `/* */` and `#`
comments, Python's True/False/None, missing commas between items, raw newlines inside
strings. It also finds where brace-delimited objects sit in free text. Nothing here
raises on any input: callers get None when there is no object to read.
"""

from __future__ import annotations

import re
from typing import Any, Optional

MAX_DEPTH = 40  # deeper than any verdict; keeps recursion far from Python's limit
MAX_SPAN_CHARS = 50_000  # a verdict object is a few KB; longer spans are not verdicts

_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_BARE_WORD = re.compile(r"[A-Za-z_$][\w$.\-/]*")
_BARE_KEY = re.compile(r"[^\s:=,{}\[\]\"']+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_INTEGER = re.compile(r"-?\d+")
_WORD_VALUES: dict[str, Any] = {
    "true": True, "false": False, "null": None,
    "True": True, "False": False, "None": None, "TRUE": True, "FALSE": False, "NULL": None,
}
_OPENING_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}


class _NotLooseJson(Exception):
    """Internal: the text at this position cannot be read as a loose JSON value."""


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self) -> None:
        raise _NotLooseJson(self.pos)

    def skip_blank(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif text.startswith("//", self.pos) or ch == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                self.pos = n if end < 0 else end + 2
            else:
                return

    def peek(self) -> str:
        self.skip_blank()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.fail()
        ch = self.peek()
        if ch == "{":
            return self.object(depth)
        if ch == "[":
            return self.array(depth)
        if ch in _OPENING_QUOTES:
            return self.string()
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            literal = m.group(0)
            try:
                return int(literal) if _INTEGER.fullmatch(literal) else float(literal)
            except (ValueError, OverflowError):
                return literal
        m = _BARE_WORD.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            word = m.group(0)
            return _WORD_VALUES.get(word, word)
        self.fail()

    def string(self) -> str:
        opening = self.text[self.pos]
        closing = _OPENING_QUOTES[opening]
        self.pos += 1
        out: list[str] = []
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch == closing:
                self.pos += 1
                return "".join(out)
            if ch == "\\" and self.pos + 1 < n:
                nxt = text[self.pos + 1]
                if nxt == "u" and _HEX4.fullmatch(text, self.pos + 2, self.pos + 6):
                    out.append(chr(int(text[self.pos + 2:self.pos + 6], 16)))
                    self.pos += 6
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        self.fail()
        return ""  # unreachable: fail() raises

    def key(self) -> str:
        ch = self.peek()
        if ch in _OPENING_QUOTES:
            return self.string()
        m = _BARE_KEY.match(self.text, self.pos)
        if not m:
            self.fail()
        self.pos = m.end()
        return m.group(0)

    def object(self, depth: int) -> dict[str, Any]:
        self.pos += 1  # the opening brace
        result: dict[str, Any] = {}
        while True:
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return result
            if ch == ",":
                self.pos += 1  # a stray or trailing comma
                continue
            if not ch:
                self.fail()
            key = self.key()
            if self.peek() not in (":", "="):
                self.fail()
            self.pos += 1
            result[key] = self.value(depth + 1)

    def array(self, depth: int) -> list[Any]:
        self.pos += 1  # the opening bracket
        items: list[Any] = []
        while True:
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return items
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                self.fail()
            items.append(self.value(depth + 1))


def read_loose_object(text: str) -> Optional[dict[str, Any]]:
    """The object that text starts with (after blanks), read forgivingly; None if there is none."""
    reader = _Reader(text[:MAX_SPAN_CHARS])
    try:
        if reader.peek() != "{":
            return None
        result = reader.object(0)
    except (_NotLooseJson, RecursionError, ValueError):
        return None
    return result


def object_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost balanced {...} in text, in order, found in one pass.

    Quotes count only inside braces and only where a JSON string could begin, so an
    apostrophe in the surrounding prose does not hide the objects that follow it; a
    string also ends at a line break, which bounds the damage of a misread quote. A brace
    that is never closed is ignored rather than swallowing every object after it.
    """
    pairs: list[tuple[int, int]] = []
    stack: list[int] = []
    closing_quote = ""
    previous = ""  # last non-blank character outside strings, to tell a string start
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if closing_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == closing_quote or ch == "\n":
                closing_quote = ""
                previous = '"'
        elif ch == "{":
            stack.append(i)
            previous = ch
        elif ch == "}":
            if stack:
                pairs.append((stack.pop(), i + 1))
            previous = ch
        elif stack and ch in _OPENING_QUOTES and previous in "{[:,":
            closing_quote = _OPENING_QUOTES[ch]
        elif not ch.isspace():
            previous = ch
        i += 1
    outermost: list[tuple[int, int]] = []
    for start, end in sorted(pairs):
        if outermost and start < outermost[-1][1]:
            continue  # nested inside the previous outermost pair
        outermost.append((start, end))
    return outermost
