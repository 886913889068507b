"""A finished run's raw files → its verdict (`orch parse`): the files read whole, line by line.

The adapter parses lines (adapters/parsing.py); this reads them from the files with the
store's line reader, in bounded memory however long a line is. The run is over, so a last
line without its newline is read too (a live tailer holds it back instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from ...adapters.parsing import parse_run_lines
from ...core.errors import InvalidInput, NotFound
from ...core.models import RunSummary
from ...store.tail import iter_lines, partial_tail


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


def finished_lines(path: Path) -> Iterator[bytes]:
    """Every line of a file whose writer is done, the last one even without its newline."""
    offset = 0
    for line in iter_lines(path):
        offset += len(line) + 1
        yield line
    last = partial_tail(path, offset)
    if last:
        yield last


def parse_run_files(cli: str, stdout: Path, stderr: Optional[Path] = None,
                    rollout: Optional[Path] = None) -> RunSummary:
    """The verdict on one run of `cli` from its raw output files."""
    files = [("stdout", check_readable(Path(stdout), "stdout"))]
    for name, path in (("stderr", stderr), ("rollout", rollout)):
        if path is not None:
            files.append((name, check_readable(Path(path), name)))
    return parse_run_lines(cli, [(name, finished_lines(path)) for name, path in files])
