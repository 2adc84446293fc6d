"""Coredumps of a crashed remote processor: the ELF core writer and the dump modes.

This module owns the kernel's ``remoteproc_coredump.c`` (spec §7); the dumps wait for userspace
in ``core/devcoredump.py`` (``/sys/class/devcoredump/devcdN``).

Rules:
- The core calls ``ops.coredump(rproc)`` once per recovery (§1.9), after the processor has been
  stopped and while it holds the processor's lock. The default op is ``rproc_coredump``; drivers
  may install ``rproc_coredump_using_sections`` instead (§7.4).
- Segments are described by ``rproc.dump_segments`` (``add_segment`` / ``add_custom_segment``,
  usually from ``parse_fw``); ``cleanup`` empties the list, so they are re-added on every boot.
  The ELF class and machine are set by the driver (``set_elf_info``): the core never guesses them.
- Layout is exactly the kernel's: ``EI_DATA`` is always ELFDATA2LSB and every field little endian
  (the kernel writes host-endian fields and always claims LSB; our host byte order is irrelevant,
  we write LSB so the claim is true), one PT_LOAD per segment with ``p_flags`` = RWX and
  ``p_align`` = 0, segment bytes packed right after the headers in list order. A segment whose
  memory cannot be translated is filled with 0xFF.
- ENABLED builds the whole core in host memory and hands it to the store. INLINE allocates only
  the headers; the store serves segment bytes live from device memory as userspace reads, and
  ``rproc_coredump`` blocks (holding up recovery, as the kernel does) until the dump is released.
- Device memory is reached only through ``rproc.da_to_va(da, n)`` or a segment's own ``dump``
  function. INLINE reads run in the reader's thread while the crash handler holds the
  processor's lock, so ``da_to_va`` and dump functions must not take that lock.

The ``rproc`` argument is duck-typed (the core's ``Rproc`` or a test double) with: ``name``,
``dump_segments: list[DumpSegment]``, ``dump_conf: DumpConf``, ``elf_class``, ``elf_machine``,
``bootaddr``, ``da_to_va(da, n) -> memoryview | None``, ``crash_regs: dict | None`` and
``coredump_store: CoredumpStore``.

Deliberate differences from the kernel:
- Registers (our extension): when the platform supplies ``rproc.crash_regs`` (a dict with
  ``"arch"`` and register values), a PT_NOTE holding an ``NT_PRSTATUS`` note in the Linux layout
  for that architecture is placed before the PT_LOADs, so gdb shows the registers and a
  backtrace. Without ``crash_regs`` the output is byte for byte the kernel's.
- The store's own differences from devcoredump are listed in ``core/devcoredump.py``.
"""

from __future__ import annotations

import enum
import errno
import logging
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from remoteproc.core.devcoredump import CoredumpStore
from remoteproc.errors import RprocError
from remoteproc.firmware.elf_layout import (
    ELFCLASS32,
    ELFCLASS64,
    ELFCLASSNONE,
    ELFDATA2LSB,
    ELFMAG,
    ELFOSABI_NONE,
    ET_CORE,
    EV_CURRENT,
    NT_PRSTATUS,
    PF_R,
    PF_W,
    PF_X,
    PT_LOAD,
    PT_NOTE,
    SHF_WRITE,
    SHT_PROGBITS,
    SHT_STRTAB,
    layout,
    nhdr,
)

__all__ = [
    "ELFCLASS32",
    "ELFCLASS64",
    "ELFCLASSNONE",
    "DumpConf",
    "DumpSegment",
    "add_custom_segment",
    "add_segment",
    "cleanup",
    "encode_prstatus",
    "rproc_coredump",
    "rproc_coredump_using_sections",
    "set_elf_info",
]

log = logging.getLogger("remoteproc")

# The core's Rproc, duck-typed (see the module docstring) so this module never imports the core.
Rproc = Any



class DumpConf(enum.Enum):
    """``enum rproc_dump_mechanism``; the values are the sysfs/debugfs strings (§7.1)."""

    DISABLED = "disabled"
    ENABLED = "enabled"
    INLINE = "inline"

    @classmethod
    def parse(cls, text: str) -> DumpConf:
        """``"inline"`` -> ``DumpConf.INLINE``; the ABI layer strips newlines and prefixes."""
        for conf in cls:
            if conf.value == text:
                return conf
        raise RprocError(errno.EINVAL, "Invalid coredump configuration")


