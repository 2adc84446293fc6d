"""Loading an ELF image into device memory: the loading half of the kernel's
``remoteproc_elf_loader.c`` (spec §4.2-§4.4).

Owns ``load_segments`` (§4.3), ``get_boot_addr`` (§4.2), ``load_rsc_table`` and
``find_loaded_rsc_table`` (§4.4), and their op-shaped wrappers ``rproc_elf_*`` that the core
installs when a platform has no ``load`` op (§1.10). Reading and validating an image is
``firmware/elf.py``'s.

Rules:
- Loading never copies more than the bytes moved: segment bytes go from a view of the image
  straight into the device view; zero fill is written from a small shared zero buffer.
- Nothing is written outside the views the caller's translation returned.
- The op-shaped wrappers log each refusal on ``remoteproc.elf`` before raising it, as the
  kernel's loader ``dev_err``s: the errno alone does not tell a user what is wrong.
- Import cost matters: logging is imported when something is logged.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from remoteproc.errors import RprocError
from remoteproc.firmware.elf import (
    ElfImage,
    Firmware,
    Segment,
    as_firmware,
    check_parsed,
    find_rsc_table,
    locate_rsc_table,
    lookup_errors,
)
from remoteproc.firmware.elf_layout import (
    PT_LOAD,
    SIZE_MAX,
)

if TYPE_CHECKING:
    import logging

__all__ = [
    "LoadTarget",
    "find_loaded_rsc_table",
    "get_boot_addr",
    "load_rsc_table",
    "load_segments",
    "rproc_elf_find_loaded_rsc_table",
    "rproc_elf_get_boot_addr",
    "rproc_elf_load_rsc_table",
    "rproc_elf_load_segments",
    "rproc_elf_sanity_check",
]


class LoadTarget(Protocol):
    """What the ``rproc_elf_*`` ops use of a processor (the core's ``Rproc``): its names, its
    device-address translation and the cached resource table they fill in."""

    @property
    def dev_name(self) -> str: ...
    @property
    def firmware(self) -> str: ...

    cached_table: bytearray | None
    table_ptr: memoryview | None
    table_sz: int

    def da_to_va(self, da: int, length: int) -> memoryview | None: ...


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("remoteproc.elf")


_ZEROS_SIZE = 1 << 18
_zeros: list[memoryview] = []


def _zero_fill(view: memoryview, start: int, end: int) -> None:
    """Zero ``view[start:end]`` without allocating a buffer of that size."""
    n = end - start
    if n <= 4096:
        view[start:end] = bytes(n)
        return
    if not _zeros:
        _zeros.append(memoryview(bytes(_ZEROS_SIZE)))
    zeros = _zeros[0]
    while start < end:
        k = min(end - start, _ZEROS_SIZE)
        view[start : start + k] = zeros[:k]
        start += k


DaToVa = Callable[[int, int], "memoryview | None"]


def _device_view(
    da_to_va: DaToVa, da: int, length: int, file: str | None, index: int | None, what: str
) -> memoryview | None:
    """Call the caller's translation and hold it to its contract: a writable flat view of
    exactly ``length`` bytes, or None. A view of another length is refused, never written."""
    if length > sys.maxsize:
        # No view this long can exist in this process: the same outcome as a translation
        # that finds nothing (the kernel's da_to_va returning NULL).
        return None
    got = da_to_va(da, length)
    if got is None:
        return None
    try:
        view = got if isinstance(got, memoryview) else memoryview(got)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
    except (TypeError, ValueError):
        raise RprocError(
            errno.EINVAL, "da_to_va returned no byte buffer", file=file, index=index, da=da,
            what=what,
        ) from None  # fmt: skip
    if view.nbytes != length or view.readonly:
        raise RprocError(
            errno.EINVAL,
            f"da_to_va returned a {'read-only ' if view.readonly else ''}view of "
            f"{view.nbytes:#x} bytes for a request of {length:#x}",
            file=file,
            index=index,
            da=da,
            what=what,
        )
    return view


def _phdr_entries(img: ElfImage) -> Iterator[Segment]:
    """The program headers in order; one past the image end stops with the error (the kernel
    would read it from outside the image)."""
    yield from img.segments
    if len(img.segments) < img.phnum:
        i = len(img.segments)
        off = img.phoff + i * img.phdr_size
        raise RprocError(
            errno.EINVAL,
            f"program header at offset {off:#x} lies past the end of the image "
            f"({img.size:#x} bytes)",
            file=img.file,
            index=i,
            offset=off,
            what="program header",
        )


def load_segments(fw: Firmware, da_to_va: DaToVa, *, size_max: int = SIZE_MAX) -> None:
    """§4.3: copy every PT_LOAD segment to ``p_paddr`` through ``da_to_va(da, memsz)`` and
    zero-fill ``[filesz, memsz)``. The first error stops; segments already copied stay.
    ``size_max`` is the host's SIZE_MAX (``2**32 - 1`` emulates a 32-bit kernel)."""
    fw = as_firmware(fw)
    img = fw.elf
    src = fw.view
    file = fw.name
    fsize = src.nbytes
    what = "program header"
    for seg in _phdr_entries(img):
        if seg.type != PT_LOAD:
            continue
        i = seg.index
        da = seg.paddr
        filesz = seg.filesz
        memsz = seg.memsz
        offset = seg.offset
        if filesz > memsz:
            raise RprocError(
                errno.EINVAL,
                f"bad phdr filesz {filesz:#x} memsz {memsz:#x}",
                file=file, index=i, offset=seg.header_offset, da=da, what=what,
            )  # fmt: skip
        if offset + filesz > fsize:
            raise RprocError(
                errno.EINVAL,
                f"truncated fw: need {offset + filesz:#x} avail {fsize:#x}",
                file=file, index=i, offset=seg.header_offset, da=da, what=what,
            )  # fmt: skip
        if memsz > size_max:
            raise RprocError(
                errno.EOVERFLOW,
                f"size ({memsz:x}) does not fit in size_t type",
                file=file, index=i, offset=seg.header_offset, da=da, what=what,
            )  # fmt: skip
        view = _device_view(da_to_va, da, memsz, file, i, what)
        if view is None:
            raise RprocError(
                errno.EINVAL,
                f"bad phdr da {da:#x} mem {memsz:#x}",
                file=file, index=i, offset=seg.header_offset, da=da, what=what,
            )  # fmt: skip
        if filesz:
            view[:filesz] = src[offset : offset + filesz]
        if memsz > filesz:
            _zero_fill(view, filesz, memsz)


def get_boot_addr(fw: Firmware) -> int:
    """§4.2: ``e_entry``."""
    return as_firmware(fw).elf.entry


# --- §4.4 resource table ---------------------------------------------------------------------


def load_rsc_table(fw: Firmware) -> bytearray:
    """``rproc_elf_load_rsc_table``: a copy of the table; EINVAL when there is no valid one."""
    fw = as_firmware(fw)
    table = find_rsc_table(fw)
    if table is None:
        errs = lookup_errors(locate_rsc_table(fw))
        if errs:
            f = errs[0]
            raise RprocError(
                errno.EINVAL, f.message, file=fw.name, index=f.index, offset=f.offset, what=f.what
            )
        raise RprocError(errno.EINVAL, "no resource table found", file=fw.name)
    return bytearray(fw.view[table.offset : table.offset + table.size])


def find_loaded_rsc_table(
    fw: Firmware, da_to_va: DaToVa, *, size_max: int = SIZE_MAX
) -> memoryview | None:
    """``rproc_elf_find_loaded_rsc_table``: the table in device memory (``sh_addr``,
    ``sh_size`` through the translation), or None."""
    fw = as_firmware(fw)
    table = find_rsc_table(fw)
    if table is None:
        return None
    if table.size > size_max:
        # The kernel refuses a sh_size that does not fit size_t ("no loaded table").
        return None
    return _device_view(da_to_va, table.addr, table.size, fw.name, table.index, "section")


# --- every finding, for `rproc fw check` -----------------------------------------------------


def _log_refusal(rproc: LoadTarget, exc: RprocError) -> None:
    """The loader's ``dev_err``: what is wrong and where, on the processor's device name (the
    refusal itself reaches the user only as an errno)."""
    dev = getattr(rproc, "dev_name", None) or getattr(rproc, "name", None) or "remoteproc"
    _logger().error("%s: %s", dev, str(exc))


def rproc_elf_sanity_check(rproc: LoadTarget, fw: Firmware | None) -> None:
    try:
        if fw is None:
            name = getattr(rproc, "firmware", None)
            raise RprocError(errno.EINVAL, f"failed to load {name}", file=name)
        check_parsed(fw.elf)
    except RprocError as exc:
        _log_refusal(rproc, exc)
        raise


def rproc_elf_load_segments(rproc: LoadTarget, fw: Firmware) -> None:
    try:
        load_segments(fw, rproc.da_to_va)
    except RprocError as exc:
        _log_refusal(rproc, exc)
        raise


def rproc_elf_load_rsc_table(rproc: LoadTarget, fw: Firmware) -> None:
    try:
        table = load_rsc_table(fw)
    except RprocError as exc:
        if not lookup_errors(locate_rsc_table(fw)):  # those were logged by find_rsc_table
            _log_refusal(rproc, exc)
        raise
    rproc.cached_table = table
    rproc.table_ptr = memoryview(table)
    rproc.table_sz = len(table)


def rproc_elf_find_loaded_rsc_table(rproc: LoadTarget, fw: Firmware) -> memoryview | None:
    return find_loaded_rsc_table(fw, rproc.da_to_va)


def rproc_elf_get_boot_addr(rproc: LoadTarget, fw: Firmware) -> int:
    return get_boot_addr(fw)
