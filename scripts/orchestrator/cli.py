"""The `orch` command: a click group whose subcommands live in commands/, one module each.

A module in commands/ exposes `COMMANDS = [...]` (click commands or groups); they are
added here, so adding a command never means editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from . import __version__, commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orch")
def cli() -> None:
    """Conduct a team of coding-agent CLIs: architect, implementer, reviewer.

    Start with `orch demo` (offline, simulated agents) or `orch run GOAL`.
    State lives in ./.orch (or $ORCH_HOME).
    """


def _register() -> None:
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="orch", standalone_mode=True)
    except BrokenPipeError:  # `orch logs | head`
        sys.stderr.close()
        sys.exit(0)
