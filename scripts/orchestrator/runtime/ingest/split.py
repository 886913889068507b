"""Secrets cut in pieces: a key streamed over several text deltas, or over two stderr lines.

read.py scrubs each line's own bytes as it reads them; a key cut in pieces shows in none
of them. Here the pieces are joined the way a reader joins them, without separators: on
stdout the text the model wrote, each line's share of it as the parser reports it
(`StreamParser.spoken`: every CLI's deltas and whole messages), on stderr the lines
themselves. Every secret the joined text shows is masked in each piece it spans, in the
raw file, byte for byte with `*`: a JSON escape is masked whole, so a line stays JSON, and
no offset moves.

A key can also be cut between two ingests (its end not written yet). The last stretch of
each stream is carried to the next ingest in the cursor, as byte ranges only: its text
stays where it already is, in the raw file, and is read back from there. A start that
already looked like a whole secret was masked then (`ghp_` and twenty characters is one),
so the carried text no longer shows what it was: the tail says a secret reached its end,
and the characters the next piece starts with that can go on such a secret (up to a
private key's END line, for a key block) are masked as the rest of it.

A start that does not look like a whole secret yet but says one is coming (`ghp_1a2b`,
`Bearer 4f…`, `api_key=9c`: redaction.open_secret_at_end) is an unfinished secret. No event
may be built from it: if its rest arrives later, the event would hold half a key. So
`scrub` holds back the line it starts in, and every line after it (`Scan.hold`): read.py
leaves them unparsed, the cursor stays at the held line, and the next ingest scans them
again, joined to what came next. A hold ends when the text goes on (the secret is then
whole and masked, or turned out to be ordinary text), or is released (`release`: the run
ended, a line over the size limit broke the text, or HOLD_LIMIT bytes came after it):
then the unfinished secret is masked as one — its start is all a later run of the same
agent could continue, and the carried tail, which outlives the run, says so (`open`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional

from ...core.models import EchoMark, TextTail
from ...safety.redaction import OPENING_REACH, open_secret_at_end, secret_spans

#: How much of a stream's last text waits for the next ingest: more than the longest
#: secret shape (a PEM private key is ~3.3 KB), in at most CARRY_PIECES pieces.
CARRY_CHARS = 4096
CARRY_PIECES = 256
#: At most this many bytes of a stream wait behind an unfinished secret before it is
#: released (masked as a secret): a secret's rest comes within a few lines, or never.
HOLD_LIMIT = 256 << 10

# One unit of a JSON string's body, masked whole or not at all: a \uXXXX escape (a
# surrogate pair together), a two-character escape, a run of plain bytes, a lone backslash.
_UNIT = re.compile(rb"\\u[0-9a-fA-F]{4}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\.|[^\\]+|\\", re.S)
_STRING = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)  # a JSON string literal; group 1 is its body
_KEY_AFTER = re.compile(rb"\s*:")  # what follows a literal that is an object's key
# What can continue a secret that reached the end of the text read so far, by its kind.
_CONTINUES = {
    "word": re.compile(r"[A-Za-z0-9_\-]+"),  # most key shapes: sk-…, ghp_…, AKIA…
    "token": re.compile(r"[A-Za-z0-9_\-.~+/=]+"),  # a bearer token, a JWT, ya29.…
    "block": re.compile(r"[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"),
    "quoted": re.compile(r"[^\"'\n]+"),  # a quoted value under a secret-looking key, up to its quote
}


class Scan(NamedTuple):
    """What one scan of a stream's pieces did."""

    masked: bool  # bytes of the raw file changed: anything built from them must be read again
    hold: Optional[int]  # where the first line held back starts (an unfinished secret is in it), if any
    released: Optional[str]  # an unfinished secret masked at its release (byte view): it may show elsewhere too


class Unit(NamedTuple):
    char: int  # where its text starts in the piece's text
    start: int  # its bytes in the piece's body
    end: int
    chars: int  # how many characters of text it stands for
    plain: bool  # one character per byte (so it can be masked in part)


def _unescape(token: bytes) -> str:
    """An escape's text, one character per UTF-8 byte (the byte view redaction scans)."""
    try:
        return json.loads(b'"' + token + b'"').encode("utf-8", "surrogatepass").decode("latin-1")
    except ValueError:  # a lone backslash, where a piece was cut
        return token.decode("latin-1")


