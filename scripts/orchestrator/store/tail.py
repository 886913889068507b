"""Offset-based reading of files that other processes append to, in bounded memory.

Only bytes past the saved offset are read, so the cost of a read grows with what was
added, not with the size of the file. A last line without its newline is held back (the
offset stays at its start) until the newline arrives.

No reader here holds more than a window of a file, whatever a writer put in it: a line
longer than the line limit (`ORCH_MAX_LINE_BYTES`, 8 MB by default) is never loaded. The
ingest reads it as one over-long line — its length, not its bytes (`Chunk.long`) — and
the display readers show its start, cut with a marker that says how long it was.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

from ..core.errors import InvalidInput

CHUNK = 1 << 20
DEFAULT_LINE_LIMIT = 8 << 20
MIN_LINE_LIMIT = 4096
LINE_LIMIT_ENV = "ORCH_MAX_LINE_BYTES"


def line_limit() -> int:
    """The longest line orch reads whole (ORCH_MAX_LINE_BYTES, default 8 MB); a bad value is a one-line error."""
    value = os.environ.get(LINE_LIMIT_ENV, "").strip()
    if not value:
        return DEFAULT_LINE_LIMIT
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = -1
    if limit < MIN_LINE_LIMIT:
        raise InvalidInput(f"{LINE_LIMIT_ENV} must be a whole number of bytes, at least {MIN_LINE_LIMIT}, "
                           f"not {value[:40]!r}")
    return limit


def cut_marker(length: int, kept: int) -> str:
    """What replaces the rest of a line too long to keep: how long it was, and how much is kept."""
    return f"…[orch: line of {length} bytes cut to its first {kept}]"


class Chunk(NamedTuple):
    """What one read got: complete lines, or one line over the limit (its length only)."""

    start: int
    data: bytes  # complete lines, each with its newline; empty for a long line
    end: int  # where the next read starts
    more: bool  # bytes are left past `end` (in the range read)
    long: Optional[int] = None  # this is one line over the limit: its length, without its newline


def _find_newline(fd: int, pos: int, stop: int) -> int:
    """The offset of the first newline in [pos, stop), or -1; reads CHUNK at a time."""
    while pos < stop:
        block = os.pread(fd, min(CHUNK, stop - pos), pos)
        if not block:
            return -1
        i = block.find(b"\n")
        if i >= 0:
            return pos + i
        pos += len(block)
    return -1


def read_chunk(path: Path, offset: int, max_bytes: int = CHUNK, end: Optional[int] = None, final: bool = False,
               limit: Optional[int] = None) -> Chunk:
    """The complete lines after `offset` (about max_bytes of them, at least one), or one line over `limit`.

    With `end`, never read at or past that byte. With `final` (the writer is gone), a last
    line without its newline is a line too. A line longer than `limit` bytes comes alone,
    as its length: read in windows to find its end, never held whole.
    """
    limit = line_limit() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return Chunk(offset, b"", offset, False)
    try:
        size = os.fstat(fd).st_size
        if end is not None:
            size = min(size, end)
        elif size < offset:  # truncated or replaced: start over rather than read garbage
            offset = 0
        if size <= offset:
            return Chunk(offset, b"", offset, False)
        data = os.pread(fd, min(size - offset, max_bytes, limit + 1), offset)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return Chunk(offset, data[: cut + 1], offset + cut + 1, offset + cut + 1 < size)
        # The first line is longer than this read: find its end, up to the limit.
        nl = _find_newline(fd, offset + len(data), min(size, offset + limit + 1))
        if nl >= 0:
            data = os.pread(fd, nl + 1 - offset, offset)
            return Chunk(offset, data, nl + 1, nl + 1 < size)
        if size - offset <= limit:  # no newline yet, and short enough to wait for it
            if final:
                return Chunk(offset, os.pread(fd, size - offset, offset) + b"\n", size, False)
            return Chunk(offset, b"", offset, False)
        nl = _find_newline(fd, offset + limit + 1, size)
        if nl >= 0:
            return Chunk(offset, b"", nl + 1, nl + 1 < size, long=nl - offset)
        if final:
            return Chunk(offset, b"", size, False, long=size - offset)
        return Chunk(offset, b"", offset, False)  # its end is not written yet
    finally:
        os.close(fd)


def split_lines(start: int, data: bytes) -> list[tuple[int, bytes]]:
    """(offset, line without its newline) for each line of data read at `start`."""
    out = []
    pos = start
    for line in data[:-1].split(b"\n") if data else ():
        out.append((pos, line))
        pos += len(line) + 1
    return out


def read_new_lines(
    path: Path, offset: int, max_bytes: Optional[int] = None, end: Optional[int] = None,
) -> tuple[list[bytes], int]:
    """Complete lines (without their newline) after `offset`, and the offset to resume from.

    With max_bytes, stop after roughly that many bytes (always on a line boundary, but at
    least one whole line). With end, never read at or past that byte. A line over the line
    limit is skipped (it would not fit in memory whole).
    """
    while True:
        chunk = read_chunk(path, offset, max_bytes or CHUNK, end=end)
        if chunk.long is None:
            return [line for _, line in split_lines(chunk.start, chunk.data)], chunk.end
        offset = chunk.end


def iter_lines(path: Path) -> Iterator[bytes]:
    """Every complete line of a file, whole whatever its length (the trailing partial line
    is not yielded): for `orch parse`, which parses one finished run as the CLI wrote it."""
    offset = 0
    while True:
        chunk = read_chunk(path, offset, 8 * CHUNK, limit=sys.maxsize - 1)
        if chunk.end == offset:
            return
        for _, line in split_lines(chunk.start, chunk.data):
            yield line
        offset = chunk.end


def partial_tail(path: Path, offset: int) -> bytes:
    """The bytes after `offset` that do not yet end with a newline (a line being written)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


