"""What a long-lived ingest keeps between batches: each agent as it last wrote it.

The ingest owner (daemon.py) syncs the same agents many times a second. Reading an agent
back means validating its whole meta.json — its runs, stats and cursor — only to find what
this process wrote a moment ago. The resident copy is used instead while meta.json is
still the file it wrote (same inode, size and time: every write replaces the file); any
other writer (a launch, a resume, an abort, a command that synced itself) makes it read
the file again.

Only what is on disk is kept — redacted, as written — and the run's parser, when its state
is exactly what was written (redacting it changed nothing): then it holds nothing the
file does not, and building it again from that state each batch would only cost time.
"""

from __future__ import annotations

from typing import Optional

from ...adapters import StreamParser
from ...core.models import Agent
from ...store.reread import file_key as _key
from ...store.sessions import SessionStore


class Resident:
    """Agents as this process last wrote them, keyed by the identity of their meta.json."""

    def __init__(self) -> None:
        self._agents: dict[str, tuple[tuple[int, int, int], Agent]] = {}
        self._parsers: dict[str, tuple[tuple[int, int, int], int, StreamParser]] = {}

    def read(self, store: SessionStore, agent_id: str) -> Agent:
        """The agent as stored: the resident copy while meta.json is unchanged, else read."""
        path = store.agent_file(agent_id, "meta.json")
        key = _key(path)
        held = self._agents.get(agent_id)
        if held is not None and key is not None and held[0] == key:
            return held[1]
        agent = store.read_agent(agent_id)
        if key is not None and _key(path) == key:  # not replaced while it was read
            self._agents[agent_id] = (key, agent)
        else:
            self._agents.pop(agent_id, None)
        return agent

    def wrote(self, store: SessionStore, agent: Agent) -> None:
        """This process has just written the agent's meta.json (under the agent's lock)."""
        key = _key(store.agent_file(agent.id, "meta.json"))
        if key is None:
            self._agents.pop(agent.id, None)
        else:
            self._agents[agent.id] = (key, agent)

    def written_by_me(self, store: SessionStore, agent_id: str) -> bool:
        """meta.json is the file this process wrote last."""
        held = self._agents.get(agent_id)
        return held is not None and held[0] == _key(store.agent_file(agent_id, "meta.json"))

    def parser(self, agent_id: str, run: int) -> Optional[StreamParser]:
        """The run's parser as this process left it, while the agent is the one it wrote."""
        kept = self._parsers.pop(agent_id, None)
        held = self._agents.get(agent_id)
        if kept is None or held is None or kept[0] != held[0] or kept[1] != run:
            return None
        return kept[2]

    def keep_parser(self, agent_id: str, run: int, parser: StreamParser) -> None:
        """Keep the run's parser for the next batch (its state is what was just written, unmasked)."""
        held = self._agents.get(agent_id)
        if held is not None:
            self._parsers[agent_id] = (held[0], run, parser)

    def forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)
        self._parsers.pop(agent_id, None)
