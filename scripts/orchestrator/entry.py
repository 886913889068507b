"""The `orch` entry point: the fast read path when it applies, else the click CLI."""

from __future__ import annotations

import sys


def main() -> None:
    from .fastpath import try_fast

    code = try_fast(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.exit(code)
    from .cli import main as cli_main

    cli_main()
