"""Keep `git status` clean: orch's state folder goes into the repository's .git/info/exclude.

Only the local, untracked exclude file is touched (never .gitignore), once, and only when the
state folder lies inside a git work tree. Anything unexpected (no git, a read-only .git, a
worktree's `.git` file pointing elsewhere) is left alone: this is a courtesy, not a duty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def _git_dir(start: Path) -> Optional[tuple[Path, Path]]:
    """(work tree top, git dir) of the repository holding `start`, if any."""
    for top in (start, *start.parents):
        dot = top / ".git"
        if dot.is_dir():
            return top, dot
        if dot.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:"):].strip())
                return top, (target if target.is_absolute() else (top / target)).resolve()
            return None
    return None


def exclude_state_dir(state_root: Path) -> bool:
    """Add the state folder to .git/info/exclude; True when a line was added."""
    try:
        root = state_root.resolve()
        found = _git_dir(root.parent)
        if found is None:
            return False
        top, git_dir = found
        if (git_dir / "commondir").is_file():  # a linked worktree shares the main repository's info/
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
            git_dir = common
        line = "/" + root.relative_to(top).as_posix() + "/"
        exclude = git_dir / "info" / "exclude"
        current = exclude.read_text(errors="replace").splitlines() if exclude.is_file() else []
        if line in current or line.rstrip("/") in current:
            return False
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a") as f:
            f.write(("" if not current or exclude.read_text().endswith("\n") else "\n")
                    + "# orch's state (sessions, logs, reports)\n" + line + "\n")
        return True
    except (OSError, ValueError):
        return False
