"""The project's test command: the one the workspace declares, found in the tree itself.

One detection for two users: the narrow test rule granted to building agents
(safety/test_command.py) and the verification gate, which needs an argv that can really
run here — so `find_command` also checks that the program exists and, for Python, that
the tree holds tests at all (an empty folder a team is about to fill has no test command
yet). Light on imports: the verifier runs it at the start of every run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Optional

PYTHON_TESTS = ("python3 -m unittest", "pytest")
NPM_INIT_TEST = "no test specified"  # in the test script `npm init` writes, which only fails: it tests nothing
_SKIP_DIRS = frozenset({"node_modules", "venv", "env", "__pycache__", "build", "dist", "site-packages", "target"})
_TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")
_PYTEST_CONFIG = ("pytest.ini", "conftest.py")
MAX_ENTRIES = 5000  # how much of the tree the search for Python tests may look at


def project_test_commands(workspace: Path) -> tuple[str, ...]:
    """The commands that run this workspace's tests, most specific first (package.json → npm
    test, Cargo.toml → cargo test, go.mod → go test, a Makefile test target → make test, else
    Python's unittest and pytest)."""
    pkg = workspace / "package.json"
    if pkg.is_file():
        try:
            if json.loads(pkg.read_text()).get("scripts", {}).get("test"):
                return ("npm test",)
        except (ValueError, OSError, AttributeError):
            pass
    if (workspace / "Cargo.toml").is_file():
        return ("cargo test",)
    if (workspace / "go.mod").is_file():
        return ("go test ./...",)
    makefile = workspace / "Makefile"
    try:
        if makefile.is_file() and re.search(r"(?m)^test\s*:", makefile.read_text(errors="replace")):
            return ("make test",)
    except OSError:
        pass
    return PYTHON_TESTS  # Python projects, and an empty folder a team is about to fill


def find_command(tree: Path) -> tuple[Optional[list[str]], str]:
    """(argv, where it came from) for the tests in tree, or (None, why there is none)."""
    tree = Path(tree)
    found = project_test_commands(tree)
    if found != PYTHON_TESTS:
        argv = shlex.split(found[0])
        if found[0] == "npm test" and _npm_init_script(tree):
            return None, "package.json's test script is the one `npm init` writes (no test specified): it tests nothing"
        if shutil.which(argv[0]) is None:
            return None, f"{found[0]} (from the tree's files), but {argv[0]} is not installed"
        return argv, {"npm": "package.json", "cargo": "Cargo.toml", "go": "go.mod", "make": "Makefile"}[argv[0]]
    files = python_test_files(tree)
    configured = pytest_configured(tree)
    if not files and not configured:
        return None, "no test command: no package.json, Cargo.toml, go.mod, Makefile test target or Python tests"
    python = shutil.which("python3") or shutil.which("python")
    if python is None:
        return None, "Python tests, but no python3 is installed"
    name = os.path.basename(python)
    if configured or not all(_unittest_style(f) for f in files):
        # pytest's own tests (plain functions, fixtures) or its configuration: unittest would find nothing
        if _imports(python, "pytest"):
            return [name, "-m", "pytest"], f"Python tests (pytest{': ' + configured if configured else ''})"
        return None, f"Python tests written for pytest, but pytest is not installed for {name}"
    tests = tree / "tests"
    start = (["-s", "tests"] + (["-t", "."] if (tests / "__init__.py").is_file() else [])) \
        if tests.is_dir() and all(tests in f.parents for f in files) else []
    return [name, "-m", "unittest", "discover", *start], "Python tests (unittest: every test file uses it)"


def _npm_init_script(tree: Path) -> bool:
    try:
        script = json.loads((tree / "package.json").read_text())["scripts"]["test"]
    except (ValueError, OSError, KeyError, TypeError):
        return False
    return isinstance(script, str) and NPM_INIT_TEST in script


def python_test_files(tree: Path, limit: int = 200) -> list[Path]:
    """The tree's Python test files (test_*.py, *_test.py), outside hidden and dependency folders."""
    found: list[Path] = []
    seen = 0
    for folder, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        found += [Path(folder) / f for f in sorted(files) if _TEST_FILE.match(f)]
        seen += len(files) + len(dirs)
        if seen > MAX_ENTRIES or len(found) >= limit:
            break
    return found[:limit]


def pytest_configured(tree: Path) -> str:
    """Where the tree configures pytest ("" when it does not)."""
    for name in _PYTEST_CONFIG:
        if (tree / name).is_file():
            return name
    for name, marker in (("pyproject.toml", "[tool.pytest"), ("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        try:
            if marker in (tree / name).read_text(errors="replace"):
                return name
        except OSError:
            continue
    return ""


def _unittest_style(path: Path) -> bool:
    try:
        return "unittest" in path.read_text(errors="replace")
    except OSError:
        return False


def _imports(python: str, module: str) -> bool:
    try:
        return subprocess.run([python, "-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
