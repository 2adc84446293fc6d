"""/dev/remoteprocN (§3): exact-length writes, the shutdown-on-release ioctls, release
semantics, and a SIGKILLed holder taking its processor down (seed 003).

Tests run in-process (``abi.fs``) unless marked ``fuse`` (a real mount: shells, another
process, bad user pointers, FUSE's own 0-byte write); release runs both ways."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import struct
import subprocess
import sys
import time

import pytest
from conftest import holds_for
from test_abi_support import (
    Abi,
    abi_fixture,
    read_text,
    wait_until,
    write_errno,
)

from remoteproc.abi.cdev import RPROC_GET_SHUTDOWN_ON_RELEASE, RPROC_SET_SHUTDOWN_ON_RELEASE
from remoteproc.core.states import State

PROCS: list[tuple[str, dict[str, object]]] = [
    ("m4", {}),
    ("early", {"state": State.DETACHED}),
]


abi = abi_fixture(PROCS)


def get_flag(abi: Abi, fd: int) -> int:
    buf = bytearray(4)
    assert abi.fs.ioctl(fd, RPROC_GET_SHUTDOWN_ON_RELEASE, buf, True) == 0
    return int(struct.unpack("<i", buf)[0])


def set_flag(abi: Abi, fd: int, value: int) -> None:
    assert abi.fs.ioctl(fd, RPROC_SET_SHUTDOWN_ON_RELEASE,
                        bytearray(struct.pack("<i", value)), True) == 0


@pytest.mark.fuse
def test_write_is_exact_length(abi: Abi) -> None:
    dev = abi.dev("remoteproc0")
    assert os.stat(dev).st_mode & 0o777 == 0o600
    r = abi.sh("echo start > $R/dev/remoteproc0")
    assert r.returncode != 0  # dash's echo reports any failed write as "I/O error"
    assert write_errno(dev, b"start\n") == errno.EINVAL
    assert abi.rproc(0).state is State.OFFLINE
    r = abi.sh("echo -n start > $R/dev/remoteproc0")
    assert r.returncode == 0, r.stderr
    assert abi.rproc(0).state is State.RUNNING
    assert write_errno(dev, b"stop\n") == errno.EINVAL
    assert write_errno(dev, b"sto") == 0  # a prefix of stop
    assert abi.rproc(0).state is State.OFFLINE
    assert write_errno(dev, b"s") == 0  # "s" is checked against start first
    assert abi.rproc(0).state is State.RUNNING
    assert write_errno(dev, b"stop") == 0
    assert write_errno(dev, b"startstart1") == errno.EINVAL  # 11 bytes
    assert write_errno(dev, b"bogus") == errno.EINVAL
    assert write_errno(dev, b"st\0rt") == errno.EINVAL
    assert write_errno(dev, b"stop") == errno.EINVAL  # offline: the core's errno
    assert write_errno(dev, b"detach") == errno.EINVAL  # not attached


def test_attach_and_detach_through_cdev(abi: Abi) -> None:
    dev = abi.dev("remoteproc1")
    assert abi.write_errno(dev, b"sta") == 0
    assert abi.rproc(1).state is State.ATTACHED
    assert abi.write_errno(dev, b"d") == 0
    assert abi.rproc(1).state is State.DETACHED


def test_no_read_and_unknown_ioctl(abi: Abi) -> None:
    fd = abi.fs.open(abi.dev("remoteproc0"), os.O_RDWR)
    try:
        with pytest.raises(OSError) as ei:
            abi.fs.read(fd, 10)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(OSError) as ei:
            abi.fs.ioctl(fd, 0x4004B703, bytearray(4), True)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(OSError) as ei:
            abi.fs.ioctl(fd, 0x8004B7FF, bytearray(4), True)
        assert ei.value.errno == errno.EINVAL
    finally:
        abi.fs.close(fd)


def test_flag_ioctls_are_per_processor(abi: Abi) -> None:
    fd1 = abi.fs.open(abi.dev("remoteproc0"), os.O_RDWR)
    fd2 = abi.fs.open(abi.dev("remoteproc0"), os.O_RDWR)
    try:
        assert get_flag(abi, fd1) == 0
        set_flag(abi, fd1, 5)  # !!param
        assert get_flag(abi, fd2) == 1  # the flag lives in the processor
        assert abi.rproc(0).cdev_put_on_release
        set_flag(abi, fd2, 0)
        assert get_flag(abi, fd1) == 0
        assert get_flag(abi, abi.fs.open(abi.dev("remoteproc1"), os.O_RDONLY)) == 0
    finally:
        abi.fs.close(fd1)
        abi.fs.close(fd2)


@pytest.mark.parametrize("abi", ["inproc", "fuse"], indirect=True)
def test_release_shuts_down_or_detaches(abi: Abi) -> None:
    # Without the flag nothing happens at close. Bounded observation: FUSE releases after
    # close() returned, so "nothing happens" is watched for 0.1 s rather than looked at once.
    fd = abi.fs.open(abi.dev("remoteproc0"), os.O_WRONLY)
    abi.fs.write(fd, b"start")
    abi.fs.close(fd)
    holds_for(lambda: abi.rproc(0).state is State.RUNNING, 0.1, "running after a plain close")
    # With it, closing any descriptor (even one that never set it) stops the processor.
    fd = abi.fs.open(abi.dev("remoteproc0"), os.O_RDWR)
    set_flag(abi, fd, 1)
    other = abi.fs.open(abi.dev("remoteproc0"), os.O_RDONLY)
    abi.fs.close(other)
    assert wait_until(lambda: abi.rproc(0).state is State.OFFLINE, 1.0)
    abi.fs.close(fd)
    # An attached processor is detached, not stopped.
    fd = abi.fs.open(abi.dev("remoteproc1"), os.O_RDWR)
    set_flag(abi, fd, 1)
    abi.fs.write(fd, b"start")
    assert abi.rproc(1).state is State.ATTACHED
    abi.fs.close(fd)
    assert wait_until(lambda: abi.rproc(1).state is State.DETACHED, 1.0)


HOLDER = """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, 0x4004B701, bytearray(struct.pack("<i", 1)), True)
os.write(fd, b"start")
print("running", flush=True)
time.sleep(60)
"""


@pytest.mark.fuse
@pytest.mark.parametrize("n,after", [(0, State.OFFLINE), (1, State.DETACHED)])
def test_sigkill_of_holder_takes_processor_down(abi: Abi, n: int, after: State) -> None:
    """Seed 003: a controller killed with SIGKILL must not leave the processor running."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(abi.dev(f"remoteproc{n}"))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
        assert read_text(abi.sys(n, "state")) in ("running\n", "attached\n")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        assert wait_until(lambda: abi.rproc(n).state is after, 1.0)
        assert time.monotonic() - t0 < 1.0
        assert read_text(abi.sys(n, "state")) == f"{after.sysfs}\n"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.fuse
def test_bad_user_pointers_efault(abi: Abi) -> None:
    """copy_from_user failures: the kernel's FUSE copy fails before the request is sent."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(abi.dev("remoteproc0"), os.O_RDWR)
    try:
        assert libc.write(fd, ctypes.c_void_p(1), 5) == -1
        assert ctypes.get_errno() == errno.EFAULT
        with pytest.raises(OSError) as ei:
            fcntl.ioctl(fd, RPROC_SET_SHUTDOWN_ON_RELEASE, 1)  # 1 taken as the pointer
        assert ei.value.errno == errno.EFAULT
    finally:
        os.close(fd)


@pytest.mark.fuse
def test_zero_length_write_never_reaches_the_device(abi: Abi) -> None:
    """DIFF: the kernel's cdev refuses len 0 with EINVAL; FUSE answers a 0-byte write itself
    with 0 and never asks the filesystem, so nothing happens here."""
    assert write_errno(abi.dev("remoteproc0"), b"") == 0
    assert abi.rproc(0).state is State.OFFLINE
