"""rpmsg_ctrl, rpmsg_char and rpmsg_tty (§9.5-§9.6) over a live rpmsg bus whose remote is the
Python echo remote (tests/rpmsg_pair.py).

Tests call the ABI's operations in-process (``rig.fs``, see ``abi_inproc``) unless marked
``fuse`` (a real mount: another process killed in write(), the pty behind ttyRPMSGn); the
echo, poll and timeout tests run both ways."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from abi_inproc import NodeFs, OsFs
from rpmsg_pair import RpmsgPair
from test_abi_support import read_bytes, rpmsg_host, uses_fuse, wait_until

from remoteproc.abi.rpmsg_char import (
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_DESTROY_EPT_IOCTL,
    RPMSG_GET_OUTGOING_FLOWCONTROL,
    RPMSG_RELEASE_DEV_IOCTL,
    RPMSG_SET_INCOMING_FLOWCONTROL,
    EptHandle,
    pack_endpoint_info,
)
from remoteproc.abi.tree import AbiTree
from remoteproc.errors import RprocError
from remoteproc.rpmsg.remote import RemoteEndpoint, RpmsgRemote, echo

ANY = 0xFFFFFFFF


@dataclass
class Rig:
    root: Path
    pair: RpmsgPair
    tree: AbiTree
    svc: list[RemoteEndpoint]
    fs: NodeFs | OsFs

    def dev(self, name: str) -> Path:
        return self.root / "dev" / name

    def read_text(self, path: Path) -> str:
        return read_bytes(path, self.fs).decode()

    def ctrl_ioctl(self, fd: int, cmd: int, name: str, src: int = ANY, dst: int = ANY) -> int:
        return int(self.fs.ioctl(fd, cmd, bytearray(pack_endpoint_info(name, src, dst)), True))


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    svc: list[RemoteEndpoint] = []

    def setup(remote: RpmsgRemote) -> None:
        remote.create_ept("rpmsg-raw", echo)
        remote.create_ept("rpmsg-tty", echo)
        svc.append(remote.create_ept("svc", echo))
        svc.append(remote.create_ept("sink", lambda ept, data, src: None))

    with rpmsg_host(tmp_path, setup, fuse=uses_fuse(request),
                    devices=("rpmsg0", "ttyRPMSG0")) as r:
        yield Rig(r.root, r.pair, r.tree, svc, r.fs)


def oserr(fn: object, *args: object) -> int:
    try:
        fn(*args)  # type: ignore[operator]
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_devices_and_sysfs(rig: Rig) -> None:
    dev = sorted(rig.fs.listdir(rig.root / "dev"))
    assert dev == ["rpmsg0", "rpmsg_ctrl0", "ttyRPMSG0"]
    devices = rig.root / "sys/bus/rpmsg/devices"
    names = sorted(rig.fs.listdir(devices))
    bus = rig.pair.bus
    assert bus is not None
    raw = f"{bus.name}.rpmsg-raw.-1.1024"
    assert raw in names and f"{bus.name}.rpmsg_ctrl.0.0" in names
    assert rig.read_text(devices / raw / "name") == "rpmsg-raw\n"
    assert rig.read_text(devices / raw / "dst") == "0x400\n"
    assert rig.read_text(devices / raw / "src") == "0x400\n"  # the default endpoint's address
    assert rig.read_text(devices / raw / "announce") == "false\n"
    assert rig.read_text(devices / raw / "modalias") == "rpmsg:rpmsg-raw\n"
    cls = rig.root / "sys/class/rpmsg"
    assert sorted(rig.fs.listdir(cls)) == ["rpmsg0", "rpmsg_ctrl0"]
    assert rig.read_text(cls / "rpmsg0/name") == "rpmsg-raw\n"
    assert rig.read_text(cls / "rpmsg0/dst") == "1024\n"


@pytest.mark.parametrize("rig", ["inproc", "fuse"], indirect=True)
def test_raw_channel_echo_one_message_per_read(rig: Rig) -> None:
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR)
    try:
        assert rig.fs.write(fd, b"hello") == 5
        assert rig.fs.read(fd, 496) == b"hello"
        rig.fs.write(fd, b"0123456789")
        rig.fs.write(fd, b"second")
        assert rig.fs.read(fd, 4) == b"0123"  # the rest of that message is dropped
        assert rig.fs.read(fd, 100) == b"second"
        assert rig.fs.write(fd, b"x" * 496) == 496
        assert rig.fs.read(fd, 1000) == b"x" * 496
        assert oserr(rig.fs.write, fd, b"x" * 497) == errno.EMSGSIZE
    finally:
        rig.fs.close(fd)


@pytest.mark.parametrize("rig", ["inproc", "fuse"], indirect=True)
def test_nonblock_poll_and_ebusy(rig: Rig) -> None:
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR | os.O_NONBLOCK)
    try:
        assert oserr(rig.fs.open, rig.dev("rpmsg0"), os.O_RDWR) == errno.EBUSY
        assert oserr(rig.fs.read, fd, 10) == errno.EAGAIN
        p = rig.fs.poller(fd, select.POLLIN)
        assert p.poll(0) == []
        p2 = rig.fs.poller(fd, select.POLLOUT)
        assert p2.poll(0)[0][1] & select.POLLOUT
        rig.fs.write(fd, b"ping")
        ev = p.poll(3000)
        assert ev and ev[0][1] & select.POLLIN
        assert rig.fs.read(fd, 10) == b"ping"
    finally:
        rig.fs.close(fd)
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR)  # released: can be opened again
    rig.fs.close(fd)


def test_eptdev_ioctls(rig: Rig) -> None:
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR)
    try:
        assert oserr(rig.fs.ioctl, fd, RPMSG_DESTROY_EPT_IOCTL) == errno.EINVAL  # default ept
        buf = bytearray(4)
        assert rig.fs.ioctl(fd, RPMSG_GET_OUTGOING_FLOWCONTROL, buf, True) == 0
        assert buf == bytearray(4)
        assert oserr(rig.fs.ioctl, fd, RPMSG_SET_INCOMING_FLOWCONTROL, 2) == errno.EINVAL
        assert oserr(rig.fs.ioctl, fd, RPMSG_SET_INCOMING_FLOWCONTROL, 1) == errno.EOPNOTSUPP
        assert oserr(rig.fs.ioctl, fd, 0x4028B5FF, bytes(40)) == errno.EINVAL
    finally:
        rig.fs.close(fd)


def test_ctrl_create_and_destroy_endpoint(rig: Rig) -> None:
    svc_addr = rig.svc[0].addr
    cfd = rig.fs.open(rig.dev("rpmsg_ctrl0"), os.O_RDWR)
    try:
        assert oserr(rig.fs.read, cfd, 10) == errno.EINVAL
        assert oserr(rig.fs.ioctl, cfd, RPMSG_DESTROY_EPT_IOCTL) == errno.EINVAL
        assert oserr(rig.fs.ioctl, cfd, 0x4028B5FF, bytes(40)) == errno.EINVAL
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, "svc", ANY, svc_addr) == 0
        assert "rpmsg1" in rig.fs.listdir(rig.root / "dev")
        assert rig.read_text(rig.root / "sys/class/rpmsg/rpmsg1/src") == "-1\n"
        fd = rig.fs.open(rig.dev("rpmsg1"), os.O_RDWR)
        try:
            rig.fs.write(fd, b"via ctrl")
            assert rig.fs.read(fd, 100) == b"via ctrl"
            assert rig.fs.ioctl(fd, RPMSG_DESTROY_EPT_IOCTL) == 0
            assert "rpmsg1" not in rig.fs.listdir(rig.root / "dev")
            assert oserr(rig.fs.read, fd, 10) == errno.EPIPE
            assert oserr(rig.fs.write, fd, b"x") == errno.EPIPE
            p = rig.fs.poller(fd, select.POLLIN)
            assert p.poll(0)[0][1] & select.POLLERR
        finally:
            rig.fs.close(fd)
        # an endpoint created with dst ANY cannot write
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, "nodst") == 0
        fd = rig.fs.open(rig.dev("rpmsg1"), os.O_RDWR)
        try:
            assert oserr(rig.fs.write, fd, b"x") == errno.EINVAL
        finally:
            rig.fs.close(fd)
        # a fixed source address that is taken: open fails with EINVAL (no endpoint)
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, "busy", 53, svc_addr) == 0
        assert oserr(rig.fs.open, rig.dev("rpmsg2"), os.O_RDWR) == errno.EINVAL
    finally:
        rig.fs.close(cfd)


def test_ctrl_create_and_release_channel(rig: Rig) -> None:
    cfd = rig.fs.open(rig.dev("rpmsg_ctrl0"), os.O_RDWR)
    devices = rig.root / "sys/bus/rpmsg/devices"
    bus = rig.pair.bus
    assert bus is not None
    try:
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_DEV_IOCTL, "my-svc", 0x900, 0x901) == 0
        name = f"{bus.name}.my-svc.2304.2305"
        assert name in rig.fs.listdir(devices)
        assert rig.read_text(devices / name / "announce") == "true\n"
        assert oserr(rig.ctrl_ioctl, cfd, RPMSG_CREATE_DEV_IOCTL, "my-svc", 0x900, 0x901) == \
            errno.ENXIO
        assert rig.ctrl_ioctl(cfd, RPMSG_RELEASE_DEV_IOCTL, "my-svc", 0x900, 0x901) == 0
        assert name not in rig.fs.listdir(devices)
        assert oserr(rig.ctrl_ioctl, cfd, RPMSG_RELEASE_DEV_IOCTL, "my-svc", 0x900, 0x901) == \
            errno.EINVAL
        # a channel named rpmsg-raw created through the ctrl gets its own /dev/rpmsgN
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_DEV_IOCTL, "rpmsg-raw", 0x700, rig.svc[0].addr) == 0
        assert "rpmsg1" in rig.fs.listdir(rig.root / "dev")
        fd = rig.fs.open(rig.dev("rpmsg1"), os.O_RDWR)
        try:
            rig.fs.write(fd, b"chan")
            assert rig.fs.read(fd, 10) == b"chan"
        finally:
            rig.fs.close(fd)
        assert rig.ctrl_ioctl(cfd, RPMSG_RELEASE_DEV_IOCTL, "rpmsg-raw", 0x700, ANY) == 0
        assert "rpmsg1" not in rig.fs.listdir(rig.root / "dev")
    finally:
        rig.fs.close(cfd)


def test_nonblocking_write_eagain_without_tx_buffers(rig: Rig) -> None:
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR | os.O_NONBLOCK)
    rig.pair.pause_remote()
    try:
        sent = 0
        while True:
            code = oserr(rig.fs.write, fd, b"m")
            if code:
                assert code == errno.EAGAIN
                break
            sent += 1
            assert sent <= 64
        assert sent == 16  # 2 * num / 2 transmit buffers
        p = rig.fs.poller(fd, select.POLLOUT)
        assert p.poll(0) == []
    finally:
        rig.pair.resume_remote()
        rig.fs.close(fd)


def test_poll_pollout_wakes_when_tx_buffers_return(rig: Rig) -> None:
    """A sink remote never answers: only the returned TX buffers can wake a POLLOUT poller."""
    sink = rig.svc[1].addr
    cfd = rig.fs.open(rig.dev("rpmsg_ctrl0"), os.O_RDWR)
    try:
        assert rig.ctrl_ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, "sink", ANY, sink) == 0
    finally:
        rig.fs.close(cfd)
    fd = rig.fs.open(rig.dev("rpmsg1"), os.O_RDWR | os.O_NONBLOCK)
    rig.pair.pause_remote()
    try:
        while oserr(rig.fs.write, fd, b"m") == 0:
            pass
        p = rig.fs.poller(fd, select.POLLOUT)
        assert p.poll(0) == []
        t0 = time.monotonic()
        threading.Timer(0.2, rig.pair.resume_remote).start()
        ev = p.poll(3000)
        assert ev and ev[0][1] & select.POLLOUT
        assert 0.15 < time.monotonic() - t0 < 2
        assert rig.fs.write(fd, b"again") == 5
    finally:
        rig.pair.resume_remote()
        rig.fs.close(fd)


@pytest.mark.fuse
def test_killed_blocked_writer_leaves_at_once(rig: Rig) -> None:
    code = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "for i in range(17):\n"
        "    os.write(fd, b'm')\n"
        "    print(i, flush=True)\n"
    )
    rig.pair.pause_remote()
    proc = subprocess.Popen([sys.executable, "-c", code, str(rig.dev("rpmsg0"))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for i in range(16):
            assert proc.stdout.readline().strip() == str(i)
        # blocked waiting for a TX buffer (the bus counts its sleepers), and stays so
        bus = rig.pair.bus
        assert bus is not None
        wait_until(lambda: bus._tx_waiters == 1, what="the 17th write waiting for a TX buffer")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(1.0)
        assert wait_until(lambda: _can_open(rig.dev("rpmsg0")), 1.0)
    finally:
        rig.pair.resume_remote()
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("rig", ["inproc", "fuse"], indirect=True)
def test_blocking_write_times_out_without_tx_buffers(rig: Rig) -> None:
    """The kernel's 15 s wait ends in -ERESTARTSYS, which FUSE cannot carry: ETIMEDOUT here
    (the bus's timeout is shortened for the test)."""
    bus = rig.pair.bus
    assert bus is not None
    bus.tx_timeout = 0.3
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR)
    rig.pair.pause_remote()
    try:
        for _ in range(16):
            rig.fs.write(fd, b"m")
        t0 = time.monotonic()
        assert oserr(rig.fs.write, fd, b"m") == errno.ETIMEDOUT
        assert 0.25 < time.monotonic() - t0 < 3
    finally:
        rig.pair.resume_remote()
        rig.fs.close(fd)


