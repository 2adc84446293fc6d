"""The ABI tree served in-process: ``abi/fs.py``'s FUSE operations called directly, as the kernel
would call them for a system call, without a mount (no tests here).

``NodeFs`` is a small path-walking filesystem over a node tree with the ``os``-module calls the
ABI tests make (open/read/write/lseek/close/ioctl/poll/listdir/stat/readlink). Every call goes
through ``NodeOperations`` (one implementation of the errno mapping, the handle table, the ioctl
payload copying and the poll-handle rules); ``_InProcessOps`` replaces only its two seams: the
request's cancel (a plain event instead of libfuse's interrupted mark, which may only be read
on a libfuse worker thread) and the poll handle (an event instead of ``fuse_notify_poll``).

What the kernel's VFS and FUSE client do around those operations is done here the way they do
it, so a test sees the same errno through either path:
- path walk: ENOENT/ENOTDIR from the lookup; relative symlinks are followed inside the tree, a
  link to an absolute path leaves the tree and the rest is the host's (the tty ptys);
- open: ``O_CREAT`` of a missing file is FUSE ``create`` (EACCES); a directory opens read-only
  only (EISDIR otherwise; read on it EISDIR); ``O_TRUNC`` is a truncate after open; the flags the
  handler sees lose ``O_CREAT|O_EXCL|O_NOCTTY|O_TRUNC`` as the kernel strips them;
- read/write: EBADF on a descriptor not opened for it; a 0-byte write never reaches the handler
  (FUSE answers 0); transfers are cut at 128 KiB (libfuse's max_read/max_write) and a short read
  ends one ``read()``; the file position advances by what was transferred;
- ioctl: the restricted ioctl of FUSE: the ``_IOW`` bytes are copied in, the ``_IOR`` bytes
  copied back into a mutable buffer argument (``fcntl.ioctl(fd, cmd, buf, True)``);
- poll: like ``select.poll`` on one descriptor (``poller(fd, events)`` gives an object with
  its ``poll(timeout)``): the mask at once if any wanted bit is set, else wait for the
  handle's one-shot notification and ask again, until the timeout;
- close: flush, then release (FUSE releases asynchronously; here it is done on return).

``OsFs`` offers the same calls over a real mount, so a test body can run either way.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import posixpath
import select
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mfusepy

from remoteproc.abi.fs import NodeOperations
from remoteproc.abi.node import Dir, Node, Request, Symlink

__all__ = ["INPROC_ROOT", "NodeFs", "OsFs", "Poller", "Stat"]

#: The root of an in-process tree's paths. It does not exist on the host, so a test that
#: mistakenly hands such a path to the real ``os`` gets ENOENT instead of touching the host.
INPROC_ROOT = Path("/nonexistent-inprocess-abi")

_MAX_IO = 128 * 1024  # libfuse 3's default max_read / max_write
_STRIPPED = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC  # the kernel keeps them to itself
_FIRST_FD = 1 << 20  # above any real descriptor, so the two kinds never collide


def _err(code: int, path: object = None) -> OSError:
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), str(path))


class _PollEvent:
    """A poll handle that sets an event when notified (``fuse_notify_poll`` in FUSE)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def fire(self) -> None:
        self.event.set()

    def drop(self) -> None:
        pass


class _InProcessOps(NodeOperations):
    def __init__(self, root: Node) -> None:
        super().__init__(root)
        self.cancel = threading.Event()

    def _request(self, fi: Any) -> Request:
        return Request(int(fi.flags), self.cancel)

    def _poll_handle(self, ph: Any) -> _PollEvent:
        assert isinstance(ph, _PollEvent)
        return ph  # NodeOperations.poll calls this only for a truthy ph


@dataclass
class Stat:
    st_mode: int
    st_size: int
    st_nlink: int


@dataclass
class _File:
    path: str  # inside the tree, "/a/b"
    fi: SimpleNamespace
    is_dir: bool = False
    pos: int = 0
    acc: int = os.O_RDONLY
    extra: dict[str, Any] = field(default_factory=dict)


