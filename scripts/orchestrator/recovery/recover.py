"""Denied agents back to work: decide by the ladder, resume the same CLI session, or block.

Detection is the monitor's (a run that ended with denials leaves the agent DENIED, its
denials in agent.stats). Here, called by every `orch step`: each denied call of the last
run goes through the ladder (ladder.py) under the policy; when every one is covered, the
command is rebuilt at the new rung, checked, and the same CLI session is resumed with a
prompt to retry exactly what was refused. Otherwise the agent becomes blocked-by-policy
with the exact call in pending_action, for `orch allow` (once) or `orch deny`. Every
change of permission goes to audit.jsonl and events.jsonl with the rule behind it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..core.lifecycle import LIVE_AGENT_STATES, transition
from ..adapters.base import Adapter, Grant, LaunchSpec
from ..core.errors import CorruptFile, InvalidInput, OrchError, PolicyError
from .ladder import GrantDecision, covers, describe, next_grant, user_grant
from ..core.models import (
    Agent, AgentState, AuditEntry, Denial, Event, EventKind, OneTimeGrant,
)
from ..safety.policy import Policy, action_hit, agent_roots, check_argv, load_policy, workspace_of
from ..safety.redaction import redact, redact_text
from ..store.sessions import SessionStore, file_lock, report_damaged
from ..runtime.workers import adapter_for, agent_grant, release_task, resume_agent

__all__ = [
    "RecoveryOutcome", "recover_denied_agents", "recover_agent", "expire_one_time_grants", "allow_pending",
    "deny_pending", "next_grant", "GrantDecision",
]

MAX_LISTED = 5


@dataclass
class RecoveryOutcome:
    """What recovery did for one agent (the coordinator prints it as one line)."""

    agent: str
    action: str  # escalated, blocked, restored, error
    reason: str
    rule: str = ""
    rung_before: str = ""
    rung_after: str = ""

    def __post_init__(self) -> None:
        # The reason quotes the denied call, which may carry a token: printed as redacted.
        self.reason = redact_text(self.reason)

    def __str__(self) -> str:
        rungs = f" {self.rung_before} → {self.rung_after}" if self.rung_after else ""
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.agent}: {self.action}{rungs}: {self.reason}{rule}"


# --------------------------------------------------------------------------- helpers


@contextmanager
def _recovery_lock(store: SessionStore, agent_id: str) -> Iterator[None]:
    # Its own lock, not the agent's: resume_agent takes the agent lock itself, and one
    # decision per agent at a time keeps two steps from escalating the same denial twice.
    with file_lock(store.agent_dir(agent_id) / ".recovery.lock"):
        yield


def _context(store: SessionStore, agent: Agent, policy: Policy) -> tuple[Path, list[Path]]:
    return Path(agent.cwd), agent_roots(policy, store.read_session(), agent.cwd)


def last_run_denials(agent: Agent) -> list[Denial]:
    """The distinct calls refused in the agent's last run (the newest denial if none is tagged)."""
    n = agent.runs[-1].n if agent.runs else None
    found = [d for d in agent.stats.denials if d.run == n] if n is not None else []
    if not found and agent.stats.denials:
        found = [agent.stats.denials[-1]]
    out, seen = [], set()
    for d in found:
        key = (d.tool, d.target)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _redacted(denial: Denial) -> Denial:
    return Denial.model_validate(redact(denial.model_dump(mode="json")))


def _printable(text: str) -> str:
    """Control characters written as escapes: a prompt is one argv element, never a NUL."""
    return "".join(ch if ch >= " " and ch != "\x7f" else f"\\x{ord(ch):02x}" for ch in text)


def _phrase(denials: list[Denial]) -> str:
    # Targets in backquotes: a command run into the surrounding prose could read as another.
    shown = [_printable(redact_text(f"{d.tool} `{d.target[:300]}`" if d.target else d.tool))
             for d in denials[:MAX_LISTED]]
    more = f" (and {len(denials) - MAX_LISTED} more)" if len(denials) > MAX_LISTED else ""
    return "; ".join(shown) + more


def retry_prompt(denials: list[Denial], grant: Grant) -> str:
    """The short prompt that resumes a recovered agent."""
    # Worded without "refused" or "without it": those words tell an agent to give the action up.
    return (f"orch: the permission check stopped: {_phrase(denials)}. orch's policy now lets this through "
            f"(permissions: {grant.name}). Retry exactly what was stopped, then continue your task where "
            f"you left off.")


def allow_prompt(denial: Denial) -> str:
    return (f"orch: the user allowed, this once, what the permission check stopped: {_phrase([denial])}. "
            f"Retry exactly that now, then continue your task where you left off.")


