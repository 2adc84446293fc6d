"""The default firmware format: ELF images, the kernel's ``remoteproc_elf_loader.c`` (spec §4).

What this module owns:
- ``Firmware``: a name and the image bytes (the kernel's ``struct firmware``), with the parsed
  ``ElfImage`` cached on it.
- ``ElfImage``: a tolerant, bounds-checked reading of the ELF header, program headers and section
  headers, in the image's own byte order (ELF32/ELF64, little- or big-endian). Whatever the kernel
  would not notice, or would only warn about, becomes a ``Finding`` instead of an exception.
- The kernel's operations on an image: ``sanity_check`` (§4.1), ``load_segments`` (§4.3),
  ``find_rsc_table`` / ``load_rsc_table`` / ``find_loaded_rsc_table`` (§4.4), ``get_boot_addr``
  (§4.2), and their op-shaped wrappers ``rproc_elf_*`` that the core installs when a platform has
  no ``load`` op (§1.10).
- ``check_image``: every finding about an image, for ``rproc fw check``.

Rules:
- Any byte string handed to this module yields an ``RprocError`` (errno + message + location) or a
  result; never another exception, a hang, or a write outside the views the caller's translation
  returned. The kernel's checks keep the kernel's words and order; our extra checks come after
  them, with our own words naming offsets and sizes.
- The line between "finding" and "refusal" is the image's edge: where the kernel would read outside
  the image (a program or section header table past the end, a section name outside the file) we
  refuse in ``sanity_check`` (an ``error`` finding); what the kernel tolerates we tolerate, with a
  ``warning`` or ``note``.
- Header tables are stepped by the standard entry size (32/56 bytes for program headers, 40/64
  for section headers) whatever ``e_phentsize``/``e_shentsize`` say, as the kernel does.
- Loading never copies more than the bytes moved: segment bytes go from a view of the image
  straight into the device view; zero fill is written from a small shared zero buffer.
- Import cost matters (``rproc fw info`` runs as a new process): only struct, errno, sys and
  dataclasses at module level; logging is imported when something is logged.
- The image must not be mutated after a ``Firmware`` is made from it (the parse is cached).
- The op-shaped wrappers (``rproc_elf_*``) log each refusal on ``remoteproc.elf`` before raising
  it, as the kernel's loader ``dev_err``s: the errno alone does not tell a user what is wrong.
"""

from __future__ import annotations

import errno
import itertools
import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remoteproc.errors import Finding, RprocError
from remoteproc.firmware.elf_layout import (
    EI_CLASS,
    EI_DATA,
    EI_VERSION,
    ELFCLASS32,
    ELFCLASS64,
    ELFDATA2LSB,
    ELFDATA2MSB,
    ELFMAG,
    EM_AARCH64,
    EM_ARM,
    EM_NONE,
    EM_RISCV,
    EM_TI_PRU,
    ET_EXEC,
    EV_CURRENT,
    MACHINE_NAMES,
    PT_LOAD,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_PROGBITS,
    SIZE_MAX,
    TYPE_NAMES,
    ElfLayout,
    layout,
    machine_name,
)

if TYPE_CHECKING:
    import logging

__all__ = [
    "ELFCLASS32",
    "ELFCLASS64",
    "ELFDATA2LSB",
    "ELFDATA2MSB",
    "EM_AARCH64",
    "EM_ARM",
    "EM_NONE",
    "EM_RISCV",
    "EM_TI_PRU",
    "ET_EXEC",
    "PT_LOAD",
    "RSC_TABLE_NAME",
    "SHT_NOBITS",
    "SHT_PROGBITS",
    "SIZE_MAX",
    "ElfImage",
    "ElfLayout",
    "Firmware",
    "RscTableLookup",
    "RscTableSection",
    "Section",
    "Segment",
    "as_firmware",
    "check_image",
    "check_parsed",
    "find_rsc_table",
    "layout",
    "locate_rsc_table",
    "lookup_errors",
    "machine_name",
    "sanity_check",
]

