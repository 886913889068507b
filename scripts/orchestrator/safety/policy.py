"""The safety policy: role ceilings, forbidden and allowed commands, confinement, limits.

The shipped defaults (defaults/policy.toml) are merged with the workspace's
`.orch/policy.toml`; every value remembers the file and line it came from, so a refusal
or an escalation can name the exact rule, and an invalid file is one line naming its line.
Nothing here launches or changes anything: callers ask, the policy answers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Sequence

from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, Strict, ValidationError, field_validator, model_validator,
)

from ..adapters.base import Grant
from ..adapters.commandline import BARE_TOO_BROAD, EVAL_FLAGS, NEVER_PREFIX
from ..core.errors import PolicyError
from ..core.models import Permission, Role
from .arguments import CODE, DELETES, WRITES, inspect_command, inspect_words
from .policy_file import key_lines, leaves, line_of, merge, parse_toml, read_policy_text
from ..store.sessions import SessionStore, Workspace
from ..spend.budget import BudgetPolicy
from ..notify.settings import NotifyPolicy

DEFAULTS_PATH = Path(__file__).resolve().parent / "defaults" / "policy.toml"
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Tools whose target is a command line (the rest name files, URLs or queries).
_BUILTIN_SHELL_TOOLS = frozenset({"Bash", "run_shell_command", "shell", "exec_command", "local_shell", "command_execution"})


def shell_tools() -> frozenset[str]:
    """Tool names whose target is a command line: the common ones plus every adapter's own
    (`shell_tools` on the adapter: opencode's `bash`, ...)."""
    global _SHELL_TOOLS
    if _SHELL_TOOLS is None:
        from ..adapters import ADAPTERS, get_adapter

        extra = set()
        for name in ADAPTERS:
            extra |= set(getattr(get_adapter(name), "shell_tools", ()) or ())
        _SHELL_TOOLS = _BUILTIN_SHELL_TOOLS | frozenset(extra)
    return _SHELL_TOOLS


_SHELL_TOOLS: Optional[frozenset[str]] = None
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "busybox", "cmd", "cmd.exe",
                    "powershell", "pwsh"})
DELETERS = frozenset({"rm", "rmdir", "shred", "unlink"})
_SHELL_META = re.compile(r"[\s;&|`$<>(){}*?]")
_ENV_FILE = re.compile(r"^\.env(?:\.[^/]*)?$")


# --------------------------------------------------------------------------- the model


class _Strict(BaseModel):
    # Strict: a value of the wrong TOML type is an error, never coerced (`dangerous = "yes"`
    # is not true, `max_turns = true` is not 1, `max_recoveries = "3"` is not 3). Only the
    # enumerations (levels, role names) are read from their strings, and a whole number
    # may stand for a float. TOML's `inf` and `nan` are refused: every number is finite.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


#: A permission level or a role name: written as a string in TOML, so read from one.
Level = Annotated[Permission, Strict(False)]
RoleName = Annotated[Role, Strict(False)]


class RolePolicy(_Strict):
    max_level: Level
    dangerous: bool = False


def command_variants(command: str) -> list[str]:
    """The forms a command is matched in: spaced out, unquoted, and with the home as ~."""
    base = " ".join(command.split())
    unquoted = re.sub(r"[\"'\\]", "", base)
    out = [base, unquoted]
    for text in (base, unquoted):
        homed = _home_as_tilde(text)
        if homed != text:
            out.append(homed)
    return list(dict.fromkeys(out))


def _home_as_tilde(text: str) -> str:
    homes = {str(Path.home()), os.environ.get("HOME", "")}
    for home in sorted((h.rstrip("/") for h in homes if h and h != "/"), key=len, reverse=True):
        text = re.sub(re.escape(home) + r"(?=/|\s|$|[\"';&|)])", "~", text)
    text = re.sub(r"\$\{HOME\}|\$HOME\b", "~", text)
    return re.sub(r"(?<![\w.~/-])(?:/root|/home/[^/\s]+)(?=/|\s|$)", "~", text)


class CommandRule(_Strict):
    pattern: str
    why: str = ""
    examples: list[str] = Field(default_factory=list)
    enabled: bool = True
    _regex: re.Pattern[str] = PrivateAttr()

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the pattern is empty (it would match every command)")
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _examples_match(self) -> "CommandRule":
        self._regex = re.compile(self.pattern)
        for example in self.examples:
            if not self.matches(example):
                raise ValueError(f"its example {example!r} does not match its pattern")
        return self

    def matches(self, text: str) -> bool:
        return any(self._regex.search(v) for v in command_variants(text))


