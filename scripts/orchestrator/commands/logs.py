"""orch logs — an agent's events in readable form, or the CLI's own lines (--raw).

Both stream their files: the event log is read one line at a time (another agent's lines
are ruled out by a byte test before any parsing), and --tail keeps only the last N; raw
lines are read in windows, --tail from the files' ends, and a line longer than the line
limit (ORCH_MAX_LINE_BYTES) is shown cut, with a marker giving its length. So what
`orch logs` holds in memory does not grow with what any agent printed.
"""

from __future__ import annotations

import codecs
from collections import deque
from pathlib import Path
from typing import Iterator, Optional

import click

from ..core.lifecycle import LIVE_AGENT_STATES
from ..core.models import Event
from ..runtime.ingest import sync_agent
from ..runtime.runs import require_agent
from ..runtime.watch import SessionWatcher
from ..store.sessions import SessionStore
from ..store.tail import last_line_starts, line_pieces, line_starts
from ..views.render import event_line
from .common import json_option, open_session, session_option

RAW_FILES = (("stdout.jsonl", ""), ("stderr.log", "[stderr] "))


def _raw_lines(store: SessionStore, agent_id: str, n: Optional[int]) -> Iterator[tuple[Path, str, int]]:
    """(file, prefix, where the line starts) for the CLI's lines, stdout's then stderr's
    (the last n of them all, with n)."""
    d = store.agent_dir(agent_id)
    if not n:
        for name, prefix in RAW_FILES:
            for start in line_starts(d / name):
                yield d / name, prefix, start
        return
    # The last n of stdout-then-stderr: stderr's last lines, then stdout's for the rest.
    picked: list[tuple[Path, str, list[int]]] = []
    left = n
    for name, prefix in reversed(RAW_FILES):
        starts = last_line_starts(d / name, left)
        picked.append((d / name, prefix, starts))
        left -= len(starts)
    for path, prefix, starts in reversed(picked):
        for start in starts:
            yield path, prefix, start


def _echo_raw(path: Path, prefix: str, start: int) -> None:
    """One raw line, redacted again (with this process's secrets), piece by piece."""
    from ..safety.redaction import redact_text

    click.echo(prefix, nl=False)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for piece in line_pieces(path, start):
        click.echo(redact_text(decoder.decode(piece)), nl=False)
    click.echo(redact_text(decoder.decode(b"", final=True)))


def _show(offset: int, e: Event, as_json: bool) -> str:
    return print_json_line(offset, e) if as_json else event_line(e)


@click.command()
@click.argument("agent_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the agent ends.")
@click.option("--tail", "-n", "tail_n", type=int, default=None, help="Only the last N lines.")
@click.option("--raw", is_flag=True, help="The CLI's own lines instead of normalized events.")
@session_option
@json_option
def logs(agent_id, follow, tail_n, raw, session_id, as_json):
    """An agent's events in readable form (--raw for the CLI's own output)."""
    if tail_n is not None and tail_n < 0:
        raise click.BadParameter("must be >= 0", param_hint="--tail")
    store = open_session(session_id)
    require_agent(store, agent_id)
    sync_agent(store, agent_id)
    if raw:
        for path, prefix, start in _raw_lines(store, agent_id, tail_n):
            _echo_raw(path, prefix, start)
        return
    scan = store.scan_events(agent=agent_id)
    shown = 0
    if tail_n:
        for offset, e in deque(scan, maxlen=tail_n):
            click.echo(_show(offset, e, as_json))
            shown += 1
    else:
        for offset, e in scan:
            click.echo(_show(offset, e, as_json))
            shown += 1
    if not follow:
        if not shown and not as_json:
            click.echo(f"{agent_id} has not produced any events yet.")
        return
    end = scan.end
    with SessionWatcher(store) as watcher:
        while True:
            sync_agent(store, agent_id)
            scan = store.scan_events(end, agent=agent_id)
            for offset, e in scan:
                click.echo(_show(offset, e, as_json))
            end = scan.end
            agent = store.read_agent(agent_id)
            if agent.state not in LIVE_AGENT_STATES:
                click.echo(f"-- {agent_id} is {agent.state.value}: {agent.state_reason}", err=True)
                return
            watcher.sleep(2.0)


def print_json_line(offset: int, e: Event) -> str:
    import json

    return json.dumps({"id": offset, **e.model_dump(mode="json", exclude_none=True)}, ensure_ascii=False)


COMMANDS = [logs]
