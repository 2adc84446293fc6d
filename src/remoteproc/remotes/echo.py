"""The Python echo remote for the process platform: OpenAMP's ``rpmsg-echo`` demo, in Python.

Owns ``ProcessRemote`` (the remote's end of the process transport: the shared file with the
resource table at offset 0, the listening socket, one ``RpmsgRemote`` driven by the socket's
kicks) and ``EchoRemote`` (the demo service), plus the command line
``python -m remoteproc.remotes.echo --shm NAME --socket PATH``.

Rules:
- Wire facts come from ``remoteproc.platforms.process`` (layout, names, the one-byte kick), so
  the two ends cannot disagree. The table is the OpenAMP Linux machine's: one rpmsg vdev (id 7,
  dfeatures = name service), vrings at 0x4000 and 0x8000 (256 entries, align 0x1000, notify ids
  1 and 2). It is written into the file before the socket listens, so a host whose connect
  succeeds always finds it.
- One host at a time: the socket listens only while no host is served, so a second host is
  refused at connect instead of attaching over the first.
- After each pass the remote polls the socket for ``spin`` (50 us) before it sleeps, as
  firmware polls before it waits for an interrupt: a host that answers within the window finds
  it running. Measured on this 2-core machine: RTT p50 87 -> 58 us, msgs/s unchanged.
- One thread does everything: it accepts a host, then blocks on the socket; every batch of
  bytes is one pass over both rings (``on_kick`` for each vring's notify id, as read from the
  table, because a byte does not say which vring). Kicks made during a pass leave as one byte.
- Back-pressure instead of loss: when the host has no free receive buffer, the echo callback
  sends the held kick, then blocks on the socket until the host returns buffers, and retries.
  It stops consuming the host's transmit ring meanwhile, so a flooding host blocks in its own
  send (the kernel's 15 s wait) and nothing is dropped or reordered.
- When the host goes away (EOF), the remote forgets the rings, writes a fresh table (a crashed
  host may have left DRIVER_OK behind) and waits for the next host, unless ``once`` is set.
- The demo service is ``rpmsg-openamp-demo-channel``; the 32-bit payload 0xEF56A55A (native
  order) asks the remote to shut down: it destroys its endpoint (a name-service DESTROY), sends
  its last kick and exits with status 0. SIGTERM/SIGINT stop it the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import TableBuilder
from remoteproc.rpmsg.remote import RemoteEndpoint, RpmsgRemote
from remoteproc.rpmsg.wire import VIRTIO_RPMSG_F_NS
from remoteproc.transport.openamp_linux import (
    DEFAULT_LAYOUT,
    DEFAULT_SCHED_SLICE,
    DEFAULT_SHM_NAME,
    DEFAULT_SOCKET_PATH,
    NATIVE_BYTEORDER,
    KickSocket,
    ShmFile,
    ShmLayout,
    set_sched_slice,
)
from remoteproc.virtio.bus import VIRTIO_ID_RPMSG, VIRTIO_RING_F_EVENT_IDX

__all__ = [
    "ECHO_SERVICE",
    "SHUTDOWN_MSG",
    "EchoRemote",
    "ProcessRemote",
    "build_table",
    "main",
]

log = logging.getLogger("remoteproc.remotes.echo")

ECHO_SERVICE = "rpmsg-openamp-demo-channel"
SHUTDOWN_MSG = 0xEF56A55A
_SHUTDOWN_BYTES = struct.pack("=I", SHUTDOWN_MSG)


def build_table(
    layout: ShmLayout = DEFAULT_LAYOUT,
    byteorder: str = NATIVE_BYTEORDER,
    *,
    event_idx: bool = False,
) -> bytes:
    """The remote's resource table: one rpmsg vdev with the layout's two vrings. OpenAMP's
    table offers only the name service; ``event_idx`` also offers VIRTIO_RING_F_EVENT_IDX,
    which Linux's virtio core (and ours) then negotiates."""
    tb = TableBuilder(byteorder)
    tb.add_vdev(
        id=VIRTIO_ID_RPMSG,
        notifyid=0,
        dfeatures=(1 << VIRTIO_RPMSG_F_NS) | ((1 << VIRTIO_RING_F_EVENT_IDX) if event_idx else 0),
        vrings=[
            (da, layout.vring_align, layout.vring_num, nid, 0)
            for da, nid in zip(layout.vring_da, layout.vring_notifyid, strict=True)
        ],
    )
    return bytes(tb.build())


