"""The one small interface every CLI adapter implements.

An adapter knows three things about its CLI: how to build a headless command line for a
role, a prompt, a folder and a grant (and the resume form of it), how to turn its raw
output lines into normalized AgentEvents, and how its permissions climb (the ladder).
"""

from __future__ import annotations

import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..core.errors import CliMissing
from ..core.models import AgentEvent, AgentEventKind, Denial, LimitNotice, Outcome, Permission, Role, RunSummary


#: Raw output that could change what the conductor does now — a refusal, an error, a limit,
#: a result, a session starting — in any CLI's words. The ingest commits an agent whose new
#: bytes match at once, and plain progress at the end of its batch window. `"is_error":
#: false` (a tool that worked, printed with every tool result by claude-shaped CLIs) is not
#: an error; a CLI whose stream shape is known says it by its keys (`Adapter.urgent_bytes`).
URGENT_WORDS = re.compile(
    rb"denied|denial|permission|approval|not.registered|not found|rejected|read-only|policy_violation|"
    rb"(?<!is_)error|\"is_error\":\s*true|fail|quota|rate.limit|\"result\"|turn\.completed|thread\.started|"
    rb"\"init\"|exceeded|exhausted|compact", re.I)


@dataclass(frozen=True)
class Grant:
    """What an agent may do: a permission level plus narrow, CLI-specific allowances.

    `tools` are patterns in the CLI's own syntax (claude `Bash(npm test)`, gemini
    `run_shell_command(npm test)`); `dangerous` allows the CLI's bypass flags
    (`--dangerously-*`, `--yolo`) and is only ever set when the policy says so.
    """

    level: Permission = Permission.READ
    tools: tuple[str, ...] = ()
    dangerous: bool = False

    @property
    def name(self) -> str:
        label = self.level.value
        if self.tools:
            label += "+" + ",".join(self.tools)
        if self.dangerous:
            label += "+dangerous"
        return label


@dataclass
class LaunchSpec:
    """Everything needed to build one headless run."""

    role: Role
    prompt: str
    cwd: Path
    grant: Grant = field(default_factory=Grant)
    cli_session_id: Optional[str] = None  # resume this CLI session (or pin a new one's id)
    resume: bool = False
    extra_dirs: list[Path] = field(default_factory=list)
    model: Optional[str] = None
    sim_format: Optional[str] = None  # sim only: which real CLI's stream shape to speak
    system_prompt: Optional[str] = None
    state_dir: Optional[Path] = None  # orch's state folder, for files it keeps for a CLI (Qwen Code's defaults)


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]  # added to the inherited environment, never replacing it
    cwd: Path
    cli_session_id: Optional[str] = None  # known before start when the CLI lets us pin it


class StreamParser(ABC):
    """Stateful, incremental: feed lines as they arrive, in any interleaving of streams."""

    def __init__(self, state: Optional[dict[str, Any]] = None):
        self.malformed_lines = 0
        # The text the model wrote that the line just fed carries (a delta or a whole
        # message), as the CLI wrote it: the ingest joins these across lines to find a
        # secret streamed in pieces (runtime/ingest/split.py).
        self.spoken: list[str] = []
        self.load_state(state or {})

    @abstractmethod
    def feed(self, stream: str, line: bytes) -> list[AgentEvent]:
        """Normalize one complete raw line ('stdout', 'stderr' or 'rollout'). Never raises."""

    def finish(self, exit_code: Optional[int]) -> list[AgentEvent]:
        """Events only known at the end of a run (e.g. a terminal event when there was none)."""
        return []

    def state(self) -> dict[str, Any]:
        """JSON-serializable parser state, to resume after a restart."""
        return {"malformed_lines": self.malformed_lines}

    def load_state(self, state: dict[str, Any]) -> None:
        self.malformed_lines = int(state.get("malformed_lines", 0))