# --------------------------------------------------------------------------- showing lines


def line_pieces(path: Path, offset: int, limit: Optional[int] = None) -> Iterator[bytes]:
    """The line starting at `offset` in pieces of at most CHUNK bytes — cut at `limit` bytes,
    then a marker giving its length — without its newline. Never holds more than a piece."""
    limit = line_limit() if limit is None else limit
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = offset
        while pos < size and pos - offset < limit:
            block = os.pread(fd, min(CHUNK, size - pos, offset + limit - pos), pos)
            if not block:
                return
            nl = block.find(b"\n")
            if nl >= 0:
                yield block[:nl]
                return
            yield block
            pos += len(block)
        if pos >= size:
            return
        found = _find_newline(fd, pos, size)
        if found == pos:
            return  # exactly `limit` bytes long: nothing was cut
        length = (found if found >= 0 else size) - offset
        yield cut_marker(length, limit).encode()


def line_starts(path: Path, start: int = 0) -> Iterator[int]:
    """Where each line of a file starts, from `start` (a last one without its newline too); reads in windows."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = start
        while pos < size:
            yield pos
            nl = _find_newline(fd, pos, size)
            if nl < 0:
                return
            pos = nl + 1


def last_line_starts(path: Path, n: int) -> list[int]:
    """Where the last n lines of a file start (a last one without its newline counts), oldest first."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return []
        pos = size - 1 if os.pread(f.fileno(), 1, size - 1) == b"\n" else size  # the last line's own newline
        found: list[int] = []
        while pos > 0 and len(found) < n:
            lo = max(0, pos - CHUNK)
            block = os.pread(f.fileno(), pos - lo, lo)
            i = len(block)
            while len(found) < n:
                i = block.rfind(b"\n", 0, i)
                if i < 0:
                    break
                found.append(lo + i + 1)
            pos = lo
        if len(found) < n:
            found.append(0)
        return found[::-1]