class _PeerGone(BaseException):
    """The host closed the connection while we were waiting on it. A BaseException so it
    leaves the rpmsg layer's per-callback ``except Exception`` and ends the pass at once (the
    rings are forgotten right after, so nothing half-done survives)."""


class ProcessRemote(Closeable):
    """The remote's end of the process transport, serving one host at a time.

    ``ProcessRemote(shm="openamp.shm", socket_path="/tmp/openamp.event.0", *, layout=...,
    once=False, name="remote")``. Create endpoints on ``self.rpmsg``, then ``serve()`` (blocks;
    ``stop()`` from another thread or a signal handler ends it). ``close()`` unlinks the socket.
    """

    def __init__(
        self,
        shm: str = DEFAULT_SHM_NAME,
        socket_path: str = DEFAULT_SOCKET_PATH,
        *,
        layout: ShmLayout = DEFAULT_LAYOUT,
        once: bool = False,
        kick_batch: int = 8,
        spin: float = 50e-6,
        sched_slice: float = DEFAULT_SCHED_SLICE,
        name: str = "remote",
        unlink_shm: bool = False,
        event_idx: bool = False,
    ) -> None:
        self.layout = layout
        self.socket_path = socket_path
        self.once = once
        self.kick_batch = kick_batch
        self.spin = spin
        self.sched_slice = sched_slice
        self.name = name
        self.unlink_shm = unlink_shm
        self.byteorder = NATIVE_BYTEORDER
        self.shm = ShmFile(shm, layout.shm_size, create=True)
        self._table = build_table(layout, self.byteorder, event_idx=event_idx)
        self.write_table()
        # The vdev body starts after the entry's 4-byte type field.
        (vdev_off,) = struct.unpack_from(self.byteorder + "I", self._table, 16)
        base = layout.rsc_offset + vdev_off + 4
        # Where the host writes each vring's notify id (fw_rsc_vdev_vring.notifyid), read on
        # every pass: cheaper than building the table's typed views each time.
        self._notifyid_at = [base + 24 + 20 * i + 12 for i in (1, 0)]  # rx ring first
        self._u32 = struct.Struct(self.byteorder + "I")
        self.rpmsg = RpmsgRemote(
            self.shm.view[base : base + len(self._table)],
            pa_to_va=self._pa_to_va,
            kick=self._kick,
            byteorder=self.byteorder,
            name=name,
        )
        self.link: KickSocket | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._listener: socket.socket | None = None
        self._listen()
        self.hosts_served = 0

    def _listen(self) -> None:
        """Listen on the socket path. Only while no host is served: a second host's connect
        is refused instead of parking in the backlog and attaching over the first."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        sock.bind(self.socket_path)
        sock.listen(1)
        self._listener = sock

    # -- memory ----------------------------------------------------------------------------------
    def write_table(self) -> None:
        """Put a pristine table at its offset (at start and whenever a host goes away)."""
        off = self.layout.rsc_offset
        self.shm.view[off : off + len(self._table)] = self._table

    def _pa_to_va(self, pa: int, n: int) -> memoryview | None:
        if pa < 0 or n < 0 or pa + n > self.shm.size:
            return None
        return self.shm.view[pa : pa + n]

    # -- kicks -----------------------------------------------------------------------------------
    def _kick(self, notifyid: int) -> None:
        link = self.link
        if link is not None:
            link.kick()

    def wait_for_host(self) -> None:
        """From inside a pass: send the held kick, then block until the host kicks back.
        Raises ``_PeerGone`` on EOF or when stopping."""
        link = self.link
        if link is None or self._stopping.is_set():
            raise _PeerGone()
        self.rpmsg.flush_notify()
        link.flush()
        if not link.wait():
            raise _PeerGone()

    def _pass(self) -> None:
        """One look at both rings: receive first (vring 1), then buffers returned (vring 0)."""
        rpmsg = self.rpmsg
        view, unpack = self.shm.view, self._u32.unpack_from
        for off in self._notifyid_at:
            rpmsg.on_kick(unpack(view, off)[0])

    # -- serving ---------------------------------------------------------------------------------
    def serve(self) -> None:
        """Accept hosts one after the other until ``stop()`` (or the first one's EOF with
        ``once``)."""
        if self.sched_slice > 0:
            set_sched_slice(self.sched_slice)
        while not self._stopping.is_set():
            if self._listener is None:
                self._listen()  # the table was rewritten first: listening promises it
            listener = self._listener
            assert listener is not None
            ready, _, _ = select.select([listener.fileno(), self._wake_r], [], [])
            if self._wake_r in ready or self._stopping.is_set():
                break
            conn, _ = listener.accept()
            listener.close()
            self._listener = None
            self.hosts_served += 1
            log.info("%s: host connected", self.name)
            self.link = KickSocket(conn, batch=self.kick_batch, spin=self.spin)
            try:
                self._serve_host(self.link)
            finally:
                self.link.close()
                self.link = None
                # Forget the rings and give the next host a clean table.
                self.rpmsg.close()
                self.write_table()
                log.info("%s: host gone", self.name)
            if self.once:
                break

    def _serve_host(self, link: KickSocket) -> None:
        while not self._stopping.is_set():
            if not link.wait():
                return
            link.begin()
            try:
                self._pass()
            except _PeerGone:
                return
            finally:
                link.end()

    def stop(self) -> None:
        """Make ``serve`` return (from any thread or a signal handler)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        link = self.link
        if link is not None:
            with contextlib.suppress(OSError):
                link.sock.shutdown(socket.SHUT_RD)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def close(self) -> None:
        self.stop()
        self.rpmsg.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.unlink_shm:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.shm.path)
        self.shm.close()



