"""The ELF loader (spec §4): every kernel message of §4.1, §4.3 and §4.4 from a crafted image, our
extra bounds checks, both classes and byte orders, loading through a translation, the op-shaped
defaults, and the import-cost rule."""

from __future__ import annotations

import errno
import io
import logging
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from elfbuild import (
    Built,
    GuardedMemory,
    Sec,
    Seg,
    build_elf,
    resource_table,
    rsc_carveout,
    rsc_trace,
    rsc_vdev,
)

from remoteproc.errors import RprocError
from remoteproc.firmware import elf_layout, elf_loader
from remoteproc.firmware.elf import (
    ELFCLASS32,
    ELFCLASS64,
    EM_RISCV,
    PT_LOAD,
    ElfImage,
    Firmware,
    check_image,
    find_rsc_table,
    locate_rsc_table,
    sanity_check,
)
from remoteproc.firmware.elf_loader import (
    find_loaded_rsc_table,
    get_boot_addr,
    load_rsc_table,
    load_segments,
)

VARIANTS = [(c, o) for c in (ELFCLASS32, ELFCLASS64) for o in "<>"]
VARIANT_IDS = [f"elf{32 if c == 1 else 64}{'le' if o == '<' else 'be'}" for c, o in VARIANTS]


Memory = GuardedMemory


def fw_of(b: Built | bytes | bytearray, name: str = "fw.elf") -> Firmware:
    return Firmware(name, bytes(b.data) if isinstance(b, Built) else b)


def simple(
    elf_class: int = ELFCLASS32, byteorder: str = "<", *, table: bytes | None = None, **kw: object
) -> Built:
    if table is None:
        table = resource_table([rsc_carveout(0x3000_0000, 0x1000, "buf", byteorder=byteorder)],
                               byteorder=byteorder)  # fmt: skip
    return build_elf(
        [Seg(bytes(range(64)), paddr=0x1000, vaddr=0x8000_1000, memsz=0x100)],
        [Sec(".text", segment=0)],
        elf_class=elf_class,
        byteorder=byteorder,
        rsc_table=table,
        entry=0x1041,
        **kw,  # type: ignore[arg-type]
    )


def raises(fn: Callable[[], object], code: int, message: str) -> RprocError:
    with pytest.raises(RprocError) as info:
        fn()
    assert info.value.errno == code, str(info.value)
    assert info.value.message == message, str(info.value)
    return info.value


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("elf_class", "order"), VARIANTS, ids=VARIANT_IDS)
def test_parse_reads_every_class_and_byte_order(elf_class: int, order: str) -> None:
    b = simple(elf_class, order, machine=EM_RISCV)
    img = ElfImage.parse(bytes(b.data), file="x")
    assert (img.elf_class, img.byteorder, img.machine, img.entry) == (elf_class, order, 243, 0x1041)
    assert img.machine_name == "RISC-V"
    assert img.phnum == 2 and len(img.segments) == 2
    s0 = img.segments[0]
    assert (s0.type, s0.paddr, s0.vaddr, s0.filesz, s0.memsz) == (PT_LOAD, 0x1000, 0x8000_1000,
                                                                  64, 0x100)  # fmt: skip
    assert s0.offset == b.seg_offsets[0]
    assert [s.name for s in img.sections] == ["", ".text", ".resource_table", ".shstrtab"]
    assert img.sections[2].addr == 0x2000_0000
    big = [f for f in img.findings if f.code == "big-endian"]
    assert bool(big) == (order == ">")