def _units(body: bytes, escaped: bool) -> Iterator[tuple[Unit, str]]:
    if not escaped or b"\\" not in body:
        yield Unit(0, 0, len(body), len(body), True), body.decode("latin-1")
        return
    char = 0
    for m in _UNIT.finditer(body):
        token = m.group()
        text = token.decode("latin-1") if token[0] != 0x5C else _unescape(token)
        yield Unit(char, m.start(), m.end(), len(text), token[0] != 0x5C), text
        char += len(text)


def _text_of(body: bytes, escaped: bool) -> str:
    """A piece's text, one character per UTF-8 byte: what its units stand for, joined."""
    if not escaped or b"\\" not in body:
        return body.decode("latin-1")
    try:  # the whole body at once, in C: the same text as unit by unit
        return json.loads(b'"' + body + b'"').encode("utf-8", "surrogatepass").decode("latin-1")
    except ValueError:  # cut inside an escape
        return "".join(text for _, text in _units(body, escaped))


class Piece:
    """A stretch of a raw file holding a piece of text: where it is, its bytes, its text."""

    __slots__ = ("start", "body", "escaped", "text")

    def __init__(self, start: int, body: bytes, escaped: bool):
        self.start, self.body, self.escaped = start, bytes(body), escaped
        self.text = _text_of(self.body, escaped)

    @property
    def end(self) -> int:
        return self.start + len(self.body)

    def byte_ranges(self, a: int, b: int) -> list[tuple[int, int]]:
        """The body's bytes that write characters a…b of its text (escapes taken whole)."""
        out = []
        for u, _ in _units(self.body, self.escaped):
            if u.char + u.chars <= a:
                continue
            if u.char >= b:
                break
            if u.plain:
                out.append((u.start + max(a, u.char) - u.char, u.start + min(b, u.char + u.chars) - u.char))
            else:
                out.append((u.start, u.end))
        return out

    def last_chars(self, n: int) -> "Piece":
        """The piece cut to about its last n characters (never inside an escape)."""
        want = len(self.text) - n
        for u, _ in _units(self.body, self.escaped):
            if u.char + u.chars > want:
                cut = u.start + (want - u.char if u.plain else 0)
                return Piece(self.start + cut, self.body[cut:], self.escaped)
        return self


