"""Fixtures of the real-CLI suite (`pytest -m realcli`).

- `realcli_bin`: the folder with the pinned agent CLI binaries (cli-pins.json), installed on first
  use by scripts/install-clis (or taken from ORCH_REALCLI_BIN).
- `lab`: a fresh `Lab` — loopback-only network namespace, scratch home, model stub inside
  it — closed (every process in it stopped) when the test ends, pass or fail.
- `make_lab`: a factory for tests that need more than one lab.
- `scenario_bank`: runs the raw scenarios (scenarios.py) once per session and keeps their
  fresh captures, so the drift guard reuses what the direct tests already ran.
- `slow_bank`: the slow scenarios (scenarios.SLOW_SCENARIOS: CLIs that back off for minutes on
  their own), each in a lab of its own, side by side in the background from the first test
  of a module that reads them (its SLOW_SCENARIOS_READ) on; the tests that read them run
  last, so their minutes of waiting overlap the module's other tests instead of adding to it.

Where no namespace can be made (or node/npm are missing), these fixtures skip the test
with the reason: a real CLI never runs unconfined.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from .lab import Lab, RunResult
from .netns import INSTALL_SCRIPT, REPO, Namespace, NamespaceUnavailable
from .scenarios import CASES, SCENARIOS, SLOW_SCENARIOS

CAPTURES = Path(os.environ.get("ORCH_REALCLI_CAPTURES") or REPO / "test-artifacts" / "realcli-captures")
INSTALL_TIMEOUT = 600


@pytest.fixture(scope="session")
def realcli_confinement() -> None:
    """Skips the test unless a loopback-only network namespace can be made here."""
    try:
        Namespace().close()
    except NamespaceUnavailable as exc:
        pytest.skip(f"real-CLI tests need a loopback-only network namespace, and none can be made here: {exc}")


@pytest.fixture(scope="session")
def realcli_bin() -> Path:
    """The folder holding the pinned agent CLI binaries (claude, codex, gemini, opencode, qwen, copilot)."""
    given = os.environ.get("ORCH_REALCLI_BIN")
    if given:
        return Path(given)
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            pytest.skip(f"real-CLI tests need {tool} (Node.js 20+) to install the CLIs")
    proc = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"scripts/install-clis failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fresh_captures() -> Path:
    """This session's captures folder, emptied first so it only holds this run's output."""
    if CAPTURES.exists():
        shutil.rmtree(CAPTURES)
    CAPTURES.mkdir(parents=True)
    return CAPTURES


@pytest.fixture
def make_lab(tmp_path: Path, realcli_confinement: None, realcli_bin: Path,
             fresh_captures: Path) -> Iterator[Callable[..., Lab]]:
    """make_lab(name='lab') → a new Lab under tmp_path; all are closed after the test."""
    labs: list[Lab] = []

    def make(name: str = "lab") -> Lab:
        try:
            lab = Lab(tmp_path / name, realcli_bin, fresh_captures)
        except NamespaceUnavailable as exc:
            pytest.skip(f"no loopback-only network namespace: {exc}")
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    """A fresh lab for one test."""
    return make_lab()


class ScenarioBank:
    """Each raw scenario's results, run at most once per session unless a test asks again."""

    def __init__(self, make_lab_at: Callable[[str], Lab]):
        self.results: dict[str, RunResult] = {}
        self.make_lab_at = make_lab_at

    def run(self, scenario: str, lab: Lab) -> dict[str, RunResult]:
        """Run a scenario in the given lab (the test asserts on that lab afterwards)."""
        results = SCENARIOS[scenario](lab)
        self.results.update(results)
        return results

    def capture(self, case: str, captures: Path) -> tuple[Path, Optional[RunResult]]:
        """The fresh capture of a case, running its scenario in a new lab if none ran yet."""
        if case not in self.results:
            lab = self.make_lab_at(CASES[case])
            try:
                self.run(CASES[case], lab)
            finally:
                lab.close()
        return captures / case, self.results.get(case)


@pytest.fixture(scope="session")
def scenario_bank(tmp_path_factory: pytest.TempPathFactory, realcli_confinement: None,
                  realcli_bin: Path, fresh_captures: Path) -> ScenarioBank:
    def make_lab_at(name: str) -> Lab:
        return Lab(tmp_path_factory.mktemp(name), realcli_bin, fresh_captures)

    return ScenarioBank(make_lab_at)


class SlowBank:
    """The slow scenarios, every one started at once in a lab of its own, read when a test asks."""

    def __init__(self, make_lab_at: Callable[[str], Lab]):
        self.make_lab_at = make_lab_at
        self.labs: dict[str, Lab] = {}
        self.runs: dict[str, Future] = {}
        self.tried: set[str] = set()
        self.pool = ThreadPoolExecutor(max_workers=len(SLOW_SCENARIOS), thread_name_prefix="slow-scenario")

    def start(self, names) -> None:
        """Start these scenarios (each once per test process) in labs of their own."""
        for name in names:
            if name in self.tried:
                continue
            self.tried.add(name)
            try:
                self.labs[name] = self.make_lab_at(name)
            except NamespaceUnavailable:
                continue  # the test that asks for it says why
            self.runs[name] = self.pool.submit(SLOW_SCENARIOS[name], self.labs[name])

    def result(self, name: str, timeout: float = 540) -> tuple[Lab, RunResult]:
        """The scenario's lab and its run, once it is over (a lab that could not be made: skip)."""
        self.start([name])
        if name not in self.runs:
            pytest.skip(f"no loopback-only network namespace for the slow scenario {name}")
        return self.labs[name], self.runs[name].result(timeout=timeout)[name]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for lab in self.labs.values():
            lab.close()  # a scenario still running ends with its CLI killed


@pytest.fixture(scope="session")
def slow_bank(tmp_path_factory: pytest.TempPathFactory, realcli_confinement: None, realcli_bin: Path,
              fresh_captures: Path) -> Iterator[SlowBank]:
    bank = SlowBank(lambda name: Lab(tmp_path_factory.mktemp(name), realcli_bin, fresh_captures))
    yield bank
    bank.close()


@pytest.fixture(scope="module", autouse=True)
def _start_the_slow_scenarios_early(request: pytest.FixtureRequest) -> None:
    """With the first test of a module that reads slow scenarios (its SLOW_SCENARIOS_READ), in
    the test process that runs that module (under pytest-xdist each worker has its own bank:
    a scenario starts only where a test will read it)."""
    names = getattr(request.module, "SLOW_SCENARIOS_READ", ())
    if names:
        try:
            request.getfixturevalue("slow_bank").start(names)
        except (pytest.skip.Exception, pytest.fail.Exception, Exception):
            pass  # no namespace or no CLIs here: each test that reads the bank says why, the others run


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """The tests that read the slow scenarios run last: by then their CLIs have long been at it."""
    slow = [item for item in items if "slow_bank" in getattr(item, "fixturenames", ())]
    if slow:
        items[:] = [item for item in items if item not in slow] + slow