class NodeFs:
    """``os``-like calls on the tree ``root``, whose paths start at ``INPROC_ROOT``."""

    root_path = INPROC_ROOT

    def __init__(self, root: Node) -> None:
        self.ops = _InProcessOps(root)
        self._files: dict[int, _File] = {}
        self._next = _FIRST_FD
        self._lock = threading.Lock()

    # -- paths

    def _resolve(self, path: str | bytes | os.PathLike[str], *, follow: bool = True,
                 ) -> tuple[str, Node | None, Path | None]:
        """(tree path, node, None) or ("", None, host path) once a symlink left the tree."""
        p = os.fsdecode(path)
        rel = posixpath.relpath(posixpath.normpath(p), str(INPROC_ROOT))
        if rel.startswith(".."):
            raise _err(errno.ENOENT, p)  # not a path of this tree
        parts = [] if rel == "." else rel.split("/")
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            node = self._lookup("/" + "/".join([*done, part]), p)
            if isinstance(node, Symlink) and (parts or follow):
                hops += 1
                if hops > 40:
                    raise _err(errno.ELOOP, p)
                target = node.target
                if target.startswith("/"):
                    return "", None, Path(target, *parts)
                parts = [*target.split("/"), *parts]
                continue
            done.append(part)
        tree_path = "/" + "/".join(done)
        return tree_path, self._lookup(tree_path, p), None

    def _lookup(self, tree_path: str, shown: str) -> Node:
        try:
            return self.ops._node(tree_path)
        except mfusepy.FuseOSError as exc:
            raise _err(exc.errno, shown) from None

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except mfusepy.FuseOSError as exc:
            raise _err(exc.errno) from None

    def _file(self, fd: int) -> _File:
        f = self._files.get(fd)
        if f is None:
            raise _err(errno.EBADF)
        return f

    # -- the calls

    def open(self, path: str | bytes | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        try:
            tree_path, node, host = self._resolve(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT and flags & os.O_CREAT:
                raise _err(errno.EACCES, path) from None  # NodeOperations.create
            raise
        if host is not None:
            return os.open(host, flags, mode)
        acc = flags & os.O_ACCMODE
        fi = SimpleNamespace(flags=flags & ~_STRIPPED, fh=0, direct_io=0, nonseekable=0)
        if isinstance(node, Dir):
            if acc != os.O_RDONLY:
                raise _err(errno.EISDIR, path)
            f = _File(tree_path, fi, is_dir=True)
        else:
            self._call(self.ops.open, tree_path, fi)
            f = _File(tree_path, fi, acc=acc)
            if flags & os.O_TRUNC and acc != os.O_RDONLY:
                self._call(self.ops.truncate, tree_path, 0, fi)
        with self._lock:
            fd = self._next
            self._next += 1
            self._files[fd] = f
        return fd

    def close(self, fd: int) -> None:
        if fd not in self._files:
            os.close(fd)
            return
        with self._lock:
            f = self._files.pop(fd)
        if not f.is_dir:
            self.ops.flush(f.path, f.fi)
            self.ops.release(f.path, f.fi)

    def read(self, fd: int, n: int) -> bytes:
        if fd not in self._files:
            return os.read(fd, n)
        f = self._file(fd)
        if f.is_dir:
            raise _err(errno.EISDIR)
        if f.acc == os.O_WRONLY:
            raise _err(errno.EBADF)
        out = b""
        while len(out) < n:
            want = min(n - len(out), _MAX_IO)
            chunk = self._call(self.ops.read, f.path, want, f.pos, f.fi)
            out += chunk
            f.pos += len(chunk)
            if len(chunk) < want:
                break
        return out

    def write(self, fd: int, data: bytes) -> int:
        if fd not in self._files:
            return os.write(fd, data)
        f = self._file(fd)
        if f.is_dir:
            raise _err(errno.EISDIR)
        if f.acc == os.O_RDONLY:
            raise _err(errno.EBADF)
        done = 0
        while done < len(data):
            chunk = bytes(data[done:done + _MAX_IO])
            n = self._call(self.ops.write, f.path, chunk, f.pos, f.fi)
            done += n
            f.pos += n
            if n < len(chunk):
                break
        return done

    def lseek(self, fd: int, pos: int, how: int) -> int:
        if fd not in self._files:
            return os.lseek(fd, pos, how)
        f = self._file(fd)
        if f.fi.nonseekable:
            raise _err(errno.ESPIPE)
        if how == os.SEEK_SET:
            f.pos = pos
        elif how == os.SEEK_CUR:
            f.pos += pos
        else:
            raise _err(errno.EINVAL)
        return f.pos

    def set_nonblock(self, fd: int, on: bool = True) -> None:
        """``fcntl(F_SETFL)`` with or without O_NONBLOCK."""
        if fd not in self._files:
            os.set_blocking(fd, not on)
            return
        f = self._file(fd)
        f.fi.flags = (f.fi.flags | os.O_NONBLOCK) if on else (f.fi.flags & ~os.O_NONBLOCK)

    def ioctl(self, fd: int, cmd: int, arg: int | bytes | bytearray = 0,
              mutate: bool = True) -> int | bytes:
        """As ``fcntl.ioctl``: a mutable buffer is written back (returns the ioctl's value),
        immutable bytes come back as a new bytes object, an int is passed as is."""
        if fd not in self._files:
            return fcntl.ioctl(fd, cmd, arg, mutate)  # type: ignore[call-overload,no-any-return]
        f = self._file(fd)
        if isinstance(arg, int):
            return int(self._call(self.ops.ioctl, f.path, cmd, arg, f.fi, 0, None))
        size = (cmd >> 16) & 0x3FFF
        buf = ctypes.create_string_buffer(bytes(arg).ljust(size, b"\0"), max(size, len(arg), 1))
        ret = int(self._call(self.ops.ioctl, f.path, cmd, 0, f.fi, 0, ctypes.addressof(buf)))
        out = buf.raw[:len(arg)]
        if isinstance(arg, bytearray) and mutate:
            arg[:] = out
            return ret
        return out

    def poll(self, fd: int, events: int, timeout_ms: int | None) -> int:
        """The revents of ``fd`` (0 when the timeout passed first): ``select.poll`` for one
        descriptor. ``None`` waits for ever, as a negative timeout does."""
        if fd not in self._files:
            p = select.poll()
            p.register(fd, events)
            got = p.poll(timeout_ms)
            return got[0][1] if got else 0
        f = self._file(fd)
        deadline = None if timeout_ms is None or timeout_ms < 0 else \
            time.monotonic() + timeout_ms / 1000
        always = select.POLLERR | select.POLLHUP | select.POLLNVAL
        while True:
            # A poll that will not wait asks for no notification (the kernel's
            # poll_does_not_wait(): no FUSE_POLL_SCHEDULE_NOTIFY, no poll handle).
            ph = _PollEvent() if timeout_ms != 0 else None
            revents = [0]
            self._call(self.ops.poll, f.path, f.fi, ph, revents)
            mask = revents[0] & (events | always)
            if mask:
                return mask
            left = None if deadline is None else deadline - time.monotonic()
            if ph is None or (left is not None and left <= 0):
                return 0
            ph.event.wait(left)

    def poller(self, fd: int, events: int) -> Poller:
        """A ``select.poll()`` object with ``fd`` registered for ``events``."""
        return Poller(self, fd, events)

    def listdir(self, path: str | bytes | os.PathLike[str]) -> list[Any]:
        tree_path, _node, host = self._resolve(path)
        if host is not None:
            return os.listdir(host)
        # readdir gives (name, type, offset) entries, as getdents fills d_type
        entries = self._call(self.ops.readdir, tree_path, None)
        names = [e[0] if isinstance(e, tuple) else e for e in entries]
        names = [n for n in names if n not in (".", "..")]
        if isinstance(path, bytes):
            return [os.fsencode(n) for n in names]
        return names

    def stat(self, path: str | bytes | os.PathLike[str], *, follow: bool = True) -> Stat:
        tree_path, _node, host = self._resolve(path, follow=follow)
        if host is not None:
            st = os.stat(host) if follow else os.lstat(host)
            return Stat(st.st_mode, st.st_size, st.st_nlink)
        d = self._call(self.ops.getattr, tree_path)
        return Stat(d["st_mode"], d["st_size"], d["st_nlink"])

    def lstat(self, path: str | bytes | os.PathLike[str]) -> Stat:
        return self.stat(path, follow=False)

    def readlink(self, path: str | bytes | os.PathLike[str]) -> str:
        tree_path, _node, host = self._resolve(path, follow=False)
        if host is not None:
            return os.readlink(host)
        return str(self._call(self.ops.readlink, tree_path))

    def exists(self, path: str | bytes | os.PathLike[str]) -> bool:
        try:
            self.stat(path)
        except OSError:
            return False
        return True

    def isdir(self, path: str | bytes | os.PathLike[str]) -> bool:
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def open_handles(self) -> int:
        """Handles the operations hold (what FUSE would have released)."""
        return self.ops.open_handles()

    def close_all(self) -> None:
        for fd in list(self._files):
            self.close(fd)


class Poller:
    """``select.poll()`` with one descriptor, over ``NodeFs.poll``: ``poll(timeout_ms)`` gives
    ``[(fd, revents)]`` or ``[]``."""

    def __init__(self, fs: NodeFs, fd: int, events: int) -> None:
        self.fs, self.fd, self.events = fs, fd, events

    def poll(self, timeout_ms: int | None = None) -> list[tuple[int, int]]:
        mask = self.fs.poll(self.fd, self.events, timeout_ms)
        return [(self.fd, mask)] if mask else []


class OsFs:
    """The same calls on a real mount at ``root_path`` (the end-to-end path through FUSE)."""

    def __init__(self, root_path: Path) -> None:
        self.root_path = root_path

    open = staticmethod(os.open)
    close = staticmethod(os.close)
    read = staticmethod(os.read)
    write = staticmethod(os.write)
    lseek = staticmethod(os.lseek)
    listdir = staticmethod(os.listdir)
    readlink = staticmethod(os.readlink)

    def set_nonblock(self, fd: int, on: bool = True) -> None:
        os.set_blocking(fd, not on)

    def ioctl(self, fd: int, cmd: int, arg: int | bytes | bytearray = 0,
              mutate: bool = True) -> int | bytes:
        return fcntl.ioctl(fd, cmd, arg, mutate)  # type: ignore[call-overload,no-any-return]

    def poll(self, fd: int, events: int, timeout_ms: int | None) -> int:
        p = select.poll()
        p.register(fd, events)
        got = p.poll(timeout_ms)
        return got[0][1] if got else 0

    def poller(self, fd: int, events: int) -> Any:
        p = select.poll()
        p.register(fd, events)
        return p

    def stat(self, path: str | bytes | os.PathLike[str], *, follow: bool = True) -> Stat:
        st = os.stat(path) if follow else os.lstat(path)
        return Stat(st.st_mode, st.st_size, st.st_nlink)

    def lstat(self, path: str | bytes | os.PathLike[str]) -> Stat:
        return self.stat(path, follow=False)

    def exists(self, path: str | bytes | os.PathLike[str]) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str | bytes | os.PathLike[str]) -> bool:
        return os.path.isdir(path)
