"""An in-memory platform: remote "processors" that are only memory, for tests and benchmarks.

Owns ``SimPlatform`` (one processor's hardware: ``bytearray`` memories at device addresses, a
``DmaPool``, optional pre-reserved named regions, ops that can be told to fail at any step, and a
call log for ordering asserts), ``RecordingSubdev`` (a subdevice that logs into that call log)
and a tiny firmware container, the *sim image* (``build_image`` / ``parse_image``), so tests need
neither ELF files nor a disk.

Rules:
- The platform only fills an ``RprocOps`` table and calls ``report_crash`` / ``vq_interrupt``,
  like any platform (architecture.md "Platforms -> core"); it never calls lifecycle methods.
- ``fail_at(step, errno)`` arms a failure for the next ``times`` calls of ``step``: an op name
  ("prepare", "start", "stop", "attach", "detach", "load", "parse_fw", "sanity_check",
  "find_loaded_rsc_table", "get_loaded_rsc_table", "unprepare", "kick", "panic") or a
  ``RecordingSubdev`` hook ("<name>.prepare", "<name>.start", ...). Armed failures are consumed
  in order and raised as ``RprocError``.
- Named regions (``regions=[(name, da, size)]``) are reserved from the DMA pool once and
  registered as carveouts in ``prepare`` on every boot, the kernel's DT ``memory-region``
  pattern (the core frees carveout entries at shutdown, so they are re-registered each time).
- With ``elf=True`` the platform leaves ``load`` unset so the core installs the ELF defaults,
  and images are real ELF files; otherwise images are sim images.
- Thread-safety: the call log and failure table are guarded by one leaf lock.

Sim image (little endian): ``b"RPSIMFW1"``, u32 entry, u32 flags (bit 0: has a table), u32
rsc_da (0xFFFFFFFF: the table is not loaded anywhere), u32 rsc_len, u32 nseg, then per segment
u32 da, u32 len, bytes; then rsc_len bytes of table.
"""

from __future__ import annotations

import errno
import mmap
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from remoteproc.closing import Closeable
from remoteproc.core.memory import DmaPool, MemEntry, walk_da
from remoteproc.core.ops import RprocOps
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, Feature, State
from remoteproc.core.subdev import Subdev
from remoteproc.errors import RprocError

__all__ = [
    "SIM_MAGIC",
    "RecordingSubdev",
    "SimImage",
    "SimMemory",
    "SimPlatform",
    "build_image",
    "parse_image",
]

SIM_MAGIC = b"RPSIMFW1"
_HDR = struct.Struct("<8sIIIII")
_HAS_TABLE = 1
_SEG = struct.Struct("<II")
_NO_TABLE = 0xFFFFFFFF


@dataclass
class SimImage:
    entry: int
    segments: list[tuple[int, memoryview]]
    rsc_da: int | None
    rsc_table: memoryview | None


def build_image(
    segments: Sequence[tuple[int, bytes]] = (),
    *,
    rsc_table: bytes | bytearray | None = None,
    rsc_da: int | None = None,
    entry: int = 0,
) -> bytes:
    """A sim image. With ``rsc_da`` the table is also loaded at that device address (so the
    core finds a loaded table there); without it the table only exists in the image."""
    table = bytes(rsc_table or b"")
    flags = _HAS_TABLE if rsc_table is not None else 0
    da = _NO_TABLE if rsc_table is None or rsc_da is None else rsc_da
    out = bytearray(_HDR.pack(SIM_MAGIC, entry, flags, da, len(table), len(segments)))
    for seg_da, data in segments:
        out += _SEG.pack(seg_da, len(data)) + bytes(data)
    out += table
    return bytes(out)


def parse_image(data: bytes | bytearray | memoryview) -> SimImage:
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(view) < _HDR.size or bytes(view[:8]) != SIM_MAGIC:
        raise RprocError(errno.EINVAL, "Image is corrupted (bad magic)")
    _, entry, flags, rsc_da, rsc_len, nseg = _HDR.unpack_from(view, 0)
    pos = _HDR.size
    segments: list[tuple[int, memoryview]] = []
    for _ in range(nseg):
        if pos + _SEG.size > len(view):
            raise RprocError(errno.EINVAL, "truncated sim image")
        da, length = _SEG.unpack_from(view, pos)
        pos += _SEG.size
        if pos + length > len(view):
            raise RprocError(errno.EINVAL, "truncated sim image")
        segments.append((da, view[pos : pos + length]))
        pos += length
    table: memoryview | None = None
    if flags & _HAS_TABLE:
        if pos + rsc_len > len(view):
            raise RprocError(errno.EINVAL, "truncated sim image")
        table = view[pos : pos + rsc_len]
    return SimImage(entry, segments, None if rsc_da == _NO_TABLE else rsc_da, table)


