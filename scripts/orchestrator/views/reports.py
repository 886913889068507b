"""Reports: the session report (Markdown for people, JSON for programs) and status.md.

Reports only read the store (plus, when finalizing, the one session-state change that
the criteria allow). Everything in them is redacted.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from ..review.blocker_ledger import ledger_rows
from ..criteria.evaluate import evaluate
from ..core.models import Event, EventKind, Model, SessionState, Usage, now
from .table import cost_label
from ..safety.redaction import redact
from .render import table
from ..review.engine import load_reviews
from ..store.jsonsafe import model_json
from ..store.sessions import SessionStore


class AgentReport(Model):
    id: str
    role: str
    cli: str
    state: str
    runs: int
    tool_calls: int
    files_changed: list[str]
    denials: int
    recoveries: int
    usage: Usage
    parked_seconds: float = 0.0  # time spent waiting for a usage or rate limit to reset
    branch: Optional[str] = None  # its git branch (worktrees); None: the shared folder, or read-only
    worktree: Optional[str] = None  # where it worked
    timeline: list[dict[str, Any]] = Field(default_factory=list)


class SessionReport(Model):
    """reports/session-report.json"""

    session: str
    goal: str
    state: str
    finalized: bool
    workspace: str
    started_at: datetime
    ended_at: Optional[datetime] = None
    wall_seconds: float
    team: dict[str, Any]
    rounds: list[dict[str, Any]]
    agents: list[AgentReport]
    tasks: list[dict[str, Any]]
    deliverables: list[dict[str, Any]]
    blockers: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    denials: list[dict[str, Any]]
    recoveries: list[dict[str, Any]]
    reassignments: list[dict[str, Any]]
    usage_total: Usage
    limits: list[dict[str, Any]] = Field(default_factory=list)  # usage/rate limits hit, with fallbacks taken
    criteria: dict[str, Any]
    stop_reason: str = ""
    events: int = 0
    session_history: list[dict[str, Any]] = Field(default_factory=list)  # stops and continuations, in order
    git: dict[str, Any] = Field(default_factory=dict)  # worktrees: branches, merges, conflicts, how to take the result
    verification: dict[str, Any] = Field(default_factory=dict)  # the project's tests on each integration commit
    kernel_confinement: str = ""  # how the kernel confined the runs, one line ("" before any run)
    panel: dict[str, Any] = Field(default_factory=dict)  # the review panel: per reviewer, found and cost (views/panel.py)
    races: list[dict[str, Any]] = Field(default_factory=list)  # each race: its candidates, tests, winner and why


TIMELINE_KINDS = {
    EventKind.AGENT_LAUNCHED, EventKind.AGENT_RESUMED, EventKind.AGENT_EXITED, EventKind.AGENT_STATE,
    EventKind.TASK_ASSIGNED, EventKind.DENIAL, EventKind.RECOVERY, EventKind.POLICY_BLOCKED, EventKind.AGENT_ABORTED,
    EventKind.AGENT_PARKED,
}


def build_report(store: SessionStore, finalized: Optional[bool] = None) -> SessionReport:
    """Everything worth knowing about a session, from its files (finalized: by default, whether it is complete)."""
    session = store.read_session()
    if finalized is None:
        finalized = session.state is SessionState.COMPLETE
    agents = store.agents()
    result = evaluate(store)
    timelines: dict[str, list[dict[str, Any]]] = {a.id: [] for a in agents}
    denials, recoveries, reassignments, limits, history = [], [], [], [], []
    confinements: list[str] = []
    events = 0
    for _, e in store.scan_events():  # one at a time: the log may be far larger than memory
        events += 1
        if e.kind in (EventKind.AGENT_LAUNCHED, EventKind.AGENT_RESUMED) and isinstance(e.data.get("confinement"), str):
            confinements.append(e.data["confinement"])
        if e.kind is EventKind.SESSION_STATE and e.data.get("from"):
            history.append({"at": e.ts.isoformat(), "from": e.data.get("from"), "to": e.data.get("state"),
                            "why": e.reason or ""})
        if e.agent in timelines and e.kind in TIMELINE_KINDS:
            timelines[e.agent].append({"at": e.ts.isoformat(), "event": e.kind.value, "task": e.task,
                                       "what": e.reason or ""})
        if e.kind is EventKind.DENIAL:
            denials.append({"agent": e.agent, "task": e.task, "tool": e.data.get("tool"),
                            "target": e.data.get("target"), "run": e.data.get("run"), "at": e.ts.isoformat()})
        elif e.kind is EventKind.AGENT_PARKED:
            limits.append({"agent": e.agent, "task": e.task, "at": e.ts.isoformat(), "what": e.reason,
                           "resume_at": e.data.get("resume_at")})
        elif e.kind is EventKind.DECISION and e.data.get("fallback_from"):
            limits.append({"agent": e.agent, "task": e.task, "at": e.ts.isoformat(), "what": e.reason,
                           "fallback_from": e.data["fallback_from"]})
        elif e.kind is EventKind.TASK_ASSIGNED and e.data.get("reassigned"):
            reassignments.append({"agent": e.agent, "task": e.task, "round": e.round, "why": e.reason})
    for entry in store.read_audit():
        recoveries.append(entry.model_dump(mode="json"))
    deliverables: dict[str, list[str]] = {}
    for a in agents:
        for f in a.stats.files_changed:
            deliverables.setdefault(f, []).append(a.id)
    total = Usage()
    agent_reports = []
    for a in agents:
        total = total.plus(a.stats.usage)
        agent_reports.append(AgentReport(
            id=a.id, role=a.role.value, cli=a.cli + (f"/{a.sim_format}" if a.sim_format else ""), state=a.state.value,
            runs=len(a.runs), tool_calls=a.stats.tool_calls, files_changed=a.stats.files_changed,
            denials=len(a.stats.denials), recoveries=a.recoveries, usage=a.stats.usage,
            parked_seconds=round(a.parked_seconds, 1), branch=a.branch, worktree=a.cwd, timeline=timelines[a.id]))
    reviews = [{"id": r.id, "round": r.round, "reviewer": r.reviewer, "cli": r.cli, "verdict": r.verdict.value,
                "summary": r.summary, "blockers": [b.model_dump(mode="json") for b in r.blockers],
                "verified": r.verified, "reopened": r.reopened, "parse_method": r.parse_method,
                "report": f"reviews/{r.id}.md"} for r in load_reviews(store)]
    end = session.ended_at or (now() if session.state is SessionState.ACTIVE else session.updated_at)
    return SessionReport(
        session=session.id, goal=session.goal, state=session.state.value, finalized=finalized,
        workspace=session.workspace, started_at=session.created_at, ended_at=session.ended_at,
        wall_seconds=round((end - session.created_at).total_seconds(), 1),
        team=session.team.model_dump(mode="json"),
        rounds=[r.model_dump(mode="json") | {"tasks": [t.id for t in session.tasks if t.round == r.n]}
                for r in session.rounds],
        agents=agent_reports,
        tasks=[{"id": t.id, "kind": t.kind.value, "title": t.title, "round": t.round, "state": t.state.value,
                "agent": t.agent, "attempts": t.attempts, "blockers": t.blockers, "files_changed": t.files_changed,
                "commit": t.commit, "merged": t.merged} for t in session.tasks],
        deliverables=[{"path": p, "by": by} for p, by in sorted(deliverables.items())],
        blockers=ledger_rows(session), reviews=reviews, denials=denials, recoveries=recoveries,
        reassignments=reassignments, usage_total=total, limits=limits,
        criteria={"ok": result.ok, "missing": result.missing}, stop_reason=session.stop_reason, events=events,
        session_history=history, git=git_section(session, finalized),
        verification=verification_section(session, result.verification),
        kernel_confinement=confinement_line(confinements),
        **panel_sections(session, agents),
    )


def panel_sections(session, agents) -> dict[str, Any]:
    """The report's review panel and races (views/panel.py, over the stored form)."""
    from .panel import panel_summary, race_rows

    stored, metas = session.model_dump(mode="json"), [a.model_dump(mode="json") for a in agents]
    return {"panel": panel_summary(stored, metas), "races": race_rows(stored, metas)}


