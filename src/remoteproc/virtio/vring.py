"""The split virtqueue (legacy layout), both roles, as pure logic over a memoryview.

This module owns the ring layout of spec §9.1 and the two state machines that walk it:

- ``DriverQueue``: the host role (the kernel's ``virtio_ring.c``): adds buffers to the avail
  ring, decides whether to kick, takes used buffers back.
- ``DeviceQueue``: the remote role (what vhost or OpenAMP's ``virtqueue.c`` do): pops descriptor
  chains from the avail ring, returns them through the used ring, decides whether to interrupt.

Rules:
- No I/O and no threads: a queue reads and writes its memoryview and calls the ``notify``
  callable it was given; the caller owns locking (the kernel's rule: one user per queue at a
  time) and delivers kicks/interrupts from outside.
- The ring memory is shared with a peer we do not trust. Every index, flag or element written
  by the peer is read exactly once into a local, bounded, and only then used. Our own state
  (next free descriptor, avail index, last used index, what each head stands for) is kept in
  private shadows and never read back from shared memory, so a peer that scribbles over the
  descriptor table cannot make the driver free or reuse the wrong descriptors.
- A bad value from the peer is never raised into the caller's thread: it is logged on
  ``remoteproc.virtio`` with the vring and the index concerned, counted in ``errors`` (the last
  one kept in ``last_error``) and the element is dropped. A used or avail index that jumps
  further than the number of buffers in flight means the peer lost the ring: the queue is marked
  ``broken`` (the kernel's ``BAD_RING``) and stops touching it.
- Buffers are only ever touched through ``pa_to_va(pa, length)``, which returns ``None`` for
  anything outside the shared region; nothing outside it is read or written.
- Multi-byte fields use the device's byte order (legacy virtio: the remote's native order).
"""

from __future__ import annotations

import errno
import logging
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from remoteproc.errors import RprocError

__all__ = [
    "VRING_AVAIL_F_NO_INTERRUPT",
    "VRING_DESC_F_INDIRECT",
    "VRING_DESC_F_NEXT",
    "VRING_DESC_F_WRITE",
    "VRING_USED_F_NO_NOTIFY",
    "DeviceQueue",
    "DriverQueue",
    "VringLayout",
    "vring_need_event",
    "vring_size",
]

log = logging.getLogger("remoteproc.virtio")

# include/uapi/linux/virtio_ring.h
VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

# Binary layouts, declared once with the kernel's struct names (byte order prefix added per ring).
# struct vring_desc { __virtio64 addr; __virtio32 len; __virtio16 flags; __virtio16 next; }
VRING_DESC = "QIHH"
VRING_USED_ELEM = "II"  # struct vring_used_elem { __virtio32 id; __virtio32 len; }
VRING_DESC_SIZE = 16
VRING_USED_ELEM_SIZE = 8
VRING_AVAIL_HDR = "HH"  # struct vring_avail { flags; idx; ring[num]; used_event; }
VRING_USED_HDR = "HH"  # struct vring_used { flags; idx; ring[num]; avail_event; }

_MAX_NUM = 32768  # a 16-bit ring index must be able to tell num apart from 0


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def vring_size(num: int, align: int) -> int:
    """Bytes a legacy split ring occupies: ``(256, 4096) -> 10246``, ``(16, 4096) -> 4230``."""
    return (
        _align_up(VRING_DESC_SIZE * num + 2 * (3 + num), align) + 2 * 3 + VRING_USED_ELEM_SIZE * num
    )


def vring_need_event(event_idx: int, new_idx: int, old: int) -> bool:
    """True when ``event_idx`` lies in ``[old, new_idx)`` modulo 2**16 (the event-index rule)."""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old) & 0xFFFF)


class VringLayout:
    """Byte offsets of every part of a legacy split ring (``vring_init``)."""

    def __init__(self, num: int, align: int) -> None:
        self.num = num
        self.align = align
        self.desc = 0
        self.avail = VRING_DESC_SIZE * num
        self.avail_flags = self.avail
        self.avail_idx = self.avail + 2
        self.avail_ring = self.avail + 4
        self.used_event = self.avail_ring + 2 * num
        self.used = _align_up(self.used_event + 2, align)
        self.used_flags = self.used
        self.used_idx = self.used + 2
        self.used_ring = self.used + 4
        self.avail_event = self.used_ring + VRING_USED_ELEM_SIZE * num
        self.size = self.avail_event + 2
        assert self.size == vring_size(num, align)


