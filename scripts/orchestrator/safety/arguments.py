"""What a command's arguments do: options that write, delete or run code, and the paths they name.

A narrow rule names a program (`git diff`, `pytest`), but the program's arguments decide
what it does: `git diff --output=/x` writes, `pytest --basetemp=/x` deletes, `make test
SHELL=/x` runs any code. `inspect_command` reads one simple command the way the shell
would split it and reports every such argument, from one table of options per program
family, plus every path-like argument that leaves the allowed folders (resolved against
the agent's working directory, `~` and `..` expanded, symbolic links followed) and
every shell metacharacter that would make the command more than the words it shows.
The policy decides what the findings refuse (policy.argument_hit).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

WRITES, DELETES, CODE = "writes", "deletes", "code"
#: The kinds a finding can have, and what each says about the command.
KINDS = {
    "shell": "is interpreted by the shell beyond its words",
    "env": "sets environment variables for the program",
    WRITES: "writes files",
    DELETES: "deletes files",
    CODE: "runs code or configuration it names",
    "outside": "names a path outside the allowed directories",
}
#: Characters that make the shell do more than run the words: separators, pipes,
#: redirections, substitutions, globs and braces (which can expand to other paths), escapes.
SHELL_CHARS = frozenset(";&|<>`$(){}[]*?\\\n\r!")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Finding:
    """One argument that makes a command more than reading: its kind and the word."""

    kind: str  # shell, env, writes, deletes, code, outside
    word: str
    why: str
    outside: bool = False  # for an option: what it acts on lies outside the allowed directories


@dataclass(frozen=True)
class Family:
    """The write/delete/code options of one kind of program, in its own parser's spelling.

    `long` maps a long option's normalized name (lower case, no dashes or underscores) to
    its kind; `short` a one-letter option to its kind. `abbrev`: the parser also takes an
    unambiguous abbreviation of a long option (GNU getopt, npm's nopt), so any prefix of a
    listed name counts. `single_dash_long`: `-name` is a long option (Go's flag package).
    `keep`: long names that are harmless themselves although they prefix a listed one.
    `argfiles`: `@FILE` reads more arguments from a file (pytest). `extra_targets`: an
    operand past the first is another recipe to run (make test install). `overrides`: a
    `NAME=value` operand overrides a variable the recipes use (make test SHELL=...).
    `test_names`: an operand is a test's dotted name, which the runner imports and calls
    whatever it names (unittest runs `tempfile.mkdtemp`): it must name a module of the
    workspace, or be the path of a test file in it.
    """

    name: str
    long: dict[str, str]
    short: dict[str, str] = field(default_factory=dict)
    abbrev: bool = False
    single_dash_long: bool = False
    keep: frozenset[str] = frozenset()
    argfiles: bool = False
    extra_targets: bool = False
    overrides: bool = False
    test_names: bool = False  # its operands are test names, which it imports and calls (unittest)


def _norm(name: str) -> str:
    return re.sub(r"[-_]", "", name.lstrip("-").lower())


def _table(kinds: dict[str, Sequence[str]]) -> dict[str, str]:
    return {_norm(n): kind for kind, names in kinds.items() for n in names}


GIT_GLOBAL = Family("git", _table({
    CODE: ["--config-env", "--exec-path", "--git-dir", "--work-tree", "--namespace", "--super-prefix",
           "--attr-source", "--list-cmds"],
}), short={"c": CODE, "C": CODE})
GIT = Family("git", _table({
    WRITES: ["--output", "--output-directory"],
    CODE: ["--ext-diff", "--exec", "--upload-pack", "--receive-pack", "--open-files-in-pager"],
}), short={"o": WRITES, "O": CODE})
# -W takes a warning category by its dotted name, which the interpreter imports.
PYTHON = Family("python", {}, short={"c": CODE, "X": CODE, "i": CODE, "W": CODE})
PYTEST = Family("pytest", _table({
    DELETES: ["--basetemp"],
    # pytest's own, then its common plugins' (benchmark, allure, csv, md-report, syrupy, regressions)
    WRITES: ["--junitxml", "--junit-xml", "--resultlog", "--result-log", "--report-log", "--html",
             "--json-report-file", "--cov-report", "--rootdir", "--log-file", "--debug",
             "--benchmark-storage", "--benchmark-save", "--benchmark-autosave", "--benchmark-json",
             "--benchmark-histogram", "--benchmark-save-data", "--alluredir", "--csv", "--md-report-output",
             "--snapshot-update", "--force-regen", "--regen-all"],
    # -p and --pyargs import any module by name; -W imports a warning category by its dotted name
    CODE: ["--config-file", "--inifile", "--override-ini", "--pdbcls", "--pastebin", "--confcutdir",
           "--cov-config", "--tx", "--rsyncdir", "--pyargs", "--pythonwarnings", "--plugins"],
}), short={"c": CODE, "o": CODE, "p": CODE, "W": CODE}, argfiles=True)
#: unittest's own options that take a value (the value is no test name).
UNITTEST_VALUED = frozenset({"-k", "-s", "--start-directory", "-p", "--pattern", "-t", "--top-level-directory",
                             "--durations"})
UNITTEST = Family("unittest", {}, test_names=True)
NODE = Family("node", _table({
    WRITES: ["--output-file", "--outputFile", "--coverage-directory", "--coverageDirectory", "--cache-directory",
             "--cacheDirectory", "--cache", "--cache-dir", "--logs-dir", "--test-reporter-destination",
             "--reporter-option", "--reporter-options", "--root-dir", "--rootDir", "--root", "--update",
             "--update-snapshot", "--updateSnapshot", "--coverage.reportsDirectory", "--reports-directory",
             "--cpu-prof-dir", "--heap-prof-dir", "--diagnostic-dir", "--report-directory",
             "--redirect-warnings", "--outdir", "--init"],
    DELETES: ["--clear-cache", "--clearCache"],
    CODE: ["--prefix", "--dir", "--cwd", "--script-shell", "--userconfig", "--globalconfig", "--node-options",
           "--require", "--import", "--loader", "--experimental-loader", "--eval", "--print", "--env-file",
           "--config", "--setup-files", "--setupFiles", "--setup-files-after-env", "--setupFilesAfterEnv",
           "--global-setup", "--globalSetup", "--global-teardown", "--globalTeardown", "--test-runner",
           "--testRunner", "--runner", "--reporters", "--resolver", "--transform", "--test-environment",
           "--testEnvironment", "--snapshot-resolver", "--snapshotResolver", "--file", "--package", "--opts",
           "--workspace", "--filter", "--call", "--shell", "--allow-all", "--allow-write", "--allow-run",
           "--allow-ffi", "--allow-env", "--allow-sys", "--allow-net"],
}), short={"C": CODE, "c": CODE, "r": CODE, "e": CODE, "p": CODE, "u": WRITES, "O": WRITES, "w": CODE, "A": CODE},
    abbrev=True, keep=frozenset({"coverage", "reporter", "ci", "co", "run", "test"}))
CARGO = Family("cargo", _table({
    WRITES: ["--target-dir", "--out-dir", "--artifact-dir", "--lockfile-path", "--logfile", "--persist-doctests"],
    CODE: ["--config", "--manifest-path"],
}), short={"Z": CODE, "C": CODE})
GO = Family("go", _table({
    WRITES: ["-o", "-outputdir", "-coverprofile", "-cpuprofile", "-memprofile", "-blockprofile", "-mutexprofile",
             "-trace", "-c", "-pkgdir", "-fuzzcache", "-json-output", "-gocoverdir", "-testlogfile"],
    CODE: ["-exec", "-toolexec", "-modfile", "-overlay", "-gcflags", "-ldflags", "-asmflags", "-gccgoflags",
           "-vettool", "-C", "-args", "-pgo", "-coverpkg"],
}), single_dash_long=True)
MAKE = Family("make", _table({
    CODE: ["--eval", "--file", "--makefile", "--directory", "--include-dir", "--what-if", "--new-file",
           "--assume-new", "--old-file", "--assume-old", "--environment-overrides", "--jobserver-auth",
           "--jobserver-style"],
}), short={"E": CODE, "f": CODE, "C": CODE, "I": CODE, "W": CODE, "o": CODE, "e": CODE},
    abbrev=True, extra_targets=True, overrides=True)

_PROGRAMS = {
    "git": GIT, "pytest": PYTEST, "py.test": PYTEST, "npm": NODE, "npx": NODE, "pnpm": NODE, "yarn": NODE,
    "node": NODE, "bun": NODE, "deno": NODE, "jest": NODE, "vitest": NODE, "mocha": NODE, "cargo": CARGO,
    "go": GO, "make": MAKE, "gmake": MAKE,
}
_PYTHON = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?$")
_MODULES = {"pytest": PYTEST, "py.test": PYTEST, "unittest": UNITTEST}
#: pytest's --cov-report kinds that print to the terminal only.
_TERMINAL_REPORTS = frozenset({"term", "term-missing", "term:skip-covered", "term-missing:skip-covered", ""})


# --------------------------------------------------------------------------- paths


def _expand(word: str) -> str:
    return os.path.expanduser(re.sub(r"^\$\{?HOME\}?(?=/|$)", "~", word))


def is_inside(path: str, cwd: Optional[Path], roots: Sequence[Path]) -> bool:
    """True when path, from cwd, stays in a root; without roots, when it cannot leave cwd."""
    p = Path(_expand(path))
    if not roots:
        if p.is_absolute() or path.startswith("~"):
            return False
        return not os.path.normpath(path).startswith("..")
    if not p.is_absolute():
        p = (cwd or roots[0]) / p
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return False
    return any(resolved == r or r in resolved.parents for r in roots)


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$")


def _url_path(piece: str) -> Optional[str]:
    """A URL's place as a path: a file: URL's path, else the URL itself (a network location),
    or None when the piece is no URL. Either way it is checked like any other path."""
    m = _URL.match(piece)
    if not m:
        return None
    scheme, host, path = m.groups()
    if scheme.lower() == "file" and host in ("", "localhost"):
        return path or "/"
    return piece


def _paths_in(word: str) -> list[str]:
    """The path-like pieces of one argument: itself, an option's or an assignment's value
    (`--opt=PATH`, `key=PATH`, `-CPATH`), `kind:PATH` values (`--cov-report=html:DIR`), and
    URLs (`file:///x` is the path /x; any other URL is a place outside the folders)."""
    pieces = [word]
    if "=" in word:
        pieces.append(word.split("=", 1)[1])
    if word.startswith("-") and not word.startswith("--") and len(word) > 2:
        pieces.append(word[2:])
    if word.startswith("@"):
        pieces.append(word[1:])
    urls = [u for u in (_url_path(p) for p in pieces) if u is not None]
    if urls:
        return list(dict.fromkeys(urls))
    for piece in list(pieces):
        if ":" in piece:
            pieces.extend(piece.split(":")[1:])
    return [p for p in dict.fromkeys(pieces) if p and not p.startswith("-")]


def _outside_paths(word: str, cwd: Optional[Path], roots: Sequence[Path]) -> list[str]:
    return [p for p in _paths_in(word) if _URL.match(p) or not is_inside(p, cwd, roots)]


# --------------------------------------------------------------------------- options


def _option_kind(word: str, family: Family) -> Optional[tuple[str, str]]:
    """(kind, option) when the word is, or holds, one of the family's listed options."""
    if word == "--" or not word.startswith("-") or word == "-":
        return None
    name = word.split("=", 1)[0]
    if family.single_dash_long or name.startswith("--"):
        key = _norm(name)
        if family.single_dash_long:
            key = key[len("test."):] if key.startswith("test.") else key
        if key in family.long:
            return family.long[key], name
        head = key.split(".", 1)[0]  # `--outputFile.json=x`, `--coverage.enabled=x` (a whole sub-table)
        if head != key:
            for full, kind in family.long.items():
                if full == head or full.startswith(head + "."):
                    return kind, name
        if family.abbrev and key not in family.keep and len(key) >= 2:
            for full, kind in family.long.items():
                if full.startswith(key):
                    return kind, name
        return None
    for ch in name[1:]:  # a cluster of short options: -qo, -kfoo (the value's letters too: cautious)
        if ch in family.short:
            return family.short[ch], f"-{ch}"
    return None


def _option_value(words: list[str], i: int) -> Optional[str]:
    """The value an option at words[i] was given: after `=`, attached, or the next word."""
    word = words[i]
    if "=" in word:
        return word.split("=", 1)[1]
    if not word.startswith("--") and len(word) > 2:
        return word[2:]
    nxt = words[i + 1] if i + 1 < len(words) else None
    return nxt if nxt is not None and not nxt.startswith("-") else None


def _family_of(prog: str, args: list[str]) -> list[tuple[Family, list[str]]]:
    """The argument groups of a command and the family whose table reads each."""
    if prog == "git":
        i = 0
        while i < len(args) and args[i].startswith("-"):
            i += 2 if args[i] in ("-c", "-C", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                                  "--config-env", "--super-prefix", "--attr-source") else 1
        return [(GIT_GLOBAL, args[:i]), (GIT, args[i:])]
    if _PYTHON.match(prog):
        for i, arg in enumerate(args):
            if not arg.startswith("-") or arg == "--":
                break  # a script: the interpreter's own options end here
            m = re.match(r"^-[A-Za-z]*m(.*)$", arg)  # -m MODULE, -mMODULE, -Im MODULE
            if m:
                module, rest = (m.group(1), args[i + 1:]) if m.group(1) else (
                    (args[i + 1] if i + 1 < len(args) else ""), args[i + 2:])
                return [(PYTHON, args[:i]), (_MODULES.get(module) or Family(module or "python", {}), rest)]
        return [(PYTHON, args)]
    family = _PROGRAMS.get(prog)
    return [(family or Family(prog, {}), args)]


def _is_workspace_test(name: str, cwd: Optional[Path], roots: Sequence[Path]) -> bool:
    """True when a unittest operand names a test file, or a module or package of the workspace
    (its first dotted part is a module or a folder in the working directory, which the runner
    puts first on the import path: it can then only run the project's own code)."""
    if cwd is None:
        return False
    if "/" in name or name.endswith(".py"):
        path = Path(_expand(name))
        path = path if path.is_absolute() else cwd / path
        return path.suffix == ".py" and path.is_file() and is_inside(str(path), cwd, roots)
    head = name.split(".")[0]
    if not head.isidentifier():
        return False
    return any(is_inside(str(p), cwd, roots) and p.exists() for p in (cwd / f"{head}.py", cwd / head / "__init__.py")) \
        or ((cwd / head).is_dir() and is_inside(str(cwd / head), cwd, roots))


def _test_name_findings(words: list[str], cwd: Optional[Path], roots: Sequence[Path]) -> list[Finding]:
    """unittest's operands: `discover` and its folders, or test names of the workspace only."""
    found: list[Finding] = []
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in UNITTEST_VALUED:
            skip = True
            continue
        if word.startswith("-") or (word == "discover" and all(w.startswith("-") for w in words[:i])):
            continue
        if "discover" in words[:i]:
            continue  # discover's start folder, pattern and top folder: paths, checked as such
        if not _is_workspace_test(word, cwd, roots):
            found.append(Finding("outside", word, f"`{word}` is not a test of the workspace: unittest imports "
                                                  f"whatever it names and calls it"))
    return found


def _option_findings(family: Family, words: list[str], cwd: Optional[Path],
                     roots: Sequence[Path]) -> list[Finding]:
    found: list[Finding] = _test_name_findings(words, cwd, roots) if family.test_names else []
    operands = 0
    for i, word in enumerate(words):
        hit = _option_kind(word, family)
        if hit:
            kind, option = hit
            value = _option_value(words, i)
            if _norm(option) == "covreport" and (value or "") in _TERMINAL_REPORTS:
                continue  # printed, not written
            if value is not None:
                outside = bool(_outside_paths(value, cwd, roots))
            else:  # `--clearCache`: it deletes what another argument names (--cacheDirectory=...)
                outside = kind == DELETES and any(_outside_paths(w, cwd, roots) for w in words)
            found.append(Finding(kind, word, f"`{word}` {KINDS[kind]} ({family.name} {option})", outside))
            continue
        if word.startswith("-"):
            continue
        if family.argfiles and word.startswith("@"):
            found.append(Finding(CODE, word, f"`{word}` reads more {family.name} arguments from a file"))
        elif family.overrides and "=" in word:
            found.append(Finding(CODE, word, f"`{word}` overrides a {family.name} variable its recipes use"))
        elif family.extra_targets and not word.isdigit():  # `-j 4`: a value, not a target
            operands += 1
            if operands > 1:
                found.append(Finding(CODE, word, f"`{word}` runs another {family.name} target"))
    return found


# --------------------------------------------------------------------------- the one entry point


def shell_syntax(command: str) -> str:
    """The characters the shell would act on in command: outside quotes, or `$`, a backquote,
    a backslash or `!` inside double quotes (single quotes make everything literal)."""
    found: list[str] = []
    quote = ""
    for ch in command:
        if ch in "\n\r":
            found.append(ch)
        elif quote == "'":
            quote = "" if ch == "'" else quote
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in "$`\\!":
                found.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch in SHELL_CHARS:
            found.append(ch)
    return "".join(dict.fromkeys(found))


def split_words(command: str) -> Optional[list[str]]:
    """The words the shell would pass, or None when the command is more than plain words."""
    if shell_syntax(command):
        return None
    try:
        return shlex.split(command, comments=False, posix=True)
    except ValueError:  # unbalanced quotes
        return None


def inspect_words(words: Sequence[str], *, cwd: Optional[Path], roots: Sequence[Path]) -> list[Finding]:
    """Every argument of one simple command (its words) that does more than read inside the roots."""
    words = list(words)
    found: list[Finding] = []
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        found.append(Finding("env", words[i], f"`{words[i]}` {KINDS['env']}"))
        for path in _outside_paths(words[i].split("=", 1)[1], cwd, roots)[:1]:
            found.append(Finding("outside", words[i], f"`{words[i]}` names {path}, outside the allowed directories"))
        i += 1
    if i >= len(words):
        return found
    program, args = words[i], words[i + 1:]
    if "/" in program and not os.path.isabs(_expand(program)) and not is_inside(program, cwd, roots):
        found.append(Finding("outside", program, f"the program {program} is outside the allowed directories"))
    prog = os.path.basename(program)
    for family, group in _family_of(prog, args):
        found.extend(_option_findings(family, group, cwd, roots))
    for word in args:
        for path in _outside_paths(word, cwd, roots):
            found.append(Finding("outside", word, f"`{word}` names {path}, outside the allowed directories"))
            break
    return found


def inspect_command(command: str, *, cwd: Optional[Path], roots: Sequence[Path]) -> list[Finding]:
    """Every argument of a command that does more than read inside the allowed directories.

    The command must be one simple command of plain words: anything the shell would
    interpret (separators, redirections, substitutions, globs, braces, escapes) is one
    `shell` finding, since its words are then not what runs.
    """
    words = split_words(command)
    if words is None:
        chars = " ".join(ch.encode("unicode_escape").decode() for ch in shell_syntax(command))
        return [Finding("shell", command, f"it holds shell syntax ({chars or 'unbalanced quotes'}), "
                                          f"so its words are not all that runs")]
    if not words:
        return []
    return inspect_words(words, cwd=cwd, roots=roots)


__all__ = ["Finding", "Family", "KINDS", "SHELL_CHARS", "inspect_command", "inspect_words", "split_words",
           "shell_syntax", "is_inside"]
