"""A small file-node model of the kernel's userspace ABI, with no FUSE in it.

Owns ``Node`` (``Dir``, ``File``, ``Symlink``), ``Handle`` (one open file description),
``Request`` (what a handler knows about the system call it serves), ``Attribute`` (a
sysfs/debugfs-style show/store file), ``Notifier`` and ``Waiters`` (poll wake-ups).

The semantics modules (sysfs, debugfs, cdev, rpmsg_char, tty) build trees of these nodes over
the core's public API; ``fs.py`` serves a tree over FUSE. Unit tests drive nodes directly.

Rules:
- Errors are ``RprocError`` carrying the errno the system call must return; nothing else is
  raised across this boundary for bad input (a bare exception becomes EIO in ``fs.py``).
- A ``Handle`` is created by ``File.open(flags)`` and lives until ``release()``: the kernel's
  ``struct file``. ``release`` runs exactly once, on the last close of the description (also
  when the holder was SIGKILLed: the kernel closes its descriptors).
- Blocking handlers wait in slices (``Request.wait``) and give up with EINTR as soon as the
  request is interrupted (``Request.cancel``), so a killed caller is never held hostage.
- Poll: ``Handle.poll(notify)`` returns the current mask; when ``notify`` is given the handle
  arranges for it to be called once when the mask may have changed (a one-shot, as FUSE's poll
  handles are). ``Waiters`` holds such callbacks; ``wake()`` calls and forgets them.
- Threads: handlers run on the server's threads (many at once). Each class documents its lock;
  no lock here is held while calling out to a callback.
- Directory listings are computed at each lookup (processors, traces and rpmsg devices come
  and go), so a ``Dir`` takes a function returning its entries.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from remoteproc.errors import RprocError

__all__ = [
    "DEFAULT_POLLMASK",
    "Attribute",
    "AttributeHandle",
    "Dir",
    "File",
    "Handle",
    "Node",
    "Notifier",
    "Request",
    "Symlink",
    "Waiters",
    "lookup",
]

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLPRI = select.POLLPRI
POLLRDNORM = getattr(select, "POLLRDNORM", 0x40)
POLLWRNORM = getattr(select, "POLLWRNORM", 0x100)
# What a file without a poll method reports (the kernel's DEFAULT_POLLMASK).
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM

_WAIT_SLICE = 0.05  # seconds between checks for an interrupted request while blocking


class Request:
    """One system call being served: the open flags in force now, and interruption.

    ``flags`` are the file's current status flags (``fcntl(F_SETFL, O_NONBLOCK)`` after open is
    visible here). ``cancel`` is set (or reports set) once the caller was interrupted; the core's
    lifecycle methods accept it as their ``cancel=`` argument.
    """

    def __init__(self, flags: int = os.O_RDWR, cancel: threading.Event | None = None) -> None:
        self.flags = flags
        self.cancel = cancel if cancel is not None else threading.Event()

    @property
    def nonblock(self) -> bool:
        return bool(self.flags & os.O_NONBLOCK)

    def check(self) -> None:
        """EINTR if the caller has been interrupted."""
        if self.cancel.is_set():
            raise RprocError(errno.EINTR, "interrupted")

    def wait(self, cond: threading.Condition, ready: Callable[[], bool],
             timeout: float | None = None) -> bool:
        """Wait on ``cond`` (held by the caller) until ``ready()``; EINTR when interrupted.

        Returns False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            self.check()
            left = _WAIT_SLICE
            if deadline is not None:
                rest = deadline - time.monotonic()
                if rest <= 0:
                    return False
                left = min(left, rest)
            cond.wait(left)
        return True


