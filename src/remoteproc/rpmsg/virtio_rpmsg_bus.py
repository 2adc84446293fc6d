"""The host role of rpmsg over virtio (the kernel's ``virtio_rpmsg_bus.c`` and ``rpmsg_ns.c``),
byte-compatible with Linux (spec §9.3 to §9.5).

This module owns ``RpmsgBus`` (the kernel's ``struct virtproc_info``: one per rpmsg virtio
device), its buffers, endpoints and channels, the name service at address 53, and the
``VirtioDriver`` for VIRTIO_ID_RPMSG, registered with ``remoteproc.virtio.bus`` on import.

Rules:
- Probe runs the kernel's order: find_vqs "input"/"output"; ``num_bufs`` = twice the ring size
  up to 512; one ``dma_alloc`` of ``num_bufs * 512`` whose first half receives and second half
  transmits; every RX buffer posted in address order; the ``rpmsg_ctrl`` device; the name-service
  device if VIRTIO_RPMSG_F_NS was negotiated; DRIVER_OK; one kick of the RX ring.
- Remove runs the kernel's order: reset the device, unregister every channel (drivers' remove,
  endpoints destroyed), ``del_vqs``, free the buffers. Blocked senders and receivers wake with
  EPIPE; the bus then leaves the registry, so subscribers see every channel go, then the bus.
- Everything the remote writes (used elements, lengths, headers, announcements) is checked
  before use; a bad value is logged on ``remoteproc.rpmsg`` with the vring and index and
  dropped, the buffer is given back to the ring, and nothing is raised into the thread that
  delivered the interrupt (the vring layer does the same for ring indices).
- Threads: ``send*`` may be called from any thread; interrupts (``rvq``/``svq`` callbacks) come
  from the transport's thread. Kicks are always issued with no bus lock held, so a transport
  that delivers them synchronously cannot deadlock against us (it must still not re-enter the
  same queue's interrupt recursively: queue such deliveries, as ``tests/rpmsg_pair.py`` does).
- Lock order: ``_rx_lock`` (held while endpoint callbacks run, as the kernel's rx path) →
  ``Endpoint.cb_lock`` → ``_lock`` (endpoints and channels) ; ``_tx_cond`` (the kernel's
  ``tx_lock`` + ``sendq``) is taken alone. The registry lock is a leaf.
- Deliberate differences from Linux, all about hostile or broken remotes: a used length below
  the 16-byte header is refused (the kernel's unsigned subtraction would accept it); a refused
  receive buffer is re-posted and the loop goes on (the kernel stops and leaks the buffer); a TX
  buffer whose ``add_outbuf`` fails is kept (the kernel loses it); a busy fixed address raises
  EADDRINUSE (the kernel returns NULL); name-service DESTROY announcements for our own channels
  are not sent while the bus is being removed (the device is already reset); a DESTROY from the
  remote never matches the bus's ``rpmsg_ctrl``/``rpmsg_ns`` devices.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence

from remoteproc.errors import ERESTARTSYS, RprocError
from remoteproc.rpmsg.core import RpmsgDriver, registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint, RxCallback, addr_str
from remoteproc.rpmsg.wire import (
    MAX_RPMSG_BUF_SIZE,
    MAX_RPMSG_NUM_BUFS,
    RPMSG_ADDR_ANY,
    RPMSG_HDR_SIZE,
    RPMSG_NS_ADDR,
    RPMSG_NS_CREATE,
    RPMSG_NS_DESTROY,
    RPMSG_RESERVED_ADDRESSES,
    VIRTIO_RPMSG_F_NS,
    decode_ns_msg,
    encode_ns_msg,
    hdr_struct,
)
from remoteproc.virtio.bus import (
    VIRTIO_CONFIG_S_ACKNOWLEDGE,
    VIRTIO_CONFIG_S_DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_ID_RPMSG,
    VIRTIO_RING_F_EVENT_IDX,
    VirtioDevice,
    register_driver,
)
from remoteproc.virtio.vring import DriverQueue

__all__ = [
    "DEFAULT_TX_TIMEOUT",
    "RPMSG_CTRL_DRIVER",
    "RPMSG_NS_DRIVER",
    "RpmsgBus",
    "VirtioRpmsgDriver",
    "virtio_rpmsg_driver",
]

log = logging.getLogger("remoteproc.rpmsg")

DEFAULT_TX_TIMEOUT = 15.0  # seconds: the kernel's msecs_to_jiffies(15000)
RX_VRING = 0  # "input": the host receives on vring 0
TX_VRING = 1  # "output"

RPMSG_CTRL_DRIVER = "rpmsg_ctrl"
RPMSG_NS_DRIVER = "rpmsg_ns"


class RpmsgBus:
    """One rpmsg virtio device seen from the host: endpoints, channels, buffers, rings.

    Created by ``VirtioRpmsgDriver.probe``; applications find it in ``registry``.
    """

    def __init__(self, vdev: VirtioDevice, features: int) -> None:
        self.vdev = vdev
        self.name: str = vdev.name
        self.byteorder: str = vdev.byteorder
        self.rproc: object = vdev.rproc
        self.features = features
        self.ns_enabled = bool(features & (1 << VIRTIO_RPMSG_F_NS))
        self.buf_size = MAX_RPMSG_BUF_SIZE
        self.tx_timeout = DEFAULT_TX_TIMEOUT
        self._hdr = hdr_struct(self.byteorder)
        self._lock = threading.Lock()
        # Serializes binds and unbinds asked for through sysfs (never taken by the bus's own
        # automatic binds, which run on the receive thread).
        self._request_lock = threading.Lock()
        self._rx_lock = threading.RLock()
        self._tx_cond = threading.Condition(threading.Lock())
        self._tx_waiters = 0
        # The fewest TX buffers a waiting sender asked for: ``_xmit_done`` wakes the waiters
        # once that many are back (a ``send`` asks for 1, a ``send_many`` burst for more).
        self._tx_want = 1
        self._tx_ready_cbs: list[Callable[[], None]] = []
        self._endpoints: dict[int, Endpoint] = {}
        self._channels: list[Channel] = []
        self._removed = False
        self._removing = False
        self.rvq: DriverQueue
        self.svq: DriverQueue
        self.num_bufs = 0
        self._bufs_pa = 0
        self._rbufs = memoryview(b"")
        self._sbufs = memoryview(b"")
        self._sbufs_pa = 0
        self._last_sbuf = 0
        self._tx_spare: list[int] = []  # TX buffers taken back outside get_buf
        self.rx_index: int | None = None  # the RX buffer being dispatched (for error locations)
        self.ctrl: Channel | None = None
        self.ns_channel: Channel | None = None
        # Set once a ring is broken by the remote: the device is dead until it is removed
        # (restart, re-attach). Sends fail with it, receivers are woken with it.
        self.dead: RprocError | None = None
        self._dead_told = False
        # statistics
        self.rx_messages = 0
        self.tx_messages = 0
        self.rx_errors = 0

    # -- probe / remove ----------------------------------------------------------------------
    def _probe(self) -> None:
        vdev = self.vdev
        vqs = vdev.find_vqs(["input", "output"], [self._recv_done, self._xmit_done])
        rvq, svq = vqs[0], vqs[1]
        if rvq is None or svq is None:  # only an unnamed queue comes back as None
            raise RprocError(errno.ENOENT, f"{self.name}: no virtqueue for rpmsg")
        self.rvq, self.svq = rvq, svq
        event_idx = bool(self.features & (1 << VIRTIO_RING_F_EVENT_IDX))
        for vq in (self.rvq, self.svq):
            vq.use_event_idx = event_idx
            vq.on_broken = self._chain_broken(vq, vq.on_broken)
        if self.rvq.num != self.svq.num:
            log.warning(
                "%s: rx and tx vrings differ in size (%d, %d)",
                self.name,
                self.rvq.num,
                self.svq.num,
            )
        # "these numbers are purely a decision of this driver"
        if self.rvq.num < MAX_RPMSG_NUM_BUFS // 2:
            self.num_bufs = self.rvq.num * 2
        else:
            self.num_bufs = MAX_RPMSG_NUM_BUFS
        total = self.num_bufs * self.buf_size
        try:
            view, pa = vdev.dma_alloc(total)
        except RprocError:
            vdev.del_vqs()
            raise
        if len(view) < total:
            vdev.del_vqs()
            raise RprocError(errno.ENOMEM, f"dma_alloc returned {len(view)} < {total} bytes")
        half = total // 2
        self._bufs_pa = pa
        self._rbufs = view[:half]
        self._sbufs = view[half:total]
        self._sbufs_pa = pa + half
        log.debug("%s: buffers: va %#x, dma %#x", self.name, 0, pa)
        try:
            for i in range(self.num_bufs // 2):
                self.rvq.add_inbuf(pa + i * self.buf_size, self.buf_size, i)
        except RprocError as err:
            log.error("%s: failed to add a virtqueue buffer: %s", self.name, err)
            vdev.del_vqs()
            vdev.dma_free(pa)
            raise
        # Since the 2025 EPOLLOUT change, TX-complete callbacks stay enabled.
        registry.add_bus(self)
        self.ctrl = self._register_channel(
            "rpmsg_ctrl", 0, 0, announce=False, driver_override=RPMSG_CTRL_DRIVER
        )
        if self.ns_enabled:
            self.ns_channel = self._register_channel(
                "rpmsg_ns",
                RPMSG_NS_ADDR,
                RPMSG_NS_ADDR,
                announce=False,
                driver_override=RPMSG_NS_DRIVER,
            )
        notify = self.rvq.kick_prepare()
        vdev.set_status(vdev.get_status() | VIRTIO_CONFIG_S_DRIVER_OK)
        if notify:
            self.rvq.notify()
        log.info("%s: rpmsg host is online", self.name)

    def _chain_broken(
        self, vq: DriverQueue, transport: Callable[[RprocError], None] | None
    ) -> Callable[[RprocError], None]:
        def broken(err: RprocError) -> None:
            if transport is not None:  # the transport's report first (the processor's event)
                transport(err)
            self._ring_broken(vq, err)

        return broken

    def _ring_broken(self, vq: DriverQueue, err: RprocError) -> None:
        """Under whichever lock found it (``_rx_lock`` or ``_tx_cond``): only record it; the
        endpoints are told outside the locks by ``_tell_dead``."""
        if self.dead is None:
            self.dead = RprocError(
                errno.EIO,
                f"rpmsg device {self.name} is dead: vring {vq.index} was broken by the remote "
                f"({err.message}); restart or re-attach the processor",
            )

    def _tell_dead(self) -> None:
        """Wake every endpoint of a dead device with its error (no lock held)."""
        dead = self.dead
        if dead is None or self._dead_told:
            return
        self._dead_told = True
        log.error("%s: %s", self.name, dead.message)
        for ept in self.endpoints():
            ept.shutdown(dead.errno, dead.message)
        with self._tx_cond:
            self._tx_cond.notify_all()

    def remove(self) -> None:
        """``rpmsg_remove``: reset, unregister channels, wake everyone, free rings and buffers."""
        with self._lock:
            if self._removing:
                return
            self._removing = True
        # Wake blocked senders first: one may be an endpoint callback holding _rx_lock, which
        # we wait for below.
        with self._tx_cond:
            self._tx_cond.notify_all()
            cbs, self._tx_ready_cbs = self._tx_ready_cbs, []
        for cb in cbs:
            cb()
        self.vdev.reset()
        for ch in reversed(self.channels()):
            self._unregister_channel(ch)
        # Taking _rx_lock waits for a receive pass in progress.
        with self._rx_lock, self._lock:
            self._removed = True
            epts = list(self._endpoints.values())
            self._endpoints.clear()
        for ept in epts:
            ept.shutdown(errno.EPIPE, "rpmsg device removed")
        with self._tx_cond:
            self._tx_cond.notify_all()
        self.vdev.del_vqs()
        self.vdev.dma_free(self._bufs_pa)
        registry.remove_bus(self)
        log.info("%s: rpmsg host is offline", self.name)

    @property
    def removed(self) -> bool:
        return self._removing

    # -- endpoints ---------------------------------------------------------------------------
    @property
    def mtu(self) -> int:
        return self.buf_size - RPMSG_HDR_SIZE

    def create_ept(
        self,
        callback: RxCallback | None,
        name: str = "",
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        channel: Channel | None = None,
        priv: object = None,
    ) -> Endpoint:
        """``rpmsg_create_ept``: at ``src``, or the lowest free address from 1024 when ANY."""
        with self._lock:
            if self._removing:
                raise RprocError(errno.ENODEV, "rpmsg device removed")
            if src == RPMSG_ADDR_ANY:
                addr = RPMSG_RESERVED_ADDRESSES
                while addr in self._endpoints:
                    addr += 1
            else:
                if not 0 <= src < RPMSG_ADDR_ANY:
                    raise RprocError(errno.EINVAL, f"invalid addr {src}")
                if src in self._endpoints:
                    raise RprocError(errno.EADDRINUSE, f"address {addr_str(src)} already in use")
                addr = src
            ept = Endpoint(self, addr, name, callback, dst, channel, priv)
            self._endpoints[addr] = ept
        return ept

    def destroy_ept(self, ept: Endpoint) -> None:
        """``rpmsg_destroy_ept``."""
        with self._lock:
            if self._endpoints.get(ept.addr) is ept:
                del self._endpoints[ept.addr]
        ept.shutdown(errno.EPIPE, "endpoint destroyed")

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.values())

    def get_ept(self, addr: int) -> Endpoint | None:
        with self._lock:
            return self._endpoints.get(addr)

    def set_flow_control(self, ept: Endpoint, pause: bool, dst: int) -> None:
        raise RprocError(errno.EOPNOTSUPP, "flow control not supported by virtio rpmsg")

    # -- transmit ----------------------------------------------------------------------------
    def _get_a_tx_buf(self) -> int | None:
        """Under ``_tx_cond``: a fresh buffer first, then one the remote gave back."""
        if self._last_sbuf < self.num_bufs // 2:
            idx = self._last_sbuf
            self._last_sbuf += 1
            return idx
        spare = self._tx_spare
        if spare:
            return spare.pop()
        # Take back everything the remote returned at once: one pass over the used ring per
        # burst instead of one call per message.
        spare.extend(int(tok) for tok, _len in self.svq.get_bufs())
        if self.svq.dropped:  # returned with a lying length: still ours to reuse
            spare.extend(self.svq.dropped)
            self.svq.dropped.clear()
        if spare:
            # Reversed, so pop() hands them out in the order the remote returned them.
            spare.reverse()
            return spare.pop()
        return None

    def tx_ready(self) -> bool:
        """``virtio_rpmsg_poll``'s EPOLLOUT: a TX buffer can be had without waiting."""
        with self._tx_cond:
            if self._removing:
                return False
            return (
                self._last_sbuf < self.num_bufs // 2
                or bool(self._tx_spare)
                or not self.svq.enable_cb()
            )

    def send_offchannel(
        self,
        src: int,
        dst: int,
        data: bytes | bytearray | memoryview,
        *,
        wait: bool,
        timeout: float | None,
    ) -> None:
        """``rpmsg_send_offchannel_raw``: the one transmit path behind every send call."""
        if src == RPMSG_ADDR_ANY or dst == RPMSG_ADDR_ANY:
            raise RprocError(errno.EINVAL, f"invalid addr (src 0x{src:x}, dst 0x{dst:x})")
        length = len(data)
        if length > self.buf_size - RPMSG_HDR_SIZE:
            raise RprocError(errno.EMSGSIZE, f"message is too big ({length})")
        try:
            notify = self._send_locked(src, dst, data, wait=wait, timeout=timeout)
        finally:
            if self.dead is not None and not self._dead_told:
                self._tell_dead()
        if notify:
            self.svq.notify()

    def _send_locked(
        self,
        src: int,
        dst: int,
        data: bytes | bytearray | memoryview,
        *,
        wait: bool,
        timeout: float | None,
    ) -> bool:
        length = len(data)
        with self._tx_cond:
            if self._removing:
                raise RprocError(errno.EPIPE, "rpmsg device removed")
            if self.dead is not None:
                raise RprocError(self.dead.errno, self.dead.message)
            idx = self._get_a_tx_buf()
            if self.dead is not None:  # the TX ring broke just now, in get_buf
                raise RprocError(self.dead.errno, self.dead.message)
            if idx is None:
                if not wait:
                    raise RprocError(errno.ENOMEM, "no free tx buffer")
                idx = self._wait_tx_buf(self.tx_timeout if timeout is None else timeout)
            off = idx * self.buf_size
            sbufs = self._sbufs
            self._hdr.pack_into(sbufs, off, src, dst, 0, length, 0)
            sbufs[off + RPMSG_HDR_SIZE : off + RPMSG_HDR_SIZE + length] = data
            try:
                self.svq.add_outbuf(self._sbufs_pa + off, RPMSG_HDR_SIZE + length, idx)
            except RprocError as err:
                log.error("%s: virtqueue_add_outbuf failed: %s", self.name, err)
                self._tx_spare.append(idx)
                raise
            self.tx_messages += 1
            return self.svq.kick_prepare()

    def send_many_offchannel(
        self,
        src: int,
        dst: int,
        msgs: Sequence[bytes | bytearray | memoryview],
        *,
        wait: bool,
        timeout: float | None,
    ) -> int:
        """Send ``msgs`` in order, as one burst: one lock hold and one kick decision for as
        many as there are free TX buffers (``virtqueue_kick`` once per batch, as the kernel's
        network drivers do with ``xmit_more``). When buffers run out, the held kick goes out
        first, so the remote can drain the ring while we wait. Returns how many were sent;
        without ``wait`` it stops at the first missing buffer (ENOMEM only if none was sent).
        Errors in a message (EMSGSIZE) are raised before anything is sent."""
        if src == RPMSG_ADDR_ANY or dst == RPMSG_ADDR_ANY:
            raise RprocError(errno.EINVAL, f"invalid addr (src 0x{src:x}, dst 0x{dst:x})")
        mtu = self.buf_size - RPMSG_HDR_SIZE
        for data in msgs:
            if len(data) > mtu:
                raise RprocError(errno.EMSGSIZE, f"message is too big ({len(data)})")
        total = len(msgs)
        sent = 0
        deadline = None
        pack = self._hdr.pack_into
        svq = self.svq
        bsize = self.buf_size
        while sent < total:
            notify = False
            with self._tx_cond:
                if self._removing:
                    raise RprocError(errno.EPIPE, "rpmsg device removed")
                sbufs = self._sbufs
                base = self._sbufs_pa
                while sent < total:
                    idx = self._get_a_tx_buf()
                    if idx is None:
                        break
                    data = msgs[sent]
                    length = len(data)
                    off = idx * bsize
                    pack(sbufs, off, src, dst, 0, length, 0)
                    sbufs[off + RPMSG_HDR_SIZE : off + RPMSG_HDR_SIZE + length] = data
                    try:
                        svq.add_outbuf(base + off, RPMSG_HDR_SIZE + length, idx)
                    except RprocError as err:
                        log.error("%s: virtqueue_add_outbuf failed: %s", self.name, err)
                        self._tx_spare.append(idx)
                        raise
                    sent += 1
                self.tx_messages += sent
                notify = svq.kick_prepare()
            if notify:
                svq.notify()
            if sent == total:
                break
            if not wait:
                if sent == 0:
                    raise RprocError(errno.ENOMEM, "no free tx buffer")
                break
            if deadline is None:
                deadline = time.monotonic() + (self.tx_timeout if timeout is None else timeout)
            with self._tx_cond:
                if self._removing:
                    raise RprocError(errno.EPIPE, "rpmsg device removed")
                # Wake for a batch of returns, not each one: the burst needs them all.
                want = min(total - sent, max(1, self.num_bufs // 8))
                idx = self._wait_tx_buf(deadline - time.monotonic(), want)
                # Put it back for the filling loop above to take first.
                self._tx_spare.append(idx)
        return sent

    def poll_rx(self) -> None:
        """A receiver is about to block: let the platform run the remote now, on this thread
        (``Rproc.poll``); whatever the remote sends back is then received here too."""
        rproc = self.rproc
        if rproc is not None and not self._removing:
            poll = getattr(rproc, "poll", None)
            if poll is not None:
                poll()

    def _wait_tx_buf(self, timeout: float, want: int = 1) -> int:
        """Under ``_tx_cond``: wait for a TX buffer, as ``wait_event`` does in the kernel:
        count in as a waiter, then look at the ring, then sleep. ``_xmit_done`` reads the
        waiter count without the lock, so a look made before counting in may have missed
        buffers whose interrupt woke nobody; looking again after counting in finds them.
        (Sleeping first lost such a return until the timeout: the 15 s stall of the
        emulated 1,000,000-message flood.) ``want``: wake when that many buffers are back
        (or all in flight are), for a burst that needs them anyway."""
        deadline = time.monotonic() + timeout
        # Counted in with its want before the look below: _xmit_done reads both.
        self._tx_want = want if not self._tx_waiters else min(want, self._tx_want)
        self._tx_waiters += 1
        try:
            while True:
                if self._removing:
                    raise RprocError(errno.EPIPE, "rpmsg device removed")
                if self.dead is not None:
                    raise RprocError(self.dead.errno, self.dead.message)
                idx = self._get_a_tx_buf()
                if idx is not None:
                    return idx
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.error("%s: timeout waiting for a tx buffer", self.name)
                    raise RprocError(ERESTARTSYS, "timeout waiting for a tx buffer")
                self._tx_cond.wait(remaining)
        finally:
            self._tx_waiters -= 1

    def on_tx_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, from the transport's thread, at the remote's next TX-done
        interrupt (or at removal): what ``virtio_rpmsg_poll``'s wait on ``sendq`` gives a
        poller. Register first, then check ``tx_ready()``, so no return is missed."""
        with self._tx_cond:
            if not self._removing:
                self._tx_ready_cbs.append(callback)
                return
        callback()

    def _tx_enough(self, svq: DriverQueue) -> bool:
        """Under ``_tx_cond``, a sender waiting: are enough TX buffers back to wake it? Enough
        is what the waiters asked for (``_tx_want``), or every buffer in flight. Otherwise the
        interrupt is re-armed for when that many are back (with event indices the remote then
        stays quiet until it is; without, each return interrupts and is counted again here),
        so one wake-up serves a batch of returns instead of one per pass."""
        target = min(self._tx_want, svq.in_flight)
        if svq.num_used() + len(self._tx_spare) >= target:
            return True
        # Re-checked after re-arming: returns made before our new event was seen may have
        # interrupted nobody.
        return not svq.enable_cb_delayed(target - len(self._tx_spare))

    def _xmit_done(self, svq: DriverQueue) -> None:
        """``rpmsg_xmit_done``: the remote gave TX buffers back; wake blocked senders."""
        # Unlocked reads: a sender counts itself in (a poller registers) before it last looks
        # at the ring, so either we see it here or it sees the buffer the remote just returned.
        if self._tx_waiters or self._tx_ready_cbs:
            with self._tx_cond:
                if self._tx_waiters and self._tx_enough(svq):
                    self._tx_cond.notify_all()
                cbs, self._tx_ready_cbs = self._tx_ready_cbs, []
            for cb in cbs:
                try:
                    cb()
                except Exception:
                    log.exception("%s: tx-ready callback failed", self.name)

    # -- receive -----------------------------------------------------------------------------
    def _recv_done(self, rvq: DriverQueue) -> None:
        """``rpmsg_recv_done``: dispatch every used RX buffer, re-post them, kick once."""
        try:
            notify = self._recv_pass(rvq)
        finally:
            if self.dead is not None and not self._dead_told:
                self._tell_dead()
        if notify:
            rvq.notify()

    def _recv_pass(self, rvq: DriverQueue) -> bool:
        """Drain the ring with the remote's interrupts suppressed (NO_INTERRUPT, or the used
        event left behind), then re-enable them and check the ring once more: a buffer the
        remote used between our last look and the re-enable would otherwise wait for an
        interrupt it was told not to send (``virtqueue_enable_cb``'s race). Messages for one
        endpoint in a row are handed over as one batch (one lock, one wake-up). Returns whether
        the remote asked to be kicked."""
        notify = False
        with self._rx_lock:
            if self._removed:
                return False
            # Buffers go back to the ring after each drain (the kernel re-posts each one at
            # once): a remote that returns one buffer twice in a drain is then caught by the
            # ring as "not a head" instead of finding the buffer freshly posted again.
            handled = 0
            while True:
                rvq.disable_cb()
                done: list[int] = []
                batch: list[tuple[bytes, int]] = []
                batch_ept: Endpoint | None = None
                for idx, used_len in rvq.get_bufs():
                    done.append(idx)
                    msg = self._recv_single(idx, used_len)
                    if msg is None:
                        continue
                    ept, data, src = msg
                    if ept is not batch_ept and batch:
                        self._deliver(batch_ept, batch)
                        batch = []
                    if ept.callback is not None:
                        # Callbacks run one message at a time anyway; this keeps the buffer's
                        # index known to them for error reports (the name service's).
                        self.rx_index = idx
                        self._deliver(ept, [(data, src)])
                        self.rx_index = None
                        continue
                    batch_ept = ept
                    batch.append((data, src))
                if batch:
                    self._deliver(batch_ept, batch)
                if rvq.dropped:
                    done.extend(rvq.dropped)
                    rvq.dropped.clear()
                self._repost(rvq, done)
                handled += len(done)
                if handled >= rvq.num:
                    # Decide now, while the 16-bit event window still covers every buffer
                    # re-posted since the last decision.
                    notify |= rvq.kick_prepare()
                    handled = 1
                if rvq.enable_cb() or self._removed:
                    break
            if not handled:
                if not rvq.broken:
                    log.warning("%s: uhm, incoming signal, but no used buffer ?", self.name)
                return False
            notify |= rvq.kick_prepare()
        return notify

    def _deliver(self, ept: Endpoint | None, batch: list[tuple[bytes, int]]) -> None:
        assert ept is not None
        try:
            if len(batch) == 1:
                ept.deliver(*batch[0])
            else:
                ept.deliver_many(batch)
        except Exception:
            log.exception("%s: endpoint 0x%x callback failed", self.name, ept.addr)

    def _repost(self, rvq: DriverQueue, done: list[int]) -> None:
        pa, size = self._bufs_pa, self.buf_size
        try:
            rvq.add_inbufs([(pa + idx * size, size, idx) for idx in done])
        except RprocError as err:
            log.error("%s: failed to add a virtqueue buffer: %s", self.name, err)

    def _rx_error(self, code: int, message: str, idx: int) -> None:
        self.rx_errors += 1
        err = RprocError(code, message, vring=RX_VRING, index=idx, what="rx buffer")
        log.error("%s: %s", self.name, err)
        self.rvq.refused(err)  # the processor publishes it (a vring_refused event)

    def _recv_single(self, idx: int, used_len: int) -> tuple[Endpoint, bytes, int] | None:
        """Check one used RX buffer; its endpoint, payload and source, or None if dropped."""
        off = idx * self.buf_size
        rbufs = self._rbufs
        if used_len < RPMSG_HDR_SIZE:
            self._rx_error(errno.EINVAL, f"inbound msg too short ({used_len})", idx)
            return None
        src, dst, _reserved, length, _flags = self._hdr.unpack_from(rbufs, off)
        if used_len > self.buf_size or length > used_len - RPMSG_HDR_SIZE:
            self._rx_error(
                errno.EINVAL, f"inbound msg too big: (used {used_len}, hdr len {length})", idx
            )
            return None
        data = bytes(rbufs[off + RPMSG_HDR_SIZE : off + RPMSG_HDR_SIZE + length])
        self.rx_messages += 1
        ept = self._endpoints.get(dst)  # dict reads are atomic; destroy is checked in deliver
        if ept is None:
            log.warning(
                "%s: msg received with no recipient (src 0x%x, dst 0x%x)", self.name, src, dst
            )
            return None
        return ept, data, src

    # -- channels ----------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        with self._lock:
            return list(self._channels)

    def find_channel(
        self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY
    ) -> Channel | None:
        with self._lock:
            return next((c for c in self._channels if c.matches(name, src, dst)), None)

    def create_channel(
        self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY
    ) -> Channel:
        """``rpmsg_create_channel``: EEXIST for a duplicate; ``announce`` when src is fixed."""
        return self._register_channel(name, src, dst, announce=src != RPMSG_ADDR_ANY)

    def release_channel(
        self,
        name: str,
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        bus_devices: bool = True,
    ) -> None:
        """``rpmsg_release_channel``: EINVAL if no channel matches. ``bus_devices=False``
        leaves the bus's own ``rpmsg_ctrl`` and ``rpmsg_ns`` devices out of the match."""
        with self._lock:
            ch = next(
                (
                    c
                    for c in self._channels
                    if c.matches(name, src, dst) and (bus_devices or c.driver_override is None)
                ),
                None,
            )
        if ch is None:
            raise RprocError(errno.EINVAL, f"no channel {name}:{src:x}:{dst:x}")
        self._unregister_channel(ch)

    def _register_channel(
        self, name: str, src: int, dst: int, *, announce: bool, driver_override: str | None = None
    ) -> Channel:
        with self._lock:
            if self._removing:
                raise RprocError(errno.ENODEV, "rpmsg device removed")
            if any(c.matches(name, src, dst) for c in self._channels):
                raise RprocError(errno.EEXIST, f"channel {name}:{src:x}:{dst:x} already exist")
            ch = Channel(self, name, src, dst, announce=announce, driver_override=driver_override)
            self._channels.append(ch)
        registry.channel_added(ch)
        drv = registry.driver_for(ch) if registry.drivers_autoprobe else None
        if drv is not None:
            self._bind(ch, drv)
        return ch

    def _unregister_channel(self, ch: Channel) -> None:
        with self._lock:
            if ch not in self._channels:
                return
            self._channels.remove(ch)
        with ch.dev_lock:
            # Under the device lock: a probe in progress finishes first and is then undone
            # here; a bind that comes later sees ``registered`` False and does nothing.
            ch.registered = False
            self._unbind(ch)
        registry.channel_removed(ch)

    def bind_unbound(self, driver: RpmsgDriver) -> None:
        """A new rpmsg driver: bind it to our unbound channels it matches."""
        from remoteproc.rpmsg.core import rpmsg_match

        for ch in self.channels():
            if ch.driver is None and rpmsg_match(ch, driver):
                self._bind(ch, driver)

    def unbind_driver(self, driver: RpmsgDriver) -> None:
        for ch in self.channels():
            with ch.dev_lock:
                if ch.driver is driver:
                    self._unbind(ch)

    def bind(self, ch: Channel, drv: RpmsgDriver) -> None:
        """Bind on request (sysfs ``bind``): EBUSY when bound, the probe's error when it
        fails (``device_driver_attach``)."""
        # one bind or unbind on request at a time, and the channel's device lock against a
        # removal racing with the probe
        with self._request_lock, ch.dev_lock:
            with self._lock:
                if self._removing or ch not in self._channels or not ch.registered:
                    raise RprocError(errno.ENODEV, f"{ch.device_name}: no such device")
            if ch.driver is not None:
                raise RprocError(errno.EBUSY, f"{ch.device_name} is bound to {ch.driver.name}")
            err = self._probe_driver(ch, drv)
            if err is not None:
                raise err

    def unbind(self, ch: Channel, drv: RpmsgDriver | None = None) -> None:
        """Unbind on request (sysfs ``unbind``): the driver's remove (``device_release_driver``);
        ENODEV when ``drv`` is given and is not the channel's driver."""
        with self._request_lock:
            if drv is not None and ch.driver is not drv:
                raise RprocError(errno.ENODEV, f"{ch.device_name}: not bound to {drv.name}")
            self._unbind(ch)

    def _bind(self, ch: Channel, drv: RpmsgDriver) -> bool:
        """``rpmsg_dev_probe`` through the bus's own matching (announcements, driver
        registration).

        Under the channel's device lock, as the driver core holds ``device_lock`` around
        ``really_probe``: an unbind racing with the probe (the bus removed on stop or crash while
        a name-service announcement is being bound, or the driver unregistered) waits for it and
        then frees what the probe allocated (a ttyRPMSG port, an rpmsg char device, the default
        endpoint) instead of finding half a binding and leaking the rest."""
        with ch.dev_lock:
            if ch.driver is not None or not ch.registered:
                return False
            return self._probe_driver(ch, drv) is None

    def _probe_driver(self, ch: Channel, drv: RpmsgDriver) -> RprocError | None:
        """``rpmsg_dev_probe``: default endpoint, driver probe, then the announcement; the
        caller holds ``ch.dev_lock``. The binding is published (``ch.driver``) only once the
        probe has returned, so an unbind never sees half of it."""
        ept = None
        if drv.callback is not None:
            try:
                ept = self.create_ept(drv.callback, ch.name, ch.src, RPMSG_ADDR_ANY, channel=ch)
            except RprocError as err:
                log.error(
                    "%s: failed to create endpoint for %s: %s", self.name, ch.device_name, err
                )
                return err
            ch.src = ept.addr
            ept.dst = ch.dst
            ch.ept = ept
        try:
            data = drv.probe(ch) if drv.probe is not None else None
        except Exception as err:
            log.error("%s: %s: probe of %s failed: %s", self.name, drv.name, ch.device_name, err)
            ch.ept = None
            if ept is not None:
                self.destroy_ept(ept)
            if isinstance(err, RprocError):
                return err
            return RprocError(errno.EINVAL, f"probe of {ch.device_name} failed: {err}")
        ch.driver_data = data
        ch.driver = drv
        if ch.announce:
            self._announce(ch, RPMSG_NS_CREATE)
        return None

    def _unbind(self, ch: Channel) -> None:
        """``rpmsg_dev_remove``: the announcement, the driver's remove, the endpoint."""
        with ch.dev_lock:
            drv = ch.driver
            if drv is None:
                return
            if ch.announce and not self._removing:
                self._announce(ch, RPMSG_NS_DESTROY)
            if drv.remove is not None:
                try:
                    drv.remove(ch)
                except Exception:
                    log.exception(
                        "%s: %s: remove of %s failed", self.name, drv.name, ch.device_name
                    )
            if ch.ept is not None:
                self.destroy_ept(ch.ept)
            ch.ept = None
            ch.driver = None
            ch.driver_data = None

    def _announce(self, ch: Channel, flags: int) -> None:
        """``virtio_rpmsg_announce_create``/``_destroy``: from the channel's endpoint to 53."""
        if not (ch.announce and ch.ept is not None and self.ns_enabled):
            return
        msg = encode_ns_msg(ch.name, ch.ept.addr, flags, self.byteorder)
        try:
            self.send_offchannel(ch.ept.addr, RPMSG_NS_ADDR, msg, wait=True, timeout=None)
        except RprocError as err:
            log.error("%s: failed to announce service %s: %s", self.name, ch.name, err)

    # -- name service ------------------------------------------------------------------------
    def _ns_cb(self, ept: Endpoint, data: bytes, src: int) -> None:
        """``rpmsg_ns_cb``: CREATE or DESTROY a channel for the remote's announcement."""
        try:
            msg = decode_ns_msg(data, self.byteorder)
        except RprocError as err:
            self._rx_error(
                err.errno, err.message, self.rx_index if self.rx_index is not None else -1
            )
            return
        if msg.flags & RPMSG_NS_DESTROY:
            log.info("%s: destroying channel %s addr 0x%x", self.name, msg.name, msg.addr)
            try:
                # Unlike the kernel, an announcement cannot take down the bus's own devices
                # (a DESTROY for "rpmsg_ns" at 53 or "rpmsg_ctrl" at 0 would match them).
                self.release_channel(msg.name, RPMSG_ADDR_ANY, msg.addr, bus_devices=False)
            except RprocError as err:
                log.error("%s: rpmsg_destroy_channel failed: %s", self.name, err)
        else:
            log.info("%s: creating channel %s addr 0x%x", self.name, msg.name, msg.addr)
            try:
                self._register_channel(msg.name, RPMSG_ADDR_ANY, msg.addr, announce=False)
            except RprocError as err:
                log.error("%s: rpmsg_create_channel failed: %s", self.name, err)

    def __repr__(self) -> str:
        return f"RpmsgBus({self.name}, bufs={self.num_bufs}, ns={self.ns_enabled})"


def _ns_driver_cb(ept: Endpoint, data: bytes, src: int) -> object:
    bus = ept.bus
    assert isinstance(bus, RpmsgBus)
    bus._ns_cb(ept, data, src)
    return None


# The name-service device is a channel bound by driver_override, as in rpmsg_ns.c; its default
# endpoint sits at 53 (the channel's src).
RPMSG_NS_RPMSG_DRIVER = RpmsgDriver(RPMSG_NS_DRIVER, callback=_ns_driver_cb)
registry.register_driver(RPMSG_NS_RPMSG_DRIVER)


class VirtioRpmsgDriver:
    """The ``VirtioDriver`` for VIRTIO_ID_RPMSG; ``probe`` returns the device's ``RpmsgBus``."""

    name = "virtio_rpmsg_bus"
    device_ids: tuple[int, ...] = (VIRTIO_ID_RPMSG,)
    features = 1 << VIRTIO_RPMSG_F_NS

    def probe(self, vdev: VirtioDevice) -> RpmsgBus:
        # The virtio core's part of virtio_dev_probe: ACKNOWLEDGE, DRIVER, feature negotiation.
        status = vdev.get_status()
        if not status & VIRTIO_CONFIG_S_ACKNOWLEDGE:
            status |= VIRTIO_CONFIG_S_ACKNOWLEDGE
            vdev.set_status(status)
        if not status & VIRTIO_CONFIG_S_DRIVER:
            status |= VIRTIO_CONFIG_S_DRIVER
            vdev.set_status(status)
        negotiated = vdev.finalize_features(self.features)
        bus = RpmsgBus(vdev, negotiated)
        bus._probe()
        return bus

    def remove(self, vdev: VirtioDevice, state: object) -> None:
        if isinstance(state, RpmsgBus):
            state.remove()


virtio_rpmsg_driver = VirtioRpmsgDriver()
register_driver(virtio_rpmsg_driver)
