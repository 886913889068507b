"""orch verify — the project's tests as the session's gate: every run, and known failures."""

from __future__ import annotations

import click

from .common import json_option, open_session, print_json, session_option


@click.command()
@click.option("--known-failure", "known", metavar="TEST", default=None,
              help="Declare a failing test out of scope for this session (a name, its end, or its file).")
@click.option("--why", default="", help="Why it is out of scope (the report lists it).")
@click.option("--forget", metavar="TEST", default=None, help="Take back a --known-failure declaration.")
@session_option
@json_option
def verify(known, why, forget, session_id, as_json):
    """The verification gate of a session: its runs, the failures caught, the known failures.

    With --known-failure TEST the failing test no longer blocks the session; nothing else
    lets a failing test through.
    """
    from ..core.errors import InvalidInput
    from ..criteria.completion import verification_line
    from ..engine.verification import declare_known

    if known and forget:
        raise InvalidInput("--known-failure and --forget each name one test: give one of them")
    if why and not known:
        raise InvalidInput("--why goes with --known-failure TEST")
    store = open_session(session_id)
    changed = declare_known(store, known or forget, why, forget=bool(forget)) if (known or forget) else ""
    session = store.read_session()
    final, missing = verification_line(session.model_dump(mode="json"))
    v = session.verification
    if as_json:
        print_json({"session": session.id, "changed": changed, "final": final, "missing": missing,
                    "verification": v})
        return
    if changed:
        click.echo(changed)
    if v is None:
        click.echo(f"session {session.id}: {final or 'the project tests do not gate it (no integration branch)'}")
        return
    click.echo(f"session {session.id}: {v.reason}; final commit: {final}")
    for r in v.runs:
        result = r.state.value if r.state.value != "finished" else (
            "no test command" if not r.command else "passed" if r.exit_code == 0 else
            f"failed ({', '.join(r.failing[:3]) or 'exit ' + str(r.exit_code)})")
        click.echo(f"- {r.id} {r.commit[:12]} {r.purpose:<6} {result}")
    for k in v.known_failures:
        click.echo(f"known failure: {k.test} — {k.why or 'no reason given'} ({k.source})")


COMMANDS = [verify]
