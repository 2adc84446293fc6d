"""ELF binary layouts and constants, declared once (include/uapi/linux/elf.h, elf-em.h).

Owns the ELF header, program header, section header and note header layouts of both classes in
both byte orders, with the kernel's field names, and the constants the loader, ``rproc fw`` and
the coredump writer share. Everything that reads or writes ELF (``firmware/elf.py``,
``firmware/elf_loader.py``, ``core/coredump.py``, the tests' image builder) takes them from here.

Rules: no logic beyond building the ``struct.Struct`` objects; import cost matters (``rproc fw``
runs as a new process), so only ``struct`` and ``typing`` at module level.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "EI_CLASS",
    "EI_DATA",
    "EI_VERSION",
    "ELFCLASS32",
    "ELFCLASS64",
    "ELFCLASSNONE",
    "ELFDATA2LSB",
    "ELFDATA2MSB",
    "ELFDATANONE",
    "ELFMAG",
    "ELFOSABI_NONE",
    "EM_386",
    "EM_AARCH64",
    "EM_ARM",
    "EM_BPF",
    "EM_HEXAGON",
    "EM_LOONGARCH",
    "EM_MIPS",
    "EM_MSP430",
    "EM_NONE",
    "EM_PPC",
    "EM_PPC64",
    "EM_RISCV",
    "EM_SH",
    "EM_SPARC",
    "EM_TI_C2000",
    "EM_TI_C5500",
    "EM_TI_C6000",
    "EM_TI_PRU",
    "EM_X86_64",
    "EM_XTENSA",
    "ET_CORE",
    "ET_DYN",
    "ET_EXEC",
    "ET_NONE",
    "ET_REL",
    "EV_CURRENT",
    "MACHINE_NAMES",
    "NHDR_FIELDS",
    "NT_PRSTATUS",
    "PF_R",
    "PF_W",
    "PF_X",
    "PT_DYNAMIC",
    "PT_INTERP",
    "PT_LOAD",
    "PT_NOTE",
    "PT_NULL",
    "PT_PHDR",
    "PT_SHLIB",
    "PT_TLS",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_WRITE",
    "SHN_UNDEF",
    "SHT_NOBITS",
    "SHT_NULL",
    "SHT_PROGBITS",
    "SHT_STRTAB",
    "SHT_SYMTAB",
    "SIZE_MAX",
    "TYPE_NAMES",
    "ElfLayout",
    "layout",
    "machine_name",
    "nhdr",
]

# --- constants (include/uapi/linux/elf.h, elf-em.h) ------------------------------------------

ELFMAG = b"\x7fELF"
EI_CLASS = 4
EI_DATA = 5
EI_VERSION = 6
ELFCLASSNONE = 0
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATANONE = 0
ELFDATA2LSB = 1
ELFDATA2MSB = 2
EV_CURRENT = 1

ET_NONE = 0
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4

EM_NONE = 0
EM_SPARC = 2
EM_386 = 3
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_ARM = 40
EM_SH = 42
EM_X86_64 = 62
EM_XTENSA = 94
EM_MSP430 = 105
EM_TI_C6000 = 140
EM_TI_C2000 = 141
EM_TI_C5500 = 142
EM_TI_PRU = 144
EM_HEXAGON = 164
EM_AARCH64 = 183
EM_RISCV = 243
EM_BPF = 247
EM_LOONGARCH = 258

PT_NULL = 0
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_NOTE = 4
PT_SHLIB = 5
PT_PHDR = 6
PT_TLS = 7

PF_X = 1
PF_W = 2
PF_R = 4

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8

SHF_WRITE = 1
SHF_ALLOC = 2
SHF_EXECINSTR = 4

SHN_UNDEF = 0

ELFOSABI_NONE = 0
NT_PRSTATUS = 1  # a note's n_type: struct elf_prstatus


# The kernel's size_t; a 64-bit host. ``load_segments(size_max=...)`` emulates a 32-bit one.
SIZE_MAX = 2**64 - 1

MACHINE_NAMES: dict[int, str] = {
    EM_NONE: "none",
    EM_SPARC: "SPARC",
    EM_386: "x86",
    EM_MIPS: "MIPS",
    EM_PPC: "PowerPC",
    EM_PPC64: "PowerPC64",
    EM_ARM: "ARM",
    EM_SH: "SuperH",
    EM_X86_64: "x86-64",
    EM_XTENSA: "Xtensa",
    EM_MSP430: "MSP430",
    EM_TI_C6000: "TI C6000 DSP",
    EM_TI_C2000: "TI C2000 DSP",
    EM_TI_C5500: "TI C5500 DSP",
    EM_TI_PRU: "TI PRU",
    EM_HEXAGON: "Hexagon",
    EM_AARCH64: "AArch64",
    EM_RISCV: "RISC-V",
    EM_BPF: "BPF",
    EM_LOONGARCH: "LoongArch",
}

TYPE_NAMES = {ET_NONE: "NONE", ET_REL: "REL", ET_EXEC: "EXEC", ET_DYN: "DYN", ET_CORE: "CORE"}


def machine_name(em: int) -> str:
    """``40`` -> ``"ARM"``; unknown machines render as ``"EM_<n>"``."""
    return MACHINE_NAMES.get(em, f"EM_{em}")


# --- binary layouts, declared once for parsing and for building (tests/elfbuild.py) -----------

_EHDR_FIELDS = (
    "ident",
    "type",
    "machine",
    "version",
    "entry",
    "phoff",
    "shoff",
    "flags",
    "ehsize",
    "phentsize",
    "phnum",
    "shentsize",
    "shnum",
    "shstrndx",
)
_PHDR32_FIELDS = ("type", "offset", "vaddr", "paddr", "filesz", "memsz", "flags", "align")
_PHDR64_FIELDS = ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")
_SHDR_FIELDS = (
    "name",
    "type",
    "flags",
    "addr",
    "offset",
    "size",
    "link",
    "info",
    "addralign",
    "entsize",
)


class ElfLayout(NamedTuple):
    """The struct layouts of one ELF class in one byte order; field names match the kernel's
    (``e_``/``p_``/``sh_`` prefixes dropped)."""

    elf_class: int
    byteorder: str
    ehdr: struct.Struct  # Elf32_Ehdr 52 / Elf64_Ehdr 64 bytes, e_ident as one 16-byte field
    phdr: struct.Struct  # Elf32_Phdr 32 / Elf64_Phdr 56
    shdr: struct.Struct  # Elf32_Shdr 40 / Elf64_Shdr 64
    ehdr_fields: tuple[str, ...]
    phdr_fields: tuple[str, ...]
    shdr_fields: tuple[str, ...]


def _make_layout(elf_class: int, order: str) -> ElfLayout:
    if elf_class == ELFCLASS32:
        return ElfLayout(
            elf_class,
            order,
            struct.Struct(order + "16sHHIIIIIHHHHHH"),
            struct.Struct(order + "IIIIIIII"),
            struct.Struct(order + "IIIIIIIIII"),
            _EHDR_FIELDS,
            _PHDR32_FIELDS,
            _SHDR_FIELDS,
        )
    return ElfLayout(
        elf_class,
        order,
        struct.Struct(order + "16sHHIQQQIHHHHHH"),
        struct.Struct(order + "IIQQQQQQ"),
        struct.Struct(order + "IIQQQQIIQQ"),
        _EHDR_FIELDS,
        _PHDR64_FIELDS,
        _SHDR_FIELDS,
    )


_LAYOUTS = {(c, o): _make_layout(c, o) for c in (ELFCLASS32, ELFCLASS64) for o in "<>"}


def layout(elf_class: int, byteorder: str) -> ElfLayout:
    """The layouts for ``elf_class`` (1 or 2) and ``byteorder`` (``"<"`` or ``">"``)."""
    return _LAYOUTS[(elf_class, byteorder)]


# --- the parsed image ------------------------------------------------------------------------


# Elf32_Nhdr / Elf64_Nhdr are the same three words: n_namesz, n_descsz, n_type
NHDR_FIELDS = ("namesz", "descsz", "type")


def nhdr(byteorder: str) -> struct.Struct:
    """The note header (``Elf32_Nhdr`` = ``Elf64_Nhdr``) in ``byteorder``."""
    return struct.Struct(byteorder + "III")