class Adapter(ABC):
    name: str = ""
    binary: str = ""
    install_hint: str = ""
    #: True when the CLI reports usage as a running total for the whole CLI session
    usage_is_cumulative: bool = False
    #: True when orch chooses the CLI session id up front (passed with the first run), False
    #: when the CLI makes one up and the stream says which (e.g. codex's thread id)
    assigns_session_id: bool = False
    #: the flavour of an adapter that comes in several (the sim's stream format), else None
    variant: Optional[str] = None
    #: the flavours it can take (empty: it has none)
    variants: tuple[str, ...] = ()
    #: How the CLI matches the shell rule narrow_tool_for returns: True when it lets exactly
    #: the denied command through (claude `Bash(cmd)`), False when it is a prefix that also
    #: lets the command through with any further arguments (gemini `run_shell_command(cmd)`).
    #: Only an exact rule can be trusted with what the arguments were checked for.
    narrow_rules_exact: bool = True
    #: True for orch's own work that belongs on this machine whatever the policy's [runner]
    #: says (the verifier tests the integration worktree, which only this machine has).
    runs_here: bool = False

    # ---- commands
    @abstractmethod
    def build_command(self, spec: LaunchSpec) -> Command:
        """argv + env additions for a headless run (a resume when spec.resume)."""

    def executable(self) -> str:
        """The CLI's binary path, or CliMissing naming the CLI and how to install it."""
        override = os.environ.get(f"ORCH_{self.name.upper()}_BIN")
        path = shutil.which(override or self.binary)
        if not path:
            raise CliMissing(f"the {self.name} CLI ({override or self.binary}) is not installed: {self.install_hint}")
        return path

    def prepare_launch(self, env: dict[str, str]) -> None:
        """Clear known hazards before a launch (e.g. a stale lock). Default: nothing."""

    # ---- kernel confinement (runtime/ceiling.py)
    #: Variables naming a temp folder the CLI uses besides TMPDIR; when set, a confined run
    #: gets its private temp folder in them too.
    temp_vars: tuple[str, ...] = ()

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """(folders, files) where the CLI keeps its own state — logins, sessions, settings —
        under the environment it runs with: besides its worktree and its temp folder, the only
        places a confined run may write. A file is rewritten in place, never replaced."""
        return [], []

    def sandboxes_itself(self, grant: Grant) -> bool:
        """True when, at this grant, the CLI runs its tools in a kernel sandbox of its own that
        cannot run inside a Landlock domain (codex's bubblewrap mounts): the kernel then only
        keeps the run's signals in, and the CLI's sandbox confines its writes."""
        return False

    # ---- permissions
    @abstractmethod
    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """The exact flags and env that put the CLI at this grant."""

    #: (option, value) pairs that lift the CLI's permission checks; value None: the option alone
    BYPASS_OPTIONS: tuple[tuple[str, Optional[str]], ...] = ()

    def bypass_flags(self, argv: Sequence[str]) -> list[str]:
        """The permission-bypass flags in a command line, in this CLI's spelling (and any
        `--dangerously…` option, the common spelling of a bypass)."""
        found: list[str] = []
        for i, a in enumerate(argv):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            if a.startswith("--dangerously"):
                found.append(a)
                continue
            for option, value in self.BYPASS_OPTIONS:
                if value is None and a == option:
                    found.append(a)
                elif value is not None and a == option and nxt == value:
                    found.append(f"{a} {nxt}")
                elif value is not None and a == f"{option}={value}":
                    found.append(a)
        return found

    @staticmethod
    def allowed_tools(grant: Grant, full_tools: Sequence[str]) -> list[str]:
        """The tools to allow by name: `full_tools` on the top rung, then the grant's own, each once."""
        allowed = list(full_tools) if grant.level is Permission.FULL else []
        for tool in grant.tools:
            if tool not in allowed:
                allowed.append(tool)
        return allowed

    def narrow_tool_for(self, denial: Denial) -> Optional[str]:
        """The narrowest allowance in the CLI's own syntax that covers a denied call, if any."""
        return None

    def prefix_tool_for(self, denial: Denial) -> Optional[str]:
        """An allowance for a command with any further arguments (the project's test command,
        granted from the start at edit): the narrow rule where the CLI's rules are prefixes anyway."""
        return self.narrow_tool_for(denial)

    def level_needed(self, denial: Denial) -> Permission:
        """The lowest permission level whose rung lets the denied call through."""
        return Permission.EDIT

    # ---- output
    @abstractmethod
    def new_parser(self, state: Optional[dict[str, Any]] = None) -> StreamParser:
        """A parser for this CLI's streams, optionally restored from saved state."""

    def side_files(self, cli_session_id: Optional[str], env: dict[str, str]) -> list[Path]:
        """Extra files the CLI writes that carry events (codex's rollout). Default: none."""
        return []

    def urgent_bytes(self, stream: str, data: bytes) -> bool:
        """Whether new raw output (whole lines of `stream`) may hold something the conductor acts
        on at once; False only for what is surely plain progress. Default: URGENT_WORDS."""
        return URGENT_WORDS.search(data) is not None


