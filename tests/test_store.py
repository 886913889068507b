"""The store's guarantees with real files: atomic replaces, torn lines, exactly-once commits."""

from __future__ import annotations

import json
import threading

import pytest

from orchestrator.core.errors import InvalidInput, NoSession
from orchestrator.core.models import Agent, Event, EventKind, Permission, Role
from orchestrator.store.sessions import SessionStore, Workspace, agent_bytes, append_lines, atomic_write_bytes


def test_readers_see_the_old_or_the_new_file_never_a_mix(tmp_path):
    path = tmp_path / "meta.json"
    a, b = b"A" * 300_000, b"B" * 200_000
    atomic_write_bytes(path, a)
    stop, reads, torn = threading.Event(), [0], []

    def read():
        while not stop.is_set():
            data = path.read_bytes()
            reads[0] += 1
            if data not in (a, b):
                torn.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        atomic_write_bytes(path, a if i % 2 else b)
    stop.set()
    reader.join()
    assert reads[0] > 10 and torn == []
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_an_append_after_a_torn_line_starts_on_a_line_of_its_own(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"ok": 1}\n{"torn by a ki')
    offsets = append_lines(path, [b'{"next": 2}\n'])
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"torn by a ki' and lines[2] == b'{"next": 2}'
    assert path.read_bytes()[offsets[0]:].startswith(b'{"next": 2}')


def _store_with_agent(tmp_path) -> tuple[SessionStore, Agent]:
    store = Workspace(tmp_path / ".orch").create(tmp_path)
    agent = Agent(id="worker-1", session=store.id, role=Role.WORKER, cli="sim", permission=Permission.READ,
                  cwd=str(tmp_path))
    store.agent_dir(agent.id).mkdir(parents=True)
    store.write_agent(agent)
    return store, agent


@pytest.mark.parametrize("landed", [True, False])
def test_a_batch_killed_between_append_and_meta_write_is_settled_by_the_next_lock(tmp_path, landed):
    store, agent = _store_with_agent(tmp_path)
    after = agent.model_copy(deep=True)
    after.stats.tool_calls = 7
    with store.agent_lock(agent.id) as lock:
        lock.hold("tok123", store.events_size(), agent_bytes(after))
        if landed:
            store.append_event(Event(kind=EventKind.NOTE, data={"ingest": "tok123"}))
        # killed here: meta.json not written, the record not cleared
    with store.agent_lock(agent.id):
        settled = store.read_agent(agent.id)
    assert settled.stats.tool_calls == (7 if landed else 0)
    assert (store.agent_dir(agent.id) / ".lock").stat().st_size == 0


def test_a_half_written_record_means_nothing_landed(tmp_path):
    store, agent = _store_with_agent(tmp_path)
    (store.agent_dir(agent.id) / ".lock").write_bytes(b'{"token": "tok", "events_si')
    with store.agent_lock(agent.id):
        assert store.read_agent(agent.id).stats.tool_calls == 0


@pytest.mark.parametrize("bad", ["../x", "..", ".hidden", "a/b", "", "x" * 200, "a\x00b"])
def test_hostile_ids_are_refused(tmp_path, bad):
    store, _ = _store_with_agent(tmp_path)
    with pytest.raises(InvalidInput):
        store.agent_dir(bad)
    with pytest.raises(InvalidInput):
        Workspace(tmp_path / ".orch").open(bad)


def test_no_active_session_is_a_clear_error(tmp_path):
    with pytest.raises(NoSession, match="orch start"):
        Workspace(tmp_path / ".orch").resolve(None)


def test_event_ids_are_byte_offsets(tmp_path):
    store, _ = _store_with_agent(tmp_path)
    first = store.append_event(Event(kind=EventKind.NOTE, reason="one"))
    second = store.append_event(Event(kind=EventKind.NOTE, reason="two"))
    events = dict(store.read_events())
    assert events[first].reason == "one" and events[second].reason == "two"
    assert json.loads(store.events_path.read_bytes()[second:].split(b"\n")[0])["reason"] == "two"


def test_sessions_created_in_the_same_second_never_share_an_id(tmp_path):
    """An id is a second's stamp and a 16-bit suffix: many sessions a second draw the same
    suffix now and then, and the later one takes another instead of failing."""

    ws = Workspace(tmp_path / ".orch")
    ids = [ws.create(tmp_path, activate=False).id for _ in range(1500)]
    assert len(set(ids)) == len(ids)


def test_a_waiter_reads_a_state_file_again_only_when_it_was_replaced(tmp_path):
    """store/reread.py: orch replaces state files whole, so an unchanged inode, mtime and size
    means the value read last still holds — even a same-size rewrite is seen (a new inode)."""
    from orchestrator.store.reread import Reread

    path = tmp_path / "meta.json"
    loads: list[bytes] = []

    def load(p):
        loads.append(p.read_bytes())
        return json.loads(loads[-1])

    files = Reread()
    assert files.get("a", path, load) is None and files.replaced("a", path) is False  # not there yet
    atomic_write_bytes(path, b'{"n": 1}')
    assert files.get("a", path, load) == {"n": 1} and files.get("a", path, load) == {"n": 1}
    assert len(loads) == 1
    atomic_write_bytes(path, b'{"n": 2}')  # the same size, another file
    assert files.get("a", path, load) == {"n": 2} and len(loads) == 2
    path.write_bytes(b"not json")  # a load that fails is tried again at the next ask
    with pytest.raises(ValueError):
        files.get("a", path, load)
    with pytest.raises(ValueError):
        files.get("a", path, load)
    atomic_write_bytes(path, b'{"n": 3}')
    assert files.get("a", path, load) == {"n": 3}
    assert files.replaced("b", path) is True and files.replaced("b", path) is False  # each name its own
    path.unlink()
    assert files.get("a", path, load) is None
