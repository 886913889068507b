"""`[notify]` in the policy: where notifications go and which happenings send one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NotifyOn = Literal["blocked_by_policy", "budget", "limit_parked", "failed", "complete", "stalled"]
ALL_EVENTS: tuple[str, ...] = ("blocked_by_policy", "budget", "limit_parked", "failed", "complete", "stalled")
URLS_ENV = "ORCH_NOTIFY_URLS"  # space- or comma-separated Apprise URLs, added to the policy's


class NotifyPolicy(BaseModel):
    """Apprise URLs (they hold tokens: orch never prints or logs them unredacted) and the events to send."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=list)
    on: list[NotifyOn] = Field(default_factory=lambda: list(ALL_EVENTS))
    give_up_after_seconds: float = Field(600, gt=0, le=86400)  # a message not sent by then is dropped
