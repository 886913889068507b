"""What the CLIs print when their credentials are missing, wrong or expired.

claude: "Not logged in · Please run /login", "Invalid API key · Please run /login";
codex: "Not logged in" / "run `codex login`", a 401 from the API; gemini: "Please set an
Auth method" / "GEMINI_API_KEY"; opencode: the provider's words ("Incorrect API key
provided: …", "invalid x-api-key") and the AI SDK's "… API key is missing"; Qwen Code
"[API Error: 401 …]", "Missing API key for OpenAI-compatible auth"; Copilot "Authentication
failed with provider … (HTTP 401)". The providers' own wording ("Incorrect API key
provided", `invalid_api_key`, Anthropic's `authentication_error` / "invalid x-api-key") is
recognised without the status number, which a CLI may not print. A run that fails with
these words cannot succeed by being retried: the user logs in, or picks another CLI.
"""

from __future__ import annotations

import re

NOT_LOGGED_IN = re.compile(
    r"not logged in|please run /login|invalid api key|please log ?in|login required|run `?codex login|"
    r"authentication (?:failed|required)|unauthori[sz]ed|\b401\b|no credentials|credentials? (?:not found|expired)|"
    r"set an auth method|GEMINI_API_KEY|must (?:be )?(?:logged|signed) in|"
    # the providers' words for a wrong or missing key, with or without the number
    r"incorrect api key|invalid[ _-]?x-api-key|invalid_api_key|authentication_error|invalid authentication|"
    r"api key (?:is )?(?:missing|required|not (?:found|valid|configured))|missing api key|no api key|"
    r"no authentication information", re.I)


def says_not_logged_in(text: str) -> bool:
    """True when a CLI's failure says it is not logged in."""
    return bool(NOT_LOGGED_IN.search(text or ""))
