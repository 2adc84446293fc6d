"""Device memory of the virtual SoC: host memory the emulated cores execute from, no copies.

Owns ``HostMemory`` (one anonymous ``mmap`` with its host address, what unicorn's
``mem_map_ptr`` maps), ``Region`` (a named window of device addresses backed by a slice of host
memory), ``AddressMap`` (one core's own view: its private TCM/SRAM plus the shared DDR window)
and ``SharedDdr`` (the DDR every core and the host map, with a ``DmaPool`` over its upper half).

Rules:
- The host and the core see the same bytes: ``AddressMap.translate`` returns a ``memoryview``
  slice of the very memory unicorn executes from, so vrings, resource tables and trace buffers
  are read and written in place (docs/virtual-soc.md "Memory map").
- Sizes and device addresses are page aligned (4 KiB), as unicorn requires; ``AddressMap``
  refuses overlapping regions with ``RprocError(EINVAL)``.
- ``close()`` releases the mapping. Views still held elsewhere (a rproc's carveout, a test)
  keep the buffer alive: closing then only drops our references, the mapping is freed when the
  last view goes (``mmap.close`` would raise ``BufferError``).
- No locks: the maps are built once and are read-only afterwards; concurrent access to the
  bytes themselves is the firmware's and the host's business, as on a real SoC.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
from collections.abc import Iterator
from dataclasses import dataclass

from remoteproc.closing import Closeable
from remoteproc.core.memory import DmaPool
from remoteproc.errors import RprocError

__all__ = ["PAGE", "AddressMap", "HostMemory", "Region", "SharedDdr"]

PAGE = 0x1000


class HostMemory(Closeable):
    """``size`` bytes of zeroed anonymous host memory, with the address unicorn maps."""

    def __init__(self, size: int, *, name: str = "mem") -> None:
        if size <= 0 or size % PAGE:
            raise RprocError(errno.EINVAL, f"{name}: size {size:#x} is not a positive multiple "
                                           "of 4 KiB")
        self.name = name
        self.size = size
        self._mmap: mmap.mmap | None = mmap.mmap(-1, size)
        self._anchor: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * size).from_buffer(
            self._mmap
        )
        self.address = ctypes.addressof(self._anchor)
        self.view: memoryview = memoryview(self._mmap)

    def close(self) -> None:
        if self._mmap is None:
            return
        mm, self._mmap = self._mmap, None
        self._anchor = None
        self.view.release()
        # Views handed out earlier keep the buffer exported: leave the unmap to the GC then.
        with contextlib.suppress(BufferError):
            mm.close()



@dataclass(frozen=True)
class Region:
    """Device addresses ``[da, da + size)`` backed by ``view`` (host address ``host_addr``)."""

    name: str
    da: int
    size: int
    view: memoryview
    host_addr: int
    shared: bool = False  # the DDR window every core and the host map

    @property
    def end(self) -> int:
        return self.da + self.size

    def contains(self, da: int, n: int) -> bool:
        return self.da <= da and da + n <= self.end and n >= 0


class AddressMap:
    """One core's memory: private regions and shared windows, by device address."""

    def __init__(self, regions: list[Region] | None = None) -> None:
        self._regions: list[Region] = []
        for r in regions or []:
            self.add(r)

    def add(self, region: Region) -> None:
        if region.da % PAGE or region.size % PAGE or region.size <= 0:
            raise RprocError(errno.EINVAL, f"region {region.name} is not page aligned",
                             da=region.da)
        for r in self._regions:
            if region.da < r.end and r.da < region.end:
                raise RprocError(errno.EINVAL,
                                 f"region {region.name} overlaps {r.name}", da=region.da)
        self._regions.append(region)
        self._regions.sort(key=lambda r: r.da)

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions)

    def find(self, name: str) -> Region | None:
        for r in self._regions:
            if r.name == name:
                return r
        return None

    def region_at(self, da: int) -> Region | None:
        for r in self._regions:
            if r.da <= da < r.end:
                return r
        return None

    def translate(self, da: int, n: int) -> memoryview | None:
        """The ``n`` bytes at device address ``da`` as a writable view, or None if unmapped."""
        for r in self._regions:
            if r.contains(da, n):
                off = da - r.da
                return r.view[off : off + n]
        return None


class SharedDdr(Closeable):
    """The DDR window: host physical address == device address; a DMA pool over part of it."""

    def __init__(self, base: int, size: int, *, dma_base: int | None = None,
                 dma_size: int | None = None) -> None:
        if dma_base is None:
            dma_base = base + size // 2
        if dma_size is None:
            dma_size = base + size - dma_base
        if not (base <= dma_base and dma_base + dma_size <= base + size and dma_size > 0):
            raise RprocError(errno.EINVAL, "the DMA pool must lie inside the DDR window",
                             da=dma_base)
        self.base = base
        self.size = size
        self.memory = HostMemory(size, name="ddr")
        self.region = Region("ddr", base, size, self.memory.view, self.memory.address,
                             shared=True)
        off = dma_base - base
        self.dma = DmaPool(self.memory.view[off : off + dma_size], dma_base, name="ddr-dma")

    def translate(self, pa: int, n: int) -> memoryview | None:
        """The host's own mapping of DDR (``pa`` is the physical == device address)."""
        return self.region.view[pa - self.base : pa - self.base + n] if self.region.contains(
            pa, n) else None

    def close(self) -> None:
        self.dma.close()
        self.memory.close()