def confinement_line(described: list[str]) -> str:
    """How the kernel held the session's runs, from each run's launch event, in one line."""
    if not described:
        return ""
    loose = [d for d in described if d.startswith("none")]
    if loose:
        why = loose[0].split(":", 1)[-1].strip()
        return (f"{len(loose)} of {len(described)} runs were not confined by the kernel ({why}): only their CLIs' "
                f"permission flags and orch's argument rules held them")
    own = sum(1 for d in described if "own sandbox" in d)
    abi = next((d.split(":", 1)[0] for d in described if d.startswith("Landlock")), "Landlock")
    runs = f"{len(described)} run{'s' if len(described) != 1 else ''}"
    if own == len(described):
        return f"{runs}, each in its CLI's own sandbox, with {abi} keeping its signals in"
    tail = f" ({own} of them in their CLI's own sandbox instead)" if own else ""
    return (f"{runs}, all under {abi}: each wrote only to its worktree or the workspace (nothing there at "
            f"read), its CLI's state and a private temp folder{tail}")


def git_section(session, finalized: bool) -> dict[str, Any]:
    """How the session used git, its merges and conflicts, and (once it is complete) how to take the result."""
    g = session.git
    if g is None:
        return {}
    out = g.model_dump(mode="json", exclude_none=True)
    if g.mode == "worktrees" and finalized:
        out["landing"] = landing_lines(session)
    return out


