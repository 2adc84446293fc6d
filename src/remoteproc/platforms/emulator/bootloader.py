"""The simulated boot loader: puts an ELF image into a core's memory and starts it, before (and
independently of) the host's remoteproc core, so the processor registers DETACHED.

Owns ``load_elf`` (PT_LOAD segments copied to their physical addresses through the core's own
address view, the tail up to ``p_memsz`` zeroed; returns the entry point) and ``BootLoader``
(keeps the image of each core it booted, so the platform can restart a core the way a boot
loader or an autonomous recovery would, without the host providing firmware).

The core's address view includes the whole shared DDR, and with it the host's DMA pool, where
every processor's carveouts, vrings and rpmsg buffers live. A segment there is refused (as the
platform's ``da_to_va`` refuses it to the host's loader): loading it, or reloading it at an
attach recovery, would overwrite other processors' rings while they run. The platform passes
such windows as ``reserved``.

Rules:
- Deliberately independent of the project's ELF loader: this is "another piece of software"
  (U-Boot, TF-A) in the story of seeds 000/001, and must not share the host's bugs.
- Errors are ``RprocError(EINVAL)`` naming the image and the program header. Every segment is
  checked before the first byte is written: a refused image leaves memory as it was.
- No threads; starting the core is the core's business (``Core.start``).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Sequence

from remoteproc.errors import RprocError

__all__ = ["BootLoader", "elf_entry", "load_elf"]

PT_LOAD = 1

Translate = Callable[[int, int], "memoryview | None"]
Reserved = Sequence[tuple[str, int, int]]  # (what, base, size): windows no segment may touch


def _header(image: bytes, name: str) -> tuple[str, int, int, int, int, int]:
    if len(image) < 52 or image[:4] != b"\x7fELF":
        raise RprocError(errno.EINVAL, "not an ELF image", file=name)
    cls, data = image[4], image[5]
    if data != 1:
        raise RprocError(errno.EINVAL, "only little-endian images boot here", file=name)
    if cls == 1:
        entry, phoff = struct.unpack_from("<II", image, 24)
        phentsize, phnum = struct.unpack_from("<HH", image, 42)
        return "<", 32, entry, phoff, phentsize, phnum
    if cls == 2:
        if len(image) < 64:
            raise RprocError(errno.EINVAL, "truncated ELF64 header", file=name)
        entry, phoff = struct.unpack_from("<QQ", image, 24)
        phentsize, phnum = struct.unpack_from("<HH", image, 54)
        return "<", 64, entry, phoff, phentsize, phnum
    raise RprocError(errno.EINVAL, f"unknown ELF class {cls}", file=name)


def elf_entry(image: bytes, name: str = "image") -> int:
    return _header(image, name)[2]


def load_elf(image: bytes, translate: Translate, name: str = "image",
             reserved: Reserved = ()) -> int:
    """Copy every PT_LOAD segment to ``p_paddr`` via ``translate(da, n)``; returns e_entry.

    A segment overlapping a ``reserved`` window, or outside the core's memory, is refused
    before anything is written.
    """
    _, bits, entry, phoff, phentsize, phnum = _header(image, name)
    copies: list[tuple[memoryview, int, int, int]] = []  # (destination, offset, filesz, memsz)
    for i in range(phnum):
        off = phoff + i * phentsize
        if bits == 32:
            if off + 32 > len(image):
                raise RprocError(errno.EINVAL, "program header past the end", file=name,
                                 index=i, what="program header")
            p_type, p_offset, _vaddr, paddr, filesz, memsz = struct.unpack_from(
                "<IIIIII", image, off)
        else:
            if off + 56 > len(image):
                raise RprocError(errno.EINVAL, "program header past the end", file=name,
                                 index=i, what="program header")
            p_type, _flags, p_offset, _vaddr, paddr, filesz, memsz = struct.unpack_from(
                "<IIQQQQQ", image, off)
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz or p_offset + filesz > len(image):
            raise RprocError(errno.EINVAL, "segment size is out of the image", file=name,
                             index=i, what="program header")
        for what, base, size in reserved:
            if paddr < base + size and base < paddr + memsz:
                raise RprocError(errno.EINVAL, f"segment [{paddr:#x}, {paddr + memsz:#x}) "
                                 f"overlaps {what} [{base:#x}, {base + size:#x})", file=name,
                                 index=i, da=paddr, what="program header")
        dst = translate(paddr, memsz)
        if dst is None:
            raise RprocError(errno.EINVAL, f"segment does not fit the core's memory "
                             f"({memsz:#x} bytes)", file=name, index=i, da=paddr,
                             what="program header")
        copies.append((dst, p_offset, filesz, memsz))
    for dst, p_offset, filesz, memsz in copies:
        dst[:filesz] = image[p_offset : p_offset + filesz]
        if memsz > filesz:
            dst[filesz:] = bytes(memsz - filesz)
    return entry


class BootLoader:
    """Remembers what it booted on each core so a restart needs no host firmware."""

    def __init__(self, reserved: Reserved = ()) -> None:
        self.images: dict[str, tuple[str, bytes]] = {}
        self.reserved = tuple(reserved)

    def boot(self, core_name: str, name: str, image: bytes, translate: Translate) -> int:
        """Load ``image`` for ``core_name``; returns the entry point (the caller starts it)."""
        entry = load_elf(image, translate, name, self.reserved)
        self.images[core_name] = (name, image)
        return entry

    def reload(self, core_name: str, translate: Translate) -> int:
        """Load the image booted last time on ``core_name`` again (a reset by the loader)."""
        if core_name not in self.images:
            raise RprocError(errno.ENOENT, f"{core_name}: the boot loader never booted it")
        name, image = self.images[core_name]
        return load_elf(image, translate, name, self.reserved)

    def forget(self, core_name: str) -> None:
        self.images.pop(core_name, None)