@pytest.mark.parametrize(("elf_class", "order"), VARIANTS, ids=VARIANT_IDS)
def test_parse_agrees_with_pyelftools(elf_class: int, order: str) -> None:
    from elftools.elf.elffile import ELFFile

    b = simple(elf_class, order)
    ref = ELFFile(io.BytesIO(bytes(b.data)))
    img = ElfImage.parse(bytes(b.data))
    assert img.entry == ref.header["e_entry"] and img.shoff == ref.header["e_shoff"]
    for seg, rseg in zip(img.segments, ref.iter_segments(), strict=True):
        assert (seg.offset, seg.paddr, seg.vaddr, seg.filesz, seg.memsz, seg.flags) == (
            rseg["p_offset"], rseg["p_paddr"], rseg["p_vaddr"], rseg["p_filesz"],
            rseg["p_memsz"], rseg["p_flags"],
        )  # fmt: skip
    for sec, rsec in zip(img.sections, ref.iter_sections(), strict=True):
        assert (sec.name, sec.offset, sec.size, sec.addr) == (
            rsec.name, rsec["sh_offset"], rsec["sh_size"], rsec["sh_addr"]
        )  # fmt: skip


def prebuilt_images() -> list[Path]:
    root = Path(__file__).resolve().parent.parent
    found: list[Path] = []
    for d in (root / "firmware" / "prebuilt", root / "src" / "remoteproc" / "data" / "firmware"):
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.read_bytes()[:4] == b"\x7fELF":
                    found.append(p)
    return found


def test_prebuilt_images_parse_like_pyelftools() -> None:
    """Real toolchain output (whatever prebuilt ELFs exist) reads the same as pyelftools."""
    from elftools.elf.elffile import ELFFile

    for path in prebuilt_images():
        data = path.read_bytes()
        img = ElfImage.parse(data, file=path.name)
        ref = ELFFile(io.BytesIO(data))
        assert img.entry == ref.header["e_entry"]
        assert [s.paddr for s in img.segments] == [s["p_paddr"] for s in ref.iter_segments()]
        assert [s.name for s in img.sections] == [s.name for s in ref.iter_sections()]


def test_machine_names() -> None:
    assert elf_layout.machine_name(elf_layout.EM_ARM) == "ARM"
    assert elf_layout.machine_name(elf_layout.EM_TI_PRU) == "TI PRU"
    assert elf_layout.machine_name(0x7777) == "EM_30583"


# --- §4.1 sanity check: every kernel message, in order ---------------------------------------


def header(elf_class: int = ELFCLASS32, data_enc: int = 1, size: int | None = None) -> bytearray:
    b = simple(elf_class, "<" if data_enc != 2 else ">").data
    b[5] = data_enc
    return b if size is None else b[:size]


def test_sanity_null_firmware() -> None:
    raises(lambda: sanity_check(None, file="rproc-m4-fw"), errno.EINVAL,
           "failed to load rproc-m4-fw")  # fmt: skip
    rproc = SimpleNamespace(firmware="rproc-m4-fw")
    raises(lambda: elf_loader.rproc_elf_sanity_check(rproc, None), errno.EINVAL,
           "failed to load rproc-m4-fw")  # fmt: skip


def test_sanity_too_small() -> None:
    raises(lambda: sanity_check(b"\x7fELF" + bytes(47)), errno.EINVAL, "Image is too small")
    raises(lambda: sanity_check(b""), errno.EINVAL,
           "Image is too small (0 bytes, and not an ELF file)")


def test_sanity_bad_magic() -> None:
    b = header()
    b[1] = ord("X")
    raises(lambda: sanity_check(b), errno.EINVAL, "Image is corrupted (bad magic)")


@pytest.mark.parametrize("cls", [0, 3, 255])
def test_sanity_unsupported_class(cls: int) -> None:
    b = header()
    b[4] = cls
    raises(lambda: sanity_check(b), errno.EINVAL, f"Unsupported class: {cls}")


def test_sanity_elf64_header_too_small() -> None:
    b = header(ELFCLASS64, size=60)
    raises(lambda: sanity_check(b), errno.EINVAL, "elf64 header is too small")
    # ...checked before the byte order (kernel order: 5 before 6)
    b[5] = 9
    raises(lambda: sanity_check(b), errno.EINVAL, "elf64 header is too small")


