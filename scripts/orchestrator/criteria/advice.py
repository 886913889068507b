"""What to run next, from any state of a session: the one place that knows what each
command does there.

Every "Next:" orch prints — `orch check`, `orch wait`'s digest, `orch step` and `orch retry`
when they are done, `orch run`/`orch resume` when they stop, the Stop hook, notifications —
comes from here, and each piece of advice is a command that works when it is run as
printed, from the state it was printed in, and leads home: the session completes, or one
person decides (allow or deny an action, raise a budget, allow more rounds, retry or give
up failed work). The rules, in order:

    stopped   the failed tasks' `orch retry T`, then `orch resume ID`; at the round limit
              `orch resume ID --max-rounds N+1` (plain resume refuses there)
    paused    `orch budget --raise …` (a person decides how much)
    active    a person's decision first (blocked by policy: allow/deny; failed work the
              coordinator will not retry by itself: retry or give up), then `orch step` when
              the next step has work it can do now (races and review panels included:
              `race_work`, the seats of `seat_member`), `orch wait` while agents work or until a
              race's time limit, a usage limit's reset or a back-off's end, `orch report` once
              the criteria hold

Pure and free of pydantic, over the stored form (session.json and the agents' meta.json),
so `orch check`'s fast read path advises exactly what the full commands do.
"""

from __future__ import annotations

from datetime import datetime, timezone

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

LIVE_STATES = ("starting", "running", "silent")
VERIFIER = "verifier"  # the verification gate's pseudo-agent (engine/verification.py)

#: The role whose agents a task kind is meant for (a new hire for it has this role).
HOME_ROLE = {"spec": "architect", "implement": "implementer", "fix": "implementer", "review": "reviewer",
             "verify": "reviewer", "merge": "implementer"}

#: Agents in these states hold a place in the team: a new one is hired only when fewer hold one.
#: Parked agents are not working (a task handed on from one may hire past the team's size);
#: failed, aborted and retired (done) agents are never given work again, so they free theirs.
SLOT_STATES = ("starting", "running", "silent", "idle", "denied", "blocked-by-policy")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso[:-1] + "+00:00" if iso.endswith("Z") else iso)


def clock(iso: str) -> str:
    """14:05:00 UTC, from a stored time."""
    return iso[11:19] + " UTC"


# ---------------------------------------------------------------- stopped sessions
def at_round_limit(session: dict[str, Any]) -> bool:
    """A stopped session that stopped because it used its last allowed round."""
    return (session.get("state") == "stopped" and session.get("round", 0) >= session.get("max_rounds", 0)
            and (session.get("stop_reason") or "").startswith("round limit"))


def more_rounds(session: dict[str, Any]) -> str:
    """The command that continues a session past its round limit (one more round)."""
    n = max(session.get("round", 0), session.get("max_rounds", 0)) + 1
    return f"orch resume {session['id']} --max-rounds {n}"


def retry_step(t: dict[str, Any], stop_reason: str = "", agent: Optional[str] = None) -> str:
    """`orch retry T   # why`: a failed task, its last words, and what else a person may do."""
    last = (t.get("result") or "no reason recorded").splitlines()[0][:160]
    # The coordinator's login stop names the task first (continuation.login_stop_reason).
    login = " — log in to its CLI first" if stop_reason.startswith(f"{t['id']} (") and \
        " is not logged in — " in stop_reason else ""
    other = (f"or `orch abort {agent}` to give it up" if t.get("kind") == "adhoc" and agent
             else "add --cli OTHER to run it on another CLI")
    return (f"orch retry {t['id']}   # {t['title']} failed {t.get('attempts', 0)} time(s), last: {last}{login} "
            f"({other})")


def continue_steps(session: dict[str, Any]) -> list[str]:
    """The commands that continue a stopped session (most direct first)."""
    if session.get("state") != "stopped":
        return []
    sid = session["id"]
    if at_round_limit(session):
        return [f"{more_rounds(session)}   # the round limit ({session.get('max_rounds')}) was reached with work "
                f"left: allow another round (a person decides how many; or take what is done: orch land {sid} --anyway)"]
    steps = [retry_step(t, session.get("stop_reason") or "", t.get("agent"))
             for t in session.get("tasks") or [] if t["state"] == "failed"]
    steps.append(f"orch resume {sid}   # re-queue failed work and carry on under the autopilot")
    return steps


# ---------------------------------------------------------------- active sessions
def _key(cli: str, variant: Optional[str]) -> str:
    return f"{cli}/{variant}" if variant else cli