RSC_TABLE_NAME = ".resource_table"
# struct resource_table: ver, num, reserved[2]; then u32 offset[num]
RSC_TABLE_HDR_SIZE = 16

@dataclass(frozen=True, slots=True)
class Segment:
    """One program header; ``index`` is its position in the program header table."""

    index: int
    type: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int
    align: int
    header_offset: int = 0  # where this program header sits in the file


@dataclass(frozen=True, slots=True)
class Section:
    """One section header; ``name`` is read the kernel's way (see ``ElfImage.parse``)."""

    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    name_offset: int = 0  # sh_name
    link: int = 0
    info: int = 0
    addralign: int = 0
    entsize: int = 0
    header_offset: int = 0


def _byte_view(data: Any) -> memoryview:
    """A flat unsigned-byte view of any buffer (bytes, bytearray, mmap, memoryview)."""
    try:
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
    except (TypeError, ValueError) as exc:
        raise RprocError(errno.EINVAL, f"firmware data is not a byte buffer: {exc}") from None
    return mv


def _is_error(f: Finding) -> bool:
    return f.severity == "error"


class ElfImage:
    """An ELF image read in its own byte order.

    ``parse`` raises only when no ELF header can be read at all (the kernel's checks 2-6 of
    §4.1, in its words). Everything past the header is read as far as it lies inside the image;
    what lies outside is left out of ``segments``/``sections`` and recorded in ``findings``.
    """

    elf_class: int
    byteorder: str
    machine: int
    type: int
    version: int
    entry: int
    flags: int
    phoff: int
    shoff: int
    ehsize: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int
    ident: bytes
    size: int
    file: str | None
    segments: list[Segment]
    sections: list[Section]
    findings: list[Finding]

    @property
    def layout(self) -> ElfLayout:
        return layout(self.elf_class, self.byteorder)

    @property
    def bits(self) -> int:
        return 32 if self.elf_class == ELFCLASS32 else 64

    @property
    def machine_name(self) -> str:
        return machine_name(self.machine)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"ET_{self.type}")

    @property
    def phdr_size(self) -> int:
        return self.layout.phdr.size

    @property
    def shdr_size(self) -> int:
        return self.layout.shdr.size

    def load_segments(self) -> list[Segment]:
        """The PT_LOAD segments, in program header order."""
        return [s for s in self.segments if s.type == PT_LOAD]

    def section(self, name: str) -> Section | None:
        """The first section called ``name`` (the kernel's rule for ``.resource_table``)."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def __repr__(self) -> str:
        return (
            f"<ElfImage elf{self.bits} {'LE' if self.byteorder == '<' else 'BE'} "
            f"{self.machine_name} entry={self.entry:#x} phnum={self.phnum} shnum={self.shnum}>"
        )

    @classmethod
    def parse(cls, data: Any, *, file: str | None = None) -> ElfImage:
        mv = _byte_view(data)
        img = cls()
        img.file = file
        img.size = size = mv.nbytes
        img.findings = findings = []
        img.segments = []
        img.sections = []

        # The kernel's header checks 2-6 (§4.1), same order, same words.
        if size < 52:
            # The kernel's check order and words; say what else is true when it is no ELF.
            more = "" if bytes(mv[0:4]) == ELFMAG else f" ({size} bytes, and not an ELF file)"
            raise RprocError(errno.EINVAL, f"Image is too small{more}", file=file)
        if bytes(mv[0:4]) != ELFMAG:
            raise RprocError(errno.EINVAL, "Image is corrupted (bad magic)", file=file)
        elf_class = mv[EI_CLASS]
        if elf_class not in (ELFCLASS32, ELFCLASS64):
            raise RprocError(errno.EINVAL, f"Unsupported class: {elf_class}", file=file)
        if elf_class == ELFCLASS64 and size < 64:
            raise RprocError(errno.EINVAL, "elf64 header is too small", file=file)
        data_enc = mv[EI_DATA]
        if data_enc not in (ELFDATA2LSB, ELFDATA2MSB):
            raise RprocError(errno.EINVAL, "Unsupported firmware endianness", file=file)
        order = "<" if data_enc == ELFDATA2LSB else ">"
        host = "<" if sys.byteorder == "little" else ">"
        if order != host:
            findings.append(
                Finding(
                    "warning",
                    f"{'big' if order == '>' else 'little'}-endian image: Linux on a "
                    f'{sys.byteorder}-endian CPU rejects it ("Unsupported firmware '
                    'endianness", EINVAL); this loader reads it in its own byte order',
                    offset=EI_DATA,
                    spec="§4.1",
                    code="big-endian" if order == ">" else "little-endian",
                )
            )

        lay = layout(elf_class, order)
        hdr = lay.ehdr.unpack_from(mv, 0)
        (
            img.ident,
            img.type,
            img.machine,
            img.version,
            img.entry,
            img.phoff,
            img.shoff,
            img.flags,
            img.ehsize,
            img.phentsize,
            img.phnum,
            img.shentsize,
            img.shnum,
            img.shstrndx,
        ) = hdr
        img.elf_class = elf_class
        img.byteorder = order
        img._read_segments(mv, lay)
        img._read_sections(mv, lay)
        img._note_header_oddities(lay)
        img._note_overlaps()
        return img

    # -- parse helpers ---------------------------------------------------------------------

    def _table_in_file(self, what: str, code: str, off: int, num: int, entsize: int) -> int:
        """How many ``entsize`` entries from ``off`` lie inside the image; an error finding when
        not all ``num`` do (the kernel would read past the end of the image)."""
        fit = 0 if off >= self.size else min(num, (self.size - off) // entsize)
        if fit < num:
            end = off + num * entsize
            self.findings.append(
                Finding(
                    "error",
                    f"{what} table ({num} entries of {entsize} bytes at offset {off:#x}) ends "
                    f"at {end:#x}, past the end of the image ({self.size:#x} bytes)",
                    errno=errno.EINVAL,
                    offset=off,
                    spec="§4.1",
                    code=code,
                )
            )
        return fit

    def _read_segments(self, mv: memoryview, lay: ElfLayout) -> None:
        if self.phnum == 0:
            return
        phsz = lay.phdr.size
        fit = self._table_in_file(
            "program header", "phdr-table-past-eof", self.phoff, self.phnum, phsz
        )
        base = self.phoff
        is32 = self.elf_class == ELFCLASS32
        segs = self.segments
        for i, f in enumerate(lay.phdr.iter_unpack(mv[base : base + fit * phsz])):
            if is32:
                p_type, off, va, pa, fsz, msz, flg, al = f
            else:
                p_type, flg, off, va, pa, fsz, msz, al = f
            segs.append(Segment(i, p_type, off, va, pa, fsz, msz, flg, al, base + i * phsz))

    def _read_sections(self, mv: memoryview, lay: ElfLayout) -> None:
        shsz = lay.shdr.size
        shnum = self.shnum
        if shnum == 0:
            return
        fit = self._table_in_file("section header", "shdr-table-past-eof", self.shoff, shnum, shsz)
        raw = list(lay.shdr.iter_unpack(mv[self.shoff : self.shoff + fit * shsz]))

        # The kernel takes the name table from shdr[e_shstrndx], wherever that lands, and
        # compares names at name_table + sh_name without any bound (§4.4).
        names_base: int | None = None
        strhdr = self.shoff + self.shstrndx * shsz
        if strhdr + shsz > self.size:
            self.findings.append(
                Finding(
                    "error",
                    f"section name table header (e_shstrndx {self.shstrndx}) at offset "
                    f"{strhdr:#x} lies past the end of the image ({self.size:#x} bytes)",
                    errno=errno.EINVAL,
                    offset=strhdr,
                    spec="§4.4",
                    code="shstrtab-past-eof",
                )
            )
            strtab_size = 0
        else:
            if self.shstrndx >= shnum:
                self.findings.append(
                    Finding(
                        "warning",
                        f"e_shstrndx {self.shstrndx} is not below e_shnum {shnum}; the kernel "
                        "reads the name table's header from beyond the section header table",
                        offset=strhdr,
                        spec="§4.4",
                        code="shstrndx-out-of-range",
                    )
                )
            elif self.shstrndx == SHN_UNDEF:
                self.findings.append(
                    Finding(
                        "warning",
                        "no section name table (e_shstrndx 0): the kernel reads names from "
                        "section 0's offset and will not find .resource_table",
                        spec="§4.4",
                        code="no-shstrtab",
                    )
                )
            strfields = lay.shdr.unpack_from(mv, strhdr)
            names_base = strfields[4]
            strtab_size = strfields[5]

        for i, f in enumerate(raw):
            sh_name = f[0]
            name = ""
            if names_base is not None:
                name = self._section_name(mv, i, names_base, sh_name, strtab_size)
            self.sections.append(
                Section(
                    i, name, f[1], f[2], f[3], f[4], f[5], sh_name, f[6], f[7], f[8], f[9],
                    self.shoff + i * shsz,
                )
            )  # fmt: skip

    def _section_name(
        self, mv: memoryview, index: int, base: int, sh_name: int, strtab_size: int
    ) -> str:
        pos = base + sh_name
        size = self.size
        if pos >= size:
            self.findings.append(
                Finding(
                    "error",
                    f"section name at offset {pos:#x} (name table {base:#x} + sh_name "
                    f"{sh_name:#x}) lies past the end of the image ({size:#x} bytes)",
                    errno=errno.EINVAL,
                    index=index,
                    offset=pos,
                    what="section",
                    spec="§4.4",
                    code="section-name-past-eof",
                )
            )
            return ""
        raw = _cstring(mv, pos)
        if pos + len(raw) >= size:
            # No NUL before the end: the kernel's compare with ".resource_table" runs off the
            # image exactly when what is there matches a prefix of that name.
            target = RSC_TABLE_NAME.encode()
            severity = "error" if target.startswith(raw) else "warning"
            self.findings.append(
                Finding(
                    severity,
                    f"section name at offset {pos:#x} runs to the end of the image without a "
                    "terminating NUL",
                    errno=errno.EINVAL if severity == "error" else None,
                    index=index,
                    offset=pos,
                    what="section",
                    spec="§4.4",
                    code="section-name-unterminated",
                )
            )
        elif sh_name >= strtab_size:
            self.findings.append(
                Finding(
                    "warning",
                    f"sh_name {sh_name:#x} is outside the section name table ({strtab_size:#x} "
                    "bytes); the kernel reads it anyway",
                    index=index,
                    offset=pos,
                    what="section",
                    spec="§4.4",
                    code="section-name-outside-strtab",
                )
            )
        return raw.decode("utf-8", "backslashreplace")

    def _note_header_oddities(self, lay: ElfLayout) -> None:
        add = self.findings.append
        if self.phnum and self.phentsize != lay.phdr.size:
            add(
                Finding(
                    "warning",
                    f"e_phentsize is {self.phentsize}, the kernel steps by {lay.phdr.size}",
                    offset=self.phoff,
                    spec="§4.3",
                    code="phentsize",
                )
            )
        if self.shnum and self.shentsize != lay.shdr.size:
            add(
                Finding(
                    "warning",
                    f"e_shentsize is {self.shentsize}, the kernel steps by {lay.shdr.size}",
                    offset=self.shoff,
                    spec="§4.4",
                    code="shentsize",
                )
            )
        if self.type != ET_EXEC:
            add(
                Finding(
                    "note",
                    f"e_type is {self.type_name}, not EXEC (not checked)",
                    spec="§4.1",
                    code="e-type",
                )
            )
        if self.version != EV_CURRENT or self.ident[EI_VERSION] != EV_CURRENT:
            add(
                Finding(
                    "note",
                    "ELF version is not EV_CURRENT (not checked)",
                    spec="§4.1",
                    code="elf-version",
                )
            )
        if self.machine not in MACHINE_NAMES:
            add(
                Finding(
                    "note",
                    f"unknown e_machine {self.machine} (not checked)",
                    spec="§4.1",
                    code="unknown-machine",
                )
            )

    def _note_overlaps(self) -> None:
        loads = sorted(
            (s for s in self.segments if s.type == PT_LOAD and s.memsz), key=lambda s: s.paddr
        )
        for prev, cur in itertools.pairwise(loads):
            if cur.paddr < prev.paddr + prev.memsz:
                self.findings.append(
                    Finding(
                        "warning",
                        f"PT_LOAD segment {cur.index} [{cur.paddr:#x}, "
                        f"{cur.paddr + cur.memsz:#x}) overlaps segment {prev.index} "
                        f"[{prev.paddr:#x}, {prev.paddr + prev.memsz:#x}) in device memory; "
                        "the later one in program header order wins",
                        index=cur.index,
                        da=cur.paddr,
                        what="program header",
                        spec="§4.3",
                        code="overlapping-segments",
                    )
                )


def _cstring(mv: memoryview, pos: int) -> bytes:
    """The bytes from ``pos`` up to (not including) a NUL or the end of ``mv``."""
    out = b""
    step = 64
    end = mv.nbytes
    while pos < end:
        chunk = bytes(mv[pos : pos + step])
        nul = chunk.find(0)
        if nul >= 0:
            return out + chunk[:nul]
        out += chunk
        pos += step
        step = min(step * 4, 1 << 16)
    return out


# --- Firmware --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Firmware:
    """A firmware image: the kernel's ``struct firmware`` plus the name it was requested by."""

    name: str
    data: bytes | bytearray | memoryview
    path: str | None = None
    _cache: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def from_file(cls, path: str, name: str | None = None) -> Firmware:
        """Read a whole image; a missing file is ``RprocError(ENOENT)``, as request_firmware,
        and anything but a regular file (a FIFO, /dev/zero, a directory) is refused at once."""
        import os
        import stat

        shown = name if name is not None else os.path.basename(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for a
            # regular file. Only regular files are read (the kernel's kernel_read_file gives
            # EINVAL otherwise): /dev/zero would never end, a FIFO might never speak.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            with open(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise RprocError(
                        errno.EINVAL,
                        f"Direct firmware load for {shown} failed: not a regular file",
                        file=path,
                    )
                data = fh.read()
        except OSError as exc:
            code = exc.errno if exc.errno else errno.EIO
            raise RprocError(
                code,
                f"Direct firmware load for {shown} failed: {os.strerror(code)}",
                file=path,
            ) from None
        return cls(shown, data, path)

    @property
    def size(self) -> int:
        return self.view.nbytes

    @property
    def view(self) -> memoryview:
        """A read-only flat byte view of the image."""
        mv = self._cache.get("view")
        if mv is None:
            mv = _byte_view(self.data).toreadonly()
            self._cache["view"] = mv
        return mv

    @property
    def elf(self) -> ElfImage:
        """The parsed image (parsed once; parse errors are raised each time)."""
        img = self._cache.get("elf")
        if img is None:
            img = ElfImage.parse(self.view, file=self.name)
            self._cache["elf"] = img
        return img