class Paths(_Strict):
    extra_dirs: list[str] = Field(default_factory=list)

    @field_validator("extra_dirs")
    @classmethod
    def _not_everything(cls, dirs: list[str]) -> list[str]:
        for d in dirs:
            if not d.strip():
                raise ValueError("an empty directory name")
            p = Path(os.path.expanduser(d))
            if p.is_absolute():
                _refuse_too_wide(p.resolve(), d)
        return dirs


def _refuse_too_wide(resolved: Path, given: str) -> None:
    home = Path.home().resolve()
    if resolved == Path("/") or resolved == home or resolved in home.parents:
        raise ValueError(f"{given!r} would open the whole {'filesystem' if resolved == Path('/') else 'home folder'}")


#: The longest duration a limit may name: a year (datetime and sleep calls overflow far beyond).
YEAR_SECONDS = 366 * 86400


class Limits(_Strict):
    max_recoveries: int = Field(3, ge=0, le=100)
    run_wall_seconds: int = Field(3600, ge=1, le=YEAR_SECONDS)
    max_turns: int = Field(60, ge=1, le=100000)
    stall_after_seconds: float = Field(300, gt=0, le=YEAR_SECONDS)
    max_nudges: int = Field(1, ge=0, le=100)
    max_restarts: int = Field(1, ge=0, le=100)
    max_task_attempts: int = Field(2, ge=1, le=100)
    stop_hook_limit: int = Field(25, ge=0, le=10000)  # the plugin's Stop hook (hooks.py)
    on_usage_limit: Literal["wait", "fallback", "ask"] = "wait"  # an agent whose CLI hit a usage limit
    limit_grace_seconds: float = Field(30, ge=0, le=YEAR_SECONDS)  # resume this long after the CLI's stated reset
    limit_backoff_max_seconds: float = Field(3600, ge=60, le=YEAR_SECONDS)  # no reset time: 1 min, 2, 4 … up to this
    max_agents: Optional[int] = Field(None, ge=1, le=10000)  # agent processes at once (spend/caps.py)
    max_per_cli: dict[str, int] = Field(default_factory=dict)  # per CLI, e.g. {claude = 3, codex = 2}

    @field_validator("max_per_cli")
    @classmethod
    def _positive_caps(cls, caps: dict[str, int]) -> dict[str, int]:
        for cli, n in caps.items():
            registered_cli(cli)
            if not 1 <= n <= 10000:
                raise ValueError(f"max_per_cli.{cli} must be at least 1 and at most 10000 (leave it out for no cap)")
        return caps


def registered_cli(name: str) -> str:
    """name, when it is a CLI the adapters' registry knows; else a ValueError for the table
    naming it (a misspelled CLI in a per-CLI table would silently configure nothing)."""
    from ..adapters import ADAPTERS

    if name not in ADAPTERS:
        raise ValueError(f"{name!r} is not a CLI orch knows ({', '.join(sorted(ADAPTERS))})")
    return name


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunnerPolicy(_Strict):
    """Where agent runs execute (runtime/runners/): on this machine, or placed on a Ray cluster."""

    kind: Literal["local", "ray"] = "local"
    address: str = "auto"  # the Ray cluster: "auto" (RAY_ADDRESS or the one running here) or host:port
    env: list[str] = Field(default_factory=list)  # variables forwarded to remote runs, by name

    @field_validator("env")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names


class GitPolicy(_Strict):
    """How a session in a git repository hands its result over (worktrees/)."""

    # How `orch land` takes the result by default: "apply" (into the working tree, uncommitted),
    # "commit" (one commit on the user's branch), "squash" (staged), "merge" (a merge commit).
    land: Literal["apply", "commit", "squash", "merge"] = "apply"
    worktrees_dir: str = ""  # where agents' worktrees go; empty: <state folder>/worktrees

    @field_validator("worktrees_dir")
    @classmethod
    def _not_everything(cls, d: str) -> str:
        if d and Path(os.path.expanduser(d)).is_absolute():
            _refuse_too_wide(Path(os.path.expanduser(d)).resolve(), d)
        return d