def _can_open(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR))
        return True
    except OSError:
        return False


def test_bus_removal_epipe_and_devices_vanish(rig: Rig) -> None:
    fd = rig.fs.open(rig.dev("rpmsg0"), os.O_RDWR)
    try:
        rig.pair.stop()
        assert sorted(rig.fs.listdir(rig.root / "dev")) == []
        assert oserr(rig.fs.read, fd, 10) == errno.EPIPE
        assert oserr(rig.fs.write, fd, b"x") == errno.EPIPE
        p = rig.fs.poller(fd, select.POLLIN)
        assert p.poll(0)[0][1] & select.POLLERR
        assert rig.fs.listdir(rig.root / "sys/bus/rpmsg/devices") == []
    finally:
        rig.fs.close(fd)


def test_open_after_channel_gone_enetreset(rig: Rig) -> None:
    """The node disappears with its channel, so through paths the race cannot be provoked;
    the device object still says ENETRESET to an open that lost it."""
    assert rig.tree.rpmsg is not None
    dev = rig.tree.rpmsg.eptdevs[0]
    dev.destroy()
    with pytest.raises(RprocError) as ei:
        EptHandle(dev)
    assert ei.value.errno == errno.ENETRESET


@pytest.mark.fuse
def test_tty_is_a_terminal_and_echoes(rig: Rig) -> None:
    link = rig.dev("ttyRPMSG0")
    target = os.readlink(link)
    assert target.startswith("/dev/pts/")
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
        attrs = termios.tcgetattr(fd)
        assert not attrs[3] & termios.ECHO  # raw
        os.write(fd, b"hello tty")
        got = b""
        deadline = time.monotonic() + 3
        while got != b"hello tty" and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                got += os.read(fd, 100)
        assert got == b"hello tty"
        # A long line is split into MTU-sized messages and comes back whole.
        big = bytes(range(256)) * 4
        os.write(fd, big)
        got = b""
        deadline = time.monotonic() + 3
        while len(got) < len(big) and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                got += os.read(fd, 4096)
        assert got == big
    finally:
        os.close(fd)
