"""The dashboard's security rules, each against a real `orch serve`.

Loopback only; Host must be a loopback name with the server's port (DNS rebinding);
writes only from the page's own origin and only with the session's token; ids in paths
validated; nothing secret served.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys

import httpx
import pytest

from orchestrator.core.models import AgentState, Role
from orchestrator.runtime.procs import is_same_process
from orchestrator.dashboard.guard import TOKEN_FILE, workspace_token
from orchestrator.store.sessions import Workspace, append_lines
from test_server_support import SSEStream, launch_sim, new_session, start_server, wait_until


@pytest.fixture
def served(workspace_dir):
    store = new_session(workspace_dir)
    server = start_server(session=store.id)
    yield store, server
    server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the read-only checks: a session in its own state root."""
    base = tmp_path_factory.mktemp("shared")
    (base / "ws").mkdir()
    store = Workspace(base / ".orch").create(base / "ws", goal="shared")
    env = {**os.environ, "ORCH_HOME": str(base / ".orch"), "HOME": str(base), "TMPDIR": str(base)}
    server = start_server(env=env, session=store.id)
    yield store, server
    server.stop()


def raw_get(port: int, path: str, host: str | None = None) -> tuple[int, str]:
    """A GET sent byte for byte (HTTP clients tidy `..` out of paths before sending)."""
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "Connection: close\r\n\r\n"
    if host is None and "HTTP/1.1" in head:
        head = head.replace("HTTP/1.1", "HTTP/1.0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(name).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, st = row.split()[1], row.split()[3]
            addr, _, hexport = local.partition(":")
            if int(hexport, 16) == port and st == "0A":  # LISTEN
                found.add(addr)
    return found


# --------------------------------------------------------------------------- binding and the token


def test_listens_on_loopback_only_and_prints_a_token_it_keeps_private(served, workspace_dir):
    store, server = served
    assert server.base.startswith("http://127.0.0.1:")
    assert _listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing else
    assert server.token and len(server.token) >= 40
    path = workspace_dir / ".orch" / TOKEN_FILE  # the workspace's: every session it serves takes it
    assert path.read_text().strip() == server.token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_token_file_others_could_read_is_replaced(workspace_dir):
    root = workspace_dir / ".orch"
    first = workspace_token(root)
    assert workspace_token(root) == first  # kept across servers: an open page keeps working
    os.chmod(root / TOKEN_FILE, 0o644)
    second = workspace_token(root)
    assert second != first and stat.S_IMODE((root / TOKEN_FILE).stat().st_mode) == 0o600


def test_a_server_started_before_any_session_prints_a_token_that_acts_on_the_sessions_that_appear(workspace_dir):
    server = start_server()
    try:
        assert server.session is None and server.token and len(server.token) >= 40
        store = new_session(workspace_dir)
        agent_id = launch_sim(store, workspace_dir, "think hard [sim: stall=60]")
        r = server.post(f"/api/sessions/{store.id}/agents/{agent_id}/abort", headers={"X-Orch-Token": server.token})
        assert r.status_code == 200, r.text
        assert store.read_agent(agent_id).state is AgentState.ABORTED
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.com"])
def test_refuses_wildcard_and_names_as_bind_address(workspace_dir, host):
    new_session(workspace_dir)
    r = subprocess.run([sys.executable, "-m", "orchestrator", "serve", "--port", "0", "--host", host],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("orch: ") and len(r.stderr.strip().splitlines()) == 1


def test_a_busy_port_is_a_one_line_error(workspace_dir):
    new_session(workspace_dir)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "in use" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- Host (DNS rebinding)


@pytest.mark.parametrize("path", ["/", "/api/sessions", "/static/app.js", "/api/sessions/{sid}/stream"])
@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:{other}",
                                  "localhost.evil.example:{port}", "127.0.0.2:{port}"])