def _team_key(session: dict[str, Any], role: str) -> str:
    team = session.get("team") or {}
    cli = {"architect": team.get("architect"), "reviewer": team.get("reviewer")}.get(role) or team.get("implementer")
    variant = (team.get("sim_formats") or {}).get(role)
    return _key(cli or "", variant if cli == "sim" else None)


def parked_keys(agents: list[dict[str, Any]], at: datetime) -> set[str]:
    """The CLIs (cli or cli/variant) parked by a limit that has not reset yet."""
    return {_key(a["cli"], a.get("sim_format")) for a in agents
            if a["state"] == "parked" and a.get("resume_at") and ts(a["resume_at"]) > at}


def due(t: dict[str, Any], at: datetime) -> bool:
    """A queued task whose back-off, if any, is over."""
    return not t.get("retry_at") or ts(t["retry_at"]) <= at


WRITING_KINDS = ("spec", "implement", "fix", "merge")
RERUNNABLE = ("idle", "failed", "done", "aborted")  # a hand-launched agent runs its task again from these


def is_live(agent: dict[str, Any]) -> bool:
    """A process that may still write: a live state and a recorded run (an agent written but never
    started — orch killed in between — is the next step's to start, not something to wait for)."""
    return agent["state"] in LIVE_STATES and bool(agent.get("runs"))


def step_work(session: dict[str, Any], agents: list[dict[str, Any]], at: datetime, on_usage_limit: str = "wait",
              damaged: Sequence[str] = ()) -> list[str]:
    """What `orch step` would do now (empty: a step now would change nothing) — by the same rules
    as engine/coordinator.py's step, which is what `orch wait` relies on to sleep (engine/quiet.py)
    rather than return to a conductor whose next step would do nothing: keep the two in step.

    `on_usage_limit`: the policy's `[limits]` setting (with "fallback" a parked agent's task goes to
    another CLI at once); `damaged`: agents whose meta.json cannot be read (the step leaves their
    tasks alone)."""
    if session.get("state") != "active":
        return []
    by_id = {a["id"]: a for a in agents}
    live = any(is_live(a) for a in agents)
    tasks = session.get("tasks") or []
    raced = open_races(session)  # a raced task runs with no agent: its candidates build it
    held = held_agents(session)
    busy = {t.get("agent") for t in tasks if t["state"] == "running"}
    # In a shared folder writers take turns: a writer at work (or waiting out a limit) holds the turn.
    turn_taken = (session.get("git") or {}).get("mode") == "shared" and any(
        t["state"] == "running" and t["kind"] in WRITING_KINDS
        and ((by_id.get(t.get("agent") or "") or {}).get("state") == "parked" or is_live(by_id.get(t.get("agent") or "")
                                                                                      or {"state": ""}))
        for t in tasks)
    work: list[str] = []
    if any(a["state"] == "denied" for a in agents):
        work.append("recover denied agents")
    if any(a["state"] == "parked" and a.get("resume_at") and ts(a["resume_at"]) <= at for a in agents):
        work.append("the usage limit has reset: resume the parked agents")
    finished = [t["id"] for t in tasks if t["state"] == "running" and t["id"] not in raced
                and t.get("agent") not in damaged
                and not is_live(by_id.get(t.get("agent") or "") or {"state": ""})
                and (by_id.get(t.get("agent") or "") or {}).get("state") not in ("parked", "denied", "blocked-by-policy")]
    if finished:
        work.append(f"collect {', '.join(finished[:3])}")
    parked = parked_keys(agents, at)
    if on_usage_limit == "fallback":
        handed = [t["id"] for t in tasks if t["state"] == "running" and not t.get("race")
                  and (by_id.get(t.get("agent") or "") or {}).get("state") == "parked"
                  and (not t.get("seat") or (t["kind"] == "verify" and other_member(session, agents, t["seat"], at)))]
        if handed:
            work.append(f"hand {', '.join(handed[:3])} to another CLI (the policy's on_usage_limit = fallback)")
    idle_parked = [a["id"] for a in agents if a["state"] == "idle" and _key(a["cli"], a.get("sim_format")) in parked]
    if idle_parked:
        work.append(f"park {', '.join(idle_parked[:3])} with its CLI")
    work += race_work(session, by_id, at)
    work += verification_work(session, by_id)
    ready = []
    for t in tasks:
        if t["state"] != "queued" or not due(t, at):
            continue
        if t["kind"] == "adhoc":  # `orch retry` of an ad-hoc task: its own agent runs it again, once free
            own = by_id.get(t.get("agent") or "")
            if own is None or (own["state"] in RERUNNABLE and own["id"] not in busy):
                ready.append(t["id"])
            continue
        if (live and t.get("waiting")) or (turn_taken and t["kind"] in WRITING_KINDS):
            continue  # held back by a cap or by writers taking turns: a running agent frees it
        if t.get("seat"):  # a panel member's task or a race candidate: only its seat's CLI takes it
            if t["seat"] in parked:
                continue  # its CLI waits out a limit (the parked advice says until when)
            member = seat_member(session, agents, t["seat"])
            if member is not None and member["id"] in (session.get("benched") or {}) \
                    and not other_member(session, agents, t["seat"], at):
                continue  # its member left the panel, and no other member can take it yet
        elif session.get("coordinated") and _team_key(session, HOME_ROLE[t["kind"]]) in parked \
                and not t.get("cli") and not t.get("avoid_clis"):
            continue  # its CLI waits out a limit (the parked advice says until when)
        ready.append(t["id"])
    if ready:
        work.append(f"start {', '.join(ready[:3])}")
    open_tasks = [t for t in tasks if t["state"] in ("queued", "running", "failed")]
    blockers_open = any(b["state"] != "verified" for b in session.get("blockers") or [])
    rounds = session.get("rounds") or []
    complete = bool(rounds) and rounds[-1].get("ended_at") is not None and not blockers_open
    if session.get("coordinated") and not open_tasks and not complete:
        work.append("the current phase is over: plan the next")
    work_left = bool(open_tasks) or blockers_open or (session.get("coordinated") and not complete)
    holding = {t.get("agent") for t in open_tasks}
    benched = session.get("benched") or {}  # a race's losers, a panel member that left: no more work
    retire = [a["id"] for a in agents if a["state"] in ("idle", "failed", "parked") and a["id"] not in holding
              and a["id"] not in held  # a race's candidate waits for its race's verdict
              and not (a["state"] == "failed" and not session.get("coordinated"))
              and not (work_left and a["state"] in ("idle", "parked") and a["id"] not in benched)]
    if retire:
        work.append(f"retire {', '.join(retire[:3])} (nothing left for it)")
    return work


