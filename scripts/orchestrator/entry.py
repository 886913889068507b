"""The `orch` entry point: the fast read path (status, list, check, wait) when it applies, else the click CLI."""

from __future__ import annotations

import sys


def main() -> None:
    from .fastpath import try_fast

    code = try_fast(sys.argv[1:])
    if code is None and sys.argv[1:2] == ["wait"]:
        from .fastwait import try_fast_wait

        code = try_fast_wait(sys.argv[1:])
    if code is not None:
        _leave(code)
    from .cli import main as cli_main

    try:
        cli_main()
        code = 0
    except SystemExit as done:
        code = done.code
    _leave(code)


def _leave(code) -> None:
    """End the process without tearing the interpreter down module by module.

    With pydantic, watchdog and their threads loaded, that teardown alone takes tens of
    milliseconds after the command's answer is printed — time a conductor waiting on
    `orch wait` would spend for nothing. The answer is flushed first; then the atexit
    handlers run (orch's own report of skipped files, the file watcher stopped and joined)
    and both streams are flushed again.
    """
    import atexit
    import os

    if isinstance(code, str):  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        code = 1
    _flush()
    atexit._run_exitfuncs()
    _flush()
    os._exit(0 if code is None else code if isinstance(code, int) else 1)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`orch logs | head`)
            pass
