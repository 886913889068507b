"""Files read again only when replaced: what a waiter keeps between its looks.

orch writes every state file whole and renames it into place (store/sessions.py), so a
file whose inode, modification time and size are unchanged holds what was read from it
last. A waiter looks at session.json and at every agent's meta.json on each wake; with
many agents streaming, most of them are unchanged at each look. Standard library only:
the fast read paths (fastwait.py) use it without pydantic, the full command over models
(engine/wait.py).
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional


def file_key(path: "os.PathLike[str] | str") -> "Optional[tuple[int, int, int]]":
    """What changes when the file is replaced or written (inode, mtime, size); None when it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_json(path: "os.PathLike[str] | str") -> Any:
    """A state file's JSON as plain data (no model: the fast read paths' reader)."""
    with open(path, "rb") as f:
        return json.loads(f.read())


class Reread:
    """Named files' values, each loaded again only when its file was replaced."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, int, int]] = {}
        self.values: dict[str, Any] = {}

    def replaced(self, name: str, path: "os.PathLike[str] | str") -> bool:
        """Whether the file changed since this was last asked (or was never asked); False when it
        is gone. The answer is remembered: the next ask says False until it changes again."""
        key = file_key(path)
        if key is None or self.keys.get(name) == key:
            return False
        self.keys[name] = key
        return True

    def get(self, name: str, path: "os.PathLike[str] | str", load: "Callable[[Any], Any]") -> Any:
        """The file's value, loaded with `load(path)` when it changed; None when the file is gone.
        A load that raises is tried again at the next ask."""
        key = file_key(path)
        if key is None:
            return None
        if self.keys.get(name) != key or name not in self.values:
            self.keys.pop(name, None)
            self.values[name] = load(path)
            self.keys[name] = key
        return self.values[name]

    def forget(self) -> None:
        self.keys.clear()
        self.values.clear()