def as_firmware(fw: Firmware | Any) -> Firmware:
    if isinstance(fw, Firmware):
        return fw
    return Firmware("firmware", fw)


# --- §4.1 sanity check -----------------------------------------------------------------------


def check_parsed(img: ElfImage) -> ElfImage:
    """The kernel's checks 7-9 on a parsed header, then our bounds checks (error findings)."""
    file = img.file
    if img.size < img.shoff + img.shdr_size:
        raise RprocError(errno.EINVAL, "Image is too small", file=file, offset=img.shoff)
    if img.phnum == 0:
        raise RprocError(errno.EINVAL, "No loadable segments", file=file)
    if img.phoff > img.size:
        raise RprocError(errno.EINVAL, "Firmware size is too small", file=file, offset=img.phoff)
    for f in img.findings:
        if _is_error(f):
            raise RprocError(
                f.errno or errno.EINVAL,
                f.message,
                file=file,
                offset=f.offset,
                index=f.index,
                da=f.da,
                what=f.what,
            )
    return img


def sanity_check(data: Any, *, file: str | None = None) -> ElfImage:
    """§4.1: the kernel's checks in order (EINVAL, the kernel's words), both byte orders
    accepted (a Finding instead), then our bounds checks (EINVAL, our words). ``data`` may be
    ``None`` (the kernel's "failed to load %s")."""
    if data is None:
        raise RprocError(errno.EINVAL, f"failed to load {file}", file=file)
    return check_parsed(ElfImage.parse(data, file=file))