class VerifyPolicy(_Strict):
    """The verification gate (engine/verification.py): the project's tests after every merge."""

    enabled: bool = True
    command: list[str] = Field(default_factory=list)  # an argv; empty: found in each commit's tree
    timeout_seconds: float = Field(600, gt=0)
    known_failures: list[str] = Field(default_factory=list)  # failing tests declared out of scope

    @field_validator("command")
    @classmethod
    def _argv(cls, argv: list[str]) -> list[str]:
        if argv and (not argv[0].strip() or any(not a for a in argv)):
            raise ValueError("the command is an argv: a list of non-empty strings, e.g. [\"pytest\", \"-q\"]")
        if len(argv) == 1 and any(c in argv[0] for c in " ;&|"):
            raise ValueError(f"{argv[0]!r} looks like a shell line: give the argv, e.g. {shlex.split(argv[0])!r}")
        return argv
class TeamPolicy(_Strict):
    """Who is on a new session's team when the command line does not say (`orch run`/`start`)."""

    # A review panel: reviewers of different CLIs on the same commit ("cli" or "cli/variant").
    reviewers: list[str] = Field(default_factory=list)
    race: int = Field(0, ge=0, le=8)  # race every implement task with this many implementers (0: none)

    @field_validator("reviewers")
    @classmethod
    def _seats(cls, seats: list[str]) -> list[str]:
        from ..adapters import parse_seat
        from ..core.errors import OrchError

        for seat in seats:
            try:
                parse_seat(seat)
            except OrchError as e:
                raise ValueError(e.message) from None
        if len(set(seats)) != len(seats):
            raise ValueError("a panel's reviewers are of different CLIs: one is named twice")
        return seats


class RacePolicy(_Strict):
    """Races (engine/race.py): when a candidate still building is stopped and the race judged without it."""

    time_limit_seconds: float = Field(1800, gt=0, le=YEAR_SECONDS)
    # When the tests do not tell the best candidates apart, the reviewers read each of them and
    # the fewest blockers wins before the smaller change does (false: the size decides at once).
    review_ties: bool = True


class SafetyPolicy(_Strict):
    """The kernel's share of the ceiling: Landlock around every agent run (runtime/ceiling.py)."""

    kernel_confinement: bool = True  # confine agent runs wherever the kernel has Landlock
    require_kernel_confinement: bool = False  # and refuse to launch where it has not
    tcp_connect_ports: list[int] = Field(default_factory=list)  # when set: agents' TCP connections only to these

    @field_validator("tcp_connect_ports")
    @classmethod
    def _ports(cls, ports: list[int]) -> list[int]:
        for port in ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"{port} is not a TCP port (1-65535)")
        return ports

    @model_validator(mode="after")
    def _consistent(self) -> "SafetyPolicy":
        if self.require_kernel_confinement and not self.kernel_confinement:
            raise ValueError("require_kernel_confinement = true needs kernel_confinement = true")
        return self


