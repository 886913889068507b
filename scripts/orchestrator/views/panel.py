"""What a review panel found and what a race decided, from the session as stored (session.json
and the agents' meta.json as JSON): pure and free of pydantic, so `orch status` (its fast read
path too), the report and the dashboard say the same thing.

Per reviewer, the numbers a person needs to judge whether an extra reviewer is worth its cost:
blockers it filed (first, or confirming another's), unique to it, confirmed by another
reviewer, later verified fixed — beside what it cost.
"""

from __future__ import annotations


from .table import cost_label

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any


def _filers(blocker: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(f["reviewer"] for f in blocker.get("filed_by") or []))


def panel_rows(session: dict[str, Any], agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per reviewer that gave a verdict or filed a blocker, in the panel's order."""
    team = session.get("team") or {}
    seats = list(team.get("reviewers") or [])
    by_id = {a["id"]: a for a in agents}
    blockers = [b for b in session.get("blockers") or [] if b.get("source", "review") == "review"]
    verdicts = session.get("verdicts") or []
    reviewers = list(dict.fromkeys([v["reviewer"] for v in verdicts] + [r for b in blockers for r in _filers(b)]))
    rows = []
    for rid in reviewers:
        agent = by_id.get(rid) or {}
        known = [v.get("cli") for v in verdicts if v["reviewer"] == rid] + \
            [f.get("cli") for b in blockers for f in b.get("filed_by") or [] if f["reviewer"] == rid]
        seat = agent["cli"] + (f"/{agent['sim_format']}" if agent.get("sim_format") else "") if agent \
            else next((k for k in known if k), "?")
        mine = [b for b in blockers if rid in _filers(b)]
        usage = (agent.get("stats") or {}).get("usage") or {}
        verified_by_it = [b["id"] for b in blockers if b.get("state") == "verified" and any(
            h.get("state") == "verified" and h.get("by") == rid for h in b.get("history") or [])]
        rows.append({
            "reviewer": rid, "cli": seat,
            "verdicts": [{"review": v["review"], "round": v["round"], "kind": v.get("kind", "review"),
                          "verdict": v["verdict"], "blockers": v.get("blockers") or [], "filed": v.get("filed") or [],
                          "verified": v.get("verified") or [], "reopened": v.get("reopened") or []}
                         for v in verdicts if v["reviewer"] == rid],
            "filed": len(mine),
            "blockers": [b["id"] for b in mine],
            "first": sum(1 for b in mine if _filers(b)[0] == rid),
            "unique": sum(1 for b in mine if _filers(b) == [rid]),
            "confirmed": sum(1 for b in mine if len(_filers(b)) > 1),
            "verified": sum(1 for b in mine if b.get("state") == "verified"),
            "verified_by_it": verified_by_it,
            "benched": (session.get("benched") or {}).get(rid, ""),
            "tokens": int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0)),
            "cost": cost_label(usage), "cost_usd": float(usage.get("cost_usd") or 0.0),
        })
    rows.sort(key=lambda r: (seats.index(r["cli"]) if r["cli"] in seats else len(seats), r["reviewer"]))
    return rows


def panel_summary(session: dict[str, Any], agents: list[dict[str, Any]]) -> dict[str, Any]:
    """The panel as the report and the dashboard show it (empty without a panel)."""
    seats = list((session.get("team") or {}).get("reviewers") or [])
    if len(seats) < 2:
        return {}
    blockers = [b for b in session.get("blockers") or [] if b.get("source", "review") == "review"]
    rules: dict[str, int] = {}
    for b in blockers:
        for f in (b.get("filed_by") or [])[1:]:
            rules[f["rule"]] = rules.get(f["rule"], 0) + 1
    reports = sum(len(b.get("filed_by") or []) for b in blockers)
    return {"members": seats, "reviewers": panel_rows(session, agents), "ledger": len(blockers),
            "reports": reports, "merged": reports - len(blockers), "rules": rules,
            "rounds": sorted({v["round"] for v in session.get("verdicts") or []})}


def panel_lines(session: dict[str, Any], agents: list[dict[str, Any]]) -> list[str]:
    """One line per panel member: what it found and what it cost (empty without a panel)."""
    panel = panel_summary(session, agents)
    lines = []
    for r in panel.get("reviewers", []):
        verdicts = ", ".join(f"{v['review']} {v['verdict']}" for v in r["verdicts"]) or "no verdict yet"
        out = f" — out: {r['benched']}" if r["benched"] else ""
        found = f" ({', '.join(r['blockers'][:8])}{' …' if len(r['blockers']) > 8 else ''})" if r["blockers"] else ""
        lines.append(f"panel: {r['reviewer']} ({r['cli']}) filed {r['filed']} blocker(s){found}: {r['unique']} unique to it, "
                     f"{r['confirmed']} confirmed by another, {r['verified']} verified fixed; {verdicts}; "
                     f"{r['tokens']} tokens, {r['cost']}{out}")
    return lines


def race_rows(session: dict[str, Any], agents: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Each race with its candidates, best first once judged."""
    usage = {a["id"]: (a.get("stats") or {}).get("usage") or {} for a in agents}
    rows = []
    for race in session.get("races") or []:
        candidates = sorted(race.get("candidates") or [], key=lambda c: (c.get("rank") or 99, c.get("seat", "")))
        rows.append({
            "task": race["task"], "title": race.get("title", ""), "state": race["state"],
            "why": race.get("state_reason", ""), "base": race.get("base", ""), "winner": race.get("winner"),
            "decided_by": race.get("decided_by", ""), "pick": race.get("pick"), "deadline": race.get("deadline"),
            "candidates": [{
                "agent": c.get("agent"), "cli": c["seat"], "task": c["task"], "branch": c.get("branch"),
                "ended": c.get("ended", ""), "tests": c.get("tests", ""), "failing": c.get("failing") or [],
                "conflicts": c.get("conflicts") or [], "lines": c.get("lines", 0), "files": c.get("files") or [],
                "run": c.get("run"), "trial": c.get("trial"), "rank": c.get("rank"), "outcome": c.get("outcome", ""),
                "blockers": c.get("blockers"), "reviews": c.get("review_notes") or [],
                "cost": cost_label(usage.get(c.get("agent") or "", {})),
            } for c in candidates],
        })
    return rows


def race_lines(session: dict[str, Any]) -> list[str]:
    """One line per race: where it stands, who won and why, and why each other candidate lost."""
    lines = []
    for r in race_rows(session):
        head = f"race {r['task']} ({r['state']})"
        if r["winner"]:
            w = next((c for c in r["candidates"] if c["agent"] == r["winner"]), {})
            head += f": {r['winner']} ({w.get('cli', '?')}) {w.get('outcome') or 'wins'}"
        else:
            head += ": " + ", ".join(f"{c['agent'] or c['cli']} {c['ended'] or 'building'}"
                                     + (f", tests {c['tests']}" if c["tests"] else "")
                                     + (f", {c['blockers']} blocker(s) from the reviewers" if c["blockers"] is not None
                                        else "") for c in r["candidates"])
        lines.append(head)
        for c in r["candidates"]:
            if r["winner"] and c["agent"] != r["winner"]:
                lines.append(f"  {c['agent'] or c['cli']} ({c['cli']}) {c['outcome'] or c['ended']}"
                             + (f" — kept as {c['branch']}" if c["branch"] else ""))
    return lines
