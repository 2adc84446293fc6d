"""rpmsg_tty: each "rpmsg-tty" channel as a terminal, ``/dev/ttyRPMSGn`` (the kernel's
``rpmsg_tty.c``), so serial-port programs (termios, screen, picocom, pyserial) work on it.

Owns ``TtyAbi`` (the "rpmsg_tty" rpmsg driver for the buses it serves, the ports and their
indexes) and ``TtyPort`` (one pty pair and its forwarding thread).

Rules:
- A port is a real pseudo-terminal: the daemon keeps the master and one slave descriptor (so the
  master never sees a hang-up when programs close the slave); ``/dev/ttyRPMSGn`` in the mount is
  a symbolic link to the slave (``/dev/pts/K``), so opening it gives a genuine tty.
- Remote -> terminal: the channel's default-endpoint callback writes into the master without
  blocking; what does not fit is dropped and logged (the kernel's flip buffer truncates too).
- Terminal -> remote: the port's thread reads the master and sends at most one MTU (496 bytes)
  per message from the channel's endpoint to its dst (blocking up to the bus's TX timeout).
- The pty starts in raw mode (the kernel's starts cooked): with echo on, an echoing remote and
  the line discipline would bounce every byte forever. Programs set their own mode anyway.
- Threads: one per port, owned by the port: ``close()`` (channel removed, or ``TtyAbi.close``)
  wakes it through a pipe, joins it and closes the descriptors.
- Indexes are the lowest free numbers, below ``MAX_TTY_RPMSG`` (32, the kernel's limit): a
  channel past it fails its probe with ENOSPC ("Failed to alloc tty port"), so a remote cannot
  make the daemon open a pty and a thread per announcement without end.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import tty
from collections.abc import Callable

from remoteproc.abi.node import Node, Symlink
from remoteproc.closing import Closeable
from remoteproc.errors import RprocError
from remoteproc.rpmsg.core import RpmsgDriver, registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus
from remoteproc.rpmsg.wire import RPMSG_MTU

__all__ = ["MAX_TTY_RPMSG", "TTY_DRIVER", "TtyAbi", "TtyPort"]

log = logging.getLogger("remoteproc.abi")

MAX_TTY_RPMSG = 32  # rpmsg_tty.c: idr_alloc(&tty_idr, cport, 0, MAX_TTY_RPMSG, ...)


class TtyPort:
    """One ``ttyRPMSGn``: a pty whose master is wired to an rpmsg channel."""

    def __init__(self, index: int, channel: Channel) -> None:
        self.index = index
        self.channel = channel
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self.slave)
        rdev = os.fstat(self.slave).st_rdev
        # sysfs ``dev``: the pty's own numbers, so stat(/dev/ttyRPMSGn) agrees with it.
        self.devt = (os.major(rdev), os.minor(rdev))
        self._stop_r, self._stop_w = os.pipe()
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._pump, name=f"ttyRPMSG{index}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return f"ttyRPMSG{self.index}"

    def deliver(self, data: bytes) -> None:
        """Remote -> terminal (bus receive thread)."""
        if self._closed:
            return
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            log.warning("%s: write to pty failed: %s", self.name, exc)
            return
        if n < len(data):
            self.dropped += len(data) - n
            log.warning("%s: Trunc buffer: dropped %d bytes", self.name, len(data) - n)

    def _pump(self) -> None:
        """Terminal -> remote."""
        while True:
            try:
                ready, _, _ = select.select([self.master, self._stop_r], [], [])
            except OSError:
                return
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, RPMSG_MTU)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                continue
            ept = self.channel.ept
            if ept is None:
                continue
            try:
                ept.sendto(data, self.channel.dst)
            except RprocError as exc:
                log.warning("%s: send to the remote failed: %s", self.name, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


_instances: list[TtyAbi] = []
_instances_lock = threading.Lock()


def _probe(channel: Channel) -> object:
    with _instances_lock:
        owners = [t for t in _instances if t.accepts(channel.bus)]
    if not owners:
        raise RprocError(errno.ENODEV, "no ABI serves this rpmsg bus")
    port = owners[0].add_port(channel)
    if channel.ept is not None:
        channel.ept.priv = port
    return port


def _remove(channel: Channel) -> None:
    port = channel.driver_data
    if isinstance(port, TtyPort):
        for t in list(_instances):
            t.remove_port(port)
        port.close()


def _cb(ept: Endpoint, data: bytes, src: int) -> object:
    port = ept.priv
    if isinstance(port, TtyPort):
        port.deliver(data)
    return None


TTY_DRIVER = RpmsgDriver("rpmsg_tty", id_table=("rpmsg-tty",), probe=_probe, remove=_remove,
                         callback=_cb)


class TtyAbi(Closeable):
    """Serves "rpmsg-tty" channels of the buses ``accepts(bus)`` selects; ``close()`` ends it."""

    def __init__(self, accepts: Callable[[RpmsgBus], bool] = lambda bus: True) -> None:
        self.accepts = accepts
        self._lock = threading.Lock()
        self.ports: dict[int, TtyPort] = {}
        self._closed = False
        with _instances_lock:
            first = not _instances
            _instances.append(self)
        if first:
            registry.register_driver(TTY_DRIVER)

    def add_port(self, channel: Channel) -> TtyPort:
        with self._lock:
            if self._closed:  # a probe that raced with close() must not outlive it
                raise RprocError(errno.ENODEV, "Failed to alloc tty port: the ABI is closed")
            index = 0
            while index in self.ports:
                index += 1
            if index >= MAX_TTY_RPMSG:
                raise RprocError(errno.ENOSPC, "Failed to alloc tty port")
            try:
                port = TtyPort(index, channel)
            except OSError as exc:  # no pty left (kernel.pty.max) or no descriptor
                raise RprocError(exc.errno or errno.ENOMEM,
                                 f"Failed to alloc tty port: {exc.strerror}") from None
            self.ports[index] = port
        return port

    def remove_port(self, port: TtyPort) -> None:
        with self._lock:
            if self.ports.get(port.index) is port:
                del self.ports[port.index]

    def port_list(self) -> list[TtyPort]:
        with self._lock:
            return list(self.ports.values())

    def dev_entries(self) -> dict[str, Node]:
        with self._lock:
            ports = list(self.ports.values())
        return {p.name: Symlink(p.slave_path) for p in ports}

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self._closed = True
        with _instances_lock:
            if self in _instances:
                _instances.remove(self)
            last = not _instances
        if last:
            registry.unregister_driver(TTY_DRIVER)
        with self._lock:
            ports = list(self.ports.values())
            self.ports.clear()
        for p in ports:
            p.close()