def test_foreign_host_headers_are_refused(shared, path, host):
    store, server = shared
    h = host.format(port=server.port, other=server.port + 1)
    r = httpx.get(server.api(path.format(sid=store.id)), headers={"Host": h}, timeout=10)
    assert r.status_code == 403 and "not served here" in r.json()["error"]
    assert r.headers["content-security-policy"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_host_headers_are_served(shared, host):
    store, server = shared
    r = httpx.get(server.api("/api/sessions"), headers={"Host": host.format(port=server.port)}, timeout=10)
    assert r.status_code == 200


def test_a_request_without_host_is_refused(shared):
    store, server = shared
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /api/sessions HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 403")


# --------------------------------------------------------------------------- writes


@pytest.fixture
def stalled(served, workspace_dir):
    """A live sim agent that says nothing for a minute: something worth aborting."""
    store, server = served
    agent_id = launch_sim(store, workspace_dir, "think hard [sim: stall=60]")
    pid = store.read_agent(agent_id).runs[-1].pid
    return store, server, agent_id, pid


def _abort(server, sid, agent_id, **headers):
    return server.post(f"/api/sessions/{sid}/agents/{agent_id}/abort", headers=headers)


def test_writes_need_the_token(stalled):
    store, server, agent_id, pid = stalled
    r = _abort(server, store.id, agent_id)
    assert r.status_code == 401 and "X-Orch-Token" in r.json()["error"].replace("x-orch-token", "X-Orch-Token")
    assert _abort(server, store.id, agent_id, **{"X-Orch-Token": "guess" * 9}).status_code == 403
    assert _abort(server, store.id, agent_id, **{"X-Orch-Token": server.token[:-1]}).status_code == 403
    assert is_same_process(pid, store.read_agent(agent_id).runs[-1].proc_start)


def test_another_workspaces_token_does_not_open_this_one(stalled, tmp_path):
    store, server, agent_id, pid = stalled
    r = _abort(server, store.id, agent_id, **{"X-Orch-Token": workspace_token(tmp_path / "elsewhere" / ".orch")})
    assert r.status_code == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # another port on localhost is same-site, not same-origin
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
])
def test_cross_origin_writes_are_refused_even_with_the_token(stalled, headers):
    store, server, agent_id, pid = stalled
    h = {k: v.format(port=server.port) for k, v in headers.items()} | {"X-Orch-Token": server.token}
    r = _abort(server, store.id, agent_id, **h)
    assert r.status_code == 403
    assert is_same_process(pid, store.read_agent(agent_id).runs[-1].proc_start)


def test_a_same_origin_write_with_the_token_aborts_the_agent(stalled):
    store, server, agent_id, pid = stalled
    r = _abort(server, store.id, agent_id, **{"X-Orch-Token": server.token, "Sec-Fetch-Site": "same-origin",
                                              "Origin": f"http://127.0.0.1:{server.port}"})
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    wait_until(lambda: not is_same_process(pid, store.read_agent(agent_id).runs[-1].proc_start), 10,
               "the agent process to end")


def test_allow_and_deny_need_a_blocked_agent(stalled):
    store, server, agent_id, pid = stalled
    for verb in ("allow", "deny"):
        r = server.post(f"/api/sessions/{store.id}/agents/{agent_id}/{verb}", headers={"X-Orch-Token": server.token})
        assert r.status_code == 400 and "not blocked" in r.json()["error"]


def test_deny_from_the_dashboard_resumes_a_denied_agent_without_the_action(served, workspace_dir):
    store, server = served
    agent_id = launch_sim(store, workspace_dir, "write the notes [sim: deny=write]", role=Role.REVIEWER)
    wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "denied",
               30, "the reviewer to be denied")
    r = server.post(f"/api/sessions/{store.id}/agents/{agent_id}/deny", headers={"X-Orch-Token": server.token})
    assert r.status_code == 200, r.text
    assert r.json()["agent"]["runs"] == 2
    wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "idle",
               30, "the reviewer to finish without the write")
    kinds = [e["kind"] for e in server.get(f"/api/sessions/{store.id}/events", params={"agent": agent_id}).json()["events"]]
    assert "policy.decision" in kinds


def test_allow_from_the_dashboard_grants_once_and_the_agent_does_what_it_asked(served, workspace_dir):
    store, server = served
    agent_id = launch_sim(store, workspace_dir, "write the notes [sim: deny=write]", role=Role.REVIEWER)
    wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "denied",
               30, "the reviewer to be denied")
    assert not (workspace_dir / "sim-denied-write.txt").exists()
    r = server.post(f"/api/sessions/{store.id}/agents/{agent_id}/allow", headers={"X-Orch-Token": server.token})
    assert r.status_code == 200, r.text
    assert r.json()["rule"] and r.json()["agent"]["runs"] == 2
    wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "idle",
               30, "the reviewer to finish with the write")
    assert (workspace_dir / "sim-denied-write.txt").exists()
    assert any(e.action == "allowed" for e in store.read_audit())


