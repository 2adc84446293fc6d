"""The vdev subdevice: a ``fw_rsc_vdev`` entry turned into a virtio device (spec §5.4 step 6,
§6.3, §9.2; the kernel's ``remoteproc_virtio.c``).

Owns ``RprocVdev`` (the rvdev: vring carveouts, notify ids, the subdevice), ``RprocVring`` and
``RprocVirtioDevice`` (``virtio.bus.VirtioDevice`` over the live resource table).

Rules:
- ``probe_vdev`` runs during resource handling, before the processor starts: it checks every
  vring (``invalid qsz (%d) or alignment (%d)``), registers/binds the ``vdev%dvring%d``
  carveouts and assigns notify ids (the lowest free id of the processor, written into the table).
  Vring memory is therefore allocated with the other carveouts, before ``ops.start`` (seed 004,
  problem 2). A probe failure is logged and the boot goes on without that vdev, as in the
  kernel (§5.4 6g).
- Subdevice start registers the virtio device: status, features and config live in the table
  at ``rproc.table_ptr + rsc_offset`` and are re-read through the current ``table_ptr`` on every
  access (the pointer moves from the cached copy to device memory during boot). The driver for
  the device id (``virtio.bus.driver_for``) is probed with the legacy status sequence
  0 -> ACKNOWLEDGE -> DRIVER -> (probe) -> DRIVER_OK; a probe failure sets FAILED and does not
  fail the boot (the kernel's device registration succeeds even when probe fails).
- Subdevice stop removes the driver and deletes the queues; ``remove`` (resource cleanup) frees
  the vrings: table ``da = 0``, ``notifyid = -1``, ids released.
- Locking: probe/start/stop/remove run under the processor's lock (the core calls them). The
  virtio config ops and ``find_vqs`` are called by the driver, from ``start`` (lock held) or later
  from its own threads; they touch only the table bytes of this vdev and this vdev's rings.
  ``vq_interrupt`` and the kick path take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from remoteproc.core.memory import (
    DmaPool,
    MemEntry,
    alloc_carveout,
    check_carveout_da,
    page_align,
    release_carveout,
)
from remoteproc.core.subdev import Subdev
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import Vdev
from remoteproc.virtio import bus
from remoteproc.virtio.vring import DriverQueue, vring_size

if TYPE_CHECKING:
    from remoteproc.core.rproc import Rproc

__all__ = [
    "RprocVdev",
    "RprocVirtioDevice",
    "RprocVring",
    "probe_vdev",
    "transport_features",
]

log = logging.getLogger("remoteproc")

# VIRTIO_TRANSPORT_F_START..END (include/uapi/linux/virtio_config.h)
_TRANSPORT_F_START = 28
_TRANSPORT_F_END = 42
# The transport bits vring_transport_features() keeps.
_KNOWN_TRANSPORT = frozenset({28, 29, 32, 33, 34, 35, 36, 37, 38, 39, 40})

# The platform bus's PLATFORM_DEVID_AUTO ida: "rproc-virtio.N.auto" takes the lowest free N.
platform_devid_ida = bus.Ida()


def transport_features(features: int) -> int:
    """``vring_transport_features``: clear transport bits the ring code does not know."""
    for bit in range(_TRANSPORT_F_START, _TRANSPORT_F_END):
        if bit not in _KNOWN_TRANSPORT:
            features &= ~(1 << bit)
    return features


class RprocVring:
    """``struct rproc_vring``: one ring of a vdev."""

    def __init__(self, rvdev: RprocVdev, index: int, num: int, align: int) -> None:
        self.rvdev = rvdev
        self.index = index
        self.num = num
        self.align = align
        self.notifyid = -1
        self.vq: DriverQueue | None = None

    @property
    def carveout_name(self) -> str:
        return f"vdev{self.rvdev.index}vring{self.index}"

    @property
    def size(self) -> int:
        return vring_size(self.num, self.align)

    def __repr__(self) -> str:
        return f"RprocVring({self.carveout_name}, num={self.num}, notifyid={self.notifyid})"


class RprocVdev(Subdev):
    """``struct rproc_vdev``: the vdev's rings and its subdevice hooks (start/stop only)."""

    def __init__(self, rproc: Rproc, index: int, vdev_id: int, rsc_offset: int) -> None:
        self.rproc = rproc
        self.index = index
        self.id = vdev_id
        self.rsc_offset = rsc_offset
        self.name = f"vdev{index}"
        self.vrings: list[RprocVring] = []
        self.virtio: RprocVirtioDevice | None = None
        # N of the "rproc-virtio.N.auto" platform device (PLATFORM_DEVID_AUTO); -1 until the
        # probe succeeded, and again once removed.
        self.pdev_id = -1

    @property
    def pdev_name(self) -> str:
        return f"rproc-virtio.{self.pdev_id}.auto"

    # -- the entry in the current table

    def rsc(self) -> Vdev:
        table = self.rproc.table_ptr
        if table is None:
            raise RprocError(errno.ENODEV, "no resource table")
        return Vdev.at(table, self.rsc_offset, self.rproc.byteorder)

    # -- vrings (§6.3)

    def _alloc_vring(self, rvring: RprocVring, rsc: Vdev) -> None:
        rproc = self.rproc
        ring = rsc.vring(rvring.index)
        size = page_align(rvring.size)
        mem = rproc.find_carveout_by_name(rvring.carveout_name)
        if mem is not None:
            try:
                check_carveout_da(rproc.dev_name, mem, ring.da, size)
            except RprocError as exc:
                raise RprocError(errno.ENOMEM, exc.message, vring=rvring.index) from exc
        else:
            rproc.add_carveout(
                MemEntry(
                    name=rvring.carveout_name,
                    da=ring.da,
                    len=size,
                    alloc=alloc_carveout,
                    release=release_carveout,
                    from_table=True,
                )
            )
        notifyid = 0
        while notifyid in rproc.notifyids:
            notifyid += 1
        rproc.notifyids[notifyid] = rvring
        rproc.max_notifyid = max(rproc.max_notifyid, notifyid)
        rvring.notifyid = notifyid
        ring.notifyid = notifyid

    def _free_vring(self, rvring: RprocVring) -> None:
        rproc = self.rproc
        if rvring.notifyid >= 0 and rproc.notifyids.get(rvring.notifyid) is rvring:
            del rproc.notifyids[rvring.notifyid]
        if rproc.table_ptr is not None:
            try:
                ring = self.rsc().vring(rvring.index)
                ring.da = 0
                ring.notifyid = -1
            except RprocError:
                pass  # a table that changed shape under us: nothing sane to reset
        rvring.notifyid = -1

    def remove(self) -> None:
        """Platform-device remove: free the vrings and drop the subdevice (resource cleanup)."""
        if self.virtio is not None:
            self.stop(crashed=False)
        for rvring in self.vrings:
            self._free_vring(rvring)
        self.rproc.remove_subdev(self)
        if self.pdev_id >= 0:
            platform_devid_ida.free(self.pdev_id)
            self.pdev_id = -1

    # -- subdevice

    def start(self) -> None:
        """``rproc_vdev_do_start`` -> ``rproc_add_virtio_dev``."""
        rproc = self.rproc
        if rproc.ops.kick is None:
            log.error("%s: .kick method not defined for %s", rproc.dev_name, rproc.name)
            raise RprocError(errno.EINVAL, f".kick method not defined for {rproc.name}")
        pool: DmaPool | None = None
        buf = rproc.find_carveout_by_name(f"vdev{self.index}buffer")
        if buf is not None and buf.va is not None:
            # dma_declare_coherent_memory: the region becomes this device's private pool.
            pool = DmaPool(buf.va, buf.dma, name=buf.name)
        vdev = RprocVirtioDevice(self, pool)
        self.virtio = vdev
        vdev.register()

    def stop(self, crashed: bool) -> None:
        """``rproc_vdev_do_stop``: unregister the virtio device."""
        vdev = self.virtio
        if vdev is None:
            return
        self.virtio = None
        vdev.unregister()

    def __repr__(self) -> str:
        return f"<RprocVdev {self.name} id={self.id} rings={self.vrings}>"


