"""Serve a node tree (``node.py``) as a real filesystem over FUSE (mfusepy over libfuse3).

Owns ``NodeOperations`` (the mfusepy ``Operations``: getattr/readdir (with d_type)/readlink/open/
read/write/truncate/flush/release/ioctl/poll) and ``Mount`` (one mount: its serving thread, its
unmount).

Rules:
- Every open file is a ``Handle`` keyed by the FUSE file handle; ``release`` comes once per open
  file description, on its last close, including the implicit close of a killed process.
- Files are opened ``direct_io`` (the kernel neither caches nor sizes them), so each ``read``/
  ``write`` system call reaches a handler with the caller's exact length, and an errno raised
  there (``RprocError``) is the errno of the caller's ``write()``/``ioctl()``. The kernel's
  internal ERESTARTSYS (rpmsg's 15 s TX timeout) is reported as ETIMEDOUT: FUSE refuses errnos
  >= 512, and EINTR would make libc/Python callers retry forever (a deliberate difference).
- ioctl: FUSE on a plain filesystem serves only "restricted" ioctls whose command encodes the
  payload size and direction (``_IOW``/``_IOR``); the ``_IOW`` bytes are read from libfuse's
  buffer and the handler's ``_IOR`` bytes are written back into it.
- Poll: a FUSE poll handle is wrapped once (``_PollHandle``): notified at most once, destroyed
  exactly once (on notify, when superseded, or at release).
- Interruption: a request whose caller got a signal (SIGKILL included) is marked interrupted by
  libfuse; the ``Request.cancel`` given to handlers reads that mark on the serving thread, so a
  blocked read gives up and the dying caller is not left in uninterruptible sleep.
- Threads: libfuse's multi-threaded loop runs in one thread owned by ``Mount``; it spawns its
  own workers that call into Python, up to ``threads`` (64; libfuse's default of 10 would let
  ten blocked readers stall the whole mount). ``Mount.close()`` unmounts (lazily, then aborting the
  connection through fusectl when files are still open), joins the thread and releases every
  handle left. The handle table is guarded by ``NodeOperations._lock`` (a leaf).
- Two seams, ``_request`` (the cancel a handler sees) and ``_poll_handle``, are all that the
  tests' in-process filesystem (tests/abi_inproc.py) replaces to call these same operations
  without a mount: the errnos and formats checked there are the ones served here.
- The process's working directory is kept: libfuse's ``fuse_main`` changes it to ``/`` before
  its loop, and a ``Mount`` also serves inside other programs (the pytest plugin), so the
  filesystem's ``init`` changes it back and ``start()`` returns only after ``init``.
- libfuse installs SIGTERM/SIGHUP handlers that merely end the loop if they are still at their
  default; ``rprocd`` installs its own first, so a signal stops the processors before unmount.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import logging
import os
import re
import stat
import subprocess
import threading
import time
from types import TracebackType
from typing import Any, Protocol

import mfusepy

from remoteproc.abi.node import Dir, File, Handle, Node, Request, Symlink, lookup
from remoteproc.errors import ERESTARTSYS, RprocError

__all__ = ["Mount", "NodeOperations"]

log = logging.getLogger("remoteproc.abi")

_libfuse: Any = mfusepy._libfuse
_libfuse.fuse_interrupted.restype = ctypes.c_int
_libfuse.fuse_interrupted.argtypes = []
_libfuse.fuse_notify_poll.restype = ctypes.c_int
_libfuse.fuse_notify_poll.argtypes = [ctypes.c_void_p]
_libfuse.fuse_pollhandle_destroy.restype = None
_libfuse.fuse_pollhandle_destroy.argtypes = [ctypes.c_void_p]

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2

_IOC_WRITE = 1
_IOC_READ = 2


def _ioc_dir(cmd: int) -> int:
    return (cmd >> 30) & 3


def _ioc_size(cmd: int) -> int:
    return (cmd >> 16) & 0x3FFF


class _FuseCancel(threading.Event):
    """Reads libfuse's "this request was interrupted" mark (thread-local to the worker)."""

    def is_set(self) -> bool:
        return super().is_set() or bool(_libfuse.fuse_interrupted())