def landing_lines(session) -> list[str]:
    """How to take the result: `orch land`, and the `git` lines that do it by hand — those only as
    they would work in the repository as it is now (read, never changed)."""
    from ..core.errors import OrchError
    from ..worktrees.land import git_alternatives

    g, sid = session.git, session.id
    if g.landings:
        last = g.landings[-1]
        where = f"commit {last.commit[:12]} on {last.branch}" if last.commit else "your working tree"
        return [f"taken with `orch land --{last.mode}` at {last.at.isoformat()[:19]}: in {where}",
                f"orch clean {sid}   # removes the session's worktrees (its branch {g.integration_branch} stays)"]
    lines = [f"orch land {sid}            # the session's changes into your working tree: your own uncommitted "
             "edits kept, nothing committed",
             f"orch land {sid} --commit   # the same, plus one commit of them on your current branch"]
    try:
        lines += git_alternatives(Path(g.repo), g.base, g.integration_branch)
    except (OrchError, OSError):
        pass  # the repository cannot be read now: orch land says why when it is run
    lines.append("nothing was pushed; your branch, index and working tree are as you left them")
    return lines


def verification_section(session, line: str) -> dict[str, Any]:
    """The project's tests: every run, the failures caught and who fixed them, the known failures."""
    v = session.verification
    g = session.git
    if v is None:
        reason = ("off: the agents shared one folder (the tests run on an integration branch)"
                  if g is not None and g.mode == "shared" else "")
        return {"final": reason} if reason else {}
    caught = [{"blocker": b.id, "tests": b.tests, "merge": b.merge, "author": b.author, "state": b.state.value,
               "fix_task": b.fix_task, "path": " → ".join(f"{h.state.value} (r{h.round})" for h in b.history),
               "last": b.history[-1].note if b.history else ""}
              for b in session.blockers if b.source.value == "verification"]
    return {"enabled": v.enabled, "reason": v.reason, "final": line,
            "command": v.command, "timeout_seconds": v.timeout_seconds,
            "runs": [r.model_dump(mode="json", exclude={"tail"}) for r in v.runs],
            "caught": caught, "known_failures": [k.model_dump(mode="json") for k in v.known_failures]}


