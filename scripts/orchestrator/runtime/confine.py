"""The exec wrapper that puts one agent run under the kernel's write ceiling.

    python -I -S …/orchestrator/runtime/confine.py [--write DIR]... [--rewrite FILE]... [--mkdir DIR]...
        [--tmp DIR [--temp-var NAME]...] [--connect PORT]... [--scope-only] [--required] -- ARGV...

It creates the missing folders named by --mkdir (a CLI's state folder it would make on
first use), builds a Landlock ruleset (runtime/landlock.py), restricts itself and execs
ARGV in its place: no process of orch's stays behind, and the CLI and everything it runs —
its tools, tests, a shell a model asked for — can change files only where the rules allow,
whatever their arguments, their permission flags or the user they run as:

- `--write DIR`: every write right beneath DIR (a file: write and truncate it);
- `--rewrite FILE`: the file may be rewritten in place, not replaced (a CLI's config file
  directly in $HOME, such as ~/.claude.json: a rule on $HOME would open all of it);
- always: /dev/null, /dev/tty, /dev/ptmx and /dev/pts (terminals, for tools that ask for
  one), /dev/shm (POSIX semaphores and shared memory), and the regular files stdout and
  stderr point at (the supervisor's) for appending only, so a `>` reopen cannot empty
  orch's record of the run;
- `--tmp DIR`: the run's private temp folder, given as TMPDIR (and as each --temp-var
  already set, e.g. CLAUDE_CODE_TMPDIR); `--tmp-var NAME=SUB` sets NAME to DIR/SUB when the
  environment does not set it (a build cache or output folder the run could not write
  elsewhere: GOCACHE, and CARGO_TARGET_DIR at the read level);
- signals and abstract Unix sockets stay inside the run (ABI 6 scopes);
- `--connect PORT` (ABI 4): TCP connections only to the listed ports;
- `--scope-only`: no filesystem rules, only the scopes (a CLI whose own sandbox confines
  its writes and cannot run inside a Landlock domain: codex's bubblewrap).

Reading and executing are never restricted. Where the kernel has no Landlock, the run is
refused with --required (exit 126, one `orch:` line on stderr) and runs as before without.
Flags, not JSON, and only the standard library: this runs at every agent start. It is run
by its path in isolated mode: an agent's working folder is on no import path (`python -m`
would import an `orchestrator` package the agent wrote there, outside any ceiling).
"""

from __future__ import annotations

import os
import stat
import sys

if __package__:
    from . import landlock
else:  # run by path (python -I -S …/confine.py): orch's own folder, never the working directory's
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import landlock  # type: ignore[no-redef]

#: Device files every run may write and truncate: output thrown away, terminals.
DEVICE_FILES = ("/dev/null", "/dev/tty", "/dev/ptmx")
#: Device folders with every write right: pseudo-terminals, POSIX shared memory and semaphores.
DEVICE_DIRS = ("/dev/pts", "/dev/shm")
#: The wrapper's exit status when it refuses to run the command (the shell's "cannot execute").
REFUSED = 126
_LISTS = {"--write": "write", "--rewrite": "rewrite", "--mkdir": "mkdir", "--temp-var": "temp_vars",
          "--tmp-var": "tmp_vars", "--connect": "connect"}


class Refused(Exception):
    """The run must not start; the message is the one line the user sees."""


