"""What the CLIs print when their credentials are missing or expired.

claude: "Not logged in · Please run /login", "Invalid API key · Please run /login";
codex: "Not logged in" / "run `codex login`", a 401 from the API; gemini: "Please set an
Auth method" / "GEMINI_API_KEY". A run that fails with these words cannot succeed by being
retried: the user logs in, or picks another CLI.
"""

from __future__ import annotations

import re

NOT_LOGGED_IN = re.compile(
    r"not logged in|please run /login|invalid api key|please log ?in|login required|run `?codex login|"
    r"authentication (?:failed|required)|unauthori[sz]ed|\b401\b|no credentials|credentials? (?:not found|expired)|"
    r"set an auth method|GEMINI_API_KEY|must (?:be )?(?:logged|signed) in", re.I)


def says_not_logged_in(text: str) -> bool:
    """True when a CLI's failure says it is not logged in."""
    return bool(NOT_LOGGED_IN.search(text or ""))
