"""rpmsg endpoints and channels as applications see them (the kernel's ``rpmsg_endpoint`` and
``rpmsg_device``), independent of the transport that carries their messages.

Rules:
- An ``Endpoint`` has an address on one bus. With a callback, each message is handed to the
  callback on the transport's receive thread (as the kernel's ``ept->cb``); without one, messages
  are queued for ``recv``/``recvfrom`` (blocking, with a timeout) and ``arecv``/``arecvfrom``
  (asyncio, from any event loop). Per endpoint, messages arrive in the order the remote sent them.
- ``send``/``sendto`` block up to the bus's TX timeout (15 s by default) for a transmit buffer
  and then fail with ERESTARTSYS, as the kernel does; ``trysend``/``trysendto`` fail at once with
  ENOMEM. Payloads above the MTU (496) fail with EMSGSIZE, an ANY address with EINVAL.
- When an endpoint is destroyed or its bus goes away (stop, crash, detach of the remote),
  blocked receivers and senders wake with EPIPE (rpmsg_char's error for a vanished endpoint),
  and every later call fails the same way. Queued messages can still be read first.
- A callback never runs after ``destroy()`` returns (``cb_lock``, the kernel's ``ept->cb_lock``).
- Lock order: ``cb_lock`` → ``_cond``; callbacks run holding ``cb_lock`` only, never ``_cond``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from remoteproc.errors import RprocError
from remoteproc.rpmsg.wire import RPMSG_ADDR_ANY, RPMSG_MTU

if TYPE_CHECKING:
    from remoteproc.rpmsg.core import RpmsgDriver

__all__ = ["Channel", "Endpoint", "EndpointTransport", "RxCallback", "addr_str"]

# (endpoint, payload, source address). The return value is ignored, as the kernel ignores it.
RxCallback = Callable[["Endpoint", bytes, int], object]


def addr_str(addr: int) -> str:
    """An address as the kernel prints it with ``%d``: ANY shows as -1."""
    return str(addr - (1 << 32) if addr & 0x80000000 else addr)


class EndpointTransport(Protocol):
    """What an endpoint needs from its bus (``struct rpmsg_endpoint_ops``)."""

    name: str
    tx_timeout: float

    def send_offchannel(
        self,
        src: int,
        dst: int,
        data: bytes | bytearray | memoryview,
        *,
        wait: bool,
        timeout: float | None,
    ) -> None: ...

    def destroy_ept(self, ept: Endpoint) -> None: ...

    def tx_ready(self) -> bool: ...


class Endpoint:
    """One local rpmsg address on a bus. Create with ``bus.create_ept(...)``."""

    def __init__(
        self,
        bus: EndpointTransport,
        addr: int,
        name: str = "",
        callback: RxCallback | None = None,
        dst: int = RPMSG_ADDR_ANY,
        channel: Channel | None = None,
        priv: object = None,
    ) -> None:
        self.bus = bus
        self.addr = addr
        self.name = name
        self.callback = callback
        self.dst = dst
        self.channel = channel
        self.priv = priv
        self.cb_lock = threading.RLock()  # re-entrant: a callback may destroy its endpoint
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[bytes, int]] = deque()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._gone: RprocError | None = None
        self.received = 0

    # -- sending -----------------------------------------------------------------------------
    @property
    def mtu(self) -> int:
        return RPMSG_MTU

    def _check_alive(self) -> None:
        gone = self._gone
        if gone is not None:
            raise RprocError(gone.errno, gone.message)

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """``rpmsg_send``: to the endpoint's default destination, waiting for a TX buffer."""
        self._check_alive()
        self.bus.send_offchannel(self.addr, self.dst, data, wait=True, timeout=timeout)

    def sendto(
        self, data: bytes | bytearray | memoryview, dst: int, timeout: float | None = None
    ) -> None:
        """``rpmsg_sendto``: to ``dst``, waiting for a TX buffer."""
        self._check_alive()
        self.bus.send_offchannel(self.addr, dst, data, wait=True, timeout=timeout)

    def trysend(self, data: bytes | bytearray | memoryview) -> None:
        """``rpmsg_trysend``: ENOMEM at once when no TX buffer is free."""
        self._check_alive()
        self.bus.send_offchannel(self.addr, self.dst, data, wait=False, timeout=None)

    def trysendto(self, data: bytes | bytearray | memoryview, dst: int) -> None:
        self._check_alive()
        self.bus.send_offchannel(self.addr, dst, data, wait=False, timeout=None)

    def send_many(
        self,
        msgs: Sequence[bytes | bytearray | memoryview],
        dst: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Send ``msgs`` in order to ``dst`` (default: the endpoint's destination) as bursts:
        one kick decision per burst instead of one per message. Waits for TX buffers like
        ``send``; returns the number sent (all of them unless an error is raised)."""
        self._check_alive()
        target = self.dst if dst is None else dst
        many = getattr(self.bus, "send_many_offchannel", None)
        if many is None:  # a transport without bursts: one at a time
            for data in msgs:
                self.bus.send_offchannel(self.addr, target, data, wait=True, timeout=timeout)
            return len(msgs)
        sent: int = many(self.addr, target, msgs, wait=True, timeout=timeout)
        return sent

    def trysend_many(
        self, msgs: Sequence[bytes | bytearray | memoryview], dst: int | None = None
    ) -> int:
        """As many of ``msgs`` as there are free TX buffers now, in order; how many were
        sent (ENOMEM if none could be)."""
        self._check_alive()
        target = self.dst if dst is None else dst
        many = getattr(self.bus, "send_many_offchannel", None)
        if many is None:
            for i, data in enumerate(msgs):
                try:
                    self.bus.send_offchannel(self.addr, target, data, wait=False, timeout=None)
                except RprocError as err:
                    if err.errno == errno.ENOMEM and i:
                        return i
                    raise
            return len(msgs)
        sent: int = many(self.addr, target, msgs, wait=False, timeout=None)
        return sent

    def poll_out(self) -> bool:
        """EPOLLOUT: a send would not block now."""
        return self._gone is None and self.bus.tx_ready()

    # -- receiving ---------------------------------------------------------------------------
    def deliver(self, data: bytes, src: int) -> None:
        """Called by the transport for each message addressed here (receive thread)."""
        with self.cb_lock:
            cb = self.callback
            if cb is not None:
                self.received += 1
                cb(self, data, src)
                return
        with self._cond:
            if self._gone is not None:
                return
            self.received += 1
            self._queue.append((data, src))
            self._cond.notify()
            waiters = self._async_waiters
            self._async_waiters = []
        for loop, fut in waiters:
            _wake(loop, fut)

    def deliver_many(self, msgs: list[tuple[bytes, int]]) -> None:
        """``deliver`` for several messages in order: one lock and one wake-up for all."""
        with self.cb_lock:
            cb = self.callback
            if cb is not None:
                for data, src in msgs:
                    self.received += 1
                    cb(self, data, src)
                return
        with self._cond:
            if self._gone is not None:
                return
            self.received += len(msgs)
            self._queue.extend(msgs)
            self._cond.notify_all()
            waiters = self._async_waiters
            self._async_waiters = []
        for loop, fut in waiters:
            _wake(loop, fut)

    def pending(self) -> int:
        """Messages queued and not yet read (EPOLLIN when non-zero)."""
        with self._cond:
            return len(self._queue)

    def recvfrom(self, timeout: float | None = None) -> tuple[bytes, int]:
        """Next message and its source. ``timeout=None`` blocks until one arrives or the
        endpoint goes away (EPIPE); ``0`` never blocks (EAGAIN); otherwise ETIMEDOUT."""
        self._before_wait(timeout)
        with self._cond:
            self._wait_locked(timeout)
            return self._queue.popleft()

    def _before_wait(self, timeout: float | None) -> None:
        if self.callback is not None:
            raise RprocError(errno.EINVAL, "endpoint delivers to a callback")
        if timeout != 0 and not self._queue:
            # Before sleeping, offer the transport this thread to run the remote's pending
            # work (an emulated core our send just kicked): its reply then lands here without
            # two thread hand-offs. No lock held: the reply is delivered to this endpoint.
            poll_rx = getattr(self.bus, "poll_rx", None)
            if poll_rx is not None:
                poll_rx()

    def _wait_locked(self, timeout: float | None) -> None:
        """Under ``_cond``: return once a message is queued, or raise as ``recvfrom`` says."""
        if self._queue:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            if self._gone is not None:
                raise RprocError(self._gone.errno, self._gone.message)
            if deadline is None:
                self._cond.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timeout == 0:
                    raise RprocError(errno.EAGAIN, "no message")
                raise RprocError(errno.ETIMEDOUT, "timeout waiting for a message")
            self._cond.wait(remaining)

    def recv(self, timeout: float | None = None) -> bytes:
        return self.recvfrom(timeout)[0]

    def recv_many(self, max_msgs: int = 256, timeout: float | None = None) -> list[bytes]:
        """Up to ``max_msgs`` queued messages at once, waiting like ``recv`` for the first:
        one lock and at most one wake-up for a whole burst, for callers that stream."""
        # The payloads in one C-level pass (no per-message Python bytecode).
        return list(map(_first, self.recvfrom_many(max_msgs, timeout)))

    def recvfrom_many(
        self, max_msgs: int = 256, timeout: float | None = None
    ) -> list[tuple[bytes, int]]:
        """``recv_many`` with each message's source address."""
        if max_msgs <= 0:
            raise RprocError(errno.EINVAL, f"max_msgs must be positive, not {max_msgs}")
        self._before_wait(timeout)
        with self._cond:
            self._wait_locked(timeout)
            # The whole queue in one C-level copy; what exceeds max_msgs goes back, also in
            # C (a streaming receiver often finds a little more queued than it asks for). A
            # queue far longer than asked for is taken from one by one instead: copying it
            # all back on every call would cost its length each time.
            queue = self._queue
            if len(queue) > 4 * max_msgs:
                popleft = queue.popleft
                return [popleft() for _ in range(max_msgs)]
            out = list(queue)
            queue.clear()
            if len(out) > max_msgs:
                queue.extend(out[max_msgs:])
                del out[max_msgs:]
            return out

    async def arecvfrom(self) -> tuple[bytes, int]:
        """The asyncio form of ``recvfrom``; cancel it to stop waiting."""
        if self.callback is not None:
            raise RprocError(errno.EINVAL, "endpoint delivers to a callback")
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._queue:
                    return self._queue.popleft()
                if self._gone is not None:
                    raise RprocError(self._gone.errno, self._gone.message)
                fut: asyncio.Future[None] = loop.create_future()
                entry = (loop, fut)
                self._async_waiters.append(entry)
            try:
                await fut
            finally:
                with self._cond:
                    if entry in self._async_waiters:
                        self._async_waiters.remove(entry)

    async def arecv(self) -> bytes:
        return (await self.arecvfrom())[0]

    # -- teardown ----------------------------------------------------------------------------
    def destroy(self) -> None:
        """``rpmsg_destroy_ept``: release the address; no callback runs after this returns."""
        self.bus.destroy_ept(self)

    def shutdown(self, code: int, message: str) -> None:
        """Called by the bus: stop callbacks and wake everyone waiting with ``code``."""
        with self.cb_lock:
            self.callback = None
        with self._cond:
            if self._gone is None:
                self._gone = RprocError(code, message)
            self._cond.notify_all()
            waiters = self._async_waiters
            self._async_waiters = []
        for loop, fut in waiters:
            _wake(loop, fut)

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def error(self) -> RprocError | None:
        """Why the endpoint is gone (EPIPE: destroyed or device removed; EIO: the device is
        dead, a ring broken by the remote), or None while alive."""
        return self._gone

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gone is None:
            self.destroy()

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.bus.name}, addr={addr_str(self.addr)}, dst={addr_str(self.dst)}, "
            f"name={self.name!r})"
        )


