"""A small ELF image builder for tests: ELF32/ELF64, little/big endian, given segments and sections
(including ``.resource_table``), plus patch helpers to craft broken images field by field.

Usage::

    from elfbuild import Seg, Sec, build_elf, resource_table, rsc_carveout

    table = resource_table([rsc_carveout(da=0x1000_0000, length=0x1000, name="mem")])
    img = build_elf(
        [Seg(b"\\x00" * 64, paddr=0x0, memsz=0x100)],
        rsc_table=table, rsc_da=0x2000_0000,
        elf_class=2, byteorder=">",
    )
    img.patch_phdr(0, filesz=0x200)     # now "bad phdr filesz 0x200 memsz 0x100"
    data = bytes(img.data)

Layout of a built image: ELF header | program headers | segment data (each at an offset aligned to
its ``align``, at most 16) | data of sections outside segments | ``.shstrtab`` | section headers.
Section 0 is the null section; user sections follow in order; ``.shstrtab`` is last
(``e_shstrndx``).
The struct layouts come from ``remoteproc.firmware.elf.layout`` so builder and parser share them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from remoteproc.firmware.elf import (
    ELFCLASS32,
    EM_ARM,
    ET_EXEC,
    PT_LOAD,
    SHT_PROGBITS,
    layout,
)
from remoteproc.firmware.elf_layout import (
    PF_R,
    PF_W,
    PF_X,
    SHF_ALLOC,
    SHF_WRITE,
    SHT_STRTAB,
)

__all__ = [
    "Built",
    "GuardedMemory",
    "Sec",
    "Seg",
    "build_elf",
    "resource_table",
    "rsc_carveout",
    "rsc_devmem",
    "rsc_entry",
    "rsc_trace",
    "rsc_vdev",
]


@dataclass
class Seg:
    """A program header and its file bytes. ``vaddr`` defaults to ``paddr``, ``memsz`` to
    ``len(data)``; ``offset``/``filesz`` override the computed values (to craft bad images)."""

    data: bytes = b""
    paddr: int = 0
    vaddr: int | None = None
    memsz: int | None = None
    type: int = PT_LOAD
    flags: int = PF_R | PF_W | PF_X
    align: int = 4
    offset: int | None = None
    filesz: int | None = None


@dataclass
class Sec:
    """A section. Its bytes are ``data`` placed after the segments, or, with ``segment=k``,
    the bytes of segment ``k`` from ``seg_offset`` (``size`` defaults to ``len(data)`` or the rest
    of the segment; ``addr`` then defaults to the segment's ``vaddr`` + ``seg_offset``)."""

    name: str
    data: bytes = b""
    type: int = SHT_PROGBITS
    flags: int = SHF_ALLOC
    addr: int | None = None
    segment: int | None = None
    seg_offset: int = 0
    size: int | None = None
    offset: int | None = None
    addralign: int = 4
    link: int = 0
    info: int = 0
    entsize: int = 0


@dataclass
class Built:
    """A built image and where its parts landed; ``patch_*`` rewrite header fields in place."""

    data: bytearray
    elf_class: int
    byteorder: str
    phoff: int
    shoff: int
    seg_offsets: list[int]
    sec_index: dict[str, int]  # section name -> index in the section header table
    sec_offsets: list[int] = field(default_factory=list)  # by section index (0: null)

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    def _patch(
        self, st: struct.Struct, names: tuple[str, ...], at: int, fields: dict[str, int]
    ) -> None:
        values = list(st.unpack_from(self.data, at))
        for key, value in fields.items():
            values[names.index(key)] = value
        st.pack_into(self.data, at, *values)

    def patch_ehdr(self, **fields: int) -> Built:
        """E.g. ``patch_ehdr(phnum=0)``; names are the kernel's without ``e_``."""
        lay = layout(self.elf_class, self.byteorder)
        self._patch(lay.ehdr, lay.ehdr_fields, 0, fields)
        return self

    def patch_phdr(self, index: int, **fields: int) -> Built:
        lay = layout(self.elf_class, self.byteorder)
        self._patch(lay.phdr, lay.phdr_fields, self.phoff + index * lay.phdr.size, fields)
        return self

    def patch_shdr(self, index: int | str, **fields: int) -> Built:
        """``index`` may be a section name."""
        if isinstance(index, str):
            index = self.sec_index[index]
        lay = layout(self.elf_class, self.byteorder)
        self._patch(lay.shdr, lay.shdr_fields, self.shoff + index * lay.shdr.size, fields)
        return self

    def phdr_offset(self, index: int) -> int:
        return self.phoff + index * layout(self.elf_class, self.byteorder).phdr.size

    def shdr_offset(self, index: int | str) -> int:
        if isinstance(index, str):
            index = self.sec_index[index]
        return self.shoff + index * layout(self.elf_class, self.byteorder).shdr.size


def _align(n: int, a: int) -> int:
    a = max(1, min(a, 16))
    return (n + a - 1) // a * a


def build_elf(
    segments: Sequence[Seg] = (),
    sections: Sequence[Sec] = (),
    *,
    elf_class: int = ELFCLASS32,
    byteorder: str = "<",
    machine: int = EM_ARM,
    type: int = ET_EXEC,
    entry: int = 0,
    flags: int = 0,
    rsc_table: bytes | None = None,
    rsc_da: int = 0x2000_0000,
    rsc_name: str = ".resource_table",
    with_sections: bool = True,
) -> Built:
    """Build an image. ``rsc_table`` adds a writable PT_LOAD segment at ``rsc_da`` holding the
    table and a ``.resource_table`` section over it (the usual firmware layout).
    ``with_sections=False`` leaves out the section header table (``e_shoff = e_shnum = 0``)."""
    lay = layout(elf_class, byteorder)
    segs = list(segments)
    secs = list(sections)
    if rsc_table is not None:
        segs.append(Seg(rsc_table, paddr=rsc_da, flags=PF_R | PF_W))
        secs.append(
            Sec(rsc_name, segment=len(segs) - 1, flags=SHF_ALLOC | SHF_WRITE, size=len(rsc_table))
        )

    phoff = lay.ehdr.size if segs else 0
    pos = lay.ehdr.size + len(segs) * lay.phdr.size
    body = bytearray()
    seg_offsets: list[int] = []
    base = pos
    for s in segs:
        pos = _align(pos, s.align)
        body += bytes(pos - base - len(body))
        seg_offsets.append(pos)
        body += s.data
        pos += len(s.data)

    names = bytearray(b"\0")
    sec_rows: list[tuple[int, ...]] = [(0,) * 10]
    sec_offsets = [0]
    sec_index: dict[str, int] = {}
    for n, sec in enumerate(secs, start=1):
        name_off = len(names)
        names += sec.name.encode() + b"\0"
        if sec.segment is not None:
            seg = segs[sec.segment]
            off = seg_offsets[sec.segment] + sec.seg_offset
            size = sec.size if sec.size is not None else len(seg.data) - sec.seg_offset
            vbase = seg.vaddr if seg.vaddr is not None else seg.paddr
            addr = sec.addr if sec.addr is not None else vbase + sec.seg_offset
        else:
            pos = _align(pos, sec.addralign)
            body += bytes(pos - base - len(body))
            off = pos
            body += sec.data
            pos += len(sec.data)
            size = sec.size if sec.size is not None else len(sec.data)
            addr = sec.addr if sec.addr is not None else 0
        if sec.offset is not None:
            off = sec.offset
        sec_offsets.append(off)
        sec_index.setdefault(sec.name, n)
        sec_rows.append(
            (name_off, sec.type, sec.flags, addr, off, size, sec.link, sec.info, sec.addralign,
             sec.entsize)
        )  # fmt: skip

    shoff = 0
    shnum = 0
    shstrndx = 0
    if with_sections:
        strtab_name = len(names)
        names += b".shstrtab\0"
        strtab_off = pos
        body += names
        pos += len(names)
        sec_offsets.append(strtab_off)
        shstrndx = len(sec_rows)
        sec_index[".shstrtab"] = shstrndx
        sec_rows.append((strtab_name, SHT_STRTAB, 0, 0, strtab_off, len(names), 0, 0, 1, 0))
        pos = _align(pos, 8)
        body += bytes(pos - base - len(body))
        shoff = pos
        shnum = len(sec_rows)
        for row in sec_rows:
            body += lay.shdr.pack(*row)

    out = bytearray()
    ident = b"\x7fELF" + bytes([elf_class, 1 if byteorder == "<" else 2, 1]) + bytes(9)
    out += lay.ehdr.pack(
        ident, type, machine, 1, entry, phoff, shoff, flags, lay.ehdr.size,
        lay.phdr.size, len(segs), lay.shdr.size, shnum, shstrndx,
    )  # fmt: skip
    for s, off in zip(segs, seg_offsets, strict=True):
        vaddr = s.vaddr if s.vaddr is not None else s.paddr
        memsz = s.memsz if s.memsz is not None else len(s.data)
        filesz = s.filesz if s.filesz is not None else len(s.data)
        offset = s.offset if s.offset is not None else off
        values = {
            "type": s.type, "offset": offset, "vaddr": vaddr, "paddr": s.paddr,
            "filesz": filesz, "memsz": memsz, "flags": s.flags, "align": s.align,
        }  # fmt: skip
        out += lay.phdr.pack(*(values[k] for k in lay.phdr_fields))
    out += body
    return Built(out, elf_class, byteorder, phoff, shoff, seg_offsets, sec_index, sec_offsets)


# --- resource tables (spec §5.1) -------------------------------------------------------------

RSC_CARVEOUT = 0
RSC_DEVMEM = 1
RSC_TRACE = 2
RSC_VDEV = 3


def _name32(name: str) -> bytes:
    raw = name.encode()[:32]
    return raw + bytes(32 - len(raw))


def rsc_entry(type: int, body: bytes, byteorder: str = "<") -> bytes:
    """A ``fw_rsc_hdr`` (u32 type) followed by ``body``."""
    return struct.pack(byteorder + "I", type) + body


def rsc_carveout(
    da: int, length: int, name: str = "", *, pa: int = 0, flags: int = 0, reserved: int = 0,
    byteorder: str = "<",
) -> bytes:  # fmt: skip
    body = struct.pack(byteorder + "IIIII", da, pa, length, flags, reserved) + _name32(name)
    return rsc_entry(RSC_CARVEOUT, body, byteorder)


def rsc_devmem(
    da: int, pa: int, length: int, name: str = "", *, flags: int = 0, byteorder: str = "<"
) -> bytes:
    body = struct.pack(byteorder + "IIIII", da, pa, length, flags, 0) + _name32(name)
    return rsc_entry(RSC_DEVMEM, body, byteorder)


def rsc_trace(da: int, length: int, name: str = "", *, byteorder: str = "<") -> bytes:
    body = struct.pack(byteorder + "III", da, length, 0) + _name32(name)
    return rsc_entry(RSC_TRACE, body, byteorder)


def rsc_vdev(
    vrings: Sequence[tuple[int, int, int]] = ((0xFFFFFFFF, 16, 8), (0xFFFFFFFF, 16, 8)),
    *, id: int = 7, dfeatures: int = 1, config: bytes = b"", byteorder: str = "<",
) -> bytes:  # fmt: skip
    """A vdev entry; ``vrings`` are (da, align, num)."""
    body = struct.pack(byteorder + "IIIIIBBxx", id, 0, dfeatures, 0, len(config), 0, len(vrings))
    for da, align, num in vrings:
        body += struct.pack(byteorder + "IIIII", da, align, num, 0, 0)
    return rsc_entry(RSC_VDEV, body + config, byteorder)


def resource_table(
    entries: Sequence[bytes] = (),
    *,
    byteorder: str = "<",
    ver: int = 1,
    reserved: tuple[int, int] = (0, 0),
    num: int | None = None,
    pad: int = 0,
) -> bytes:
    """``struct resource_table`` with ``entries`` (each a full entry with its type header) laid out
    after the offset array; ``num`` overrides the count, ``pad`` appends zero bytes."""
    count = len(entries) if num is None else num
    head = 16 + 4 * len(entries)
    offsets: list[int] = []
    blob = b""
    for e in entries:
        offsets.append(head + len(blob))
        blob += e
    out = struct.pack(byteorder + "IIII", ver, count, *reserved)
    out += b"".join(struct.pack(byteorder + "I", o) for o in offsets)
    return out + blob + bytes(pad)


# --- device memory for loader tests ----------------------------------------------------------


class GuardedMemory:
    """Device memory for tests: regions of one bytearray, each between guard bytes, with the
    translation ``da_to_va(da, n)`` over them (a writable slice of exactly ``n`` bytes, or None).

    ``guards_intact()`` says nothing was written between regions; ``untouched_outside_views()``
    says nothing was written inside a region outside the views handed out."""

    GUARD = 32
    GUARD_BYTE = 0xA5

    def __init__(self, regions: Sequence[tuple[int, int]], fill: int = 0xEE) -> None:
        self.fill = fill
        self.regions: list[tuple[int, int, int]] = []  # (da, size, start in buf)
        pos = self.GUARD
        for da, size in regions:
            self.regions.append((da, size, pos))
            pos += size + self.GUARD
        self.buf = bytearray([self.GUARD_BYTE]) * pos
        for _, size, start in self.regions:
            self.buf[start : start + size] = bytes([fill]) * size
        self.calls: list[tuple[int, int]] = []
        self.handed: list[tuple[int, int]] = []  # (start in buf, length) of each view given

    def da_to_va(self, da: int, n: int) -> memoryview | None:
        self.calls.append((da, n))
        for rda, size, start in self.regions:
            if rda <= da and da + n <= rda + size:
                off = start + da - rda
                self.handed.append((off, n))
                return memoryview(self.buf)[off : off + n]
        return None

    def read(self, da: int, n: int) -> bytes:
        for rda, size, start in self.regions:
            if rda <= da and da + n <= rda + size:
                return bytes(self.buf[start + da - rda : start + da - rda + n])
        raise AssertionError(f"da {da:#x} not mapped")

    def guards_intact(self) -> bool:
        edges = [0] + [s + n for _, n, s in self.regions]
        g = bytes([self.GUARD_BYTE]) * self.GUARD
        return all(self.buf[e : e + self.GUARD] == g for e in edges)

    def untouched_outside_views(self) -> bool:
        written = bytearray(len(self.buf))
        for off, n in self.handed:
            written[off : off + n] = b"\x01" * n
        for _, size, start in self.regions:
            i, end = start, start + size
            while i < end:
                i = written.find(0, i, end)  # start of a run nobody was handed
                if i < 0:
                    break
                j = written.find(1, i, end)
                j = end if j < 0 else j
                if self.buf[i:j] != bytes([self.fill]) * (j - i):
                    return False
                i = j
        return True