def render_markdown(r: SessionReport) -> str:
    """The session report a person reads."""
    status = "complete" if r.finalized else r.state
    out = [f"# orch session report — {r.session}", "", f"**Goal:** {r.goal or '(none)'}", "",
           f"**Outcome:** {status}; completion criteria {'hold' if r.criteria['ok'] else 'do NOT hold'}. "
           f"Wall time {r.wall_seconds:.1f} s, {len(r.rounds)} round(s), {r.events} events.", ""]
    if r.stop_reason:
        out += [f"**Stopped:** {r.stop_reason}", ""]
    if r.kernel_confinement:
        out += [f"**Kernel confinement:** {r.kernel_confinement}.", ""]
    if any(h["to"] == "stopped" for h in r.session_history):
        out += ["**Stops and continuations:**", ""]
        out += [f"- {h['at'][:19]} {h['from']} → {h['to']}: {h['why']}" for h in r.session_history]
        out.append("")
    for m in r.criteria["missing"]:
        out.append(f"- missing: {m}")
    t = r.team
    out += ["## Team", "", table([[a.id, a.role, a.cli, a.state, a.branch or "-", str(a.runs), str(a.tool_calls),
                                   str(len(a.files_changed)), str(a.denials), str(a.recoveries),
                                   str(a.usage.input_tokens + a.usage.output_tokens), cost_label(a.usage)]
                                  for a in r.agents],
                                 ["agent", "role", "cli", "state", "branch", "runs", "tool calls", "files", "denials",
                                  "recoveries", "tokens", "cost"]),
            "", f"Team as planned: architect {t.get('architect')}, implementer {t.get('implementer')} "
                f"(x{t.get('implementers', 1)}), reviewer {t.get('reviewer')}.",
            f"Total: {r.usage_total.input_tokens} input + {r.usage_total.output_tokens} output tokens, "
            f"{cost_label(r.usage_total)}.", ""]
    out += ["## Rounds", ""]
    for rd in r.rounds:
        out.append(f"- Round {rd['n']}: {rd.get('note', '')} — tasks {', '.join(rd['tasks']) or 'none'}"
                   f"{' (closed)' if rd.get('ended_at') else ' (open)'}")
    out += ["", "## Tasks", "", table([[x["id"], str(x["round"]), x["kind"], x["title"], x["agent"] or "-", x["state"],
                                        str(x["attempts"])] for x in r.tasks],
                                      ["task", "round", "kind", "title", "agent", "state", "attempts"]), ""]
    if r.reassignments:
        out += ["## Idle agents reassigned", ""] + [f"- {x['why']}" for x in r.reassignments] + [""]
    if r.limits:
        parked = ", ".join(f"{a.id} {a.parked_seconds:.0f} s" for a in r.agents if a.parked_seconds)
        out += ["## Usage and rate limits", ""] + [f"- {x['at'][11:19]} {x['agent']}: {x['what']}" for x in r.limits]
        out += ([f"- time parked: {parked}"] if parked else []) + [""]
    out += ["## Blockers", ""]
    if r.blockers:
        for b in r.blockers:
            hist = " → ".join(f"{h['state']} (r{h['round']})" for h in b.get("history", []))
            filed = ", ".join(f["reviewer"] + (f" ({f['rule']})" if f["rule"] != "first" else "")
                              for f in b.get("filed_by") or [])
            out.append(f"- **{b['id']}** [{b['severity']}] `{b['file']}{':' + str(b['line']) if b.get('line') else ''}`"
                       f" — {b['description']}  \n  {b['state']}: {hist}" + (f"  \n  filed by {filed}" if filed else ""))
    else:
        out.append("No blockers were filed.")
    out += ["", "## Reviews (validation reports)", ""]
    for rv in r.reviews:
        out.append(f"- {rv['id']} (round {rv['round']}, {rv['reviewer']} / {rv['cli']}): **{rv['verdict']}** — "
                   f"{len(rv['blockers'])} blocker(s), verified {rv['verified'] or '-'}, reopened "
                   f"{rv['reopened'] or '-'}; see `{rv['report']}`")
    if not r.reviews:
        out.append("No reviews yet.")
    out += ["", "## Denials and recoveries", ""]
    for d in r.denials:
        out.append(f"- {d['agent']} denied {d['tool']} {d['target'] or ''} (run {d['run']})")
    for rc in r.recoveries:
        out.append(f"- {rc['agent']}: {rc['action']} {rc.get('denied_tool', '')} {rc.get('denied_target') or ''} — "
                   f"{rc.get('rung_before')} → {rc.get('rung_after')} ({rc.get('rule', '')})")
    if not r.denials and not r.recoveries:
        out.append("None.")
    out += render_panel(r.panel)
    out += render_races(r.races)
    out += render_git(r.git)
    out += render_verification(r.verification)
    out += ["", "## Deliverables", ""]
    out += [f"- `{d['path']}` by {', '.join(d['by'])}" for d in r.deliverables] or ["No files were changed."]
    out += ["", "## Per-agent timeline", ""]
    for a in r.agents:
        out.append(f"### {a.id} ({a.role}, {a.cli})")
        for ev in a.timeline:
            out.append(f"- {ev['at'][11:19]} {ev['event']}{' ' + ev['task'] if ev.get('task') else ''}: {ev['what']}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_panel(p: dict[str, Any]) -> list[str]:
    """The report's Review panel section: what each reviewer found, beside what it cost."""
    if not p:
        return []
    rules = ", ".join(f"{n} by {rule}" for rule, n in sorted(p["rules"].items())) or "none"
    out = ["", "## Review panel", "",
           f"{len(p['members'])} reviewers ({', '.join(p['members'])}) reviewed the same merged commits in parallel: "
           f"{p['reports']} report(s) became {p['ledger']} blocker(s) in one ledger ({p['merged']} merged as the same "
           f"problem: {rules}; REVIEW_SYSTEM_SPEC.md says what each rule means).", ""]
    rows = [[r["reviewer"], r["cli"], ", ".join(f"{v['review']} {v['verdict']}" for v in r["verdicts"]) or "-",
             str(r["filed"]), str(r["unique"]), str(r["confirmed"]), str(r["verified"]),
             ", ".join(r["verified_by_it"]) or "-", str(r["tokens"]), r["cost"]] for r in p["reviewers"]]
    out.append(table(rows, ["reviewer", "cli", "verdicts", "filed", "unique to it", "confirmed by another",
                            "later verified", "it verified", "tokens", "cost"]))
    out += [f"- {r['reviewer']} left the panel: {r['benched']}" for r in p["reviewers"] if r["benched"]]
    return out


def render_races(races: list[dict[str, Any]]) -> list[str]:
    """The report's Races section: each candidate's tests and size, who won and why the others lost."""
    if not races:
        return []
    out = ["", "## Races", ""]
    for r in races:
        by = {"person": " (picked by a person)",
              "judge": " (by the judge: tests, then the reviewers' blockers when the tests tie, then size)"}.get(
                  r["decided_by"], "")
        out.append(f"**{r['task']}** {r['title']} — {r['state']}{by}: {r['why']}")
        if r.get("pick"):
            out.append(f"- picked: {r['pick']['agent']} at {r['pick']['at'][:19]} — {r['pick'].get('why') or 'no reason given'}")
        rows = [[str(c["rank"] or "-"), c["agent"] or "-", c["cli"], c["ended"] or "building",
                 c["tests"] + (f" ({', '.join(c['failing'][:3])})" if c["failing"] else ""),
                 "-" if c.get("blockers") is None else str(c["blockers"]), str(c["lines"]),
                 c["branch"] or "-", c["outcome"] or "-"] for c in r["candidates"]]
        out += ["", table(rows, ["rank", "agent", "cli", "build", "tests", "blockers", "lines", "branch", "outcome"]),
                ""]
        out += [f"- {c['agent']}'s review: {note}" for c in r["candidates"] for note in c.get("reviews") or []]
    return out


def render_git(g: dict[str, Any]) -> list[str]:
    """The report's git section: mode, merges and conflicts, landing lines."""
    if not g:
        return []
    out = ["", "## Git", ""]
    if g["mode"] == "shared":
        return out + [f"Agents worked in the shared folder: {g.get('reason', '')}."]
    out.append(f"Integration branch `{g['integration_branch']}` from `{g.get('base', '')[:12]}`; worktrees in "
               f"`{g.get('worktrees_dir', '')}`.")
    out.append("")
    for m in g.get("merges", []):
        what = {"merged": f"merged as `{(m.get('commit') or '')[:12]}`", "already": "already in",
                "conflict": f"**conflict** (resolved by {m.get('merge_task') or '-'})"}[m["outcome"]]
        out.append(f"- {m['task']} {m['agent']} `{m['branch']}`: {what} — {', '.join(m['files']) or 'no files'}")
    if g.get("landing"):
        commands = [line for line in g["landing"] if line.startswith(("orch ", "git "))]
        said = [line[:1].upper() + line[1:] + ("" if line.endswith(".") else ".")
                for line in g["landing"] if line not in commands]
        out += ["", "Take the result:"]
        out += ["", "```sh"] + commands + ["```"] if commands else []  # only what runs as it is written
        out += ["", " ".join(said)] if said else []
    return out


def render_verification(v: dict[str, Any]) -> list[str]:
    """The report's Verification section."""
    if not v:
        return []
    out = ["", "## Verification", ""]
    if not v.get("enabled", True) or "runs" not in v:
        return out + [f"The project's tests did not gate this session: {v.get('final') or v.get('reason')}."]
    runs = v["runs"]
    out.append(f"The project's tests ran after every merge ({v.get('reason')}; time limit "
               f"{v.get('timeout_seconds', 0):.0f} s): {len(runs)} run(s). Final commit: {v.get('final')}.")
    if v["caught"]:
        out += ["", "Failures caught:", ""]
        for c in v["caught"]:
            by = f"{c['merge']}'s merge (by {c['author']})" if c["merge"] else "present at the session's base"
            status = c["state"] + (f": {c['last']}" if c.get("last") else "")
            out.append(f"- **{c['blocker']}** {', '.join(c['tests'][:5])} — {by}; {status} ({c['path']})")
    if v["known_failures"]:
        out += ["", "Known failures (declared out of scope; nothing else lets a failing test through):", ""]
        out += [f"- `{k['test']}` — {k.get('why') or 'no reason given'} ({k['source']}, {k['at'][:19]})"
                for k in v["known_failures"]]
    if runs:
        rows = []
        for r in runs:
            if r["state"] != "finished":
                result = r["state"] + (f": {r['state_reason'][:80]}" if r.get("state_reason") else "")
            elif not r.get("command"):
                result = "no test command"
            elif r.get("timed_out"):
                result = "timed out"
            elif r.get("exit_code") == 0:
                result = "passed"
            else:
                result = f"failed: {', '.join(r.get('failing', [])[:3]) or 'exit ' + str(r.get('exit_code'))}"
            rows.append([r["id"], r["commit"][:12], r["purpose"], result, f"{r.get('seconds', 0):.1f} s"])
        out += ["", table(rows, ["run", "commit", "purpose", "result", "time"])]
    return out


def write_report(store: SessionStore) -> tuple[SessionReport, str]:
    """Write reports/session-report.{md,json} and status.md from the session as it stands.

    The report only describes: finalizing the session is the coordinator's act
    (engine.coordinator.finalize), done before the report is written.
    """
    session = store.read_session()
    report = build_report(store, finalized=session.state is SessionState.COMPLETE)
    md = render_markdown(report)
    d = store.reports_dir
    store.write_file(d / "session-report.json",
                     model_json(SessionReport.model_validate(redact(report.model_dump(mode="json")))) + b"\n")
    store.write_file(d / "session-report.md", redact(md).encode())
    store.write_file(d / "status.md", redact(status_markdown(store)).encode())
    store.append_event(Event(kind=EventKind.REPORT_WRITTEN, reason=str(d / "session-report.md"),
                             data={"finalized": report.finalized}))
    return report, str(d / "session-report.md")


def status_markdown(store: SessionStore) -> str:
    """A snapshot of where the session stands (reports/status.md)."""
    from .render import AGENT_HEADER, agent_rows

    session = store.read_session()
    agents = store.agents()
    result = evaluate(store)
    lines = [f"# Status — session {session.id}", "", f"Goal: {session.goal or '(none)'}",
             f"State: {session.state.value}, round {session.round}", ""]
    lines.append(table(agent_rows(agents), AGENT_HEADER) if agents else "No agents.")
    lines += ["", f"Completion criteria: {'hold' if result.ok else 'not met'}"]
    lines += [f"- {m}" for m in result.missing]
    return "\n".join(lines) + "\n"