def _anon(size: int) -> mmap.mmap:
    return mmap.mmap(-1, max(size, 1))


@dataclass
class SimMemory:
    """One memory of the simulated processor (TCM, SRAM...): host bytes at a device address."""

    name: str
    da: int
    size: int

    def __post_init__(self) -> None:
        # Anonymous mappings: zero pages that become resident only when touched, like a
        # device's memory window, so hundreds of simulated cores cost what they use.
        self.buf = _anon(self.size)
        self.view = memoryview(self.buf)

    def translate(self, da: int, n: int) -> memoryview | None:
        off = da - self.da
        if off < 0 or n < 0 or off + n > self.size:
            return None
        return self.view[off : off + n]


class RecordingSubdev(Subdev):
    """A subdevice that logs its hooks into the platform's call log (and can be made to fail)."""

    def __init__(self, platform: SimPlatform, name: str) -> None:
        self.platform = platform
        self.name = name

    def prepare(self) -> None:
        self.platform._step(f"{self.name}.prepare")

    def start(self) -> None:
        self.platform._step(f"{self.name}.start")

    def stop(self, crashed: bool) -> None:
        self.platform._step(f"{self.name}.stop({'crashed' if crashed else 'clean'})")

    def unprepare(self) -> None:
        self.platform._step(f"{self.name}.unprepare")


