"""What the kernel lets one run write, and the command line that makes it so.

A `Ceiling` is what the policy and the agent's grant decide, before any path of the
machine that runs it: the CLI, whether the run may write its working tree (not at the
read level), the folders it may then write (its worktree or the workspace, the policy's
extra folders), and whether it may start where the kernel cannot confine it. Where the
run executes — here (runners/local.py) or on a Ray node (runners/ray_actor.py) —
`wrap_command` turns it into the exec wrapper's arguments (runtime/confine.py) with that
machine's state folders of the CLI (`Adapter.state_paths`) and a private temp folder.

`confined_argv` does the same for any command, for code that runs something as an agent
of some level would be confined (the verification gate runs a project's tests as a
read-level agent). `kernel_status` and `status_line` say what this machine can do.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from . import landlock

#: Temp-folder variables pointed at the run's private temp folder when they are set (TMPDIR always is).
TEMP_VARS = ("TMP", "TEMP")
#: Build folders a confined run could not write where the tools keep them by default, set inside
#: its private temp folder when the environment does not set them: Go's build cache (in the
#: user's ~/.cache, which must stay closed: a planted entry would be trusted by the user's own
#: builds), and, at the read level, cargo's target folder (the worktree is not writable then).
BUILD_VARS = (("GOCACHE", "go-build"),)
READ_ONLY_BUILD_VARS = (("CARGO_TARGET_DIR", "cargo-target"),)
#: The variable that carries a ceiling to a remote runner's node (its adapter variables travel there).
ENV_NAME = "ORCH_KERNEL_CEILING"
WRAPPER = Path(__file__).resolve().parent / "confine.py"


@dataclass(frozen=True)
class Ceiling:
    """One run's write ceiling as the policy decides it; see the module docstring."""

    cli: str
    variant: Optional[str] = None  # the sim's stream format (its adapter's variant)
    read_only: bool = True
    roots: tuple[str, ...] = ()  # written at edit and above: the worktree (or workspace), extra folders
    own_sandbox: bool = False  # the CLI confines its tools itself here and cannot run inside Landlock
    required: bool = False
    connect_ports: Optional[tuple[int, ...]] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Ceiling":
        data = json.loads(text)
        return cls(cli=str(data["cli"]), variant=data.get("variant"), read_only=bool(data.get("read_only", True)),
                   roots=tuple(str(r) for r in data.get("roots", ())), own_sandbox=bool(data.get("own_sandbox")),
                   required=bool(data.get("required")),
                   connect_ports=tuple(int(p) for p in data["connect_ports"]) if data.get("connect_ports") is not None
                   else None)

    def describe(self) -> str:
        """One line for the run's launch event: what the kernel lets it write."""
        abi, why = kernel_status()
        if not abi:
            return f"none: {why}"
        if self.own_sandbox:
            return (f"{self.cli}'s own sandbox confines its tools (it cannot run inside Landlock); "
                    f"Landlock ABI {abi} keeps its signals inside the run")
        net = f"; TCP only to ports {', '.join(map(str, self.connect_ports))}" if self.connect_ports else ""
        if self.read_only or not self.roots:
            return f"Landlock ABI {abi}: read-only, writes only to {self.cli}'s state and a private temp folder{net}"
        return (f"Landlock ABI {abi}: writes only to {', '.join(self.roots)}, {self.cli}'s state and a private "
                f"temp folder{net}")


@dataclass
class Wrapped:
    """A command ready to start under its ceiling, and the temp folder to remove when it ends."""

    argv: list[str]
    tmpdir: Optional[str] = None  # the run's private temp folder, for the supervisor to remove


# --------------------------------------------------------------------------- this machine

_STATUS: Optional[tuple[int, str]] = None


def kernel_status() -> tuple[int, str]:
    """(Landlock ABI, "") on this machine, or (0, why there is none); probed once per process."""
    global _STATUS
    if _STATUS is None:
        _STATUS = landlock.probe()
    return _STATUS


def status_line() -> str:
    """Whether the kernel confines agents here, in one line (`orch policy show`, the report)."""
    abi, why = kernel_status()
    if abi:
        scopes = "; signals stay inside each run" if abi >= 6 else ""
        return (f"Landlock ABI {abi}: each agent writes only to its own worktree (or the workspace), its CLI's "
                f"state and a private temp folder{scopes}")
    return f"unavailable — {why}: agents are held only by their CLIs' permission flags and orch's argument rules"


def unavailable_error() -> Optional[str]:
    """Why a run that requires kernel confinement cannot start here, or None when it can."""
    abi, why = kernel_status()
    return None if abi else f"kernel confinement is required ([safety] require_kernel_confinement) and {why}"


# --------------------------------------------------------------------------- the wrapper's arguments


