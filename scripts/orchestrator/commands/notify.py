"""orch notify — check where notifications go, and send a test message."""

from __future__ import annotations

import sys

import click

from .common import json_option, print_json, workspace


@click.command("notify")
@click.option("--test", "send_test", is_flag=True, help="Send a test message to every configured URL now.")
@json_option
def notify(send_test: bool, as_json: bool) -> None:
    """Show the notification settings (URLs masked: they hold tokens); --test sends a message."""
    from ..notify.sender import send_one
    from ..notify.urls import mask_url, notify_urls
    from ..safety.policy import load_policy

    ws = workspace()
    policy = load_policy(ws).notify
    urls = notify_urls(policy)
    results = []
    if send_test:
        if not urls:
            click.echo("orch: no notification URL: add [notify] urls = [...] to the policy or set ORCH_NOTIFY_URLS",
                       err=True)
            sys.exit(2)
        body = (f"What happened: a test message from `orch notify --test`\nProject: {ws.root.parent}\n"
                "Waiting for: nothing\nAnswer: nothing to do")
        for url in urls:
            error = send_one(url, "orch: test notification", body)
            results.append({"url": mask_url(url), "sent": error is None, "error": error})
    if as_json:
        print_json({"urls": [mask_url(u) for u in urls], "on": policy.on, "results": results})
    else:
        click.echo(f"notification URLs: {', '.join(mask_url(u) for u in urls) or 'none'}")
        click.echo(f"sent on: {', '.join(policy.on) or 'nothing'}")
        for r in results:
            click.echo(f"{r['url']}: " + ("sent" if r["sent"] else f"FAILED: {r['error']}"))
    if results and not all(r["sent"] for r in results):
        sys.exit(1)


COMMANDS = [notify]
