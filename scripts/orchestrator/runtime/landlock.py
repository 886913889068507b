"""Linux Landlock through its three system calls: a write ceiling the kernel enforces.

A process builds a ruleset (the rights it wants the kernel to check), allows some of them
beneath some folders or on some files, then restricts itself: from then on, it and every
process it starts can use a checked right only where a rule allows it, whoever they run
as. orch checks only the rights that change the filesystem (write, truncate, create,
remove, rename across folders), so reading and executing stay as they were; from ABI 4 it
can check TCP connect and bind by port, and from ABI 6 it can keep signals and abstract
Unix sockets inside the restricted process tree.

Only the standard library, and nothing at import time but ctypes: the exec wrapper
(confine.py) loads this module on every agent start.
"""

from __future__ import annotations

import ctypes
import errno
import os

# The system call numbers are the same on every Linux architecture (asm-generic 444-446).
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (include/uapi/linux/landlock.h), and the ABI that introduced each.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link or rename into another folder
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
# Network rights (ABI 4) and scopes (ABI 6).
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

#: Every right that changes the filesystem, at ABI 1.
WRITE_RIGHTS_V1 = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK
                   | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM)
#: Rights a rule on a single file (not a folder) may carry.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


class LandlockError(OSError):
    """A Landlock call failed; the message says which and why."""


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # struct landlock_path_beneath_attr is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _syscall(*args) -> int:
    result = _lib().syscall(*args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def probe() -> tuple[int, str]:
    """(ABI version, "") where Landlock works, else (0, why not) — one line for a person."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return 0, f"Landlock is a Linux feature and this is {os.uname().sysname if hasattr(os, 'uname') else os.name}"
    try:
        return int(_syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                            ctypes.c_uint32(CREATE_RULESET_VERSION))), ""
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return 0, (f"the kernel ({os.uname().release}) has no Landlock system calls (they came with Linux "
                       f"5.13; a container's seccomp filter can hide them)")
        if e.errno == errno.EOPNOTSUPP:
            return 0, "Landlock is built into this kernel but switched off (add landlock to the lsm= boot parameter)"
        return 0, f"the Landlock version check failed: {e.strerror}"


def write_rights(abi: int) -> int:
    """Every right that changes the filesystem and that this ABI can check."""
    rights = WRITE_RIGHTS_V1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


class Ruleset:
    """One ruleset being built; `restrict_self()` applies it to this process and its future children."""

    def __init__(self, handled_fs: int, handled_net: int = 0, scoped: int = 0, *, abi: int):
        self.abi = abi
        self.handled_fs = handled_fs
        self.handled_net = handled_net if abi >= 4 else 0
        self.scoped = scoped if abi >= 6 else 0
        attr = _RulesetAttr(handled_fs, self.handled_net, self.scoped)
        size = 8 if abi < 4 else (16 if abi < 6 else 24)  # the kernel takes the prefix it knows
        try:
            self.fd = _syscall(ctypes.c_long(SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                               ctypes.c_uint32(0))
        except OSError as e:
            raise LandlockError(e.errno, f"cannot create a Landlock ruleset: {e.strerror}") from None

    def allow_path(self, path: str, rights: int) -> None:
        """Allow `rights` beneath a folder, or on one file (only FILE_RIGHTS apply to a file)."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                rights &= FILE_RIGHTS
            rights &= self.handled_fs
            if not rights:
                return
            rule = _PathBeneath(rights, fd)
            try:
                _syscall(ctypes.c_long(SYS_ADD_RULE), ctypes.c_int(self.fd), ctypes.c_int(RULE_PATH_BENEATH),
                         ctypes.byref(rule), ctypes.c_uint32(0))
            except OSError as e:
                raise LandlockError(e.errno, f"cannot allow {path}: {e.strerror}") from None
        finally:
            os.close(fd)

    def allow_port(self, port: int, rights: int) -> None:
        """Allow TCP connect and/or bind on one port (ABI 4 and later)."""
        rights &= self.handled_net
        if not rights:
            return
        rule = _NetPort(rights, port)
        try:
            _syscall(ctypes.c_long(SYS_ADD_RULE), ctypes.c_int(self.fd), ctypes.c_int(RULE_NET_PORT),
                     ctypes.byref(rule), ctypes.c_uint32(0))
        except OSError as e:
            raise LandlockError(e.errno, f"cannot allow TCP port {port}: {e.strerror}") from None

    def restrict_self(self) -> None:
        """Enforce the ruleset on this process (no new privileges first, as the kernel requires
        of an unprivileged caller); irreversible, and inherited by every child."""
        try:
            if _lib().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                err = ctypes.get_errno()
                raise LandlockError(err, f"cannot set no_new_privs: {os.strerror(err)}")
            _syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(self.fd), ctypes.c_uint32(0))
        except LandlockError:
            raise
        except OSError as e:
            raise LandlockError(e.errno, f"cannot enforce the Landlock ruleset: {e.strerror}") from None
        finally:
            os.close(self.fd)


__all__ = ["probe", "write_rights", "Ruleset", "LandlockError", "FILE_RIGHTS", "WRITE_FILE", "TRUNCATE", "REFER",
           "MAKE_CHAR", "MAKE_BLOCK", "NET_BIND_TCP", "NET_CONNECT_TCP", "SCOPE_SIGNAL",
           "SCOPE_ABSTRACT_UNIX_SOCKET"]
