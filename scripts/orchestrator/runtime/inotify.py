"""The kernel's inotify, one instance, read in the caller's thread: no observer thread, no queue.

The ingest owner (runtime/ingest/daemon.py) watches a hundred agents' raw files, each
appended to many times a second: every change is one small record read from one file
descriptor, decoded here with `struct`, and nothing else runs per change. A watch asks
the kernel only for the changes its reader uses (an agent's folder: files created or
renamed into it; its raw files: appends), so a write nobody reads — a lock, a temp file —
never reaches this process.

When the kernel refuses an instance or a watch, the error names the limit and the fix
(`refused_message`), the same words the session watcher (runtime/watch.py) uses.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import select
import struct
from typing import NamedTuple, Optional


def _refused(e: OSError, what: str) -> Exception:
    from ..core.errors import WatchRefused  # click's exception: loaded only when the kernel refuses

    return WatchRefused(refused_message(e, what))

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_READ_SIZE = 64 << 10

_libc = None


def _lib():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc = lib
    return _libc


class Change(NamedTuple):
    """One inotify record: the watch it came from, what happened, and the file's name in a folder."""

    wd: int
    mask: int
    name: bytes


def _sysctl(*paths: str) -> Optional[int]:
    values = []
    for path in paths:
        try:
            with open(path) as f:
                values.append(int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return min(values) if values else None


def refused_message(e: OSError, folder: str) -> str:
    """One line: what the kernel refused, the limit that says so, and how to raise it."""
    if e.errno == errno.ENOSPC:
        limit = _sysctl("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches")
        return (f"the kernel refused to watch {folder}: inotify watch limit reached (the per-user limit "
                f"fs.inotify.max_user_watches{'' if limit is None else f' = {limit}'}) — close programs that "
                f"watch many files, or raise it: `sudo sysctl fs.inotify.max_user_watches={max(2 * (limit or 0), 524288)}`")
    if e.errno == errno.EMFILE:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and len(os.listdir("/proc/self/fd")) >= soft - 1:
            return (f"the kernel refused a watcher for {folder}: orch has as many files open as its limit "
                    f"allows (ulimit -n = {soft}) — raise it: `ulimit -n {2 * soft}`")
        limit = _sysctl("/proc/sys/fs/inotify/max_user_instances", "/proc/sys/user/max_inotify_instances")
        return (f"the kernel refused an inotify instance to watch {folder}: inotify instance limit reached "
                f"(the per-user limit fs.inotify.max_user_instances{'' if limit is None else f' = {limit}'}, shared "
                f"by every process of this user) — close other watchers (other orch runs, editors, file watchers) "
                f"or raise it: `sudo sysctl fs.inotify.max_user_instances={max(2 * (limit or 0), 512)}`")
    return f"could not watch {folder}: {e.strerror or e}"


class Inotify:
    """One inotify instance; `watch` adds a path, `read` returns what changed (waiting up to a timeout)."""

    def __init__(self, what: str):
        fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise _refused(OSError(err, os.strerror(err)), what)
        self.fd = fd
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN)

    def watch(self, path: str, mask: int) -> Optional[int]:
        """Watch path for `mask`; its watch descriptor, or None when the path is gone.
        WatchRefused when the kernel's limit is reached."""
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd >= 0:
            return wd
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise _refused(OSError(err, os.strerror(err)), path)

    def unwatch(self, wd: int) -> None:
        _lib().inotify_rm_watch(self.fd, wd)  # a watch the kernel already dropped: nothing to do

    def read(self, timeout: Optional[float]) -> list[Change]:
        """What changed; waits up to `timeout` seconds (None: until something does) for the first change."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        if not self.poll.poll(ms):
            return []
        out: list[Change] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return out
            at, end = 0, len(data)
            while at < end:
                wd, mask, _cookie, length = _HEADER.unpack_from(data, at)
                at += _HEADER.size
                out.append(Change(wd, mask, data[at:at + length].rstrip(b"\0")))
                at += length
            if end < _READ_SIZE // 2:
                return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
