"""Device memory: carveout entries, the coherent DMA pool, and the device-address walk (spec §6).

Owns ``MemEntry`` (``struct rproc_mem_entry``), ``DmaPool`` (what ``dma_alloc_coherent`` is to
the kernel: page-aligned shared memory with a bus address), ``check_carveout_da`` and the
carveout walks used by ``Rproc.da_to_va`` / ``Rproc.pa_to_va``.

Rules:
- Memory is always a writable ``memoryview`` slice of a host buffer; translating an address never
  copies (architecture.md "Memory views"). A view handed out by a pool stays valid until ``free``.
- ``MemEntry.alloc``/``release`` are the kernel's callbacks: ``alloc(rproc, mem)`` fills
  ``mem.va``/``mem.dma`` (and ``mem.da`` for FW_RSC_ADDR_ANY) or raises; ``release(rproc, mem)``
  gives the memory back. A pre-registered entry (a platform's named region) usually has neither.
- Names are plain strings truncated to 31 characters, as the kernel's ``name[32]``; they are never
  used as format strings (the kernel's printf-format hazard, §10.3, does not exist here).
- ``DmaPool`` has its own leaf lock: it may be called with a processor's lock held, and calls
  nothing while holding its lock.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError

__all__ = [
    "FW_RSC_ADDR_ANY",
    "PAGE_SIZE",
    "CarveoutOwner",
    "DmaPool",
    "Mapping",
    "MemEntry",
    "alloc_carveout",
    "check_carveout_da",
    "find_by_name",
    "page_align",
    "release_carveout",
    "walk_da",
    "walk_pa",
]

log = logging.getLogger("remoteproc")

FW_RSC_ADDR_ANY = 0xFFFFFFFF
PAGE_SIZE = 4096
NAME_MAX = 31  # name[32] including the NUL


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


# alloc(rproc, mem) / release(rproc, mem); rproc is the owning Rproc (typed loosely to keep this
# module free of an import cycle with rproc.py).
MemCallback = Callable[[Any, "MemEntry"], None]


@dataclass(eq=False)
class MemEntry:
    """One carveout or mapped region (``struct rproc_mem_entry``).

    ``va`` is the host view (None until allocated/mapped); ``dma`` the bus/physical address the
    remote and its DMA see; ``da`` the device address in the remote's own map.
    """

    name: str
    da: int
    len: int
    va: memoryview | None = None
    dma: int = 0
    alloc: MemCallback | None = None
    release: MemCallback | None = None
    is_iomem: bool = False
    rsc_offset: int = FW_RSC_ADDR_ANY  # where in the table the entry that bound us lives
    flags: int = 0
    of_resm_idx: int = -1
    priv: object = None
    # Set by the core on entries it creates for a table entry (vs. a platform's region).
    from_table: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name[:NAME_MAX]

    def contains_da(self, da: int, n: int) -> bool:
        off = da - self.da
        return self.va is not None and off >= 0 and off + n <= self.len

    def view_at(self, da: int, n: int) -> memoryview | None:
        """The ``n`` bytes at device address ``da`` in this entry, if inside and mapped."""
        if not self.contains_da(da, n):
            return None
        assert self.va is not None
        off = da - self.da
        return self.va[off : off + n]


def find_by_name(entries: Iterable[MemEntry], name: str | None) -> MemEntry | None:
    """``rproc_find_carveout_by_name``: first entry with exactly this (truncated) name."""
    if not name:
        return None
    name = name[:NAME_MAX]
    for mem in entries:
        if mem.name == name:
            return mem
    return None


def check_carveout_da(dev: str, mem: MemEntry, da: int, length: int) -> None:
    """``rproc_check_carveout_da``: may a table request (da, len) use the registered ``mem``?

    Raises RprocError(EINVAL) with the kernel's messages; callers turn it into ENOMEM as the
    carveout and vring handlers do.
    """
    if length > mem.len:
        log.error("%s: Registered carveout doesn't fit len request", dev)
        raise RprocError(errno.EINVAL, "Registered carveout doesn't fit len request")
    if da != FW_RSC_ADDR_ANY and mem.da == FW_RSC_ADDR_ANY:
        # The kernel refuses this silently: a fixed da cannot bind to a floating region.
        raise RprocError(errno.EINVAL, "Registered carveout has no fixed device address")
    if da != FW_RSC_ADDR_ANY and mem.da != FW_RSC_ADDR_ANY:
        delta = da - mem.da
        if delta < 0:
            log.error("%s: Registered carveout doesn't fit da request", dev)
            raise RprocError(errno.EINVAL, "Registered carveout doesn't fit da request")
        if delta + length > mem.len:
            log.error("%s: Registered carveout doesn't fit len request", dev)
            raise RprocError(errno.EINVAL, "Registered carveout doesn't fit len request")


def walk_da(entries: Iterable[MemEntry], da: int, n: int) -> memoryview | None:
    """The default ``da_to_va``: the first allocated carveout (list order) holding [da, da+n)."""
    if n < 0:
        return None
    for mem in entries:
        view = mem.view_at(da, n)
        if view is not None:
            return view
    return None


def walk_pa(entries: Iterable[MemEntry], pa: int, n: int) -> memoryview | None:
    """Bus address -> host view through the carveouts (``dma`` is each entry's bus address)."""
    if n < 0:
        return None
    for mem in entries:
        if mem.va is None:
            continue
        off = pa - mem.dma
        if off >= 0 and off + n <= mem.len:
            return mem.va[off : off + n]
    return None


class DmaPool(Closeable):
    """Coherent shared memory with bus addresses: ``view`` is host memory, ``base`` the bus
    address of its first byte. First-fit allocation, page-granular sizes.

    ``alloc(size, align)`` -> (view of exactly ``size`` bytes, bus address); ``free(dma)``.
    """

    def __init__(self, view: memoryview | bytearray, base: int, *, name: str = "dma") -> None:
        self._view = view if isinstance(view, memoryview) else memoryview(view)
        if self._view.readonly:
            raise RprocError(errno.EINVAL, "dma pool memory must be writable")
        self.base = base
        self.size = len(self._view)
        self.name = name
        self._lock = threading.Lock()
        self._free: list[tuple[int, int]] = [(0, self.size)]  # (offset, length), sorted
        self._used: dict[int, int] = {}  # offset -> length
        self._closed = False

    @property
    def view(self) -> memoryview:
        return self._view

    @property
    def allocated(self) -> int:
        with self._lock:
            return sum(self._used.values())

    @property
    def allocations(self) -> int:
        with self._lock:
            return len(self._used)

    def alloc(self, size: int, align: int = PAGE_SIZE) -> tuple[memoryview, int]:
        if size <= 0:
            # dma_alloc_coherent(0) returns NULL: the callers' ENOMEM.
            raise RprocError(errno.ENOMEM, "failed to allocate dma memory")
        align = max(1, align)
        need = page_align(size)
        with self._lock:
            if not self._closed:
                for i, (off, length) in enumerate(self._free):
                    # Alignment is of the bus address, which is what the remote sees.
                    start = off + (-(self.base + off) % align)
                    if start + need > off + length:
                        continue
                    del self._free[i]
                    if start > off:
                        self._free.insert(i, (off, start - off))
                        i += 1
                    tail = off + length - (start + need)
                    if tail:
                        self._free.insert(i, (start + need, tail))
                    self._used[start] = need
                    view = self._view[start : start + size]
                    # dma_alloc_coherent hands out zeroed memory; a recycled block must not
                    # show the previous owner's bytes.
                    view[:] = bytes(size)
                    return view, self.base + start
        raise RprocError(errno.ENOMEM, "failed to allocate dma memory")

    def free(self, dma: int) -> None:
        off = dma - self.base
        with self._lock:
            length = self._used.pop(off, None)
            if length is None:
                raise RprocError(errno.EINVAL, f"dma address {dma:#x} was not allocated here")
            self._free.append((off, length))
            self._free.sort()
            merged: list[tuple[int, int]] = []
            for o, n in self._free:
                if merged and merged[-1][0] + merged[-1][1] == o:
                    merged[-1] = (merged[-1][0], merged[-1][1] + n)
                else:
                    merged.append((o, n))
            self._free = merged

    def owns(self, dma: int) -> bool:
        return self.base <= dma < self.base + self.size

    def pa_to_va(self, pa: int, n: int) -> memoryview | None:
        """Any ``n`` bytes at bus address ``pa`` inside the pool (allocated or not)."""
        off = pa - self.base
        if off < 0 or n < 0 or off + n > self.size:
            return None
        return self._view[off : off + n]

    def close(self) -> None:
        """Forget every allocation; later ``alloc`` calls fail with ENOMEM."""
        with self._lock:
            self._closed = True
            self._used.clear()
            self._free = []


    def __repr__(self) -> str:
        return f"DmaPool({self.name}, base={self.base:#x}, size={self.size:#x})"


@dataclass
class Mapping:
    """One IOMMU mapping (``struct rproc_mem_entry`` on ``rproc->mappings``)."""

    da: int
    pa: int
    len: int
    flags: int = 0

class CarveoutOwner(Protocol):
    """What carveout allocation needs of a processor (an ``Rproc``), so that this module stays
    beneath it: its device name, DMA pool, whether it has an IOMMU and its mapping list."""

    dev_name: str
    dma: DmaPool | None
    has_iommu: bool
    mappings: list[Mapping]


# ---- carveout allocation (§6.2) -----------------------------------------------------------------


def alloc_carveout(rproc: CarveoutOwner, mem: MemEntry) -> None:
    """``rproc_alloc_carveout``: coherent memory from the processor's DMA pool."""
    dev = rproc.dev_name
    pool = rproc.dma
    if pool is None:
        log.error("%s: failed to allocate dma memory: len %#x", dev, mem.len)
        raise RprocError(errno.ENOMEM, "failed to allocate dma memory")
    try:
        va, dma = pool.alloc(mem.len)
    except RprocError:
        log.error("%s: failed to allocate dma memory: len %#x", dev, mem.len)
        raise
    if mem.da != FW_RSC_ADDR_ANY and not rproc.has_iommu:
        # Without an IOMMU the remote sees the bus address; a different request is only
        # warned about and the requested da is kept (the kernel's behaviour).
        if mem.da != (dma & 0xFFFFFFFF):
            log.warning("%s: Allocated carveout doesn't fit device address request", dev)
    elif mem.da != FW_RSC_ADDR_ANY:
        rproc.mappings.append(Mapping(mem.da, dma, mem.len, mem.flags))
    else:
        if dma >> 32:
            log.warning("%s: DMA address cast in 32bit to fit resource table format", dev)
        mem.da = dma & 0xFFFFFFFF
    mem.dma = dma
    mem.va = va


def release_carveout(rproc: CarveoutOwner, mem: MemEntry) -> None:
    """``rproc_release_carveout``: give the memory back to the pool."""
    if mem.va is not None and rproc.dma is not None and rproc.dma.owns(mem.dma):
        try:
            rproc.dma.free(mem.dma)
        except RprocError:
            log.warning(
                "%s: carveout %s was not allocated from the dma pool", rproc.dev_name, mem.name
            )
    mem.va = None