_first = itemgetter(0)


def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    # A closed loop raises RuntimeError: nobody is waiting there any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set, fut)


class Channel:
    """An rpmsg device on a bus (``struct rpmsg_device``): created by a name-service
    announcement from the remote, by the ctrl device's CREATE_DEV, or by the bus itself
    (``rpmsg_ctrl``, ``rpmsg_ns``). A matching ``RpmsgDriver`` is bound to it; a driver with a
    callback gets a default endpoint (``ept``) whose address becomes the channel's ``src``.
    """

    def __init__(
        self,
        bus: Any,
        name: str,
        src: int,
        dst: int,
        *,
        announce: bool,
        driver_override: str | None = None,
    ) -> None:
        self.bus = bus
        self.name = name
        self.src = src
        self.dst = dst
        self.announce = announce
        self.driver_override = driver_override
        # "%s.%s.%d.%d": fixed at registration, before a default endpoint changes ``src``.
        # dev_set_name: the kobject core turns '/' into '!' (a remote may announce any name).
        self.device_name = f"{bus.name}.{name}.{addr_str(src)}.{addr_str(dst)}".replace("/", "!")
        self.ept: Endpoint | None = None
        self.driver: RpmsgDriver | None = None
        self.driver_data: object = None
        self.registered = True
        # The device lock (the driver core's device_lock): held across a driver's probe and
        # remove, so an unbind never runs between ``driver`` and ``driver_data`` being set and
        # a channel unregistered mid-probe is unbound by the remove that follows, not leaked.
        self.dev_lock = threading.RLock()

    @property
    def modalias(self) -> str:
        return f"rpmsg:{self.name}"

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """``rpmsg_send(rpdev->ept, ...)``: from the default endpoint to the channel's dst."""
        if self.ept is None:
            raise RprocError(errno.EINVAL, "channel has no endpoint")
        self.ept.sendto(data, self.dst, timeout)

    def matches(self, name: str, src: int, dst: int) -> bool:
        """``rpmsg_device_match``: ANY in the query matches any address."""
        if src != RPMSG_ADDR_ANY and src != self.src:
            return False
        if dst != RPMSG_ADDR_ANY and dst != self.dst:
            return False
        return name[:32] == self.name[:32]

    def __repr__(self) -> str:
        drv = self.driver.name if self.driver else None
        return f"Channel({self.device_name}, driver={drv})"