@pytest.mark.parametrize("enc", [0, 3])
def test_sanity_unsupported_endianness(enc: int) -> None:
    raises(lambda: sanity_check(header(data_enc=enc)), errno.EINVAL,
           "Unsupported firmware endianness")  # fmt: skip


def test_sanity_big_endian_accepted_with_a_finding() -> None:
    img = sanity_check(bytes(simple(ELFCLASS64, ">").data))
    (f,) = [f for f in img.findings if f.code == "big-endian"]
    assert f.severity == "warning" and "Unsupported firmware endianness" in f.message


def test_sanity_shoff_leaves_no_room_for_a_section_header() -> None:
    b = simple()
    b.patch_ehdr(shoff=len(b.data) - 39)
    e = raises(lambda: sanity_check(bytes(b.data)), errno.EINVAL, "Image is too small")
    assert e.offset == len(b.data) - 39
    b.patch_ehdr(shoff=len(b.data) - 40, shnum=1, shstrndx=0)  # one header fits: check 7 passes
    assert sanity_check(bytes(b.data)).shoff == len(b.data) - 40
    # ELF64 needs 64 bytes there; and no 64-bit wraparound lets a huge e_shoff through
    b64 = simple(ELFCLASS64)
    b64.patch_ehdr(shoff=len(b64.data) - 40)
    raises(lambda: sanity_check(bytes(b64.data)), errno.EINVAL, "Image is too small")
    b64.patch_ehdr(shoff=2**64 - 32)
    raises(lambda: sanity_check(bytes(b64.data)), errno.EINVAL, "Image is too small")


def test_sanity_no_loadable_segments() -> None:
    b = simple()
    b.patch_ehdr(phnum=0)
    raises(lambda: sanity_check(bytes(b.data)), errno.EINVAL, "No loadable segments")


def test_sanity_phoff_past_the_end() -> None:
    b = simple()
    b.patch_ehdr(phoff=len(b.data) + 1)
    raises(lambda: sanity_check(bytes(b.data)), errno.EINVAL, "Firmware size is too small")
    # kernel order: "No loadable segments" (8) before "Firmware size is too small" (9)
    b.patch_ehdr(phnum=0)
    raises(lambda: sanity_check(bytes(b.data)), errno.EINVAL, "No loadable segments")


def test_sanity_success_returns_the_image() -> None:
    b = simple()
    img = sanity_check(bytes(b.data), file="fw.elf")
    assert isinstance(img, ElfImage) and img.file == "fw.elf"
    assert not [f for f in img.findings if f.severity == "error"]


# --- our bounds checks, past the kernel's -----------------------------------------------------


def test_phdr_table_past_the_end_is_refused_with_offsets() -> None:
    b = simple()
    size = len(b.data)
    b.patch_ehdr(phoff=size - 40)  # inside the file (kernel check 9 passes), table is not
    with pytest.raises(RprocError) as info:
        sanity_check(bytes(b.data), file="fw.elf")
    e = info.value
    assert e.errno == errno.EINVAL and e.offset == size - 40
    assert f"{size - 40:#x}" in e.message and f"{size:#x}" in e.message
    assert "program header table" in e.message
    img = ElfImage.parse(bytes(b.data))
    assert len(img.segments) == 1  # only the header that lies inside the image
    # load_segments stops at the first header outside the image, with its index
    mem = Memory([(0, 0x10000)])
    with pytest.raises(RprocError) as info2:
        load_segments(fw_of(b), mem.da_to_va)
    assert info2.value.index == 1 and info2.value.errno == errno.EINVAL


def test_section_header_table_past_the_end_is_refused() -> None:
    b = simple()
    b.patch_ehdr(shnum=200)
    with pytest.raises(RprocError) as info:
        sanity_check(bytes(b.data))
    assert "section header table" in info.value.message
    assert info.value.offset == b.shoff