def probe_vdev(rproc: Rproc, rsc: Vdev, rsc_offset: int, index: int) -> RprocVdev | None:
    """The "rproc-virtio" platform driver probe (§5.4 6c-f). Errors are logged, not raised."""
    rvdev = RprocVdev(rproc, index, rsc.id, rsc_offset)
    try:
        for i in range(rsc.num_of_vrings):
            ring = rsc.vring(i)
            num, align = ring.num, ring.align
            if num == 0 or align == 0:
                log.error("%s: invalid qsz (%d) or alignment (%d)", rproc.dev_name, num, align)
                raise RprocError(
                    errno.EINVAL, f"invalid qsz ({num}) or alignment ({align})", vring=i
                )
            log.debug(
                "%s: vdev rsc: vring%d: da %#x, qsz %d, align %d",
                rproc.dev_name,
                i,
                ring.da,
                num,
                align,
            )
            rvdev.vrings.append(RprocVring(rvdev, i, num, align))
        done: list[RprocVring] = []
        try:
            for rvring in rvdev.vrings:
                rvdev._alloc_vring(rvring, rsc)
                done.append(rvring)
        except RprocError as exc:
            log.error("%s: Failed to alloc vring%d: %d", rproc.dev_name, len(done), -exc.errno)
            for rvring in reversed(done):
                rvdev._free_vring(rvring)
            raise
    except RprocError as exc:
        # The kernel registers the platform device before probing it; a failed probe leaves the
        # boot going without this vdev (§5.4 6g).
        log.error("%s: failed to probe vdev%d: %s", rproc.dev_name, index, exc.message)
        return None
    rvdev.pdev_id = platform_devid_ida.alloc()
    rproc.rvdevs.append(rvdev)
    rproc.add_subdev(rvdev)
    return rvdev