def summarize(cli: str, events: Iterable[AgentEvent], malformed_lines: int = 0) -> RunSummary:
    """Fold a run's normalized events into the verdict `orch parse --json` prints."""
    s = RunSummary(cli=cli, malformed_lines=malformed_lines)
    texts: list[str] = []
    seen_denials: set[tuple[str, Optional[str]]] = set()
    files: list[str] = []
    finished = False
    for ev in events:
        k = ev.kind
        if k is AgentEventKind.SESSION_STARTED and ev.session_id:
            s.session_id = s.session_id or ev.session_id
        elif k is AgentEventKind.TEXT and ev.text:
            texts.append(ev.text)
        elif k is AgentEventKind.TOOL_STARTED:
            s.tool_calls += 1
        elif k is AgentEventKind.FILE_CHANGED and ev.path and ev.path not in files:
            files.append(ev.path)
        elif k is AgentEventKind.DENIAL:
            key = (ev.tool_id or ev.tool or "", ev.tool_id or ev.target)
            if key not in seen_denials:
                seen_denials.add(key)
                s.denials.append(Denial(tool=ev.tool or "unknown", target=ev.target, message=ev.message or "", tool_id=ev.tool_id))
        elif k is AgentEventKind.USAGE and ev.usage:
            s.usage = ev.usage if ev.usage_cumulative else s.usage.plus(ev.usage)
        elif k is AgentEventKind.ERROR and ev.message:
            s.errors.append(ev.message)
        elif k is AgentEventKind.LIMIT_HIT or k is AgentEventKind.LIMIT_WARNING:
            notice = LimitNotice(hit=k is AgentEventKind.LIMIT_HIT, kind=ev.limit_kind, scope=ev.limit_scope,
                                 resets_at=ev.resets_at, message=ev.message or "")
            if notice not in s.limits:
                s.limits.append(notice)
        elif k is AgentEventKind.UNKNOWN:
            s.unknown_events += 1
        elif k is AgentEventKind.RUN_FINISHED:
            finished = True
            if ev.outcome:
                s.outcome = ev.outcome
            if ev.text is not None:
                s.final_text = ev.text
            if ev.usage:
                s.usage = ev.usage
            if ev.session_id and not s.session_id:
                s.session_id = ev.session_id
    if not finished:
        s.outcome = Outcome.INCOMPLETE
    if not s.final_text and texts:
        s.final_text = texts[-1]
    s.files_changed = files
    s.denied = bool(s.denials)
    return s


def home_of(env: Mapping[str, str]) -> Path:
    """The home folder of the environment a CLI runs with (HOME, else this user's)."""
    return Path(env.get("HOME") or os.path.expanduser("~"))