def test_section_name_table_header_past_the_end_is_refused() -> None:
    b = simple()
    b.patch_ehdr(shstrndx=5000)
    with pytest.raises(RprocError) as info:
        sanity_check(bytes(b.data))
    assert "e_shstrndx 5000" in info.value.message


def test_shstrndx_beyond_shnum_but_inside_the_file_is_a_warning() -> None:
    b = simple()
    b.patch_ehdr(shstrndx=4)  # one past the table, which ends the image...
    data = bytes(b.data) + bytes(64)  # ...so append room: the kernel's read stays inside
    img = sanity_check(data)
    assert any(f.code == "shstrndx-out-of-range" and f.severity == "warning" for f in img.findings)


def test_section_name_past_the_end_is_refused() -> None:
    b = simple()
    b.patch_shdr(".text", name=len(b.data) * 2)
    with pytest.raises(RprocError) as info:
        sanity_check(bytes(b.data))
    assert info.value.index == 1 and "section name" in info.value.message


def test_section_name_outside_the_string_table_is_a_warning() -> None:
    b = simple()
    # names past sh_size of .shstrtab but inside the file: the kernel reads them regardless
    b.patch_shdr(".shstrtab", size=1)
    img = sanity_check(bytes(b.data))
    assert [f.index for f in img.findings if f.code == "section-name-outside-strtab"] == [1, 2, 3]
    assert img.sections[2].name == ".resource_table"  # the kernel reads it anyway


def test_unterminated_name_prefix_of_resource_table_at_eof_is_refused() -> None:
    b = simple()
    data = bytes(b.data) + b".resource_ta"
    b2 = Built(bytearray(data), b.elf_class, b.byteorder, b.phoff, b.shoff, b.seg_offsets,
               b.sec_index)  # fmt: skip
    strtab_off = b.sec_offsets[b.sec_index[".shstrtab"]]
    b2.patch_shdr(".text", name=len(b.data) - strtab_off)
    with pytest.raises(RprocError) as info:
        sanity_check(bytes(b2.data))
    assert "without a terminating NUL" in info.value.message


def test_header_oddities_are_findings_not_errors() -> None:
    b = simple(type=elf_layout.ET_DYN, machine=0x7777)
    b.patch_ehdr(phentsize=40)
    img = sanity_check(bytes(b.data))
    codes = {f.code for f in img.findings}
    assert {"phentsize", "e-type", "unknown-machine"} <= codes
    # the kernel steps by 32 bytes whatever e_phentsize says, and so do we
    assert img.segments[1].paddr == 0x2000_0000


def test_overlapping_segments_are_a_warning() -> None:
    b = build_elf([Seg(b"a" * 16, paddr=0x100), Seg(b"b" * 16, paddr=0x108)])
    img = sanity_check(bytes(b.data))
    (f,) = [f for f in img.findings if f.code == "overlapping-segments"]
    assert f.index == 1 and f.da == 0x108 and f.severity == "warning"


# --- §4.3 load_segments ----------------------------------------------------------------------


@pytest.mark.parametrize(("elf_class", "order"), VARIANTS, ids=VARIANT_IDS)
def test_load_copies_to_paddr_and_zero_fills(elf_class: int, order: str) -> None:
    payload = bytes(range(256)) * 3
    b = build_elf(
        [
            Seg(payload, paddr=0x1000, vaddr=0x90_0000, memsz=0x1000),
            Seg(b"", paddr=0x4000, memsz=0x5_0000),  # pure bss, larger than the zero buffer
            Seg(b"NOTE", paddr=0x1000, type=elf_layout.PT_NOTE),  # not PT_LOAD: skipped
        ],
        elf_class=elf_class,
        byteorder=order,
    )
    mem = Memory([(0x1000, 0x1000), (0x4000, 0x5_0000), (0x90_0000, 0x1000)], fill=0xEE)
    load_segments(fw_of(b), mem.da_to_va)
    assert mem.read(0x1000, len(payload)) == payload
    assert mem.read(0x1000 + len(payload), 0x1000 - len(payload)) == bytes(0x1000 - len(payload))
    assert mem.read(0x4000, 0x5_0000) == bytes(0x5_0000)
    assert mem.read(0x90_0000, 0x1000) == b"\xee" * 0x1000  # p_vaddr is not used
    assert mem.calls == [(0x1000, 0x1000), (0x4000, 0x5_0000)]
    assert mem.guards_intact()


