"""The adapter registry: adding a CLI is one module here and one line in ADAPTERS."""

from __future__ import annotations

import importlib

from ..core.errors import CliMissing, InvalidInput
from .base import Adapter, Command, Grant, LaunchSpec, StreamParser, summarize

ADAPTERS: dict[str, str] = {
    "claude": "claude:ClaudeAdapter",
    "codex": "codex:CodexAdapter",
    "copilot": "copilot:CopilotAdapter",
    "gemini": "gemini:GeminiAdapter",
    "opencode": "opencode:OpencodeAdapter",
    "qwen": "qwen:QwenAdapter",
    "sim": "sim:SimAdapter",
}

#: orch's own pseudo-agents: runnable like a CLI, never a team member's choice.
PSEUDO_ADAPTERS: dict[str, str] = {
    "verify": "verify:VerifyAdapter",  # the verifier: the project's tests on integration commits
}

REAL_CLIS = ("claude", "codex", "gemini", "opencode", "qwen", "copilot")
OFFLINE_CLI = "sim"  # the built-in simulated agent: no login, no network

_cache: dict[tuple[str, str], Adapter] = {}


def get_adapter(name: str, variant: str | None = None) -> Adapter:
    """The adapter for a CLI name; a one-line error for a name orch does not know.

    `variant` configures adapters that come in flavours: the sim's stream format.
    """
    where = ADAPTERS.get(name) or PSEUDO_ADAPTERS.get(name)
    if where is None:
        raise InvalidInput(f"unknown CLI {name!r}: choose one of {', '.join(ADAPTERS)}")
    key = (name, variant or "")
    if key not in _cache:
        module_name, cls_name = where.split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        cls = getattr(module, cls_name)
        _cache[key] = cls(variant) if variant else cls()
    return _cache[key]


def parse_seat(key: str) -> tuple[str, str | None]:
    """A team seat, "cli" or "cli/variant" (a sim member's stream shape: "sim/gemini"), as
    (cli, variant); a one-line error for a CLI or a variant orch does not know."""
    cli, _, variant = str(key).strip().partition("/")
    adapter = get_adapter(cli)  # InvalidInput for an unknown CLI
    if cli in PSEUDO_ADAPTERS:
        raise InvalidInput(f"{cli!r} is orch's own pseudo-agent, not a team member's CLI")
    if variant and variant not in adapter.variants:
        shapes = ", ".join(adapter.variants) or "none"
        raise InvalidInput(f"{key!r}: {cli} has no variant {variant!r} (its variants: {shapes})")
    return cli, variant or None


def installed_clis() -> list[str]:
    """The real agent CLIs whose binaries are found on this machine."""
    found = []
    for name in REAL_CLIS:
        try:
            get_adapter(name).executable()
            found.append(name)
        except CliMissing:
            continue
    return found


def demo_panel() -> list[str]:
    """The offline demo's review panel: the sim speaking two real CLIs' shapes (`orch demo --panel`)."""
    from .sim import DEMO_PANEL

    return [f"{OFFLINE_CLI}/{fmt}" for fmt in DEMO_PANEL]


def demo_formats() -> dict[str, str]:
    """The offline demo team's stream shapes, role → real CLI format."""
    from .sim import DEMO_FORMATS

    return dict(DEMO_FORMATS)


__all__ = ["ADAPTERS", "REAL_CLIS", "OFFLINE_CLI", "demo_formats", "demo_panel", "installed_clis", "parse_seat", "Adapter", "Command", "Grant", "LaunchSpec", "StreamParser", "get_adapter", "summarize"]
