"""The FUSE mechanics under the ABI, proved on a fake node tree through real system calls:
errnos reaching write() and ioctl(), _IOW/_IOR payloads both ways, poll wake-ups, release on
close and on SIGKILL of the holder, O_NONBLOCK seen by the handler, EACCES at open."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from abi_inproc import INPROC_ROOT, NodeFs, OsFs
from conftest import holds_for, wait_until
from test_abi_support import serve

from remoteproc.abi.fs import Mount
from remoteproc.abi.node import (
    DEFAULT_POLLMASK,
    Attribute,
    Dir,
    File,
    Handle,
    Notifier,
    Request,
    Symlink,
)
from remoteproc.errors import ERESTARTSYS, RprocError

IOW_SET = 0x4004B701
IOR_GET = 0x8004B702


class Fake:
    def __init__(self) -> None:
        self.value = 0
        self.released: list[str] = []
        self.flags_seen: list[int] = []
        self.queue: list[bytes] = []
        self.cond = threading.Condition()
        self.notifier = Notifier()
        self.text = b"one\n"
        self.readers_waiting = 0  # readers blocked in QueueHandle.read


class CmdHandle(Handle):
    def __init__(self, fake: Fake, name: str) -> None:
        self.fake, self.name = fake, name

    def write(self, data: bytes, offset: int, req: Request) -> int:
        if data == b"busy":
            raise RprocError(errno.EBUSY, "busy")
        if data == b"restart":
            raise RprocError(ERESTARTSYS, "timeout")
        if data.startswith(b"errno="):
            raise RprocError(int(data[6:]), "asked for")
        return len(data)

    def ioctl(self, cmd: int, arg: int, data: bytes, req: Request) -> tuple[int, bytes]:
        if cmd == IOW_SET:
            (self.fake.value,) = struct.unpack("<i", data)
            return 0, b""
        if cmd == IOR_GET:
            return 0, struct.pack("<i", self.fake.value)
        raise RprocError(errno.EINVAL, "Unsupported ioctl")

    def release(self) -> None:
        self.fake.released.append(self.name)


class QueueHandle(Handle):
    nonseekable = True

    def __init__(self, fake: Fake, flags: int) -> None:
        self.fake = fake
        fake.flags_seen.append(flags)

    def read(self, size: int, offset: int, req: Request) -> bytes:
        f = self.fake
        with f.cond:
            if not f.queue and req.nonblock:
                raise RprocError(errno.EAGAIN, "empty")
            f.readers_waiting += 1
            try:
                req.wait(f.cond, lambda: bool(f.queue))
            finally:
                f.readers_waiting -= 1
            return f.queue.pop(0)[:size]

    def poll(self, notify: Callable[[], None] | None) -> int:
        f = self.fake
        with f.cond:
            if notify is not None:
                f.notifier.waiters.add(notify)
            return select.POLLIN if f.queue else 0

    def release(self) -> None:
        self.fake.released.append("queue")


def tree(fake: Fake) -> Dir:
    def show() -> bytes:
        return fake.text

    def store(data: bytes, req: Request) -> int:
        fake.text = data
        fake.notifier.bump()
        return len(data)

    return Dir({
        "cmd": File(0o600, lambda flags: CmdHandle(fake, "cmd")),
        "queue": File(0o600, lambda flags: QueueHandle(fake, flags)),
        "attr": Attribute(0o644, show, store, strict_open=True, notifier=fake.notifier),
        "ro": Attribute(0o444, show, None, strict_open=True),
        "sub": Dir({"link": Symlink("/dev/null")}),
    })


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Fake]]:
    fake = Fake()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Mount(tree(fake), mnt):
        yield mnt, fake


@pytest.fixture(params=["inproc", "fuse"])
def served(request: pytest.FixtureRequest, tmp_path: Path,
           ) -> Iterator[tuple[Path, NodeFs | OsFs, Fake]]:
    """The fake tree both ways: the in-process operations must answer as the mount does."""
    fake = Fake()
    with contextlib.ExitStack() as stack:
        fs = serve(stack, tree(fake), tmp_path, fuse=request.param == "fuse")
        yield (tmp_path / "mnt" if request.param == "fuse" else INPROC_ROOT), fs, fake


def test_listing_and_stat(served: tuple[Path, NodeFs | OsFs, Fake]) -> None:
    mnt, fs, _ = served
    assert sorted(fs.listdir(mnt)) == ["attr", "cmd", "queue", "ro", "sub"]
    assert fs.stat(mnt / "ro").st_mode & 0o777 == 0o444
    assert fs.readlink(mnt / "sub" / "link") == "/dev/null"
    with pytest.raises(FileNotFoundError):
        fs.stat(mnt / "nope")


def test_write_errno_reaches_write(served: tuple[Path, NodeFs | OsFs, Fake]) -> None:
    mnt, fs, _ = served
    fd = fs.open(mnt / "cmd", os.O_WRONLY)
    try:
        assert fs.write(fd, b"ok") == 2
        with pytest.raises(OSError) as ei:
            fs.write(fd, b"busy")
        assert ei.value.errno == errno.EBUSY
        for code in (errno.EINVAL, errno.ENODEV, errno.ENOENT, errno.EMSGSIZE, errno.EPIPE):
            with pytest.raises(OSError) as ei:
                fs.write(fd, b"errno=%d" % code)
            assert ei.value.errno == code
        with pytest.raises(OSError) as ei:
            fs.write(fd, b"restart")
        assert ei.value.errno == errno.ETIMEDOUT
        with pytest.raises(OSError) as ei:
            fs.read(fd, 10)
        assert ei.value.errno == errno.EBADF  # the VFS: not open for reading
    finally:
        fs.close(fd)


def test_ioctl_payload_both_ways(served: tuple[Path, NodeFs | OsFs, Fake]) -> None:
    mnt, fs, fake = served
    fd = fs.open(mnt / "cmd", os.O_RDWR)
    try:
        assert fs.ioctl(fd, IOW_SET, bytearray(struct.pack("<i", 0x1234)), True) == 0
        assert fake.value == 0x1234
        out = bytearray(4)
        assert fs.ioctl(fd, IOR_GET, out, True) == 0
        assert struct.unpack("<i", out) == (0x1234,)
        with pytest.raises(OSError) as ei:
            fs.ioctl(fd, 0x4004B7FF, struct.pack("<i", 1))
        assert ei.value.errno == errno.EINVAL
    finally:
        fs.close(fd)


def test_attribute_poll_wakes_on_change(mounted: tuple[Path, Fake]) -> None:
    mnt, fake = mounted
    fd = os.open(mnt / "attr", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"one\n"
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        assert p.poll(0) == []
        woke: list[list[tuple[int, int]]] = []
        t = threading.Thread(target=lambda: woke.append(p.poll(5000)))
        t.start()
        # Bounded observation: once the poller holds its poll handle, no change means no
        # wake-up for as long as we watch (0.2 s).
        wait_until(lambda: len(fake.notifier.waiters) > 0, what="the poller's poll handle")
        holds_for(lambda: not woke, 0.2, "no wake-up without a change")
        subprocess.run(["sh", "-c", f"echo two > {mnt}/attr"], check=True)
        t.join(5)
        assert woke and woke[0][0][1] & select.POLLPRI
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"two\n"
        assert p.poll(0) == []
    finally:
        os.close(fd)


def test_read_only_attribute_eacces_at_open(mounted: tuple[Path, Fake]) -> None:
    mnt, _ = mounted
    with pytest.raises(PermissionError):
        os.open(mnt / "ro", os.O_WRONLY)
    r = subprocess.run(["sh", "-c", f"echo x > {mnt}/ro"], capture_output=True, text=True)
    assert r.returncode != 0 and "denied" in r.stderr
    with pytest.raises(PermissionError):
        os.open(mnt / "new", os.O_WRONLY | os.O_CREAT)


def test_release_on_close(mounted: tuple[Path, Fake]) -> None:
    mnt, fake = mounted
    fd = os.open(mnt / "cmd", os.O_WRONLY)
    fd2 = os.dup(fd)
    os.close(fd)
    # a dup keeps the description open. Bounded observation: FUSE releases after close()
    # returns, so "no release" is watched for 0.1 s rather than looked at once.
    holds_for(lambda: fake.released == [], 0.1, "no release while a dup is open")
    os.close(fd2)
    assert wait_until(lambda: fake.released == ["cmd"])


def test_release_on_sigkill_of_holder(mounted: tuple[Path, Fake]) -> None:
    mnt, fake = mounted
    code = (
        "import os, sys, time\n"
        f"fd = os.open({str(mnt / 'cmd')!r}, os.O_WRONLY)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert wait_until(lambda: fake.released == ["cmd"], 1.0)
        assert time.monotonic() - t0 < 1.0
    finally:
        proc.kill()
        proc.wait()


def test_blocked_reader_killed_is_released(mounted: tuple[Path, Fake]) -> None:
    """A SIGKILLed process blocked in read() on the mount dies at once (interrupt honoured)."""
    mnt, fake = mounted
    code = (
        "import os\n"
        f"fd = os.open({str(mnt / 'queue')!r}, os.O_RDONLY)\n"
        "print('ready', flush=True)\n"
        "os.read(fd, 10)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_until(lambda: fake.readers_waiting == 1, what="the child blocked in read()")
        proc.send_signal(signal.SIGKILL)
        proc.wait(2)
        assert wait_until(lambda: "queue" in fake.released, 1.0)
    finally:
        proc.kill()
        proc.wait()


def test_nonblock_flags_and_poll_wakeup(served: tuple[Path, NodeFs | OsFs, Fake]) -> None:
    mnt, fs, fake = served
    fd = fs.open(mnt / "queue", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert fake.flags_seen[-1] & os.O_NONBLOCK
        with pytest.raises(BlockingIOError):
            fs.read(fd, 10)
        p = fs.poller(fd, select.POLLIN)
        assert p.poll(0) == []

        def feed() -> None:
            # feed once the main thread's poll() waits (holds its poll handle)
            wait_until(lambda: len(fake.notifier.waiters) > 0, what="the poller")
            with fake.cond:
                fake.queue.append(b"hello")
                fake.cond.notify_all()
            fake.notifier.waiters.wake()

        t = threading.Thread(target=feed)
        t.start()
        events = p.poll(5000)
        t.join()
        assert events and events[0][1] & select.POLLIN
        assert fs.read(fd, 3) == b"hel"  # one message per read; the rest is dropped
        # Clearing O_NONBLOCK with fcntl is visible to the next read (blocks until data).
        fs.set_nonblock(fd, False)

        def feed_blocked_reader() -> None:
            wait_until(lambda: fake.readers_waiting == 1, what="the reader blocked in read()")
            with fake.cond:
                fake.queue.append(b"x")
                fake.cond.notify_all()

        t = threading.Thread(target=feed_blocked_reader)
        t.start()
        assert fs.read(fd, 10) == b"x"
        t.join()
    finally:
        fs.close(fd)


def test_default_pollmask_for_plain_files(mounted: tuple[Path, Fake]) -> None:
    mnt, _ = mounted
    fd = os.open(mnt / "cmd", os.O_RDWR)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        (ev,) = p.poll(0)
        assert ev[1] & (select.POLLIN | select.POLLOUT) == (select.POLLIN | select.POLLOUT)
        assert DEFAULT_POLLMASK & select.POLLOUT
    finally:
        os.close(fd)


def test_close_with_files_open_still_unmounts(tmp_path: Path) -> None:
    fake = Fake()
    mnt = tmp_path / "m"
    mnt.mkdir()
    m = Mount(tree(fake), mnt).start()
    fd = os.open(mnt / "cmd", os.O_WRONLY)
    try:
        m.close()
        assert not m._mounted()
        assert "cmd" in fake.released
    finally:
        with contextlib.suppress(OSError):  # ENOTCONN: the connection was aborted
            os.close(fd)


def test_what_the_vfs_answers_before_the_filesystem(
        served: tuple[Path, NodeFs | OsFs, Fake]) -> None:
    """The answers of the kernel's VFS and FUSE client around the operations, which the
    in-process filesystem reproduces: the same errno both ways."""
    mnt, fs, fake = served

    def code(fn: Callable[..., object], *args: object) -> int:
        try:
            fn(*args)
        except OSError as exc:
            return exc.errno or -1
        return 0

    assert code(fs.open, mnt / "nope", os.O_RDONLY) == errno.ENOENT
    assert code(fs.open, mnt / "cmd" / "below", os.O_RDONLY) == errno.ENOTDIR
    assert code(fs.open, mnt / "new", os.O_WRONLY | os.O_CREAT) == errno.EACCES
    assert code(fs.open, mnt / "ro", os.O_WRONLY) == errno.EACCES  # strict_open
    assert code(fs.open, mnt / "sub", os.O_WRONLY) == errno.EISDIR
    fd = fs.open(mnt / "sub", os.O_RDONLY)  # a directory opens read-only
    try:
        assert code(fs.read, fd, 10) == errno.EISDIR
    finally:
        fs.close(fd)
    fd = fs.open(mnt / "attr", os.O_RDONLY)
    try:
        assert code(fs.write, fd, b"x") == errno.EBADF
        assert fs.read(fd, 100) == b"one\n"
        assert fs.read(fd, 100) == b""  # the position moved past the text
        assert fs.lseek(fd, 0, os.SEEK_SET) == 0
        assert fs.read(fd, 2) == b"on"
    finally:
        fs.close(fd)
    fd = fs.open(mnt / "cmd", os.O_WRONLY)
    try:
        assert fs.write(fd, b"") == 0  # answered by FUSE: the handler never sees it
        assert code(fs.write, fd, b"errno=%d" % errno.ENOSPC) == errno.ENOSPC
    finally:
        fs.close(fd)
    assert wait_until(lambda: fake.released == ["cmd"], what="the release")
    fd = fs.open(mnt / "queue", os.O_RDONLY)
    try:
        assert code(fs.lseek, fd, 0, os.SEEK_SET) == errno.ESPIPE  # nonseekable
    finally:
        fs.close(fd)
    # truncation on open (echo x > file) is accepted and ignored, as sysfs does
    fd = fs.open(mnt / "attr", os.O_WRONLY | os.O_TRUNC)
    try:
        assert fs.write(fd, b"two\n") == 4
    finally:
        fs.close(fd)
    assert fake.text == b"two\n"