def locate(line: bytes, text: str, after: int = 0) -> Optional[tuple[int, int]]:
    """Where a JSON line writes the string value `text` (its body's bytes), from byte `after`
    on (outside a string: the start of the line, or just past a string's closing quote)."""
    for ascii_only in (False, True):  # as the CLIs write JSON (UTF-8 as is), or all \u escapes
        quoted = json.dumps(text, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        at = line.find(quoted, after)
        # Taken at once when no backslash comes before it, and an even number of quotes
        # does: then it opens a string (and is a value, not a key). Else literal by literal.
        if at >= 0 and line.find(b"\\", after, at) < 0 and line.count(b'"', after, at) % 2 == 0:
            if not _KEY_AFTER.match(line, at + len(quoted)):
                return at + 1, at + len(quoted) - 1
        if text.isascii():
            break
    raw = text.encode("utf-8", "surrogatepass")
    for m in _STRING.finditer(line, after):  # literal by literal: a quote inside one never misleads
        body = m.group(1)
        if len(body) < len(raw) or _KEY_AFTER.match(line, m.end()):
            continue
        if body == raw:
            return m.span(1)
        if b"\\" in body:
            try:
                if json.loads(b'"' + body + b'"') == text:
                    return m.span(1)
            except ValueError:
                continue
    return None


def _byte_view(text: str) -> str:
    return text if text.isascii() else text.encode("utf-8", "surrogatepass").decode("latin-1")


class SplitText:
    """One raw stream's pieces of text in one ingest: the carried tail, then each new line's.

    A new line costs a tuple: its texts are joined and scanned once per chunk read, and
    found in their lines only where a secret touches them, or to be carried.
    """

    def __init__(self, path: Path, stream: str, tail: Optional[TextTail]):
        self.path = path
        self.escaped = stream == "stdout"  # stdout lines are JSON; stderr lines are plain text
        self.tail = tail  # read back at the first scan
        self.carried: list[Piece] = []  # scanned already: the tail of the text before
        self.lines: list[tuple[int, bytes, Optional[list[str]]]] = []  # new: where, bytes, texts (None: all of it)
        self.open: Optional[str] = None
        self.echo: Optional[EchoMark] = tail.echo if tail is not None else None

    def add_line(self, start: int, line: bytes, spoken: list[str]) -> None:
        """A line read at byte `start`, with the texts its parser said it carries."""
        if self.escaped:
            if spoken:
                self.lines.append((start, line, spoken))
        elif line.rstrip(b"\r"):
            self.lines.append((start, line, None))

    def _read_back(self) -> None:
        """The carried ranges' pieces, as the raw file holds them now (none if it shrank)."""
        tail, self.tail = self.tail, None
        if tail is None or not tail.ranges:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if any(len(r) != 2 or not 0 <= r[0] < r[1] <= size for r in tail.ranges):
                return
            self.carried = [Piece(s, os.pread(fd, e - s, s), self.escaped) for s, e in tail.ranges]
            self.open = tail.open
        finally:
            os.close(fd)

    @staticmethod
    def _texts(line: tuple[int, bytes, Optional[list[str]]]) -> list[str]:
        _, raw, spoken = line
        if spoken is None:
            return [raw.rstrip(b"\r").decode("latin-1")]
        return [_byte_view(text) for text in spoken]

    @staticmethod
    def _pieces(line: tuple[int, bytes, Optional[list[str]]]) -> list[Optional[Piece]]:
        """A line's texts as pieces of the raw file (None for one the line does not write as is)."""
        start, raw, spoken = line
        if spoken is None:
            return [Piece(start, raw.rstrip(b"\r"), False)]
        out: list[Optional[Piece]] = []
        after = 0
        for text in spoken:  # in order: each is looked for past the one before
            span = locate(raw, text, after)
            out.append(None if span is None else Piece(start + span[0], raw[span[0]:span[1]], True))
            after = span[1] + 1 if span is not None else after  # past its closing quote
        return out

    def reset(self) -> None:
        """Forget the text before: what comes next is not joined to it (a line too long to read)."""
        self.tail, self.carried, self.lines, self.open, self.echo = None, [], [], None, None

    def scrub(self, release: bool = False, end: Optional[int] = None) -> Scan:
        """Mask each secret of the joined text in the pieces it spans, hold back an unfinished
        one (or, with `release` or past HOLD_LIMIT bytes before `end`, mask it); keep the tail."""
        if not self.lines:
            return Scan(False, None, None)
        if self.tail is not None:
            self._read_back()
        texts = [p.text for p in self.carried]
        seam = len(texts)
        for line in self.lines:
            texts += self._texts(line)
        offsets = list(accumulate(map(len, texts), initial=0))
        joined = "".join(texts)
        spans = secret_spans(joined)
        rest = self._rest_of_open_secret(joined, offsets[seam])
        if rest is not None:
            spans.append(rest)
        self._mark_echo(joined, offsets[seam] if seam else None, spans)
        pieces = _Pieces(self.carried, self.lines, self._pieces)
        count, cut, released, hold = len(texts), len(joined), None, None
        unfinished = open_secret_at_end(joined, spans)
        if unfinished is not None:
            start, kind = unfinished
            held = self._line_of(start, offsets, seam, pieces)
            if release or (end is not None and end - self.lines[held][0] > HOLD_LIMIT):
                spans.append((start, len(joined)))
                released = joined[start:]
            else:
                hold = self.lines[held][0]
                count = pieces.first[held]
                cut = offsets[count]
        if released is not None:
            new_open = kind
        elif cut == offsets[seam]:  # held from the first new line: the carried text, as it was
            new_open = self.open
        else:
            new_open = self._open_at(joined, cut, spans, rest)
        masked = self._mask(spans, offsets, pieces) if spans else False
        self.open = new_open
        self.carried = self._tail(pieces, count)
        self.lines = []
        return Scan(masked, hold, released)

    def _mark_echo(self, joined: str, seam: Optional[int], spans: list[tuple[int, int]]) -> None:
        """Remember (hashed) the new text's share of a secret found only because of the carried
        text — it began there (`ghp_1a` + `2b3c…`), or the carried text made it one (`Bearer ` +
        `4f5e…`): in a run that began with it, the CLI may repeat it where the key is not whole."""
        if seam is None:
            return
        near = [(s, e) for s, e in spans if e > seam and s < seam + OPENING_REACH]
        ends = [e for s, e in near if s <= seam]
        later = [(s, e) for s, e in near if s > seam]
        if later:  # found in the new text alone too? then it is whole wherever it is repeated
            alone = secret_spans(joined[seam:max(e for _, e in later)])
            ends += [e for s, e in later if not any(a <= s - seam and e - seam <= b for a, b in alone)]
        if ends:
            self.echo = echo_mark(joined[seam:max(ends)].encode("latin-1"))

    @staticmethod
    def _line_of(char: int, offsets: list[int], seam: int, pieces: "_Pieces") -> int:
        """The new line whose text holds character `char` of the joined text (the first, for a carried one)."""
        i = bisect_right(offsets, char) - 1
        if i < seam:
            return 0
        return bisect_right(pieces.first, i) - 1

    def _rest_of_open_secret(self, joined: str, seam: int) -> Optional[tuple[int, int]]:
        """The new text's start that continues the secret the carried text ended in."""
        if self.open is None:
            return None
        m = _CONTINUES[self.open].match(joined, seam)
        return (seam, m.end()) if m and m.end() > seam else None

    def _open_at(self, joined: str, cut: int, spans: list[tuple[int, int]], rest: Optional[tuple[int, int]]) -> Optional[str]:
        """The kind of secret the text up to `cut` ends in, if any: what comes next may be more of it."""
        if rest is not None and rest[1] == cut:
            return self.open
        for s, e in spans:
            if e == cut and s < e:
                part = joined[s:e]
                if "-----BEGIN" in part and "-----END" not in part:
                    return "block"
                return "word" if _CONTINUES["word"].fullmatch(part) else "token"
        return None

    def _mask(self, spans: list[tuple[int, int]], offsets: list[int], pieces: "_Pieces") -> bool:
        """Mask the spans in the pieces they cover, in the raw file; whether a byte changed."""
        touched: dict[int, list[tuple[int, int]]] = {}
        for s, e in spans:
            i = bisect_right(offsets, s) - 1
            while i < len(offsets) - 1 and offsets[i] < e:
                p = pieces.get(i)
                if p is not None:  # (a text its line does not write as is cannot be masked there)
                    touched.setdefault(i, []).extend(
                        p.byte_ranges(max(s - offsets[i], 0), min(e - offsets[i], len(p.text))))
                i += 1
        if not touched:
            return False
        changed = False
        fd = os.open(self.path, os.O_RDWR)
        try:
            for i, ranges in touched.items():
                p = pieces.get(i)
                body = bytearray(p.body)
                for r0, r1 in ranges:
                    if body[r0:r1] != b"*" * (r1 - r0):
                        os.pwrite(fd, b"*" * (r1 - r0), p.start + r0)
                        body[r0:r1] = b"*" * (r1 - r0)
                        changed = True
                pieces.put(i, Piece(p.start, body, p.escaped))  # as the file now holds it
        finally:
            os.close(fd)
        return changed

    @staticmethod
    def _tail(pieces: "_Pieces", count: int) -> list[Piece]:
        """The last CARRY_CHARS of text, in at most CARRY_PIECES pieces (stopping at one that cannot be carried)."""
        kept: list[Piece] = []
        room = CARRY_CHARS
        for i in range(count - 1, max(count - CARRY_PIECES, 0) - 1, -1):
            p = pieces.get(i)
            if room <= 0 or p is None:
                break
            kept.append(p if len(p.text) <= room else p.last_chars(room))
            room -= len(p.text)
        return kept[::-1]

    def carry(self) -> Optional[TextTail]:
        """What the next ingest joins its pieces to (None: nothing to carry)."""
        if self.tail is not None:
            return self.tail if self.tail.echo == self.echo else self.tail.model_copy(update={"echo": self.echo})
        if not self.carried and self.echo is None:
            return None
        return TextTail(ranges=[[p.start, p.end] for p in self.carried], open=self.open, echo=self.echo)


def echo_mark(piece: bytes) -> EchoMark:
    """What finds a masked piece of a secret again: its length and a salted hash."""
    salt = secrets.token_hex(8)
    return EchoMark(length=len(piece), salt=salt, digest=hashlib.sha256(salt.encode() + piece).hexdigest())


def is_echo(mark: EchoMark, data: bytes) -> bool:
    return len(data) == mark.length and hashlib.sha256(mark.salt.encode() + data).hexdigest() == mark.digest


class _Pieces:
    """The scan's texts by index, as pieces of the raw file: found in their lines on first use."""

    def __init__(self, carried: list[Piece], lines: list, find: Callable[[Any], list[Optional[Piece]]]):
        self.found: dict[int, Optional[Piece]] = dict(enumerate(carried))
        self.lines, self.find = lines, find
        self.first = list(accumulate((1 if line[2] is None else len(line[2]) for line in lines),
                                     initial=len(carried)))[:-1]  # each line's first text

    def get(self, i: int) -> Optional[Piece]:
        if i not in self.found:
            n = bisect_right(self.first, i) - 1
            for k, p in enumerate(self.find(self.lines[n])):
                self.found.setdefault(self.first[n] + k, p)
        return self.found[i]

    def put(self, i: int, piece: Piece) -> None:
        self.found[i] = piece