class Waiters:
    """One-shot wake-up callbacks (poll handles). Lock: ``_lock``, a leaf."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cbs: list[Callable[[], None]] = []

    def add(self, cb: Callable[[], None]) -> None:
        with self._lock:
            self._cbs.append(cb)

    def wake(self) -> None:
        with self._lock:
            cbs, self._cbs = self._cbs, []
        for cb in cbs:
            cb()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cbs)


class Notifier:
    """A change counter with poll waiters: ``sysfs_notify`` for one attribute."""

    def __init__(self) -> None:
        self.generation = 0
        self.waiters = Waiters()

    def bump(self) -> None:
        self.generation += 1
        self.waiters.wake()


class Handle:
    """One open file description. Subclasses override what their file supports; the defaults
    are the VFS answers for a missing file operation."""

    #: FUSE ``direct_io``: every read/write reaches the handler (sizes are not known ahead).
    direct_io: ClassVar[bool] = True
    #: the file has no position (character devices).
    nonseekable: ClassVar[bool] = False

    def read(self, size: int, offset: int, req: Request) -> bytes:
        raise RprocError(errno.EINVAL, "file has no read operation")

    def write(self, data: bytes, offset: int, req: Request) -> int:
        raise RprocError(errno.EINVAL, "file has no write operation")

    def ioctl(self, cmd: int, arg: int, data: bytes, req: Request) -> tuple[int, bytes]:
        """``data``: the ``_IOW`` payload (empty otherwise). Returns the ioctl's return value and
        the ``_IOR`` payload to copy back (ignored for commands without one)."""
        raise RprocError(errno.ENOTTY, "inappropriate ioctl for device")

    def poll(self, notify: Callable[[], None] | None) -> int:
        return DEFAULT_POLLMASK

    def truncate(self, length: int) -> None:
        """``O_TRUNC`` on open (``echo x > file``): attribute files ignore it, as sysfs does."""

    def release(self) -> None:
        """Last close of the description."""


class Node:
    """Anything in the tree. ``mode`` holds the permission bits only."""

    mode: int = 0o444

    def __init__(self, mode: int) -> None:
        self.mode = mode


class Dir(Node):
    def __init__(self, entries: Callable[[], Mapping[str, Node]] | Mapping[str, Node],
                 mode: int = 0o755) -> None:
        super().__init__(mode)
        self._entries = entries

    def entries(self) -> Mapping[str, Node]:
        if callable(self._entries):
            return self._entries()
        return self._entries

    def get(self, name: str) -> Node | None:
        """One entry (a lookup); subclasses may find it without listing the others."""
        return self.entries().get(name)


class Symlink(Node):
    def __init__(self, target: Callable[[], str] | str) -> None:
        super().__init__(0o777)
        self._target = target

    @property
    def target(self) -> str:
        return self._target() if callable(self._target) else self._target


class File(Node):
    """A file whose ``open(flags)`` makes a ``Handle``.

    ``strict_open``: refuse at open what the mode forbids (EACCES), as kernfs does for sysfs
    even for root; debugfs and device files leave that to the VFS (root passes) and fail at the
    operation instead.
    """

    def __init__(self, mode: int, opener: Callable[[int], Handle], *,
                 strict_open: bool = False, size: int = 4096) -> None:
        super().__init__(mode)
        self._opener = opener
        self.strict_open = strict_open
        self.size = size

    def open(self, flags: int) -> Handle:
        if self.strict_open:
            acc = flags & os.O_ACCMODE
            if acc in (os.O_WRONLY, os.O_RDWR) and not self.mode & 0o222:
                raise RprocError(errno.EACCES, "file is not writable")
            if acc in (os.O_RDONLY, os.O_RDWR) and not self.mode & 0o444:
                raise RprocError(errno.EACCES, "file is not readable")
        return self._opener(flags)


class AttributeHandle(Handle):
    """An open attribute: ``show`` runs when reading at offset 0 and its text serves the
    following offsets (seq_file); each ``write`` is one ``store``; poll follows kernfs:
    readable always, plus POLLERR|POLLPRI once the attribute changed since this handle last
    read it."""

    def __init__(self, attr: Attribute) -> None:
        self.attr = attr
        self._buf: bytes | None = None
        self._seen = attr.notifier.generation if attr.notifier else 0

    def read(self, size: int, offset: int, req: Request) -> bytes:
        if self.attr.show is None:
            raise RprocError(errno.EINVAL, "attribute is write-only")
        if offset == 0 or self._buf is None:
            if self.attr.notifier is not None:
                self._seen = self.attr.notifier.generation
            self._buf = self.attr.show()
        return self._buf[offset:offset + size]

    def write(self, data: bytes, offset: int, req: Request) -> int:
        if self.attr.store is None:
            raise RprocError(errno.EINVAL, "attribute is read-only")
        return self.attr.store(data, req)

    def poll(self, notify: Callable[[], None] | None) -> int:
        n = self.attr.notifier
        if n is None:
            return DEFAULT_POLLMASK
        if notify is not None:
            n.waiters.add(notify)
        mask = DEFAULT_POLLMASK
        if n.generation != self._seen:
            mask |= POLLERR | POLLPRI
        return mask


class Attribute(File):
    """A show/store file. ``show() -> bytes``; ``store(data, req) -> bytes consumed``."""

    def __init__(self, mode: int, show: Callable[[], bytes] | None,
                 store: Callable[[bytes, Request], int] | None, *,
                 strict_open: bool = False, notifier: Notifier | None = None) -> None:
        super().__init__(mode, lambda flags: AttributeHandle(self), strict_open=strict_open)
        self.show = show
        self.store = store
        self.notifier = notifier


def lookup(root: Node, path: str) -> Node:
    """Walk ``/a/b/c`` from ``root``; ENOENT / ENOTDIR as the VFS would say."""
    node = root
    for part in path.split("/"):
        if not part:
            continue
        if not isinstance(node, Dir):
            raise RprocError(errno.ENOTDIR, f"{part}: not a directory")
        child = node.get(part)
        if child is None:
            raise RprocError(errno.ENOENT, f"{path}: no such file")
        node = child
    return node
