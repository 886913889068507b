"""Reading an agent's raw files by offset, scrubbing them, then feeding their lines to its parser.

Only bytes past the cursor's offsets are read, a chunk at a time. A last line without its
newline waits for it, unless the writer is gone (`final`): then it is read too, closed
with a newline. Secrets are masked before anything is built from the bytes: the text the
lines carry is joined and scanned for secrets, whole or cut over several lines (split.py),
and each line is scrubbed whole in place, before any event is folded. When that masks
bytes, the lines are read again and parsed again from the parser's state before them, so
every event, the meta and the parser state are made from the masked bytes. A line an unfinished secret starts in waits, with every line
after it, until the secret's rest has come (split.py's hold).

A line longer than the line limit (store/tail.py, ORCH_MAX_LINE_BYTES) is never loaded:
it is scrubbed in place a window at a time, stays whole in the raw file (the CLI wrote it
there through supervise.sh, and rewriting the file would move every offset after it),
and becomes one event saying so, with its start (cut, marked) and its length; it counts as
a malformed line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

from ...core.models import AgentEvent, AgentEventKind, EchoMark, Run
from ...safety.redaction import mask_occurrences, scrub_file, scrub_range
from ...store.tail import Chunk, cut_marker, line_limit, read_chunk, read_new_lines, split_lines
from .fold import Batch
from .split import SplitText, is_echo

READ_CHUNK = 1 << 20
RAW_NAMES = {"stdout": "stdout.jsonl", "stderr": "stderr.log"}
#: How much of an over-long line its event keeps.
LONG_LINE_HEAD = 1000
#: How far back in a run an unfinished secret masked at its release is looked for again
#: (claude repeats a message's deltas in the whole message and in its result).
ECHO_REACH = 8 << 20
#: Shorter released pieces are not looked for elsewhere: they would match ordinary text.
ECHO_MIN = 8

_QUOTE = re.compile(rb'"')
#: From where a JSON string's text begins: the string is an object's key. A CLI's keys are its
#: own words, never the model's: an echo is never looked for there (a one-letter piece of a
#: secret would otherwise mask the first letter of `"content"`).
_KEY_AHEAD = re.compile(rb'(?:[^"\\]|\\.)*"\s*:')

Line = tuple[int, bytes]  # where it starts, its bytes without the newline


def feed_stream(batch: Batch, run: Run, stream: str, end: Optional[int], final: bool) -> None:
    """Scrub, then parse and fold, the stream's new complete lines (and, when final, a trailing partial line)."""
    c = batch.cursor
    path = batch.folder / RAW_NAMES[stream]
    attr = f"{stream}_offset"
    limit = line_limit()
    if final and end is None:
        _close_torn_line(path, getattr(c, attr))
    split = SplitText(path, stream, c.text_tail.get(stream))
    run_start = run.stdout_start if stream == "stdout" else run.stderr_start
    read_at = getattr(c, attr)
    pending: list[Line] = []  # held back: parsed with the next chunk, or by the next ingest
    while True:
        chunk = read_chunk(path, read_at, READ_CHUNK, end=end, final=final, limit=limit)
        if chunk.long is not None:
            if pending:  # an over-long line breaks the text: what waited for more is released
                _take(batch, run, stream, split, pending, release=True, run_start=run_start, end=chunk.start)
                pending = []
            _take_long(batch, run, stream, path, chunk, limit)
            split.reset()
        elif not chunk.data:
            break
        else:
            batch.saw_bytes = True
            lines = pending + split_lines(chunk.start, chunk.data)
            pending = _take(batch, run, stream, split, lines, release=final and not chunk.more,
                            run_start=run_start, end=chunk.end)
        read_at = chunk.end
        setattr(c, attr, pending[0][0] if pending else chunk.end)
        _keep_tail(c, stream, split)
        batch.maybe_flush()
    if pending and final:  # (a read that ended early: the run is over, nothing more will come)
        _take(batch, run, stream, split, pending, release=True, run_start=run_start, end=read_at)
        setattr(c, attr, read_at)
    if final:  # the next run's text is its own: what this one repeated stays behind
        split.echo = None
        _keep_tail(c, stream, split)


def _keep_tail(c, stream: str, split: SplitText) -> None:
    """The stream's carried tail, kept across ingests and across the runs of the agent."""
    tail = split.carry()
    if tail is not None:
        c.text_tail[stream] = tail
    else:
        c.text_tail.pop(stream, None)