def deny_prompt(denial: Optional[Denial], policy: Policy) -> str:
    """Resume after `orch deny`; a forbidden call is named by its rule, never quoted."""
    if denial is None:
        what = "the action the permission check refused"
    elif policy.forbidden_hit(denial.target):
        what = f"the {denial.tool} call that was refused (it matches a forbidden rule of orch's policy)"
    else:
        what = _phrase([denial])
    return (f"orch: the user refused {what}. Do not retry it or work around it; continue your task "
            f"without it, and say in your final message what was left undone because of it.")


def _preview(adapter: Adapter, agent: Agent, grant: Grant, prompt: str, policy: Policy) -> None:
    """Build the resume command at the new rung and check it before anything runs."""
    spec = LaunchSpec(role=agent.role, prompt=prompt, cwd=Path(agent.cwd), grant=grant,
                      cli_session_id=agent.cli_session_id, resume=bool(agent.cli_session_id),
                      sim_format=agent.sim_format)
    command = adapter.build_command(spec)
    check_argv(command.argv, policy, dangerous_ok=grant.dangerous)


def _audit(store: SessionStore, agent: Agent, action: str, denial: Optional[Denial], before: str,
           after: Optional[str], rule: str) -> None:
    store.append_audit(AuditEntry(
        agent=agent.id, cli=agent.cli, role=agent.role, action=action,
        denied_tool=denial.tool if denial else "", denied_target=denial.target if denial else None,
        rung_before=before, rung_after=after, rule=rule,
    ))


def plan_grant(adapter: Adapter, current: Grant, denials: list[Denial], agent: Agent, policy: Policy,
               cwd: Path, roots: list[Path]) -> tuple[Grant, list[tuple[Denial, GrantDecision]],
                                                    Optional[tuple[Denial, GrantDecision]]]:
    """Fold every denied call through the ladder: the grant, its steps, and the first refusal."""
    grant, steps, refused = current, [], None
    for d in denials:
        if grant != current and covers(adapter, current, grant, d):
            continue
        decision = next_grant(adapter, grant, d, agent.role, policy, cwd=cwd, roots=roots)
        if decision.allowed:
            grant = decision.grant
            steps.append((d, decision))
        elif refused is None:
            refused = (d, decision)
    return grant, steps, refused


# --------------------------------------------------------------------------- the step's entry point


def recover_denied_agents(store: SessionStore, policy: Optional[Policy] = None,
                          agents: Optional[list[Agent]] = None) -> list[RecoveryOutcome]:
    """For every agent of the session: end spent one-time grants, then recover or block the denied.
    `agents`: the session's agents as the caller just read them (else they are read here); only
    those denied there are looked at again, under their lock (one denied since is the next step's)."""
    policy = policy or load_policy(workspace_of(store))
    agents = store.agents() if agents is None else agents
    outcomes = expire_one_time_grants(store, agents)
    for agent_id in [a.id for a in agents if a.state is AgentState.DENIED]:
        try:
            outcome = recover_agent(store, agent_id, policy)
        except CorruptFile as e:  # one damaged meta.json must not stop the others' recovery
            report_damaged(e)
            continue
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def recover_agent(store: SessionStore, agent_id: str, policy: Policy) -> Optional[RecoveryOutcome]:
    """Recover one DENIED agent (None when it is not denied)."""
    with _recovery_lock(store, agent_id):
        agent = store.read_agent(agent_id)
        if agent.state is not AgentState.DENIED:
            return None
        adapter = adapter_for(agent)
        current = agent_grant(agent)
        denials = last_run_denials(agent)
        cwd, roots = _context(store, agent, policy)
        if not denials:
            return _block(store, agent, None, "limits", "its run was denied but no refused call was recorded", policy)
        if agent.recoveries >= policy.limits.max_recoveries:
            return _block(store, agent, denials[0], policy.rule("limits.max_recoveries"),
                          f"{agent.recoveries} automatic recoveries already", policy)
        grant, steps, refused = plan_grant(adapter, current, denials, agent, policy, cwd, roots)
        if refused is not None:
            denial, decision = refused
            return _block(store, agent, denial, decision.rule, decision.reason, policy)
        if not steps:
            return _block(store, agent, denials[0], "ladder", "no rung covers what was refused", policy)
        prompt = retry_prompt(denials, grant)
        try:
            _preview(adapter, agent, grant, prompt, policy)
        except PolicyError as e:
            return _block(store, agent, denials[0], "safety.argv", e.message, policy)
        except OrchError as e:
            store.append_event(Event(kind=EventKind.NOTE, agent=agent.id, task=agent.current_task,
                                     reason=f"recovery could not rebuild the command: {e.message}"))
            return RecoveryOutcome(agent.id, "error", f"could not rebuild the command: {e.message}")
        return _escalate(store, agent, current, grant, steps, prompt)