# (rproc, segment, destination view of exactly ``size`` bytes, offset in the segment, size)
DumpFn = Callable[[Rproc, "DumpSegment", memoryview, int, int], None]


@dataclass
class DumpSegment:
    """``struct rproc_dump_segment``: ``size`` bytes of device memory at ``da``.

    ``dump`` replaces the default copy through ``da_to_va``; ``priv`` is the driver's cookie (the
    section name for ``rproc_coredump_using_sections``: ``str`` or NUL-terminated ``bytes``).
    """

    da: int
    size: int
    dump: DumpFn | None = None
    priv: object = None


# --- segment list (§7.2) --------------------------------------------------------------------


def add_segment(rproc: Rproc, da: int, size: int) -> None:
    """``rproc_coredump_add_segment``: dump ``size`` bytes at ``da`` through ``da_to_va``."""
    _check_segment(da, size)
    rproc.dump_segments.append(DumpSegment(da, size))


def add_custom_segment(
    rproc: Rproc, da: int, size: int, dumpfn: DumpFn, priv: object = None
) -> None:
    """``rproc_coredump_add_custom_segment``: ``dumpfn`` produces the segment's bytes."""
    _check_segment(da, size)
    rproc.dump_segments.append(DumpSegment(da, size, dumpfn, priv))


def set_elf_info(rproc: Rproc, elf_class: int, machine: int) -> None:
    """``rproc_coredump_set_elf_info``: ``elf_class`` must be ELFCLASS32 or ELFCLASS64."""
    if elf_class not in (ELFCLASS32, ELFCLASS64):
        raise RprocError(errno.EINVAL, f"invalid ELF class {elf_class}")
    rproc.elf_class = elf_class
    rproc.elf_machine = machine


def cleanup(rproc: Rproc) -> None:
    """``rproc_coredump_cleanup``: forget every segment (run by the resource cleanup)."""
    rproc.dump_segments.clear()


def _check_segment(da: int, size: int) -> None:
    if da < 0 or size < 0:
        raise RprocError(errno.EINVAL, f"invalid dump segment da {da:#x} size {size:#x}")


# --- ELF layouts (firmware/elf_layout.py); a core is always little endian ------------------

_LE = "<"
_NHDR = nhdr(_LE)
_PF_RWX = PF_R | PF_W | PF_X
_STR_TBL = b"STR_TBL"


def _addr(elf_class: int, value: int) -> int:
    """The kernel's setters truncate a value to the field width of the class; so do we."""
    return value & (0xFFFFFFFF if elf_class == ELFCLASS32 else 0xFFFFFFFFFFFFFFFF)


def _pack_ehdr(
    elf_class: int,
    machine: int,
    entry: int,
    *,
    phoff: int = 0,
    phnum: int = 0,
    shoff: int = 0,
    shnum: int = 0,
    shstrndx: int = 0,
) -> bytes:
    ident = ELFMAG + bytes([elf_class, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE])
    ehdr = layout(elf_class, _LE).ehdr
    return ehdr.pack(
        ident.ljust(16, b"\0"),
        ET_CORE,
        machine & 0xFFFF,
        EV_CURRENT,
        _addr(elf_class, entry),
        phoff,
        shoff,
        0,  # e_flags
        ehdr.size,
        layout(elf_class, _LE).phdr.size if phnum else 0,
        phnum,
        layout(elf_class, _LE).shdr.size if shnum else 0,
        shnum,
        shstrndx,
    )


def _pack_phdr(
    elf_class: int, p_type: int, flags: int, offset: int, vaddr: int, size: int, align: int
) -> bytes:
    vaddr = _addr(elf_class, vaddr)
    size = _addr(elf_class, size)
    phdr = layout(elf_class, _LE).phdr
    if elf_class == ELFCLASS32:
        return phdr.pack(p_type, offset, vaddr, vaddr, size, size, flags, align)
    return phdr.pack(p_type, flags, offset, vaddr, vaddr, size, size, align)


