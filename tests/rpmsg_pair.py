"""A complete rpmsg host + Python remote in one process, over one bytearray of "shared memory".

Use it wherever a test needs live rpmsg without an emulator:

    with RpmsgPair() as pair:
        ept = pair.remote.create_ept("rpmsg-echo", echo)      # announced to the host
        ch = pair.channel("rpmsg-echo")                         # the host's channel for it
        host = pair.bus.create_ept(None, dst=ch.dst)
        host.send(b"ping"); assert host.recv(1) == b"ping"

What it builds:
- ``SharedMemory``: a bytearray with guard bytes either side; physical address == offset + base.
  ``pa_to_va`` returns a window or None outside the region; ``guards_intact()`` checks that
  nothing wrote around it.
- a resource table at offset 0 with one ``fw_rsc_vdev`` (two vrings, notify ids 0 and 1), the two
  rings, then a DMA pool for the rpmsg buffers;
- ``FakeVdev``: the host's ``VirtioDevice`` over that table (what ``core/virtio.py`` does
  for a real processor), creating ``DriverQueue``s in ``find_vqs``;
- the host driver probed on it (``pair.bus``) and an ``RpmsgRemote`` on the same memory
  (``pair.remote``).

Kicks and interrupts are delivered in one of two modes:
- ``"sync"``: in the caller's thread, through a trampoline (a delivery started while another is
  running is queued and run by the outer one), so nothing recurses and tests are deterministic;
- ``"thread"``: one worker thread per (direction, notify id), kicks coalesced, as real
  interrupts would be. ``settle()`` waits until every worker is idle.
Status changes reach the remote through the same trampoline in sync mode and synchronously in
thread mode (so a reset is seen by the remote before the host frees the rings).
``pause_remote()`` holds host→remote kicks (a busy remote) until ``resume_remote()``.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import RSC_HDR_SIZE, TableBuilder, Vdev
from remoteproc.rpmsg.endpoint import Channel
from remoteproc.rpmsg.remote import RpmsgRemote
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus, virtio_rpmsg_driver
from remoteproc.rpmsg.wire import VIRTIO_RPMSG_F_NS
from remoteproc.virtio.bus import (
    VIRTIO_ID_RPMSG,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
)
from remoteproc.virtio.vring import DriverQueue, VringLayout, vring_size

GUARD = 4096
GUARD_BYTE = 0xA5
TRANSPORT_FEATURES = (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX)

_indexes = itertools.count(100)


def _align(value: int, align: int) -> int:
    return (value + align - 1) // align * align


class SharedMemory:
    def __init__(self, size: int, base: int = 0) -> None:
        self.size = size
        self.base = base
        self.raw = bytearray(bytes([GUARD_BYTE]) * (GUARD + size + GUARD))
        self.view = memoryview(self.raw)[GUARD : GUARD + size]
        self.view[:] = bytes(size)
        self.refused: list[tuple[int, int]] = []

    def pa_to_va(self, pa: int, length: int) -> memoryview | None:
        off = pa - self.base
        if off < 0 or length < 0 or off + length > self.size:
            self.refused.append((pa, length))
            return None
        return self.view[off : off + length]

    def guards_intact(self) -> bool:
        guard = bytes([GUARD_BYTE]) * GUARD
        return self.raw[:GUARD] == guard and self.raw[-GUARD:] == guard


class Wire:
    """Delivers calls between the two sides (see the module docstring for the modes)."""

    def __init__(self, mode: str) -> None:
        if mode not in ("sync", "thread"):
            raise ValueError(mode)
        self.mode = mode
        self._lock = threading.Lock()
        self._queue: deque[tuple[Callable[[Any], object], Any]] = deque()
        self._draining = False
        self._workers: dict[str, _Worker] = {}
        self.errors: list[BaseException] = []

    def post(self, key: str, fn: Callable[[Any], object], arg: Any) -> None:
        if self.mode == "thread":
            with self._lock:
                worker = self._workers.get(key)
                if worker is None:
                    worker = self._workers[key] = _Worker(key, self.errors)
            worker.post(fn, arg)
            return
        with self._lock:
            self._queue.append((fn, arg))
            if self._draining:
                return
            self._draining = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._draining = False
                        return
                    fn, arg = self._queue.popleft()
                fn(arg)
        except BaseException:
            with self._lock:
                self._draining = False
            raise

    def settle(self, timeout: float = 10.0) -> bool:
        """Thread mode: wait until every worker is idle twice in a row."""
        if self.mode == "sync":
            return True
        import time

        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            with self._lock:
                workers = list(self._workers.values())
            if all(w.idle() for w in workers):
                quiet += 1
                if quiet >= 3:
                    return True
            else:
                quiet = 0
            time.sleep(0.002)
        return False

    def close(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.stop()


class _Worker:
    def __init__(self, key: str, errors: list[BaseException]) -> None:
        self.key = key
        self.errors = errors
        self._cond = threading.Condition()
        self._pending: dict[tuple[int, Any], tuple[Callable[[Any], object], Any]] = {}
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"wire-{key}", daemon=True)
        self._thread.start()

    def post(self, fn: Callable[[Any], object], arg: Any) -> None:
        with self._cond:
            self._pending[(id(fn), arg)] = (fn, arg)  # coalesce repeated kicks
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                key = next(iter(self._pending))
                fn, arg = self._pending.pop(key)
                self._busy = True
            try:
                fn(arg)
            except BaseException as exc:  # surfaced by the pair's close()
                self.errors.append(exc)
            finally:
                with self._cond:
                    self._busy = False

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)


class FakeVdev:
    """The host's ``VirtioDevice`` for one rpmsg vdev over ``SharedMemory`` (pa == da)."""

    id = VIRTIO_ID_RPMSG
    rproc: Any = None

    def __init__(
        self,
        shm: SharedMemory,
        entry: Vdev,
        *,
        byteorder: str,
        ring_pas: Sequence[int],
        pool_pa: int,
        pool_size: int,
        kick: Callable[[int], None],
        status_changed: Callable[[], None],
    ) -> None:
        self.index = next(_indexes)
        self.name = f"virtio{self.index}"
        self.byteorder = byteorder
        self.shm = shm
        self.entry = entry
        self.ring_pas = list(ring_pas)
        self.kick = kick
        self.status_changed = status_changed
        self.vqs: list[DriverQueue] = []
        self._by_notifyid: dict[int, DriverQueue] = {}
        self._pool_pa = pool_pa
        self._pool_size = pool_size
        self._allocs: dict[int, int] = {}
        self.status_log: list[int] = []

    def get_features(self) -> int:
        return self.entry.dfeatures

    def finalize_features(self, driver_features: int) -> int:
        offered = self.entry.dfeatures
        negotiated = offered & (driver_features | TRANSPORT_FEATURES) & 0xFFFFFFFF
        self.entry.gfeatures = negotiated
        return negotiated

    def get_status(self) -> int:
        return self.entry.status

    def set_status(self, status: int) -> None:
        self.entry.status = status
        self.status_log.append(status)
        self.status_changed()

    def reset(self) -> None:
        self.set_status(0)

    def config_get(self, offset: int, length: int) -> bytes | None:
        cfg = self.entry.config
        if offset < 0 or length < 0 or offset + length > len(cfg):
            return None
        return bytes(cfg[offset : offset + length])

    def config_set(self, offset: int, data: bytes) -> None:
        cfg = self.entry.config
        if offset >= 0 and offset + len(data) <= len(cfg):
            cfg[offset : offset + len(data)] = data

    def find_vqs(
        self, names: Sequence[str | None], callbacks: Sequence[Callable[[Any], None] | None]
    ) -> list[Any]:
        event_idx = bool(self.entry.gfeatures >> VIRTIO_RING_F_EVENT_IDX & 1)
        out: list[Any] = []
        for i, (name, cb) in enumerate(zip(names, callbacks, strict=True)):
            if name is None:
                out.append(None)
                continue
            vr = self.entry.vring(i)
            pa = self.ring_pas[i]
            size = vring_size(vr.num, vr.align)
            mem = self.shm.pa_to_va(pa, size)
            assert mem is not None
            mem[:] = bytes(size)  # rp_find_vq zeroes the ring
            notifyid = vr.notifyid

            def notify(nid: int = notifyid) -> None:
                self.kick(nid)

            vq = DriverQueue(
                mem,
                vr.num,
                vr.align,
                index=i,
                name=name,
                byteorder=self.byteorder,
                notify=notify,
                callback=cb,
                pa_to_va=self.shm.pa_to_va,
                use_event_idx=event_idx,
            )
            vr.da = pa
            out.append(vq)
        self.vqs = [q for q in out if q is not None]
        self._by_notifyid = {self.entry.vring(q.index).notifyid: q for q in self.vqs}
        return out

    def del_vqs(self) -> None:
        self.vqs = []
        self._by_notifyid = {}

    def vq_interrupt(self, notifyid: int) -> bool:
        """``rproc_vq_interrupt``: False (IRQ_NONE) for an unknown id."""
        vq = self._by_notifyid.get(notifyid)
        return vq.interrupt() if vq is not None else False

    def dma_alloc(self, size: int) -> tuple[memoryview, int]:
        used = sum(self._allocs.values())
        if used + size > self._pool_size:
            raise RprocError(12, "dma_alloc failed")
        pa = self._pool_pa + used
        self._allocs[pa] = size
        view = self.shm.pa_to_va(pa, size)
        assert view is not None
        return view, pa

    def dma_free(self, pa: int) -> None:
        self._allocs.pop(pa, None)


