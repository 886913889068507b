"""The session folder on disk: the single source of truth.

    <state root>/                 $ORCH_HOME, else the nearest .orch above the cwd, else ./.orch
      active                      id of the workspace's active session
      .active.lock                held while a launch finds or creates it (one new session, however many)
      policy.toml                 the safety policy (optional)
      sessions/<id>/
        session.json              snapshot, written atomically
        events.jsonl              append-only; an event's id is its byte offset
        audit.jsonl               permission changes
        wait.json                 where the previous `orch wait` stopped
        bell                      replaced whenever an event a waiter acts on is appended
        ingest.json               the session's ingest owner (runtime/owner.py), .ingest.lock its election
        agents/<agent>/           meta.json, stdout.jsonl, stderr.log, run-<n>.json, .lock
        reviews/                  <review>.json and .md
        reports/                  status.md, session-report.md, session-report.json

Writes are atomic (temp file + rename) and guarded by flock so that any number of orch
commands can run at once; a SIGKILL at any moment leaves either the old or the new file.
Lock order, outermost first: step → session → agent → events.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import secrets
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, TypeVar

from pydantic import BaseModel, ValidationError

from ..core.errors import CorruptFile, InvalidInput, NoSession, NotFound, OrchError
from ..core.meaningful import is_meaningful
from ..core.models import Agent, AuditEntry, Event, NotifyCursor, Session, WaitCursor, is_valid_id, now
from .paths import active_id, agent_ids, state_root
from ..safety.redaction import redact, redact_all
from .jsonsafe import dumps_line, model_json
from .git_exclude import exclude_state_dir
from .event_scan import EventScan

M = TypeVar("M", bound=BaseModel)



# --------------------------------------------------------------------------- primitives


_exchange_fn = None


def _exchange(src: str, dst: str) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where unsupported.

    Replacing a file by rename makes ext4 flush the new data first (its replace-via-rename
    heuristic): 1.3 ms a write on this kind of machine. Swapping, then unlinking the old
    copy, keeps the same old-or-new guarantee for readers at a twentieth of the cost.
    """
    global _exchange_fn
    if _exchange_fn is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _exchange_fn = fn
        except (OSError, AttributeError):
            _exchange_fn = False
    if not _exchange_fn:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return _exchange_fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_exchange) == 0


def _open_creating_folder(path: "str | Path", flags: int, mode: int) -> int:
    """os.open, making the file's folder first when it is missing (only then: a write a second
    must not pay a mkdir each time)."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, mode)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a mix. Whatever is at
    path that is not a file (a folder put there by hand) is never swapped away: that is an error."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise CorruptFile(f"{path} is a folder, not a file; move it aside")
    # One temp name per writing thread: no other writer can hold it, so no O_EXCL retries.
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = _open_creating_folder(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if _exchange(tmp, str(path)):
            os.unlink(tmp)  # now holds the old content
        else:  # no file there yet, or no renameat2: a plain rename
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_model(path: Path, model: BaseModel) -> None:
    atomic_write_bytes(path, model_json(model) + b"\n")


def agent_bytes(agent: Agent) -> bytes:
    """An agent's meta.json content."""
    return model_json(agent) + b"\n"


def read_model(path: Path, cls: type[M]) -> M:
    """Load a model from a JSON file; a damaged file is an error that names it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist") from None
    try:
        return cls.model_validate_json(data)
    except (ValidationError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CorruptFile(f"{path} is not a valid {cls.__name__} file ({first}); restore it or move it aside") from None


READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def open_lock_file(path: Path) -> tuple[int, Optional[OSError]]:
    """An fd to flock for path: the lock file, created if missing — or, on a store nobody may write
    (a read-only mount), the file (or its folder) opened for reading, with the error a write would
    meet: a reader of a finished session needs no write, and a writer gets that one-line error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), None
    except OSError as e:
        if e.errno not in READ_ONLY_ERRNOS:
            raise
        try:
            return os.open(path if path.exists() else path.parent, os.O_RDONLY), e
        except OSError:
            raise e from None


@contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an flock on path (created if missing) for the duration of the block."""
    fd, _ = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append_lines(path: Path, lines: list[bytes]) -> list[int]:
    """Append complete lines in one write; return the byte offset of each.

    The caller holds the file's lock. A torn last line (a writer killed mid-line in some
    earlier life) is closed with a newline first so it cannot swallow the next one.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        offsets = []
        pos = size + len(prefix)
        for line in lines:
            offsets.append(pos)
            pos += len(line)
        data = prefix + b"".join(lines)
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            os.ftruncate(fd, size)  # a full disk: no torn line, the log as it was
            raise
        return offsets
    finally:
        os.close(fd)


def event_line(event: Event) -> bytes:
    """Serialize an event as one redacted JSON line."""
    data = event.model_dump(mode="json", exclude_none=True)
    return dumps_line(redact(data))


_reported: list[str] = []


def report_damaged(error: OrchError) -> None:
    """Say, once and on stderr as the command ends, that a damaged file was skipped (reads
    never repair or rewrite it); not at all when the command fails with that same error."""
    message = error.format_message()
    if message not in _reported:
        if not _reported:
            atexit.register(_print_reports)
        _reported.append(message)


def _print_reports() -> None:
    from ..core.errors import SHOWN

    for message in _reported:
        if message not in SHOWN:
            sys.stderr.write(f"orch: skipped {message}\n")


def validate_id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise InvalidInput(f"invalid {what} id {value!r}: use letters, digits, '.', '_' and '-'")
    return value


# --------------------------------------------------------------------------- workspace


class Workspace:
    """The state root: its sessions and which one is active."""

    def __init__(self, root: Optional[Path] = None):
        self.root = root or state_root()

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def policy_path(self) -> Path:
        return self.root / "policy.toml"

    def session_ids(self) -> list[str]:
        if not self.sessions_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.sessions_dir.iterdir() if (p / "session.json").is_file()
        )

    def active_id(self) -> Optional[str]:
        return active_id(self.root)

    def set_active(self, session_id: str) -> None:
        atomic_write_bytes(self.root / "active", session_id.encode() + b"\n")

    def open(self, session_id: str) -> "SessionStore":
        validate_id(session_id, "session")
        d = self.sessions_dir / session_id
        if not (d / "session.json").is_file():
            raise NotFound(f"no session {session_id!r} under {self.sessions_dir}")
        return SessionStore(d)

    def resolve(self, session_id: Optional[str]) -> "SessionStore":
        """The named session, else the active one; NoSession when there is none."""
        if session_id:
            return self.open(session_id)
        active = self.active_id()
        if active is None:
            raise NoSession(
                f"no active orch session in {self.root.parent}: start one with "
                "`orch start GOAL` (or `orch launch ...`), or pass --session"
            )
        return self.open(active)

    def create(self, workspace_dir: Path, goal: str = "", activate: bool = True, **fields) -> "SessionStore":
        """Make a new session folder and (by default) make it the active one."""
        stamp = now().strftime("%Y%m%d-%H%M%S")
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        while True:  # the folder's creation claims the id: two sessions in one second may draw the same suffix
            session_id = f"{stamp}-{secrets.token_hex(2)}"
            d = self.sessions_dir / session_id
            try:
                d.mkdir()
                break
            except FileExistsError:
                continue
        (d / "agents").mkdir()
        exclude_state_dir(self.root)  # `git status` stays clean
        (d / "reviews").mkdir()
        (d / "reports").mkdir()
        session = Session(id=session_id, goal=goal, workspace=str(workspace_dir), **fields)
        store = SessionStore(d)
        store.write_session(session)
        store.append_event(Event(kind="session.created", data={"goal": goal, "workspace": str(workspace_dir)}))
        if activate:
            self.set_active(session_id)
        return store

    def resolve_or_create(self, session_id: Optional[str], workspace_dir: Path) -> tuple["SessionStore", Optional[Session]]:
        """The named or active session, else a new one (`orch launch`): claimed once, under the
        workspace's lock, so any number of first launches at once share one new session.

        The second item is the active session when it was not active: a stopped or paused one
        is returned as it is, with nothing created (the caller refuses: a new session would
        hide it), a finished one (complete, aborted) is followed by a new session."""
        if session_id:
            return self.open(session_id), None
        with file_lock(self.root / ".active.lock"):
            active = self.active_id()
            if active is None:
                return self.create(workspace_dir), None
            store = self.open(active)
            session = store.read_session()
            if session.state.value == "active":
                return store, None
            if session.state.value in ("stopped", "paused"):
                return store, session
            return self.create(workspace_dir), session