def test_load_bad_phdr_filesz() -> None:
    b = simple()
    b.patch_phdr(0, filesz=0x200, memsz=0x100)
    e = raises(lambda: load_segments(fw_of(b), Memory([(0, 0x10000)]).da_to_va), errno.EINVAL,
               "bad phdr filesz 0x200 memsz 0x100")  # fmt: skip
    assert e.index == 0 and e.file == "fw.elf" and e.offset == b.phdr_offset(0)
    assert "program header 0" in str(e)


def test_load_truncated_fw() -> None:
    b = simple()
    size = len(b.data)
    b.patch_phdr(1, offset=size - 8, filesz=16, memsz=16)
    e = raises(lambda: load_segments(fw_of(b), Memory([(0, 0x10000)]).da_to_va), errno.EINVAL,
               f"truncated fw: need {size + 8:#x} avail {size:#x}")  # fmt: skip
    assert e.index == 1


def test_load_size_does_not_fit_size_t() -> None:
    # A 64-bit memsz on a 32-bit kernel (size_t 32 bits): -EOVERFLOW.
    b = build_elf([Seg(b"x" * 8, paddr=0x1000, memsz=0x1_0000_0000)], elf_class=ELFCLASS64)
    mem = Memory([(0x1000, 0x100)])
    e = raises(lambda: load_segments(fw_of(b), mem.da_to_va, size_max=2**32 - 1),
               errno.EOVERFLOW, "size (100000000) does not fit in size_t type")  # fmt: skip
    assert e.index == 0 and mem.calls == []
    # with a 64-bit size_t the same segment reaches the translation, which maps nothing
    raises(lambda: load_segments(fw_of(b), mem.da_to_va), errno.EINVAL,
           "bad phdr da 0x1000 mem 0x100000000")  # fmt: skip


def test_load_memsz_beyond_python_views_never_reaches_the_translation() -> None:
    b = build_elf([Seg(b"", paddr=0x1000, memsz=2**64 - 1)], elf_class=ELFCLASS64)
    mem = Memory([(0x1000, 0x100)])
    raises(lambda: load_segments(fw_of(b), mem.da_to_va), errno.EINVAL,
           f"bad phdr da 0x1000 mem {2**64 - 1:#x}")  # fmt: skip
    assert mem.calls == []


def test_load_bad_phdr_da_even_for_empty_segment() -> None:
    b = build_elf([Seg(b"", paddr=0xDEAD_0000, memsz=0)])
    e = raises(lambda: load_segments(fw_of(b), Memory([(0, 0x100)]).da_to_va), errno.EINVAL,
               "bad phdr da 0xdead0000 mem 0x0")  # fmt: skip
    assert e.da == 0xDEAD_0000


def test_load_first_error_stops_and_keeps_earlier_segments() -> None:
    b = build_elf([Seg(b"A" * 16, paddr=0x100), Seg(b"B" * 16, paddr=0x9000),
                   Seg(b"C" * 16, paddr=0x200)])  # fmt: skip
    mem = Memory([(0x100, 0x200)], fill=0)
    e = raises(lambda: load_segments(fw_of(b), mem.da_to_va), errno.EINVAL,
               "bad phdr da 0x9000 mem 0x10")  # fmt: skip
    assert e.index == 1
    assert mem.read(0x100, 16) == b"A" * 16
    assert mem.read(0x200, 16) == bytes(16)  # segment 2 never ran


