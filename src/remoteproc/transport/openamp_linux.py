"""The transport of OpenAMP's Linux machine (``openamp-system-reference`` legacy apps): the wire
facts both ends share.

Owns ``ShmLayout`` (where the table, the vrings and the buffers sit in the shared file),
``shm_path``, ``ShmFile`` (the mapped file), ``loaded_table_size`` (the size of a table the peer
wrote), ``recv_kicks`` / ``KickSocket`` (one byte per kick on a Unix stream socket) and the
scheduler-slice request. The host's platform driver (``platforms/process.py``) and the Python
remotes (``remotes/``) both use it; neither imports the other.

Rules:
- A physical address *is* a file offset, and so is a device address.
- A kick is one byte that does not say which vring: the receiver looks at all of them.
- Every name and path is configurable so many pairs can run at once; the defaults are
  OpenAMP's so unmodified OpenAMP demos interoperate.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import platform
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import RSC_CARVEOUT, RSC_DEVMEM, RSC_TRACE, RSC_VDEV
from remoteproc.virtio.vring import vring_size

__all__ = [
    "DEFAULT_LAYOUT",
    "DEFAULT_SCHED_SLICE",
    "DEFAULT_SHM_NAME",
    "DEFAULT_SOCKET_PATH",
    "KICK",
    "NATIVE_BYTEORDER",
    "SHM_DIR",
    "KickSocket",
    "ShmFile",
    "ShmLayout",
    "loaded_table_size",
    "recv_kicks",
    "set_sched_slice",
    "shm_path",
]

log = logging.getLogger("remoteproc.process")

DEFAULT_SHM_NAME = "openamp.shm"
DEFAULT_SOCKET_PATH = "/tmp/openamp.event.0"
SHM_DIR = "/dev/shm"
# Legacy virtio: rings and rpmsg headers are in the remote's native order, which is ours.
NATIVE_BYTEORDER = "<" if sys.byteorder == "little" else ">"

KICK = b"\x01"  # OpenAMP sends a 1; the value carries nothing
_RECV_MAX = 4096


@dataclass(frozen=True)
class ShmLayout:
    """Where everything lives in the shared file (OpenAMP's Linux machine by default)."""

    shm_size: int = 0x80000
    rsc_offset: int = 0x0
    vring_da: tuple[int, int] = (0x4000, 0x8000)
    vring_num: int = 256
    vring_align: int = 0x1000
    vring_notifyid: tuple[int, int] = (1, 2)
    buf_pa: int = 0x10000
    buf_size: int = 0x40000

    @property
    def rsc_max(self) -> int:
        """The table may use the bytes up to the first vring."""
        return min(self.vring_da) - self.rsc_offset

    @property
    def vring_region(self) -> int:
        """Bytes reserved for each vring carveout: the ring, page aligned."""
        size = vring_size(self.vring_num, self.vring_align)
        return (size + 0xFFF) & ~0xFFF


DEFAULT_LAYOUT = ShmLayout()


def shm_path(name: str) -> str:
    """``openamp.shm`` -> ``/dev/shm/openamp.shm`` (libmetal's shm_open name); a path with a
    slash is used as given."""
    return name if "/" in name else os.path.join(SHM_DIR, name)


class ShmFile(Closeable):
    """One mapping of the shared file: ``view`` is the whole file as a writable memoryview.

    ``create=True`` (the remote's side) creates the file and grows it to ``size``; the host only
    opens an existing file and refuses one that is too small.
    """

    def __init__(self, name: str, size: int, *, create: bool) -> None:
        self.path = shm_path(name)
        self.size = size
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise RprocError(exc.errno or errno.ENOENT, f"cannot open {self.path}: {exc}") from None
        try:
            st = os.fstat(fd)
            if st.st_size < size:
                if not create:
                    raise RprocError(
                        errno.EINVAL, f"{self.path} is {st.st_size} bytes, expected {size:#x}"
                    )
                os.ftruncate(fd, size)
            self.inode = (st.st_dev, st.st_ino)
            self._mmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.view = memoryview(self._mmap)

    def same_file(self) -> bool:
        """Whether the path still names the file we mapped (a remote may recreate it)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.inode

    def close(self) -> None:
        self.view.release()
        try:
            self._mmap.close()
        except BufferError:
            # Views handed to the core (carveouts, rings) are still alive somewhere; the mapping
            # goes away with the last of them.
            log.debug("%s: mapping still exported; left to the garbage collector", self.path)



_BODY_SIZES = {RSC_CARVEOUT: 52, RSC_DEVMEM: 52, RSC_TRACE: 44}


def loaded_table_size(view: memoryview, byteorder: str = NATIVE_BYTEORDER) -> int:
    """The size of the resource table at the start of ``view``, from its header.

    The end of the last entry whose size the header fields tell (carveout, devmem, trace, vdev
    with its vrings and config); an entry of another type may be any size, so the table is then
    taken to extend to the end of ``view``. EINVAL if ``ver`` is not 1 or an entry lies outside.
    """
    limit = len(view)
    if limit < 16:
        raise RprocError(errno.EINVAL, "no room for a resource table")
    ver: int
    num: int
    ver, num = struct.unpack_from(byteorder + "II", view, 0)
    if ver != 1:
        raise RprocError(errno.EINVAL, f"no resource table in shared memory (ver {ver})")
    end = 16 + 4 * num
    if end > limit:
        raise RprocError(errno.EINVAL, f"resource table with {num} entries does not fit")
    for i in range(num):
        off: int = struct.unpack_from(byteorder + "I", view, 16 + 4 * i)[0]
        if off + 4 > limit:
            raise RprocError(errno.EINVAL, "rsc table is truncated", index=i, offset=off)
        rsc_type: int = struct.unpack_from(byteorder + "I", view, off)[0]
        body = off + 4
        if rsc_type in _BODY_SIZES:
            entry_end = body + _BODY_SIZES[rsc_type]
        elif rsc_type == RSC_VDEV:
            if body + 24 > limit:
                raise RprocError(errno.EINVAL, "vdev rsc is truncated", index=i, offset=off)
            config_len: int = struct.unpack_from(byteorder + "I", view, body + 16)[0]
            nvrings = int(view[body + 21])
            entry_end = body + 24 + 20 * nvrings + config_len
        else:
            entry_end = limit
        if entry_end > limit:
            raise RprocError(errno.EINVAL, "rsc table is truncated", index=i, offset=off)
        end = max(end, entry_end)
    return end


# Our wake-up threads ask for this EEVDF slice (see set_sched_slice).
DEFAULT_SCHED_SLICE = 100e-6
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "ppc64le": 355}
# struct sched_attr (include/uapi/linux/sched/types.h), SCHED_ATTR_SIZE_VER1
_SCHED_ATTR = struct.Struct("IIQiIQQQII")
_libc: Any = None


def set_sched_slice(seconds: float) -> bool:
    """Ask the kernel for a short time slice for the calling thread; True if it took it.

    Why: on Linux 6.6+ (EEVDF) a thread woken by a kick lands on a CPU whose current task may
    keep it until that task's slice runs out, 1.4 ms by default here (``sched_getattr``'s
    ``sched_runtime``). On a machine at load ~1 that was the "p50 jumps to 1.36 ms" of the
    process pair: every wake-up waited for another tenant's slice, a timer in disguise. Since
    Linux 6.12 a SCHED_OTHER thread may request its own slice (``sched_attr.sched_runtime``,
    0.1 to 100 ms, no privilege needed), and a woken thread with a shorter slice preempts the
    running one (the scheduler's PREEMPT_SHORT). Our threads run for microseconds between
    sleeps, so they never use up even 100 us: the request costs them nothing. On older
    kernels the field is ignored; off Linux or on an unknown architecture nothing is done.
    """
    global _libc
    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    if nr is None or not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    runtime = max(100_000, min(100_000_000, int(seconds * 1e9)))
    attr = ctypes.create_string_buffer(
        _SCHED_ATTR.pack(_SCHED_ATTR.size, 0, 0, os.getpriority(os.PRIO_PROCESS, 0),
                         0, runtime, 0, 0, 0, 0),
        _SCHED_ATTR.size,
    )
    ok: bool = _libc.syscall(nr, 0, attr, 0) == 0
    if not ok:
        log.debug("sched_setattr(runtime=%d ns): %s", runtime, os.strerror(ctypes.get_errno()))
    return ok


def recv_kicks(sock: socket.socket, spin: float = 0.0) -> bytes:
    """The next batch of kick bytes; ``b""`` on EOF or a socket error.

    With ``spin`` > 0, poll without blocking for that many seconds before sleeping in
    ``recv``: a peer that answers within the window finds us running, instead of paying for
    the wake-up of a thread (and often of an idle CPU) on every round trip. Only worth it
    right after activity, which is when callers wait."""
    try:
        if spin > 0:
            recv = sock.recv
            deadline = time.perf_counter() + spin
            while True:
                try:
                    return recv(_RECV_MAX, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if time.perf_counter() >= deadline:
                        break
        return sock.recv(_RECV_MAX)
    except OSError:
        return b""


class KickSocket:
    """One end of the notification socket: ``kick()`` writes a byte, ``wait()`` reads a batch.

    Used by Python remotes (``remoteproc.remotes``); the host's platform has its own reader
    thread. ``defer()`` collects the kicks made inside a processing pass into one byte.
    """

    def __init__(self, sock: socket.socket, *, batch: int = 8, spin: float = 0.0) -> None:
        self.sock = sock
        self.batch = batch
        self.spin = spin
        self._deferring = False
        self._pending = 0
        self.kicks_sent = 0
        self.bytes_received = 0

    def kick(self) -> None:
        if self._deferring:
            # Hold the kick, but not for long: the peer works in parallel with us only if it
            # hears about our progress while we are still busy.
            self._pending += 1
            if self._pending < self.batch:
                return
            self._pending = 0
        self._send()

    def _send(self) -> None:
        self.kicks_sent += 1
        with contextlib.suppress(OSError):  # a peer that went away shows up as EOF on read
            self.sock.send(KICK)

    def begin(self) -> None:
        """Start a processing pass: kicks are held until ``flush``/``end``."""
        self._deferring = True

    def flush(self) -> None:
        """Send the held kick now (before blocking on the peer), staying in the pass."""
        if self._pending:
            self._pending = 0
            self._send()

    def end(self) -> None:
        self._deferring = False
        self.flush()

    def wait(self) -> bool:
        """Block for the peer's next kick(s); False on EOF or a socket error."""
        data = recv_kicks(self.sock, self.spin)
        self.bytes_received += len(data)
        return bool(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
