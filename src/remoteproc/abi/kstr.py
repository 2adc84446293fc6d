"""The kernel's string helpers the ABI files parse user writes with, in their exact semantics.

Owns ``sysfs_streq`` (one trailing newline allowed), ``strncmp_eq`` (C ``strncmp`` over a
count, which is what makes "sta" mean start on the cdev and "start\\n" fail there),
``cstring`` (a write seen as a C string: it ends at the first NUL) and ``kstrtouint``
(``kstrtouint_from_user`` with base 0). Pure functions, no state.
"""

from __future__ import annotations

import errno

from remoteproc.errors import RprocError

__all__ = ["cstring", "kstrtouint", "strncmp_eq", "sysfs_streq"]


def cstring(data: bytes) -> bytes:
    """What C code sees in a NUL-terminated copy of ``data``."""
    return data.split(b"\0", 1)[0]


def sysfs_streq(data: bytes, word: str) -> bool:
    """``sysfs_streq``: equal, where either side may end with one extra newline."""
    a = cstring(data)
    b = word.encode()
    if a.endswith(b"\n"):
        a = a[:-1]
    if b.endswith(b"\n"):
        b = b[:-1]
    return a == b


def strncmp_eq(buf: bytes, word: str, count: int) -> bool:
    """``!strncmp(buf, word, count)``: compares at most ``count`` bytes, stopping at a NUL on
    both sides; a buffer shorter than ``count`` reads as NUL-padded."""
    w = word.encode()
    for i in range(count):
        ca = buf[i] if i < len(buf) else 0
        cb = w[i] if i < len(w) else 0
        if ca != cb:
            return False
        if ca == 0:
            return True
    return True


_UINT_MAX = 0xFFFFFFFF


def kstrtouint(data: bytes) -> int:
    """``kstrtouint_from_user(buf, count, 0, &v)``: at most 23 bytes are looked at; ``0x`` is
    hex and a leading ``0`` octal; an optional ``+``; one trailing newline allowed. EINVAL for
    anything else, ERANGE above ``UINT_MAX``."""
    s = cstring(data[:23])
    if s.startswith(b"+"):
        s = s[1:]
    base = 10
    if s[:1] == b"0":
        if s[1:2] in (b"x", b"X") and s[2:3] and s[2:3] in b"0123456789abcdefABCDEF":
            base, s = 16, s[2:]
        else:
            base = 8
    digits = b"0123456789abcdef"[:base]
    i = 0
    value = 0
    overflow = False
    while i < len(s) and s[i:i + 1].lower() in digits and s[i:i + 1]:
        value = value * base + int(s[i:i + 1], base)
        if value > (1 << 64) - 1:
            overflow = True
        i += 1
    if overflow:
        raise RprocError(errno.ERANGE, "number out of range")
    if i == 0:
        raise RprocError(errno.EINVAL, "not a number")
    rest = s[i:]
    if rest == b"\n":
        rest = b""
    if rest:
        raise RprocError(errno.EINVAL, "not a number")
    if value > _UINT_MAX:
        raise RprocError(errno.ERANGE, "number out of range")
    return value
