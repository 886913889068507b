"""Run a command on a kernel without Landlock, as far as it can tell: `python no_landlock.py CMD...`

A seccomp filter makes the three Landlock system calls (444-446, the same number on every
architecture) fail with ENOSYS — exactly what a kernel older than 5.13 answers — for this
process and everything it starts; every other call is untouched. orch's own probe
(runtime/landlock.probe) then finds no Landlock, as it would on such a kernel, and nothing
in orch is told to pretend.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
LD_W_ABS, JGE_K, JGT_K, RET_K = 0x20, 0x35, 0x25, 0x06
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
FIRST, LAST = 444, 446  # landlock_create_ruleset, landlock_add_rule, landlock_restrict_self


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def without_landlock() -> None:
    """Install the filter on this process (inherited by every child, irreversibly)."""
    program = (SockFilter * 5)(
        SockFilter(LD_W_ABS, 0, 0, 0),  # the system call number (offset 0 of seccomp_data)
        SockFilter(JGE_K, 0, 2, FIRST),  # below 444: allow
        SockFilter(JGT_K, 1, 0, LAST),  # above 446: allow
        SockFilter(RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
        SockFilter(RET_K, 0, 0, RET_ALLOW),
    )
    prog = SockFprog(len(program), program)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")


if __name__ == "__main__":
    without_landlock()
    os.execvp(sys.argv[1], sys.argv[1:])
