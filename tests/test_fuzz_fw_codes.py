"""Every finding code of ``rproc fw check`` has an image that produces it (issue 13): the codes
are read from the checker's and loader's sources, so a new code without a case here fails."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from elfbuild import (
    Built,
    Seg,
    build_elf,
    resource_table,
    rsc_carveout,
    rsc_devmem,
    rsc_entry,
    rsc_trace,
    rsc_vdev,
)

import remoteproc.firmware.check as check_mod
import remoteproc.firmware.elf as elf_mod
from remoteproc.firmware.check import check_firmware
from remoteproc.firmware.elf import Firmware, check_image
from remoteproc.firmware.elf_layout import PF_R

RSC = 0x2000_0000
ANY = 0xFFFF_FFFF
CODE_SEG = Seg(bytes(32), paddr=0x1000, memsz=0x100)
SHT_NOBITS = 8


def built(entries: list[bytes] | None = None, *, segs: list[Seg] | None = None,
          table: bytes | None = None, **kw: object) -> Built:
    if table is None and entries is not None:
        table = resource_table(entries, byteorder=str(kw.get("byteorder", "<")))
    return build_elf(segs if segs is not None else [CODE_SEG], rsc_table=table, rsc_da=RSC,
                     entry=0x1000, **kw)  # type: ignore[arg-type]


def codes_of(data: bytes, **kw: object) -> set[str]:
    return check_firmware(Firmware("case.elf", data), **kw).codes()  # type: ignore[arg-type]


def entry_offset_past_table() -> bytes:
    table = bytearray(resource_table([rsc_carveout(ANY, 0x100, "c")]))
    struct.pack_into("<I", table, 16, 0x400)
    return bytes(built(table=bytes(table)).data)


def vaddr_table() -> bytes:
    b = built([rsc_carveout(ANY, 0x100, "c")])
    b.patch_phdr(1, vaddr=0x6000_0000)
    b.patch_shdr(".resource_table", addr=0x6000_0000)
    return bytes(b.data)


def readonly_table() -> bytes:
    b = built([rsc_carveout(ANY, 0x100, "c")])
    b.patch_phdr(1, flags=PF_R)
    return bytes(b.data)


def section_name(value: int) -> bytes:
    b = built([])
    b.patch_shdr(".resource_table", name=value)
    return bytes(b.data)


def unterminated_name() -> bytes:
    b = built([])
    strtab = b.sec_offsets[b.sec_index[".shstrtab"]]
    end = len(b.data)
    b.patch_shdr(".resource_table", name=end - strtab)  # points at the bytes appended below
    return bytes(b.data) + b"xyz"  # no NUL before the end of the image


def strndx_out_of_range() -> bytes:
    b = built([])
    b.patch_ehdr(shstrndx=len(b.sec_offsets))  # one past the last section header
    return bytes(b.data) + bytes(64)  # ...which still lies inside the image


def strtab_past_eof() -> bytes:
    b = built([])
    b.patch_ehdr(shstrndx=0x7FF)
    return bytes(b.data)


def patched(entries: list[bytes], **fields: int) -> Callable[[], bytes]:
    def make() -> bytes:
        return bytes(built(entries).patch_ehdr(**fields).data)
    return make


def table_shdr(**fields: int) -> Callable[[], bytes]:
    def make() -> bytes:
        return bytes(built([rsc_carveout(ANY, 0x100, "c")]).patch_shdr(".resource_table",
                                                                        **fields).data)
    return make


def truncated(entry: bytes, keep: int) -> Callable[[], bytes]:
    return lambda: bytes(built(table=resource_table([entry[:keep]])).data)


def of(*entries: bytes) -> Callable[[], bytes]:
    return lambda: bytes(built(list(entries)).data)


def tab(**kw: object) -> Callable[[], bytes]:
    return lambda: bytes(built(table=resource_table([], **kw)).data)  # type: ignore[arg-type]


def image(make: Callable[[], bytes], **kw: object) -> Callable[[], set[str]]:
    return lambda: codes_of(make(), **kw)


def size_overflow() -> set[str]:
    data = bytes(built([]).data)
    return {f.code for f in check_image(Firmware("case.elf", data), size_max=0x10) if f.code}


CASES: dict[str, Callable[[], set[str]]] = {
    "bad-phdr": image(lambda: bytes(built([], segs=[Seg(bytes(16), paddr=0x1000, memsz=8)]).data)),
    "bad-phdr-da": image(lambda: bytes(built([], elf_class=2, segs=[
        Seg(bytes(8), paddr=0xFFFF_FFFF_FFFF_F000, memsz=0x2000)]).data)),
    "big-endian": image(lambda: bytes(built([], byteorder=">").data)),
    "little-endian": image(lambda: bytes(built([]).data), host_byteorder=">"),
    "carveout-name-percent": image(of(rsc_carveout(ANY, 0x100, "ddr%d"))),
    "devmem-no-iommu": image(of(rsc_devmem(0x5000_0000, 0x5000_0000, 0x1000))),
    "e-type": image(patched([], type=1)),
    "elf-version": image(patched([], version=0)),
    "unknown-machine": image(patched([], machine=0x1234)),
    "no-rsc-table": image(lambda: bytes(built(None).data)),
    "no-shstrtab": image(patched([], shstrndx=0)),
    "shstrndx-out-of-range": image(strndx_out_of_range),
    "shstrtab-past-eof": image(strtab_past_eof),
    "phentsize": image(patched([], phentsize=31)),
    "shentsize": image(patched([], shentsize=39)),
    "phdr-table-past-eof": image(patched([], phnum=200)),
    "shdr-table-past-eof": image(patched([], shnum=200)),
    "overlapping-segments": image(lambda: bytes(built([], segs=[
        Seg(bytes(16), paddr=0x1000, memsz=0x100), Seg(bytes(16), paddr=0x1080)]).data)),
    "paddr-ne-vaddr": image(lambda: bytes(built([], segs=[
        Seg(bytes(16), paddr=0x1000, vaddr=0x8000_1000)]).data)),
    "rsc-table-empty": image(table_shdr(size=0)),
    "rsc-table-headerless": image(table_shdr(size=8)),
    "rsc-table-truncated": image(table_shdr(size=0x10_0000)),
    "rsc-table-nobits": image(table_shdr(type=SHT_NOBITS)),
    "rsc-table-version": image(tab(ver=2)),
    "rsc-table-reserved": image(tab(reserved=(1, 0))),
    "rsc-table-incomplete": image(tab(num=50)),
    "rsc-table-readonly": image(readonly_table),
    "table-outside-segments": image(table_shdr(addr=0x7000_0000)),
    "rsc-table-vaddr": image(vaddr_table),
    "section-name-outside-strtab": image(lambda: section_name(0x30)),
    "section-name-past-eof": image(lambda: section_name(0x7FFF_0000)),
    "section-name-unterminated": image(unterminated_name),
    "elf-sanity": image(lambda: b"just some notes.\n."),
    "size-overflow": size_overflow,
    "trace-outside-segments": image(of(rsc_trace(0x4000_0000, 0x100, "t"))),
    "trace-name-percent": image(of(rsc_trace(RSC + 0x40, 0x10, "t%s"))),
    "truncated-fw": image(lambda: bytes(built([], segs=[
        Seg(bytes(16), paddr=0x1000, filesz=0x10_0000, memsz=0x10_0000)]).data)),
    "vendor-ignored": image(lambda: bytes(built([rsc_entry(200, bytes(8)),
                                                 rsc_carveout(ANY, 0x100, "c")]).data)),
    "vendor-last-ignored": image(lambda: bytes(built([rsc_entry(200, bytes(8))]).data)),
    "vring-align-zero": image(lambda: bytes(built([rsc_vdev(((ANY, 0, 8), (ANY, 16, 8)))]).data)),
    "vring-num-zero": image(lambda: bytes(built([rsc_vdev(((ANY, 16, 0), (ANY, 16, 8)))]).data)),
    "vring-num-not-pow2": image(of(rsc_vdev(((ANY, 16, 5), (ANY, 16, 8))))),
    "vring-da-zero": image(lambda: bytes(built([rsc_vdev(((0, 16, 8), (ANY, 16, 8)))]).data)),
    "vring-outside-segments": image(lambda: bytes(built([
        rsc_vdev(((0x4000_0000, 16, 8), (ANY, 16, 8)))]).data)),
    "rsc-truncated": image(entry_offset_past_table),
    "unknown-type": image(lambda: bytes(built([rsc_entry(100, b"")]).data)),
    "carveout-invalid": image(truncated(rsc_carveout(ANY, 0x100, "c"), 12)),
    "devmem-invalid": image(truncated(rsc_devmem(1, 1, 1), 12), has_iommu=True),
    "trace-invalid": image(truncated(rsc_trace(RSC, 0x10, "t"), 12)),
    "vdev-invalid": image(truncated(rsc_vdev(), 20)),
}


def source_codes() -> set[str]:
    """Every code the checker and the loader can emit, read from their sources."""
    found: set[str] = set()
    for mod in (check_mod, elf_mod):
        text = Path(mod.__file__ or "").read_text()
        found |= set(re.findall(r'code="([a-z0-9-]+)"', text))
        found |= set(re.findall(r'"([a-z]+(?:-[a-z0-9]+)+)" if ', text))
        found |= set(re.findall(r'else "([a-z]+(?:-[a-z0-9]+)+)"', text))
        found |= set(re.findall(r'code = "([a-z0-9-]+)"', text))
        found |= set(re.findall(r'^\s+"([a-z]+(?:-[a-z0-9]+)+)",\s*$', text, re.M))
        found |= set(re.findall(r'fail\([^)]*"([a-z]+(?:-[a-z0-9]+)+)"\)', text))
        found |= set(re.findall(r'_error_finding\([^)]*"([a-z]+(?:-[a-z0-9]+)+)"\)', text))
        found |= set(re.findall(r'_table_in_file\(\s*"[^"]*", "([a-z0-9-]+)"', text))
    if "{raw.type_name}-invalid" in Path(check_mod.__file__ or "").read_text():
        found |= {f"{t}-invalid" for t in ("carveout", "devmem", "trace", "vdev")}
    return found


def test_every_code_in_the_sources_has_a_case() -> None:
    missing = source_codes() - set(CASES)
    assert not missing, f"finding codes without a test image: {sorted(missing)}"


@pytest.mark.parametrize("code", sorted(CASES))
def test_the_case_produces_its_code(code: str) -> None:
    got = CASES[code]()
    assert code in got, f"{code} not produced; got {sorted(got)}"