def _check_geometry(mem: memoryview, num: int, align: int, index: int, name: str) -> VringLayout:
    # vring_new_virtqueue refuses a size that is not a power of 2 (it returns NULL -> -ENOMEM).
    if num <= 0 or num > _MAX_NUM or num & (num - 1):
        raise RprocError(errno.ENOMEM, f"Bad virtqueue length {num}", vring=index, what=name)
    if align <= 0 or align & (align - 1):
        raise RprocError(errno.EINVAL, f"bad vring alignment {align}", vring=index, what=name)
    layout = VringLayout(num, align)
    if len(mem) < layout.size:
        raise RprocError(
            errno.ENOMEM,
            f"vring memory too small: {len(mem)} < {layout.size}",
            vring=index,
            what=name,
        )
    return layout


class _U16:
    """The ring's 16-bit fields, each read or written with one 16-bit access through a
    ``cast("H")`` view of the ring (a ``struct.Struct`` look-alike: ``pack_into``/
    ``unpack_from`` on the ring's own memory). ``struct`` copies byte by byte, and a peer in
    another process then sees torn indices: between 0x6DFF and 0x6E00 it can read 0x6D00, a
    ring that "jumped" back (measured with two processes on one mmap, process platform)."""

    __slots__ = ("_h", "_swap")

    def __init__(self, mem: memoryview, byteorder: str) -> None:
        self._h = mem[: len(mem) & ~1].cast("H")
        self._swap = byteorder != ("<" if sys.byteorder == "little" else ">")

    def pack_into(self, mem: memoryview, off: int, value: int) -> None:
        if self._swap:
            value = ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)
        self._h[off >> 1] = value

    def unpack_from(self, mem: memoryview, off: int) -> tuple[int]:
        value: int = self._h[off >> 1]
        if self._swap:
            value = ((value & 0xFF) << 8) | (value >> 8)
        return (value,)


_barrier_lock = threading.Lock()


def _full_barrier() -> None:
    """``virtio_mb()``: a full memory barrier, for a peer in another process. Publishing an
    index and then reading the peer's flag (or re-enabling notifications and then re-checking)
    is the store-then-load pattern x86 may reorder; without the barrier both sides can read
    the other's old value and a kick is lost for good. Python has no fence, but an uncontended
    lock acquire/release is a LOCK-prefixed atomic on x86, which orders everything."""
    _barrier_lock.acquire()
    _barrier_lock.release()


