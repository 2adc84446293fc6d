"""The fuzzing harness of the ABI's write and ioctl parsers, shared by tests/test_fuzz_parsers.py
(a bounded budget in CI) and tools/fuzz.sh (long runs).

One host with a sim processor (an rpmsg vdev in its image) and one rpmsg bus talking to the
Python echo remote (``rpmsg_pair``), their ABI tree served in-process (``abi_inproc.NodeFs``:
the FUSE operations of ``abi/fs.py`` called as the kernel would). Each case is one system call:
- a ``write()`` of fuzzed bytes to a writable sysfs or debugfs attribute (state, firmware,
  recovery, coredump, crash, driver_override, bind/unbind, drivers_probe, uevent, power/control)
  or to ``/dev/remoteproc0`` (its start/stop/detach parser): keywords with NULs, newlines,
  white space and non-UTF-8 around them, random bytes, a page of NULs, 200 KiB at once;
- an ``ioctl()`` on ``/dev/rpmsg_ctrl0``, ``/dev/rpmsg0`` or ``/dev/remoteproc0`` with the
  commands they know and random ones, and a ``struct rpmsg_endpoint_info`` (or any bytes) as
  payload: names with and without their NUL, non-UTF-8, every src/dst edge.

Invariants checked per call (issue 13): it returns, or fails with an ``OSError`` carrying a
kernel errno; the FUSE layer never had to turn an unexpected exception into EIO (its
"unexpected error in a FUSE handler" log line, with a traceback, never appears: the harness
keeps that logger at ERROR, so silence other logs with the root logger's level, not with
``logging.disable``).
The tree is rebuilt when a case removed what later cases need (an unbind, a release).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import shutil
import struct
import tempfile
from pathlib import Path

from abi_inproc import INPROC_ROOT, NodeFs
from conftest import wait_until
from fuzzkit import mutate_bytes, pick
from hypothesis import strategies as st
from rpmsg_pair import RpmsgPair
from test_abi_support import image

from remoteproc.abi import fs as abi_fs
from remoteproc.abi.node import Dir, File, Node
from remoteproc.abi.rpmsg_char import (
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_DESTROY_EPT_IOCTL,
    RPMSG_GET_OUTGOING_FLOWCONTROL,
    RPMSG_RELEASE_DEV_IOCTL,
    RPMSG_SET_INCOMING_FLOWCONTROL,
)
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.platforms.sim import SimPlatform
from remoteproc.rpmsg.remote import RpmsgRemote, echo
from remoteproc.uapi import RPROC_GET_SHUTDOWN_ON_RELEASE, RPROC_SET_SHUTDOWN_ON_RELEASE

# Written to (relative to the root); /rprocd/devfs is the host's own /dev: never touched.
_SKIP_PREFIXES = ("/rprocd/", "/dev/rpmsg")
IOCTL_DEVICES = ("/dev/rpmsg_ctrl0", "/dev/rpmsg0", "/dev/remoteproc0")
_NEEDED = ("/dev/rpmsg_ctrl0", "/dev/rpmsg0", "/dev/remoteproc0",
           "/sys/class/remoteproc/remoteproc0/state")
# Processor work a write may start (a boot, a crash and its recovery) is waited for, so the
# next case sees a settled processor; a case never waits longer than this.
SETTLE = 10.0

KEYWORDS = [b"start", b"stop", b"detach", b"crash", b"enabled", b"disabled", b"recover",
            b"mmufault", b"watchdog", b"fatal-error", b"inline", b"default", b"disabled",
            b"rproc-a-fw", b"remoteproc-platform", b"a-rproc.0", b"rpmsg_chrdev", b"rpmsg_ctrl",
            b"virtio100.rpmsg-raw.-1.1024", b"virtio100.svc.-1.1025", b"1", b"0", b"add",
            b"remove", b"change", b"auto", b"on", b"", b"stopped", b"../x", b"a/b"]


@st.composite
def write_data(draw: st.DrawFn) -> bytes:
    kind = draw(pick(["word", "word", "word", "random", "huge", "nul", "utf8"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=64))
    if kind == "huge":
        return bytes([draw(st.integers(0, 255))]) * draw(pick([4095, 4096, 4097,
                                                                          200_000]))
    if kind == "nul":
        return b"\0" * draw(st.integers(1, 40))
    if kind == "utf8":
        return draw(st.text(min_size=1, max_size=16)).encode("utf-8", "surrogatepass")
    word = draw(pick(KEYWORDS))
    before = draw(pick([b"", b"", b" ", b"\0", b"\n", b"\xff", b"\t"]))
    after = draw(pick([b"", b"\n", b"\n", b"\0", b"\n\n", b"\xff\xfe", b" ",
                                  b"\0junk", b"\r\n"]))
    if word and draw(st.integers(0, 5)) == 0:
        word = word[: draw(st.integers(0, len(word)))]
    return (before + word + after) or b"\n"


_IOCTLS = [RPMSG_CREATE_EPT_IOCTL, RPMSG_CREATE_DEV_IOCTL, RPMSG_RELEASE_DEV_IOCTL,
           RPMSG_DESTROY_EPT_IOCTL, RPMSG_GET_OUTGOING_FLOWCONTROL,
           RPMSG_SET_INCOMING_FLOWCONTROL, RPROC_SET_SHUTDOWN_ON_RELEASE,
           RPROC_GET_SHUTDOWN_ON_RELEASE]
_ADDRS = [0xFFFF_FFFF, 0, 1, 53, 1024, 1025, 0x400, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE]


@st.composite
def endpoint_info(draw: st.DrawFn) -> bytes:
    """``struct rpmsg_endpoint_info``: char name[32]; __u32 src; __u32 dst (or not)."""
    name = draw(st.one_of(
        pick([b"rpmsg-raw", b"svc", b"rpmsg_chrdev", b"", b"x" * 32, b"x" * 31,
                         b"\xff\xfe", b"a\0b", b"rpmsg_ctrl", b"rpmsg_ns", b"../.."]),
        st.binary(max_size=32)))
    raw = name[:32].ljust(32, b"\0")
    if draw(st.integers(0, 4)) == 0:
        raw = name[:32].ljust(32, b"Z")  # no terminating NUL
    info = raw + struct.pack("<II", draw(pick(_ADDRS)), draw(pick(_ADDRS)))
    if draw(st.integers(0, 6)) == 0:
        info = info[: draw(st.integers(0, len(info)))]
    return info


@st.composite
def ioctl_calls(draw: st.DrawFn) -> tuple[str, int, int | bytes]:
    dev = draw(pick(IOCTL_DEVICES))
    cmd = draw(st.one_of(pick(_IOCTLS), pick(_IOCTLS),
                         st.integers(0, 0xFFFF_FFFF)))
    arg: int | bytes
    if draw(st.booleans()):
        arg = draw(pick([0, 1, 2, 0xFFFF_FFFF, -1]))
    else:
        arg = draw(st.one_of(endpoint_info(), st.binary(max_size=48)))
    return dev, cmd, arg


CALLS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 1 << 16), write_data()),
    st.tuples(st.just("write"), st.integers(0, 1 << 16), write_data()),
    ioctl_calls().map(lambda c: ("ioctl", *c)),
)


class _Unexpected(logging.Handler):
    """Counts the FUSE layer's "unexpected error" records (the traceback that became EIO)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "unexpected error" in record.getMessage():
            self.records.append(record)