def test_reads_from_another_site_are_refused_but_navigation_is_not(shared):
    store, server = shared
    assert server.get("/api/sessions", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert server.get("/api/sessions", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert server.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link to the page


def test_every_reply_carries_the_protective_headers(shared):
    store, server = shared
    for path in ("/", "/api/sessions", "/static/app.js", "/api/sessions/nope"):
        r = server.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "access-control-allow-origin" not in r.headers


def test_a_damaged_session_is_listed_not_fatal(served, workspace_dir):
    store, server = served
    broken = new_session(workspace_dir, goal="to be damaged")
    (broken.path / "session.json").write_text("{oops")
    rows = {r["id"]: r for r in server.get("/api/sessions").json()}
    assert rows[store.id]["state"] == "active" and rows[broken.id]["state"] == "unreadable"
    r = server.get(f"/api/sessions/{broken.id}")
    assert r.status_code == 500 and "session.json" in r.json()["error"]


# --------------------------------------------------------------------------- ids in paths


@pytest.mark.parametrize("path", [
    "/api/sessions/..",
    "/api/sessions/%2e%2e",
    "/api/sessions/..%2F..%2Fetc",
    "/api/sessions/.orch",
    "/api/sessions/{sid}/agents/..",
    "/api/sessions/{sid}/agents/%2e%2e/events",
    "/api/sessions/{sid}/agents/.lock",
    "/api/sessions/{sid}/reports/..%2Fsession.json",
    "/api/sessions/{sid}/reports/{token_file}",
    "/api/sessions/{sid}/reports/..",
    "/api/sessions/{sid}/stream/../../..",
    "/static/../server.py",
    "/static/%2e%2e/server.py",
    "/static/..%2fstore.py",
])
def test_path_ids_are_validated(shared, path):
    store, server = shared
    status, body = raw_get(server.port, path.format(sid=store.id, token_file=TOKEN_FILE), f"127.0.0.1:{server.port}")
    assert status in (400, 404), body
    assert server.token not in body and '"goal"' not in body


# --------------------------------------------------------------------------- nothing secret


def test_nothing_secret_is_served(workspace_dir, tmp_path):
    """Secrets planted in the server's environment, in raw log lines, in a report and in agent
    output never reach a response or the stream — and neither does the token."""
    secret_env_value = "s3cr3t-env-value-2f9c"
    github_shape = "ghp_" + "A1b2C3d4E5" * 4
    store = new_session(workspace_dir)
    # lines written around the store's own redaction, as a crashed or older writer might leave them
    raw = ('{"ts":"2026-01-01T00:00:00Z","kind":"note","reason":"leak %s and %s"}\n'
           % (secret_env_value, github_shape)).encode()
    append_lines(store.events_path, [raw])
    (store.reports_dir / "status.md").write_text(f"token {github_shape} env {secret_env_value}\n")
    agent_id = launch_sim(store, workspace_dir, f"echo this back: {github_shape}")
    env = {**os.environ, "ORCH_TEST_SERVICE_API_KEY": secret_env_value}
    server = start_server(env=env, session=store.id)
    try:
        wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "idle",
                   30, "the sim agent to finish")
        sid = store.id
        bodies = [server.get(p).text for p in (
            "/api/server", "/api/sessions", f"/api/sessions/{sid}", f"/api/sessions/{sid}/agents",
            f"/api/sessions/{sid}/agents/{agent_id}", f"/api/sessions/{sid}/events?from=0&limit=5000",
            f"/api/sessions/{sid}/events", f"/api/sessions/{sid}/agents/{agent_id}/events?from=0",
            f"/api/sessions/{sid}/blockers", f"/api/sessions/{sid}/reviews", f"/api/sessions/{sid}/reports",
            f"/api/sessions/{sid}/reports/status.md", "/", "/static/app.js")]

        async def stream_all() -> str:
            async with httpx.AsyncClient(timeout=30) as client:
                async with SSEStream(client, server, sid, params={"from": "0"}) as s:
                    await s.until_ready()
                    return repr([m.data for m in s.received])

        bodies.append(asyncio.run(stream_all()))
        blob = "\n".join(bodies)
        assert "leak [REDACTED]" in blob  # the planted line is served, masked
        for secret in (secret_env_value, github_shape, server.token):
            assert secret not in blob
    finally:
        server.stop()


def test_raising_the_budget_needs_the_token_and_a_sane_value(served, workspace_dir):
    store, server = served
    path = f"/api/sessions/{store.id}/budget"
    assert server.post(path, params={"value": "5"}).status_code == 401
    assert server.post(path, params={"value": "5"}, headers={"X-Orch-Token": "x" * 43}).status_code == 403
    bad = server.post(path, params={"value": "-1"}, headers={"X-Orch-Token": server.token})
    assert bad.status_code == 400 and "positive" in bad.json()["error"]
    assert not (workspace_dir / ".orch" / "policy.toml").exists()
    ok = server.post(path, params={"value": "5"}, headers={"X-Orch-Token": server.token})
    assert ok.status_code == 200 and ok.json()["budget"]["budget"]["session_usd"] == 5
    assert server.get(path).json()["limits"][0]["limit"] == 5
    assert [a.action for a in store.read_audit()] == ["budget_raised"]