def test_load_refuses_a_translation_that_breaks_its_contract() -> None:
    b = build_elf([Seg(b"A" * 16, paddr=0x100, memsz=0x20)])
    backing = bytearray(0x100)

    def too_long(da: int, n: int) -> memoryview:
        return memoryview(backing)[0 : n + 8]

    def read_only(da: int, n: int) -> memoryview:
        return memoryview(bytes(n))

    for bad in (too_long, read_only):
        with pytest.raises(RprocError) as info:
            load_segments(fw_of(b), bad)
        assert info.value.errno == errno.EINVAL and "da_to_va returned" in info.value.message
    assert backing == bytearray(0x100)


def test_load_accepts_any_buffer_type() -> None:
    b = simple()
    for data in (bytes(b.data), bytearray(b.data), memoryview(bytes(b.data))):
        mem = Memory([(0x1000, 0x100), (0x2000_0000, 0x1000)])
        load_segments(Firmware("x", data), mem.da_to_va)
        assert mem.read(0x1000, 64) == bytes(range(64))


def test_load_copies_without_intermediate_buffers() -> None:
    """8 MiB of segment bytes and 4 MiB of zero fill move with well under 1 MiB allocated."""
    import tracemalloc

    payload = bytes(range(256)) * (8 << 12)
    b = build_elf([Seg(payload, paddr=0, memsz=len(payload) + (4 << 20))])
    fw = fw_of(b)
    fw.elf  # noqa: B018 (parse outside the measurement)
    target = bytearray(len(payload) + (4 << 20))
    view = memoryview(target)
    tracemalloc.start()
    try:
        load_segments(fw, lambda da, n: view[da : da + n])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert target[: len(payload)] == payload and not any(target[len(payload) :])


# --- §4.4 resource table ---------------------------------------------------------------------


def table_cases(order: str) -> dict[str, bytes]:
    good = [rsc_trace(0x100, 0x40, "trace0", byteorder=order)]
    return {
        "header-less resource table": b"\x01\x00\x00\x00" * 3,
        "unsupported fw ver: 2": resource_table(good, byteorder=order, ver=2),
        "unsupported fw ver: -1": resource_table(good, byteorder=order, ver=0xFFFFFFFF),
        "non zero reserved bytes": resource_table(good, byteorder=order, reserved=(0, 1)),
        "resource table incomplete": resource_table(good, byteorder=order, num=40),
    }


@pytest.mark.parametrize("order", "<>")
def test_rsc_table_kernel_messages(order: str, caplog: pytest.LogCaptureFixture) -> None:
    for message, table in table_cases(order).items():
        b = simple(ELFCLASS32, order, table=table)
        fw = fw_of(b)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="remoteproc.elf"):
            assert find_rsc_table(fw) is None
        assert [r.getMessage() for r in caplog.records] == [f"fw.elf: {message}"]
        (f,) = [f for f in locate_rsc_table(fw).findings if f.severity == "error"]
        assert f.message == message and f.index == b.sec_index[".resource_table"]
        raises(lambda fw=fw: load_rsc_table(fw), errno.EINVAL, message)  # type: ignore[misc]


def test_rsc_table_truncated() -> None:
    b = simple()
    b.patch_shdr(".resource_table", size=len(b.data))
    assert find_rsc_table(fw_of(b)) is None
    raises(lambda: load_rsc_table(fw_of(b)), errno.EINVAL, "resource table truncated")
    b64 = simple(ELFCLASS64)
    b64.patch_shdr(".resource_table", size=2**64 - 8)  # offset + size wraps in 64 bits
    raises(lambda: load_rsc_table(fw_of(b64)), errno.EINVAL, "resource table truncated")


