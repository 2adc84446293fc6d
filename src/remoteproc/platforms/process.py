"""The process platform: a remote processor that is another host process (spec §1.7, §1.8, §9).

Owns the transport of OpenAMP's Linux machine (``openamp-system-reference`` legacy apps), both
its wire facts (``ShmLayout``, ``shm_path``, ``ShmFile``, ``loaded_table_size``, ``KickSocket``
for the remote's end) and the host's platform driver ``ProcessPlatform``:

- Shared memory is a file in ``/dev/shm`` (``openamp.shm``, 0x80000 bytes) that both processes
  map. A physical address *is* a file offset, and so is a device address: the remote's resource
  table sits at offset 0, the vrings at 0x4000 and 0x8000 (256 entries, align 0x1000), the rpmsg
  buffer pool at 0x10000 (0x40000 bytes: 512 buffers of 512 bytes).
- Notifications go over one Unix stream socket (``/tmp/openamp.event.0``). The remote is the
  server: it writes its resource table into the file, then listens and accepts one host. A kick
  is one byte in either direction and does not say which vring: the receiver looks at all of
  them. Every name and path is configurable so many pairs can run at once; the defaults are
  OpenAMP's so unmodified OpenAMP demos interoperate.

Rules (host side):
- The processor registers DETACHED: the host attaches to a remote that is already running
  (§1.7). ``prepare`` connects (a successful connect proves the table is written, because the
  remote writes it before it listens), maps the file and registers ``vdev0vring0``,
  ``vdev0vring1`` and ``vdev0buffer`` as carveouts at their fixed addresses, so the vdev binds
  to them and the kernel-compatible rpmsg bus allocates its 512 buffers exactly in the pool.
  ``attach`` starts the socket reader; ``detach`` restores nothing itself (the core writes the
  pristine table back) and closes the connection, so the remote sees EOF and can wait for the
  next host.
- The reader thread turns each batch of received bytes into ``rproc.vq_interrupt`` for every
  notify id of the processor (a byte does not say which vring). One pass per ``recv`` is the
  same as one per byte: an interrupt drains everything its ring holds.
- Kicks issued while the reader thread is delivering interrupts (rpmsg re-posting receive
  buffers, replies sent from an endpoint callback) are coalesced into one byte sent when the
  pass ends: the remote looks at every ring on any byte, so one byte carries all of them.
  Kicks from other threads go out at once. The vring's own suppression (``NO_NOTIFY`` set by a
  busy remote) already batches the sender's kicks.
- Peer death: EOF (or a socket error) that we did not cause is a crash of the remote, reported
  with ``report_crash(FATAL_ERROR)``; the core's recovery then runs ``stop`` and ``start`` (or
  ``detach``/``attach`` with ATTACH_ON_RECOVERY). We chose crash over an implicit detach because
  a remote that vanished took its rings with it: the channels must be torn down and recreated,
  which is exactly what recovery does, and recovery can be disabled by the user. Before
  reporting, the reader waits up to ``PEER_EXIT_WAIT`` for the peer process (``SO_PEERCRED``) to
  finish exiting: EOF can arrive while the dying remote's listening socket still accepts, and a
  recovery that reconnected at once would land on that corpse.
- ``command`` (optional) makes the platform the remote's launcher, the boot loader of this
  world: ``prepare``/``attach``/``start`` spawn it when it is not running, ``stop`` terminates it
  (SIGTERM, then SIGKILL), ``close`` reaps it. Without a command, ``start`` waits up to
  ``connect_timeout`` for someone else to bring a remote back, and ``stop`` only disconnects (a
  process we do not own cannot be powered off).
- The file is mapped once per attach (in ``prepare``) and must stay the same file while the
  processor is up: a remote restarted by recovery has to reopen it, not unlink and recreate it
  (OpenAMP's libmetal and our Python remote both reopen it).
- Threads: exactly one, the reader, owned by the platform; ``detach``/``stop``/``close`` stop and
  join it. It never takes the processor's lock; it calls only ``vq_interrupt`` and
  ``report_crash``, which are safe from any thread.
- Memory ordering: both processes write the rings through ``mmap``. The vring layer reads and
  writes each 16-bit index with one access (``struct`` copies byte by byte and tore indices
  across processes) and puts a full barrier (a locked atomic) between publishing an index and
  reading the peer's flags; x86's store ordering keeps "data before index". A weakly ordered
  host would also need store barriers, which Python cannot express.
- Waiting: ``recv_kicks`` may poll for a short ``spin`` before sleeping. The Python remote
  does (50 us after each pass); the host reader does not by default (``spin=0``), because a
  polling thread holds the GIL the host's other threads need.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from remoteproc.closing import Closeable
from remoteproc.core.memory import MemEntry
from remoteproc.core.ops import RprocOps
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, Feature, State
from remoteproc.errors import RprocError
from remoteproc.transport.openamp_linux import (
    DEFAULT_LAYOUT,
    DEFAULT_SCHED_SLICE,
    DEFAULT_SHM_NAME,
    DEFAULT_SOCKET_PATH,
    KICK,
    NATIVE_BYTEORDER,
    KickSocket,
    ShmFile,
    ShmLayout,
    loaded_table_size,
    recv_kicks,
    set_sched_slice,
    shm_path,
)

__all__ = [
    "DEFAULT_LAYOUT",
    "DEFAULT_SCHED_SLICE",
    "DEFAULT_SHM_NAME",
    "DEFAULT_SOCKET_PATH",
    "NATIVE_BYTEORDER",
    "KickSocket",
    "ProcessPlatform",
    "ShmFile",
    "ShmLayout",
    "echo_command",
    "loaded_table_size",
    "recv_kicks",
    "set_sched_slice",
    "shm_path",
]

log = logging.getLogger("remoteproc.process")

# How long the reader waits, after EOF, for the remote's process to finish exiting.
PEER_EXIT_WAIT = 0.5

def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end (Linux ``SO_PEERCRED``), for logs and tests."""
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", cred)[0]
    return pid


