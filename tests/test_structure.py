"""The structure's promises: one-way layers, one owner of ingest, readers that never write,
lifecycles that emit their own events, CLI names only in the adapters, and read commands that
load little."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import subprocess
import sys
import tokenize
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from orchestrator.commands import REGISTRY
from orchestrator.core.errors import OrchError
from orchestrator.core.lifecycle import IllegalTransition, transition
from orchestrator.core.models import Agent, AgentState, Permission, Role, Session, SessionState, Task, TaskKind, TaskState
from orchestrator.store.sessions import ReadOnlyStore, Workspace
from orchtest import ROOT, orch_argv, orch_env, run_orch, wait_until

PACKAGE = ROOT / "scripts" / "orchestrator"


# --------------------------------------------------------------------------- layers
#: The layers of the package, lowest first — specifications/DESIGN.md, "Layers". Each holds
#: modules by dotted prefix (under `orchestrator.`; the longest prefix that names a module
#: wins) and may import its own modules and those of the layers it lists, nothing else.
LAYERS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("core", ("", "core"), ()),
    # pure helpers of other parts that lower layers need: text, prices, settings, programs of their own
    ("leaves", ("safety.redaction", "spend.pricing", "spend.budget", "notify.settings", "sim", "verify.command",
                "verify.failures", "verify.runner", "verify.__main__"), ("core",)),
    ("store", ("store",), ("core", "leaves")),
    ("worktrees", ("worktrees",), ("core", "leaves")),
    ("adapters", ("adapters",), ("core", "leaves")),  # bytes in, events out: no store, no files of orch's
    ("kernel", ("runtime.landlock", "runtime.confine", "runtime.ceiling"), ("core", "leaves", "adapters")),
    ("safety", ("safety",), ("core", "leaves", "store", "adapters", "kernel")),
    ("runtime", ("runtime",), ("core", "leaves", "store", "worktrees", "adapters", "kernel", "safety")),
    ("verify", ("verify",), ("core", "leaves", "worktrees", "kernel")),
    ("review", ("review",), ("core", "leaves", "store")),
    ("recovery", ("recovery",), ("core", "leaves", "store", "adapters", "safety", "runtime")),
    ("spend", ("spend",), ("core", "leaves", "store", "safety", "runtime")),
    ("criteria", ("criteria",), ("core", "leaves", "store", "adapters")),
    ("views", ("views",), ("core", "leaves", "store", "worktrees", "review", "criteria")),
    ("notify", ("notify",), ("core", "leaves", "store", "safety", "criteria")),
    ("engine", ("engine",), ("core", "leaves", "store", "worktrees", "adapters", "kernel", "safety", "runtime",
                             "verify", "review", "recovery", "spend", "criteria", "views", "notify")),
    ("plugin", ("plugin",), ("core", "leaves", "store", "safety", "runtime", "criteria", "notify", "engine")),
    ("dashboard", ("dashboard",), ("core", "leaves", "store", "adapters", "safety", "runtime", "review",
                                   "recovery", "spend", "criteria", "views", "notify", "engine")),
    ("commands", ("commands",), ("core", "leaves", "store", "worktrees", "adapters", "kernel", "safety", "runtime",
                                 "verify", "review", "recovery", "spend", "criteria", "views", "notify", "engine",
                                 "plugin", "dashboard")),
    # the process's entry: argv → the fast read path (no pydantic, no click) or the click group
    # (runtime: whether the session's ingest owner is current, runtime/owner.py, pure over files)
    # (notify: what a full command does as it ends, the fast paths do too — notify/consumer.py)
    ("entry", ("__main__", "entry", "fastpath", "fastwait", "cli"), ("core", "leaves", "store", "runtime",
                                                                      "criteria", "views", "notify", "engine",
                                                                      "commands")),
]
ORDER = {name: i for i, (name, _, _) in enumerate(LAYERS)}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name under `orchestrator.` (the package itself is "")."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str:
    """The layer holding a module: the one whose prefix names the most of it."""
    best, length = None, -1
    for name, prefixes, _ in LAYERS:
        for prefix in prefixes:
            if (module == prefix or (prefix and module.startswith(prefix + "."))) and len(prefix) > length:
                best, length = name, len(prefix)
    assert best is not None, f"orchestrator.{module} is in no layer: give it one in LAYERS and in DESIGN.md"
    return best


def may_import(importer: str, imported: str) -> bool:
    a, b = layer_of(importer), layer_of(imported)
    return a == b or b in dict((n, allowed) for n, _, allowed in LAYERS)[a]


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """The package's modules that a module imports (at the top or inside a function), with the line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "orchestrator":
                target = node.module.partition(".")[2]
            else:
                continue
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "orchestrator"]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `from ..adapters import get_adapter`: the package
                name = name.rpartition(".")[0]
            found.append((name, node.lineno))
    return found