class Policy(_Strict):
    roles: dict[RoleName, RolePolicy]
    forbidden: dict[str, CommandRule] = Field(default_factory=dict)
    allowed: dict[str, CommandRule] = Field(default_factory=dict)
    paths: Paths = Field(default_factory=Paths)
    limits: Limits = Field(default_factory=Limits)
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy)  # spend/budget.py
    notify: NotifyPolicy = Field(default_factory=NotifyPolicy)  # notify/settings.py
    runner: RunnerPolicy = Field(default_factory=RunnerPolicy)  # runtime/runners/
    git: GitPolicy = Field(default_factory=GitPolicy)  # worktrees/
    verify: VerifyPolicy = Field(default_factory=VerifyPolicy)  # verify/, engine/verification.py
    safety: SafetyPolicy = Field(default_factory=SafetyPolicy)  # runtime/ceiling.py
    team: TeamPolicy = Field(default_factory=TeamPolicy)  # commands/session.py: a panel, races
    race: RacePolicy = Field(default_factory=RacePolicy)  # engine/race.py
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _files: list[str] = PrivateAttr(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _every_role(cls, roles: dict[Role, RolePolicy]) -> dict[Role, RolePolicy]:
        missing = [r.value for r in Role if r not in roles]
        if missing:
            raise ValueError(f"no ceiling for role(s) {', '.join(missing)}")
        return roles

    @field_validator("forbidden", "allowed")
    @classmethod
    def _rule_names(cls, rules: dict[str, CommandRule]) -> dict[str, CommandRule]:
        for name in rules:
            if not RULE_NAME.match(name):
                raise ValueError(f"rule name {name!r}: use letters, digits, '.', '_' and '-'")
        return rules

    # -- provenance
    def source(self, key: str) -> str:
        """Where a dotted key's value came from: `FILE:LINE` (the defaults or the user's)."""
        parts = key.split(".")
        while parts:
            found = self._sources.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return "defaults"

    @property
    def files(self) -> list[str]:
        return list(self._files)

    def rule(self, key: str) -> str:
        """A rule's name with its value and origin, as the audit trail records it."""
        value: Any = self.model_dump(mode="json")
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        shown = f"={str(value).lower() if isinstance(value, bool) else value}" if isinstance(value, (str, int, float)) else ""
        return f"{key}{shown} ({self.source(key)})"

    # -- roles
    def ceiling(self, role: Role) -> Permission:
        return self.roles[role].max_level

    def dangerous_allowed(self, role: Role) -> bool:
        """Bypass flags: only when the user enabled them for the role and it may reach full."""
        rp = self.roles[role]
        return rp.dangerous and rp.max_level is Permission.FULL

    # -- commands
    def forbidden_hit(self, text: Optional[str]) -> Optional["RuleHit"]:
        """The first enabled forbidden rule the text matches."""
        if not text:
            return None
        for name, rule in self.forbidden.items():
            if rule.enabled and rule.matches(text):
                return RuleHit(f"forbidden.{name}", rule.why, self.source(f"forbidden.{name}"))
        return None

    def allowed_hit(self, command: Optional[str], *, cwd: Optional[Path] = None,
                    roots: Sequence[Path] = ()) -> Optional["RuleHit"]:
        """The first enabled allowed rule a (non-forbidden) command matches, when its arguments
        only read inside the allowed directories (an allowed rule names a program; see allowed_check)."""
        return self.allowed_check(command, cwd=cwd, roots=roots)[0]

    def allowed_check(self, command: Optional[str], *, cwd: Optional[Path] = None,
                      roots: Sequence[Path] = ()) -> tuple[Optional["RuleHit"], Optional["RuleHit"]]:
        """(the allowed rule the command matches, None), or (None, why its arguments refuse the
        rule), or (None, None) when no rule matches or the command is forbidden.

        An allowed rule lets a command through below the level a shell command needs, so
        its pattern is not enough: the arguments must not write, delete, run code they
        name, set the environment or reach outside the roots (argument_hit, read_only).
        """
        if not command or self.forbidden_hit(command):
            return None, None
        for name, rule in self.allowed.items():
            if rule.enabled and rule.matches(command):
                refused = argument_hit(command, cwd=cwd, roots=roots, read_only=True)
                if refused is not None:
                    return None, refused
                return RuleHit(f"allowed.{name}", rule.why, self.source(f"allowed.{name}")), None
        return None, None

    def forbidden_examples(self) -> Iterable[tuple[str, str]]:
        for name, rule in self.forbidden.items():
            if rule.enabled:
                for example in rule.examples:
                    yield name, example


@dataclass(frozen=True)
class RuleHit:
    """A policy rule that matched: its key, why it exists, and where it was written."""

    rule: str
    why: str = ""
    where: str = "built in"

    def __str__(self) -> str:
        return f"{self.rule} ({self.where})"


# --------------------------------------------------------------------------- loading


#: What a key of each type must be, for an error about a value of the wrong TOML type.
_EXPECTED = {
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false (a TOML boolean, unquoted)",
    "int_type": "must be a whole number (unquoted)",
    "float_type": "must be a number (unquoted)",
    "string_type": "must be a string (in quotes)",
    "list_type": "must be a list ([...])",
    "dict_type": "must be a table",
    "model_type": "must be a table",
}


def _toml_type(value: Any) -> str:
    """How a parsed TOML value reads in an error: `the string "yes"`, `the boolean true`."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {json.dumps(shown)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _validation_message(e: ValidationError) -> tuple[tuple[Any, ...], str]:
    err = e.errors()[0]
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    expected = _EXPECTED.get(err.get("type", ""))
    if expected and "input" in err:
        msg = f"{expected}, not {_toml_type(err['input'])}"
    elif err.get("type") in ("enum", "greater_than", "greater_than_equal", "less_than", "less_than_equal") \
            and "input" in err:
        msg = f"{msg.replace('Input should be', 'must be', 1)}, not {_toml_type(err['input'])}"
    loc = tuple(err.get("loc", ()))
    return loc, msg


def load_policy_file(path: Optional[Path]) -> Policy:
    """The defaults merged with the file at path (None or missing: the defaults alone)."""
    default_text = read_policy_text(DEFAULTS_PATH)
    defaults = parse_toml(DEFAULTS_PATH, default_text)
    default_lines = key_lines(default_text)
    user: dict[str, Any] = {}
    user_lines: dict[str, int] = {}
    user_file = path if path is not None and path.is_file() else None
    if user_file is not None:
        text = read_policy_text(user_file)
        user = parse_toml(user_file, text)
        user_lines = key_lines(text)
    merged = merge(defaults, user)
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as e:
        loc, msg = _validation_message(e)
        dotted = ".".join(str(p) for p in loc if isinstance(p, str) and not p.startswith("[")) + "".join(
            f"[{p}]" for p in loc[-1:] if isinstance(p, int))
        line = line_of(user_lines, loc) if user_file else None
        where = f"{user_file}:{line}" if user_file and line else str(user_file or DEFAULTS_PATH)
        if user_file and line is None and line_of(default_lines, loc):
            where = f"{user_file} (merged with {DEFAULTS_PATH}:{line_of(default_lines, loc)})"
        raise PolicyError(f"invalid policy {where}: {dotted or 'policy'}: {msg}") from None
    sources: dict[str, str] = {}
    for key, _ in leaves(merged):
        parts = key.split(".")
        user_line = user_lines.get(key) if user_file else None
        if user_line is None and user_file and parts[0] in ("forbidden", "allowed") and len(parts) > 2:
            rule_key = ".".join(parts[:2])
            rule = user.get(parts[0], {}).get(parts[1])
            if isinstance(rule, dict) and "pattern" in rule:  # the user's rule replaced the default
                user_line = user_lines.get(rule_key)
        if user_line is not None:
            sources[key] = f"{user_file}:{user_line}"
        else:
            sources[key] = f"defaults ({DEFAULTS_PATH.name}:{default_lines.get(key, 0)})"
    for table in ("forbidden", "allowed"):
        for name in merged.get(table, {}):
            key = f"{table}.{name}"
            line = user_lines.get(key) if user_file else None
            sources[key] = f"{user_file}:{line}" if line else f"defaults ({DEFAULTS_PATH.name}:{default_lines.get(key, 0)})"
    policy._sources = sources
    policy._files = [str(DEFAULTS_PATH)] + ([str(user_file)] if user_file else [])
    return policy


_PARSED: dict[str, tuple[Any, Policy]] = {}


def _file_stamp(path: Path) -> Any:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def load_policy(workspace: Workspace) -> Policy:
    """The effective policy of a workspace: defaults merged with <state root>/policy.toml.

    Parsed once per change of either file: a step consults the policy many times (launch
    gates, budgets, caps), and validating it (its rules compile regular expressions) costs
    ~9 ms each time. An invalid file is never cached, so its error repeats until it is fixed.
    """
    path = workspace.policy_path
    stamp = (_file_stamp(path), _file_stamp(DEFAULTS_PATH))
    cached = _PARSED.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    policy = load_policy_file(path)
    _PARSED[str(path)] = (stamp, policy)
    return policy


def check_policy(workspace: Workspace, workspace_dir: Path) -> Policy:
    """The workspace's policy, validated with the folder agents will work in.

    For commands that create a session (`orch start`, `orch run`): called before anything
    is created, so an invalid policy leaves nothing behind but its one-line error.
    """
    policy = load_policy(workspace)
    allowed_roots(policy, workspace_dir)  # extra_dirs relative to this folder
    require_kernel_confinement(policy)
    return policy


def require_kernel_confinement(policy: Policy) -> None:
    """PolicyError when the policy requires kernel confinement and this kernel cannot give it."""
    if policy.safety.require_kernel_confinement:
        from ..runtime.ceiling import unavailable_error

        why = unavailable_error()
        if why:
            raise PolicyError(f"{why} ({policy.source('safety.require_kernel_confinement')}); nothing was launched")


def workspace_of(store: SessionStore) -> Workspace:
    """The state root a session belongs to (sessions live in <root>/sessions/<id>)."""
    return Workspace(store.path.parent.parent)


# --------------------------------------------------------------------------- confinement


def allowed_roots(policy: Policy, workspace_dir: Path) -> list[Path]:
    """The folders agents may work in: the workspace and the declared extra dirs, resolved."""
    base = Path(workspace_dir).expanduser().resolve()
    roots = [base]
    for d in policy.paths.extra_dirs:
        p = Path(os.path.expanduser(d))
        resolved = (p if p.is_absolute() else base / p).resolve()
        try:
            _refuse_too_wide(resolved, d)
        except ValueError as e:
            raise PolicyError(f"policy paths.extra_dirs ({policy.source('paths.extra_dirs')}): {e}") from None
        if resolved not in roots:
            roots.append(resolved)
    return roots


def agent_roots(policy: Policy, session: Any, cwd: Path | str) -> list[Path]:
    """Where an agent working in cwd may act: its own worktree (and the extra dirs) when cwd
    is one of the session's worktrees, else the session's workspace (and the extra dirs)."""
    roots = allowed_roots(policy, Path(session.workspace))
    git = getattr(session, "git", None)
    if git is None or git.mode != "worktrees" or not git.worktrees_dir:
        return roots
    own = Path(git.worktrees_dir) / session.id
    if not is_within(cwd, [own.resolve()]):
        return roots
    tree = Path(cwd).resolve()
    while tree.parent != own.resolve() and tree != tree.parent:
        tree = tree.parent  # from a subfolder up to the worktree itself
    return [tree] + [r for r in roots[1:] if r != tree]


def is_within(path: Path | str, roots: Sequence[Path], cwd: Optional[Path] = None) -> bool:
    """True when path (after ~, `..` and symbolic links) is one of the roots or inside one."""
    if not roots:
        return False
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute():
        p = (cwd or roots[0]) / p
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return False
    return any(resolved == r or r in resolved.parents for r in roots)


def confine(path: Path | str, roots: Sequence[Path], what: str, policy: Optional[Policy] = None) -> Path:
    """The resolved path, or PolicyError when it lies outside the allowed directories."""
    if not is_within(path, roots):
        shown = ", ".join(str(r) for r in roots)
        hint = " (add it to [paths] extra_dirs in the policy)" if policy is not None else ""
        raise PolicyError(f"{what} {path} is outside the allowed directories ({shown}){hint}")
    return Path(os.path.expanduser(str(path))).resolve()


# --------------------------------------------------------------------------- actions


def _words(command: str) -> Optional[list[str]]:
    try:
        lex = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lex.whitespace_split = True
        return list(lex)
    except ValueError:  # unbalanced quotes: leave it to the patterns
        return None


def _simple_commands(command: str) -> list[list[str]]:
    words = _words(command)
    if words is None:
        return []
    out, cur = [], []
    for w in words:
        if w and all(ch in ";&|()<>" for ch in w):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        out.append(cur)
    return out


def _program(words: list[str]) -> tuple[str, list[str]]:
    """The program of a simple command and its arguments, past `VAR=x` assignments."""
    i = 0
    while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
        i += 1
    if i >= len(words):
        return "", []
    return os.path.basename(words[i]), words[i + 1:]


def _expand(word: str) -> str:
    return os.path.expanduser(re.sub(r"^\$\{?HOME\}?(?=/|$)", "~", word))


def structural_hit(command: str, cwd: Path, roots: Sequence[Path]) -> Optional[RuleHit]:
    """Refusals that need the folders: deleting, or touching a .env file, outside the roots."""
    for words in _simple_commands(command):
        for finding in inspect_words(words, cwd=cwd, roots=roots):  # pytest --basetemp=/x, ...
            if finding.kind == DELETES and finding.outside:
                return RuleHit("paths.delete-outside", f"{finding.why}, outside the allowed directories")
        prog, args = _program(words)
        operands = [a for a in args if not a.startswith("-")]
        if prog in DELETERS:
            for op in operands:
                if not is_within(_expand(op), roots, cwd):
                    return RuleHit("paths.delete-outside", f"{prog} {op} deletes outside the allowed directories")
        if prog == "find" and "-delete" in args:
            start = next((a for a in args if not a.startswith("-")), ".")
            if not is_within(_expand(start), roots, cwd):
                return RuleHit("paths.delete-outside", f"find {start} -delete deletes outside the allowed directories")
        for word in args:
            w = _expand(word.split("=", 1)[-1])
            if _ENV_FILE.match(os.path.basename(w)) and not is_within(w, roots, cwd):
                return RuleHit("paths.env-outside", f"{word} is an environment file outside the allowed directories")
    return None


def path_target(target: Optional[str]) -> Optional[str]:
    """A file tool's target when it names a path (not a URL, a query or a pattern in prose)."""
    if not target or "\n" in target or "://" in target or len(target) > 4096:
        return None
    t = target.strip()
    if t.startswith(("/", "~", "./", "../", "$HOME")) or t == ".." or ("/" in t and " " not in t):
        return t
    if " " not in t and "." in t:  # a bare file name in the working directory
        return t
    return None


def action_hit(policy: Policy, tool: str, target: Optional[str], *, cwd: Optional[Path] = None,
               roots: Sequence[Path] = ()) -> Optional[RuleHit]:
    """Why a denied call must never be granted, or None: forbidden patterns, then confinement."""
    hit = policy.forbidden_hit(target)
    if hit:
        return hit
    if cwd is None or not roots or not target:
        return None
    if tool in shell_tools():
        return structural_hit(target, cwd, roots)
    path = path_target(target)
    if path is not None and not is_within(_expand(path), roots, cwd):
        return RuleHit("paths.confinement", f"{path} is outside the allowed directories",
                       "the workspace and [paths] extra_dirs")
    return None


#: Argument findings (arguments.py) that refuse every narrow rule: a rule is only as narrow
#: as the words it was checked on, and none may reach outside the allowed directories.
_ALWAYS_REFUSED = frozenset({"shell", "outside"})
#: ...and those that also refuse a rule granted below the level a shell command needs (an
#: [allowed] pre-approval at read): the command must only read.
_REFUSED_READ_ONLY = _ALWAYS_REFUSED | {"env", WRITES, DELETES, CODE}


def argument_hit(command: Optional[str], *, cwd: Optional[Path] = None, roots: Sequence[Path] = (),
                 read_only: bool = False) -> Optional[RuleHit]:
    """Why a narrow rule for this command's arguments would exceed what was checked, or None.

    The one argument check of every narrow rule, whatever CLI renders it: a command with
    shell syntax, or a path-like argument (an operand, an option's value, `~`, `..`, a
    symbolic link) outside the roots, is refused; with read_only (a grant below the level
    a shell command needs), so is an option that writes, deletes or runs code it names,
    from the table of each program family in arguments.py, and an environment assignment.
    Without roots, a path is outside when it is absolute, starts with ~ or climbs out.
    """
    if not command:
        return None
    kinds = _REFUSED_READ_ONLY if read_only else _ALWAYS_REFUSED
    for finding in inspect_command(command, cwd=cwd, roots=roots):
        if finding.kind in kinds:
            return RuleHit(f"args.{finding.kind}", finding.why, "built in")
    return None


def narrow_rule_hit(policy: Policy, rule_text: str, command: Optional[str], *, cwd: Optional[Path] = None,
                    roots: Sequence[Path] = ()) -> Optional[RuleHit]:
    """Why a narrow rule for this command would be broader than the denied call, or None."""
    hit = policy.forbidden_hit(rule_text) or policy.forbidden_hit(command)
    if hit:
        return hit
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rule_text):
        return RuleHit("ladder.no-prefix-rule", "a rule with control characters cannot be passed to a CLI safely")
    if not command:
        return None
    words = command.split()
    prog = os.path.basename(words[0])
    if prog in NEVER_PREFIX:
        return RuleHit("ladder.no-prefix-rule", f"a prefix rule for `{prog}` would reach far beyond the denied call")
    if prog in BARE_TOO_BROAD and len(words) == 1:
        return RuleHit("ladder.no-prefix-rule", f"a rule for `{prog}` would allow every {prog} command")
    base = re.sub(r"\d+(\.\d+)*$", "", prog)
    if base in EVAL_FLAGS and len(words) > 1 and words[1] in EVAL_FLAGS[base]:
        return RuleHit("ladder.no-prefix-rule", f"a rule for `{prog} {words[1]}` runs any code")
    normalized = " ".join(words)
    for name, example in policy.forbidden_examples():
        ex = " ".join(example.split())
        if ex == normalized or ex.startswith(normalized + " ") or ex.startswith(normalized):
            return RuleHit(f"forbidden.{name}", f"a rule for `{normalized}` would also allow `{ex}`",
                           policy.source(f"forbidden.{name}"))
    return argument_hit(command, cwd=cwd, roots=roots)


