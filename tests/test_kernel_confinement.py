"""The kernel's write ceiling (Landlock) around every agent run: real processes, real files.

The wrapper itself (runtime/confine.py through runtime/ceiling.py), sim agents launched by
orch writing through their own tools and through commands they were granted, agents' git in
a worktree, and `[safety] require_kernel_confinement` on a kernel without Landlock — made
real with a seccomp filter (tests/no_landlock.py) that answers ENOSYS as an old kernel does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.runtime.ceiling import Ceiling, confined_argv, kernel_status, unavailable_error
from orchestrator.store.sessions import Workspace
from orchtest import ROOT, orch_json, orch_env, orch_argv, run_orch, wait_until

NO_LANDLOCK = [sys.executable, str(ROOT / "tests" / "no_landlock.py")]
ENDED = {"idle", "denied", "failed", "done", "blocked-by-policy", "aborted"}

needs_landlock = pytest.mark.skipif(not kernel_status()[0], reason=f"no Landlock here: {kernel_status()[1]}")


def _write_policy(ws: Path, text: str) -> None:
    (ws / ".orch").mkdir(exist_ok=True)
    (ws / ".orch" / "policy.toml").write_text(text)


def _launch(*args: str, cwd=None) -> str:
    proc = run_orch("launch", "--cli", "sim", *args, cwd=cwd, check=True)
    return proc.stdout.strip().splitlines()[-1]


def _finished(agent: str, cwd=None) -> dict:
    return wait_until(lambda: (s := orch_json("status", agent, cwd=cwd))["state"] in ENDED and s, timeout=90,
                      interval=0.1, what=f"{agent} to finish its run")


def _raw(agent: str) -> str:
    store = Workspace().resolve(None)
    return (store.agent_dir(agent) / "stdout.jsonl").read_text()


def _launch_events(agent: str) -> list[dict]:
    store = Workspace().resolve(None)
    return [e.model_dump(mode="json") for _, e in store.read_events()
            if e.agent == agent and e.kind.value in ("agent.launched", "agent.resumed")]


# --------------------------------------------------------------------------- the wrapper


@needs_landlock
def test_a_confined_command_and_everything_it_starts_write_only_where_allowed(tmp_path):
    allowed, outside, tmp = tmp_path / "allowed", tmp_path / "outside", tmp_path / "tmp"
    for d in (allowed, outside, tmp):
        d.mkdir()
    script = (f"touch {allowed}/by-shell; touch {outside}/by-shell; "
              f"{sys.executable} -c \"open('{outside}/by-python', 'w')\"; "
              f"{sys.executable} -c \"import tempfile; print('TEMP', tempfile.mkdtemp())\"; "
              f"echo gone >/dev/null && echo NULL-OK; "
              f"kill -0 {os.getpid()}; echo KILL=$?")
    proc = subprocess.run(confined_argv(["sh", "-c", script], [allowed], tmpdir=tmp), capture_output=True,
                          text=True, timeout=60)
    assert (allowed / "by-shell").exists()
    assert sorted(outside.iterdir()) == []  # neither the shell nor the python it started wrote there
    assert "Permission denied" in proc.stderr and "PermissionError" in proc.stderr
    temp = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("TEMP"))
    assert Path(temp).parent == tmp.resolve()  # TMPDIR is the private temp folder
    assert "NULL-OK" in proc.stdout
    if kernel_status()[0] >= 6:  # signals stay inside the run
        assert "KILL=1" in proc.stdout
    assert os.getpid() > 0  # we are still here


@needs_landlock
def test_read_only_writes_nothing_of_the_workspace_only_state_and_temp(tmp_path):
    ws, state, tmp = tmp_path / "ws", tmp_path / "state", tmp_path / "tmp"
    for d in (ws, tmp):
        d.mkdir()
    config = tmp_path / "home-config.json"
    config.write_text("{}")
    script = (f"echo x > {ws}/file; echo W=$?; echo s > {state}/session; echo S=$?; "
              f"echo '{{\"a\": 1}}' > {config}; echo C=$?; echo t > {config}.tmp; echo R=$?")
    argv = confined_argv(["sh", "-c", script], [ws], read_only=True, tmpdir=tmp, state_dirs=[state],
                         state_files=[config])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    codes = dict(line.split("=") for line in proc.stdout.split())
    assert codes == {"W": "2", "S": "0", "C": "0", "R": "2"}, proc.stdout + proc.stderr
    assert not (ws / "file").exists() and (state / "session").read_text() == "s\n"  # the state folder was made
    assert json.loads(config.read_text()) == {"a": 1}  # rewritten in place...
    assert not Path(f"{config}.tmp").exists()  # ...but nothing new beside it in its folder


@needs_landlock
def test_the_supervisors_output_files_are_appended_never_emptied(tmp_path):
    out, tmp = tmp_path / "stdout.jsonl", tmp_path / "tmp"
    tmp.mkdir()
    with open(out, "ab") as f:
        f.write(b"earlier output\n")
        f.flush()
        proc = subprocess.run(confined_argv(["sh", "-c", "echo one; echo two >>/dev/stdout; echo three >/dev/stdout"],
                                            [tmp / "nowhere"], tmpdir=tmp), stdout=f,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.read_text() == "earlier output\none\ntwo\n"
    assert "cannot create /dev/stdout: Permission denied" in proc.stderr


@pytest.mark.skipif(kernel_status()[0] < 4, reason="TCP rules need Landlock ABI 4")
def test_tcp_connect_ports_limit_connections_to_the_listed_ports_only(tmp_path):
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        allowed, other = (s.getsockname()[1] for s in listeners)
        probe = ("import socket\n"
                 f"for port in ({allowed}, {other}):\n"
                 "    s = socket.socket(); s.settimeout(5)\n"
                 "    print(port, s.connect_ex(('127.0.0.1', port)))\n")
        argv = confined_argv([sys.executable, "-c", probe], [tmp_path], tmpdir=tmp_path, connect_ports=[allowed])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.stdout.split() == [str(allowed), "0", str(other), str(errno.EACCES)], proc.stderr
        unconfined = subprocess.run(confined_argv([sys.executable, "-c", probe], [tmp_path], tmpdir=tmp_path),
                                    capture_output=True, text=True, timeout=60)
        assert unconfined.stdout.split() == [str(allowed), "0", str(other), "0"]  # no port rules by default
    finally:
        for s in listeners:
            s.close()


@needs_landlock
def test_build_folders_the_run_could_not_write_go_to_its_temp_folder(tmp_path, monkeypatch):
    ws, tmp = tmp_path / "ws", tmp_path / "tmp"
    for d in (ws, tmp):
        d.mkdir()
    monkeypatch.delenv("GOCACHE", raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    show = ["sh", "-c", "echo ${GOCACHE:-unset} ${CARGO_TARGET_DIR:-unset}"]
    at_edit = subprocess.run(confined_argv(show, [ws], tmpdir=tmp), capture_output=True, text=True, timeout=60)
    assert at_edit.stdout.split() == [f"{tmp.resolve()}/go-build", "unset"]  # cargo builds in the worktree
    at_read = subprocess.run(confined_argv(show, [ws], read_only=True, tmpdir=tmp), capture_output=True, text=True,
                             timeout=60)
    assert at_read.stdout.split() == [f"{tmp.resolve()}/go-build", f"{tmp.resolve()}/cargo-target"]
    monkeypatch.setenv("GOCACHE", str(ws / "mine"))
    kept = subprocess.run(confined_argv(show, [ws], tmpdir=tmp), capture_output=True, text=True, timeout=60)
    assert kept.stdout.split()[0] == str(ws / "mine")  # the user's own setting stays


@needs_landlock
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
def test_a_read_level_cargo_test_builds_in_its_temp_folder_and_passes(tmp_path):
    crate, tmp = tmp_path / "crate", tmp_path / "tmp"
    tmp.mkdir()
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n')
    (crate / "src" / "lib.rs").write_text("#[cfg(test)]\nmod t {\n    #[test]\n    fn works() { assert_eq!(2 + 2, 4); }\n}\n")
    subprocess.run(["cargo", "generate-lockfile", "--offline"], cwd=crate, check=True, capture_output=True, timeout=120)
    # the project as committed: its lock file is there, nothing is built yet
    before = sorted(p.name for p in crate.iterdir())
    proc = subprocess.run(confined_argv(["cargo", "test", "--offline", "-q"], [crate], read_only=True, tmpdir=tmp),
                          cwd=crate, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert sorted(p.name for p in crate.iterdir()) == before  # no target/ in the read-only worktree


@needs_landlock
def test_a_required_ceiling_refuses_bad_rules_in_one_line(tmp_path):
    argv = confined_argv(["true"], [tmp_path], tmpdir=tmp_path, required=True)
    bad = argv[:argv.index("--")] + ["--connect", "http"] + argv[argv.index("--"):]
    proc = subprocess.run(bad, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 126
    assert proc.stderr.strip() == "orch: the confinement rules are invalid: 'http' is not a TCP port"


def test_a_ceiling_travels_as_json_unchanged():
    c = Ceiling(cli="sim", variant="codex", read_only=False, roots=("/w",), required=True, connect_ports=(443,))
    assert Ceiling.from_json(c.to_json()) == c


# --------------------------------------------------------------------------- sim agents through orch


@needs_landlock
def test_a_sim_agent_at_full_writes_only_in_the_workspace_through_its_tools_and_commands(workspace_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _write_policy(workspace_dir, '[roles.implementer]\nmax_level = "full"\n')
    command = f"touch {outside}/by-shell; echo in > inside.txt; echo MADE:$(mktemp -d)"
    agent = _launch("--role", "implementer", "--permission", "full", "--prompt",
                    f"do it [sim: write={outside}/by-write-tool shell='{command}']")
    status = _finished(agent)
    assert status["state"] == "idle", status
    assert sorted(p.name for p in outside.iterdir()) == []
    assert (workspace_dir / "inside.txt").read_text() == "in\n"
    raw = _raw(agent)
    assert f"EACCES: permission denied, open '{outside}/by-write-tool'" in raw  # its Write tool failed
    assert "Permission denied" in raw  # and so did the touch of its shell command
    temp = raw.split("MADE:/")[1].split("\\n")[0].split('"')[0]
    assert Path("/" + temp).name.startswith("tmp.")
    assert not Path("/" + temp).parent.exists()  # its private temp folder, removed when the run ended
    (event,) = _launch_events(agent)
    assert event["data"]["confinement"].startswith("Landlock ABI")
    assert str(workspace_dir) in event["data"]["confinement"]


@needs_landlock
def test_a_reviewer_granted_the_test_command_writes_nothing_whatever_the_tests_do(workspace_dir, tmp_path):
    """What broke: a read-only reviewer's granted test run wrote outside the workspace. The
    argument rules now refuse such arguments; here the tests themselves write, which no
    argument rule can see: the kernel refuses every write, inside the workspace too."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace_dir / "tests").mkdir()
    (workspace_dir / "tests" / "test_evil.py").write_text(
        "import os, tempfile, unittest\n"
        "class Evil(unittest.TestCase):\n"
        "    def test_writes(self):\n"
        f"        for path in ({str(outside / 'from-test')!r}, 'inside-from-test'):\n"
        "            try:\n"
        "                open(path, 'w').write('x')\n"
        "            except OSError as e:\n"
        "                print('REFUSED', path, e.strerror)\n"
        "        print('TEMP', tempfile.mkdtemp())\n")
    agent = _launch("--role", "reviewer", "--prompt",
                    "check it [sim: shell='python3 -m unittest discover -s tests']")
    assert _finished(agent)["state"] == "denied"  # the CLI's own check asks first
    step = orch_json("step")
    assert any("python3 -m unittest discover -s tests" in a for a in step["actions"]), step
    status = wait_until(lambda: (s := orch_json("status", agent))["runs"] == 2 and s["state"] in ENDED and s,
                        timeout=90, interval=0.1, what="the granted run to end")
    assert status["permission"] == "read", status
    assert sorted(outside.iterdir()) == [] and not (workspace_dir / "inside-from-test").exists()
    raw = _raw(agent)
    assert f"REFUSED {outside / 'from-test'} Permission denied" in raw
    assert "REFUSED inside-from-test Permission denied" in raw
    assert "TEMP /" in raw  # its temp folder still works
    run2 = _launch_events(agent)[-1]["data"]["confinement"]
    assert "read-only, writes only to sim's state and a private temp folder" in run2