class RpmsgPair:
    """Host bus + Python remote over one shared bytearray. See the module docstring."""

    def __init__(
        self,
        *,
        num: int = 256,
        align: int = 4096,
        byteorder: str = "<",
        dfeatures: int = 1 << VIRTIO_RPMSG_F_NS,
        mode: str = "sync",
        base: int = 0,
        start: bool = True,
        remote_setup: Callable[[RpmsgRemote], object] | None = None,
    ) -> None:
        self.num = num
        self.align = align
        self.byteorder = byteorder
        ring_bytes = _align(vring_size(num, align), 4096)
        num_bufs = 2 * num if num < 256 else 512
        table_size = 0x1000
        self.ring_pas = [base + table_size, base + table_size + ring_bytes]
        pool_pa = base + table_size + 2 * ring_bytes
        pool_size = num_bufs * 512
        self.shm = SharedMemory(table_size + 2 * ring_bytes + pool_size, base)
        builder = TableBuilder(byteorder)
        builder.add_vdev(
            VIRTIO_ID_RPMSG,
            notifyid=2,
            dfeatures=dfeatures,
            vrings=[(0xFFFFFFFF, align, num, 0, 0), (0xFFFFFFFF, align, num, 1, 0)],
        )
        table = builder.build()
        self.shm.view[: len(table)] = table
        body = builder.entry_offsets()[0] + RSC_HDR_SIZE
        self.table = self.shm.view[:table_size]
        self.entry = Vdev(self.table[body:], byteorder)
        self.wire = Wire(mode)
        self._paused = False
        self._held: list[int] = []
        self._lock = threading.Lock()
        self.vdev = FakeVdev(
            self.shm,
            self.entry,
            byteorder=byteorder,
            ring_pas=self.ring_pas,
            pool_pa=pool_pa,
            pool_size=pool_size,
            kick=self._host_kick,
            status_changed=self._status_changed,
        )
        self.remote = RpmsgRemote(
            self.table[body:],
            pa_to_va=self.shm.pa_to_va,
            kick=self._remote_kick,
            byteorder=byteorder,
        )
        if remote_setup is not None:
            remote_setup(self.remote)
        self.bus: RpmsgBus | None = None
        if start:
            self.start()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> RpmsgBus:
        self.bus = virtio_rpmsg_driver.probe(self.vdev)
        self.settle()
        return self.bus

    def stop(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            virtio_rpmsg_driver.remove(self.vdev, bus)
            self.settle()

    def restart(self) -> RpmsgBus:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self.remote.close()
        self.wire.close()
        if self.wire.errors:
            raise self.wire.errors[0]

    def __enter__(self) -> RpmsgPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- delivery ------------------------------------------------------------------------------
    def _host_kick(self, notifyid: int) -> None:
        with self._lock:
            if self._paused:
                if notifyid not in self._held:
                    self._held.append(notifyid)
                return
        self.wire.post(f"remote-{notifyid}", self.remote.on_kick, notifyid)

    def _remote_kick(self, notifyid: int) -> None:
        self.wire.post(f"host-{notifyid}", self.vdev.vq_interrupt, notifyid)

    def _status_changed(self) -> None:
        if self.wire.mode == "thread":
            self.remote.on_status_change()
        else:
            self.wire.post("status", lambda _arg: self.remote.on_status_change(), None)

    def pause_remote(self) -> None:
        with self._lock:
            self._paused = True

    def resume_remote(self) -> None:
        with self._lock:
            self._paused = False
            held, self._held = self._held, []
        for nid in held:
            self._host_kick(nid)

    def settle(self, timeout: float = 10.0) -> None:
        if not self.wire.settle(timeout):
            raise TimeoutError("rpmsg pair did not settle")

    # -- helpers for tests ---------------------------------------------------------------------
    def channel(self, name: str) -> Channel:
        assert self.bus is not None
        ch = self.bus.find_channel(name)
        if ch is None:
            raise LookupError(f"no channel {name!r} on {self.bus.name}")
        return ch

    def ring(self, i: int) -> memoryview:
        view = self.shm.pa_to_va(self.ring_pas[i], vring_size(self.num, self.align))
        assert view is not None
        return view

    def layout(self) -> VringLayout:
        return VringLayout(self.num, self.align)

    def interrupt_host(self, notifyid: int) -> None:
        """Deliver a remote→host interrupt as a (possibly hostile) remote would."""
        self._remote_kick(notifyid)
        self.settle()