def _wait_exit(pid: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` for process ``pid`` to end; True if it did (or is unknown)."""
    if pid is None or pid <= 0 or pid == os.getpid():
        return True
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True  # already reaped, or not ours to see
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


class ProcessPlatform(Closeable):
    """The host's driver for one process remote.

    ``ProcessPlatform(name="process", *, shm="openamp.shm", socket_path="/tmp/openamp.event.0",
    layout=DEFAULT_LAYOUT, command=None, connect_timeout=10.0, stop_timeout=5.0, env=None,
    spin=0.0, sched_slice=DEFAULT_SCHED_SLICE)``;
    ``make_rproc(host=...)`` creates the DETACHED ``Rproc`` it drives.
    """

    def __init__(
        self,
        name: str = "process",
        *,
        shm: str = DEFAULT_SHM_NAME,
        socket_path: str = DEFAULT_SOCKET_PATH,
        layout: ShmLayout = DEFAULT_LAYOUT,
        command: Sequence[str] | None = None,
        connect_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        env: dict[str, str] | None = None,
        spin: float = 0.0,
        sched_slice: float = DEFAULT_SCHED_SLICE,
    ) -> None:
        self.name = name
        # The reader's requested scheduler slice (see set_sched_slice); 0 leaves the default.
        self.sched_slice = sched_slice
        self.shm_name = shm
        self.socket_path = socket_path
        self.layout = layout
        self.command = list(command) if command is not None else None
        self.env = env
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        # Seconds the reader polls before sleeping (see recv_kicks). 0 by default: a polling
        # reader holds the GIL against the host's own threads (measured: lower p50, worse p99
        # and msgs/s).
        self.spin = spin
        self.rproc: Rproc | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.shm: ShmFile | None = None
        self._old_maps: list[ShmFile] = []
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._reader_ident: int | None = None
        self._closing = False  # we are tearing the connection down: EOF is expected
        self._deferring = False
        self._kick_pending = False
        self._lock = threading.Lock()  # guards _sock/_reader swaps (leaf)
        self._closed = False
        # prepare launched the remote for an attach that has not reached ops.attach yet
        self._launched_for_attach = False
        # statistics
        self.kicks_sent = 0
        self.kick_bytes_received = 0
        self.peer_deaths = 0
        self.connects = 0
        self.peer_pid: int | None = None

    # -- the processor -------------------------------------------------------------------------

    def ops(self) -> RprocOps:
        return RprocOps(
            prepare=self._prepare,
            unprepare=self._unprepare,
            start=self._start,
            stop=self._stop,
            attach=self._attach,
            detach=self._detach,
            kick=self._kick,
            da_to_va=self._da_to_va,
            get_loaded_rsc_table=self._get_loaded_rsc_table,
        )

    def make_rproc(
        self,
        name: str | None = None,
        *,
        features: Sequence[Feature] = (),
        **kw: Any,
    ) -> Rproc:
        """A DETACHED ``Rproc`` driven by this platform (pass ``host=`` to register it, which
        attaches at once when ``auto_boot`` is left True)."""
        host = kw.pop("host", None)
        rproc = Rproc(
            name or self.name,
            self.ops(),
            state=State.DETACHED,
            features=features,
            byteorder=NATIVE_BYTEORDER,
            **kw,
        )
        self.rproc = rproc
        if host is not None:
            host.add(rproc)
        return rproc

    # -- the remote process (when we are its launcher) ------------------------------------------

    @property
    def remote_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> None:
        """Start ``command`` unless it is already running (the boot loader of this world)."""
        if self.command is None:
            raise RprocError(errno.EINVAL, "no remote command to launch")
        if self.remote_alive:
            return
        self._reap()
        log.info("%s: launching remote: %s", self.name, " ".join(self.command))
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, env=self.env, close_fds=True
            )
        except OSError as exc:
            raise RprocError(exc.errno or errno.ENOEXEC, f"cannot launch remote: {exc}") from None

    def terminate_remote(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; returns the exit code (None if none)."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self._reap()

    def _reap(self) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        code = proc.poll()
        if code is None:
            proc.kill()
            code = proc.wait()
        return code

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        """Connect to the remote's socket, retrying while it is not listening yet."""
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.001
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if self.command is not None and not self.remote_alive:
                    code = self._reap()
                    raise RprocError(
                        errno.ECONNREFUSED,
                        f"remote {self.command[0]} exited (status {code}) before accepting on "
                        f"{self.socket_path}",
                    ) from None
                if time.monotonic() >= deadline:
                    raise RprocError(
                        errno.ETIMEDOUT, f"no remote listening on {self.socket_path}: {exc}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except OSError as exc:
                sock.close()
                raise RprocError(
                    exc.errno or errno.EIO, f"connect {self.socket_path}: {exc}"
                ) from None
            self.connects += 1
            self.peer_pid = _peer_pid(sock)
            log.info("%s: connected to %s (pid %s)", self.name, self.socket_path, self.peer_pid)
            return sock

    def _ensure_connected(self) -> None:
        if self._sock is not None:
            return
        if self.command is not None and not self.remote_alive:
            self.launch()
        sock = self._connect()
        with self._lock:
            self._sock = sock
            self._closing = False

    def _start_reader(self, rproc: Rproc) -> None:
        self._ensure_connected()
        if self._reader is not None:
            return
        sock = self._sock
        assert sock is not None
        thread = threading.Thread(
            target=self._read_loop, args=(rproc, sock), name=f"{self.name}-kicks", daemon=True
        )
        self._reader = thread
        thread.start()

    def _disconnect(self) -> None:
        """Close the connection on purpose and join the reader (idempotent)."""
        with self._lock:
            sock, self._sock = self._sock, None
            reader, self._reader = self._reader, None
            self._closing = True
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if reader is not None and reader is not threading.current_thread():
            reader.join()
        if sock is not None:
            sock.close()

    def _read_loop(self, rproc: Rproc, sock: socket.socket) -> None:
        self._reader_ident = threading.get_ident()
        if self.sched_slice > 0:
            set_sched_slice(self.sched_slice)
        spin = self.spin
        while True:
            data = recv_kicks(sock, spin)
            if not data:
                break
            self.kick_bytes_received += len(data)
            # One pass over every ring; kicks made meanwhile leave as one byte at the end.
            self._deferring = True
            try:
                for notifyid in list(rproc.notifyids):
                    rproc.vq_interrupt(notifyid)
            except Exception:
                log.exception("%s: interrupt delivery failed", self.name)
            finally:
                self._deferring = False
            if self._kick_pending:
                self._kick_pending = False
                self._send_kick(sock)
        self._reader_ident = None
        if self._closing:
            return
        # See "Peer death" above: let the dying remote's listening socket go first.
        _wait_exit(self.peer_pid, PEER_EXIT_WAIT)
        if self._closing:
            return
        self.peer_deaths += 1
        log.error("%s: remote closed %s: reporting a crash", self.name, self.socket_path)
        rproc.report_crash(CrashType.FATAL_ERROR)

    def _send_kick(self, sock: socket.socket) -> None:
        self.kicks_sent += 1
        try:
            sock.send(KICK)
        except OSError as exc:
            # The reader sees the same failure as EOF and reports it once.
            log.debug("%s: kick not delivered: %s", self.name, exc)

    # -- ops ---------------------------------------------------------------------------------

    def _map(self) -> ShmFile:
        shm = self.shm
        if shm is not None and shm.same_file():
            return shm
        if shm is not None:
            self._old_maps.append(shm)
        self.shm = ShmFile(self.shm_name, self.layout.shm_size, create=False)
        return self.shm

    def _regions(self) -> list[tuple[str, int, int]]:
        """The carveouts the host registers, checked against the shared file before anything
        is launched or connected (a layout is static: a bad one is the caller's error)."""
        lay = self.layout
        regions = [
            (f"vdev0vring{i}", da, lay.vring_region) for i, da in enumerate(lay.vring_da)
        ] + [("vdev0buffer", lay.buf_pa, lay.buf_size)]
        for name, da, size in regions:
            if da < 0 or size <= 0 or da + size > lay.shm_size:
                raise RprocError(
                    errno.EINVAL,
                    f"{name} [{da:#x}, {da + size:#x}) is outside the shared memory "
                    f"{shm_path(self.shm_name)} [0x0, {lay.shm_size:#x})",
                )
        return regions

    @contextlib.contextmanager
    def _launching(self) -> Iterator[bool]:
        """Around a step that may launch the remote (connecting to it does): yields whether
        it will, and on failure disconnects and stops the remote it launched (a launcher must
        not leave one behind; the core's unwind of a failed prepare or start calls neither
        unprepare nor stop)."""
        launched = self.command is not None and self._sock is None and not self.remote_alive
        try:
            yield launched
        except BaseException:
            self._disconnect()
            if launched:
                self._abandon_launch()
            raise

    def _prepare(self, rproc: Rproc) -> None:
        regions = self._regions()
        with self._launching() as launched:
            self._ensure_connected()
            shm = self._map()
        # Until ops.attach runs, an unwinding attach must also stop what this one launched.
        self._launched_for_attach = launched
        for name, da, size in regions:
            if rproc.find_carveout_by_name(name) is None:
                # pa == da == file offset: the remote reads descriptors as offsets.
                rproc.add_carveout(MemEntry(name, da, size, va=shm.view[da : da + size], dma=da))

    def _abandon_launch(self) -> None:
        code = self.terminate_remote()
        log.info("%s: attach or start failed: stopped the remote it launched (exit status %s)",
                 self.name, code)

    def _unprepare(self, rproc: Rproc) -> None:
        self._disconnect()
        if self._launched_for_attach:
            self._launched_for_attach = False
            self._abandon_launch()

    def _attach(self, rproc: Rproc) -> None:
        self.rproc = rproc
        self._launched_for_attach = False  # attached: the remote now outlives a detach
        self._start_reader(rproc)

    def _detach(self, rproc: Rproc) -> None:
        self._disconnect()

    def _start(self, rproc: Rproc) -> None:
        # Only reached by recovery of the image we attached to: bring a remote back (ours, or
        # wait for whoever restarts it) and listen to it again.
        self.rproc = rproc
        self._launched_for_attach = False
        with self._launching():
            self._start_reader(rproc)

    def _stop(self, rproc: Rproc) -> None:
        self._disconnect()
        if self.command is not None:
            code = self.terminate_remote()
            log.info("%s: remote exited with %s", self.name, code)

    def _kick(self, rproc: Rproc, notifyid: int) -> None:
        if self._deferring and threading.get_ident() == self._reader_ident:
            self._kick_pending = True
            return
        sock = self._sock
        if sock is None:
            return  # not connected: nobody to tell; the remote re-reads rings when it attaches
        self._send_kick(sock)

    def _da_to_va(self, rproc: Rproc, da: int, n: int) -> memoryview | None:
        shm = self.shm
        if shm is None or da < 0 or n < 0 or da + n > shm.size:
            return None
        return shm.view[da : da + n]

    def _get_loaded_rsc_table(self, rproc: Rproc) -> memoryview | None:
        shm = self._map()
        lay = self.layout
        region = shm.view[lay.rsc_offset : lay.rsc_offset + lay.rsc_max]
        size = loaded_table_size(region, rproc.byteorder)
        return region[:size]

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect, stop the remote we launched, unmap. The rproc is the caller's to close
        first (closing it detaches or stops through these ops)."""
        if self._closed:
            return
        self._closed = True
        self._disconnect()
        if self.command is not None:
            self.terminate_remote()
        for shm in [*self._old_maps, *([self.shm] if self.shm is not None else [])]:
            shm.close()
        self._old_maps.clear()
        self.shm = None



def echo_command(shm: str, socket_path: str, *extra: str) -> list[str]:
    """The command line of the Python echo remote for this transport."""
    return [
        sys.executable,
        "-m",
        "remoteproc.remotes.echo",
        "--shm",
        shm,
        "--socket",
        socket_path,
        *extra,
    ]
