"""The dashboard page in a real browser: Debian's chromium, headless, driven by Playwright.

Each test starts `orch serve` itself against a session with real sim agents (or, for the
scale test, 50 agents and 100,000 events), opens the printed link, and watches the page
follow the agents without a reload. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.core.models import Agent, AgentState, AgentStats, Event, EventKind, Permission, Role, Usage, now
from orchestrator.store.sessions import append_lines, file_lock
from test_server_support import ARTIFACTS, launch_sim, new_session, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium)"),
]


@pytest.fixture
def browser(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000}, service_workers="block")
        errors: list[str] = []
        context.on("weberror", lambda e: errors.append(str(e.error)))
        try:
            yield context, errors
        finally:
            context.close()


def _open(context, url: str):
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=20000)
    page.evaluate("() => { window.__sameDocument = true; }")  # survives only if the page never reloads
    return page, problems


def _card_state(page, agent_id: str, state: str, timeout: float = 30000) -> None:
    page.wait_for_selector(f"#card-{agent_id}[data-state='{state}']", timeout=timeout)


def _shot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000
    return path


def test_page_shows_the_team_and_follows_it_live(browser, workspace_dir):
    context, _ = browser
    store = new_session(workspace_dir, goal="Show the team")
    quick = launch_sim(store, workspace_dir, "build the parser", role=Role.IMPLEMENTER)
    streamer = launch_sim(store, workspace_dir, "stream [sim: lines=80 interval=0.05]")
    server = start_server(session=store.id)
    try:
        page, problems = _open(context, server.url)
        assert page.locator(".card").count() == 2
        assert "token=" not in page.url  # taken out of the address bar, kept in the tab
        card = page.locator(f"#card-{streamer}")
        assert card.locator(".role").inner_text() == "worker"
        assert "sim" in card.locator(".cli").inner_text()
        assert "T-2" in card.locator(".task").inner_text()
        _card_state(page, quick, "idle")
        _card_state(page, streamer, "running")
        _card_state(page, streamer, "idle")  # finishing shows without a reload
        page.wait_for_function(
            f"() => document.querySelector('#pane-{streamer} .lines').textContent.includes('line 79 of a steady stream')")
        assert page.evaluate("() => window.__sameDocument") is True
        assert page.locator(f"#card-{quick} .tokens").inner_text() != "0 in / 0 out"
        assert page.locator(f"#card-{quick} .cost").inner_text().startswith("$")
        assert "ago" in page.locator(f"#card-{quick} .activity").inner_text()
        assert page.locator("#session-goal").inner_text() == "Show the team"
        with store.edit_session() as session:  # what the conductor's todo hook records
            session.todo = "Review the parser's error messages"
        page.wait_for_function("() => document.getElementById('todo').textContent === \"Review the parser's error messages\"")
        assert page.locator(f"#card-{streamer} .act-abort").is_enabled()
        _shot(page, "dashboard.png")
        assert not problems, problems
    finally:
        server.stop()


def test_page_marks_denied_silent_and_failed_agents_and_acts_on_them(browser, workspace_dir, monkeypatch):
    context, _ = browser
    monkeypatch.setenv("ORCH_SILENT_AFTER", "1")  # the server's silence threshold
    store = new_session(workspace_dir, goal="Agents in trouble")
    failing = launch_sim(store, workspace_dir, "fail please [sim: fail=500]")
    stalled = launch_sim(store, workspace_dir, "think [sim: stall=60]")
    denied = launch_sim(store, workspace_dir, "note it [sim: deny=write]", role=Role.REVIEWER)
    server = start_server(session=store.id)
    try:
        page, problems = _open(context, server.url)
        _card_state(page, failing, "failed")
        _card_state(page, stalled, "silent")
        _card_state(page, denied, "denied")
        assert page.locator(f"#card-{failing} .mark").inner_text() == "✖ FAILED"
        assert page.locator(f"#card-{stalled} .mark").inner_text() == "‖ SILENT"
        assert page.locator(f"#card-{denied} .mark").inner_text() == "⊘ DENIED"
        alerts = page.locator("#alerts")
        for agent_id in (failing, stalled, denied):
            assert agent_id in alerts.inner_text()
        assert page.locator(f"#card-{denied} .pending").is_visible() or page.locator(f"#card-{denied} .reason").inner_text()
        _shot(page, "dashboard-attention.png")

        abort = page.locator(f"#card-{stalled} .act-abort")
        abort.click()
        assert abort.inner_text() == "Confirm abort"  # one click never kills an agent
        abort.click()
        _card_state(page, stalled, "aborted")

        page.locator(f"#card-{denied} .act-deny").click()
        _card_state(page, denied, "idle")  # resumed without the write, and finished
        assert "denied by the user" in page.locator(f"#pane-{denied} .lines").text_content()
        assert not problems, problems

        readonly = context.new_page()  # a tab without the link's token: it may look, not act
        readonly.goto(f"{server.base}/?session={store.id}")
        readonly.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=20000)
        assert readonly.locator(f"#card-{failing} .act-abort").is_disabled()
        assert readonly.locator("#token-note").is_visible()
    finally:
        server.stop()


def test_a_page_opened_before_any_session_shows_the_first_one_and_may_act_on_it(browser, workspace_dir):
    """`orch serve` in an empty workspace: its link's token is the workspace's, so the page it
    opens shows the session that appears and may act on it; words a person understands."""
    context, _ = browser
    server = start_server()
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('conn').dataset.state === 'idle'", timeout=20000)
        assert "orch demo --serve" in page.locator("#session-goal").inner_text()
        store = new_session(workspace_dir, goal="Appears later")
        crash = launch_sim(store, workspace_dir, "[sim: exit=3]")
        thinker = launch_sim(store, workspace_dir, "think hard [sim: stall=60]")
        page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=30000)
        _card_state(page, crash, "failed")
        assert page.locator(f"#card-{thinker} .act-abort").is_enabled()
        assert page.locator("#token-note").is_hidden()
        assert "1 agent needs attention" in page.locator("#alerts").inner_text()
        label = page.locator("#session-picker option").first.inner_text()
        assert label.count("active") == 1 and "this folder's session" in label, label
        assert "none reported" in page.locator("#todo").inner_text()
        abort = page.locator(f"#card-{thinker} .act-abort")
        abort.click()
        abort.click()
        _card_state(page, thinker, "aborted")
        assert not problems, problems
    finally:
        server.stop()


def test_page_stays_responsive_with_50_agents_and_100000_events(browser, workspace_dir):
    context, _ = browser
    store = new_session(workspace_dir, goal="A big team")
    states = [AgentState.RUNNING, AgentState.IDLE, AgentState.SILENT, AgentState.DENIED, AgentState.FAILED]
    ids = [f"worker-{i}" for i in range(1, 51)]
    for i, agent_id in enumerate(ids):
        store.agent_dir(agent_id).mkdir(parents=True)
        store.write_agent(Agent(
            id=agent_id, session=store.id, role=Role.WORKER, cli="sim", permission=Permission.EDIT,
            cwd=str(workspace_dir), state=states[i % len(states)], state_reason="made by the test",
            last_activity_at=now(), current_task=f"T-{i + 1}",
            stats=AgentStats(tool_calls=i, usage=Usage(input_tokens=1000 * i, output_tokens=100 * i, cost_usd=0.01 * i))))
    started = time.monotonic()
    # The history is written as the store writes lines, minus its per-line redaction (there is
    # nothing to redact in it), which would make this setup the slowest part of the suite.
    stamp = now().isoformat()
    lines = [json.dumps({"ts": stamp, "kind": "agent.output", "agent": ids[n % 50],
                         "data": {"kind": "text", "text": f"history {n}"}}, separators=(",", ":")).encode() + b"\n"
             for n in range(100_000)]
    with file_lock(store.path / ".events.lock"):
        append_lines(store.events_path, lines)
    written = time.monotonic() - started
    server = start_server(session=store.id)
    try:
        t0 = time.monotonic()
        page, problems = _open(context, server.url)
        page.wait_for_function("() => document.querySelectorAll('.card').length === 50", timeout=30000)
        load_seconds = time.monotonic() - t0
        assert page.locator(".card[data-state='denied'] .mark").count() == 10
        lines = page.evaluate("() => [...document.querySelectorAll('.pane .lines')].map(p => p.childElementCount)")
        assert sum(lines) <= 1000 and max(lines) <= 300  # only the newest page, never the whole log
        assert page.locator("#pane-worker-50 .lines").text_content().strip().endswith("history 99999")

        # a burst of 5,000 live lines: batched per frame, panes stay capped, the page keeps answering
        burst = store.append_events([
            Event(kind=EventKind.AGENT_OUTPUT, agent=ids[n % 50], data={"kind": "text", "text": f"live {n}"})
            for n in range(5000)])
        t1 = time.monotonic()
        page.wait_for_selector(f".line[data-id='{burst[-1]}']", timeout=30000)
        burst_seconds = time.monotonic() - t1
        t2 = time.monotonic()
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(1)))")
        frame_ms = (time.monotonic() - t2) * 1000
        lines = page.evaluate("() => [...document.querySelectorAll('.pane .lines')].map(p => p.childElementCount)")
        assert max(lines) <= 300
        dom_nodes = page.evaluate("() => document.getElementsByTagName('*').length")
        assert dom_nodes < 50_000

        before = page.locator("#pane-worker-7 .lines .line").count()
        page.locator("#pane-worker-7 .older").click()
        page.wait_for_function(f"() => document.querySelectorAll('#pane-worker-7 .lines .line').length > {before}")
        _shot(page, "dashboard-50-agents.png", full_page=False)
        assert not problems, problems
        print(f"\n100,000 events written in {written:.1f} s; page live with 50 cards in {load_seconds:.2f} s; "
              f"5,000-line burst shown in {burst_seconds:.2f} s; next frame after it in {frame_ms:.0f} ms; "
              f"{dom_nodes} DOM nodes")
    finally:
        server.stop()


def test_no_request_leaves_the_machine(browser, workspace_dir):
    """Every request the page makes goes to the server that served it."""
    context, _ = browser
    store = new_session(workspace_dir)
    launch_sim(store, workspace_dir, "hello")
    server = start_server(session=store.id)
    try:
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'", timeout=20000)
        assert urls and all(u.startswith(server.base + "/") or u.startswith("data:") for u in urls), urls
    finally:
        server.stop()



def test_allow_from_the_page_resumes_a_blocked_agent_and_a_paused_budget_is_raised(browser, workspace_dir):
    """A pending decision shows with its buttons: Allow resumes the blocked agent; Raise budget
    lifts a paused session's limit (the spend against the budget shows on the page)."""
    from orchestrator.core.models import SessionState
    from orchestrator.runtime.ingest import sync_agent
    from orchtest import run_orch

    context, _ = browser
    store = new_session(workspace_dir, goal="Decisions from the page")
    blocked = launch_sim(store, workspace_dir, "note it [sim: write=review-notes.txt]", role=Role.REVIEWER)

    def settled(states):
        sync_agent(store, blocked)
        return store.read_agent(blocked).state in states
    from orchtest import wait_until
    wait_until(lambda: settled((AgentState.DENIED,)), timeout=30, what="denied")
    # The step escalates as far as the reviewer's ceiling lets it (read): blocked by policy.
    run_orch("step", check=True)
    wait_until(lambda: settled((AgentState.BLOCKED_BY_POLICY,)), timeout=30, what="blocked by policy")
    # A $0.001 budget, below what the sim reported it cost: the next step pauses the session.
    (workspace_dir / ".orch" / "policy.toml").write_text("[budget]\nsession_usd = 0.001\n")
    run_orch("step", check=True)
    assert store.read_session().state is SessionState.PAUSED
    server = start_server(session=store.id)
    try:
        page, problems = _open(context, server.url)
        _card_state(page, blocked, "blocked-by-policy")
        assert "review-notes.txt" in page.locator(f"#card-{blocked} .pending").inner_text()
        page.wait_for_selector("#budget-paused:not([hidden])", timeout=10000)
        assert "Paused: budget reached ($" in page.locator("#budget-reason").inner_text()
        assert "of $0.0010" in page.locator("#budget-spend").inner_text()
        _shot(page, "dashboard-decisions.png")

        page.locator(f"#card-{blocked} .act-allow").click()
        _card_state(page, blocked, "idle")  # resumed with the write allowed once, and finished
        assert (workspace_dir / "review-notes.txt").exists()

        page.locator("#budget-value").fill("5")
        page.locator("#budget-raise").click()
        page.wait_for_function("() => document.getElementById('budget-spend').textContent.includes('of $5.0000')",
                               timeout=10000)
        assert "session_usd = 5" in (workspace_dir / ".orch" / "policy.toml").read_text()
        run_orch("step", check=True)
        assert store.read_session().state is SessionState.ACTIVE
        page.wait_for_selector("#budget-paused[hidden]", state="attached", timeout=10000)
        actions = [a.action for a in store.read_audit()]
        assert actions.index("budget_paused") < actions.index("allowed") < actions.index("budget_raised") \
            < actions.index("budget_resumed")
        assert not problems, problems
    finally:
        server.stop()


