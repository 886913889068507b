"""No secret in any orch branch (worktrees/hygiene.py, worktrees/base.py, worktrees/merge.py).

A full sim session runs in a repository with a planted `.env` holding an OpenAI key, a
private key `.pem`, a tracked file whose uncommitted change holds a key, a script whose
content holds an AWS key id, ordinary untracked and modified files, and an ignored one;
an implementer also writes a `.env.local` of its own. Afterwards every object reachable
from any `orch/*` branch is read (and `git grep` and `git log -p` run over them): none
holds a key. The secret files are in each agent's worktree, uncommitted; the start note
says so once and names the untracked files the base took in.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
from pathlib import Path

from orchestrator.safety.redaction import holds_credential
from orchestrator.worktrees.hygiene import secret_name, stage
from orchtest import kill_agents_left, run_orch

RNG = random.Random(23)
SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim", "--implementers", "2"]


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", *args], cwd=repo, check=check,
                          capture_output=True, text=True).stdout.strip()


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _orch_branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/orch/").split()


def _reachable_blobs(repo: Path, refs: list[str]) -> dict[str, bytes]:
    """Every blob reachable from refs (all their history), by object id."""
    listed = git(repo, "rev-list", "--objects", *refs).splitlines()
    ids = [line.split()[0] for line in listed]
    batch = subprocess.run(["git", "cat-file", "--batch"], cwd=repo, input="\n".join(ids).encode() + b"\n",
                           capture_output=True, check=True).stdout
    blobs, i = {}, 0
    while i < len(batch):
        header_end = batch.index(b"\n", i)
        oid, kind, size = batch[i:header_end].decode().split()
        start = header_end + 1
        if kind == "blob":
            blobs[oid] = batch[start:start + int(size)]
        i = start + int(size) + 1
    return blobs


def test_no_object_reachable_from_an_orch_branch_holds_a_secret_after_a_full_session(workspace_dir):
    repo = workspace_dir
    openai = "sk-proj-" + _random(48)
    anthropic = "sk-ant-api03-" + _random(40)
    aws = "AKIA" + _random(16, string.ascii_uppercase + string.digits)
    pem = "-----BEGIN PRIVATE KEY-----\n" + _random(64) + "\n" + _random(64) + "\n-----END PRIVATE KEY-----\n"
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# project\n")
    (repo / "settings.py").write_text('API_KEY = ""\n')
    (repo / ".gitignore").write_text("*.log\n.orch/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    (repo / "README.md").write_text("# project\nmodified, not committed\n")  # tracked, modified: taken in
    (repo / "settings.py").write_text(f'API_KEY = "{anthropic}"\n')  # tracked, its change holds a key: left out
    (repo / ".env").write_text(f"OPENAI_API_KEY={openai}\nDEBUG=1\n")
    (repo / "deploy").mkdir()
    (repo / "deploy" / "server.pem").write_text(pem)
    (repo / "deploy" / "server.pem").chmod(0o600)
    (repo / "tools").mkdir()
    (repo / "tools" / "deploy.sh").write_text(f"export AWS_ACCESS_KEY_ID={aws}\n")  # a key in an ordinary name
    (repo / "draft.txt").write_text("an untracked note\n")
    (repo / "debug.log").write_text(f"ignored, with {openai} in it\n")
    secrets = [openai, anthropic, aws, pem.splitlines()[1]]
    index, head = (repo / ".git" / "index").read_bytes(), git(repo, "rev-parse", "HEAD")
    try:
        proc = run_orch("run", "Build a small text utilities library [sim: careful] [sim@implementer: write=.env.local]",
                        *SIM_TEAM, env={"ORCH_SIM_PACE": "0.05"}, timeout=300)
    finally:
        kill_agents_left(repo / ".orch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    session = json.loads(next((repo / ".orch").glob("sessions/*/session.json")).read_text())
    assert session["state"] == "complete"
    record = session["git"]
    assert record["withheld"] == [".env", "deploy/server.pem", "tools/deploy.sh"]
    assert record["withheld_changes"] == ["settings.py"]
    assert record["untracked"] == ["draft.txt"]
    assert "debug.log" not in record["untracked"]  # .gitignore is respected

    # the start note says it once, and names the untracked files taken in
    out = proc.stdout + proc.stderr
    assert out.count("look like secrets") == 1 and ".env, deploy/server.pem, tools/deploy.sh" in out
    assert "untracked files taken into it: draft.txt" in out
    assert "your uncommitted changes to settings.py hold a credential" in out

    # no object reachable from any orch branch, in all their history, holds a key
    branches = _orch_branches(repo)
    assert len(branches) >= 4  # the integration branch and the writers'
    blobs = _reachable_blobs(repo, branches)
    assert blobs
    for oid, data in blobs.items():
        text = data.decode("latin-1")
        assert not any(s in text for s in secrets), oid
        assert not holds_credential(text), (oid, text[:200])
    commits = git(repo, "rev-list", *branches).split()
    for secret in secrets:
        assert git(repo, "grep", "-F", "-e", secret, *commits, check=False) == ""
        assert secret not in git(repo, "log", "-p", "--all", "--no-ext-diff", "--no-textconv")
    names = set(git(repo, "log", "--format=", "--name-only", *branches).split())
    assert not {".env", ".env.local", "deploy/server.pem", "tools/deploy.sh"} & names
    base = record["base"]
    assert git(repo, "show", f"{base}:README.md").endswith("modified, not committed")
    assert git(repo, "show", f"{base}:settings.py") == 'API_KEY = ""'
    assert git(repo, "show", f"{base}:draft.txt") == "an untracked note"

    # each agent's worktree has the secret files, uncommitted; the implementer's own .env.local stayed there too
    agents = [json.loads(p.read_text()) for p in (repo / ".orch").glob("sessions/*/agents/*/meta.json")]
    for agent in agents:
        tree = Path(agent["cwd"])
        assert (tree / ".env").read_text() == (repo / ".env").read_text(), agent["id"]
        assert (tree / "deploy" / "server.pem").read_text() == pem
        assert (tree / "deploy" / "server.pem").stat().st_mode & 0o777 == 0o600
        status = git(tree, "status", "--porcelain", "--untracked-files=all")
        assert "?? .env" in status.splitlines() and "?? deploy/server.pem" in status.splitlines()
    assert any((Path(a["cwd"]) / ".env.local").is_file() for a in agents if a["role"] == "implementer")

    # the user's branch, index and files are as they were
    assert git(repo, "rev-parse", "HEAD") == head and (repo / ".git" / "index").read_bytes() == index
    assert (repo / "settings.py").read_text() == f'API_KEY = "{anthropic}"\n'


def test_an_agents_new_file_holding_a_key_is_not_committed_by_orch(tmp_path):
    """orch's commit of an agent's work leaves out a new file whose name or content says
    secret, and a secret the agent staged itself; everything else is committed."""
    from orchestrator.core.models import Agent, Permission, Role, Session, Task, TaskKind
    from orchestrator.engine import integration

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    session = Session(id="s", workspace=str(repo))
    session.git = integration.set_up(session.id, repo, repo / ".orch", "")
    place = integration.place_new_agent(session, "implementer-1", Role.IMPLEMENTER)
    agent = Agent(id="implementer-1", session="s", role=Role.IMPLEMENTER, cli="sim", permission=Permission.EDIT,
                  cwd=str(place.cwd), branch=place.branch)
    tree = Path(agent.cwd)
    key = "ghp_" + _random(36)
    (tree / "client.py").write_text("def connect(token):\n    return token\n")  # `token` in code is no secret
    (tree / "fixture.json").write_text(json.dumps({"token": key}))
    (tree / "id_ed25519").write_text("not really a key, but named like one\n")
    (tree / "staged.txt").write_text(f"{key}\n")
    (tree / "staged-then-changed.txt").write_text(f"first {key}\n")
    subprocess.run(["git", "add", "staged.txt", "staged-then-changed.txt"], cwd=tree, check=True)  # the agent's own
    (tree / "staged-then-changed.txt").write_text(f"then {key}\n")
    (tree / "weird *name?.txt").write_text("a file named like a glob\n")
    task = Task(id="T-1", kind=TaskKind.IMPLEMENT, role=Role.IMPLEMENTER, title="t", agent=agent.id)
    landing = integration.land(session, task, agent)
    assert landing.record.outcome == "merged"
    committed = set(git(repo, "ls-tree", "-r", "--name-only", agent.branch).splitlines())
    assert {"client.py", "weird *name?.txt", "a.txt"} <= committed
    assert not {"fixture.json", "id_ed25519", "staged.txt", "staged-then-changed.txt"} & committed
    for name in ("fixture.json", "id_ed25519", "staged.txt", "staged-then-changed.txt"):
        assert (tree / name).is_file()  # left where the agent put it, uncommitted
    assert key not in git(repo, "log", "-p", "--all")


def test_secret_names_and_the_staging_rule(tmp_path):
    for name in (".env", ".env.local", "config/.env.production", "server.pem", "tls/private.key", "id_rsa",
                 "id_ed25519.pub", ".npmrc", ".netrc", "keys/app.p12", ".pypirc", ".git-credentials"):
        assert secret_name(name), name
    for name in ("id_utils.py", "environment.py", "keyboard.py", "pem.md", "README.md", "envoy.yaml", "monkey.txt"):
        assert not secret_name(name), name
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "big.bin").write_bytes(b"\0" * (3 << 20) + b"ya29." + _random(40).encode() + b"\0" * 100)
    (repo / "plain.bin").write_bytes(b"\0" * (3 << 20))
    done = stage(repo, repo)
    assert done.withheld == ["big.bin"]  # a key past the first megabyte of a big file is still found
    assert git(repo, "ls-files") == "plain.bin"
