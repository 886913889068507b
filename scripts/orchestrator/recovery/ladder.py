"""The permission ladder: for one denied call, the narrowest grant that covers it, or why not.

Rungs, lowest first: a narrow tool rule at the current level (claude `Bash(npm test)`,
gemini `run_shell_command(npm test)`), the lowest level whose rung lets the call through
(read → edit → full), and at the top the CLI's bypass flags. A step is refused when the
call matches a forbidden rule or leaves the allowed directories, when it would pass the
role's ceiling, or when it needs the bypass flags and the policy has not enabled them.
Pure: it reads the adapter, the grant, the denial and the policy, and changes nothing.
What an agent says never enters here: only its denied call does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..adapters.base import Adapter, Grant
from ..core.models import Denial, Permission, Role
from ..safety.policy import Policy, RuleHit, action_hit, cap_grant, narrow_rule_hit, shell_tools

_LEVELS = (Permission.READ, Permission.EDIT, Permission.FULL)


@dataclass(frozen=True)
class GrantDecision:
    """Either a new grant and the rule that allowed it, or a refusal and the rule that forbade it."""

    grant: Optional[Grant]
    rule: str
    reason: str
    step: str = ""  # narrow, level, level+narrow, dangerous (empty when refused)

    @property
    def allowed(self) -> bool:
        return self.grant is not None


def _refuse(rule: str, reason: str) -> GrantDecision:
    return GrantDecision(None, rule, reason)


def _because(hit: Optional[RuleHit]) -> str:
    """Why no narrow rule could stand in for the level, for a refusal's reason."""
    return f" (no narrow rule: {hit.why} [{hit.rule}])" if hit is not None else ""


def level_above(level: Permission) -> Optional[Permission]:
    i = _LEVELS.index(level)
    return _LEVELS[i + 1] if i + 1 < len(_LEVELS) else None


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def describe(denial: Denial) -> str:
    """`Bash npm test` — the denied call in one short phrase."""
    return f"{denial.tool} {denial.target}".strip() if denial.target else denial.tool