def _pack_shdr(
    elf_class: int, name: int, sh_type: int, flags: int, addr: int, offset: int, size: int
) -> bytes:
    return layout(elf_class, _LE).shdr.pack(
        name, sh_type, flags, _addr(elf_class, addr), offset, _addr(elf_class, size), 0, 0, 0, 0
    )


# --- NT_PRSTATUS (our extension) --------------------------------------------------------------


@dataclass(frozen=True)
class _Prstatus:
    """Where Linux's ``struct elf_prstatus`` keeps what gdb reads, for one architecture.

    gdb (BFD) recognises the note by its exact size, then takes ``pr_cursig``, ``pr_pid`` and
    the ``pr_reg`` block (``elf_gregset_t``: ``len(regs)`` words in this order).
    """

    elf_class: int
    size: int
    pid_offset: int
    reg_offset: int
    regs: tuple[str, ...]
    aliases: Mapping[str, str]

    @property
    def word(self) -> int:
        return 4 if self.elf_class == ELFCLASS32 else 8


_RISCV_ABI_NAMES = [
    *("zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1"),
    *(f"a{i}" for i in range(8)),
    *(f"s{i}" for i in range(2, 12)),
    *(f"t{i}" for i in range(3, 7)),
]
_RISCV_REGS = ("pc", *(f"x{i}" for i in range(1, 32)))
_RISCV_ALIASES = {name: f"x{i}" for i, name in enumerate(_RISCV_ABI_NAMES) if i} | {"fp": "x8"}

