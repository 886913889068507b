"""<state root>/serve.json: the address of the running dashboard, for links in notifications."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record_serving(root: Path, url: str) -> None:
    """Note that `orch serve` (this process) answers at url (no token: see messages.dashboard_link)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".serve.json.{os.getpid()}"
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
        os.replace(tmp, root / "serve.json")
    except OSError:
        pass


def forget_serving(root: Path) -> None:
    """Remove serve.json if it is this process's."""
    path = root / "serve.json"
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
