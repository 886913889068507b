"""Reading an agent's raw files by offset, feeding complete lines to its parser, scrubbing them.

Only bytes past the cursor's offsets are read. A last line without its newline waits for
it, unless the writer is gone (`final`): then it is read too, and closed with a newline so
the scrubber can treat it like any other line. Whatever was read is scrubbed of secrets in
place: the raw copy on disk must not keep a secret either, whole in a line or cut in
pieces over several (split.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...adapters import StreamParser
from ...core.models import Run
from ...safety.redaction import scrub_file, scrub_range
from ...store.tail import read_new_lines
from .fold import Batch
from .split import SplitText

READ_CHUNK = 8 << 20
RAW_NAMES = {"stdout": "stdout.jsonl", "stderr": "stderr.log"}


def feed_stream(batch: Batch, parser: StreamParser, run: Run, stream: str, end: Optional[int],
                final: bool) -> None:
    """Feed the stream's new complete lines (and, when final, a trailing partial line)."""
    c = batch.cursor
    path = batch.folder / RAW_NAMES[stream]
    attr = f"{stream}_offset"
    offset = getattr(c, attr)
    split = SplitText(path, stream, c.text_tail.get(stream))
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=READ_CHUNK, end=end)
        if new == offset:
            break
        batch.saw_bytes = True
        at = offset
        for line in lines:
            if line.strip():
                for ev in parser.feed(stream, line):
                    batch.fold(ev, run)
                split.add_line(at, line, parser.spoken)
            at += len(line) + 1
        scrub_range(path, offset, b"\n".join(lines) + b"\n")
        split.scrub()
        offset = new
    if final:
        offset = _feed_torn_tail(batch, parser, run, stream, path, offset, end, split)
    setattr(c, attr, offset)
    tail = None if final else split.carry()  # a run that ended has no more pieces to come
    if tail is not None:
        c.text_tail[stream] = tail
    else:
        c.text_tail.pop(stream, None)


def _feed_torn_tail(batch: Batch, parser: StreamParser, run: Run, stream: str, path: Path, offset: int,
                    end: Optional[int], split: SplitText) -> int:
    """The writer is gone: an unterminated last line will never be completed, so read it now."""
    limit = end if end is not None else (path.stat().st_size if path.exists() else offset)
    if limit <= offset:
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        rest = f.read(limit - offset)
    if rest.strip():
        batch.saw_bytes = True
        line = rest.rstrip(b"\n")
        for ev in parser.feed(stream, line):
            batch.fold(ev, run)
        split.add_line(offset, line, parser.spoken)
        split.scrub()
        if end is None and not rest.endswith(b"\n"):
            with open(path, "ab") as f:  # close the torn line so it can be scrubbed
                f.write(b"\n")
            limit += 1
        scrub_file(path, offset, limit)
    return limit


def feed_side_file(batch: Batch, parser: StreamParser, run: Run, path: Path) -> None:
    """Feed what a side file gained since the previous run read it.

    A side file belongs to the CLI session, not to one run: `codex exec resume` appends
    the new turn to the thread's rollout, which still holds every earlier turn. Read whole
    again, a resumed run would report the earlier runs' denials as its own.
    """
    offsets = batch.cursor.side_offsets
    offset = offsets.get(str(path), 0)
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=READ_CHUNK)
        if new == offset:
            break
        for line in lines:
            if line.strip():
                for ev in parser.feed("rollout", line):
                    batch.fold(ev, run)
        offset = new
    offsets[str(path)] = offset