class _PollHandle:
    """A ``struct fuse_pollhandle *``: notify at most once, destroy exactly once."""

    def __init__(self, ph: int) -> None:
        self._ph: int | None = ph
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            ph, self._ph = self._ph, None
        return ph

    def fire(self) -> None:
        ph = self._take()
        if ph is not None:
            _libfuse.fuse_notify_poll(ph)
            _libfuse.fuse_pollhandle_destroy(ph)

    def drop(self) -> None:
        ph = self._take()
        if ph is not None:
            _libfuse.fuse_pollhandle_destroy(ph)


class PollHandle(Protocol):
    """What ``NodeOperations`` needs of a poll handle."""

    def fire(self) -> None: ...

    def drop(self) -> None: ...


class _Open:
    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.poll: PollHandle | None = None


def _oserror(exc: BaseException) -> mfusepy.FuseOSError:
    if isinstance(exc, RprocError):
        code = exc.errno
        if code == ERESTARTSYS:
            code = errno.ETIMEDOUT
        elif not 0 < code < 512:
            code = errno.EIO
        return mfusepy.FuseOSError(code)
    if isinstance(exc, OSError) and exc.errno:
        return mfusepy.FuseOSError(exc.errno)
    log.exception("unexpected error in a FUSE handler")
    return mfusepy.FuseOSError(errno.EIO)


