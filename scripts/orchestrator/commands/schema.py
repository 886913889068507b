"""orch schema — the JSON Schemas of orch's files, generated from its models."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core.schema import drifted, render_schemas, write_schemas


@click.command()
@click.option("--write", "write_dir", type=click.Path(file_okay=False), default=None,
              help="Write every schema into this folder (the repository keeps them in schemas/).")
@click.option("--check", "check_dir", type=click.Path(file_okay=False), default=None,
              help="Exit 1 when the schemas in this folder drift from the models.")
@click.argument("name", required=False)
def schema(write_dir, check_dir, name):
    """Print (or write, or check) the JSON Schema of each file orch writes."""
    if write_dir:
        changed = write_schemas(Path(write_dir))
        click.echo(f"{len(changed)} schema(s) updated in {write_dir}" + (": " + ", ".join(changed) if changed else ""))
        return
    if check_dir:
        bad = drifted(Path(check_dir))
        for b in bad:
            click.echo(f"drifted: {b}")
        sys.exit(1 if bad else 0)
    schemas = render_schemas()
    if name:
        if name not in schemas:
            raise click.BadParameter(f"choose one of {', '.join(schemas)}", param_hint="NAME")
        click.echo(schemas[name], nl=False)
        return
    for n in schemas:
        click.echo(n)


COMMANDS = [schema]
