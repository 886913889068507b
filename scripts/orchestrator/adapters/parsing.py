"""A finished run's lines → its normalized events and its verdict.

What `orch parse` does once the lines are read (runtime/ingest/run_files.py reads them
from the raw files): feed each stream's lines — stdout, then stderr, then (for codex) the
rollout — to the CLI's parser, finish, and fold the events into a RunSummary. Bytes in,
events out: the adapters never open a file of orch's. The run is over, so a stream's last
line may lack its newline: complete JSON still counts, a cut-off line is one malformed line.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from . import get_adapter
from .base import StreamParser, summarize
from ..core.errors import InvalidInput
from ..core.models import AgentEvent, RunSummary

#: One stream of a run: its name ("stdout", "stderr", "rollout") and its lines, in order.
Stream = tuple[str, Iterable[bytes]]


def run_events(parser: StreamParser, streams: Iterable[Stream]) -> Iterator[AgentEvent]:
    """Every event of one run, stream after stream, then finish."""
    for stream, lines in streams:
        for line in lines:
            yield from parser.feed(stream, line)
    yield from parser.finish(None)


def parse_run_lines(cli: str, streams: Iterable[Stream]) -> RunSummary:
    """The verdict on one run of `cli` from the lines of its streams."""
    try:
        adapter = get_adapter(cli)
    except ImportError:
        raise InvalidInput(f"the {cli} adapter is not part of this installation") from None
    parser = adapter.new_parser()
    summary = summarize(cli, run_events(parser, streams))
    summary.malformed_lines = parser.malformed_lines
    return summary