# --------------------------------------------------------------------------- grants and argv


def cap_grant(policy: Policy, role: Role, grant: Grant) -> Grant:
    """The grant within the role's ceiling: level capped, forbidden rules and bypass dropped."""
    ceiling = policy.ceiling(role)
    level = grant.level if grant.level.rank <= ceiling.rank else ceiling
    tools = tuple(t for t in grant.tools if not policy.forbidden_hit(t))
    dangerous = bool(grant.dangerous and policy.dangerous_allowed(role) and level is Permission.FULL)
    return Grant(level=level, tools=tools, dangerous=dangerous)


def gate_launch(store: SessionStore, *, cli: str, role: Role, cwd: Path, grant: Grant,
                extra_dirs: Sequence[Path] = ()) -> Grant:
    """Confine the working (and extra) directories and cap the grant; PolicyError if refused."""
    policy = load_policy(workspace_of(store))
    require_kernel_confinement(policy)
    roots = agent_roots(policy, store.read_session(), cwd)
    confine(cwd, roots, "working directory", policy)
    for d in extra_dirs:
        confine(d, roots, "extra directory", policy)
    return cap_grant(policy, role, grant)


def dangerous_flags(argv: Sequence[str]) -> list[str]:
    """The permission-bypass flags in a command line, in any known CLI's spelling (each
    adapter knows its own)."""
    from ..adapters import ADAPTERS, get_adapter

    found: list[str] = []
    for name in ADAPTERS:
        for flag in get_adapter(name).bypass_flags(argv):
            if flag not in found:
                found.append(flag)
    return found