def test_page_shows_the_tests_on_the_final_integration_commit(browser, workspace_dir):
    from orchestrator.core.models import GitRecord, MergeRecord, Verification, VerifyRun, VerifyRunState

    context, _ = browser
    store = new_session(workspace_dir, goal="Show the tests")
    with store.edit_session() as session:
        session.coordinated = True
        session.git = GitRecord(mode="worktrees", repo=str(workspace_dir), base="b" * 40, integration_branch="orch/x",
                                worktrees_dir=str(workspace_dir / "wt"),
                                merges=[MergeRecord(task="T-2", agent="implementer-1", branch="orch/x--i",
                                                    outcome="merged", commit="c" * 40)])
        session.verification = Verification(runs=[VerifyRun(
            id="V-2", commit="c" * 40, purpose="tip", state=VerifyRunState.FINISHED, command=["python3", "-m", "pytest"],
            exit_code=1, failing=["tests/test_a.py::test_b"])])
    server = start_server(session=store.id)
    try:
        page, problems = _open(context, server.url)
        page.wait_for_selector("#tests-line:not([hidden])")
        shown = page.locator("#tests-result")
        assert "`python3 -m pytest` FAILS on the final commit cccccccccccc" in shown.inner_text()
        assert "1 run(s), last V-2" in shown.inner_text() and shown.get_attribute("data-failing") == "1"
        with store.edit_session() as session:  # a green run on a later commit shows without a reload
            session.git.merges.append(MergeRecord(task="T-5", agent="implementer-1", branch="orch/x--i",
                                                  outcome="merged", commit="d" * 40))
            session.verification.runs.append(VerifyRun(id="V-3", commit="d" * 40, purpose="tip",
                                                       state=VerifyRunState.FINISHED, command=["python3", "-m", "pytest"],
                                                       exit_code=0))
        page.wait_for_function("() => document.getElementById('tests-result').textContent.includes('passed')")
        assert page.locator("#tests-result").get_attribute("data-failing") == ""
        assert page.evaluate("() => window.__sameDocument") is True and not problems, problems
    finally:
        server.stop()