def private_tmpdir(label: str, base: Optional[str] = None) -> str:
    """A new temp folder for one run only (mode 700), under `base` (default: orch's own temp folder)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label)[:60]
    return tempfile.mkdtemp(prefix=f"orch-{safe}-", dir=base)


def wrapper_argv(argv: Sequence[str], *, write: Sequence[str] = (), rewrite: Sequence[str] = (),
                 make: Sequence[str] = (), tmpdir: Optional[str] = None, temp_vars: Sequence[str] = (),
                 read_only: bool = False, connect_ports: Optional[Sequence[int]] = None, scope_only: bool = False,
                 required: bool = False, python: Optional[str] = None) -> list[str]:
    """The exec wrapper's command line (runtime/confine.py) around argv."""
    flags: list[str] = []
    for option, values in (("--write", write), ("--rewrite", rewrite), ("--mkdir", make)):
        for value in dict.fromkeys(values):
            flags += [option, str(value)]
    if tmpdir:
        flags += ["--tmp", str(tmpdir)]
        for name in dict.fromkeys([*TEMP_VARS, *temp_vars]):
            flags += ["--temp-var", name]
        for name, sub in (*BUILD_VARS, *(READ_ONLY_BUILD_VARS if read_only else ())):
            flags += ["--tmp-var", f"{name}={sub}"]
    for port in connect_ports or ():
        flags += ["--connect", str(int(port))]
    if scope_only:
        flags.append("--scope-only")
    if required:
        flags.append("--required")
    # By path, isolated (-I: no working folder or PYTHON* variable on the import path; -S: no site).
    return [python or sys.executable, "-I", "-S", str(WRAPPER), *flags, "--", *argv]


def wrap_command(ceiling: Ceiling, argv: Sequence[str], env: Mapping[str, str], label: str,
                 tmp_base: Optional[str] = None, python: Optional[str] = None) -> Wrapped:
    """The run's command under its ceiling on this machine (unchanged where the kernel has no
    Landlock and the ceiling does not require it; the wrapper refuses the run where it does)."""
    from ..adapters import get_adapter

    abi, _ = kernel_status()
    if not abi and not ceiling.required:
        return Wrapped(list(argv))
    if ceiling.own_sandbox:
        return Wrapped(wrapper_argv(argv, scope_only=True, connect_ports=ceiling.connect_ports,
                                    required=ceiling.required, python=python))
    adapter = get_adapter(ceiling.cli, ceiling.variant)
    dirs, files = adapter.state_paths(env)
    tmpdir = private_tmpdir(label, tmp_base) if abi else None
    roots = [] if ceiling.read_only else list(ceiling.roots)
    return Wrapped(wrapper_argv(argv, write=roots + [str(d) for d in dirs], rewrite=[str(f) for f in files],
                                make=[str(d) for d in dirs], tmpdir=tmpdir, temp_vars=adapter.temp_vars,
                                read_only=ceiling.read_only, connect_ports=ceiling.connect_ports,
                                required=ceiling.required, python=python),
                   tmpdir)


def confined_argv(argv: Sequence[str], writable_dirs: Sequence[os.PathLike | str] = (), read_only: bool = False,
                  tmpdir: Optional[os.PathLike | str] = None, *, state_dirs: Sequence[os.PathLike | str] = (),
                  state_files: Sequence[os.PathLike | str] = (), required: bool = False,
                  connect_ports: Optional[Sequence[int]] = None, python: Optional[str] = None) -> list[str]:
    """argv under the kernel's write ceiling: it (and all it starts) may write only to
    `writable_dirs` (nothing there when read_only), the state folders and files, and `tmpdir`
    (its TMPDIR; the caller makes and removes it). The rules every agent run gets. With
    `connect_ports` given and not empty, its TCP connections go only to those ports.

    Returns argv unchanged where the kernel has no Landlock, unless `required`: then the
    returned command refuses to run (exit 126, one `orch:` line on stderr) — check
    `unavailable_error()` first to refuse before starting anything."""
    abi, _ = kernel_status()
    if not abi and not required:
        return list(argv)
    write = [] if read_only else [str(Path(d).resolve()) for d in writable_dirs]
    write += [str(Path(d).resolve()) for d in state_dirs]
    return wrapper_argv(argv, write=write, rewrite=[str(Path(f)) for f in state_files],
                        make=[str(Path(d)) for d in state_dirs],
                        tmpdir=str(Path(tmpdir).resolve()) if tmpdir is not None else None, read_only=read_only,
                        connect_ports=connect_ports, required=required, python=python)


__all__ = ["Ceiling", "Wrapped", "ENV_NAME", "kernel_status", "status_line", "unavailable_error", "private_tmpdir",
           "wrapper_argv", "wrap_command", "confined_argv"]