def next_grant(adapter: Adapter, current: Grant, denial: Denial, role: Role, policy: Policy, *,
               cwd: Optional[Path] = None, roots: Sequence[Path] = ()) -> GrantDecision:
    """The next rung that covers the denied call, within the policy, or the rule that refuses it.

    With cwd and roots (the allowed directories), deletes, .env files and file tools aimed
    outside them are refused too.
    """
    role = Role(role)
    ceiling = policy.ceiling(role)
    role_rule = policy.rule(f"roles.{role.value}.max_level")
    what = describe(denial)
    hit = action_hit(policy, denial.tool, denial.target, cwd=cwd, roots=roots)
    if hit:
        return _refuse(str(hit), f"{what} is forbidden: {hit.why}" if hit.why else f"{what} is forbidden")
    # A grant from an older policy may sit above today's ceiling: climb from the capped one.
    base = cap_grant(policy, role, current)
    needed = adapter.level_needed(denial)
    command = denial.target if denial.tool in shell_tools() else None
    narrow = adapter.narrow_tool_for(denial)
    why_not = narrow_rule_hit(policy, narrow, command, cwd=cwd, roots=roots) if narrow is not None else None
    if why_not is not None:
        narrow = None  # too broad, forbidden or reaching outside as a rule: only a whole level could cover it
        if why_not.rule == "args.outside":
            needed = Permission.FULL  # edit is the workspace: a path outside it needs the top level
    if narrow is not None and narrow not in base.tools:
        tools = base.tools + (narrow,)
        pre_approved = None
        if command and base.level.rank < needed.rank:
            # Below the level a shell command needs, only an [allowed] rule lets it through,
            # and only when the arguments just read and the CLI's rule holds exactly them.
            pre_approved, why_not = policy.allowed_check(command, cwd=cwd, roots=roots)
            if pre_approved is not None and not adapter.narrow_rules_exact:
                why_not = RuleHit("ladder.prefix-rule", f"{adapter.name} matches {narrow} as a prefix, so it would "
                                                        f"also let `{command}` through with any further arguments")
                pre_approved = None
        if pre_approved or base.level.rank >= needed.rank:
            rule = str(pre_approved) if pre_approved else role_rule
            return GrantDecision(Grant(base.level, tools, base.dangerous), rule,
                                 f"{what}: narrow rule {narrow} at {base.level.value}", "narrow")
        if needed.rank > ceiling.rank:
            return _refuse(role_rule, f"{what} needs {needed.value} (with {narrow}); "
                                      f"{_article(role.value)} may reach {ceiling.value}{_because(why_not)}")
        return GrantDecision(Grant(needed, tools, base.dangerous and needed is Permission.FULL), role_rule,
                             f"{what}: {needed.value} with narrow rule {narrow}", "level+narrow")
    # No narrow rule helps: the lowest level that covers the call, or one above the rung
    # that was just refused when the CLI's own verdict says this level should have sufficed.
    target = needed if needed.rank > base.level.rank else level_above(base.level)
    if target is None:
        if base.dangerous:
            return _refuse("ladder.top", f"{what} was refused at the top rung ({base.name})")
        if not policy.dangerous_allowed(role):
            return _refuse(policy.rule(f"roles.{role.value}.dangerous"),
                           f"{what} needs the CLI's bypass flags, which the policy does not enable for {_article(role.value)}")
        return GrantDecision(Grant(Permission.FULL, base.tools, True), policy.rule(f"roles.{role.value}.dangerous"),
                             f"{what}: bypass flags", "dangerous")
    if target.rank > ceiling.rank:
        return _refuse(role_rule, f"{what} needs {target.value}; {_article(role.value)} may reach "
                                  f"{ceiling.value}{_because(why_not)}")
    return GrantDecision(Grant(target, base.tools, base.dangerous and target is Permission.FULL), role_rule,
                         f"{what}: {base.level.value} → {target.value}", "level")


def covers(adapter: Adapter, before: Grant, after: Grant, denial: Denial) -> bool:
    """True when the step from `before` to `after` already lets this denied call through."""
    narrow = adapter.narrow_tool_for(denial)
    if narrow and narrow in after.tools and narrow not in before.tools:
        return True
    needed = adapter.level_needed(denial)
    return after.level.rank > before.level.rank and after.level.rank >= needed.rank


def user_grant(adapter: Adapter, current: Grant, denial: Denial, role: Role, policy: Policy, *,
               cwd: Optional[Path] = None, roots: Sequence[Path] = ()) -> GrantDecision:
    """`orch allow`: the grant that covers the pending call, past the role's ceiling if need be.

    The user may lift a ceiling for one run; forbidden rules, confinement and the bypass
    flags stay as the policy says (only editing the policy changes those).
    """
    role = Role(role)
    what = describe(denial)
    hit = action_hit(policy, denial.tool, denial.target, cwd=cwd, roots=roots)
    if hit:
        return _refuse(str(hit), f"{what} is forbidden by the policy ({hit.why or hit.rule}); "
                                 f"only editing the policy can lift it")
    unbounded = policy.model_copy(deep=True)
    unbounded._sources, unbounded._files = policy._sources, policy._files
    unbounded.roles[role].max_level = Permission.FULL
    unbounded.roles[role].dangerous = policy.dangerous_allowed(role)  # lifting the ceiling lifts no bypass
    decision = next_grant(adapter, current, denial, role, unbounded, cwd=cwd, roots=roots)
    if not decision.allowed:
        return decision
    return GrantDecision(decision.grant, f"orch allow (user), beyond {policy.rule(f'roles.{role.value}.max_level')}"
                         if decision.grant.level.rank > policy.ceiling(role).rank else "orch allow (user)",
                         decision.reason, decision.step)
