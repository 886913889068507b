"""The kinds of failure a user can meet, each one line and a non-zero exit (2)."""

from __future__ import annotations

import errno

import click


class OrchError(click.ClickException):
    """Base: printed as `orch: <message>` with exit code 2 (1 is `orch check` failing)."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message

    def show(self, file=None) -> None:  # one line, no "Error:" prefix, no traceback
        SHOWN.add(self.format_message())
        click.echo(f"orch: {self.format_message()}", err=True)


#: Messages already printed as the command's error (a warning saying the same is not repeated).
SHOWN: set[str] = set()


class NoSession(OrchError):
    """No session was named and none is active here."""


class NotFound(OrchError):
    """A session, agent, task or file that does not exist."""


class InvalidInput(OrchError):
    """An argument, id, path or file that orch refuses."""


class CorruptFile(OrchError):
    """A file orch wrote cannot be read back; it is left as it is."""


class CliMissing(OrchError):
    """An agent CLI's binary is not installed."""


class PolicyError(OrchError):
    """The policy file is invalid, or forbids what was asked."""


class ProcessError(OrchError):
    """An agent process could not be started or signalled."""


class WatchRefused(OrchError):
    """The kernel refused orch a file watcher (inotify): the message names the limit and the fix."""


_OS_HINTS = {
    errno.EROFS: "the file system is read-only: remount it read-write, or set ORCH_HOME to a writable folder",
    errno.ENOSPC: "the disk is full: free some space and rerun (every file still holds its last complete write)",
    errno.EDQUOT: "the disk quota is exceeded: free some space and rerun",
    errno.EACCES: "permission denied: fix the folder's permissions or set ORCH_HOME to a writable folder",
    errno.EPERM: "the operation is not permitted (an immutable file?): fix it or set ORCH_HOME elsewhere",
}


def describe_os_error(e: OSError) -> str:
    """The file, what went wrong and what to do, in one line."""
    where = f"{e.filename}: " if e.filename else ""
    what = e.strerror or str(e)
    hint = _OS_HINTS.get(e.errno or 0, "check the file and rerun")
    return f"{where}{what} — {hint}"