def _escalate(store: SessionStore, agent: Agent, before: Grant, grant: Grant,
              steps: list[tuple[Denial, GrantDecision]], prompt: str) -> RecoveryOutcome:
    # Counted before the resume: a crash in between spends a recovery rather than
    # letting an agent climb without bound.
    with store.edit_agent(agent.id) as a:
        a.recoveries += 1
        recoveries = a.recoveries
    rung = before.name
    for denial, decision in steps:
        _audit(store, agent, "escalated", _redacted(denial), rung, decision.grant.name, decision.rule)
        rung = decision.grant.name
    rules = "; ".join(dict.fromkeys(d.rule for _, d in steps))
    reason = "; ".join(d.reason for _, d in steps)
    store.append_event(Event(
        kind=EventKind.RECOVERY, agent=agent.id, task=agent.current_task,
        reason=f"escalated {before.name} → {grant.name}: {reason}",
        data={"rung_before": before.name, "rung_after": grant.name, "rule": rules, "recoveries": recoveries,
              "steps": [{"denial": _redacted(d).model_dump(mode="json", exclude_none=True), "step": dec.step,
                         "rule": dec.rule, "rung_after": dec.grant.name} for d, dec in steps],
              "cli_session_id": agent.cli_session_id},
    ))
    resume_agent(store, agent.id, prompt, grant=grant, task_id=agent.current_task)
    return RecoveryOutcome(agent.id, "escalated", reason, rules, before.name, grant.name)


def _block(store: SessionStore, agent: Agent, denial: Optional[Denial], rule: str, reason: str,
           policy: Policy) -> RecoveryOutcome:
    pending = _redacted(denial) if denial else None
    _audit(store, agent, "blocked", pending, agent_grant(agent).name, None, rule)
    with store.change_agent(agent.id) as (a, events):  # the state and its events as one batch
        events.append(transition(a, AgentState.BLOCKED_BY_POLICY, redact_text(f"blocked by policy: {reason}")))
        a.pending_action = pending
        events.append(
            Event(kind=EventKind.POLICY_BLOCKED, agent=agent.id, task=agent.current_task,
                  reason=f"{reason} [{rule}]; decide with `orch allow {agent.id}` or `orch deny {agent.id}`",
                  data={"pending_action": pending.model_dump(mode="json", exclude_none=True) if pending else None,
                        "rule": rule, "rung": agent_grant(agent).name}))
    return RecoveryOutcome(agent.id, "blocked", reason, rule, agent_grant(agent).name)


# --------------------------------------------------------------------------- one-time grants


def expire_one_time_grants(store: SessionStore, agents: Optional[list[Agent]] = None) -> list[RecoveryOutcome]:
    """Return agents whose `orch allow` run has ended to the grant the policy gave them.
    `agents`: the session's agents as the caller just read them (else each is read here)."""
    outcomes = []
    for agent_id in [a.id for a in (store.agents() if agents is None else agents) if a.one_time_grant is not None]:
        with _recovery_lock(store, agent_id):
            with store.edit_agent(agent_id) as a:
                once = a.one_time_grant
                if once is None or a.state in LIVE_AGENT_STATES:
                    continue
                before = agent_grant(a).name
                a.permission, a.allowed_tools, a.dangerous = once.permission, list(once.allowed_tools), once.dangerous
                a.rung = agent_grant(a).name
                a.one_time_grant = None
                agent = a
            after = agent_grant(agent).name
            _audit(store, agent, "restored", None, before, after, "orch allow (once): run ended")
            store.append_event(Event(kind=EventKind.POLICY_DECISION, agent=agent_id, task=agent.current_task,
                                     reason=f"the one-time grant of run {once.run} ended: back to {after}",
                                     data={"decision": "expired", "rung_before": before, "rung_after": after}))
            outcomes.append(RecoveryOutcome(agent_id, "restored", "its one-time grant ended", "", before, after))
    return outcomes


# --------------------------------------------------------------------------- the user's decisions


def _require_blocked(agent: Agent, verb: str) -> None:
    if agent.state not in (AgentState.BLOCKED_BY_POLICY, AgentState.DENIED):
        hint = ""
        if agent.state is AgentState.FAILED and agent.current_task:  # a failure is continued, not allowed
            hint = f" — its task failed ({agent.state_reason[:160]}): `orch retry {agent.current_task}` continues it"
        raise InvalidInput(f"agent {agent.id} is {agent.state.value}, not blocked by policy: nothing to {verb}{hint}")