def test_the_layer_table_only_points_down():
    for name, _, allowed in LAYERS:
        for other in allowed:
            assert ORDER[other] < ORDER[name], f"layer {name} may import {other}, which is not below it"


def test_every_import_of_every_module_goes_down_the_layers():
    modules = _modules()
    wrong = [f"{path.relative_to(PACKAGE)}:{line}: {layer_of(module)} imports {layer_of(target)} "
             f"(orchestrator.{target})"
             for module, path in modules.items() for target, line in _imports(module, path, modules)
             if not may_import(module, target)]
    assert not wrong, "imports against the layers (specifications/DESIGN.md, Layers):\n" + "\n".join(wrong)


def test_the_layers_forbid_the_upward_imports_the_structure_once_had():
    """The edges issue 26 removed stay forbidden: the store notifying, views and runtime
    reaching up into the engine, adapters reading orch's files, the dashboard importing the CLI."""
    for importer, imported in [("store.sessions", "notify.outbox"), ("store.sessions", "notify.kinds"),
                               ("views.digest", "engine.coordinator"), ("views.reports", "engine.autopilot"),
                               ("runtime.watch", "engine.due"), ("runtime.watch", "views.digest"),
                               ("runtime.workers", "engine.coordinator"), ("adapters.parsing", "store.tail"),
                               ("adapters.qwen", "store.paths"), ("adapters.opencode", "safety.policy"),
                               ("dashboard.app", "cli"), ("notify.messages", "engine.coordinator"),
                               ("criteria.evaluate", "engine.coordinator")]:
        assert not may_import(importer, imported), (importer, imported)
    modules = _modules()
    store_imports = {t for m, p in modules.items() if layer_of(m) == "store" for t, _ in _imports(m, p, modules)}
    assert not {t for t in store_imports if t.startswith("notify")}, "the store must not import notify at all"


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (size, mtime_ns, sha256) — a write of any kind changes one of them."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


# What a read command may write: ingest's files, the bell a batch rings, and how far
# notifications have read the log (notify/consumer.py moves its cursor past the events the
# ingest appended).
INGEST_FILES = re.compile(r"^sessions/[^/]+/(events\.jsonl|bell|notify\.json|\.notify\.lock|"
                          r"agents/[^/]+/(meta\.json|\.lock|stdout\.jsonl|stderr\.log))$")
READ_COMMANDS = [["status"], ["list"], ["status", "--json"], ["check"], ["logs", "worker-1"], ["logs", "worker-1", "--raw"],
                 ["wait", "--timeout", "0"]]


def _owner_state(state: Path) -> str:
    record = next(state.glob("sessions/*/ingest.json"), None)
    return json.loads(record.read_text())["state"] if record is not None else ""


