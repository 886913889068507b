"""The workspace's policy for the spend checks, parsed once per change of the policy file.

A step consults the budget and the caps; re-validating the whole policy (its rules
compile regular expressions) for each costs ~9 ms, so the parsed policy is kept while the
file's size and modification time stay the same.
"""

from __future__ import annotations

from typing import Any

from ..store.sessions import SessionStore

_CACHE: dict[str, tuple[Any, Any]] = {}


def current_policy(store: SessionStore):
    """load_policy(workspace_of(store)), reused while the policy file is unchanged."""
    from ..safety.policy import load_policy, workspace_of

    ws = workspace_of(store)
    path = ws.policy_path
    try:
        st = path.stat()
        stamp: Any = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        stamp = None
    cached = _CACHE.get(str(path))
    if cached is not None and cached[0] == stamp:  # None == None: still no file, still the defaults
        return cached[1]
    policy = load_policy(ws)
    _CACHE[str(path)] = (stamp, policy)
    return policy
