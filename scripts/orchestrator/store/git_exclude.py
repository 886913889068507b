"""Keep `git status` clean: orch's state folder goes into the repository's .git/info/exclude.

Only the local, untracked exclude file is touched (never .gitignore), once, and only when the
state folder lies inside a git work tree. Anything unexpected (no git, a read-only .git, a
worktree's `.git` file pointing elsewhere or nowhere) is left alone: this is a courtesy, not a
duty. It never makes a folder outside an existing git folder: a `.git` file naming a
repository that is gone, or a bare `.git` folder with no HEAD, is not a repository to write in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def _is_git_dir(path: Path) -> bool:
    """A git folder, as git itself tells one: a HEAD file in an existing folder."""
    return (path / "HEAD").is_file()


def _git_dir(start: Path) -> Optional[tuple[Path, Path]]:
    """(work tree top, git dir) of the repository holding `start`, if any."""
    for top in (start, *start.parents):
        dot = top / ".git"
        if dot.is_dir():
            if _is_git_dir(dot):
                return top, dot
            continue  # as git does: a `.git` folder with no HEAD is not a repository; look further up
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
            git_dir = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        if not _is_git_dir(git_dir):
            return False  # a `.git` file or commondir naming a repository that is gone
        line = "/" + root.relative_to(top).as_posix() + "/"
        exclude = git_dir / "info" / "exclude"
        current = exclude.read_text(errors="replace").splitlines() if exclude.is_file() else []
        if line in current or line.rstrip("/") in current:
            return False
        exclude.parent.mkdir(exist_ok=True)  # info/ only, inside the git folder that exists
        with open(exclude, "a") as f:
            f.write(("" if not current or exclude.read_text().endswith("\n") else "\n")
                    + "# orch's state (sessions, logs, reports)\n" + line + "\n")
        return True
    except (OSError, ValueError):
        return False
