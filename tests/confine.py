"""A test's stand-in for kernel confinement: run a command that may write only in the given folders.

    python tests/confine.py FOLDER... -- ARGV...

Linux Landlock (x86_64 syscalls 444-446), every write-type right handled, granted beneath
each FOLDER (and /dev/null); reads stay open. Then it execs ARGV. It exits 3 when the kernel
has no Landlock (tests skip then). The verification gate's tests use it to show that the
project's test command passes when it can write only its temp folder, as it will under
orch's own confinement of read-level agents.
"""

from __future__ import annotations

import ctypes
import os
import sys

CREATE, ADD_RULE, RESTRICT = 444, 445, 446
PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38
# write-type rights: write_file, remove_dir, remove_file, make_char, make_dir, make_reg, make_sock,
# make_fifo, make_block, make_sym (ABI 1), refer (2), truncate (3)
WRITES = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | \
    (1 << 12) | (1 << 13) | (1 << 14)
DIR_ONLY = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | \
    (1 << 13)


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def main(argv: list[str]) -> int:
    split = argv.index("--")
    folders, command = argv[:split], argv[split + 1:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1)) < 3:
        return 3
    attr = RulesetAttr(WRITES)
    ruleset = libc.syscall(CREATE, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return 3
    for path in folders + ["/dev/null"]:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rights = WRITES if os.path.isdir(path) else WRITES & ~DIR_ONLY
        rule = PathBeneath(rights, fd)
        if libc.syscall(ADD_RULE, ruleset, ctypes.c_int(PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
        os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(RESTRICT, ruleset, ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
