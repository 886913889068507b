"""Offset-based reading of files that other processes append to.

Only bytes past the saved offset are read, so the cost of a read grows with what was
added, not with the size of the file. A last line without its newline is held back (the
offset stays at its start) until the newline arrives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

CHUNK = 1 << 20


def read_new_lines(
    path: Path, offset: int, max_bytes: Optional[int] = None, end: Optional[int] = None,
) -> tuple[list[bytes], int]:
    """Complete lines (without their newline) after `offset`, and the offset to resume from.

    With max_bytes, stop after roughly that many bytes (always on a line boundary, but at
    least one whole line even if it is longer). With end, never read at or past that byte.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return [], offset
    try:
        size = os.fstat(fd).st_size
        if end is not None:
            size = min(size, end)
        if size < offset and end is None:  # truncated or replaced: start over rather than read garbage
            offset = 0
        if size <= offset:
            return [], offset
        want = size - offset if max_bytes is None else min(size - offset, max_bytes)
        data = os.pread(fd, want, offset)
        cut = data.rfind(b"\n")
        while cut < 0 and offset + len(data) < size:
            # one line longer than max_bytes: keep reading until its end (or EOF)
            more = os.pread(fd, CHUNK, offset + len(data))
            if not more:
                break
            idx = more.find(b"\n")
            if idx >= 0:
                data += more[: idx + 1]
                cut = len(data) - 1
            else:
                data += more
        if cut < 0:
            return [], offset
        lines = data[:cut].split(b"\n")
        return lines, offset + cut + 1
    finally:
        os.close(fd)


def iter_lines(path: Path) -> Iterator[bytes]:
    """Every complete line of a file (the trailing partial line is not yielded)."""
    offset = 0
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=8 * CHUNK)
        if new == offset:
            return
        yield from lines
        offset = new


def partial_tail(path: Path, offset: int) -> bytes:
    """The bytes after `offset` that do not yet end with a newline (a line being written)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""