# --- §4.3 loading ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RscTableSection:
    """A valid ``.resource_table`` section: section index, file offset, size, device address
    (``sh_addr``), and its header's ``num``."""

    index: int
    offset: int
    size: int
    addr: int
    num: int = 0


@dataclass(frozen=True)
class RscTableLookup:
    """The outcome of the kernel's ``find_table``: the table (None on the "not found" path) and
    what was wrong or surprising, the kernel's messages included as ``error`` findings."""

    table: RscTableSection | None
    findings: tuple[Finding, ...]


def _signed32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _lookup(img: ElfImage, mv: memoryview) -> RscTableLookup:
    found: list[Finding] = []
    sec = img.section(RSC_TABLE_NAME)
    if sec is None:
        why = "no resource table found: no .resource_table section"
        if len(img.sections) < img.shnum:
            why += " among the section headers inside the image"
        found.append(
            Finding(
                "error",
                why + "; the default ELF parse_fw fails the boot with EINVAL "
                "(platforms such as stm32/imx tolerate it)",
                errno=errno.EINVAL,
                spec="§4.4",
                code="no-rsc-table",
            )
        )
        return RscTableLookup(None, tuple(found))

    def fail(message: str, offset: int, code: str) -> RscTableLookup:
        found.append(
            Finding(
                "error",
                message,
                errno=errno.EINVAL,
                index=sec.index,
                offset=offset,
                what="section",
                spec="§4.4",
                code=code,
            )
        )
        return RscTableLookup(None, tuple(found))

    off, size = sec.offset, sec.size
    if off + size > img.size:
        return fail("resource table truncated", off, "rsc-table-truncated")
    if size < RSC_TABLE_HDR_SIZE:
        return fail(
            "header-less resource table",
            off,
            "rsc-table-empty" if size == 0 else "rsc-table-headerless",
        )
    ver, num, r0, r1 = struct.unpack_from(img.byteorder + "IIII", mv, off)
    if ver != 1:
        return fail(f"unsupported fw ver: {_signed32(ver)}", off, "rsc-table-version")
    if r0 or r1:
        return fail("non zero reserved bytes", off + 8, "rsc-table-reserved")
    if RSC_TABLE_HDR_SIZE + 4 * num > size:
        return fail("resource table incomplete", off, "rsc-table-incomplete")
    if sec.type == SHT_NOBITS:
        found.append(
            Finding(
                "warning",
                ".resource_table is SHT_NOBITS: its file bytes are not the table",
                index=sec.index,
                offset=off,
                what="section",
                spec="§4.4",
                code="rsc-table-nobits",
            )
        )
    loads = img.load_segments()
    end = sec.addr + size

    def inside(start: int, length: int) -> bool:
        return start <= sec.addr and end <= start + length

    if loads and not any(inside(s.paddr, s.memsz) for s in loads):
        code = "table-outside-segments"
        if any(inside(s.vaddr, s.memsz) for s in loads):
            code = "rsc-table-vaddr"
            msg = (
                f".resource_table sh_addr {sec.addr:#x} is a virtual address: no PT_LOAD "
                "covers it at p_paddr, where the kernel loads and looks for the table"
            )
        else:
            msg = f".resource_table sh_addr {sec.addr:#x} is inside no PT_LOAD segment"
        found.append(
            Finding(
                "warning",
                msg,
                index=sec.index,
                da=sec.addr,
                what="section",
                spec="§4.4",
                code=code,
            )
        )
    table = RscTableSection(sec.index, off, size, sec.addr, num)
    return RscTableLookup(table, tuple(found))