class NodeOperations(mfusepy.Operations):  # type: ignore[misc]
    """mfusepy operations serving ``root`` (use with ``raw_fi=True``)."""

    use_ns = True

    def __init__(self, root: Node) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}
        self._ids = itertools.count(1)
        self._time = time.time_ns()
        # libfuse's fuse_main changes the whole process's working directory to "/" before
        # its loop (daemon habit); ``Mount`` serves inside other programs (the pytest plugin,
        # tests), so ``init`` moves it back to where the mount was started from.
        self.initialized = threading.Event()
        self.restore_cwd: int | None = None

    def init(self, path: str) -> None:
        fd = self.restore_cwd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fchdir(fd)
        self.initialized.set()

    # -- helpers

    def _node(self, path: str) -> Node:
        try:
            return lookup(self.root, path)
        except RprocError as exc:
            raise _oserror(exc) from None

    def _request(self, fi: Any) -> Request:
        """What a handler knows of the system call: the file's flags and libfuse's
        interrupted mark. (A seam: the in-process test filesystem gives its own cancel.)"""
        return Request(int(fi.flags), _FuseCancel())

    def _poll_handle(self, ph: Any) -> PollHandle:
        """Wrap the FUSE poll handle ``ph`` (a seam, as ``_request``)."""
        return _PollHandle(int(ph))

    def _get(self, fi: Any) -> _Open:
        with self._lock:
            op = self._open.get(int(fi.fh))
        if op is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return op

    def open_handles(self) -> int:
        with self._lock:
            return len(self._open)

    def release_all(self) -> None:
        """Release what the kernel never released (the mount is gone)."""
        with self._lock:
            ops, self._open = list(self._open.values()), {}
        for op in ops:
            if op.poll is not None:
                op.poll.drop()
            try:
                op.handle.release()
            except Exception:
                log.exception("release failed at unmount")

    # -- metadata

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        node = self._node(path)
        st: dict[str, Any] = {
            "st_uid": 0, "st_gid": 0,
            "st_atime": self._time, "st_mtime": self._time, "st_ctime": self._time,
        }
        if isinstance(node, Dir):
            st.update(st_mode=stat.S_IFDIR | node.mode, st_nlink=2, st_size=0)
        elif isinstance(node, Symlink):
            st.update(st_mode=stat.S_IFLNK | 0o777, st_nlink=1, st_size=len(node.target))
        else:
            size = node.size if isinstance(node, File) else 0
            st.update(st_mode=stat.S_IFREG | node.mode, st_nlink=1, st_size=size)
        return st

    def readdir(self, path: str, fh: Any) -> list[tuple[str, int, int]]:
        """Names with their file type, so ``getdents`` fills ``d_type`` as sysfs does (programs
        test ``d_type == DT_DIR`` without a stat)."""
        node = self._node(path)
        if not isinstance(node, Dir):
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        out = [(".", stat.S_IFDIR, 0), ("..", stat.S_IFDIR, 0)]
        for name, child in node.entries().items():
            kind = stat.S_IFDIR if isinstance(child, Dir) else \
                stat.S_IFLNK if isinstance(child, Symlink) else stat.S_IFREG
            out.append((name, kind, 0))
        return out

    def readlink(self, path: str) -> str:
        node = self._node(path)
        if not isinstance(node, Symlink):
            raise mfusepy.FuseOSError(errno.EINVAL)
        return node.target

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_namemax": 255}

    # -- files

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        raise mfusepy.FuseOSError(errno.EACCES)

    def open(self, path: str, fi: Any) -> int:
        node = self._node(path)
        if isinstance(node, Dir):
            raise mfusepy.FuseOSError(errno.EISDIR)
        if not isinstance(node, File):
            raise mfusepy.FuseOSError(errno.EINVAL)
        try:
            handle = node.open(int(fi.flags))
        except Exception as exc:
            raise _oserror(exc) from None
        fh = next(self._ids)
        with self._lock:
            self._open[fh] = _Open(handle)
        fi.fh = fh
        fi.direct_io = 1 if handle.direct_io else 0
        fi.nonseekable = 1 if handle.nonseekable else 0
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        op = self._get(fi)
        try:
            return op.handle.read(size, offset, self._request(fi))
        except Exception as exc:
            raise _oserror(exc) from None

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        op = self._get(fi)
        try:
            return op.handle.write(data, offset, self._request(fi))
        except Exception as exc:
            raise _oserror(exc) from None

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        if fh is not None:
            try:
                self._get(fh).handle.truncate(length)
            except RprocError as exc:
                raise _oserror(exc) from None
            return 0
        node = self._node(path)
        if isinstance(node, Dir):
            raise mfusepy.FuseOSError(errno.EISDIR)
        return 0

    def flush(self, path: str, fi: Any) -> int:
        return 0

    def release(self, path: str, fi: Any) -> int:
        with self._lock:
            op = self._open.pop(int(fi.fh), None)
        if op is None:
            return 0
        if op.poll is not None:
            op.poll.drop()
        try:
            op.handle.release()
        except Exception as exc:
            # The caller's close() has already returned (FUSE releases asynchronously).
            log.warning("release of %s failed: %s", path, exc)
        return 0

    def ioctl(self, path: str, cmd: int, arg: Any, fi: Any, flags: int, data: Any) -> int:
        op = self._get(fi)
        cmd &= 0xFFFFFFFF
        size = _ioc_size(cmd)
        direction = _ioc_dir(cmd)
        payload = b""
        if direction & _IOC_WRITE and size and data:
            payload = ctypes.string_at(data, size)
        try:
            ret, out = op.handle.ioctl(cmd, int(arg or 0), payload, self._request(fi))
        except Exception as exc:
            raise _oserror(exc) from None
        if direction & _IOC_READ and size and data:
            buf = bytes(out[:size]).ljust(size, b"\0")
            ctypes.memmove(data, buf, size)
        return ret

    def poll(self, path: str, fi: Any, ph: Any, reventsp: Any) -> int:
        op = self._get(fi)
        notify = None
        if ph:
            new = self._poll_handle(ph)
            old, op.poll = op.poll, new
            if old is not None:
                old.drop()
            notify = new.fire
        try:
            mask = op.handle.poll(notify)
        except Exception as exc:
            raise _oserror(exc) from None
        reventsp[0] = mask
        return 0


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in a path as octal ``\\040``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _umount(path: str, flags: int) -> int:
    if _libc.umount2(os.fsencode(path), flags) == 0:
        return 0
    return ctypes.get_errno()


