"""The dashboard's HTTP API and page: FastAPI routes over the session store.

Reads go straight to the store (through server_views and server_history, redacted);
opening a session also starts its live feed (server_feed), so its agents' output is
ingested while anyone looks. The stream is server_stream; the rules on who may call
what are server_guard. The three writes — abort an agent, allow or deny the action it
was blocked on — call the same engine functions as `orch abort`, `orch allow` and
`orch deny`, and need the session's token.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..core.errors import describe_os_error
from ..core.errors import CorruptFile, InvalidInput, NoSession, NotFound, OrchError, PolicyError
from ..core.lifecycle import IllegalTransition
from ..runtime.ingest import sync_agent
from ..recovery.recover import allow_pending, deny_pending
from ..safety.redaction import redact, redact_text
from ..review.engine import load_reviews
from .feed import FeedRegistry
from .guard import TOKEN_HEADER, RequestGuard, allowed_hosts, token_matches
from .history import DEFAULT_PAGE, MAX_PAGE, EventFilter, complete_end, read_page_backward, read_page_forward
from .stream import event_stream, parse_offset
from .views import agent_card, agent_cards, agent_detail, session_rows, session_view
from ..store.jsonsafe import dumps_text
from ..store.sessions import SessionStore, Workspace, validate_id
from ..runtime.finished import nothing_to_abort
from ..runtime.workers import abort_agent, require_agent

STATIC_DIR = Path(__file__).resolve().parent / "static"
REPORT_TYPES = {".md": "text/markdown; charset=utf-8", ".json": "application/json"}
ABORT_GRACE = 5.0

_STATUS = [(NotFound, 404), (NoSession, 404), (InvalidInput, 400), (PolicyError, 409), (CorruptFile, 500)]


class WriteRefused(Exception):
    """A write without the session's token (401) or with a wrong one (403)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": redact_text(message)}, status_code=status, headers={"Cache-Control": "no-store"})


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _json(data: Any) -> Response:
    """A JSON answer: redacted, and always JSON (no NaN or Infinity: store.jsonsafe)."""
    return Response(dumps_text(redact(data), compact=True), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def create_app(workspace: Workspace, *, port: int, bind_host: str = "127.0.0.1",
               default_session: Optional[str] = None, feeds: Optional[FeedRegistry] = None):
    """The dashboard as an ASGI app answering only to loopback names with this port."""
    feeds = feeds or FeedRegistry(workspace)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await run_in_threadpool(feeds.close)

    app = FastAPI(title="orch dashboard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.feeds = feeds

    @app.exception_handler(OrchError)
    async def _orch_error(_request: Request, exc: OrchError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        return _error(status, exc.message)

    @app.exception_handler(IllegalTransition)
    async def _illegal(_request: Request, exc: IllegalTransition) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(WriteRefused)
    async def _refused(_request: Request, exc: WriteRefused) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(OSError)
    async def _os_error(_request: Request, exc: OSError) -> JSONResponse:
        # a file replaced by a folder, unreadable, a full or read-only disk: one line, as the CLI says it
        return _error(500, describe_os_error(exc))

    @app.exception_handler(ValueError)
    async def _bad_value(_request: Request, exc: ValueError) -> JSONResponse:
        return _error(500, f"a file of the session could not be read: {first_line(exc)}")

    async def open_store(session_id: str) -> SessionStore:
        """The session (its id checked before any path is built), with its live feed running."""
        validate_id(session_id, "session")
        feed = await feeds.feed_for(session_id, run_in_threadpool)
        return feed.store

    def check_agent(store: SessionStore, agent_id: str) -> None:
        validate_id(agent_id, "agent")
        require_agent(store, agent_id)

    def require_token(request: Request, store: SessionStore) -> None:
        presented = request.headers.get(TOKEN_HEADER)
        if not presented:
            raise WriteRefused(401, f"this action needs the dashboard's token in the {TOKEN_HEADER} header "
                                    "(open the link `orch serve` printed)")
        if not token_matches(workspace.root, presented):
            raise WriteRefused(403, "wrong token for this workspace's dashboard")

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ reads
    @app.get("/api/server")
    async def server_info() -> JSONResponse:
        return _json({"version": __version__, "default_session": default_session, **feeds.stats()})

    @app.get("/api/sessions")
    async def sessions() -> JSONResponse:
        return _json(await run_in_threadpool(session_rows, workspace))

    @app.get("/api/sessions/{session_id}")
    async def session(session_id: str) -> JSONResponse:
        store = await open_store(session_id)

        def read() -> dict[str, Any]:
            return session_view(store.read_session()) | {"events_end": complete_end(store)}

        return _json(await run_in_threadpool(read))

    @app.get("/api/sessions/{session_id}/agents")
    async def agents(session_id: str) -> JSONResponse:
        store = await open_store(session_id)
        return _json(await run_in_threadpool(agent_cards, store))

    @app.get("/api/sessions/{session_id}/agents/{agent_id}")
    async def agent(session_id: str, agent_id: str) -> JSONResponse:
        store = await open_store(session_id)

        def read() -> dict[str, Any]:
            check_agent(store, agent_id)
            return agent_detail(store.read_agent(agent_id))

        return _json(await run_in_threadpool(read))

    async def events_page(store: SessionStore, agent_id: Optional[str], kind: Optional[str], from_: Optional[str],
                          before: Optional[str], limit: int) -> JSONResponse:
        start, end = parse_offset(from_, "from"), parse_offset(before, "before")
        if start is not None and end is not None:
            raise InvalidInput("give `from` (newer events) or `before` (older events), not both")
        kinds = frozenset(k.strip() for k in (kind or "").split(",") if k.strip())
        flt = EventFilter(agent=agent_id, kinds=kinds)
        if start is not None:
            page = await run_in_threadpool(read_page_forward, store, start, limit, flt)
        else:
            page = await run_in_threadpool(read_page_backward, store, end, limit, flt)
        # served_event redacted each event already; a second pass would double the cost of a page
        return JSONResponse(page.as_json(), headers={"Cache-Control": "no-store"})

    @app.get("/api/sessions/{session_id}/events")
    async def events(session_id: str, agent: Optional[str] = None, kind: Optional[str] = None,
                     from_: Optional[str] = Query(None, alias="from"), before: Optional[str] = None,
                     limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE)) -> JSONResponse:
        store = await open_store(session_id)
        if agent is not None:
            validate_id(agent, "agent")
        return await events_page(store, agent, kind, from_, before, limit)

    @app.get("/api/sessions/{session_id}/agents/{agent_id}/events")
    async def agent_events(session_id: str, agent_id: str, kind: Optional[str] = None,
                           from_: Optional[str] = Query(None, alias="from"), before: Optional[str] = None,
                           limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE)) -> JSONResponse:
        store = await open_store(session_id)
        await run_in_threadpool(check_agent, store, agent_id)
        return await events_page(store, agent_id, kind, from_, before, limit)

    @app.get("/api/sessions/{session_id}/blockers")
    async def blockers(session_id: str) -> JSONResponse:
        store = await open_store(session_id)
        return _json(await run_in_threadpool(lambda: session_view(store.read_session())["blockers"]))

    @app.get("/api/sessions/{session_id}/reviews")
    async def reviews(session_id: str) -> JSONResponse:
        store = await open_store(session_id)
        found = await run_in_threadpool(load_reviews, store)
        return _json([r.model_dump(mode="json") for r in found])

    @app.get("/api/sessions/{session_id}/reports")
    async def reports(session_id: str) -> JSONResponse:
        store = await open_store(session_id)

        def read() -> dict[str, Any]:
            from ..views.reports import build_report  # the whole log is read: only when asked

            files = sorted(p.name for p in store.reports_dir.glob("*")
                           if p.is_file() and p.suffix in REPORT_TYPES and not p.name.startswith("."))
            return {"files": files, "report": build_report(store).model_dump(mode="json")}

        return _json(await run_in_threadpool(read))

    @app.get("/api/sessions/{session_id}/reports/{name}")
    async def report_file(session_id: str, name: str) -> Response:
        store = await open_store(session_id)
        validate_id(name, "report")
        path = store.reports_dir / name
        if path.suffix not in REPORT_TYPES or not path.is_file():
            raise NotFound(f"no report {name!r} in session {session_id}")
        text = redact_text(await run_in_threadpool(path.read_text, "utf-8", "replace"))
        return Response(text, media_type=REPORT_TYPES[path.suffix], headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ the live stream
    @app.get("/api/sessions/{session_id}/stream")
    async def stream(request: Request, session_id: str, last_event_id: Optional[str] = None,
                     from_: Optional[str] = Query(None, alias="from")) -> StreamingResponse:
        validate_id(session_id, "session")
        header = request.headers.get("last-event-id")
        resume = parse_offset(header if header and header.strip() else last_event_id, "Last-Event-ID")
        start = parse_offset(from_, "from")
        feed = await feeds.feed_for(session_id, run_in_threadpool)
        return StreamingResponse(
            event_stream(feed, start, resume, run_in_threadpool), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ writes (token required)
    @app.post("/api/sessions/{session_id}/agents/{agent_id}/abort")
    async def abort(request: Request, session_id: str, agent_id: str) -> JSONResponse:
        store = await open_store(session_id)
        require_token(request, store)

        def run() -> dict[str, Any]:
            check_agent(store, agent_id)
            unchanged = nothing_to_abort(store.read_agent(agent_id))
            if unchanged:  # a finished agent's history is not rewritten as an abort
                return {**agent_card(store.read_agent(agent_id)), "aborted": False, "message": unchanged}
            abort_agent(store, agent_id, grace=ABORT_GRACE, reason="aborted from the dashboard")
            sync_agent(store, agent_id)
            return agent_card(store.read_agent(agent_id))

        return _json(await run_in_threadpool(run))

    @app.post("/api/sessions/{session_id}/agents/{agent_id}/allow")
    async def allow(request: Request, session_id: str, agent_id: str) -> JSONResponse:
        store = await open_store(session_id)
        require_token(request, store)

        def run() -> dict[str, Any]:
            check_agent(store, agent_id)
            agent, decision = allow_pending(store, agent_id)
            return {"agent": agent_card(agent), "rung": decision.grant.name, "rule": decision.rule}

        return _json(await run_in_threadpool(run))

    @app.post("/api/sessions/{session_id}/agents/{agent_id}/deny")
    async def deny(request: Request, session_id: str, agent_id: str, retire: bool = False) -> JSONResponse:
        store = await open_store(session_id)
        require_token(request, store)

        def run() -> dict[str, Any]:
            check_agent(store, agent_id)
            return {"agent": agent_card(deny_pending(store, agent_id, retire=retire)), "retired": retire}

        return _json(await run_in_threadpool(run))

    # ------------------------------------------------------------------ budget (spend/)
    @app.get("/api/sessions/{session_id}/budget")
    async def budget(session_id: str) -> JSONResponse:
        from ..spend.status import budget_status

        store = await open_store(session_id)
        return _json(await run_in_threadpool(lambda: budget_status(store)))

    @app.post("/api/sessions/{session_id}/budget")
    async def raise_budget_endpoint(request: Request, session_id: str, key: str = "session_usd",
                                    value: str = "") -> JSONResponse:
        from ..spend.raise_budget import parse_raise, raise_budget
        from ..spend.status import budget_status

        store = await open_store(session_id)
        require_token(request, store)

        def run() -> dict[str, Any]:
            changes = raise_budget(store, dict([parse_raise(f"{key}={value}")]))
            return {"changes": changes, "budget": budget_status(store)}

        return _json(await run_in_threadpool(run))

    return RequestGuard(app, allowed_hosts(bind_host, port))


class _StreamEndingServer(uvicorn.Server):
    """uvicorn's server, which also ends the open streams when it is asked to stop.

    Streams never end by themselves: without this a stopping server would wait out its
    grace period and then cancel them mid-response (with a traceback per stream)."""

    def __init__(self, config: uvicorn.Config, feeds: FeedRegistry):
        super().__init__(config)
        self.feeds = feeds

    def handle_exit(self, sig: int, frame) -> None:
        self.feeds.end_streams_soon()
        super().handle_exit(sig, frame)


def run_server(workspace: Workspace, sock: socket.socket, *, bind_host: str,
               default_session: Optional[str]) -> None:
    """Serve the dashboard on a bound socket until SIGINT or SIGTERM."""
    feeds = FeedRegistry(workspace)
    app = create_app(workspace, port=sock.getsockname()[1], bind_host=bind_host,
                     default_session=default_session, feeds=feeds)
    # No proxy headers: nothing sits in front of a loopback dashboard, so X-Forwarded-* would lie.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False,
                            timeout_graceful_shutdown=2, server_header=False)
    _StreamEndingServer(config, feeds).run(sockets=[sock])
