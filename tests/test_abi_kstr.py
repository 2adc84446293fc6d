"""The kernel string helpers the ABI parses writes with, checked against libc's own strncmp and
against the kernel's documented kstrtouint rules."""

from __future__ import annotations

import ctypes
import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remoteproc.abi.kstr import cstring, kstrtouint, strncmp_eq, sysfs_streq
from remoteproc.errors import RprocError

libc = ctypes.CDLL(None)
libc.strncmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
libc.strncmp.restype = ctypes.c_int

WORDS = ("start", "stop", "detach", "enabled", "disabled", "recover", "inline")


@given(st.binary(max_size=12), st.sampled_from(WORDS), st.integers(1, 12))
def test_strncmp_eq_matches_libc(buf: bytes, word: str, count: int) -> None:
    # libc reads a NUL-padded copy of count bytes, as the kernel's char buf[] is.
    padded = buf[:count].ljust(count + 1, b"\0")
    assert strncmp_eq(buf[:count], word, count) == (libc.strncmp(padded, word.encode(),
                                                                  count) == 0)


def test_strncmp_examples() -> None:
    assert strncmp_eq(b"sta", "start", 3)
    assert not strncmp_eq(b"start\n", "start", 6)
    assert strncmp_eq(b"enabled\0", "enabled", 8)
    assert not strncmp_eq(b"en\0", "enabled", 3)


def test_sysfs_streq() -> None:
    assert sysfs_streq(b"start", "start")
    assert sysfs_streq(b"start\n", "start")
    assert sysfs_streq(b"start\0junk", "start")
    assert not sysfs_streq(b"start\n\n", "start")
    assert not sysfs_streq(b"star", "start")
    assert not sysfs_streq(b" start", "start")
    assert cstring(b"a\0b") == b"a"


@pytest.mark.parametrize("text,value", [
    (b"0", 0), (b"1\n", 1), (b"+7", 7), (b"0x1f", 31), (b"0X1F\n", 31), (b"017", 15),
    (b"4294967295", 0xFFFFFFFF),
])
def test_kstrtouint_accepts(text: bytes, value: int) -> None:
    assert kstrtouint(text) == value


@pytest.mark.parametrize("text,code", [
    (b"", errno.EINVAL), (b"\n", errno.EINVAL), (b"-1", errno.EINVAL), (b"1 ", errno.EINVAL),
    (b"08", errno.EINVAL), (b"0x", errno.EINVAL), (b"1\n\n", errno.EINVAL),
    (b"abc", errno.EINVAL), (b"4294967296", errno.ERANGE),
    (b"18446744073709551616", errno.ERANGE),
])
def test_kstrtouint_refuses(text: bytes, code: int) -> None:
    with pytest.raises(RprocError) as ei:
        kstrtouint(text)
    assert ei.value.errno == code