class Mount:
    """``root`` mounted at ``mountpoint`` until ``close()``; a context manager.

    ``Mount(root, mountpoint, fsname="rprocd", threads=64)``; ``start()`` returns once the
    mount is visible (or raises). ``close()`` always unmounts, also after errors.
    """

    def __init__(self, root: Node, mountpoint: str | os.PathLike[str], *,
                 fsname: str = "rprocd", threads: int = 64, debug: bool = False) -> None:
        self.mountpoint = os.path.abspath(os.fspath(mountpoint))
        self.ops = NodeOperations(root)
        self._fsname = fsname
        self._threads = threads
        self._debug = debug
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._conn: int | None = None
        self._closed = False

    def _serve(self) -> None:
        try:
            mfusepy.FUSE(
                self.ops, self.mountpoint, raw_fi=True, foreground=True, debug=self._debug,
                fsname=self._fsname, subtype="rprocd", attr_timeout=0, entry_timeout=0,
                negative_timeout=0, max_threads=self._threads, max_idle_threads=8,
            )
        except BaseException as exc:
            self._error = exc

    def _mounted(self) -> bool:
        want = os.path.realpath(self.mountpoint)
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == want and "fuse" in line:
                    return True
        return False

    def start(self, timeout: float = 10.0) -> Mount:
        if self._thread is not None:
            raise RprocError(errno.EBUSY, "already started")
        if not os.path.isdir(self.mountpoint):
            raise RprocError(errno.ENOTDIR, f"{self.mountpoint}: not a directory")
        if self._mounted():
            raise RprocError(errno.EBUSY, f"{self.mountpoint}: something is mounted there")
        try:
            self.ops.restore_cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.ops.restore_cwd = None  # no working directory to keep (it was removed)
        try:
            self._start(timeout)
        finally:
            fd, self.ops.restore_cwd = self.ops.restore_cwd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.fchdir(fd)
                os.close(fd)
        return self

    def _start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._serve, name=f"fuse:{self.mountpoint}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # Woken by ``init`` (libfuse calls it once mount(2) is done, so the mount is already
        # in mountinfo then): no sleep in the path of every test's machine. The short wait
        # only bounds how late a serving thread that died before ``init`` is noticed.
        while not (self.ops.initialized.wait(0.05) and self._mounted()):
            if not self._thread.is_alive():
                raise RprocError(errno.EIO, f"FUSE mount at {self.mountpoint} failed: "
                                 f"{self._error!r}")
            if time.monotonic() > deadline:
                self.close()
                raise RprocError(errno.ETIMEDOUT, f"FUSE mount at {self.mountpoint} timed out")
            if self.ops.initialized.is_set():
                time.sleep(0.001)  # initialized but not listed yet: not expected, see above
        self._conn = os.minor(os.stat(self.mountpoint).st_dev)

    def _abort_connection(self) -> None:
        """Make libfuse's loop end although files are still open (fusectl ``abort``)."""
        if self._conn is None:
            return
        ctl = "/sys/fs/fuse/connections"
        if not os.path.exists(f"{ctl}/{self._conn}"):
            subprocess.run(["mount", "-t", "fusectl", "none", ctl], check=False,
                           capture_output=True)
        try:
            with open(f"{ctl}/{self._conn}/abort", "w") as f:
                f.write("1")
        except OSError as exc:
            log.warning("cannot abort FUSE connection %s: %s", self._conn, exc)

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and self._mounted():
            err = _umount(self.mountpoint, 0)
            if err == errno.EBUSY:
                log.warning("%s busy: detaching it and aborting the connection",
                            self.mountpoint)
                _umount(self.mountpoint, _MNT_DETACH)
                self._abort_connection()
            elif err:
                log.warning("umount %s: %s", self.mountpoint, os.strerror(err))
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._abort_connection()
                thread.join(timeout)
            if thread.is_alive():
                log.error("FUSE thread for %s did not stop", self.mountpoint)
        self.ops.release_all()

    def __enter__(self) -> Mount:
        return self.start() if self._thread is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