class SimPlatform(Closeable):
    """One simulated processor's hardware and its driver ops."""

    def __init__(
        self,
        name: str = "sim",
        *,
        memories: Sequence[tuple[str, int, int]] = (
            ("tcm", 0x0000_0000, 0x10000),
            ("sram", 0x2000_0000, 0x10000),
        ),
        dma_base: int = 0x8000_0000,
        dma_size: int = 0x40000,
        regions: Sequence[tuple[str, int | None, int]] = (),
        elf: bool = False,
        panic_delay_ms: int = 0,
        can_attach: bool = True,
        can_detach: bool = True,
        can_stop: bool = True,
        vendor_handler: Callable[[Rproc, int, memoryview, int, int], int] | None = None,
    ) -> None:
        self.name = name
        self.memories = [SimMemory(n, da, size) for n, da, size in memories]
        self.dma = DmaPool(memoryview(_anon(dma_size)), dma_base, name=f"{name}-dma")
        self.elf = elf
        self.panic_delay_ms = panic_delay_ms
        self.can_attach = can_attach
        self.can_detach = can_detach
        self.can_stop = can_stop
        self.vendor_handler = vendor_handler
        self.calls: list[str] = []
        self.kicks: list[int] = []
        self.running = False
        self.rproc: Rproc | None = None
        self._lock = threading.Lock()
        self._failures: dict[str, list[RprocError]] = {}
        self._preloaded: SimImage | None = None
        # Named regions are reserved once, like DT reserved-memory.
        self.regions: list[tuple[str, int, memoryview, int]] = []
        for rname, rda, size in regions:
            view, pa = self.dma.alloc(size)
            self.regions.append((rname, pa if rda is None else rda, view, pa))

    # -- failure injection and the call log

    def fail_at(
        self, step: str, code: int = errno.EIO, *, times: int = 1, message: str | None = None
    ) -> None:
        with self._lock:
            self._failures.setdefault(step, []).extend(
                RprocError(code, message or f"injected failure at {step}") for _ in range(times)
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _step(self, step: str) -> None:
        with self._lock:
            self.calls.append(step)
            queue = self._failures.get(step)
            exc = queue.pop(0) if queue else None
        if exc is not None:
            raise exc

    def take_calls(self) -> list[str]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    # -- the ops table

    def ops(self) -> RprocOps:
        ops = RprocOps(
            prepare=self._prepare,
            unprepare=self._unprepare,
            start=self._start,
            stop=self._stop if self.can_stop else None,
            attach=self._attach if self.can_attach else None,
            detach=self._detach if self.can_detach else None,
            kick=self._kick,
            da_to_va=self._da_to_va,
            get_loaded_rsc_table=self._get_loaded_rsc_table,
            panic=self._panic,
            handle_rsc=self.vendor_handler,
        )
        if not self.elf:
            ops.load = self._load
            ops.parse_fw = self._parse_fw
            ops.sanity_check = self._sanity_check
            ops.get_boot_addr = self._get_boot_addr
            ops.find_loaded_rsc_table = self._find_loaded_rsc_table
        return ops

    def make_rproc(
        self,
        name: str | None = None,
        *,
        state: State = State.OFFLINE,
        features: Sequence[Feature] = (),
        **kw: Any,
    ) -> Rproc:
        """An ``Rproc`` driven by this platform (pass ``host=`` to register it at once)."""
        host = kw.pop("host", None)
        rproc = Rproc(
            name or self.name, self.ops(), dma=self.dma, state=state, features=features, **kw
        )
        self.rproc = rproc
        if host is not None:
            host.add(rproc)
        return rproc

    def _prepare(self, rproc: Rproc) -> None:
        self._step("prepare")
        for rname, da, view, pa in self.regions:
            if rproc.find_carveout_by_name(rname) is None:
                rproc.add_carveout(MemEntry(rname, da, len(view), va=view, dma=pa))

    def _unprepare(self, rproc: Rproc) -> None:
        self._step("unprepare")

    def _start(self, rproc: Rproc) -> None:
        self._step("start")
        self.running = True

    def _stop(self, rproc: Rproc) -> None:
        self._step("stop")
        self.running = False

    def _attach(self, rproc: Rproc) -> None:
        self._step("attach")
        self.running = True

    def _detach(self, rproc: Rproc) -> None:
        self._step("detach")

    def _kick(self, rproc: Rproc, notifyid: int) -> None:
        with self._lock:
            self.kicks.append(notifyid)

    def _panic(self, rproc: Rproc) -> int:
        self._step("panic")
        return self.panic_delay_ms

    def translate(self, da: int, n: int) -> memoryview | None:
        for mem in self.memories:
            view = mem.translate(da, n)
            if view is not None:
                return view
        return None

    def _da_to_va(self, rproc: Rproc, da: int, n: int) -> memoryview | None:
        view = self.translate(da, n)
        if view is not None:
            return view
        return walk_da(list(rproc.carveouts), da, n)

    # sim-image ops (installed unless elf=True)

    def _image(self, fw: Any) -> SimImage:
        return parse_image(fw.data)

    def _sanity_check(self, rproc: Rproc, fw: Any) -> None:
        self._step("sanity_check")
        self._image(fw)

    def _get_boot_addr(self, rproc: Rproc, fw: Any) -> int:
        return self._image(fw).entry

    def _parse_fw(self, rproc: Rproc, fw: Any) -> None:
        self._step("parse_fw")
        img = self._image(fw)
        if img.rsc_table is None:
            return
        rproc.cached_table = bytearray(img.rsc_table)
        rproc.table_ptr = memoryview(rproc.cached_table)
        rproc.table_sz = len(rproc.cached_table)

    def _load(self, rproc: Rproc, fw: Any) -> None:
        self._step("load")
        for da, data in self._image(fw).segments:
            dest = rproc.da_to_va(da, len(data))
            if dest is None:
                raise RprocError(errno.EINVAL, f"bad phdr da {da:#x} mem {len(data):#x}", da=da)
            dest[:] = data

    def _find_loaded_rsc_table(self, rproc: Rproc, fw: Any) -> memoryview | None:
        self._step("find_loaded_rsc_table")
        img = self._image(fw)
        if img.rsc_table is None or img.rsc_da is None:
            return None
        return rproc.da_to_va(img.rsc_da, len(img.rsc_table))

    # -- a boot loader: for DETACHED processors

    def preload(self, image: bytes) -> None:
        """Do what a boot loader does before Linux: copy the image (and its table) into the
        processor's own memories and mark it running. Use with ``state=State.DETACHED``."""
        img = parse_image(image)
        for da, data in img.segments:
            dest = self.translate(da, len(data))
            if dest is None:
                raise RprocError(errno.EINVAL, f"preload: da {da:#x} is not in a sim memory")
            dest[:] = data
        if img.rsc_table is not None and img.rsc_da is not None:
            dest = self.translate(img.rsc_da, len(img.rsc_table))
            if dest is None:
                raise RprocError(errno.EINVAL, "preload: table da is not in a sim memory")
            dest[:] = img.rsc_table
        self._preloaded = img
        self.running = True

    def _get_loaded_rsc_table(self, rproc: Rproc) -> memoryview | None:
        self._step("get_loaded_rsc_table")
        img = self._preloaded
        if img is None or img.rsc_table is None or img.rsc_da is None:
            return None
        return self.translate(img.rsc_da, len(img.rsc_table))

    # -- the remote side

    def crash(self, crash_type: CrashType | int = CrashType.FATAL_ERROR) -> None:
        if self.rproc is not None:
            self.rproc.report_crash(crash_type)

    def remote_kick(self, notifyid: int) -> bool:
        return self.rproc.vq_interrupt(notifyid) if self.rproc is not None else False

    def close(self) -> None:
        self.dma.close()

