"""orch policy show / check — the effective safety policy and where each value came from."""

from __future__ import annotations

import json

import click

from ..safety.policy_file import leaves
from .common import json_option, print_json, workspace


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'''" + value + "'''" if ("\\" in value or '"' in value) and "'''" not in value else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


@click.group("policy")
def policy_group() -> None:
    """The safety policy: role ceilings, forbidden commands, allowed folders, limits."""


@policy_group.command("show")
@json_option
def show(as_json: bool) -> None:
    """Print the effective policy (defaults merged with .orch/policy.toml) and each value's origin."""
    from ..notify.urls import mask_url
    from ..runtime.ceiling import kernel_status
    from ..safety.policy import load_policy  # loaded on use: every orch invocation imports this module

    ws = workspace()
    policy = load_policy(ws)
    doc = policy.model_dump(mode="json")
    doc["notify"]["urls"] = [mask_url(u) for u in policy.notify.urls]  # they hold tokens
    kernel = kernel_line(policy)
    if as_json:
        abi, why = kernel_status()
        print_json({"policy_file": str(ws.policy_path), "policy_file_exists": ws.policy_path.is_file(),
                    "files": policy.files, "policy": doc,
                    "sources": {key: policy.source(key) for key, _ in leaves(doc)},
                    "kernel_confinement": {"landlock_abi": abi, "unavailable": why or None,
                                           "on": bool(abi) and policy.safety.kernel_confinement, "summary": kernel}})
        return
    state = "in use" if ws.policy_path.is_file() else "absent: the defaults apply"
    click.echo(f"# policy file: {ws.policy_path} ({state})")
    click.echo(f"# defaults:    {policy.files[0]}")
    click.echo(f"# kernel confinement: {kernel}")
    table = None
    for key, value in leaves(doc):
        parts = key.split(".")
        head, leaf = ".".join(parts[:-1]), parts[-1]
        if head != table:
            click.echo(f"\n[{head}]")
            table = head
        click.echo(f"{leaf} = {_toml_value(value)}  # {policy.source(key)}")


def kernel_line(policy) -> str:
    """What the kernel does for the agents here, as the policy and this machine decide."""
    from ..runtime.ceiling import status_line

    if not policy.safety.kernel_confinement:
        return f"off ([safety] kernel_confinement = false, {policy.source('safety.kernel_confinement')})"
    return status_line()


@policy_group.command("check")
def check() -> None:
    """Validate the policy file (extra_dirs resolved against this folder, as a session started
    here would); exit 2 with the offending line when it is invalid."""
    from pathlib import Path

    from ..safety.policy import check_policy

    ws = workspace()
    policy = check_policy(ws, Path.cwd())
    if not ws.policy_path.is_file():
        click.echo(f"no policy file at {ws.policy_path}: the defaults apply ({policy.files[0]})")
        return
    ceilings = ", ".join(f"{r.value} {p.max_level.value}" for r, p in policy.roles.items())
    forbidden = sum(1 for r in policy.forbidden.values() if r.enabled)
    click.echo(f"policy OK: {ws.policy_path} (ceilings: {ceilings}; {forbidden} forbidden rules)")


COMMANDS = [policy_group]