def locate_rsc_table(fw: Firmware) -> RscTableLookup:
    """§4.4 lookup and validation without logging (cached per Firmware)."""
    fw = as_firmware(fw)
    res = fw._cache.get("rsc")
    if res is None:
        res = _lookup(fw.elf, fw.view)
        fw._cache["rsc"] = res
    return res


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("remoteproc.elf")


def find_rsc_table(fw: Firmware) -> RscTableSection | None:
    """The kernel's ``find_table``: the valid ``.resource_table`` or None; its complaints are
    logged as warnings on ``remoteproc.elf`` (``locate_rsc_table`` returns them instead)."""
    fw = as_firmware(fw)
    res = locate_rsc_table(fw)
    if res.table is None:
        for f in lookup_errors(res):
            _logger().warning("%s: %s", fw.name, f.message)
    return res.table


def lookup_errors(res: RscTableLookup) -> list[Finding]:
    """The kernel's complaints on the not-found path (an absent section is silent there)."""
    return [f for f in res.findings if _is_error(f) and f.code != "no-rsc-table"]


def _error_finding(exc: RprocError, spec: str, code: str) -> Finding:
    return Finding(
        "error",
        exc.message,
        errno=exc.errno,
        index=exc.index,
        offset=exc.offset,
        da=exc.da,
        what=exc.what,
        spec=spec,
        code=code,
    )