class _Ring:
    """What both roles share: the layout, the typed accessors, the error accounting."""

    def __init__(
        self,
        mem: memoryview,
        num: int,
        align: int,
        index: int,
        name: str,
        byteorder: str,
    ) -> None:
        if byteorder not in ("<", ">"):
            raise RprocError(errno.EINVAL, f"bad byte order {byteorder!r}", vring=index)
        self.layout = _check_geometry(mem, num, align, index, name)
        self.mem = mem[: self.layout.size]
        self.num = num
        self.align = align
        self.index = index
        self.name = name
        self.byteorder = byteorder
        self.errors = 0
        self.last_error: RprocError | None = None
        self.broken = False
        # Told once, with the error, when the peer breaks the ring (the owner makes it visible:
        # an event, a dead channel); called from whatever thread found it, under its locks.
        self.on_broken: Callable[[RprocError], None] | None = None
        # Told of each element the peer wrote that was refused while the ring stays usable (the
        # owner publishes it); same threads and locks as ``on_broken``.
        self.on_refused: Callable[[RprocError], None] | None = None
        self.use_event_idx = False
        self._u16 = _U16(self.mem, byteorder)
        self._mask = num - 1
        lay = self.layout
        self._avail_ring_off = lay.avail_ring
        self._avail_idx_off = lay.avail_idx
        self._used_ring_off = lay.used_ring
        self._used_idx_off = lay.used_idx
        self._desc = struct.Struct(byteorder + VRING_DESC)
        self._elem = struct.Struct(byteorder + VRING_USED_ELEM)
        # Hot-path views in the machine's own byte order (None for a foreign-endian ring, which
        # takes the struct/_U16 path): 16-bit indices and ring entries, and the used ring's
        # (id, len) pairs as 32-bit words, so a batch of used elements is one slice and one
        # tolist() instead of an unpack call and a tuple per element. The used ring sits 4 bytes
        # past an ``align`` boundary, so it is word-aligned whenever ``align`` is.
        native = not self._u16._swap
        self._h16: memoryview | None = self._u16._h if native else None
        self._used32: memoryview | None = None
        if native and lay.used_ring % 4 == 0:
            self._used32 = self.mem[lay.used_ring : lay.avail_event].cast("I")

    # -- peer-facing error path: log, count, never raise ------------------------------------
    def _bad(self, code: int, message: str, *, index: int | None, what: str,
             refused: bool = True) -> None:
        err = RprocError(code, message, vring=self.index, index=index, what=what)
        self.errors += 1
        self.last_error = err
        log.error("%s: %s", self.name, err)
        if refused:
            self.refused(err)

    def refused(self, err: RprocError) -> None:
        """Report one refused element (also for what the ring's owner refuses in it, e.g. an
        rpmsg header): the ``on_refused`` hook, if any."""
        hook = self.on_refused
        if hook is not None:
            hook(err)

    def _break(self, message: str, *, index: int, what: str) -> None:
        self._bad(errno.EIO, message, index=index, what=what, refused=False)
        self.broken = True
        hook = self.on_broken
        if hook is not None and self.last_error is not None:
            hook(self.last_error)

    def _r16(self, off: int) -> int:
        h16 = self._h16
        if h16 is not None:
            native: int = h16[off >> 1]
            return native
        value: int = self._u16.unpack_from(self.mem, off)[0]
        return value

    def _w16(self, off: int, value: int) -> None:
        h16 = self._h16
        if h16 is not None:
            h16[off >> 1] = value & 0xFFFF
            return
        self._u16.pack_into(self.mem, off, value & 0xFFFF)


