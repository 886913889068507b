"""`orch parse`: the verdict on one run of an agent CLI, from its raw output files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..adapters import ADAPTERS
from ..core.models import RunSummary
from ..runtime.ingest.run_files import parse_run_files
from ..safety.redaction import redact_text
from ..views.table import cost_label
from .common import json_option, print_json, style


@click.command("parse")
@click.option("--cli", "cli_name", required=True, type=click.Choice(list(ADAPTERS)),
              help="Which CLI wrote the files.")
@click.argument("stdout_file", metavar="STDOUT_FILE", type=click.Path(path_type=Path))
@click.option("--stderr", "stderr_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="The run's stderr (some CLIs report some denials only there).")
@click.option("--rollout", "rollout_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="A session side file the CLI keeps (a rollout), which records every denied call.")
@json_option
def parse(cli_name: str, stdout_file: Path, stderr_file: Optional[Path], rollout_file: Optional[Path],
          as_json: bool) -> None:
    """Normalize a CLI's raw output and print the run's outcome, denials and usage."""
    summary = parse_run_files(cli_name, stdout_file, stderr_file, rollout_file)
    if as_json:
        print_json(summary)
    else:
        click.echo(human_summary(summary))


def human_summary(s: RunSummary) -> str:
    """A few lines a person reads at a glance; DENIED stands out when work was refused."""
    verdict = s.outcome.value
    if s.denied:
        verdict += "  " + style(f"DENIED ({len(s.denials)})", fg="red", bold=True)
    lines = [f"{s.cli} run {s.session_id or '(no session id)'}: {verdict}"]
    usage = s.usage
    lines.append(f"  tool calls {s.tool_calls}, files changed {len(s.files_changed)}, "
                 f"tokens {usage.input_tokens} in / {usage.output_tokens} out, cost {cost_label(usage)}")
    for d in s.denials:
        target = f" {d.target}" if d.target else ""
        lines.append(f"  denied: {d.tool}{target}: {_one_line(d.message)}")
    for path in s.files_changed[:20]:
        lines.append(f"  changed: {path}")
    for err in s.errors[:10]:
        lines.append(f"  error: {_one_line(err)}")
    if s.malformed_lines or s.unknown_events:
        lines.append(f"  malformed lines {s.malformed_lines}, unknown events {s.unknown_events}")
    if s.final_text:
        lines.append(f"  final: {_one_line(s.final_text, 300)}")
    return redact_text("\n".join(lines))


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


COMMANDS = [parse]