def parse(args: list[str]) -> tuple[dict, list[str]]:
    """The rules and the command from the wrapper's arguments."""
    rules: dict = {k: [] for k in _LISTS.values()}
    rules.update(tmp=None, scope_only=False, required=False, connect_given=False)
    i = 0
    while i < len(args) and args[i] != "--":
        flag = args[i]
        if flag in ("--scope-only", "--required"):
            rules[flag[2:].replace("-", "_")] = True
            i += 1
            continue
        if flag not in _LISTS and flag != "--tmp":
            raise Refused(f"the confinement rules are invalid: unknown option {flag!r}")
        if i + 1 >= len(args):
            raise Refused(f"the confinement rules are invalid: {flag} needs a value")
        value = args[i + 1]
        if flag == "--tmp":
            rules["tmp"] = value
        elif flag == "--connect":
            if not value.isdigit() or not 0 <= int(value) <= 65535:
                raise Refused(f"the confinement rules are invalid: {value!r} is not a TCP port")
            rules["connect"].append(int(value))
            rules["connect_given"] = True
        elif flag == "--tmp-var":
            name, _, sub = value.partition("=")
            if not name or not sub or "/" in sub or sub in (".", ".."):
                raise Refused(f"the confinement rules are invalid: --tmp-var {value!r} is not NAME=FOLDER")
            rules["tmp_vars"].append((name, sub))
        else:
            rules[_LISTS[flag]].append(value)
        i += 2
    command = args[i + 1:]
    if i >= len(args) or not command:
        raise Refused("the confinement rules are invalid: no command after --")
    return rules, command


def _allow(ruleset: landlock.Ruleset, path: str, rights: int) -> None:
    """A rule for a path that may not exist here (a state file not written yet): skipped then,
    which only ever allows less."""
    try:
        ruleset.allow_path(path, rights)
    except landlock.LandlockError:
        raise
    except OSError:
        pass


def _output_files() -> list[str]:
    """stdout and stderr when they are regular files (the supervisor's), by their real path."""
    found = []
    for fd in (1, 2):
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                found.append(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return found


def apply(rules: dict) -> int:
    """Restrict this process as the rules say: the ABI used, or 0 where the kernel has none."""
    abi, why = landlock.probe()
    if not abi:
        if rules["required"]:
            raise Refused(f"kernel confinement is required and {why}")
        return 0
    for folder in rules["mkdir"]:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError:
            pass  # its rule is skipped; the CLI says what it could not write
    files = not rules["scope_only"]
    handled = landlock.write_rights(abi) if files else 0
    scoped = landlock.SCOPE_SIGNAL | landlock.SCOPE_ABSTRACT_UNIX_SOCKET
    net = landlock.NET_CONNECT_TCP if rules["connect_given"] else 0
    if not handled and abi < 6 and not (net and abi >= 4):
        return abi  # nothing this kernel can check was asked for
    try:
        ruleset = landlock.Ruleset(handled, net, scoped, abi=abi)
        if files:
            every = handled & ~(landlock.MAKE_CHAR | landlock.MAKE_BLOCK)
            for path in [*rules["write"], *([rules["tmp"]] if rules["tmp"] else []), *DEVICE_DIRS]:
                _allow(ruleset, path, every)
            for path in [*rules["rewrite"], *DEVICE_FILES]:
                _allow(ruleset, path, landlock.WRITE_FILE | landlock.TRUNCATE)
            for path in _output_files():
                _allow(ruleset, path, landlock.WRITE_FILE)
        for port in rules["connect"]:
            ruleset.allow_port(port, landlock.NET_CONNECT_TCP)
        ruleset.restrict_self()
    except OSError as e:
        raise Refused(str(e) if isinstance(e, landlock.LandlockError) else f"kernel confinement failed: {e}") from None
    return abi


def environment(rules: dict) -> dict[str, str]:
    """The command's environment: the run's private temp folder as TMPDIR (and the other temp
    variables already set), the rest as the wrapper got it."""
    env = dict(os.environ)
    if rules["tmp"]:
        env["TMPDIR"] = rules["tmp"]
        for name in rules["temp_vars"]:
            if name in env:
                env[name] = rules["tmp"]
        for name, sub in rules["tmp_vars"]:
            env.setdefault(name, os.path.join(rules["tmp"], sub))
    return env


def main(argv: list[str | None] = None) -> int:
    try:
        rules, command = parse(sys.argv[1:] if argv is None else argv)
        apply(rules)
    except Refused as e:
        sys.stderr.write(f"orch: {e}\n")
        return REFUSED
    try:
        os.execvpe(command[0], command, environment(rules))
    except OSError as e:
        sys.stderr.write(f"orch: cannot run {command[0]}: {e.strerror}\n")
        return 127 if isinstance(e, FileNotFoundError) else REFUSED
    return REFUSED  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