# --------------------------------------------------------------------------- one session


class ReadOnlyStore(OrchError):
    """A write was asked of a store opened for reading (a view, the criteria, a GET)."""


class SessionStore:
    """Reads and writes one session folder (reads only, when opened with read_only=True)."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self.id = path.name
        self.read_only = read_only
        self._agent_dirs: dict[str, Path] = {}
        self._agent_files: dict[tuple[str, str], Path] = {}
        self.events_path = path / "events.jsonl"
        self._events_lock = path / ".events.lock"

    def reader(self) -> "SessionStore":
        """The same session, for code that must only read: any write raises ReadOnlyStore."""
        return SessionStore(self.path, read_only=True)

    def _writing(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyStore(f"refused to write {what} of session {self.id}: this store was opened read-only")

    # -- locks
    def lock(self) -> "contextmanager":
        self._writing("the session lock")
        return file_lock(self.path / ".lock")

    def step_lock(self) -> "contextmanager":
        self._writing("the step lock")
        return file_lock(self.path / ".step.lock")

    def agent_lock(self, agent_id: str) -> "AgentLock":
        """The agent's lock; taking it first settles any batch a killed ingest left half-done."""
        self._writing(f"agent {agent_id}'s lock")
        return AgentLock(self, agent_id)

    # -- session.json
    @property
    def session_path(self) -> Path:
        return self.path / "session.json"

    def read_session(self) -> Session:
        return read_model(self.session_path, Session)

    def write_session(self, session: Session) -> None:
        self._writing("session.json")
        session.updated_at = now()
        atomic_write_model(self.session_path, session)

    @contextmanager
    def edit_session(self) -> Iterator[Session]:
        """Read-modify-write session.json under the session lock."""
        with self.lock():
            session = self.read_session()
            yield session
            self.write_session(session)

    # -- events.jsonl
    def append_event(self, event: Event) -> int:
        return self.append_events([event])[0]

    def append_events(self, events: list[Event], ring: bool = True) -> list[int]:
        """Append events (one write); ring the bell when one is worth a waiter's attention —
        `ring=False` for a caller that writes more first (the meta of the same batch) and rings then."""
        if not events:
            return []
        self._writing("events.jsonl")
        lines = [dumps_line(d) for d in redact_all([e.model_dump(mode="json", exclude_none=True) for e in events])]
        with file_lock(self._events_lock):
            offsets = append_lines(self.events_path, lines)
        if ring:
            self.ring(events)
        return offsets

    def ring(self, events: list[Event]) -> None:
        """Replace the bell when an event a waiter acts on was appended: a waiter that leaves the
        ingest to the session's owner watches this one file, not every line the agents print."""
        if any(is_meaningful(e) for e in events):
            atomic_write_bytes(self.path / "bell", b"")

    def events_size(self) -> int:
        try:
            return self.events_path.stat().st_size
        except FileNotFoundError:
            return 0

    def read_events(self, offset: int = 0, limit: Optional[int] = None) -> list[tuple[int, Event]]:
        """Events from byte offset on (a torn last line is left for later)."""
        return self.read_events_to_end(offset, limit)[0]

    def read_events_to_end(self, offset: int = 0, limit: Optional[int] = None) -> tuple[list[tuple[int, Event]], int]:
        """Events from byte offset on, and the offset just past the last complete line read."""
        scan = self.scan_events(offset, limit=limit)
        return list(scan), scan.end

    def scan_events(self, offset: int = 0, agent: Optional[str] = None, limit: Optional[int] = None,
                    kinds: Optional[Iterable[str]] = None) -> EventScan:
        """The events from byte offset on (one agent's, with `agent`; of these kinds, with `kinds`),
        read one at a time."""
        return EventScan(self.events_path, offset, agent, limit, kinds)

    # -- agents
    def agent_dir(self, agent_id: str) -> Path:
        folder = self._agent_dirs.get(agent_id)
        if folder is None:  # checked and joined once per agent: the ingest asks many times a second
            validate_id(agent_id, "agent")
            folder = self._agent_dirs[agent_id] = self.path / "agents" / agent_id
        return folder

    def agent_file(self, agent_id: str, name: str) -> Path:
        """A file of the agent's folder (the path made once: the ingest asks many times a second)."""
        key = (agent_id, name)
        path = self._agent_files.get(key)
        if path is None:
            if len(self._agent_files) > 4096:
                self._agent_files.clear()
            path = self._agent_files[key] = self.agent_dir(agent_id) / name
        return path

    def agent_ids(self) -> list[str]:
        return agent_ids(self.path)

    def read_agent(self, agent_id: str) -> Agent:
        path = self.agent_file(agent_id, "meta.json")
        if not os.path.lexists(path):
            raise NotFound(f"no agent {agent_id!r} in session {self.id}")
        if not path.is_file():
            raise CorruptFile(f"{path} is not a file; restore it or move it aside")
        return read_model(path, Agent)

    def write_agent(self, agent: Agent, data: Optional[bytes] = None) -> None:
        """Save an agent's meta.json (data: the agent already serialized by agent_bytes)."""
        self._writing(f"agent {agent.id}'s meta.json")
        atomic_write_bytes(self.agent_file(agent.id, "meta.json"), data if data is not None else agent_bytes(agent))

    def agents(self) -> list[Agent]:
        """Every agent whose meta.json reads; a damaged one is reported and skipped, so that
        one agent's file never blocks commands on the others (the criteria count it)."""
        out = []
        for agent_id in self.agent_ids():
            try:
                out.append(self.read_agent(agent_id))
            except CorruptFile as e:
                report_damaged(e)
        return out

    @contextmanager
    def edit_agent(self, agent_id: str) -> Iterator[Agent]:
        with self.agent_lock(agent_id):
            agent = self.read_agent(agent_id)
            yield agent
            self.write_agent(agent)

    @contextmanager
    def change_agent(self, agent_id: str) -> Iterator[tuple[Agent, list[Event]]]:
        """Read-modify-write meta.json with the events that record the change, as one batch
        (AgentLock.commit): a SIGKILL leaves both or neither."""
        with self.agent_lock(agent_id) as lock:
            agent = self.read_agent(agent_id)
            events: list[Event] = []
            yield agent, events
            lock.commit(agent, [e for e in events if e is not None])

    # -- wait cursor, audit
    def read_wait_cursor(self) -> WaitCursor:
        path = self.path / "wait.json"
        return read_model(path, WaitCursor) if path.is_file() else WaitCursor()

    def write_wait_cursor(self, cursor: WaitCursor) -> None:
        """Keep where this wait stopped. On a store nobody may write (a read-only mount of a finished
        session) it is not kept: the next wait repeats what this one saw, and nothing else changes."""
        self._write_cursor("wait.json", cursor)

    def _write_cursor(self, name: str, cursor) -> None:
        """A reader's cursor, kept where the store may be written and silently not elsewhere."""
        self._writing(name)
        try:
            atomic_write_model(self.path / name, cursor)
        except OSError as e:
            if e.errno not in READ_ONLY_ERRNOS:
                raise

    def notify_lock(self) -> "contextmanager":
        """Held while notifications read the log and move their cursor: one reader at a time."""
        self._writing("the notify lock")
        return file_lock(self.path / ".notify.lock")

    def read_notify_cursor(self) -> NotifyCursor:
        """How far notifications have read the log; from the start when none is kept (or it is damaged)."""
        try:
            return read_model(self.path / "notify.json", NotifyCursor)
        except (NotFound, CorruptFile, OSError):
            return NotifyCursor()

    def write_notify_cursor(self, cursor: NotifyCursor) -> None:
        """Keep how far notifications have read (not on a store nobody may write: see write_wait_cursor)."""
        self._write_cursor("notify.json", cursor)

    def append_audit(self, entry: AuditEntry) -> None:
        self._writing("audit.jsonl")
        line = dumps_line(redact(entry.model_dump(mode="json")))
        with file_lock(self.path / ".audit.lock"):
            append_lines(self.path / "audit.jsonl", [line])

    def read_audit(self) -> list[AuditEntry]:
        path = self.path / "audit.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_bytes().splitlines():
            try:
                out.append(AuditEntry.model_validate_json(line))
            except (ValidationError, ValueError):
                continue
        return out

    # -- reviews, reports
    def write_file(self, path: Path, data: bytes) -> None:
        """Write a file of the session folder (a review, a report) atomically."""
        self._writing(path.name)
        atomic_write_bytes(path, data)

    @property
    def reviews_dir(self) -> Path:
        return self.path / "reviews"

    @property
    def reports_dir(self) -> Path:
        return self.path / "reports"