@needs_landlock
def test_an_agents_git_in_its_worktree_reads_but_cannot_write_the_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("ORCH_HOME", str(repo / ".orch"))
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                                 "--allow-empty", "-m", "start"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / ".gitignore").write_text(".orch/\n")
    session = orch_json("start", "a goal", "--architect", "sim", "--implementer", "sim", "--reviewer", "sim")["session"]
    tree = repo / ".orch" / "worktrees" / session / "implementer-9"
    subprocess.run(["git", "worktree", "add", "-q", "-b", f"orch/{session}--implementer-9", str(tree)], cwd=repo,
                   check=True)
    hooks = repo / ".git" / "hooks"
    command = (f"echo in > inside.txt; git status --short; git add inside.txt; echo ADD=$?; "
               f"echo pwned > {repo}/PWNED; echo hook > {hooks}/post-checkout; echo HOOK=$?")
    agent = _launch("--session", session, "--format", "codex", "--role", "implementer", "--cwd", str(tree),
                    "--prompt", f"work [sim: shell='{command}']")
    assert _finished(agent)["state"] == "idle"
    raw = _raw(agent)
    assert (tree / "inside.txt").read_text() == "in\n"  # its own worktree is writable
    assert "?? inside.txt" in raw  # its git reads
    assert "index.lock" in raw and "ADD=128" in raw  # but may not write the repository's admin folder
    assert not (repo / "PWNED").exists() and not (hooks / "post-checkout").exists() and "HOOK=2" in raw
    assert subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True,
                          check=True).stdout == "?? inside.txt\n"