# Sizes and offsets follow from the generic elf_prstatus layout: elf_siginfo (3 ints),
# pr_cursig (short), pr_sigpend/pr_sighold (long), four pid_t, four struct timeval, pr_reg,
# pr_fpvalid (int), padded to the struct's alignment.
_PRSTATUS: dict[tuple[str, int], _Prstatus] = {
    ("arm", ELFCLASS32): _Prstatus(
        ELFCLASS32,
        148,
        24,
        72,
        (*(f"r{i}" for i in range(16)), "cpsr", "orig_r0"),
        {"sp": "r13", "lr": "r14", "pc": "r15", "xpsr": "cpsr", "fp": "r11", "ip": "r12"},
    ),
    ("aarch64", ELFCLASS64): _Prstatus(
        ELFCLASS64,
        392,
        32,
        112,
        (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate"),
        {"cpsr": "pstate", "fp": "x29", "lr": "x30"},
    ),
    ("riscv", ELFCLASS32): _Prstatus(ELFCLASS32, 204, 24, 72, _RISCV_REGS, _RISCV_ALIASES),
    ("riscv", ELFCLASS64): _Prstatus(ELFCLASS64, 376, 32, 112, _RISCV_REGS, _RISCV_ALIASES),
}
_NOTE_KEYS = frozenset({"arch", "signal"})


def encode_prstatus(elf_class: int, regs: Mapping[str, object]) -> bytes:
    """A complete ``CORE``/``NT_PRSTATUS`` note for ``regs`` (``crash_regs``).

    ``regs["arch"]`` is ``"arm"`` (ELFCLASS32), ``"aarch64"`` (ELFCLASS64) or ``"riscv"`` (either
    class: the width follows the core's class). Register names are the architecture's (``r0``..
    ``r15``, ``cpsr``; ``x0``..; ``pc``, ``x1``..``x31``) or their usual aliases (``sp``, ``lr``,
    ``xpsr``, ``ra``, ``a0``...); registers not given are 0. ``regs["signal"]`` (optional) becomes
    ``pr_cursig``, the signal gdb says the program terminated with.
    """
    arch = regs.get("arch")
    layout = _PRSTATUS.get((str(arch), elf_class))
    if layout is None:
        raise RprocError(
            errno.EINVAL, f"no register note for arch {arch!r} in ELF class {elf_class}"
        )
    words = dict.fromkeys(layout.regs, 0)
    limit = 1 << (8 * layout.word)
    for key, value in regs.items():
        if key in _NOTE_KEYS:
            continue
        name = layout.aliases.get(key, key)
        if name not in words:
            raise RprocError(errno.EINVAL, f"unknown {arch} register {key!r}")
        if not isinstance(value, int) or not 0 <= value < limit:
            raise RprocError(errno.EINVAL, f"register {key} value {value!r} out of range")
        words[name] = value
    signal = regs.get("signal", 0)
    if not isinstance(signal, int) or not 0 <= signal < 0x8000:
        raise RprocError(errno.EINVAL, f"invalid signal {signal!r}")

    desc = bytearray(layout.size)
    struct.pack_into("<i", desc, 0, signal)  # pr_info.si_signo
    struct.pack_into("<h", desc, 12, signal)  # pr_cursig
    struct.pack_into("<i", desc, layout.pid_offset, 1)  # pr_pid: gdb names the thread "LWP 1"
    fmt = f"<{len(layout.regs)}{'I' if layout.word == 4 else 'Q'}"
    struct.pack_into(fmt, desc, layout.reg_offset, *(words[r] for r in layout.regs))
    owner = b"CORE\0"
    return _NHDR.pack(len(owner), len(desc), NT_PRSTATUS) + _pad4(owner) + _pad4(bytes(desc))


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


# --- building a core --------------------------------------------------------------------------


@dataclass(frozen=True)
class _CoreImage:
    """A core as the header bytes (host memory) followed by the segments (device memory)."""

    header: bytes
    segments: tuple[DumpSegment, ...]

    @property
    def size(self) -> int:
        return len(self.header) + sum(seg.size for seg in self.segments)


def _dev_name(rproc: Rproc) -> str:
    """The name kernel log lines start with (``remoteproc0``), as the core logs it."""
    return str(getattr(rproc, "dev_name", rproc.name))


def _should_dump(rproc: Rproc) -> bool:
    """§7.3 step 1, shared by both writers."""
    if not rproc.dump_segments or rproc.dump_conf is DumpConf.DISABLED:
        return False
    if rproc.elf_class == ELFCLASSNONE:
        log.error("%s: ELF class is not set", _dev_name(rproc))
        return False
    return True


def _register_note(rproc: Rproc) -> bytes:
    regs = getattr(rproc, "crash_regs", None)
    if regs is None:
        return b""
    try:
        return encode_prstatus(rproc.elf_class, regs)
    except RprocError as exc:
        # A bad register set must not cost the user the memory dump itself.
        log.error("%s: crash registers left out of the coredump: %s", _dev_name(rproc), exc)
        return b""


def _program_header_core(rproc: Rproc) -> _CoreImage:
    """§7.3 steps 3-4: ELF header, [PT_NOTE,] one PT_LOAD per segment, [note bytes]."""
    cls = rproc.elf_class
    segments = tuple(rproc.dump_segments)
    note = _register_note(rproc)
    phnum = len(segments) + (1 if note else 0)
    ehsize = layout(cls, _LE).ehdr.size
    offset = ehsize + phnum * layout(cls, _LE).phdr.size
    parts = [_pack_ehdr(cls, rproc.elf_machine, rproc.bootaddr, phoff=ehsize, phnum=phnum)]
    if note:
        parts.append(_pack_phdr(cls, PT_NOTE, 0, offset, 0, len(note), 4))
        offset += len(note)
    for seg in segments:
        parts.append(_pack_phdr(cls, PT_LOAD, _PF_RWX, offset, seg.da, seg.size, 0))
        offset += seg.size
    parts.append(note)
    return _CoreImage(b"".join(parts), segments)


def _section_name(seg: DumpSegment) -> bytes:
    priv = seg.priv
    if isinstance(priv, str):
        return priv.encode()
    if isinstance(priv, bytes | bytearray):
        return bytes(priv).split(b"\0", 1)[0]
    # The kernel would dereference the missing name; we give the section an empty one.
    return b""


def _section_header_core(rproc: Rproc) -> _CoreImage:
    """§7.4: ELF header, null + STR_TBL + one PROGBITS section per segment, string table."""
    cls = rproc.elf_class
    segments = tuple(rproc.dump_segments)
    shnum = len(segments) + 2
    ehsize = layout(cls, _LE).ehdr.size
    strtab = bytearray(b"\0")

    def strtab_add(name: bytes) -> int:
        index = len(strtab)
        strtab.extend(name + b"\0")
        return index

    strtab_offset = ehsize + shnum * layout(cls, _LE).shdr.size
    shdrs = [b"\0" * layout(cls, _LE).shdr.size]
    str_tbl_name = strtab_add(_STR_TBL)
    names = [strtab_add(_section_name(seg)) for seg in segments]
    shdrs.append(_pack_shdr(cls, str_tbl_name, SHT_STRTAB, 0, 0, strtab_offset, len(strtab)))
    offset = strtab_offset + len(strtab)
    for seg, name in zip(segments, names, strict=True):
        shdrs.append(_pack_shdr(cls, name, SHT_PROGBITS, SHF_WRITE, seg.da, offset, seg.size))
        offset += seg.size
    ehdr = _pack_ehdr(cls, rproc.elf_machine, rproc.bootaddr, shoff=ehsize, shnum=shnum, shstrndx=1)
    return _CoreImage(ehdr + b"".join(shdrs) + bytes(strtab), segments)


def _copy_segment(rproc: Rproc, seg: DumpSegment, dest: memoryview, offset: int, size: int) -> None:
    """``rproc_copy_segment``: ``size`` bytes of ``seg`` from ``offset`` into ``dest``."""
    if seg.dump is not None:
        try:
            seg.dump(rproc, seg, dest, offset, size)
        except Exception:
            # A driver's dump function failing must not stop the recovery that called us; the
            # segment reads as unavailable memory, like a failed translation.
            log.exception("%s: dump function failed for segment %#x", _dev_name(rproc), seg.da)
            dest[:size] = b"\xff" * size
        return
    src = rproc.da_to_va(seg.da + offset, size) if size else memoryview(b"")
    if src is None or len(src) < size:
        log.error(
            "%s: invalid copy request for segment %#x with offset %d and size %d",
            _dev_name(rproc),
            seg.da,
            offset,
            size,
        )
        dest[:size] = b"\xff" * size
        return
    dest[:size] = src[:size]


def _read_core(rproc: Rproc, image: _CoreImage, offset: int, size: int) -> bytes:
    """``rproc_coredump_read``: bytes of an inline core, segments read live from the device.

    A read that starts inside the header returns header bytes only (a short read), as the
    kernel's does; past the header a read may span several segments.
    """
    # The segment list was captured when the dump was taken: recovery is held while it is read,
    # and a list that changed underneath a reader would shift every offset after it.
    header = image.header
    if offset < len(header):
        return header[offset : offset + size]
    out = bytearray(size)
    view = memoryview(out)
    done = 0
    seg_start = len(header)
    for seg in image.segments:
        seg_end = seg_start + seg.size
        pos = offset + done
        if done < size and seg_start <= pos < seg_end:
            n = min(size - done, seg_end - pos)
            _copy_segment(rproc, seg, view[done : done + n], pos - seg_start, n)
            done += n
        seg_start = seg_end
    if done < size:
        log.info("%s: Ramdump done, %d bytes read", _dev_name(rproc), offset + done)
    return bytes(out[:done])


def _emit(rproc: Rproc, image: _CoreImage) -> None:
    """§7.3 steps 5-7: hand the core to the store, copied (ENABLED) or live (INLINE)."""
    store: CoredumpStore = rproc.coredump_store
    if rproc.dump_conf is DumpConf.ENABLED:
        data = bytearray(image.size)
        view = memoryview(data)
        view[: len(image.header)] = image.header
        offset = len(image.header)
        for seg in image.segments:
            _copy_segment(rproc, seg, view[offset : offset + seg.size], 0, seg.size)
            offset += seg.size
        store.add(rproc.name, data)
        return

    freed = threading.Event()
    n = store.add_inline(
        rproc.name,
        image.size,
        lambda offset, size: _read_core(rproc, image, offset, size),
        freed.set,
    )
    if n is None:
        return
    # The kernel's wait_for_completion(): recovery holds here until userspace is done with the
    # dump or the store's timeout passes (wait_released applies the timeout).
    store.wait_released(n)
    freed.wait()


def rproc_coredump(rproc: Rproc) -> None:
    """The default ``ops.coredump`` (§7.3): an ELF core with one PT_LOAD per dump segment."""
    if _should_dump(rproc):
        _emit(rproc, _program_header_core(rproc))


def rproc_coredump_using_sections(rproc: Rproc) -> None:
    """§7.4: the section-header variant; each segment's ``priv`` names its section."""
    if _should_dump(rproc):
        _emit(rproc, _section_header_core(rproc))
