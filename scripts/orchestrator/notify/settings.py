"""`[notify]` in the policy: where notifications go and which happenings send one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NotifyOn = Literal["blocked_by_policy", "budget", "limit_parked", "failed", "complete", "stalled"]
ALL_EVENTS: tuple[str, ...] = ("blocked_by_policy", "budget", "limit_parked", "failed", "complete", "stalled")
URLS_ENV = "ORCH_NOTIFY_URLS"  # space- or comma-separated Apprise URLs, added to the policy's


class NotifyPolicy(BaseModel):
    """Apprise URLs (they hold tokens: orch never prints or logs them unredacted) and the events to send."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # as strict as the policy

    urls: list[str] = Field(default_factory=list)
    on: list[NotifyOn] = Field(default_factory=lambda: list(ALL_EVENTS))
    give_up_after_seconds: float = Field(600, gt=0, le=86400)  # a message not sent by then is dropped

_TABLES: dict[str, tuple[int, object]] = {}  # path -> (mtime, its [notify] table): one parse per change


def load_notify_settings(root) -> NotifyPolicy:
    """Only the `[notify]` table of the workspace's policy (defaults, then the user's file).

    Read on every notification, so it skips the rest of the policy (its rules compile
    regular expressions): a step that notifies must stay fast. An unreadable or invalid
    file gives the defaults (no URL): `orch policy check` reports the file's problem.
    """
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    merged: dict = {}
    for path in (Path(__file__).resolve().parents[1] / "safety" / "defaults" / "policy.toml",
                 Path(root) / "policy.toml"):
        try:
            stamp = path.stat().st_mtime_ns
            cached = _TABLES.get(str(path))
            if cached is None or cached[0] != stamp:
                with open(path, "rb") as f:
                    cached = (stamp, tomllib.load(f).get("notify"))
                _TABLES[str(path)] = cached
            table = cached[1]
        except (OSError, ValueError):
            continue
        if isinstance(table, dict):
            merged.update(table)
    try:
        return NotifyPolicy.model_validate(merged)
    except ValueError:
        return NotifyPolicy()
