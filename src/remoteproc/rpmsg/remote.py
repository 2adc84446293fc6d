"""The remote role of rpmsg over virtio, in Python: what a remote processor's firmware does
(OpenAMP's ``rpmsg_virtio`` in device mode), so remotes can be written in Python for tests and
prototypes.

This module owns ``RpmsgRemote`` (one rpmsg vdev seen from the remote) and ``RemoteEndpoint``.

Rules:
- It is driven from outside and never polls or starts a thread: the transport calls
  ``on_kick(notifyid)`` when the host kicks a vring and ``on_status_change()`` when it may have
  written the vdev status (a transport that cannot tell may skip it: every kick re-reads the
  status, as firmware that waits for its first kick does).
- The vdev entry of the resource table is the remote's view of the device (spec §5.1, §5.2): it
  waits for DRIVER_OK before reading the vring addresses the host wrote, then attaches
  ``DeviceQueue``s: vring 0 is the host's RX ring, so the remote transmits on it; vring 1 is the
  host's TX ring, so the remote receives on it. Kicks to the host go out through
  ``kick(notifyid)`` with each vring's notify id.
- A status that drops DRIVER_OK (a reset: the host stopped, crashed, detached or is
  re-probing) detaches the rings at once: nothing is read or written in them afterwards.
  Endpoints survive and are announced again after the next DRIVER_OK (restart, re-attach).
  A transport that cannot report status changes may rely on kicks: a status of 0 at the next
  kick detaches, and rings the host re-created unseen between two kicks (status 0 and back to
  DRIVER_OK) are recognised by a used index we did not write, and the remote starts over.
- Endpoints with a name are announced with a name-service CREATE from their address to 53 when
  the host negotiated VIRTIO_RPMSG_F_NS, and with DESTROY when destroyed; announcements that find
  no host buffer wait for the host's next kick of vring 0.
- Like OpenAMP, an endpoint created with dst ANY takes the source of the first message it
  receives as its destination.
- Input from the host is checked like input from the remote on the host side: bad chains are
  refused by the vring layer, bad headers here, each logged on ``remoteproc.rpmsg`` with the
  vring and descriptor index, and nothing is raised into the transport's thread.
- Sends are non-blocking by default (ENOMEM when the host has no free receive buffer). With a
  timeout they wait for the host's kick of vring 0, which must then be delivered on another
  thread than the waiting one.
- One lock (re-entrant, so a callback may send or create endpoints); callbacks run under it.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import FW_RSC_VDEV, Vdev
from remoteproc.rpmsg.endpoint import addr_str
from remoteproc.rpmsg.wire import (
    RPMSG_ADDR_ANY,
    RPMSG_HDR_SIZE,
    RPMSG_MTU,
    RPMSG_NS_ADDR,
    RPMSG_NS_CREATE,
    RPMSG_NS_DESTROY,
    RPMSG_RESERVED_ADDRESSES,
    VIRTIO_RPMSG_F_NS,
    decode_ns_msg,
    encode_ns_msg,
    hdr_struct,
)
from remoteproc.virtio.bus import VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_RING_F_EVENT_IDX
from remoteproc.virtio.vring import DeviceQueue, vring_size

__all__ = ["RemoteCallback", "RemoteEndpoint", "RpmsgRemote", "echo"]

log = logging.getLogger("remoteproc.rpmsg")

RemoteCallback = Callable[["RemoteEndpoint", bytes, int], object]
PaToVa = Callable[[int, int], memoryview | None]

# How many messages the remote consumes before it gives the host an interrupt for the buffers
# it returned (a blocked host sender waits for that interrupt).
_NOTIFY_BATCH = 32


class RemoteEndpoint:
    """An endpoint on the remote. Create with ``RpmsgRemote.create_ept``."""

    def __init__(
        self,
        remote: RpmsgRemote,
        addr: int,
        name: str,
        callback: RemoteCallback | None,
        dst: int,
        announce: bool,
    ) -> None:
        self.remote = remote
        self.addr = addr
        self.name = name
        self.callback = callback
        self.initial_dst = dst
        self.dst = dst
        self.announce = announce
        self.received = 0

    def send(self, data: bytes | bytearray | memoryview, timeout: float = 0.0) -> None:
        self.remote.send_offchannel(self.addr, self.dst, data, timeout)

    def sendto(self, data: bytes | bytearray | memoryview, dst: int, timeout: float = 0.0) -> None:
        self.remote.send_offchannel(self.addr, dst, data, timeout)

    def destroy(self) -> None:
        self.remote.destroy_ept(self)

    def __repr__(self) -> str:
        return f"RemoteEndpoint({self.name!r}, addr={self.addr}, dst={addr_str(self.dst)})"


def echo(ept: RemoteEndpoint, data: bytes, src: int) -> None:
    """A callback that sends every message back where it came from."""
    ept.sendto(data, src)


class RpmsgRemote:
    """One rpmsg virtio device, remote side.

    ``vdev`` is the ``fw_rsc_vdev`` body (from its ``id`` field) in the remote's copy of the
    resource table; ``pa_to_va`` maps buffer addresses the host puts in descriptors (None outside
    the shared region); ``da_to_va`` maps the vring addresses (defaults to ``pa_to_va``).
    """

    def __init__(
        self,
        vdev: memoryview,
        *,
        pa_to_va: PaToVa,
        kick: Callable[[int], None],
        byteorder: str = "<",
        da_to_va: PaToVa | None = None,
        name: str = "rpmsg-remote",
    ) -> None:
        self.vdev = Vdev(vdev, byteorder)
        # The status byte is re-read on every kick: read it straight from its offset in the
        # fw_rsc_vdev layout rather than through the checked field view.
        self._status_byte = vdev[FW_RSC_VDEV.offsets["status"] : FW_RSC_VDEV.offsets["status"] + 1]
        self.byteorder = byteorder
        self.pa_to_va = pa_to_va
        self.da_to_va = da_to_va or pa_to_va
        self.kick = kick
        self.name = name
        self._hdr = hdr_struct(byteorder)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._epts: dict[int, RemoteEndpoint] = {}
        self._tx: DeviceQueue | None = None  # vring 0
        self._rx: DeviceQueue | None = None  # vring 1
        self._tx_notifyid = -1
        self._rx_notifyid = -1
        self._pending_ns: list[tuple[RemoteEndpoint, int]] = []
        self.ns_enabled = False
        self.event_idx = False
        self.attached = threading.Event()
        self.attach_count = 0
        # The host announced (CREATE) or withdrew (DESTROY) one of its channels to us.
        self.on_ns_bind: Callable[[str, int], None] | None = None
        self.on_ns_unbind: Callable[[str, int], None] | None = None
        # A ring the host broke (index jump) and left broken: called once per attachment.
        self.on_ring_broken: Callable[[RprocError], None] | None = None
        self._refusing = False
        self._pass_depth = 0  # > 0 while a receive pass runs (replies' interrupts held)
        self._tx_held = 0  # replies pushed since the last interrupt decision
        self.rx_messages = 0
        self.tx_messages = 0
        self.errors = 0

    # -- endpoints ---------------------------------------------------------------------------
    def create_ept(
        self,
        name: str,
        callback: RemoteCallback | None,
        addr: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        announce: bool = True,
    ) -> RemoteEndpoint:
        """An endpoint at ``addr`` (lowest free from 1024 when ANY); announced if named."""
        with self._lock:
            if addr == RPMSG_ADDR_ANY:
                addr = RPMSG_RESERVED_ADDRESSES
                while addr in self._epts:
                    addr += 1
            elif addr in self._epts or addr == RPMSG_NS_ADDR:
                raise RprocError(errno.EADDRINUSE, f"address {addr} already in use")
            ept = RemoteEndpoint(self, addr, name, callback, dst, announce and bool(name))
            self._epts[addr] = ept
            if self._tx is not None:
                self._announce(ept, RPMSG_NS_CREATE)
        return ept

    def destroy_ept(self, ept: RemoteEndpoint) -> None:
        with self._lock:
            if self._epts.get(ept.addr) is not ept:
                return
            del self._epts[ept.addr]
            self._pending_ns = [(e, f) for e, f in self._pending_ns if e is not ept]
            if self._tx is not None:
                self._announce(ept, RPMSG_NS_DESTROY)

    def endpoints(self) -> list[RemoteEndpoint]:
        with self._lock:
            return list(self._epts.values())

    # -- driven from outside -----------------------------------------------------------------
    def on_status_change(self) -> None:
        """The host may have written the vdev status: attach on DRIVER_OK, detach on reset."""
        try:
            with self._lock:
                self._sync_status()
        except Exception:
            log.exception("%s: status change handling failed", self.name)

    def on_kick(self, notifyid: int) -> None:
        """The host kicked ``notifyid``: receive on vring 1, or vring 0 got buffers back."""
        try:
            with self._lock:
                self._sync_status()
                self._resync_if_lost()
                if self._tx is None:
                    return
                if notifyid == self._rx_notifyid:
                    self._process_rx()
                if notifyid == self._tx_notifyid:
                    self._flush_ns()
                    self._cond.notify_all()
        except Exception:
            log.exception("%s: kick %d handling failed", self.name, notifyid)

    def close(self) -> None:
        with self._lock:
            self._detach()

    # -- attach / detach ---------------------------------------------------------------------
    def _sync_status(self) -> None:
        status = self._status_byte[0]
        if self._tx is None and status & VIRTIO_CONFIG_S_DRIVER_OK:
            self._attach()
        elif self._tx is not None and not status & VIRTIO_CONFIG_S_DRIVER_OK:
            self._detach()

    def _resync_if_lost(self) -> None:
        """The host re-created the rings without our transport telling us (the status went to
        0 and back to DRIVER_OK between two kicks): start over from the table, as after a
        reset. Seen as a used index we did not write (the host zeroes rings in find_vqs) or a
        ring the vring layer marked broken.

        A broken ring the host has not re-created (its avail index still jumps past the used
        index) is refused instead: re-attaching would take the same bad index and break again
        at once, and each attach announces our endpoints to a host that answers with a kick,
        a livelock. It is logged once and left alone until the host resets the device or
        re-creates the ring."""
        tx, rx = self._tx, self._rx
        if tx is None or rx is None or (tx.in_sync() and rx.in_sync()):
            return
        bad = [q for q in (tx, rx) if not q.attachable()]
        if bad:
            if not self._refusing:
                self._refusing = True
                q = bad[0]
                err = RprocError(
                    errno.EIO,
                    "the host left its avail index too far ahead of the used index: the channel is "
                    "dead until the host resets the device",
                    vring=q.index,
                    what="avail idx",
                )
                self.errors += 1
                log.error("%s: %s", self.name, err)
                if self.on_ring_broken is not None:
                    self.on_ring_broken(err)
            return
        log.warning("%s: vrings were re-created by the host, attaching again", self.name)
        self._detach()
        self._sync_status()

    def _error(self, code: int, message: str, *, vring: int | None, index: int | None) -> None:
        self.errors += 1
        err = RprocError(code, message, vring=vring, index=index, what="descriptor")
        log.error("%s: %s", self.name, err)

    def _attach(self) -> None:
        vdev = self.vdev
        try:
            gfeatures = vdev.gfeatures
            rings = [vdev.vring(i) for i in (0, 1)]
            geometry = [(r.da, r.num, r.align, r.notifyid) for r in rings]
        except RprocError as err:
            self._error(err.errno, f"cannot read the vdev: {err.message}", vring=None, index=None)
            return
        self.event_idx = bool(gfeatures >> VIRTIO_RING_F_EVENT_IDX & 1)
        self.ns_enabled = bool(gfeatures >> VIRTIO_RPMSG_F_NS & 1)
        queues: list[DeviceQueue] = []
        for i, (da, num, align, notifyid) in enumerate(geometry):
            try:
                size = vring_size(num, align) if num > 0 and align > 0 else 0
                mem = self.da_to_va(da, size) if size else None
                if mem is None:
                    raise RprocError(errno.EFAULT, f"vring da {da:#x} outside shared memory")
                queues.append(
                    DeviceQueue(
                        mem,
                        num,
                        align,
                        index=i,
                        name=f"{self.name} vring{i}",
                        byteorder=self.byteorder,
                        pa_to_va=self.pa_to_va,
                        notify=partial(self.kick, notifyid),
                        use_event_idx=self.event_idx,
                    )
                )
            except RprocError as err:
                self._error(err.errno, err.message, vring=i, index=None)
                return
        for q in queues:
            q.resume_from_ring()
        self._tx, self._rx = queues
        self._tx_notifyid = geometry[0][3]
        self._rx_notifyid = geometry[1][3]
        self.attach_count += 1
        self._refusing = False
        self.attached.set()
        log.info("%s: attached (features %#x)", self.name, gfeatures)
        for ept in list(self._epts.values()):
            self._announce(ept, RPMSG_NS_CREATE)
        self._process_rx()

    def _detach(self) -> None:
        if self._tx is None:
            return
        self._tx = self._rx = None
        self._tx_held = 0
        self._tx_notifyid = self._rx_notifyid = -1
        self._pending_ns.clear()
        for ept in self._epts.values():
            ept.dst = ept.initial_dst
        self.attached.clear()
        self._cond.notify_all()
        log.info("%s: detached (virtio reset)", self.name)

    # -- receive -----------------------------------------------------------------------------
    def _process_rx(self) -> None:
        q = self._rx
        if q is None:
            return
        since_notify = 0
        self._pass_depth += 1
        try:
            self._drain_rx(q, since_notify)
        finally:
            self._pass_depth -= 1
            if not self._pass_depth:
                self.flush_notify()

    def flush_notify(self) -> None:
        """Make the interrupt decision held for the replies sent during a receive pass (one
        per pass, or per ``_NOTIFY_BATCH`` replies, instead of one per reply). A transport
        whose callback blocks for the host (no free host buffer) calls this first."""
        with self._lock:
            held, self._tx_held = self._tx_held, 0
            q = self._tx
            if held and q is not None:
                q.notify()

    def _drain_rx(self, q: DeviceQueue, since_notify: int) -> None:
        while True:
            q.disable_notify()
            while self._rx is q and (item := q.pop_avail()) is not None:
                head, parts = item
                msg = self._parse(head, parts)
                # The buffer's own length, as OpenAMP's remotes return it: an OpenAMP host takes
                # used.len as the size of the TX buffer it reclaims (Linux ignores it), so 0
                # would shrink its next payload to -16 bytes.
                q.push_used(head, sum(len(view) for view, _ in parts))
                if msg is not None:
                    self._dispatch(*msg)
                since_notify += 1
                if since_notify >= _NOTIFY_BATCH:
                    q.notify()
                    since_notify = 0
            if self._rx is not q:  # a callback saw a reset
                return
            if q.enable_notify():
                break
        q.notify()

    def _parse(
        self, head: int, parts: list[tuple[memoryview, bool]]
    ) -> tuple[int, int, bytes] | None:
        if len(parts) != 1 or parts[0][1]:
            self._error(errno.EINVAL, "expected one device-readable buffer", vring=1, index=head)
            return None
        view = parts[0][0]
        if len(view) < RPMSG_HDR_SIZE:
            self._error(errno.EINVAL, f"msg too short ({len(view)})", vring=1, index=head)
            return None
        src, dst, _reserved, length, _flags = self._hdr.unpack_from(view, 0)
        if length > len(view) - RPMSG_HDR_SIZE:
            self._error(
                errno.EINVAL,
                f"msg too big: (buffer {len(view)}, hdr len {length})",
                vring=1,
                index=head,
            )
            return None
        return src, dst, bytes(view[RPMSG_HDR_SIZE : RPMSG_HDR_SIZE + length])

    def _dispatch(self, src: int, dst: int, data: bytes) -> None:
        self.rx_messages += 1
        ept = self._epts.get(dst)
        if ept is None:
            if dst == RPMSG_NS_ADDR and self.ns_enabled:
                self._ns_rx(data)
            else:
                log.warning(
                    "%s: msg received with no recipient (src 0x%x, dst 0x%x)", self.name, src, dst
                )
            return
        if ept.dst == RPMSG_ADDR_ANY:
            ept.dst = src
        ept.received += 1
        if ept.callback is None:
            return
        try:
            ept.callback(ept, data, src)
        except Exception:
            log.exception("%s: endpoint %d callback failed", self.name, ept.addr)

    def _ns_rx(self, data: bytes) -> None:
        try:
            msg = decode_ns_msg(data, self.byteorder)
        except RprocError as err:
            self._error(err.errno, err.message, vring=1, index=None)
            return
        if msg.flags & RPMSG_NS_DESTROY:
            hook = self.on_ns_unbind
            for ept in self._epts.values():
                if ept.name == msg.name and ept.dst == msg.addr:
                    ept.dst = ept.initial_dst
        else:
            hook = self.on_ns_bind
            for ept in self._epts.values():
                if ept.name == msg.name and ept.dst == RPMSG_ADDR_ANY:
                    ept.dst = msg.addr
        if hook is not None:
            hook(msg.name, msg.addr)

    # -- transmit ----------------------------------------------------------------------------
    def send_offchannel(
        self, src: int, dst: int, data: bytes | bytearray | memoryview, timeout: float = 0.0
    ) -> None:
        """Send one message into the next host receive buffer.

        EINVAL for an ANY address, EMSGSIZE above 496 bytes, ENOTCONN before DRIVER_OK or after
        a reset, ENOMEM with no host buffer and no timeout, ETIMEDOUT when the timeout expires.
        """
        if src == RPMSG_ADDR_ANY or dst == RPMSG_ADDR_ANY:
            raise RprocError(errno.EINVAL, f"invalid addr (src 0x{src:x}, dst 0x{dst:x})")
        length = len(data)
        if length > RPMSG_MTU:
            raise RprocError(errno.EMSGSIZE, f"message is too big ({length})")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                q = self._tx
                if q is None:
                    raise RprocError(errno.ENOTCONN, "rpmsg device not ready")
                got = self._get_tx_buf(q, length)
                if got is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if timeout <= 0:
                        raise RprocError(errno.ENOMEM, "no free host buffer")
                    raise RprocError(errno.ETIMEDOUT, "timeout waiting for a host buffer")
                self.flush_notify()  # the host must hear about our replies to free buffers
                self._cond.wait(remaining)
            head, view = got
            self._hdr.pack_into(view, 0, src, dst, 0, length, 0)
            view[RPMSG_HDR_SIZE : RPMSG_HDR_SIZE + length] = data
            q.push_used(head, RPMSG_HDR_SIZE + length)
            self.tx_messages += 1
            if self._pass_depth:
                # A reply from inside a receive pass: decide on the interrupt once for the
                # batch (the pass's end flushes), as OpenAMP's remotes do not, and why the
                # OpenAMP echo kicks the host twice per message.
                self._tx_held += 1
                if self._tx_held >= _NOTIFY_BATCH:
                    self._tx_held = 0
                    q.notify()
            else:
                q.notify()

    def _get_tx_buf(self, q: DeviceQueue, length: int) -> tuple[int, memoryview] | None:
        while (item := q.pop_avail()) is not None:
            head, parts = item
            if len(parts) != 1 or not parts[0][1]:
                self._error(
                    errno.EINVAL, "expected one device-writable buffer", vring=0, index=head
                )
                q.push_used(head, 0)
                continue
            view = parts[0][0]
            if len(view) < RPMSG_HDR_SIZE + length:
                self._error(
                    errno.EMSGSIZE, f"host buffer too small ({len(view)})", vring=0, index=head
                )
                q.push_used(head, 0)
                continue
            return head, view
        return None

    def _announce(self, ept: RemoteEndpoint, flags: int) -> None:
        if not (ept.announce and self.ns_enabled and self._tx is not None):
            return
        msg = encode_ns_msg(ept.name, ept.addr, flags, self.byteorder)
        try:
            self.send_offchannel(ept.addr, RPMSG_NS_ADDR, msg)
        except RprocError as err:
            if err.errno != errno.ENOMEM:
                raise
            self._pending_ns.append((ept, flags))

    def _flush_ns(self) -> None:
        pending, self._pending_ns = self._pending_ns, []
        for i, (ept, flags) in enumerate(pending):
            msg = encode_ns_msg(ept.name, ept.addr, flags, self.byteorder)
            try:
                self.send_offchannel(ept.addr, RPMSG_NS_ADDR, msg)
            except RprocError:
                self._pending_ns = pending[i:] + self._pending_ns
                return

    def __repr__(self) -> str:
        state = "attached" if self._tx is not None else "waiting"
        return f"RpmsgRemote({self.name!r}, {state}, endpoints={sorted(self._epts)})"