class EchoRemote(ProcessRemote):
    """OpenAMP's echo demo: every message on ``rpmsg-openamp-demo-channel`` goes back to its
    sender; 0xEF56A55A shuts the remote down."""

    def __init__(
        self,
        shm: str = DEFAULT_SHM_NAME,
        socket_path: str = DEFAULT_SOCKET_PATH,
        *,
        service: str = ECHO_SERVICE,
        **kw: object,
    ) -> None:
        super().__init__(shm, socket_path, name=kw.pop("name", "echo"), **kw)  # type: ignore[arg-type]
        self.echoed = 0
        self.shutdown_requested = False
        self.ept = self.rpmsg.create_ept(service, self._on_message)

    def _on_message(self, ept: RemoteEndpoint, data: bytes, src: int) -> None:
        if data == _SHUTDOWN_BYTES:
            log.info("%s: shutdown message received", self.name)
            self.shutdown_requested = True
            ept.destroy()
            self._stopping.set()
            return
        while True:
            try:
                ept.sendto(data, src)
                self.echoed += 1
                return
            except RprocError as err:
                if err.errno != errno.ENOMEM:
                    log.error("%s: echo to 0x%x failed: %s", self.name, src, err)
                    return
            # No host receive buffer: let the host catch up, then retry the same message.
            self.wait_for_host()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m remoteproc.remotes.echo",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="rpmsg echo remote over a /dev/shm file and a Unix socket (OpenAMP's Linux "
        "machine transport)",
    )
    parser.add_argument("--shm", default=DEFAULT_SHM_NAME, help="file in /dev/shm, or a path")
    parser.add_argument("--socket", default=DEFAULT_SOCKET_PATH, help="Unix socket path")
    parser.add_argument("--service", default=ECHO_SERVICE, help="name announced to the host")
    parser.add_argument("--once", action="store_true", help="exit when the first host disconnects")
    parser.add_argument("--unlink-shm", action="store_true", help="remove the shm file on exit")
    parser.add_argument(
        "--spin-us",
        type=float,
        default=50.0,
        help="after each pass, poll this long before sleeping (0: sleep at once)",
    )
    parser.add_argument(
        "--slice-us",
        type=float,
        default=DEFAULT_SCHED_SLICE * 1e6,
        help="scheduler slice to request (Linux >= 6.12, EEVDF), so a kick preempts another "
        "tenant's task instead of waiting out its slice (0: keep the kernel's default)",
    )
    parser.add_argument(
        "--kick-batch",
        type=int,
        default=8,
        help="while busy, kick the host at least every N messages",
    )
    parser.add_argument(
        "--event-idx",
        action="store_true",
        help="offer VIRTIO_RING_F_EVENT_IDX (OpenAMP's table does not)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="echo[%(process)d]: %(message)s",
    )
    stop_requested = threading.Event()
    remote: EchoRemote | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        if remote is not None:
            remote.stop()

    # Before the socket exists: a supervisor may signal as soon as it sees the socket.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    remote = EchoRemote(
        args.shm,
        args.socket,
        service=args.service,
        once=args.once,
        unlink_shm=args.unlink_shm,
        kick_batch=args.kick_batch,
        spin=args.spin_us * 1e-6,
        sched_slice=args.slice_us * 1e-6,
        event_idx=args.event_idx,
    )
    if stop_requested.is_set():
        remote.stop()
    try:
        remote.serve()
    finally:
        remote.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