def test_rsc_table_missing(caplog: pytest.LogCaptureFixture) -> None:
    b = build_elf([Seg(b"x" * 8, paddr=0)])
    with caplog.at_level(logging.WARNING, logger="remoteproc.elf"):
        assert find_rsc_table(fw_of(b)) is None
    assert caplog.records == []  # the kernel's find_table is silent when there is none
    e = raises(lambda: load_rsc_table(fw_of(b)), errno.EINVAL, "no resource table found")
    assert e.file == "fw.elf"
    assert [f.code for f in locate_rsc_table(fw_of(b)).findings] == ["no-rsc-table"]


@pytest.mark.parametrize(("elf_class", "order"), VARIANTS, ids=VARIANT_IDS)
def test_rsc_table_found_and_copied(elf_class: int, order: str) -> None:
    table = resource_table(
        [rsc_carveout(0x3000_0000, 0x1000, "buf", byteorder=order), rsc_vdev(byteorder=order)],
        byteorder=order,
    )
    b = simple(elf_class, order, table=table)
    fw = fw_of(b)
    t = find_rsc_table(fw)
    assert t is not None
    assert (t.offset, t.size, t.addr, t.num) == (
        b.sec_offsets[b.sec_index[".resource_table"]], len(table), 0x2000_0000, 2
    )  # fmt: skip
    copy = load_rsc_table(fw)
    assert isinstance(copy, bytearray) and copy == table
    copy[0] = 0x55  # a copy, not a view of the image
    assert load_rsc_table(fw) == table


def test_first_resource_table_section_wins() -> None:
    good = resource_table([rsc_trace(0, 16, "t")])
    b = build_elf([Seg(b"\x05" * 16 + good, paddr=0x100)],
                  [Sec(".resource_table", segment=0, size=16),
                   Sec(".resource_table", segment=0, seg_offset=16)])  # fmt: skip
    assert find_rsc_table(fw_of(b)) is None  # first one: unsupported fw ver: 5


def test_find_loaded_rsc_table_translates_sh_addr() -> None:
    b = simple()
    fw = fw_of(b)
    t = find_rsc_table(fw)
    assert t is not None
    mem = Memory([(0x1000, 0x100), (0x2000_0000, 0x1000)])
    load_segments(fw, mem.da_to_va)
    view = find_loaded_rsc_table(fw, mem.da_to_va)
    assert view is not None and len(view) == t.size and bytes(view) == load_rsc_table(fw)
    view[0] = 7  # writable, in device memory
    assert mem.read(0x2000_0000, 1) == b"\x07"
    assert find_loaded_rsc_table(fw, Memory([(0, 0x10)]).da_to_va) is None


def test_boot_address_is_e_entry() -> None:
    b = build_elf([Seg(b"x", paddr=0)], elf_class=ELFCLASS64, entry=0xFFFF_0000_1234_5678)
    assert get_boot_addr(fw_of(b)) == 0xFFFF_0000_1234_5678


# --- Firmware --------------------------------------------------------------------------------


def test_firmware_from_file(tmp_path: Path) -> None:
    p = tmp_path / "m4.elf"
    p.write_bytes(bytes(simple().data))
    fw = Firmware.from_file(str(p))
    assert (fw.name, fw.path, fw.size) == ("m4.elf", str(p), p.stat().st_size)
    assert fw.elf is fw.elf  # parsed once
    assert Firmware.from_file(str(p), name="rproc-m4-fw").name == "rproc-m4-fw"
    e = raises(lambda: Firmware.from_file(str(tmp_path / "nope.elf")), errno.ENOENT,
               "Direct firmware load for nope.elf failed: No such file or directory")  # fmt: skip
    assert e.file == str(tmp_path / "nope.elf")


def test_firmware_elf_propagates_parse_errors() -> None:
    fw = Firmware("junk", b"not an elf" * 10)
    raises(lambda: fw.elf, errno.EINVAL, "Image is corrupted (bad magic)")


# --- op-shaped defaults ----------------------------------------------------------------------


