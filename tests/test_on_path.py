"""`orch` from PATH: a symlink to the launcher of a fresh clone runs the demo (and the commands
it prints say `orch`); the package ships every file it reads, so `pipx install` / `uv tool
install` from a clone works too."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scripts" / "orchestrator"


@pytest.mark.slow
def test_a_symlink_on_path_to_a_fresh_clone_runs_the_demo(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "orch").symlink_to(clone / "scripts" / "orch")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCH_VENV", "PYTHONPATH", "ORCH_HOME", "CLAUDE_PLUGIN_DATA", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PATH=f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    env["ORCH_PYTHON"] = env.get("ORCH_PYTHON") or sys.executable  # any Python >= 3.10 with venv
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(["orch", "demo", "--dir", str(demo_dir)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "all completion criteria hold" in proc.stdout
    assert (clone / ".venv" / "bin" / "python").exists()  # the clone's own environment, made on first use
    look = next(line for line in proc.stdout.splitlines() if line.startswith("look around:"))
    # run through the link on PATH: the command it prints is spelled as the user spells it
    assert " && orch status" in look and str(clone) not in look, look
    assert f"dashboard:   cd {demo_dir.resolve()} && orch serve" in proc.stdout


def test_the_package_data_covers_every_file_the_package_reads():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["orch"] == "orchestrator.entry:main"
    patterns = config["tool"]["setuptools"]["package-data"]["orchestrator"]
    data = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "the package has data files (the dashboard, the default policy, the supervisor)"
    unshipped = [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not unshipped, f"not in [tool.setuptools.package-data]: {unshipped}"
