"""The kernel's write ceiling of an agent's run, derived from its grant and where it works.

At the read level a run may write nothing of the workspace; at edit and above, its own
worktree when it has one (a git session), else the session's workspace, plus the policy's
extra folders. Its CLI's state folders and a private temp folder are added where the run
executes (runtime/ceiling.py). The ceiling follows the grant of each run, not only the
role's maximum: an implementer started at read is held to read until the ladder lifts it.

Agents' git: a linked worktree keeps its index and HEAD in the main repository's
`.git/worktrees/<name>/` and its objects and refs in the shared `.git`; none of that is in
the ceiling. An agent's own `git status`, `diff`, `log` and `show` work; its `git add`,
`commit` and `stash` are refused (index.lock: permission denied), as opening those folders
would let it rewrite the integration branch, other agents' branches, existing objects, or
the `commondir` pointer orch's own git follows. orch commits each agent's work itself when
its task ends (engine/integration.py).
"""

from __future__ import annotations

from typing import Optional

from ..adapters.base import Grant
from ..core.models import Agent, Permission
from ..runtime.ceiling import Ceiling
from ..store.sessions import SessionStore
from .policy import agent_roots, load_policy, require_kernel_confinement, workspace_of


def run_ceiling(store: SessionStore, agent: Agent, grant: Grant) -> Optional[Ceiling]:
    """The ceiling of the agent's next run at this grant; None when the policy turns kernel
    confinement off. PolicyError when the policy requires it and this kernel has none."""
    from ..adapters import get_adapter

    policy = load_policy(workspace_of(store))
    if not policy.safety.kernel_confinement:
        return None
    require_kernel_confinement(policy)
    roots = agent_roots(policy, store.read_session(), agent.cwd)
    adapter = get_adapter(agent.cli, agent.sim_format)
    ports = tuple(policy.safety.tcp_connect_ports) or None
    return Ceiling(cli=agent.cli, variant=agent.sim_format, read_only=grant.level is Permission.READ,
                   roots=tuple(str(r) for r in roots), own_sandbox=adapter.sandboxes_itself(grant),
                   required=policy.safety.require_kernel_confinement, connect_ports=ports)


def describe(ceiling: Optional[Ceiling]) -> str:
    """One line for the run's launch event."""
    if ceiling is None:
        return "none: [safety] kernel_confinement = false"
    return ceiling.describe()


__all__ = ["run_ceiling", "describe"]