def verification_work(session: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[str]:
    """What the step's verification gate (engine/verification.py) would do now: collect and judge
    a run the verifier finished, start one decided but not started, or decide one on a new tip."""
    v, git = session.get("verification"), session.get("git") or {}
    if not v or not v.get("enabled") or git.get("mode") != "worktrees" or not session.get("coordinated"):
        return []
    verifier = by_id.get(VERIFIER) or {"state": ""}
    runs = v.get("runs") or []
    if any(r["state"] == "finished" and not r.get("judged") for r in runs):
        return ["judge the project's tests"]
    active = next((r for r in runs if r["state"] in ("pending", "running")), None)
    if active is not None:
        if is_live(verifier):
            return []
        return ["collect the project's tests" if active["state"] == "running" else "start the project's tests"]
    if v.get("bisect"):
        return ["bisect the merges that broke the tests"]
    tested = [r for r in runs if r["state"] == "finished" and r.get("purpose") in ("base", "tip")]
    if not any(r.get("purpose") == "base" for r in tested) or not tested or tested[-1].get("commit") != tip_of(git):
        return ["run the project's tests on the integration branch's tip"]
    return []


# ---------------------------------------------------------------- races and review panels
RACE_OPEN = ("running", "testing", "reviewing", "decided")
TASK_ENDED = ("done", "cancelled", "failed")


def open_races(session: dict[str, Any]) -> set[str]:
    """The raced tasks whose race is still deciding (engine/race.open_race)."""
    return {r["task"] for r in session.get("races") or [] if r["state"] in RACE_OPEN}


def held_agents(session: dict[str, Any]) -> set[str]:
    """Every candidate of an open race: it takes no other task and is not retired (engine/race.held)."""
    return {c["agent"] for r in session.get("races") or [] if r["state"] in RACE_OPEN
            for c in r.get("candidates") or [] if c.get("agent")}


def race_work(session: dict[str, Any], by_id: dict[str, dict[str, Any]], at: datetime) -> list[str]:
    """What the step's races (engine/race.Races.step and enforce_deadlines) would do now: test the
    candidates once all have ended, stop the ones still building at the time limit, judge once the
    tests (and the reviews of candidates they tied) are in, merge a decided race's winner."""
    tasks = {t["id"]: t for t in session.get("tasks") or []}
    runs = {r["id"]: r for r in (session.get("verification") or {}).get("runs") or []}
    work = []
    for race in session.get("races") or []:
        cands, name = race.get("candidates") or [], race["task"]
        if race["state"] == "running":
            ctasks = [tasks.get(c["task"]) for c in cands]
            if all(t is None or t["state"] in TASK_ENDED for t in ctasks):
                work.append(f"test race {name}'s candidates (every one has ended)")
            elif ts(race["deadline"]) <= at and any(
                    t["state"] == "queued" or (by_id.get(t.get("agent") or "") or {}).get("state") == "parked"
                    or (is_live(by_id.get(t.get("agent") or "") or {"state": ""})
                        and by_id[t["agent"]].get("current_task") == t["id"])
                    for t in ctasks if t is not None and t["state"] in ("queued", "running")):
                work.append(f"race {name}'s time limit has passed: stop its candidates still building")
        elif race["state"] == "testing" and all(
                c.get("tests") or not c.get("run") or runs.get(c["run"]) is None
                or runs[c["run"]]["state"] in ("finished", "error") for c in cands):
            work.append(f"judge race {name} by its candidates' tests")
        elif race["state"] == "reviewing" and all(
                (tasks.get(r) or {"state": "done"})["state"] in TASK_ENDED for c in cands for r in c.get("reviews") or []):
            work.append(f"judge race {name} by its candidates' tests and reviews")
        elif race["state"] == "decided":
            work.append(f"merge the winner of race {name} ({race.get('winner')})")
    return work


def seat_member(session: dict[str, Any], agents: list[dict[str, Any]], seat: str) -> Optional[dict[str, Any]]:
    """The reviewer that holds a panel seat (engine/panel.member_agent)."""
    mine = sorted((a for a in agents if a["role"] == "reviewer" and _key(a["cli"], a.get("sim_format")) == seat),
                  key=lambda a: ts(a["created_at"]))
    benched = session.get("benched") or {}
    gone = next((a for a in mine if a["id"] in benched), None)
    if gone is not None:
        return gone
    holding = [a for a in mine if a["state"] in SLOT_STATES or a["state"] == "parked"]
    return holding[-1] if holding else None


def other_member(session: dict[str, Any], agents: list[dict[str, Any]], seat: str, at: datetime) -> bool:
    """Another panel member can take a task now (engine/panel.another_member, its budget aside:
    the step reads the policy's, and a member over it is handled there)."""
    parked = parked_keys(agents, at)
    for other in (session.get("team") or {}).get("reviewers") or []:
        member = seat_member(session, agents, other)
        if other != seat and other not in parked and (member is None or (
                member["id"] not in (session.get("benched") or {}) and member["state"] != "parked")):
            return True
    return False


def tip_of(git: Optional[dict[str, Any]]) -> str:
    """The integration branch's tip as orch recorded it: the last merge's commit, else the base."""
    git = git or {}
    return next((m["commit"] for m in reversed(git.get("merges") or []) if m.get("commit")), git.get("base") or "")


def quiet_reason(session: dict[str, Any], agents: list[dict[str, Any]], verdict: dict[str, Any], at: datetime,
                 on_usage_limit: str = "wait", due_ahead: bool = False,
                 damaged: Sequence[str] = ()) -> Optional[tuple[str, str, str]]:
    """Why a waiter with no live agent returns now — (why: done, decision or work; the reason in
    words; the command that acts on it) — or None: it sleeps until a due time or an event.
    `verdict`: the criteria (criteria/completion.judge); `due_ahead`: a clock-driven step lies
    ahead, so a session with nothing to do now is waiting for it, not stuck. The full wait
    (engine/quiet.py) and the fast one (fastwait.py) both ask this."""
    state, reason, command = session["state"], session.get("stop_reason") or "", verdict["next_command"]
    if verdict["ok"]:
        return ("done", "nothing is running and every completion criterion holds", command)
    if state == "stopped":
        return ("decision", f"nothing is running and the session is stopped: {reason or 'no reason given'}", command)
    if state == "paused":
        return ("decision", f"nothing is running and the session is paused: {reason}", command)
    if state != "active":
        return None
    work = step_work(session, agents, at, on_usage_limit, damaged)
    if work:
        return ("work", f"nothing is running and the next step has work ({'; '.join(work)})", "orch step")
    blocked = [a["id"] for a in agents if a["state"] == "blocked-by-policy"]
    if blocked:
        return ("decision", f"nothing is running and {', '.join(blocked)} waits for a person", command)
    if due_ahead:
        return None
    return ("decision", "nothing is running, nothing is due and a step has nothing to do — "
            + "; ".join(verdict["missing"][:3]), command)


#: The agents a "Next:" comment names; the rest are counted (a conductor reads the line after
#: every wait: with 100 agents working, a hundred names would be most of its digest).
NAMED = 6


def named(ids: Sequence[str]) -> str:
    """'a, b, c' — or the first NAMED and 'and N more'."""
    if len(ids) <= NAMED:
        return ", ".join(ids)
    return ", ".join(ids[:NAMED]) + f" and {len(ids) - NAMED} more"


def next_steps(session: dict[str, Any], agents: list[dict[str, Any]], r: dict[str, Any],
               at: Optional[datetime] = None, damaged: Sequence[str] = (), on_usage_limit: str = "wait") -> list[str]:
    """The commands that move the session forward, most urgent first."""
    at = at or utcnow()
    state, sid = session["state"], session["id"]
    if state == "stopped":
        return continue_steps(session)
    if state in ("complete", "aborted"):
        return []
    if state == "paused":
        return [f"orch budget --raise session_usd=N   # a person decides how much more; then orch resume {sid}"]
    steps: list[str] = [f"restore or move aside agents/{a}/meta.json   # it cannot be read, and orch never "
                        "rewrites it: a person decides" for a in damaged]
    by_id = {a["id"]: a for a in agents}
    for a in r["blocked_agents"]:
        steps.append(f"orch allow {a}   # or: orch deny {a} (policy blocked what it asked for)")
    for t in session.get("tasks") or []:
        if t["state"] == "failed":  # the coordinator retries nothing that is failed: a person decides
            agent = t.get("agent") if t.get("agent") in by_id else None
            steps.append(retry_step(t, "", agent))
    work = step_work(session, agents, at, on_usage_limit, damaged)
    if work:
        steps.append(f"orch step   # {'; '.join(work)}")
    if r["live_agents"]:
        steps.append("orch wait --timeout 60   # agents are working: " + named(r["live_agents"]))
    racing = [race for race in session.get("races") or [] if race["state"] == "running" and ts(race["deadline"]) > at]
    if racing and not work and not r["live_agents"]:  # before a usage limit's reset: the race does not wait for it
        first = min(racing, key=lambda race: ts(race["deadline"]))
        left = max(int((ts(first["deadline"]) - at).total_seconds()) + 1, 1)
        steps.append(f"orch wait --timeout {max(left, 60)}   # race {first['task']}'s time limit is at "
                     f"{clock(first['deadline'])}; orch step then judges it with the candidates that finished")
    if r["parked_agents"] and r["resume_at"] and ts(r["resume_at"]) > at and not r["live_agents"]:
        steps.append(f"orch wait --timeout 600   # all remaining work is parked by a usage limit until "
                     f"{clock(r['resume_at'])}; orch step resumes it then (or stop: `orch resume {sid}` "
                     "later carries on)")
    backing_off = [t for t in session.get("tasks") or [] if t["state"] == "queued" and not due(t, at)]
    if backing_off and not work and not r["live_agents"]:
        first = min(backing_off, key=lambda t: ts(t["retry_at"]))
        left = max(int((ts(first["retry_at"]) - at).total_seconds()) + 1, 1)
        steps.append(f"orch wait --timeout {max(left, 60)}   # {first['id']} is retried at {clock(first['retry_at'])} "
                     "after a back-off; orch step starts it then")
    if r["ok"]:
        steps.append("orch report   # criteria hold: finalize the session")
    elif not steps:
        steps.append("orch step   # close finished tasks, plan the next round, retire agents with nothing left")
    return steps


def after_failure(session: dict[str, Any], task: Optional[dict[str, Any]], reason: str,
                  max_attempts: int) -> str:
    """What happens after an agent's run failed, said before the coordinator acts on it (a notification)."""
    from ..adapters.login import says_not_logged_in  # not on the fast read path: notifications only

    if task is None or not session.get("coordinated") or task.get("kind") == "adhoc":
        return "you: a hand-launched agent's task is not retried by itself (orch retry it, or orch abort it)"
    if says_not_logged_in(reason):
        return f"you: its CLI is not logged in, so orch does not retry it — log in, then orch retry {task['id']}"
    if task.get("attempts", 0) < max_attempts:
        return f"nothing yet: orch retries {task['id']} after a back-off ({task.get('attempts', 0)} of " \
               f"{max_attempts} attempts used)"
    return f"you: {task['id']} used its {max_attempts} attempts; the session stops for your decision"