class AgentLock:
    """An agent's flock, whose file also records a batch of events being committed.

    The ingest commits a batch as: record {token, events size, the meta after} in the lock
    file, append the events, write meta.json, clear the record. Whoever takes the lock
    after a kill in between finds the record and looks for the token in events.jsonl:
    found, the batch landed and the recorded meta is the truth; not found, nothing landed
    and meta.json still is. So no event is lost or appended twice, and no one writes a
    meta that a half-done batch would later overwrite.
    """

    def __init__(self, store: "SessionStore", agent_id: str):
        self.store = store
        self.agent_id = agent_id
        self.path = store.agent_file(agent_id, ".lock")
        self.fd = -1
        self.read_only: Optional[OSError] = None

    def __enter__(self) -> "AgentLock":
        self.fd, self.read_only = open_lock_file(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if self.read_only is None and os.fstat(self.fd).st_size:
                self._settle()
            elif self.read_only is not None and self.path.is_file() and self.path.stat().st_size:
                raise self.read_only  # a batch to settle, and no way to: the store cannot be written
        except BaseException:  # e.g. events.jsonl unreadable while settling: never keep the lock
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    def _settle(self) -> None:
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, size, 0)
        header, _, meta = data.partition(b"\n")
        try:
            info = json.loads(header)
            token = str(info["token"])
            events_size, meta_bytes = int(info["events_size"]), int(info["meta_bytes"])
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            info = None  # torn while being written (the append had not started), or damaged
        if isinstance(info, dict) and meta and events_size >= 0:
            try:
                with open(self.store.events_path, "rb") as f:
                    f.seek(events_size)
                    landed = token.encode() in f.read()
            except FileNotFoundError:
                landed = False
            if landed and meta_bytes == len(meta) and _is_agent(meta, self.agent_id):
                atomic_write_bytes(self.store.agent_dir(self.agent_id) / "meta.json", meta)
                atomic_write_bytes(self.store.path / "bell", b"")  # the killed writer never rang it
        self.clear()

    def hold(self, token: str, events_size: int, meta: bytes) -> None:
        """Record a batch about to be appended: its token, where the log ended, the meta after it."""
        if self.read_only is not None:
            raise self.read_only
        header = json.dumps({"token": token, "events_size": events_size, "meta_bytes": len(meta)}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, header + b"\n" + meta, 0)

    def clear(self) -> None:
        if self.read_only is None:
            os.ftruncate(self.fd, 0)

    def commit(self, agent: Agent, events: list[Event]) -> None:
        """Save the agent and append its events as one: both land, or (a kill in between,
        settled by the next holder) neither. The caller holds this lock."""
        if not events:
            self.store.write_agent(agent)
            return
        token = secrets.token_hex(16)
        events[-1].data["batch"] = token  # what _settle looks for in the log
        meta = agent_bytes(agent)
        self.hold(token, self.store.events_size(), meta)
        self.store.append_events(events, ring=False)
        self.store.write_agent(agent, meta)
        self.store.ring(events)  # after the meta: a waiter it wakes reads both
        self.clear()


def _is_agent(meta: bytes, agent_id: str) -> bool:
    """Whether recorded bytes are this agent's meta.json: never copy unchecked bytes over it."""
    try:
        return Agent.model_validate_json(meta).id == agent_id
    except (ValidationError, ValueError):
        return False
