"""The live stream against a real `orch serve`: ingest, reconnects, many clients, a slow client."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from orchestrator.core.models import Event, EventKind
from orchestrator.dashboard.feed import MAX_PENDING, SessionFeed
from orchestrator.dashboard.stream import event_stream
from test_server_support import SSEParser, SSEStream, event_ids, launch_sim, new_session, start_server, wait_until


@pytest.fixture
def session_and_server(workspace_dir):
    store = new_session(workspace_dir)
    server = start_server(session=store.id)
    yield store, server
    server.stop()


def _notes(store, n: int, tag: str) -> list[int]:
    return store.append_events([Event(kind=EventKind.NOTE, reason=f"{tag} {i}") for i in range(n)])


def test_stream_opens_with_snapshots_then_replays_then_goes_live(session_and_server):
    store, server = session_and_server
    offsets = _notes(store, 3, "before")

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            async with SSEStream(client, server, store.id, params={"from": "0"}) as s:
                got = await s.until_ready()
                assert got[0].event == "session" and got[0].data["id"] == store.id
                assert event_ids(got)[0] == 0  # session.created
                assert event_ids(got)[-3:] == offsets
                live = _notes(store, 2, "live")
                got = await s.read_until(lambda g: set(live) <= set(event_ids(g)))
                ids = event_ids(got)
                assert ids == sorted(ids) and len(ids) == len(set(ids))
                note = next(m for m in got if m.id == live[1])
                assert note.data["kind"] == "note" and note.data["reason"] == "live 1" and note.data["id"] == live[1]

    asyncio.run(run())


def test_stream_without_position_starts_at_the_end(session_and_server):
    store, server = session_and_server
    old = _notes(store, 3, "old")

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            async with SSEStream(client, server, store.id) as s:
                await s.until_ready()
                new = _notes(store, 1, "new")
                got = await s.read_until(lambda g: new[0] in event_ids(g))
                assert not set(old) & set(event_ids(got))

    asyncio.run(run())


@pytest.mark.parametrize("how", ["header", "query", "header-beats-query"])
def test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(session_and_server, how):
    store, server = session_and_server
    first = _notes(store, 5, "first")

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            async with SSEStream(client, server, store.id, params={"from": "0"}) as s:
                got = await s.read_until(lambda g: first[-1] in event_ids(g))
            seen = event_ids(got)
            last = first[2]  # the client "lost" the last two: it reconnects from the third
            missed = _notes(store, 7, "while away")  # written while no client is connected
            headers, params = {}, {}
            if how == "header":
                headers["Last-Event-ID"] = str(last)
            elif how == "query":
                params["last_event_id"] = str(last)
            else:
                headers["Last-Event-ID"] = str(last)
                params["last_event_id"] = "0"
            async with SSEStream(client, server, store.id, headers=headers, params=params) as s:
                got = await s.until_ready()
                replayed = event_ids(got)
                assert replayed == first[3:] + missed
                after = _notes(store, 3, "after")
                got = await s.read_until(lambda g: after[-1] in event_ids(g))
                assert event_ids(got) == first[3:] + missed + after
            assert seen == [0] + first

    asyncio.run(run())


def test_bad_last_event_id_is_a_clear_400(session_and_server):
    store, server = session_and_server
    r = server.get(f"/api/sessions/{store.id}/stream", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 400 and "event id" in r.json()["error"]


def test_the_server_ingests_agent_output_as_it_is_written(session_and_server, workspace_dir):
    """Nothing but the server runs ingest here: lines reach the stream, then the exit and idle state."""
    store, server = session_and_server

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            async with SSEStream(client, server, store.id) as s:
                await s.until_ready()
                agent_id = launch_sim(store, workspace_dir, "stream [sim: lines=30 interval=0.03]")

                def finished(got):
                    return any(m.event == "agent" and m.data["id"] == agent_id and m.data["state"] == "idle"
                               for m in got)

                got = await s.read_until(finished, timeout=30)
        texts = [m.data["data"].get("text", "") for m in got
                 if m.event == "event" and m.data["kind"] == "agent.output" and m.data.get("agent") == agent_id]
        lines = [t for t in texts if t.startswith("line ")]
        assert lines == [f"line {i} of a steady stream" for i in range(30)]
        kinds = [m.data["kind"] for m in got if m.event == "event" and m.data.get("agent") == agent_id]
        assert "agent.exited" in kinds
        states = [m.data["state"] for m in got if m.event == "agent" and m.data["id"] == agent_id]
        assert states[-1] == "idle" and "running" in states
        card = [m.data for m in got if m.event == "agent" and m.data["id"] == agent_id][-1]
        assert card["usage"]["output_tokens"] > 0 and card["exit_code"] == 0

    asyncio.run(run())


def test_a_hundred_concurrent_clients_share_one_feed_and_all_get_every_event(session_and_server):
    store, server = session_and_server
    clients = 100

    async def one(client: httpx.AsyncClient, ready: asyncio.Queue, go: asyncio.Event, out: list):
        async with SSEStream(client, server, store.id) as s:
            await s.until_ready(timeout=60)
            await ready.put(1)
            await go.wait()
            await s.read_until(lambda g: len(event_ids(g)) >= 20, timeout=60)
            out.append(event_ids(s.received))

    async def run():
        limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            ready: asyncio.Queue = asyncio.Queue()
            go = asyncio.Event()
            out: list = []
            tasks = [asyncio.create_task(one(client, ready, go, out)) for _ in range(clients)]
            for _ in range(clients):
                await asyncio.wait_for(ready.get(), 60)
            info = (await client.get(server.api("/api/server"))).json()
            assert info["clients"] == clients and info["feeds"] == 1
            sent = await asyncio.to_thread(_notes, store, 20, "fan-out")
            go.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 90)
            assert len(out) == clients
            assert all(ids[:20] == sent for ids in out)
            # every connection closed: the server forgets them
            async def settled():
                return (await client.get(server.api("/api/server"))).json()["clients"] == 0
            deadline = asyncio.get_running_loop().time() + 15
            while not await settled():
                assert asyncio.get_running_loop().time() < deadline, "the server kept closed clients"
                await asyncio.sleep(0.05)

    asyncio.run(run())


def test_a_client_that_falls_behind_catches_up_from_the_log(workspace_dir):
    """A client that stops reading while more than MAX_PENDING events arrive is not queued for
    without bound: it is sent back to the file, and still gets every event once, in order.
    (In-process: the client is the stream generator itself, left suspended at a yield, which
    is what a stalled socket does to it without 10 MB of kernel buffers to fill first.)"""
    store = new_session(workspace_dir)

    async def run():
        feed = SessionFeed(store, asyncio.get_running_loop())
        await asyncio.to_thread(feed.start)
        try:
            stream = event_stream(feed, None, None, asyncio.to_thread)
            parser = SSEParser()
            got = []
            while not any(m.event == "ready" for m in got):
                got += parser.feed((await stream.__anext__()).decode())
            sent = await asyncio.to_thread(_notes, store, MAX_PENDING + 1000, "burst")
            deadline = asyncio.get_running_loop().time() + 60
            while feed.catch_ups == 0:
                assert asyncio.get_running_loop().time() < deadline, "the stalled client was never sent back"
                await asyncio.sleep(0.05)
            while sent[-1] not in event_ids(got):
                got += parser.feed((await asyncio.wait_for(stream.__anext__(), 30)).decode())
            assert event_ids(got) == sent
            await stream.aclose()
            assert not feed.subscribers
        finally:
            feed.stop()
            await asyncio.to_thread(feed.join)

    asyncio.run(run())


def test_feed_survives_a_damaged_agent_meta(session_and_server, workspace_dir):
    store, server = session_and_server
    agent_id = launch_sim(store, workspace_dir, "quick")
    wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "idle",
               30, "the agent to finish")
    (store.agent_dir(agent_id) / "meta.json").write_text("{not json")
    offsets = _notes(store, 1, "still alive")

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            async with SSEStream(client, server, store.id, params={"from": str(offsets[0])}) as s:
                got = await s.until_ready()
                assert event_ids(got) == offsets

    r = server.get(f"/api/sessions/{store.id}/agents/{agent_id}")
    assert r.status_code == 500 and "meta.json" in r.json()["error"]
    wait_until(lambda: server.proc.poll() is None, 1, "the server to stay up")


def test_a_silent_agent_does_not_make_the_feed_spin(workspace_dir, monkeypatch):
    """Between file events the feed sleeps until a deadline; an agent already silent has none
    left, so only the 2 s liveness check wakes it."""
    monkeypatch.setenv("ORCH_SILENT_AFTER", "0.5")
    store = new_session(workspace_dir)
    agent_id = launch_sim(store, workspace_dir, "think [sim: stall=60]")
    server = start_server(session=store.id)
    try:
        wait_until(lambda: server.get(f"/api/sessions/{store.id}/agents/{agent_id}").json()["state"] == "silent",
                   20, "the agent to go silent")
        before = server.get("/api/server").json()["wakeups"]
        time.sleep(3.0)  # measuring a quiet interval, not waiting for anything
        woke = server.get("/api/server").json()["wakeups"] - before
        assert woke <= 4, f"the feed woke {woke} times in 3 s with nothing happening"
    finally:
        server.stop()


def test_stopping_the_server_ends_open_streams_cleanly(session_and_server):
    """Ctrl-C with pages open: each stream is finished (the browser reconnects elsewhere
    with Last-Event-ID), the server exits at once, and prints no traceback."""
    store, server = session_and_server

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            streams = [SSEStream(client, server, store.id) for _ in range(3)]
            for s in streams:
                await s.__aenter__()
                await s.until_ready()
            server.proc.send_signal(signal.SIGINT)
            for s in streams:  # the body ends normally: no read error, no hang
                async for _ in s._chunks:
                    pass
                await s.__aexit__(None, None, None)
            await asyncio.to_thread(server.proc.wait, 60)

    asyncio.run(run())  # server.proc.wait raises if open streams hold the server up
    assert server.proc.returncode == 0
    assert not [line for line in server.stderr_lines if "Traceback" in line or "ERROR" in line], server.stderr_lines