def test_op_defaults_drive_a_duck_typed_rproc() -> None:
    b = simple()
    fw = fw_of(b)
    mem = Memory([(0x1000, 0x100), (0x2000_0000, 0x1000)])
    rproc = SimpleNamespace(firmware="fw.elf", da_to_va=mem.da_to_va)
    elf_loader.rproc_elf_sanity_check(rproc, fw)
    assert elf_loader.rproc_elf_get_boot_addr(rproc, fw) == 0x1041
    elf_loader.rproc_elf_load_rsc_table(rproc, fw)
    assert isinstance(rproc.cached_table, bytearray)
    assert rproc.table_sz == len(rproc.cached_table) == find_rsc_table(fw).size  # type: ignore[union-attr]
    assert rproc.table_ptr.obj is rproc.cached_table
    elf_loader.rproc_elf_load_segments(rproc, fw)
    assert mem.read(0x1000, 64) == bytes(range(64))
    loaded = elf_loader.rproc_elf_find_loaded_rsc_table(rproc, fw)
    assert loaded is not None and bytes(loaded) == bytes(rproc.cached_table)
    bad = fw_of(header(data_enc=0))
    raises(lambda: elf_loader.rproc_elf_sanity_check(rproc, bad), errno.EINVAL,
           "Unsupported firmware endianness")  # fmt: skip


# --- check_image -----------------------------------------------------------------------------


def test_check_image_collects_without_raising() -> None:
    b = simple(ELFCLASS32, ">")
    b.patch_phdr(0, filesz=0x200)
    codes = [f.code for f in check_image(fw_of(b))]
    assert "big-endian" in codes and "bad-phdr" in codes and "paddr-ne-vaddr" not in codes
    assert [f.code for f in check_image(b"\x7fELF")] == ["elf-sanity"]
    ok = [f for f in check_image(fw_of(simple())) if f.severity != "note"]
    assert ok == []


# --- the import-cost rule --------------------------------------------------------------------


def test_import_is_light() -> None:
    code = (
        "import sys, remoteproc.firmware.elf as e\n"
        "heavy = {'logging', 'elftools', 'ctypes', 'click', 'rich', 'unicorn'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_header_struct_sizes() -> None:
    sizes = {
        c: tuple(s.size for s in elf_layout.layout(c, "<")[2:5]) for c in (ELFCLASS32, ELFCLASS64)
    }
    assert sizes == {ELFCLASS32: (52, 32, 40), ELFCLASS64: (64, 56, 64)}
    assert struct.calcsize("<16sHHIIIIIHHHHHH") == 52


# --- the committed fixtures (firmware/prebuilt/, manifest.toml) --------------------------------

ELF_LEVEL_CODES = {
    "no-rsc-table",
    "rsc-table-empty",
    "rsc-table-incomplete",
    "big-endian",
    "table-outside-segments",
    "overlapping-segments",
    "paddr-ne-vaddr",
}


def test_fixture_findings_at_elf_level_match_the_manifest() -> None:
    """The ELF-level finding ids check_image gives each committed fixture are exactly the ones
    its manifest claims (the manifest is computed independently, with pyelftools/struct)."""
    import tomllib

    root = Path(__file__).resolve().parent.parent / "firmware"
    manifest = root / "fixtures" / "manifest.toml"
    assert manifest.is_file(), f"{manifest} is part of the repository"
    fixtures = tomllib.loads(manifest.read_text())["fixtures"]
    checked = 0
    for name, fx in fixtures.items():
        path = root / "prebuilt" / fx["file"]
        if not path.is_file():
            continue
        fw = Firmware.from_file(str(path))
        got = {f.code for f in check_image(fw)} & ELF_LEVEL_CODES
        want = set(fx.get("findings", [])) & ELF_LEVEL_CODES
        assert got == want, name
        img = fw.elf
        assert (img.bits, img.machine) == (fx["class"], fx["machine"]), name
        assert img.byteorder == ("<" if fx["endian"] == "little" else ">"), name
        checked += 1
    assert checked > 0