class RprocVirtioDevice:
    """``virtio.bus.VirtioDevice`` for one rvdev; every field lives in the resource table."""

    def __init__(self, rvdev: RprocVdev, pool: DmaPool | None) -> None:
        self.rvdev = rvdev
        self.rproc: Rproc = rvdev.rproc
        self.id = rvdev.id
        self.index = bus.virtio_index_ida.alloc()
        self.name = f"virtio{self.index}"
        self.byteorder = rvdev.rproc.byteorder
        self.features = 0  # negotiated (vdev->features)
        self._pool = pool
        self._dma_owner: dict[int, DmaPool] = {}
        self._lock = threading.Lock()  # guards vq list and dma bookkeeping
        self.vqs: list[DriverQueue | None] = []
        self.driver: bus.VirtioDriver | None = None
        self.driver_state: object = None
        self.probe_error: BaseException | None = None

    def _rsc(self) -> Vdev:
        return self.rvdev.rsc()

    # -- virtio config ops

    def get_features(self) -> int:
        return self._rsc().dfeatures

    def finalize_features(self, driver_features: int) -> int:
        device = self.get_features()
        # Transport bits the device offers are kept for the transport to filter (virtio core).
        transport_mask = sum(1 << b for b in range(_TRANSPORT_F_START, _TRANSPORT_F_END))
        features = (device & driver_features) | (device & transport_mask)
        features = transport_features(features)
        features &= ~(1 << bus.VIRTIO_F_RING_PACKED)
        # dfeatures is 32 bits wide, so nothing above can have been offered.
        features &= 0xFFFFFFFF
        self.features = features
        self._rsc().gfeatures = features
        return features

    def get_status(self) -> int:
        return self._rsc().status

    def set_status(self, status: int) -> None:
        self._rsc().status = status & 0xFF

    def reset(self) -> None:
        self._rsc().status = 0

    def config_get(self, offset: int, length: int) -> bytes | None:
        rsc = self._rsc()
        if offset < 0 or length < 0 or offset + length > rsc.config_len:
            log.error("%s: access out of bounds", self.rproc.dev_name)
            return None
        return bytes(rsc.config[offset : offset + length])

    def config_set(self, offset: int, data: bytes) -> None:
        rsc = self._rsc()
        if offset < 0 or offset + len(data) > rsc.config_len:
            log.error("%s: access out of bounds", self.rproc.dev_name)
            return
        rsc.config[offset : offset + len(data)] = data

    # -- queues

    def find_vqs(
        self, names: Sequence[str | None], callbacks: Sequence[bus.VqCallback | None]
    ) -> list[DriverQueue | None]:
        out: list[DriverQueue | None] = []
        try:
            for i, name in enumerate(names):
                if name is None:
                    out.append(None)
                    continue
                cb = callbacks[i] if i < len(callbacks) else None
                out.append(self._find_vq(i, name, cb))
        except BaseException:
            self.del_vqs()
            raise
        with self._lock:
            self.vqs = list(out)
        return out

    def _find_vq(self, vq_id: int, name: str, callback: bus.VqCallback | None) -> DriverQueue:
        """``rp_find_vq``."""
        rvdev = self.rvdev
        rproc = self.rproc
        if vq_id >= 2:  # RVDEV_NUM_VRINGS
            raise RprocError(errno.EINVAL, f"no vring {vq_id}", vring=vq_id)
        ring_name = f"vdev{rvdev.index}vring{vq_id}"
        mem = rproc.find_carveout_by_name(ring_name)
        if vq_id >= len(rvdev.vrings) or mem is None or mem.va is None:
            raise RprocError(errno.ENOMEM, f"{ring_name} is not allocated", vring=vq_id)
        rvring = rvdev.vrings[vq_id]
        size = rvring.size
        mem.va[:size] = bytes(size)
        notifyid = rvring.notifyid

        def notify() -> None:
            kick = rproc.ops.kick
            if kick is not None:
                kick(rproc, notifyid)

        vq = DriverQueue(
            mem.va[:size],
            rvring.num,
            rvring.align,
            index=vq_id,
            name=name,
            byteorder=self.byteorder,
            notify=notify,
            callback=callback,
            pa_to_va=self.pa_to_va,
            use_event_idx=bool(self.features & (1 << bus.VIRTIO_RING_F_EVENT_IDX)),
        )
        vq.on_broken = lambda err: rproc.report_vring_broken(f"{rvdev.name} vring{vq_id}", err)
        vq.on_refused = lambda err: rproc.report_vring_refused(f"{rvdev.name} vring{vq_id}", err)
        rvring.vq = vq
        # Where the ring really is, for the firmware to read once DRIVER_OK is set (§5.2).
        self._rsc().vring(vq_id).da = mem.da
        return vq

    def del_vqs(self) -> None:
        for rvring in self.rvdev.vrings:
            rvring.vq = None
        with self._lock:
            self.vqs = []

    # -- shared buffers

    def dma_alloc(self, size: int) -> tuple[memoryview, int]:
        pool = self._pool if self._pool is not None else self.rproc.dma
        if pool is None:
            log.error("%s: failed to allocate dma memory", self.rproc.dev_name)
            raise RprocError(errno.ENOMEM, "failed to allocate dma memory")
        view, pa = pool.alloc(size)
        with self._lock:
            self._dma_owner[pa] = pool
        return view, pa

    def dma_free(self, pa: int) -> None:
        with self._lock:
            pool = self._dma_owner.pop(pa, None)
        if pool is not None:
            pool.free(pa)

    def pa_to_va(self, pa: int, n: int) -> memoryview | None:
        if self._pool is not None:
            view = self._pool.pa_to_va(pa, n)
            if view is not None:
                return view
        result: memoryview | None = self.rproc.pa_to_va(pa, n)
        return result

    # -- registration (the virtio core's part)

    def register(self) -> None:
        """``register_virtio_device`` + ``virtio_dev_probe`` for the driver of our id."""
        self.reset()
        self.set_status(bus.VIRTIO_CONFIG_S_ACKNOWLEDGE)
        try:
            driver = bus.driver_for(self.id)
        except ImportError as exc:
            log.warning("%s: %s: no driver available: %s", self.rproc.dev_name, self.name, exc)
            driver = None
        if driver is None:
            return
        self.set_status(self.get_status() | bus.VIRTIO_CONFIG_S_DRIVER)
        try:
            self.finalize_features(driver.features)
            self.driver_state = driver.probe(self)
        except Exception as exc:
            log.error(
                "%s: %s: failed to probe driver %s: %s",
                self.rproc.dev_name,
                self.name,
                driver.name,
                exc,
            )
            self.probe_error = exc
            self.del_vqs()
            self.set_status(self.get_status() | bus.VIRTIO_CONFIG_S_FAILED)
            return
        self.driver = driver
        if not self.get_status() & bus.VIRTIO_CONFIG_S_DRIVER_OK:
            self.set_status(self.get_status() | bus.VIRTIO_CONFIG_S_DRIVER_OK)

    def unregister(self) -> None:
        """``unregister_virtio_device``: driver remove, queues gone, the pool released."""
        driver, self.driver = self.driver, None
        if driver is not None:
            try:
                driver.remove(self, self.driver_state)
            except Exception:
                log.exception("%s: %s: driver remove failed", self.rproc.dev_name, self.name)
            self.driver_state = None
            # The virtio core acknowledges the device's existence again after a remove.
            with contextlib.suppress(RprocError):
                self.set_status(self.get_status() | bus.VIRTIO_CONFIG_S_ACKNOWLEDGE)
        self.del_vqs()
        if self._pool is not None:
            self._pool.close()
        if self.index >= 0:
            bus.virtio_index_ida.free(self.index)
            self.index = -1

    def __repr__(self) -> str:
        return f"<RprocVirtioDevice {self.name} id={self.id} of {self.rproc.dev_name}>"


def _protocol_check(dev: RprocVirtioDevice) -> bus.VirtioDevice:
    """Keeps the class honest against the protocol at type-check time."""
    return dev
