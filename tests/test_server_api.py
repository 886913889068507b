"""The JSON API of `orch serve` over a finished demo session: every read, paging, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_server_support import Server, start_server


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A whole coordinated session (rounds, blockers, reviews, reports) made by `orch demo`."""
    base = tmp_path_factory.mktemp("demo")
    home = base / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(base), "ORCH_HOME": str(base / "d" / ".orch"),
           "ORCH_SIM_HOME": str(base / "sim"), "ORCH_SIM_PACE": "0"}
    done = subprocess.run([sys.executable, "-m", "orchestrator", "demo", "--dir", str(base / "d")], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    server = start_server(env=env)
    yield server
    server.stop()


def _sid(server: Server) -> str:
    assert server.session
    return server.session


def test_sessions_list_and_one_session(demo):
    rows = demo.get("/api/sessions").json()
    assert [r["id"] for r in rows] == [_sid(demo)]
    assert rows[0]["goal"] and rows[0]["active"] is True and rows[0]["agents"] == 4  # the team and the verifier
    s = demo.get(f"/api/sessions/{_sid(demo)}").json()
    assert s["state"] == "complete" and s["rounds"] and s["tasks"] and s["events_end"] > 0
    assert {"todo", "blockers", "max_rounds", "team", "stop_reason"} <= set(s)
    assert all({"n", "phase", "started_at"} <= set(r) for r in s["rounds"])
    assert "passed on the final commit" in s["verification"]["final"] and s["verification"]["runs"]


def test_agents_cards_and_detail(demo):
    cards = demo.get(f"/api/sessions/{_sid(demo)}/agents").json()
    assert {c["role"] for c in cards} == {"architect", "implementer", "reviewer", "verifier"}
    for c in cards:
        assert {"id", "cli", "state", "task", "last_activity_at", "tool_calls", "usage", "reason"} <= set(c)
        assert "seconds_since_activity" not in c  # the page computes it: a pushed card changes only on change
    detail = demo.get(f"/api/sessions/{_sid(demo)}/agents/{cards[0]['id']}").json()
    assert detail["runs"] and detail["runs"][0]["argv"]


def test_blockers_reviews_reports(demo):
    sid = _sid(demo)
    ledger = demo.get(f"/api/sessions/{sid}/blockers").json()
    assert ledger and all({"id", "severity", "state", "path", "description"} <= set(b) for b in ledger)
    assert ledger == demo.get(f"/api/sessions/{sid}").json()["blockers"]
    reviews = demo.get(f"/api/sessions/{sid}/reviews").json()
    assert [r["id"] for r in reviews] == ["R-1", "R-2"] and reviews[0]["verdict"] in ("approve", "changes_requested")
    reports = demo.get(f"/api/sessions/{sid}/reports").json()
    assert "session-report.md" in reports["files"] and reports["report"]["session"] == sid
    md = demo.get(f"/api/sessions/{sid}/reports/session-report.md")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown") and sid in md.text
    assert demo.get(f"/api/sessions/{sid}/reports/session.json").status_code == 404


def _all_forward(server: Server, sid: str, limit: int, **params) -> list[dict]:
    out, start = [], 0
    while True:
        page = server.get(f"/api/sessions/{sid}/events", params={"from": start, "limit": limit, **params}).json()
        out += page["events"]
        if page["next"] >= page["end"]:
            return out
        start = page["next"]


def _all_backward(server: Server, sid: str, limit: int, **params) -> list[dict]:
    out, before = [], None
    while True:
        q = {"limit": limit, **params} | ({"before": before} if before is not None else {})
        page = server.get(f"/api/sessions/{sid}/events", params=q).json()
        out = page["events"] + out
        if page["prev"] is None:
            return out
        before = page["prev"]


def test_event_pages_forward_and_backward_cover_the_log_exactly(demo):
    sid = _sid(demo)
    whole = demo.get(f"/api/sessions/{sid}/events", params={"from": 0, "limit": 5000}).json()["events"]
    assert len(whole) > 50 and whole[0]["id"] == 0 and whole[0]["kind"] == "session.created"
    ids = [e["id"] for e in whole]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert _all_forward(demo, sid, 7) == whole
    assert _all_backward(demo, sid, 7) == whole
    newest = demo.get(f"/api/sessions/{sid}/events", params={"limit": 5}).json()
    assert newest["events"] == whole[-5:] and newest["prev"] == whole[-5]["id"]


def test_event_filters_by_agent_and_kind(demo):
    sid = _sid(demo)
    whole = demo.get(f"/api/sessions/{sid}/events", params={"from": 0, "limit": 5000}).json()["events"]
    agent = next(e["agent"] for e in whole if e.get("agent"))
    mine = [e for e in whole if e.get("agent") == agent]
    assert _all_backward(demo, sid, 4, agent=agent) == mine
    via_agent_route = demo.get(f"/api/sessions/{sid}/agents/{agent}/events", params={"from": 0, "limit": 5000})
    assert via_agent_route.json()["events"] == mine
    states = demo.get(f"/api/sessions/{sid}/events", params={"from": 0, "kind": "agent.state,agent.exited"}).json()
    assert states["events"] == [e for e in whole if e["kind"] in ("agent.state", "agent.exited")]


@pytest.mark.parametrize("path,params,status", [
    ("/api/sessions/no-such-session", {}, 404),
    ("/api/sessions/{sid}/agents/nobody-1", {}, 404),
    ("/api/sessions/{sid}/events", {"from": 0, "before": 10}, 400),
    ("/api/sessions/{sid}/events", {"before": "abc"}, 400),
    ("/api/sessions/{sid}/events", {"from": "-1"}, 400),
    ("/api/sessions/{sid}/events", {"limit": 0}, 422),
    ("/api/sessions/{sid}/events", {"limit": 100000}, 422),
    ("/api/sessions/{sid}/events", {"agent": "../x"}, 400),
])
def test_errors_are_json_with_the_right_status(demo, path, params, status):
    r = demo.get(path.format(sid=_sid(demo)), params=params)
    assert r.status_code == status
    body = r.json()
    assert "error" in body or "detail" in body


def test_the_page_and_its_assets(demo):
    page = demo.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the network
    js = demo.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text  # agent text is data: only textContent touches the DOM
    assert demo.get("/static/app.css").status_code == 200
    assert demo.get("/static/../server.py").status_code == 404


def test_server_info(demo):
    info = demo.get("/api/server").json()
    assert info["default_session"] == _sid(demo) and info["feeds"] >= 1
    assert json.loads(demo.get("/api/openapi.json").text)["info"]["title"] == "orch dashboard"