def test_page_shows_the_panels_verdicts_side_by_side_and_the_races_candidates_with_their_tests(browser,
                                                                                                  workspace_dir):
    """A finished session with a review panel of two sim formats and a race of two sim
    implementers, one whose tests fail: the page shows both reviewers' columns and the
    candidates with their test results."""
    import subprocess

    from orchtest import run_orch

    context, _ = browser
    subprocess.run(["git", "init", "-q", str(workspace_dir)], check=True)
    goal = ("Build a small text utilities library [sim@architect: race=core] [sim@implementer/claude: careful] "
            "[sim@implementer/codex: failing-tests]")
    proc = run_orch("run", goal, "--architect", "sim", "--implementer", "sim", "--reviewers", "sim/codex,sim/gemini",
                    "--race", "2", env={"ORCH_SIM_PACE": "0"}, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = json.loads(next((workspace_dir / ".orch").glob("sessions/*/session.json")).read_text())
    reviewers = sorted({v["reviewer"] for v in session["verdicts"]})
    (race,) = session["races"]
    server = start_server(session=session["id"])
    try:
        page, problems = _open(context, server.url)
        page.wait_for_selector("#panel-section:not([hidden])")
        heads = page.locator("#panel thead th").all_inner_texts()[1:]
        assert sorted(h.split(" · ")[0] for h in heads) == reviewers and {h.split(" · ")[1] for h in heads} == {
            "sim/codex", "sim/gemini"}
        first_round = page.locator("#panel tbody tr").first.locator("td")
        assert first_round.count() == 2
        assert all("changes_requested" in t for t in first_round.all_inner_texts())
        rows = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
                for r in page.locator("#panel tbody tr").all()}
        report = json.loads(next((workspace_dir / ".orch").glob("sessions/*/reports/session-report.json")).read_text())
        by_id = {r["reviewer"]: r for r in report["panel"]["reviewers"]}
        shown = [h.split(" · ")[0] for h in heads]
        for label, key in (("filed", "filed"), ("unique to it", "unique"), ("confirmed by another", "confirmed"),
                           ("later verified", "verified")):
            assert rows[label] == [str(by_id[r][key]) for r in shown], label
        assert sorted(rows["unique to it"]) == ["0", "1"] and rows["confirmed by another"] == ["1", "1"]
        assert all("tokens" in c for c in rows["cost"])
        assert "3 report(s) became 2 blocker(s)" in page.locator("#panel-note").inner_text()
        assert "(same-place)" in page.locator("#blockers").inner_text()
        page.wait_for_selector("#races-section:not([hidden])")
        assert f"{race['task']} Implement component core — merged · by the judge" in page.locator(".race-head").inner_text()
        winner = page.locator(".race-candidates tr[data-winner='1']")
        assert winner.locator(".tests").inner_text() == "passed"
        loser = page.locator(".race-candidates tr[data-tests='failed']")
        assert "failed (" in loser.locator(".tests").inner_text() and "lost: " in loser.inner_text()
        _shot(page, "dashboard-panel-race.png")
        assert not problems, problems
    finally:
        server.stop()