def _close_torn_line(path: Path, offset: int) -> None:
    """The writer is gone: close an unterminated last line with a newline, so it is a line like any other."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        if size > offset and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
    finally:
        os.close(fd)


def _take(batch: Batch, run: Run, stream: str, split: SplitText, lines: list[Line], release: bool,
          run_start: int, end: int) -> list[Line]:
    """Parse and fold the lines no unfinished secret holds back; return the held ones."""
    snapshot = batch.parser.state()
    parser = batch.parser
    fed: list[list[AgentEvent]] = []
    for start, line in lines:
        events: list[AgentEvent] = []
        if line.strip():
            events = parser.feed(stream, line)
            split.add_line(start, line, parser.spoken)
        fed.append(events)
    # The text first (it sees a secret whole before any part of it is masked, and knows
    # whether the text ends in one), then every line whole: a command, a result, a JSON key.
    scan = split.scrub(release=release, end=end)
    masked = scan.masked
    if scan.released is not None:
        masked |= _mask_echoes(split.path, stream, scan.released, max(run_start, end - ECHO_REACH), end)
    if split.echo is not None:
        masked |= _mask_rest_echoes(split.path, stream, split.echo, lines)
    masked |= scrub_range(split.path, lines[0][0], b"".join(line + b"\n" for _, line in lines)) > 0
    cut = len(lines) if scan.hold is None else next(i for i, (s, _) in enumerate(lines) if s == scan.hold)
    if masked or cut < len(lines):
        # What was built from these lines came from bytes now masked, or from lines held
        # back: parse them again from the state before them.
        if masked:
            lines = _read_again(split.path, lines)
        batch.parser = parser = batch.adapter.new_parser(snapshot)
        fed = [parser.feed(stream, line) if line.strip() else [] for _, line in lines[:cut]]
    for events in fed[:cut]:
        for ev in events:
            batch.fold(ev, run)
    return lines[cut:]


def _read_again(path: Path, lines: list[Line]) -> list[Line]:
    """The same lines as the raw file holds them now (masking keeps every length)."""
    first = lines[0][0]
    last_start, last = lines[-1]
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), last_start + len(last) - first, first) + b"\n"
    return split_lines(first, data)


def _mask_echoes(path: Path, stream: str, released: str, start: int, end: int) -> bool:
    """Mask other copies of an unfinished secret masked at its release, in the run's recent bytes."""
    if len(released) < ECHO_MIN:
        return False
    raw = released.encode("latin-1")
    needles = {raw}
    if stream == "stdout":  # as JSON writes it, both ways
        text = raw.decode("utf-8", "replace")
        needles |= {json.dumps(text, ensure_ascii=a)[1:-1].encode() for a in (False, True)}
    return mask_occurrences(path, start, end, sorted(needles, key=len, reverse=True)) > 0


def _mask_rest_echoes(path: Path, stream: str, mark: EchoMark, lines: list[Line]) -> bool:
    """Mask where the piece a run's text began with (the rest of a secret) shows again: at the
    start of a JSON string, or of a stderr line — where a CLI repeats what the model wrote."""
    found = []
    for start, line in lines:
        if stream == "stdout":
            candidates = (m.end() for m in _QUOTE.finditer(line))
        else:
            candidates = iter((0,))
        for at in candidates:
            if stream == "stdout" and _KEY_AHEAD.match(line, at):
                continue
            if is_echo(mark, line[at:at + mark.length]):
                found.append(start + at)
    if not found:
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        for at in found:
            os.pwrite(fd, b"*" * mark.length, at)
    finally:
        os.close(fd)
    return True


def _take_long(batch: Batch, run: Run, stream: str, path: Path, chunk: Chunk, limit: int) -> None:
    """One line over the limit: scrubbed in place, then one event with its start, cut and marked."""
    length = chunk.long or 0
    scrub_file(path, chunk.start, chunk.start + length)
    with open(path, "rb") as f:
        head = os.pread(f.fileno(), min(LONG_LINE_HEAD, length), chunk.start)
    text = head.decode("utf-8", errors="replace") + cut_marker(length, len(head))
    batch.saw_bytes = True
    batch.parser.malformed_lines += 1
    batch.fold(AgentEvent(
        kind=AgentEventKind.UNKNOWN, stream=stream, raw_type="oversized_line",
        message=f"a {stream} line of {length} bytes is longer than the {limit}-byte limit "
                f"(ORCH_MAX_LINE_BYTES): not parsed; the raw file keeps it whole",
        data={"bytes": length, "limit": limit, "head": text},
    ), run)


def feed_side_file(batch: Batch, run: Run, path: Path) -> None:
    """Feed what a side file gained since the previous run read it.

    A side file belongs to the CLI session, not to one run: `codex exec resume` appends
    the new turn to the thread's rollout, which still holds every earlier turn. Read whole
    again, a resumed run would report the earlier runs' denials as its own. A line over
    the line limit is skipped.
    """
    offsets = batch.cursor.side_offsets
    offset = offsets.get(str(path), 0)
    while True:
        lines, new = read_new_lines(path, offset, max_bytes=READ_CHUNK)
        if new == offset:
            break
        for line in lines:
            if line.strip():
                for ev in batch.parser.feed("rollout", line):
                    batch.fold(ev, run)
        offset = new
        offsets[str(path)] = offset
        batch.maybe_flush()