def check_image(fw: Firmware | Any, *, size_max: int = SIZE_MAX) -> list[Finding]:
    """Everything wrong or surprising about an image, in load order: the sanity check (§4.1),
    the header/table findings, each PT_LOAD's §4.3 checks that do not need device memory, and
    the resource-table lookup (§4.4). Never raises for a bad image."""
    fw = as_firmware(fw)
    out: list[Finding] = []
    try:
        img = fw.elf
    except RprocError as exc:
        return [_error_finding(exc, "§4.1", "elf-sanity")]
    sanity_msg = None
    try:
        check_parsed(img)
    except RprocError as exc:
        sanity_msg = exc.message
        # The parse found the same problem with its own code: keep that code.
        specific = next((f.code for f in img.findings
                         if _is_error(f) and f.message == sanity_msg and f.code), None)
        out.append(_error_finding(exc, "§4.1", specific or "elf-sanity"))
    out.extend(f for f in img.findings if not (_is_error(f) and f.message == sanity_msg))
    for seg in img.load_segments():
        problem: tuple[int, str, str] | None = None
        if seg.filesz > seg.memsz:
            problem = (
                errno.EINVAL,
                f"bad phdr filesz {seg.filesz:#x} memsz {seg.memsz:#x}",
                "bad-phdr",
            )
        elif seg.offset + seg.filesz > img.size:
            problem = (
                errno.EINVAL,
                f"truncated fw: need {seg.offset + seg.filesz:#x} avail {img.size:#x}",
                "truncated-fw",
            )
        elif seg.memsz > size_max:
            problem = (
                errno.EOVERFLOW,
                f"size ({seg.memsz:x}) does not fit in size_t type",
                "size-overflow",
            )
        elif seg.memsz and seg.paddr + seg.memsz > 1 << 64:
            # past the end of the 64-bit address space: no platform's da_to_va maps it
            problem = (
                errno.EINVAL,
                f"bad phdr da {seg.paddr:#x} mem {seg.memsz:#x}",
                "bad-phdr-da",
            )
        if problem is not None:
            out.append(
                Finding(
                    "error",
                    problem[1],
                    errno=problem[0],
                    index=seg.index,
                    offset=seg.header_offset,
                    da=seg.paddr,
                    what="program header",
                    spec="§4.3",
                    code=problem[2],
                )
            )
        elif seg.paddr != seg.vaddr:
            out.append(
                Finding(
                    "note",
                    f"loaded at p_paddr {seg.paddr:#x}, not p_vaddr {seg.vaddr:#x}",
                    index=seg.index,
                    da=seg.paddr,
                    what="program header",
                    spec="§10.3",
                    code="paddr-ne-vaddr",
                )
            )
    out.extend(locate_rsc_table(fw).findings)
    return out