# --------------------------------------------------------------------------- the policy


@needs_landlock
def test_require_kernel_confinement_launches_where_the_kernel_has_landlock(workspace_dir):
    _write_policy(workspace_dir, "[safety]\nrequire_kernel_confinement = true\n")
    agent = _launch("--role", "worker", "--prompt", "hello")
    assert _finished(agent)["state"] == "idle"
    assert unavailable_error() is None


@pytest.mark.parametrize("command", ["start", "launch"])
def test_require_kernel_confinement_refuses_where_the_kernel_has_no_landlock(workspace_dir, command):
    _write_policy(workspace_dir, "\n[safety]\nrequire_kernel_confinement = true\n")
    args = (["start", "a goal", "--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
            if command == "start" else ["launch", "--cli", "sim", "--role", "worker", "--prompt", "hello"])
    proc = subprocess.run([*NO_LANDLOCK, *orch_argv(*args)], cwd=workspace_dir, env=orch_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("orch: kernel confinement is required ([safety] require_kernel_confinement) and the "
                          "kernel") and "has no Landlock system calls" in err and "policy.toml:3" in err
    assert sorted(p.name for p in (workspace_dir / ".orch").iterdir()) == ["policy.toml"]  # nothing was created


def test_without_landlock_agents_run_as_before_and_orch_says_so(workspace_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _write_policy(workspace_dir, '[roles.worker]\nmax_level = "full"\n')
    env = orch_env()
    shown = subprocess.run([*NO_LANDLOCK, *orch_argv("policy", "show")], cwd=workspace_dir, env=env,
                           capture_output=True, text=True, timeout=60)
    assert "# kernel confinement: unavailable — the kernel" in shown.stdout
    assert "agents are held only by their CLIs' permission flags and orch's argument rules" in shown.stdout
    launched = subprocess.run([*NO_LANDLOCK, *orch_argv("launch", "--cli", "sim", "--role", "worker", "--permission",
                                                        "full", "--prompt", f"[sim: write={outside}/loose]")],
                              cwd=workspace_dir, env=env, capture_output=True, text=True, timeout=60)
    assert launched.returncode == 0, launched.stderr
    agent = launched.stdout.split()[-1]
    _finished(agent)
    assert (outside / "loose").exists()  # nothing but the sim's own permission check held it
    report = subprocess.run([*NO_LANDLOCK, *orch_argv("report", "--json")], cwd=workspace_dir, env=env,
                            capture_output=True, text=True, timeout=60)
    line = json.loads(report.stdout)["kernel_confinement"]
    assert line.startswith("1 of 1 runs were not confined by the kernel (the kernel") and "no Landlock" in line


@pytest.mark.parametrize("text, message", [
    ("[safety]\nkernel_confinement = false\nrequire_kernel_confinement = true\n",
     "require_kernel_confinement = true needs kernel_confinement = true"),
    ("[safety]\ntcp_connect_ports = [443, 70000]\n", "70000 is not a TCP port (1-65535)"),
    ("[safety]\nrequire_kernel_confinement = \"yes\"\n", "must be true or false"),
])
def test_an_invalid_safety_table_is_one_line(workspace_dir, text, message):
    _write_policy(workspace_dir, text)
    proc = run_orch("policy", "check")
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@needs_landlock
def test_kernel_confinement_off_runs_unconfined_and_says_so(workspace_dir):
    _write_policy(workspace_dir, "[safety]\nkernel_confinement = false\n")
    shown = run_orch("policy", "show", check=True).stdout
    assert "# kernel confinement: off ([safety] kernel_confinement = false" in shown
    agent = _launch("--role", "worker", "--prompt", "hello")
    _finished(agent)
    (event,) = _launch_events(agent)
    assert event["data"]["confinement"] == "none: [safety] kernel_confinement = false"
