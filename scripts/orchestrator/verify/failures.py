"""Which tests failed, read from a test command's output, and which failures count.

Cheap, line by line, for the formats orch meets most: pytest, unittest, TAP (node --test,
tap), Jest, cargo test and go test. Anything else still fails by its exit code, with the
tail of its output; the run then names no test (`UNNAMED`). Pure: no I/O, no pydantic (the
completion criteria import `effective_failures`).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional

UNNAMED = "(the test command failed without naming a failing test)"
TIMED_OUT = "(the test command ran past its time limit)"
MAX_NAMES = 100
MAX_NAME = 300

_PYTEST = re.compile(r"^(FAILED|ERROR) ([^\s(]\S*?)(?: - (.*))?$")  # not unittest's "FAILED (errors=1)"
_UNITTEST = re.compile(r"^(FAIL|ERROR): (\S+) \(([^)]+)\)")
_TAP = re.compile(r"^\s*not ok \d+(?: -)? ?(.*?)(?:\s+#\s*(?:TODO|SKIP)\b.*)?$", re.I)
_TAP_TODO = re.compile(r"#\s*(TODO|SKIP)\b", re.I)
_JEST = re.compile(r"^\s*● (.+?)\s*$")
_CARGO = re.compile(r"^test (\S+) \.\.\. FAILED$")
_GO = re.compile(r"^\s*--- FAIL: (\S+)")
_PY_ERROR = re.compile(r"^(?:E\s+)?([A-Za-z_][\w.]*(?:Error|Exception|Failure|Exit)\b.*)$")
_FAILED_IMPORT = "unittest.loader._FailedTest."


class FailureScanner:
    """Feed output lines as they come; `failing` and `first_error` say what was seen."""

    def __init__(self) -> None:
        self.failing: list[str] = []
        self.first_error = ""
        self._seen: set[str] = set()

    def _add(self, name: str, why: str = "") -> None:
        name = name.strip()[:MAX_NAME]
        if name and name not in self._seen and len(self.failing) < MAX_NAMES:
            self._seen.add(name)
            self.failing.append(name)
        if why and not self.first_error:
            self.first_error = why.strip()[:MAX_NAME]

    def feed(self, line: str) -> None:
        text = line.rstrip("\r\n")
        if m := _PYTEST.match(text):
            self._add(m.group(2), m.group(3) or "")
        elif m := _UNITTEST.match(text):
            self._add(unittest_name(m.group(2), m.group(3)))
        elif m := _CARGO.match(text):
            self._add(m.group(1))
        elif m := _GO.match(text):
            self._add(m.group(1))
        elif (m := _TAP.match(text)) and not _TAP_TODO.search(text):
            self._add(m.group(1) or text.strip())
        elif (m := _JEST.match(text)) and m.group(1) != "Test suite failed to run":
            self._add(m.group(1))
        elif not self.first_error and (m := _PY_ERROR.match(text.strip())) and ":" in m.group(1):
            self.first_error = m.group(1)[:MAX_NAME]


def unittest_name(method: str, where: str) -> str:
    """`test_x (tests.test_a.TestA.test_x)` → tests.test_a.TestA.test_x (Python ≥ 3.11 repeats
    the method; older versions name only the class); a module that failed to import → its name."""
    if where.startswith(_FAILED_IMPORT):
        return f"{method} (failed to import)"
    return where if where.endswith("." + method) else f"{where}.{method}"


def failing_tests(lines: Iterable[str]) -> list[str]:
    """Every failing test the output names, in order, once each."""
    scanner = FailureScanner()
    for line in lines:
        scanner.feed(line)
    return scanner.failing


# --------------------------------------------------------------------------- what counts


_SEPARATORS = ("::", ".", "/", " ", "›")


def is_known(test: str, known: Iterable[str]) -> bool:
    """True when a person declared this failing test out of scope: the same name, the end of
    its name (`test_version` for `tests/test_a.py::TestA::test_version`), or a file or module
    holding it (`tests/test_a.py`, `tests.test_a`, `tests.test_a.TestA.test_version`)."""
    dotted = test.replace(".py::", ".").replace("::", ".").replace("/", ".")
    for k in known:
        k = k.strip()
        if not k:
            continue
        for name in (test, dotted):
            if name == k or any(name.endswith(sep + k) for sep in _SEPARATORS) \
                    or name.startswith(k + "::") or name.startswith(k + "."):
                return True
    return False


def effective_failures(run: dict[str, Any], known: Iterable[str] = ()) -> list[str]:
    """The failures of a finished run that count (a stored VerifyRun, as a dict): every failing
    test not declared known; the command's own failure when its output named none; a time-out.
    Empty: it passed (or there was no test command to run)."""
    if not run.get("command"):
        return []
    if run.get("timed_out"):
        return [TIMED_OUT]
    if run.get("exit_code") == 0:
        return []
    known = list(known)
    failing = list(run.get("failing") or [])
    if not failing:
        return [UNNAMED]
    return [t for t in failing if not is_known(t, known)]


def known_names(verification: Optional[dict[str, Any]]) -> list[str]:
    """The declared known failures of a stored Verification (as a dict)."""
    return [k["test"] for k in (verification or {}).get("known_failures") or [] if k.get("test")]
