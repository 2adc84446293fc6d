"""rpmsg_ctrl (``/dev/rpmsg_ctrlN``) and rpmsg_char (``/dev/rpmsgN``), spec §9.5-§9.6. Their sysfs
(``/sys/bus/rpmsg``, ``/sys/class/rpmsg``) is the device model's (``devices.py``).

Owns ``RpmsgAbi`` (the rpmsg drivers "rpmsg_ctrl" and "rpmsg_chrdev" bound to the buses it
serves, its ctrl and endpoint devices and their minors), ``CtrlDev``, ``EptDev`` and their
open-file handles.

Rules:
- One ``CtrlDev`` per rpmsg bus (its ``rpmsg_ctrl`` channel). CREATE_EPT makes an ``EptDev``
  whose endpoint only exists while the device is open; CREATE_DEV / RELEASE_DEV create and
  release channels (ENXIO when creation fails, EINVAL when nothing matches). Every ioctl copies
  a 40-byte ``rpmsg_endpoint_info`` and forces ``name[31] = 0``; other commands are EINVAL.
- Channels named "rpmsg-raw" or "rpmsg_chrdev" get an ``EptDev`` over the channel's default
  endpoint at once (the kernel's rpmsg_char driver); DESTROY_EPT on it is EINVAL.
- An ``EptDev``: open is EBUSY while open, ENETRESET once its channel/bus is gone; read returns
  one message per call (the rest of a longer message is dropped), EAGAIN with O_NONBLOCK, EPIPE
  without an endpoint; write sends to the fixed ``dst`` (EMSGSIZE above the MTU, EAGAIN for a
  non-blocking write without a TX buffer); poll gives POLLIN for a queued message, POLLOUT when
  a TX buffer is free, POLLERR without an endpoint.
- Messages are queued by our endpoint callback (on the bus's receive thread); readers and poll
  waiters are woken there, and when the bus or channel goes away (registry listener).
- Minors are the lowest free numbers (the kernel's ida), per device kind.
- Drivers are registered with the process-wide rpmsg registry while at least one ``RpmsgAbi``
  is open; each bus is served by the first open instance whose ``accepts(bus)`` says so.
- Every wait is on an event, never a timer: readers and POLLIN waiters are woken by the
  endpoint callback, POLLOUT waiters by the bus's TX-done interrupt (``RpmsgBus.on_tx_ready``,
  a one-shot hook registered before the last check), blocked writers by the bus's own TX
  wait. The only slices left are the ones that notice an interrupted caller (libfuse offers
  no wake-up for that).
- Lock order: ``RpmsgAbi._lock`` (device tables) -> ``EptDev._cond``; neither is held while
  calling into the bus (send, create/destroy endpoint), except ``EptDev._cond`` around the
  endpoint pointer swap, which the bus never calls back into.
- A blocking write waits for a TX buffer in short slices so an interrupted caller (signal,
  SIGKILL) leaves within one slice; after the kernel's 15 s the bus's ERESTARTSYS is returned.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from remoteproc.abi.node import (
    POLLERR,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    File,
    Handle,
    Node,
    Request,
    Waiters,
)
from remoteproc.closing import Closeable
from remoteproc.errors import ERESTARTSYS, RprocError
from remoteproc.rpmsg.core import RpmsgDriver, RpmsgListener, registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import DEFAULT_TX_TIMEOUT, RpmsgBus
from remoteproc.rpmsg.wire import RPMSG_ADDR_ANY
from remoteproc.uapi import (
    ENDPOINT_INFO,
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_DESTROY_EPT_IOCTL,
    RPMSG_GET_OUTGOING_FLOWCONTROL,
    RPMSG_RELEASE_DEV_IOCTL,
    RPMSG_SET_INCOMING_FLOWCONTROL,
    EndpointInfo,
)

__all__ = [
    "RPMSG_CREATE_DEV_IOCTL",
    "RPMSG_CREATE_EPT_IOCTL",
    "RPMSG_DESTROY_EPT_IOCTL",
    "RPMSG_GET_OUTGOING_FLOWCONTROL",
    "RPMSG_RELEASE_DEV_IOCTL",
    "RPMSG_SET_INCOMING_FLOWCONTROL",
    "CtrlDev",
    "EptDev",
    "RpmsgAbi",
    "pack_endpoint_info",
]

log = logging.getLogger("remoteproc.abi")

_SEND_SLICE = 0.25  # seconds per wait for a TX buffer before re-checking for a signal

CHRDEV_NAMES = ("rpmsg-raw", "rpmsg_chrdev")


def pack_endpoint_info(name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY) -> bytes:
    return EndpointInfo(name, src, dst).pack()


def _unpack_endpoint_info(data: bytes) -> tuple[str, int, int]:
    if len(data) < ENDPOINT_INFO.size:
        raise RprocError(errno.EFAULT, "short rpmsg_endpoint_info")
    raw, src, dst = ENDPOINT_INFO.unpack_from(data)
    raw = raw[:31].split(b"\0", 1)[0]  # name[31] = 0, then a C string
    return raw.decode("utf-8", "surrogateescape"), src, dst


def _lowest_free(used: set[int]) -> int:
    n = 0
    while n in used:
        n += 1
    return n


class EptDev:
    """``/dev/rpmsgN``: an endpoint device (``struct rpmsg_eptdev``)."""

    def __init__(self, abi: RpmsgAbi, minor: int, bus: RpmsgBus, name: str, src: int, dst: int,
                 *, default_ept: Endpoint | None = None, parent: CtrlDev | None = None,
                 channel: Channel | None = None) -> None:
        self.abi = abi
        self.minor = minor
        self.bus = bus
        self.name = name
        self.src = src
        self.dst = dst
        self.default_ept = default_ept
        self.parent = parent
        self.channel = channel
        self.ept: Endpoint | None = None
        self.gone = False  # rpdev == NULL: the channel/bus went away
        self.is_open = False
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self.waiters = Waiters()

    @property
    def dev_name(self) -> str:
        return f"rpmsg{self.minor}"

    # -- receive path (bus thread)
    def deliver(self, data: bytes) -> None:
        with self._cond:
            if self.ept is None and self.default_ept is None:
                return  # a created endpoint only exists while the device is open
            self._queue.append(bytes(data))
            self._cond.notify_all()
        self.waiters.wake()

    def _rx(self, ept: Endpoint, data: bytes, src: int) -> None:
        self.deliver(data)

    # -- lifecycle
    def open(self) -> None:
        with self._cond:
            if self.is_open or self.ept is not None:
                raise RprocError(errno.EBUSY, f"{self.dev_name} is already open")
            if self.gone:
                raise RprocError(errno.ENETRESET, f"{self.dev_name}: its channel is gone")
            self.is_open = True
        try:
            if self.default_ept is not None:
                ept = self.default_ept
            else:
                ept = self.bus.create_ept(self._rx, self.name, self.src, self.dst)
        except RprocError as exc:
            with self._cond:
                self.is_open = False
            log.error("%s: failed to create endpoint: %s", self.dev_name, exc)
            raise RprocError(errno.EINVAL, "failed to create endpoint") from exc
        with self._cond:
            self.ept = ept

    def close(self) -> None:
        """Release of the open file: destroy our endpoint, purge the queue."""
        with self._cond:
            ept, self.ept = self.ept, None
            self._queue.clear()
            self.is_open = False
            self._cond.notify_all()
        if ept is not None and ept is not self.default_ept:
            ept.destroy()
        self.waiters.wake()

    def destroy(self) -> None:
        """``rpmsg_chrdev_eptdev_destroy``: the device goes; an open file sees EPIPE."""
        with self._cond:
            self.gone = True
            ept, self.ept = self.ept, None
            self._cond.notify_all()
        if ept is not None and ept is not self.default_ept:
            ept.destroy()
        self.waiters.wake()
        self.abi._forget_eptdev(self)

    # -- file operations
    def read(self, size: int, req: Request) -> bytes:
        with self._cond:
            if self.ept is None:
                raise RprocError(errno.EPIPE, "no endpoint")
            if not self._queue and req.nonblock:
                raise RprocError(errno.EAGAIN, "no message")
            req.wait(self._cond, lambda: bool(self._queue) or self.ept is None
                     or not self.ept.alive)
            if not self._queue:
                # a dead device (a ring the remote broke) says so: EIO with its reason
                gone = self.ept.error if self.ept is not None else None
                if gone is not None:
                    raise RprocError(gone.errno, gone.message)
                raise RprocError(errno.EPIPE, "endpoint is gone")
            msg = self._queue.popleft()
        return msg[:size]

    def write(self, data: bytes, req: Request) -> int:
        ept = self.ept
        if ept is None:
            raise RprocError(errno.EPIPE, "no endpoint")
        if req.nonblock:
            try:
                ept.trysendto(data, self.dst)
            except RprocError as exc:
                if exc.errno == errno.ENOMEM:
                    raise RprocError(errno.EAGAIN, "no TX buffer") from exc
                raise
            return len(data)
        try:
            ept.trysendto(data, self.dst)
            return len(data)
        except RprocError as exc:
            if exc.errno != errno.ENOMEM:
                raise
        # No TX buffer: wait for one in slices, so a signal is noticed within one slice.
        deadline = time.monotonic() + getattr(self.bus, "tx_timeout", DEFAULT_TX_TIMEOUT)
        while True:
            req.check()
            left = deadline - time.monotonic()
            try:
                ept.sendto(data, self.dst, timeout=max(0.001, min(_SEND_SLICE, left)))
                return len(data)
            except RprocError as exc:
                if exc.errno != ERESTARTSYS or time.monotonic() >= deadline:
                    raise

    def poll(self, notify: Callable[[], None] | None) -> int:
        if notify is not None:
            self.waiters.add(notify)
        with self._cond:
            ept = self.ept
            if ept is None or not ept.alive:
                return POLLERR
            mask = POLLIN | POLLRDNORM if self._queue else 0
        if ept.poll_out():
            mask |= POLLOUT | POLLWRNORM
        elif notify is not None:
            # Woken by the bus when the remote returns a TX buffer (its TX-done interrupt);
            # registered first and checked again, so a buffer returned in between is not lost.
            on_tx_ready = getattr(self.bus, "on_tx_ready", None)
            if on_tx_ready is not None:
                on_tx_ready(self.waiters.wake)
            if ept.poll_out():
                mask |= POLLOUT | POLLWRNORM
        return mask


class EptHandle(Handle):
    nonseekable = True

    def __init__(self, dev: EptDev) -> None:
        self.dev = dev
        dev.open()

    def read(self, size: int, offset: int, req: Request) -> bytes:
        return self.dev.read(size, req)

    def write(self, data: bytes, offset: int, req: Request) -> int:
        return self.dev.write(data, req)

    def poll(self, notify: Callable[[], None] | None) -> int:
        return self.dev.poll(notify)

    def ioctl(self, cmd: int, arg: int, data: bytes, req: Request) -> tuple[int, bytes]:
        dev = self.dev
        if cmd == RPMSG_GET_OUTGOING_FLOWCONTROL:
            return 0, struct.pack("<i", 0)  # virtio never restricts the remote's flow
        if cmd == RPMSG_SET_INCOMING_FLOWCONTROL:
            if arg > 1:
                raise RprocError(errno.EINVAL, "flow control value above 1")
            ept = dev.ept
            if ept is None:
                raise RprocError(errno.EPIPE, "no endpoint")
            dev.bus.set_flow_control(ept, bool(arg), dev.dst)
            return 0, b""
        if cmd == RPMSG_DESTROY_EPT_IOCTL:
            if dev.default_ept is not None:
                raise RprocError(errno.EINVAL, "can't destroy a default endpoint")
            dev.destroy()
            return 0, b""
        raise RprocError(errno.EINVAL, "unsupported ioctl")

    def release(self) -> None:
        self.dev.close()


class CtrlDev:
    """``/dev/rpmsg_ctrlN``: one per rpmsg bus."""

    def __init__(self, abi: RpmsgAbi, minor: int, bus: RpmsgBus, channel: Channel) -> None:
        self.abi = abi
        self.minor = minor
        self.bus = bus
        self.channel = channel
        self._lock = threading.Lock()  # ctrl_lock: serializes ioctls

    @property
    def dev_name(self) -> str:
        return f"rpmsg_ctrl{self.minor}"

    def ioctl(self, cmd: int, data: bytes) -> int:
        if cmd not in (RPMSG_CREATE_EPT_IOCTL, RPMSG_CREATE_DEV_IOCTL, RPMSG_RELEASE_DEV_IOCTL):
            raise RprocError(errno.EINVAL, "unsupported ioctl")
        name, src, dst = _unpack_endpoint_info(data)
        with self._lock:
            if cmd == RPMSG_CREATE_EPT_IOCTL:
                self.abi.create_eptdev(self.bus, name, src, dst, parent=self)
            elif cmd == RPMSG_CREATE_DEV_IOCTL:
                try:
                    self.bus.create_channel(name, src, dst)
                except RprocError as exc:
                    log.error("%s: create channel failed: %s", self.dev_name, exc)
                    raise RprocError(errno.ENXIO, "failed to create channel") from exc
            else:
                try:
                    self.bus.release_channel(name, src, dst)
                except RprocError as exc:
                    raise RprocError(errno.EINVAL, "no such channel") from exc
        return 0


class CtrlHandle(Handle):
    nonseekable = True

    def __init__(self, dev: CtrlDev) -> None:
        self.dev = dev

    def ioctl(self, cmd: int, arg: int, data: bytes, req: Request) -> tuple[int, bytes]:
        return self.dev.ioctl(cmd, data), b""


class _Listener(RpmsgListener):
    def __init__(self, abi: RpmsgAbi) -> None:
        self.abi = abi

    def on_bus_removed(self, bus: RpmsgBus) -> None:
        self.abi._bus_gone(bus)


# Instances that serve buses; the drivers dispatch to the first that accepts a channel's bus.
_instances: list[RpmsgAbi] = []
_instances_lock = threading.Lock()


def _owner(channel: Channel) -> RpmsgAbi:
    with _instances_lock:
        for abi in _instances:
            if abi.accepts(channel.bus):
                return abi
    raise RprocError(errno.ENODEV, "no ABI serves this rpmsg bus")


def _ctrl_probe(channel: Channel) -> object:
    return _owner(channel).add_ctrl(channel)


def _ctrl_remove(channel: Channel) -> None:
    dev = channel.driver_data
    if isinstance(dev, CtrlDev):
        dev.abi.remove_ctrl(dev)


def _chrdev_probe(channel: Channel) -> object:
    abi = _owner(channel)
    assert channel.ept is not None
    dev = abi.create_eptdev(channel.bus, channel.name, channel.src, channel.dst,
                            default_ept=channel.ept, channel=channel)
    channel.ept.priv = dev
    return dev


def _chrdev_remove(channel: Channel) -> None:
    dev = channel.driver_data
    if isinstance(dev, EptDev):
        dev.destroy()


def _chrdev_cb(ept: Endpoint, data: bytes, src: int) -> object:
    dev = ept.priv
    if isinstance(dev, EptDev):
        dev.deliver(data)
    return None


CTRL_DRIVER = RpmsgDriver("rpmsg_ctrl", probe=_ctrl_probe, remove=_ctrl_remove)
CHRDEV_DRIVER = RpmsgDriver("rpmsg_chrdev", id_table=CHRDEV_NAMES, probe=_chrdev_probe,
                            remove=_chrdev_remove, callback=_chrdev_cb)
_DRIVERS = (CTRL_DRIVER, CHRDEV_DRIVER)


class RpmsgAbi(Closeable):
    """The rpmsg character devices of the buses ``accepts(bus)`` selects; ``close()`` ends it."""

    def __init__(self, accepts: Callable[[RpmsgBus], bool] = lambda bus: True) -> None:
        self.accepts = accepts
        self._lock = threading.Lock()
        self.ctrls: dict[int, CtrlDev] = {}
        self.eptdevs: dict[int, EptDev] = {}
        self._listener = _Listener(self)
        self._unsubscribe = registry.subscribe(self._listener)
        self._closed = False
        with _instances_lock:
            first = not _instances
            _instances.append(self)
        if first:
            for drv in _DRIVERS:
                registry.register_driver(drv)

    # -- devices
    def add_ctrl(self, channel: Channel) -> CtrlDev:
        with self._lock:
            minor = _lowest_free(set(self.ctrls))
            dev = CtrlDev(self, minor, channel.bus, channel)
            self.ctrls[minor] = dev
        return dev

    def remove_ctrl(self, dev: CtrlDev) -> None:
        with self._lock:
            if self.ctrls.get(dev.minor) is dev:
                del self.ctrls[dev.minor]
            children = [e for e in self.eptdevs.values() if e.parent is dev]
        for child in children:
            child.destroy()

    def create_eptdev(self, bus: RpmsgBus, name: str, src: int, dst: int, *,
                      default_ept: Endpoint | None = None, parent: CtrlDev | None = None,
                      channel: Channel | None = None) -> EptDev:
        with self._lock:
            minor = _lowest_free(set(self.eptdevs))
            dev = EptDev(self, minor, bus, name, src, dst, default_ept=default_ept,
                         parent=parent, channel=channel)
            self.eptdevs[minor] = dev
        return dev

    def _forget_eptdev(self, dev: EptDev) -> None:
        with self._lock:
            if self.eptdevs.get(dev.minor) is dev:
                del self.eptdevs[dev.minor]

    def _bus_gone(self, bus: RpmsgBus) -> None:
        with self._lock:
            ctrls = [c for c in self.ctrls.values() if c.bus is bus]
            epts = [e for e in self.eptdevs.values() if e.bus is bus]
        for ctrl in ctrls:
            self.remove_ctrl(ctrl)
        for ept in epts:
            ept.destroy()

    def buses(self) -> list[RpmsgBus]:
        return [b for b in registry.buses() if self.accepts(b)]

    # -- tree
    def dev_entries(self) -> dict[str, Node]:
        """``/dev`` entries: rpmsg_ctrlN and rpmsgN."""
        with self._lock:
            ctrls = list(self.ctrls.values())
            epts = list(self.eptdevs.values())
        out: dict[str, Node] = {}
        for c in ctrls:
            out[c.dev_name] = File(0o600, _ctrl_opener(c), size=0)
        for e in epts:
            out[e.dev_name] = File(0o600, _ept_opener(e), size=0)
        return out

    def devices(self) -> tuple[list[CtrlDev], list[EptDev]]:
        """The ctrl and endpoint devices now (for the device model, ``devices.py``)."""
        with self._lock:
            return list(self.ctrls.values()), list(self.eptdevs.values())

    # -- lifetime
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        with _instances_lock:
            if self in _instances:
                _instances.remove(self)
            last = not _instances
        if last:
            for drv in _DRIVERS:
                registry.unregister_driver(drv)
        with self._lock:
            epts = list(self.eptdevs.values())
            self.ctrls.clear()
        for e in epts:
            e.destroy()



def _ctrl_opener(dev: CtrlDev) -> Callable[[int], Handle]:
    return lambda flags: CtrlHandle(dev)


def _ept_opener(dev: EptDev) -> Callable[[int], Handle]:
    return lambda flags: EptHandle(dev)

