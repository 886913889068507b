"""The `orch` command: a click group whose subcommands live in commands/, loaded on use.

commands.REGISTRY names the module of every command; only the invoked command's module is
imported (click's lazy-group pattern), so a read command starts without the coordinator,
the watcher or the dashboard.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

import click

from . import __version__
from .commands import REGISTRY
from .core.errors import describe_os_error


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(REGISTRY)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        module_name = REGISTRY.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{__package__}.commands.{module_name}")
        return next((c for c in module.COMMANDS if c.name == name), None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orch")
def cli() -> None:
    """Conduct a team of coding-agent CLIs: architect, implementer, reviewer.

    Start with `orch demo` (offline, simulated agents) or `orch run GOAL`.
    State lives in ./.orch (or $ORCH_HOME).
    """


def main() -> None:
    try:
        cli.main(prog_name="orch", standalone_mode=True)
    except BrokenPipeError:  # `orch logs | head`
        sys.stderr.close()
        sys.exit(0)
    except OSError as e:  # a read-only or full disk, a file that vanished: one line, not a traceback
        click.echo(f"orch: {describe_os_error(e)}", err=True)
        sys.exit(2)
    except Exception as e:  # a bug: still one line (ORCH_DEBUG=1 shows the traceback)
        if os.environ.get("ORCH_DEBUG"):
            raise
        first = (str(e).splitlines() or [""])[0][:300]
        click.echo(f"orch: internal error ({type(e).__name__}: {first}) — rerun with ORCH_DEBUG=1 for the "
                   "traceback, and report it", err=True)
        sys.exit(2)