class DriverQueue(_Ring):
    """The host role of one split virtqueue (``struct vring_virtqueue``).

    Tokens are opaque to the queue: ``get_buf`` hands back the token given to ``add_*``.
    """

    def __init__(
        self,
        mem: memoryview,
        num: int,
        align: int,
        *,
        index: int,
        name: str,
        byteorder: str,
        notify: Callable[[], None],
        callback: Callable[[DriverQueue], None] | None,
        pa_to_va: Callable[[int, int], memoryview | None],
        use_event_idx: bool = False,
    ) -> None:
        super().__init__(mem, num, align, index, name, byteorder)
        self.use_event_idx = use_event_idx
        self.callback = callback
        self.pa_to_va = pa_to_va
        self._notify = notify
        # Private shadows: never read back from the shared ring.
        self._free: list[int] = list(range(num - 1, -1, -1))  # stack of free descriptors
        self._tokens: list[Any] = [None] * num  # per head: the caller's token (None: not out)
        self._chains: list[tuple[int, ...]] = [()] * num  # per head: its descriptor indices
        self._lengths: list[int] = [0] * num  # per head: total bytes of the chain
        self._avail_idx = 0
        self._last_used = 0
        self._in_flight = 0
        self._num_added = 0
        self._avail_flags = 0
        self.kicks = 0
        # Tokens of elements refused for a lying length: their descriptors are free again and
        # the owner may take the tokens back (rpmsg re-posts such receive buffers).
        self.dropped: list[Any] = []

    # -- adding buffers ------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def in_flight(self) -> int:
        """Buffers given to the device and not yet taken back."""
        return self._in_flight

    def add_inbuf(self, pa: int, length: int, token: Any) -> None:
        """One device-writable buffer (``virtqueue_add_inbuf`` with a single sg entry)."""
        self._add_one(pa, length, VRING_DESC_F_WRITE, token)

    def add_outbuf(self, pa: int, length: int, token: Any) -> None:
        """One device-readable buffer (``virtqueue_add_outbuf`` with a single sg entry)."""
        self._add_one(pa, length, 0, token)

    def _add_one(self, pa: int, length: int, flags: int, token: Any) -> None:
        # The one-descriptor case of add_sgs, kept separate because rpmsg adds one buffer per
        # message and this is its hot path.
        if token is None or self.broken or not self._free:
            self.add_sgs(
                ((pa, length),) if not flags else (), ((pa, length),) if flags else (), token
            )  # raises the right error
            return
        head = self._free.pop()
        mem = self.mem
        self._desc.pack_into(mem, VRING_DESC_SIZE * head, pa, length, flags, 0)
        self._tokens[head] = token
        self._chains[head] = (head,)
        self._lengths[head] = length
        avail = self._avail_idx
        h16 = self._h16
        if h16 is not None:
            # Entry first, then the index that publishes it (each one 16-bit store).
            h16[(self._avail_ring_off >> 1) + (avail & self._mask)] = head
            avail = (avail + 1) & 0xFFFF
            h16[self._avail_idx_off >> 1] = avail
        else:
            u16 = self._u16
            u16.pack_into(mem, self._avail_ring_off + 2 * (avail & self._mask), head)
            avail = (avail + 1) & 0xFFFF
            u16.pack_into(mem, self._avail_idx_off, avail)
        self._avail_idx = avail
        self._in_flight += 1
        self._num_added += 1

    def add_sgs(
        self,
        out: tuple[tuple[int, int], ...] | list[tuple[int, int]],
        in_: tuple[tuple[int, int], ...] | list[tuple[int, int]],
        token: Any,
    ) -> None:
        """Expose a chain: device-readable ``out`` parts first, then device-writable ``in_``.

        Failures here are the caller's own mistakes, so they raise: ``EIO`` on a broken queue,
        ``ENOSPC`` when there are not enough free descriptors, ``EINVAL`` for a None token or an
        empty chain.
        """
        total = len(out) + len(in_)
        if token is None:
            raise RprocError(errno.EINVAL, "a buffer needs a token", vring=self.index)
        if total == 0:
            raise RprocError(errno.EINVAL, "empty buffer chain", vring=self.index)
        if self.broken:
            raise RprocError(errno.EIO, "virtqueue is broken", vring=self.index, what=self.name)
        if total > len(self._free):
            raise RprocError(errno.ENOSPC, "no free descriptors", vring=self.index, what=self.name)
        free = self._free
        descs = [free.pop() for _ in range(total)]
        pack = self._desc.pack_into
        mem = self.mem
        length = 0
        n = 0
        for parts, flags in ((out, 0), (in_, VRING_DESC_F_WRITE)):
            for pa, size in parts:
                i = descs[n]
                n += 1
                if n < total:
                    pack(mem, VRING_DESC_SIZE * i, pa, size, flags | VRING_DESC_F_NEXT, descs[n])
                else:
                    pack(mem, VRING_DESC_SIZE * i, pa, size, flags, 0)
                length += size
        head = descs[0]
        self._tokens[head] = token
        self._chains[head] = tuple(descs)
        self._lengths[head] = length
        lay = self.layout
        avail = self._avail_idx
        # Publish the ring entry before the index that makes it visible.
        self._u16.pack_into(mem, lay.avail_ring + 2 * (avail & (self.num - 1)), head)
        avail = (avail + 1) & 0xFFFF
        self._avail_idx = avail
        self._u16.pack_into(mem, lay.avail_idx, avail)
        self._in_flight += 1
        self._num_added += 1

    # -- kicking ---------------------------------------------------------------------------
    def kick_prepare(self) -> bool:
        """Whether the device wants a notification for what was added since the last call."""
        new = self._avail_idx
        old = (new - self._num_added) & 0xFFFF
        added = self._num_added
        self._num_added = 0
        if added == 0 or self.broken:
            return False
        _full_barrier()  # the avail index we wrote, before the device's flags we read
        if self.use_event_idx:
            return vring_need_event(self._r16(self.layout.avail_event), new, old)
        return not (self._r16(self.layout.used_flags) & VRING_USED_F_NO_NOTIFY)

    def notify(self) -> bool:
        """Kick the device unconditionally (``virtqueue_notify``)."""
        if self.broken:
            return False
        self.kicks += 1
        self._notify()
        return True

    def kick(self) -> bool:
        """``virtqueue_kick``: notify if the device asked for it."""
        if self.kick_prepare():
            return self.notify()
        return False

    # -- taking buffers back -----------------------------------------------------------------
    def _used_idx(self) -> int:
        return self._r16(self._used_idx_off)

    def more_used(self) -> bool:
        return not self.broken and self._used_idx() != self._last_used

    def get_buf(self) -> tuple[Any, int] | None:
        """Next used buffer as ``(token, used_len)``, or None; bad elements are dropped."""
        if self.broken:
            return None
        lay = self.layout
        used_idx = self._used_idx()  # read once
        while self._last_used != used_idx:
            last = self._last_used
            pending = (used_idx - last) & 0xFFFF
            if pending > self._in_flight:
                self._break(
                    f"used index {used_idx} jumps: {pending} new entries but only "
                    f"{self._in_flight} buffers in flight (last used {last})",
                    index=used_idx,
                    what="used idx",
                )
                return None
            head, used_len = self._elem.unpack_from(
                self.mem, self._used_ring_off + VRING_USED_ELEM_SIZE * (last & self._mask)
            )
            self._last_used = (last + 1) & 0xFFFF
            if self.use_event_idx and not self._avail_flags & VRING_AVAIL_F_NO_INTERRUPT:
                self._w16(lay.used_event, self._last_used)
            if head >= self.num:
                self._bad(errno.EIO, f"id {head} out of range", index=last, what="used element")
                continue
            token = self._tokens[head]
            if token is None:
                self._bad(errno.EIO, f"id {head} is not a head", index=last, what="used element")
                continue
            # Whatever the length, the descriptors come back to us: a lying length must not
            # leak the buffer slot, but the caller never sees the element.
            self._detach(head)
            if used_len > self._lengths[head]:
                self._bad(
                    errno.EIO,
                    f"id {head}: used len {used_len} exceeds buffer length {self._lengths[head]}",
                    index=last,
                    what="used element",
                )
                self.dropped.append(token)
                continue
            return token, used_len
        return None

    def get_bufs(self, limit: int = 1 << 16) -> list[tuple[Any, int]]:
        """Every used buffer pending now (at most ``limit``), in order: ``get_buf`` in a loop,
        with the used index read once and the per-call overhead paid once per batch. The
        same checks apply element by element."""
        out: list[tuple[Any, int]] = []
        if self.broken:
            return out
        used_idx = self._used_idx()  # read once
        last = self._last_used
        pending = (used_idx - last) & 0xFFFF
        if pending > self._in_flight:
            return [got] if (got := self.get_buf()) is not None else out  # breaks the ring
        if pending > limit:
            pending = limit
        if not pending:
            return out
        mask = self._mask
        num = self.num
        used32 = self._used32
        if used32 is not None:
            # The pending elements as one flat [id, len, id, len, ...] list (two slices when
            # they wrap around the end of the ring).
            start = last & mask
            end = start + pending
            if end <= num:
                flat = used32[2 * start : 2 * end].tolist()
            else:
                flat = used32[2 * start :].tolist() + used32[: 2 * (end - num)].tolist()
        else:
            unpack = self._elem.unpack_from
            mem = self.mem
            ring_off = self._used_ring_off
            flat = []
            for k in range(pending):
                flat.extend(unpack(mem, ring_off + VRING_USED_ELEM_SIZE * ((last + k) & mask)))
        tokens = self._tokens
        chains = self._chains
        lengths = self._lengths
        free = self._free
        event = self.use_event_idx and not self._avail_flags & VRING_AVAIL_F_NO_INTERRUPT
        bad = False
        pairs = iter(flat)
        for head, used_len in zip(pairs, pairs, strict=False):  # pairs of one list
            if head >= num or (token := tokens[head]) is None or used_len > lengths[head]:
                bad = True  # the one-at-a-time path logs it and accounts for it, below
                break
            tokens[head] = None
            chain = chains[head]
            chains[head] = ()
            if len(chain) == 1:
                free.append(head)
            else:
                free.extend(reversed(chain))
            out.append((token, used_len))
        done = len(out)
        last = (last + done) & 0xFFFF
        self._last_used = last
        self._in_flight -= done
        if event:
            self._w16(self.layout.used_event, last)
        if bad:
            while len(out) < limit and (got := self.get_buf()) is not None:
                out.append(got)
        return out

    def add_inbufs(self, bufs: list[tuple[int, int, Any]]) -> None:
        """``add_inbuf`` for several ``(pa, length, token)`` buffers, published with one
        index write at the end (the device sees them all at once)."""
        if not bufs:
            return
        if self.broken or len(bufs) > len(self._free) or any(t is None for _, _, t in bufs):
            for pa, length, token in bufs:
                self.add_inbuf(pa, length, token)  # raises the right error where it fails
            return
        mem = self.mem
        pack = self._desc.pack_into
        free = self._free
        tokens = self._tokens
        chains = self._chains
        lengths = self._lengths
        u16 = self._u16
        ring_off = self._avail_ring_off
        mask = self._mask
        avail = self._avail_idx
        h16 = self._h16
        for pa, length, token in bufs:
            head = free.pop()
            pack(mem, VRING_DESC_SIZE * head, pa, length, VRING_DESC_F_WRITE, 0)
            tokens[head] = token
            chains[head] = (head,)
            lengths[head] = length
            if h16 is not None:
                h16[(ring_off >> 1) + (avail & mask)] = head
            else:
                u16.pack_into(mem, ring_off + 2 * (avail & mask), head)
            avail = (avail + 1) & 0xFFFF
        self._avail_idx = avail
        u16.pack_into(mem, self._avail_idx_off, avail)
        self._in_flight += len(bufs)
        self._num_added += len(bufs)

    def _detach(self, head: int) -> None:
        self._tokens[head] = None
        chain = self._chains[head]
        self._chains[head] = ()
        self._free.extend(reversed(chain))
        self._in_flight -= 1

    def detach_unused_buf(self) -> Any:
        """Take back one buffer the device never returned (teardown); None when none are left."""
        for head, token in enumerate(self._tokens):
            if token is not None:
                self._detach(head)
                return token
        return None

    # -- interrupts ----------------------------------------------------------------------------
    def disable_cb(self) -> None:
        """Ask the device not to interrupt (advisory, as in the kernel)."""
        if not self._avail_flags & VRING_AVAIL_F_NO_INTERRUPT:
            self._avail_flags |= VRING_AVAIL_F_NO_INTERRUPT
            if not self.use_event_idx:
                self._w16(self.layout.avail_flags, self._avail_flags)

    def enable_cb(self) -> bool:
        """Re-enable interrupts; False if used buffers are already pending (poll again)."""
        if self._avail_flags & VRING_AVAIL_F_NO_INTERRUPT:
            self._avail_flags &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.use_event_idx:
                self._w16(self.layout.avail_flags, self._avail_flags)
        if self.use_event_idx:
            self._w16(self.layout.used_event, self._last_used)
        _full_barrier()  # our flags, before the used index we re-check
        return not self.more_used()

    def num_used(self) -> int:
        """Used buffers returned and not yet taken back (0 on a broken ring)."""
        if self.broken:
            return 0
        return (self._r16(self._used_idx_off) - self._last_used) & 0xFFFF

    def enable_cb_delayed(self, count: int) -> bool:
        """Like ``virtqueue_enable_cb_delayed`` with the threshold given: interrupts on, and
        with event indices the next one only once ``count`` buffers are pending (without,
        every return interrupts, as the device decides). False when ``count`` are already
        pending (take them now: that interrupt may have been suppressed)."""
        if self._avail_flags & VRING_AVAIL_F_NO_INTERRUPT:
            self._avail_flags &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.use_event_idx:
                self._w16(self.layout.avail_flags, self._avail_flags)
        if self.use_event_idx:
            # The device interrupts when its used index moves past used_event.
            self._w16(self.layout.used_event, self._last_used + max(count, 1) - 1)
        _full_barrier()  # our event, before the used index we re-check
        return self.num_used() < count

    def interrupt(self) -> bool:
        """``vring_interrupt``: False (IRQ_NONE) if nothing new was used, else run the callback."""
        if self.broken:
            # The kernel reports a broken ring's interrupt as handled and does nothing.
            return True
        if self._r16(self._used_idx_off) == self._last_used:
            return False
        if self.callback is not None:
            try:
                self.callback(self)
            except Exception:
                # Like an interrupt handler, the callback has nobody to report to: an exception
                # must not unwind into the transport thread that delivered the interrupt.
                log.exception("%s: vring %d callback failed", self.name, self.index)
        return True

    def __repr__(self) -> str:
        return (
            f"DriverQueue({self.name!r}, vring={self.index}, num={self.num}, "
            f"free={self.num_free}, avail={self._avail_idx}, last_used={self._last_used})"
        )


