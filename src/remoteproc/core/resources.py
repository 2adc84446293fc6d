"""Resource-table handlers run at boot and attach (spec §5.3, §5.4, §6.2, §6.4).

Owns ``handle_resources`` (the §5.3 walk dispatching to one handler per entry type),
``alloc_registered_carveouts`` (§6.2, including the write-back of carveout ``pa``/``da``/``len``),
the default carveout allocator/releaser over the processor's ``DmaPool``, ``TraceBuffer`` (the
debugfs ``traceN`` data) and ``resource_cleanup`` (§6.4).

Rules:
- Every function here runs with the processor's lock held (called from ``rproc.py`` only) and
  touches only that processor's resource lists.
- The byte layout is ``firmware/rsc_table.py``'s; handlers apply the kernel's checks in the kernel's
  order and log the kernel's ``dev_err``/``dev_warn`` messages, prefixed with the device name.
- Failures raise ``RprocError`` with the kernel's errno; the walk stops at the first failure.
- DIFF (documented in docs/kernel-differences.md): the walk's result is "success" when the last
  entry was an ignored vendor or unsupported resource (the kernel returns RSC_IGNORED = 1 there
  and its callers treat it as a failed boot).
- An IOMMU is modelled as a list of ``Mapping`` records (``rproc.mappings``); there is no address
  translation hardware to program, but devmem entries require ``has_iommu`` as in the kernel.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

from remoteproc.core.memory import (
    FW_RSC_ADDR_ANY,
    Mapping,
    MemEntry,
    alloc_carveout,
    check_carveout_da,
    find_by_name,
    release_carveout,
)
from remoteproc.core.virtio import probe_vdev
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import (
    RSC_CARVEOUT,
    RSC_DEVMEM,
    RSC_HANDLED,
    RSC_LAST,
    RSC_TRACE,
    RSC_VDEV,
    RSC_VENDOR_END,
    RSC_VENDOR_START,
    Carveout,
    Devmem,
    RawEntry,
    ResourceTable,
    Trace,
    Vdev,
)

if TYPE_CHECKING:
    from remoteproc.core.rproc import Rproc

__all__ = [
    "TraceBuffer",
    "alloc_registered_carveouts",
    "handle_resources",
    "resource_cleanup",
]

log = logging.getLogger("remoteproc")


class TraceBuffer:
    """A trace buffer declared by an RSC_TRACE entry (debugfs ``trace<N>``).

    The device address is translated at read time, as the kernel does, so the buffer can live
    in memory that only becomes mapped once the processor runs.
    """

    def __init__(self, rproc: Rproc, index: int, da: int, length: int, fw_name: str) -> None:
        self._rproc = rproc
        self.index = index
        self.name = f"trace{index}"
        self.da = da
        self.len = length
        self.fw_name = fw_name  # the entry's own name field, for display only

    def raw(self) -> memoryview | None:
        """The whole ring as live device memory, or None if the address does not translate."""
        return self._rproc.da_to_va(self.da, self.len)

    def read(self) -> bytes:
        """What ``cat traceN`` returns: the bytes up to the first NUL (``strnlen``), or the
        "not available" text. DIFF: the kernel prints an empty name there; we print ours."""
        view = self.raw()
        if view is None:
            return f"Trace {self.name} not available\n".encode()
        data = bytes(view)
        end = data.find(b"\0")
        return data if end < 0 else data[:end]

    def __repr__(self) -> str:
        return f"TraceBuffer({self.name}, da={self.da:#x}, len={self.len:#x})"


# ---- carveout allocation (§6.2) -----------------------------------------------------------------


def alloc_registered_carveouts(rproc: Rproc) -> None:
    """Allocate every carveout (list order) and write back the bound table entries."""
    dev = rproc.dev_name
    for mem in list(rproc.carveouts):
        if mem.alloc is not None:
            try:
                mem.alloc(rproc, mem)
            except RprocError as exc:
                log.error("%s: Unable to allocate carveout %s: %d", dev, mem.name, -exc.errno)
                raise RprocError(errno.ENOMEM, f"Unable to allocate carveout {mem.name}") from exc
        if mem.rsc_offset != FW_RSC_ADDR_ANY and rproc.table_ptr is not None:
            rsc = Carveout.at(rproc.table_ptr, mem.rsc_offset, rproc.byteorder)
            pa = mem.dma
            if pa >> 32:
                log.warning("%s: Physical address cast in 32bit to fit resource table format", dev)
            rsc.pa = pa & 0xFFFFFFFF
            rsc.da = mem.da & 0xFFFFFFFF
            rsc.len = mem.len & 0xFFFFFFFF


# ---- the walk (§5.3) ----------------------------------------------------------------------------


def _logged(rproc: Rproc, exc: RprocError) -> RprocError:
    log.error("%s: %s", rproc.dev_name, exc.message)
    return exc


def handle_resources(rproc: Rproc) -> None:
    """``rproc_handle_resources(rproc, rproc_loading_handlers)`` over ``rproc.table_ptr``."""
    if rproc.table_ptr is None:
        return
    dev = rproc.dev_name
    table = ResourceTable(rproc.table_ptr[: rproc.table_sz], rproc.byteorder)
    entries = table.entries()
    while True:
        try:
            raw = next(entries)
        except StopIteration:
            return
        except RprocError as exc:
            raise _logged(rproc, exc) from None
        if RSC_VENDOR_START <= raw.type <= RSC_VENDOR_END:
            _handle_vendor(rproc, raw)
            continue
        if raw.type >= RSC_LAST:
            log.warning("%s: unsupported resource %d", dev, raw.type)
            continue
        handler = _HANDLERS[raw.type]
        try:
            handler(rproc, raw)
        except RprocError as exc:
            raise exc.with_context(index=raw.index, offset=raw.offset) from None


def _handle_vendor(rproc: Rproc, raw: RawEntry) -> None:
    op = rproc.ops.handle_rsc
    ret = 1  # RSC_IGNORED when the platform has no handler
    if op is not None:
        ret = op(rproc, raw.type, raw.body, raw.body_offset, raw.avail)
    if ret == RSC_HANDLED:
        return
    if ret < 0:
        raise RprocError(-ret, f"vendor resource {raw.type} failed", index=raw.index)
    log.warning("%s: unsupported vendor resource %d", rproc.dev_name, raw.type)


def _handle_carveout(rproc: Rproc, raw: RawEntry) -> None:
    dev = rproc.dev_name
    try:
        rsc = Carveout.from_entry(raw, rproc.byteorder)
    except RprocError as exc:
        raise _logged(rproc, exc) from None
    name = rsc.name
    mem = find_by_name(rproc.carveouts, name)
    if mem is not None:
        if mem.rsc_offset != FW_RSC_ADDR_ANY:
            log.error("%s: Carveout already associated to resource table", dev)
            raise RprocError(errno.ENOMEM, "Carveout already associated to resource table")
        try:
            check_carveout_da(dev, mem, rsc.da, rsc.len)
        except RprocError as exc:
            raise RprocError(errno.ENOMEM, exc.message) from exc
        mem.rsc_offset = raw.body_offset
        mem.flags = rsc.flags
        return
    log.debug(
        "%s: carveout rsc: name: %s, da %#x, pa %#x, len %#x, flags %#x",
        dev,
        name,
        rsc.da,
        rsc.pa,
        rsc.len,
        rsc.flags,
    )
    mem = MemEntry(
        name=name,
        da=rsc.da,
        len=rsc.len,
        alloc=alloc_carveout,
        release=release_carveout,
        rsc_offset=raw.body_offset,
        flags=rsc.flags,
        from_table=True,
    )
    rproc.carveouts.append(mem)


def _handle_devmem(rproc: Rproc, raw: RawEntry) -> None:
    if not rproc.has_iommu:
        # The kernel fails here without a message (§10.3); we keep the errno, not the silence.
        raise RprocError(errno.EINVAL, "devmem rsc needs an iommu")
    try:
        rsc = Devmem.from_entry(raw, rproc.byteorder)
    except RprocError as exc:
        raise _logged(rproc, exc) from None
    rproc.mappings.append(Mapping(rsc.da, rsc.pa, rsc.len, rsc.flags))
    log.debug("%s: mapped devmem pa %#x, da %#x, len %#x", rproc.dev_name, rsc.pa, rsc.da, rsc.len)


def _handle_trace(rproc: Rproc, raw: RawEntry) -> None:
    try:
        rsc = Trace.from_entry(raw, rproc.byteorder)
    except RprocError as exc:
        raise _logged(rproc, exc) from None
    trace = TraceBuffer(rproc, len(rproc.traces), rsc.da, rsc.len, rsc.name)
    rproc.traces.append(trace)
    log.debug("%s: %s added: da %#x, len %#x", rproc.dev_name, trace.name, rsc.da, rsc.len)


def _handle_vdev(rproc: Rproc, raw: RawEntry) -> None:
    try:
        rsc = Vdev.from_entry(raw, rproc.byteorder)
    except RprocError as exc:
        raise _logged(rproc, exc) from None
    index = rproc.nb_vdev
    rproc.nb_vdev += 1
    probe_vdev(rproc, rsc, raw.body_offset, index)


_HANDLERS = {
    RSC_CARVEOUT: _handle_carveout,
    RSC_DEVMEM: _handle_devmem,
    RSC_TRACE: _handle_trace,
    RSC_VDEV: _handle_vdev,
}


# ---- cleanup (§6.4) -----------------------------------------------------------------------------


def resource_cleanup(rproc: Rproc) -> None:
    """``rproc_resource_cleanup``: traces, mappings, carveouts, vdevs, coredump segments."""
    rproc.traces.clear()
    rproc.mappings.clear()
    # Vdevs first: freeing a vring writes into the table and drops notify ids; the carveouts
    # holding the rings are released just after, with every other carveout.
    for rvdev in reversed(list(rproc.rvdevs)):
        rvdev.remove()
    rproc.rvdevs.clear()
    for mem in list(rproc.carveouts):
        if mem.release is not None:
            try:
                mem.release(rproc, mem)
            except Exception:
                log.exception("%s: releasing carveout %s failed", rproc.dev_name, mem.name)
    rproc.carveouts.clear()
    rproc.notifyids.clear()
    rproc.max_notifyid = -1
    rproc.nb_vdev = 0
    rproc.coredump_cleanup()
