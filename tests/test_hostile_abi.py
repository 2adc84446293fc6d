"""Wrong and odd writes through a real FUSE mount: bytes that are not UTF-8 (the kernel's files
take any bytes and give them back as written), and the directories that list what was created
from them must keep working."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rpmsg_pair import RpmsgPair
from test_abi_support import mounted_host, rpmsg_host, wait_until, write_errno

from remoteproc.abi.fs import Mount
from remoteproc.abi.rpmsg_char import (
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_RELEASE_DEV_IOCTL,
)
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.rpmsg.remote import RpmsgRemote, echo
from remoteproc.rpmsg.wire import RPMSG_NAME_SIZE, decode_name, encode_name

ANY = 0xFFFFFFFF


def read_bytes(path: Path) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read(8192)


# BUG (fixed in abi/sysfs.py firmware_show): a firmware name written as non-UTF-8 bytes was
# accepted, then every read of `firmware` failed with EIO and a traceback in rprocd's log
# (UnicodeEncodeError); the kernel prints the bytes back ("%s\n").
def test_sysfs_firmware_name_that_is_not_utf8_reads_back(tmp_path: Path) -> None:
    with mounted_host(tmp_path, [("m4", {})], rpmsg=False) as abi:
        fw = abi.sys(0, "firmware")
        assert write_errno(fw, b"\xff\xfe-fw.elf\n") == 0
        assert read_bytes(fw) == b"\xff\xfe-fw.elf\n"
        # a start finds no such file: ENOENT, and the processor stays offline
        assert write_errno(abi.sys(0, "state"), b"start") == errno.ENOENT
        assert read_bytes(abi.sys(0, "state")) == b"offline\n"
        assert write_errno(fw, b"rproc-m4-fw") == 0
        assert write_errno(abi.sys(0, "state"), b"start") == 0
        assert read_bytes(abi.sys(0, "state")) == b"running\n"
        assert write_errno(abi.sys(0, "state"), b"stop") == 0


@pytest.fixture
def rpmsg_root(tmp_path: Path) -> Iterator[Path]:
    def setup(remote: RpmsgRemote) -> None:
        remote.create_ept("rpmsg-raw", echo)
        remote.create_ept("svc/evil", echo)  # a remote may announce any name

    # names that are not UTF-8 cross the kernel's FUSE boundary: a real mount
    with rpmsg_host(tmp_path, setup, fuse=True) as r:
        yield r.root


def _info(name: bytes, src: int = ANY, dst: int = ANY) -> bytearray:
    return bytearray(name.ljust(32, b"\0")[:32] + src.to_bytes(4, "little")
                     + dst.to_bytes(4, "little"))


# BUG (fixed in abi/rpmsg_char.py _ro): an endpoint or channel created through rpmsg_ctrl with a
# name that is not UTF-8 made every lookup under /sys/class/rpmsg (or /sys/bus/rpmsg/devices)
# fail with EINVAL, a traceback per access in the log: the whole directory was gone for every
# program, not only the bad entry.
def test_rpmsg_ctrl_names_that_are_not_utf8(rpmsg_root: Path) -> None:
    cls = rpmsg_root / "sys/class/rpmsg"
    devices = rpmsg_root / "sys/bus/rpmsg/devices"
    cfd = os.open(rpmsg_root / "dev/rpmsg_ctrl0", os.O_RDWR)
    try:
        # 31 bytes of 0xff (name[31] is forced to 0)
        fcntl.ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, _info(b"\xff" * 32, 0x500, 0x400), True)
        assert "rpmsg1" in os.listdir(rpmsg_root / "dev")
        assert "rpmsg0" in os.listdir(cls)
        assert read_bytes(cls / "rpmsg1/name") == b"\xff" * 31 + b"\n"
        assert read_bytes(cls / "rpmsg0/src") != b""
        fcntl.ioctl(cfd, RPMSG_CREATE_DEV_IOCTL, _info(b"\xfebad", 0x700, 0x400), True)
        names = os.listdir(os.fsencode(devices))
        bad = [n for n in names if b"\xfebad" in n]
        assert len(bad) == 1, names
        assert read_bytes(Path(os.fsdecode(devices)) / os.fsdecode(bad[0]) / "name") == \
            b"\xfebad\n"
        # bound by its (non-UTF-8) name through driver_override + bind, as on a board (BUG,
        # fixed in abi/devices.py _find_channel: the name lookup raised, bind gave EIO)
        bad_dir = Path(os.fsdecode(devices)) / os.fsdecode(bad[0])
        assert write_errno(bad_dir / "driver_override", b"rpmsg_chrdev\n") == 0
        bind = rpmsg_root / "sys/bus/rpmsg/drivers/rpmsg_chrdev/bind"
        assert write_errno(bind, bad[0] + b"\n") == 0
        assert os.readlink(bad_dir / "driver").endswith("/bus/rpmsg/drivers/rpmsg_chrdev")
        fcntl.ioctl(cfd, RPMSG_RELEASE_DEV_IOCTL, _info(b"\xfebad", 0x700, 0x400), True)
        assert not [n for n in os.listdir(os.fsencode(devices)) if b"\xfebad" in n]
    finally:
        os.close(cfd)


# BUG (fixed in rpmsg/wire.py encode_name): a channel name holding non-UTF-8 bytes (kept as
# surrogates from user space) could not be put on the wire (UnicodeEncodeError in the
# name-service announcement).
def test_encode_name_keeps_the_bytes_given() -> None:
    raw = b"\xfebad"
    field = encode_name(os.fsdecode(raw))
    assert field == raw.ljust(RPMSG_NAME_SIZE, b"\0")
    assert decode_name(field) == "\\xfebad"  # what a receiver shows: never an exception


# BUG (fixed in abi/sysfs.py): a write longer than a page reported every byte taken; kernfs cuts a
# sysfs write to PAGE_SIZE and the store's count is that page, so write() returns 4096 (a shell
# then writes the rest as a second value, as on a board).
def test_sysfs_write_longer_than_a_page_takes_one_page(tmp_path: Path) -> None:
    with mounted_host(tmp_path, [("m4", {})], rpmsg=False) as abi:
        fd = os.open(abi.sys(0, "firmware"), os.O_WRONLY)
        try:
            assert os.write(fd, b"long.elf\n" + b"\0" * 5000) == 4096
            assert os.write(fd, b"rproc-m4-fw") == len(b"rproc-m4-fw")
        finally:
            os.close(fd)
        assert read_bytes(abi.sys(0, "firmware")) == b"rproc-m4-fw\n"
        fd = os.open(abi.sys(0, "state"), os.O_WRONLY)
        try:
            assert os.write(fd, b"start\n" + b"\0" * 4200) == 4096
        finally:
            os.close(fd)
        assert read_bytes(abi.sys(0, "state")) == b"running\n"
        assert write_errno(abi.sys(0, "state"), b"stop") == 0


# BUG (fixed in rpmsg/endpoint.py Channel): a remote announcing a channel whose name holds '/'
# made the device directory name a path ("virtio0.svc/evil.-1.1025"): every listing of
# /sys/bus/rpmsg/devices failed with EIO. The kernel's kobject core turns '/' into '!'.
def test_remote_channel_name_with_a_slash(rpmsg_root: Path) -> None:
    devices = rpmsg_root / "sys/bus/rpmsg/devices"
    assert wait_until(lambda: any(".svc!evil." in n for n in os.listdir(devices)))
    (entry,) = [n for n in os.listdir(devices) if ".svc!evil." in n]
    assert read_bytes(devices / entry / "name") == b"svc/evil\n"


# BUG (fixed in abi/tty.py TtyAbi.add_port): every "rpmsg-tty" announcement got its own pty pair
# and forwarding thread, without limit: a remote announcing thousands made the daemon exhaust
# the host's ptys, descriptors and threads. The kernel's rpmsg_tty stops at MAX_TTY_RPMSG = 32
# (the probe fails with -ENOSPC, "Failed to alloc tty port").
def test_remote_announcing_many_tty_channels_gets_32(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    def setup(remote: RpmsgRemote) -> None:
        for _ in range(40):
            remote.create_ept("rpmsg-tty", echo)

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fds_before = len(os.listdir("/proc/self/fd"))
    with contextlib.ExitStack() as stack:
        host = Host([], panic_hook=False)
        stack.callback(host.close)
        tree = AbiTree(host)
        stack.callback(tree.close)
        pair = RpmsgPair(num=64, mode="thread", start=False, remote_setup=setup)
        stack.callback(pair.close)
        pair.start()
        stack.enter_context(Mount(tree.root, mnt))
        assert wait_until(lambda: sum("Failed to alloc tty port" in r.getMessage()
                                      for r in caplog.records) == 8, timeout=10)
        ttys = sorted(n for n in os.listdir(mnt / "dev") if n.startswith("ttyRPMSG"))
        assert ttys == sorted(f"ttyRPMSG{i}" for i in range(32))
        assert len(os.listdir("/proc/self/fd")) < fds_before + 32 * 4 + 40