def _original(agent: Agent, pending: Denial) -> Denial:
    """The recorded call behind a (redacted) pending action, so the rule is built from the real one."""
    for d in reversed(agent.stats.denials):
        if d.tool == pending.tool and d.run == pending.run and (d.tool_id == pending.tool_id or not pending.tool_id):
            if _redacted(d).target == pending.target:
                return d
    return pending


def allow_pending(store: SessionStore, agent_id: str, policy: Optional[Policy] = None) -> tuple[Agent, GrantDecision]:
    """`orch allow`: resume once with the grant that covers the pending call (past the ceiling if need be)."""
    policy = policy or load_policy(workspace_of(store))
    with _recovery_lock(store, agent_id):
        agent = store.read_agent(agent_id)
        _require_blocked(agent, "allow")
        pending = agent.pending_action or (last_run_denials(agent)[:1] or [None])[0]
        if pending is None:
            raise InvalidInput(f"agent {agent_id} has no refused call to allow; `orch deny {agent_id}` continues it without")
        denial = _original(agent, pending)
        adapter = adapter_for(agent)
        current = agent_grant(agent)
        cwd, roots = _context(store, agent, policy)
        decision = user_grant(adapter, current, denial, agent.role, policy, cwd=cwd, roots=roots)
        if not decision.allowed:
            raise PolicyError(f"cannot allow {agent_id}: {redact_text(decision.reason)} [{decision.rule}]")
        prompt = allow_prompt(denial)
        _preview(adapter, agent, decision.grant, prompt, policy)
        with store.edit_agent(agent_id) as a:
            if a.one_time_grant is None:  # keep the policy's grant from before any earlier allow
                a.one_time_grant = OneTimeGrant(run=len(a.runs) + 1, permission=a.permission,
                                                allowed_tools=list(a.allowed_tools), dangerous=a.dangerous)
            else:
                a.one_time_grant.run = len(a.runs) + 1
            g = decision.grant
            a.permission, a.allowed_tools, a.dangerous, a.rung = g.level, list(g.tools), g.dangerous, g.name
            a.pending_action = None
        _audit(store, agent, "allowed", _redacted(denial), current.name, decision.grant.name, decision.rule)
        store.append_event(Event(
            kind=EventKind.POLICY_DECISION, agent=agent_id, task=agent.current_task,
            reason=f"allowed once by the user: {describe(_redacted(denial))} at {decision.grant.name}",
            data={"decision": "allow", "rung_before": current.name, "rung_after": decision.grant.name,
                  "rule": decision.rule, "denial": _redacted(denial).model_dump(mode="json", exclude_none=True)},
        ))
        # grant=None: the one-time grant is already on the agent, past the ceiling the
        # launch gate would cap it at; it ends with this run (expire_one_time_grants).
        return resume_agent(store, agent_id, prompt, task_id=agent.current_task), decision


def deny_pending(store: SessionStore, agent_id: str, *, retire: bool = False,
                 policy: Optional[Policy] = None) -> Agent:
    """`orch deny`: tell the agent the call is refused and let it go on without, or retire it."""
    policy = policy or load_policy(workspace_of(store))
    with _recovery_lock(store, agent_id):
        agent = store.read_agent(agent_id)
        _require_blocked(agent, "deny")
        pending = agent.pending_action or (last_run_denials(agent)[:1] or [None])[0]
        pending = _redacted(pending) if pending else None
        _audit(store, agent, "denied", pending, agent_grant(agent).name, agent_grant(agent).name, "orch deny (user)")
        what = describe(pending) if pending and not action_hit(policy, pending.tool, pending.target) else (
            pending.tool if pending else "the refused call")
        with store.change_agent(agent_id) as (a, events):  # the decision, the state and the meta as one
            a.pending_action = None
            events.append(Event(
                kind=EventKind.POLICY_DECISION, agent=agent_id, task=a.current_task,
                reason=f"denied by the user: {what}" + ("; agent retired" if retire else "; it continues without it"),
                data={"decision": "deny", "retire": retire, "rung": agent_grant(a).name,
                      "denial": pending.model_dump(mode="json", exclude_none=True) if pending else None},
            ))
            if retire:
                events.append(transition(a, AgentState.DONE, "retired: the user refused what it asked for"))
            agent = a
        if retire:
            if agent.current_task:
                release_task(store, agent.current_task,
                             "its agent was retired after the user refused what it asked for")
            return store.read_agent(agent_id)
        prompt = deny_prompt(pending, policy)
        _preview(adapter_for(agent), agent, agent_grant(agent), prompt, policy)
        return resume_agent(store, agent_id, prompt, task_id=agent.current_task)