@pytest.mark.parametrize("owner", ["on", "off"])
def test_read_commands_write_only_through_ingest_and_nothing_when_nothing_is_new(workspace_dir, owner):
    """With the session's ingest owner, it ingests what the agent wrote and then ends; without
    one (ORCH_INGEST_OWNER=off), the first read does. Either way only ingest writes, and a read
    with nothing new writes nothing."""
    env = {"ORCH_INGEST_OWNER": owner}
    state = workspace_dir / ".orch"
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hello", check=True, env=env)
    meta = next(state.glob("sessions/*/agents/worker-1"))
    wait_until(lambda: "exit_code" in json.loads((meta / "run-1.json").read_text() or "{}"), what="the exit record")
    if owner == "on":
        # The agent ends with only its ingest owner looking: it ingests the output and the exit, then ends.
        wait_until(lambda: _owner_state(state) == "ended", what="the ingest owner to end")
        assert json.loads((meta / "meta.json").read_text())["state"] == "idle"
        kinds = [json.loads(line)["kind"] for line in (meta.parents[1] / "events.jsonl").read_text().splitlines()]
        assert "agent.output" in kinds and "agent.exited" in kinds
    else:
        # The agent ends with no orch process looking: its output and exit are on disk, not yet ingested.
        before = _tree(state)
        run_orch("status", check=True, env=env)
        first = _changed(before, _tree(state))
        assert first, "the first read must ingest what the agent wrote"
        assert all(INGEST_FILES.match(p) for p in first), f"a read command wrote outside ingest: {sorted(first)}"
        assert not list(state.glob("sessions/*/ingest.json")), "no ingest owner when it is switched off"
    run_orch("wait", "--timeout", "0", env=env)  # records where the conductor stopped reading (wait.json), once
    for argv in READ_COMMANDS:
        before = _tree(state)
        proc = run_orch(*argv, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        assert not _changed(before, _tree(state)), f"`orch {' '.join(argv)}` wrote with nothing new to read"


def _finished_session(workspace_dir: Path) -> Workspace:
    proc = run_orch("demo", "--dir", str(workspace_dir / "demo"), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Workspace(workspace_dir / "demo" / ".orch")


def test_views_criteria_and_dashboard_reads_work_on_a_read_only_store(workspace_dir):
    from orchestrator.dashboard.views import agent_cards, agent_detail, session_view
    from orchestrator.criteria.evaluate import evaluate
    from orchestrator.views.digest import build_digest
    from orchestrator.views.reports import build_report, render_markdown, status_markdown
    from orchestrator.views.summary import agent_summary

    ws = _finished_session(workspace_dir)
    store = ws.open(ws.active_id()).reader()
    before = _tree(ws.root)
    assert evaluate(store).ok
    report = build_report(store, finalized=True)
    assert "Per-agent timeline" in render_markdown(report)
    assert "Completion criteria: hold" in status_markdown(store)
    kinds: dict[str, int] = {}
    for _, e in store.scan_events():
        kinds[e.kind.value] = kinds.get(e.kind.value, 0) + 1
    digest = build_digest(store, kinds, [], 0.0, timed_out=True)
    assert digest["criteria_ok"] and digest["agents"] and digest["events_seen"] == sum(kinds.values()) > 0
    session_view(store.read_session())
    agent_cards(store)
    agent_detail(store.read_agent(store.agent_ids()[0]))
    [agent_summary(a) for a in store.agents()]
    assert not _changed(before, _tree(ws.root))
    # ...and the store really refuses: a view that tried to write would fail loudly.
    with pytest.raises(ReadOnlyStore):
        store.append_events(store.read_events()[:1] and [store.read_events()[0][1]])
    with pytest.raises(ReadOnlyStore):
        with store.edit_session():
            pass


def test_every_state_change_goes_through_its_lifecycle_and_returns_its_event():
    agent = Agent(id="a-1", session="s", role=Role.WORKER, cli="sim", permission=Permission.EDIT, cwd="/tmp")
    event = transition(agent, AgentState.RUNNING, "working")
    assert agent.state is AgentState.RUNNING and agent.state_reason == "working"
    assert event.kind.value == "agent.state" and event.data == {"from": "starting", "to": "running"}
    assert transition(agent, AgentState.RUNNING, "still") is None  # no change, no event
    task = Task(id="T-1", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title="x")
    assert transition(task, TaskState.RUNNING, "assigned").data["to"] == "running"
    session = Session(id="s", workspace="/tmp")
    assert transition(session, SessionState.COMPLETE, "done").data["state"] == "complete"
    assert session.ended_at is not None
    with pytest.raises(IllegalTransition) as err:
        transition(session, SessionState.ACTIVE, "again")
    assert isinstance(err.value, OrchError) and err.value.exit_code == 2
    shown = io.StringIO()
    with redirect_stderr(shown):
        err.value.show()
    assert shown.getvalue().startswith("orch: ") and shown.getvalue().count("\n") == 1


def _code_tokens(path: Path):
    """Names and string literals of a module, without its comments and docstrings."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME:
            yield tok
        elif tok.type == tokenize.STRING:
            prev = next((t for t in reversed(tokens[:i]) if t.type not in (tokenize.NL, tokenize.NEWLINE,
                                                                            tokenize.INDENT, tokenize.DEDENT)), None)
            if prev is None or prev.string in (":", "") or prev.type == tokenize.NEWLINE:
                continue  # a docstring
            yield tok


def test_cli_names_mean_something_only_in_the_adapters():
    from orchestrator.adapters import ADAPTERS

    names = re.compile(r"\b(" + "|".join(n for n in ADAPTERS if n != "sim") + r")\b")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("adapters", "sim") or rel.parts[0] == "plugin":  # the plugin's conductor IS Claude Code
            continue
        for tok in _code_tokens(path):
            if names.search(tok.string):
                offenders.append(f"{rel}:{tok.start[0]}: {tok.string[:60]}")
    assert not offenders, "CLI names outside adapters/: " + "; ".join(offenders)


def test_the_command_registry_names_every_command_of_every_module():
    import importlib

    seen = {}
    for module_name in sorted(set(REGISTRY.values())):
        module = importlib.import_module(f"orchestrator.commands.{module_name}")
        for command in module.COMMANDS:
            seen[command.name] = module_name
    assert seen == REGISTRY
    modules = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "common"}
    assert modules == set(REGISTRY.values()), "a command module the registry does not name"


def _imported(argv: list[str], cwd: Path, env: dict) -> set[str]:
    """The modules a whole `orch ARGV` process imports (python -X importtime lists each one)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("argv", [["status"], ["check"], ["list"]])
def test_read_commands_import_neither_the_coordinator_nor_the_server_nor_the_watcher(workspace_dir, argv):
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "say hello", check=True)
    modules = _imported(argv, workspace_dir, orch_env())
    assert "orchestrator.runtime.ingest.sync" in modules or argv == ["check"] or "orchestrator.fastpath" in modules
    bad = sorted(m for m in modules if m.startswith(("orchestrator.engine.coordinator", "orchestrator.engine.autopilot",
                                                      "orchestrator.dashboard", "orchestrator.runtime.watch",
                                                      "watchdog", "fastapi", "uvicorn")))
    assert bad == []


def _interpreter_modules(cwd: Path, env: dict) -> set[str]:
    """The modules `python -c pass` imports here (site, .pth files)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def _without_ages(text: str) -> str:
    return re.sub(r"\d+(h\d+m|m\d+s|s) ago", "AGO", text)


def test_the_fast_read_path_prints_exactly_what_the_full_commands_print(workspace_dir):
    _finished_session(workspace_dir)
    demo = workspace_dir / "demo"
    home = {"ORCH_HOME": str(demo / ".orch")}
    for argv in (["status"], ["check"], ["status", "--session", next((demo / ".orch" / "sessions").iterdir()).name]):
        fast = subprocess.run(orch_argv(*argv), env=orch_env(home), cwd=demo, capture_output=True, text=True,
                              timeout=60)
        full = subprocess.run(orch_argv(*argv), env=orch_env({**home, "ORCH_FULL_PATH": "1"}), cwd=demo,
                              capture_output=True, text=True, timeout=60)
        assert fast.returncode == full.returncode, (fast, full)
        assert _without_ages(fast.stdout) == _without_ages(full.stdout) and fast.stdout
    # A settled session takes the fast path: no pydantic, no click, nor typing (3 ms of a read
    # command; the fast path's annotations are strings) unless the interpreter loads it anyway.
    modules = _imported(["check"], demo, orch_env(home))
    assert "orchestrator.fastpath" in modules and not {"pydantic", "click"} & modules, sorted(modules)[:40]
    assert "typing" not in modules - _interpreter_modules(demo, orch_env(home))


def test_the_fast_read_path_steps_aside_while_anything_needs_a_sync(workspace_dir):
    run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "work a while [sim: stall=30]", check=True)
    code = ("import sys; from orchestrator.fastpath import try_fast\n"
            "print('FAST', try_fast(['status']), try_fast(['check']), try_fast(['status', '--json']))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=orch_env(), cwd=workspace_dir, capture_output=True,
                          text=True, timeout=60)
    assert "FAST None None None" in proc.stdout, proc.stdout + proc.stderr
    run_orch("abort", "--all", check=True)


def test_a_stopped_session_with_failed_work_takes_the_fast_path_and_names_the_same_retry(workspace_dir):
    """The continuation (failed tasks, stop reason, `orch retry`) is judged by the shared pure
    code, so a settled stopped session needs no pydantic and prints what the full command does."""
    stopped = run_orch("run", "Build a small text utilities library [sim: exit=2 role=implementer runs=3]",
                       "--architect", "sim", "--implementer", "sim", "--reviewer", "sim",
                       env={"ORCH_RETRY_BACKOFF": "0.3"})
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    fast = subprocess.run(orch_argv("check"), env=orch_env(), cwd=workspace_dir, capture_output=True, text=True,
                          timeout=60)
    full = subprocess.run(orch_argv("check"), env=orch_env({"ORCH_FULL_PATH": "1"}), cwd=workspace_dir,
                          capture_output=True, text=True, timeout=60)
    assert fast.returncode == full.returncode == 1, (fast, full)
    assert fast.stdout == full.stdout
    assert "the session is stopped" in fast.stdout and "Next: orch retry T-2" in fast.stdout
    modules = _imported(["check"], workspace_dir, orch_env())
    assert "orchestrator.fastpath" in modules and not {"pydantic", "click"} & modules, sorted(modules)[:40]