def shell_reason(argv: Any) -> Optional[str]:
    """Why a command line would be interpreted by a shell, or None for a plain argv list."""
    if isinstance(argv, (str, bytes)) or not isinstance(argv, (list, tuple)):
        return "the command is a string, not an argv list"
    if not argv or not all(isinstance(a, str) for a in argv):
        return "the argv list is empty or holds a non-string"
    if "\x00" in "".join(argv):
        return "an argument holds a NUL byte"
    words = list(argv)
    if _SHELL_META.search(words[0]):
        return f"its program {words[0]!r} looks like a shell command line"
    prog = os.path.basename(words[0])
    while prog == "env" and len(words) > 1:  # env VAR=x prog ...
        words = [w for w in words[1:] if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) and not w.startswith("-")] or [""]
        prog = os.path.basename(words[0])
    if prog in SHELLS:
        return f"it runs through the shell {prog}"
    base = re.sub(r"\d+(\.\d+)*$", "", prog)
    if base in EVAL_FLAGS and len(words) > 1 and words[1] in EVAL_FLAGS[base]:
        return f"it hands code to {prog} {words[1]}"
    return None


def check_argv(argv: Any, policy: Policy, *, dangerous_ok: bool = False) -> None:
    """PolicyError unless the command is a plain argv list with no forbidden pattern or bypass."""
    reason = shell_reason(argv)
    if reason:
        raise PolicyError(f"refused to run a command orch built: {reason}")
    for arg in argv:
        hit = policy.forbidden_hit(arg)
        if hit:
            raise PolicyError(f"refused to run a command orch built: an argument matches {hit}")
    flags = dangerous_flags(argv)
    if flags and not dangerous_ok:
        raise PolicyError(f"refused to run a command orch built: bypass flag {flags[0]} is not enabled by the policy")


__all__ = [
    "Policy", "RolePolicy", "CommandRule", "Paths", "Limits", "RuleHit", "DEFAULTS_PATH", "shell_tools",
    "load_policy", "load_policy_file", "check_policy", "require_kernel_confinement", "workspace_of", "allowed_roots", "agent_roots", "is_within", "confine",
    "action_hit", "structural_hit", "narrow_rule_hit", "argument_hit", "cap_grant", "gate_launch", "dangerous_flags",
    "shell_reason", "check_argv", "command_variants",
]


def load_limits(store: SessionStore) -> "Limits":
    """The policy's `[limits]` (stalls, wall time, retries, usage limits) for this workspace.

    ORCH_STALL_AFTER overrides the stall threshold for one process (tests, impatient users).
    """
    p = load_policy(workspace_of(store)).limits
    try:
        stall = float(os.environ.get("ORCH_STALL_AFTER", p.stall_after_seconds))
    except ValueError:
        stall = p.stall_after_seconds
    return p.model_copy(update={"stall_after_seconds": stall})