class DeviceQueue(_Ring):
    """The remote role of one split virtqueue: consume what the driver offers, return it used."""

    def __init__(
        self,
        mem: memoryview,
        num: int,
        align: int,
        *,
        index: int,
        name: str,
        byteorder: str,
        pa_to_va: Callable[[int, int], memoryview | None],
        notify: Callable[[], None],
        use_event_idx: bool = False,
    ) -> None:
        super().__init__(mem, num, align, index, name, byteorder)
        self.use_event_idx = use_event_idx
        self.pa_to_va = pa_to_va
        self._notify = notify
        self._last_avail = 0
        self._used_idx = 0
        self._signalled_used = 0
        self._notify_enabled = True
        self._used_flags = 0
        self.interrupts = 0

    def _avail_idx(self) -> int:
        return self._r16(self._avail_idx_off)

    def resume_from_ring(self) -> None:
        """Take the used index found in the ring as our own (0 for a ring the driver just
        created), with everything before it consumed: how a device attaches to a ring."""
        value: int = self._u16.unpack_from(self.mem, self._used_idx_off)[0]
        self._used_idx = self._signalled_used = self._last_avail = value

    def in_sync(self) -> bool:
        """False when the ring is broken or its used index is not the one we wrote: the device
        is the only writer of the used ring, so the driver must have re-created the ring (a
        reset and re-probe we were not told about)."""
        if self.broken:
            return False
        value: int = self._u16.unpack_from(self.mem, self._used_idx_off)[0]
        return value == self._used_idx

    def attachable(self) -> bool:
        """Whether a device attaching to the ring as it is in memory now would accept it: the
        driver's avail index at most ``num`` entries ahead of the used index. False while a
        driver that jumped its avail index leaves it there (re-attaching would break the ring
        again at once); True again once the driver re-creates the ring."""
        used: int = self._u16.unpack_from(self.mem, self._used_idx_off)[0]
        return (self._avail_idx() - used) & 0xFFFF <= self.num

    def has_avail(self) -> bool:
        return not self.broken and self._avail_idx() != self._last_avail

    def pop_avail(self) -> tuple[int, list[tuple[memoryview, bool]]] | None:
        """Next descriptor chain as ``(head, [(view, device_writable), ...])``, or None.

        A chain with a bad descriptor (index out of range, a loop, an address or length outside
        the shared region, an indirect descriptor, a readable part after a writable one) is
        logged and handed straight back to the driver as used with length 0, so the driver does
        not lose the slot; the next chain is tried.
        """
        lay = self.layout
        num = self.num
        h16 = self._h16
        idx_at = self._avail_idx_off >> 1
        while not self.broken:
            avail_idx = h16[idx_at] if h16 is not None else self._avail_idx()  # read once
            last = self._last_avail
            if avail_idx == last:
                return None
            pending = (avail_idx - last) & 0xFFFF
            if pending > num:
                self._break(
                    f"avail index {avail_idx} jumps: {pending} new entries in a ring of {num} "
                    f"(last avail {last})",
                    index=avail_idx,
                    what="avail idx",
                )
                return None
            ring_at = lay.avail_ring + 2 * (last & (num - 1))
            head = h16[ring_at >> 1] if h16 is not None else self._r16(ring_at)
            self._last_avail = (last + 1) & 0xFFFF
            if self.use_event_idx and self._notify_enabled:
                self._w16(lay.avail_event, self._last_avail)
            if head >= num:
                self._bad(errno.EIO, f"head {head} out of range", index=last, what="avail entry")
                continue
            chain = self._walk(head, last)
            if chain is None:
                self.push_used(head, 0)
                continue
            return head, chain
        return None

    def _walk(self, head: int, avail_slot: int) -> list[tuple[memoryview, bool]] | None:
        num = self.num
        unpack = self._desc.unpack_from
        mem = self.mem
        parts: list[tuple[memoryview, bool]] = []
        seen_write = False
        i = head
        addr, length, flags, nxt = unpack(mem, VRING_DESC_SIZE * i)
        if not flags & ~VRING_DESC_F_WRITE:
            # The common chain (rpmsg's): one plain descriptor. Same checks, fewer steps.
            view = self.pa_to_va(addr, length)
            if view is not None and len(view) == length:
                return [(view, bool(flags))]
        for _ in range(num):  # a chain longer than the table must contain a loop
            addr, length, flags, nxt = unpack(mem, VRING_DESC_SIZE * i)
            if flags & VRING_DESC_F_INDIRECT:
                self._bad(
                    errno.EIO, "indirect descriptor not negotiated", index=i, what="descriptor"
                )
                return None
            view = self.pa_to_va(addr, length)
            if view is None or len(view) != length:
                self._bad(
                    errno.EFAULT,
                    f"addr {addr:#x} len {length} outside shared memory",
                    index=i,
                    what="descriptor",
                )
                return None
            writable = bool(flags & VRING_DESC_F_WRITE)
            if seen_write and not writable:
                self._bad(
                    errno.EIO,
                    "readable descriptor after a writable one",
                    index=i,
                    what="descriptor",
                )
                return None
            seen_write |= writable
            parts.append((view, writable))
            if not flags & VRING_DESC_F_NEXT:
                return parts
            if nxt >= num:
                self._bad(errno.EIO, f"next {nxt} out of range", index=i, what="descriptor")
                return None
            i = nxt
        self._bad(
            errno.ELOOP, f"descriptor chain from head {head} loops", index=i, what="descriptor"
        )
        return None

    def push_used(self, head: int, length: int) -> None:
        """Return chain ``head`` to the driver, ``length`` bytes written into it."""
        if not 0 <= head < self.num:
            raise RprocError(errno.EINVAL, f"head {head} out of range", vring=self.index)
        if self.broken:
            return
        used = self._used_idx
        used32 = self._used32
        h16 = self._h16
        if used32 is not None and h16 is not None:
            # The element (two 32-bit stores), then the index that publishes it.
            slot = 2 * (used & self._mask)
            used32[slot] = head
            used32[slot + 1] = length
            used = (used + 1) & 0xFFFF
            h16[self._used_idx_off >> 1] = used
        else:
            self._elem.pack_into(
                self.mem, self._used_ring_off + VRING_USED_ELEM_SIZE * (used & self._mask),
                head, length,
            )
            used = (used + 1) & 0xFFFF
            self._u16.pack_into(self.mem, self._used_idx_off, used)
        self._used_idx = used

    # -- interrupting the driver -------------------------------------------------------------
    def need_notify(self) -> bool:
        """Whether the driver wants an interrupt for what was used since the last one.

        Nothing used since the last interrupt never interrupts (a batch is at most ``num``
        entries, so the 16-bit indices cannot wrap onto each other between two calls).
        """
        if self.broken:
            return False
        new = self._used_idx
        old = self._signalled_used
        if new == old:
            return False
        self._signalled_used = new
        _full_barrier()  # the used index we wrote, before the driver's flags we read
        if self.use_event_idx:
            return vring_need_event(self._r16(self.layout.used_event), new, old)
        return not (self._r16(self.layout.avail_flags) & VRING_AVAIL_F_NO_INTERRUPT)

    def notify(self) -> bool:
        """Interrupt the driver unless it suppressed it (NO_INTERRUPT or its used event)."""
        if self.need_notify():
            self.interrupts += 1
            self._notify()
            return True
        return False

    # -- suppressing the driver's kicks ------------------------------------------------------
    def disable_notify(self) -> None:
        """Tell the driver not to kick us (we are processing; advisory)."""
        self._notify_enabled = False
        if not self.use_event_idx:
            self._used_flags |= VRING_USED_F_NO_NOTIFY
            self._w16(self.layout.used_flags, self._used_flags)

    def enable_notify(self) -> bool:
        """Ask for kicks again; False if buffers arrived meanwhile (pop again before sleeping)."""
        self._notify_enabled = True
        if self.use_event_idx:
            self._w16(self.layout.avail_event, self._last_avail)
        else:
            self._used_flags &= ~VRING_USED_F_NO_NOTIFY
            self._w16(self.layout.used_flags, self._used_flags)
        _full_barrier()  # our flags, before the avail index we re-check
        return not self.has_avail()

    def __repr__(self) -> str:
        return (
            f"DeviceQueue({self.name!r}, vring={self.index}, num={self.num}, "
            f"last_avail={self._last_avail}, used={self._used_idx})"
        )
