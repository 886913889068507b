"""orch hook stop|todo|context|claim — what the Claude Code plugin's hooks run.

`stop`, `todo` and `context` read the hook's JSON on stdin, print Claude Code's answer (or
nothing) and always exit 0: a hook never breaks Claude's session. `claim` is a normal
command: orchestrate.md runs it to make its Claude Code session the conductor.
"""

from __future__ import annotations

import sys
from typing import Optional

import click

from ..plugin import hooks
from ..core.errors import InvalidInput
from ..store.jsonsafe import dumps_text
from .common import open_session, session_option


@click.group()
def hook() -> None:
    """Entry points for Claude Code hooks (hooks/hooks.json runs them; JSON on stdin)."""


def _answer(name: str) -> None:
    answer = hooks.run_hook(name, sys.stdin.read())
    if answer.note:
        click.echo(f"orch: {answer.note}", err=True)
    if answer.output is not None:
        click.echo(dumps_text(answer.output))


@hook.command("stop")
def stop_cmd() -> None:
    """Stop hook: block while the conducted session's completion criteria fail (bounded)."""
    _answer("stop")


@hook.command("todo")
def todo_cmd() -> None:
    """PostToolUse hook on TodoWrite/TaskCreate/TaskUpdate: record the todo in progress."""
    _answer("todo")


@hook.command("context")
def context_cmd() -> None:
    """SessionStart hook (compact, resume): give the conductor its session's state back."""
    _answer("context")


@hook.command("claim")
@click.argument("claude_session", required=False)
@session_option
def claim_cmd(claude_session: Optional[str], session_id: Optional[str]) -> None:
    """Make a Claude Code session (default: the one this runs in) the conductor of a session."""
    claude_session = claude_session or hooks.conductor_from_env()
    if not claude_session:
        raise InvalidInput("name the Claude Code session to claim for (orchestrate.md passes ${CLAUDE_SESSION_ID})")
    store = open_session(session_id)
    state = hooks.claim(store, claude_session)
    limit, note = hooks.stop_limit(store)
    if note:
        click.echo(f"orch: {note}", err=True)
    click.echo(f"session {store.id} is conducted by Claude Code session {state.claude_session}: its Stop hook "
               f"keeps it working while `orch check` fails (at most {limit} times; used {state.continuations})")


COMMANDS = [hook]
