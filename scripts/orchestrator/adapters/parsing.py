"""A finished run's raw files → its normalized events and its verdict.

What `orch parse` does, as a function: read every line of stdout, stderr and (for codex)
the rollout file with the shared line reader, feed them to the CLI's parser, finish,
and fold the events into a RunSummary. The run is over, so a last line without its
newline is read too (a live tailer holds it back instead): complete JSON still counts,
a cut-off line is one malformed line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from . import get_adapter
from .base import StreamParser, summarize
from ..core.errors import InvalidInput, NotFound
from ..core.models import AgentEvent, RunSummary
from ..store.tail import iter_lines, partial_tail


def check_readable(path: Path, what: str) -> Path:
    """The path, or a one-line error when it is missing, a folder or unreadable."""
    if not path.exists():
        raise NotFound(f"{what} file not found: {path}")
    if path.is_dir():
        raise InvalidInput(f"{what} is a folder, not a file: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    return path


def run_files_events(parser: StreamParser, stdout: Path, stderr: Optional[Path] = None,
                     rollout: Optional[Path] = None) -> Iterator[AgentEvent]:
    """Every event of one run, stdout first, then stderr, then the rollout, then finish."""
    for stream, path in (("stdout", stdout), ("stderr", stderr), ("rollout", rollout)):
        if path is None:
            continue
        offset = 0
        for line in iter_lines(path):
            offset += len(line) + 1
            yield from parser.feed(stream, line)
        last = partial_tail(path, offset)
        if last:
            yield from parser.feed(stream, last)
    yield from parser.finish(None)


def parse_run_files(cli: str, stdout: Path, stderr: Optional[Path] = None,
                    rollout: Optional[Path] = None) -> RunSummary:
    """The verdict on one run of `cli` from its raw output files."""
    stdout = check_readable(Path(stdout), "stdout")
    stderr = check_readable(Path(stderr), "stderr") if stderr is not None else None
    rollout = check_readable(Path(rollout), "rollout") if rollout is not None else None
    try:
        adapter = get_adapter(cli)
    except ImportError:
        raise InvalidInput(f"the {cli} adapter is not part of this installation") from None
    parser = adapter.new_parser()
    summary = summarize(cli, run_files_events(parser, stdout, stderr, rollout))
    summary.malformed_lines = parser.malformed_lines
    return summary