def _writable(node: Node, path: str, out: list[str], depth: int = 0) -> None:
    if depth > 12 or path.startswith(_SKIP_PREFIXES):
        return
    if isinstance(node, Dir):
        for name, child in sorted(node.entries().items()):
            _writable(child, f"{path}/{name}", out, depth + 1)
    elif isinstance(node, File) and node.mode & 0o222:
        out.append(path)


class AbiHarness:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="abifuzz-"))
        self.cases = 0
        self.rebuilds = 0
        # The FUSE layer's logger keeps ERROR whatever the callers silence (a quiet run sets the
        # root logger's level): its "unexpected error" records are the invariant.
        self._fs_log = logging.getLogger(abi_fs.log.name)
        self._fs_level = self._fs_log.level
        self._fs_log.setLevel(logging.ERROR)
        self.unexpected = _Unexpected()
        self._fs_log.addHandler(self.unexpected)
        self._stack: contextlib.ExitStack | None = None
        self._suspect = False
        self._build()

    def _build(self) -> None:
        stack = contextlib.ExitStack()
        host = Host([self.dir], panic_hook=False)
        stack.callback(host.close)
        sim = SimPlatform("a")
        stack.callback(sim.close)
        (self.dir / "rproc-a-fw").write_bytes(image(vdev=True))
        self.rproc = sim.make_rproc("a", host=host, auto_boot=False)
        tree = AbiTree(host)
        stack.callback(tree.close)

        def setup(remote: RpmsgRemote) -> None:
            remote.create_ept("rpmsg-raw", echo)
            remote.create_ept("svc", echo)

        pair = RpmsgPair(num=16, mode="thread", start=False, remote_setup=setup)
        stack.callback(pair.close)
        pair.start()
        self.fs = NodeFs(tree.root)
        stack.callback(self.fs.close_all)
        self.tree = tree
        self._stack = stack
        self.writable: list[str] = []
        _writable(tree.root, "", self.writable)
        wait_until(self._complete, 10.0, what=f"{_NEEDED} in the tree")
        self.writable = []
        _writable(tree.root, "", self.writable)

    def _complete(self) -> bool:
        try:
            for p in _NEEDED:
                self.fs.stat(str(INPROC_ROOT) + p)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._fs_log.removeHandler(self.unexpected)
        self._fs_log.setLevel(self._fs_level)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _rebuild_if_needed(self) -> None:
        if not self._complete():
            self.rebuilds += 1
            assert self._stack is not None
            self._stack.close()
            self._build()

    def run(self, call: tuple[object, ...]) -> int:
        """One call; returns 0 or the errno it failed with."""
        self.cases += 1
        # Looking the needed devices up costs as much as a case: only after a call that may
        # have removed one (an ENOENT, an unbind or a release), and every 50 calls.
        if self._suspect or self.cases % 50 == 0:
            self._rebuild_if_needed()
            self._suspect = False
        before = len(self.unexpected.records)
        code = 0
        try:
            if call[0] == "write":
                _, which, data = call
                assert isinstance(which, int) and isinstance(data, bytes)
                targets = [*self.writable, "/dev/remoteproc0"]
                path = targets[which % len(targets)]
                self._suspect = path.endswith(("bind", "driver_override", "drivers_probe"))
                code = self._write(path, data)
                return code
            _, dev, cmd, arg = call
            assert isinstance(dev, str) and isinstance(cmd, int)
            self._suspect = dev == "/dev/rpmsg_ctrl0" or cmd == RPMSG_DESTROY_EPT_IOCTL
            code = self._ioctl(dev, cmd, arg)  # type: ignore[arg-type]
            return code
        finally:
            self._suspect = self._suspect or code in (errno.ENOENT, errno.ENODEV, errno.ENXIO,
                                                      errno.EPIPE)
            new = self.unexpected.records[before:]
            assert not new, f"{call!r}: unexpected exception in a handler: " \
                            f"{new[0].getMessage()} {new[0].exc_info!r}"

    def _write(self, path: str, data: bytes) -> int:
        try:
            fd = self.fs.open(str(INPROC_ROOT) + path, os.O_WRONLY)
        except OSError as exc:
            return _checked(exc)
        try:
            n = self.fs.write(fd, data)
            assert 0 < n <= len(data), (path, n)
            return 0
        except OSError as exc:
            return _checked(exc)
        finally:
            self.fs.close(fd)
            self._settle()

    def _ioctl(self, dev: str, cmd: int, arg: int | bytes) -> int:
        try:
            fd = self.fs.open(str(INPROC_ROOT) + dev, os.O_RDWR)
        except OSError as exc:
            return _checked(exc)
        try:
            self.fs.ioctl(fd, cmd, bytearray(arg) if isinstance(arg, bytes) else arg, True)
            return 0
        except OSError as exc:
            return _checked(exc)
        except OverflowError:
            return errno.EINVAL  # the caller's own argument: fcntl refuses it before the call
        finally:
            self.fs.close(fd)
            self._settle()

    def _settle(self) -> None:
        """Wait for work a call started on the processor (a recovery) before the next one."""
        host = self.rproc.host
        if host is not None:
            assert host.workqueue.flush(SETTLE), "processor work still running after a call"


def _checked(exc: OSError) -> int:
    code = exc.errno or 0
    assert code in errno.errorcode and code != errno.EIO, f"errno {code}: {exc}"
    return code


def mutate(call: tuple[object, ...], rng: random.Random) -> tuple[object, ...]:
    """A cheap mutant of a call for the long runs: its bytes mutated, the same target."""
    if call[0] == "write":
        _, which, data = call
        assert isinstance(data, bytes)
        return "write", which, mutate_bytes(data, rng) or b"\n"
    _, dev, cmd, arg = call
    if isinstance(arg, bytes):
        return "ioctl", dev, cmd, mutate_bytes(arg, rng)
    return "ioctl", dev, cmd, rng.choice((0, 1, 2, 0xFFFF_FFFF, -1))
