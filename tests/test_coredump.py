"""Tests for core/coredump.py: the ELF core layouts of §7.3/§7.4, the dump modes, the store, and
real gdb-multiarch sessions on cores of freshly compiled Cortex-M and RISC-V firmware."""

from __future__ import annotations

import errno
import io
import logging
import re
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import holds_for, wait_until
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from elftools.elf.segments import NoteSegment

from remoteproc.core import coredump as cd
from remoteproc.core.coredump import DumpConf, DumpSegment
from remoteproc.core.devcoredump import CoredumpInfo, CoredumpStore
from remoteproc.errors import RprocError

EM_ARM = 40
EM_RISCV = 243

# --- helpers: a fake processor with device memory ---------------------------------------------


class Device:
    """Device memory as a few regions; ``da_to_va`` returns a live view, as the core's does."""

    def __init__(self, regions: dict[int, bytearray]) -> None:
        self.regions = regions
        self.calls: list[tuple[int, int]] = []

    def da_to_va(self, da: int, n: int) -> memoryview | None:
        self.calls.append((da, n))
        for base, mem in self.regions.items():
            if base <= da and da + n <= base + len(mem):
                return memoryview(mem)[da - base : da - base + n]
        return None


def make_rproc(
    store: CoredumpStore,
    device: Device,
    *,
    conf: DumpConf = DumpConf.ENABLED,
    elf_class: int = cd.ELFCLASS32,
    machine: int = EM_ARM,
    bootaddr: int = 0x1001,
    crash_regs: dict[str, Any] | None = None,
) -> Any:
    rproc = SimpleNamespace(
        name="remoteproc0",
        dump_segments=[],
        dump_conf=conf,
        elf_class=cd.ELFCLASSNONE,
        elf_machine=0,
        bootaddr=bootaddr,
        da_to_va=device.da_to_va,
        crash_regs=crash_regs,
        coredump_store=store,
    )
    if elf_class != cd.ELFCLASSNONE:
        cd.set_elf_info(rproc, elf_class, machine)
    return rproc


def pattern(n: int, seed: int) -> bytearray:
    return bytearray((i * 7 + seed) & 0xFF for i in range(n))


def take_only(store: CoredumpStore) -> bytes:
    """The one dump in the store, read the way ``cat`` would (until a zero-length read)."""
    (n,) = store.list()
    out = bytearray()
    while chunk := store.read(n, len(out), 4096):
        out += chunk
    return bytes(out)


# Expected layouts, written out field by field from the spec's rules (§7.3, §7.4).
EHDR_FMT = {1: "<16sHHIIIIIHHHHHH", 2: "<16sHHIQQQIHHHHHH"}
PHDR_SIZE = {1: 32, 2: 56}
SHDR_SIZE = {1: 40, 2: 64}


def ident(elf_class: int) -> bytes:
    return bytes([0x7F, ord("E"), ord("L"), ord("F"), elf_class, 1, 1, 0]) + bytes(8)


def phdr(
    elf_class: int, p_type: int, off: int, addr: int, size: int, flags: int, align: int
) -> bytes:
    if elf_class == 1:
        return struct.pack("<8I", p_type, off, addr, addr, size, size, flags, align)
    return struct.pack("<2I6Q", p_type, flags, off, addr, addr, size, size, align)


# --- configuration and segment list ------------------------------------------------------------


def test_dump_conf_strings_and_parse() -> None:
    assert [c.value for c in DumpConf] == ["disabled", "enabled", "inline"]
    assert DumpConf.parse("inline") is DumpConf.INLINE
    with pytest.raises(RprocError) as exc:
        DumpConf.parse("sometimes")
    assert exc.value.errno == errno.EINVAL
    assert exc.value.message == "Invalid coredump configuration"


def test_set_elf_info_rejects_other_classes() -> None:
    rproc = make_rproc(CoredumpStore(), Device({}), elf_class=cd.ELFCLASSNONE)
    for bad in (0, 3):
        with pytest.raises(RprocError) as exc:
            cd.set_elf_info(rproc, bad, EM_ARM)
        assert exc.value.errno == errno.EINVAL
    cd.set_elf_info(rproc, 2, 183)
    assert (rproc.elf_class, rproc.elf_machine) == (2, 183)


def test_segments_are_appended_in_order_and_cleanup_empties_them() -> None:
    rproc = make_rproc(CoredumpStore(), Device({}))

    def dumpfn(r: Any, seg: DumpSegment, dest: memoryview, off: int, size: int) -> None:
        pass

    cd.add_segment(rproc, 0x100, 0x10)
    cd.add_custom_segment(rproc, 0x200, 0x20, dumpfn, "priv")
    assert rproc.dump_segments == [
        DumpSegment(0x100, 0x10),
        DumpSegment(0x200, 0x20, dumpfn, "priv"),
    ]
    with pytest.raises(RprocError):
        cd.add_segment(rproc, 0x100, -1)
    cd.cleanup(rproc)
    assert rproc.dump_segments == []


# --- §7.3 layout -------------------------------------------------------------------------------


@pytest.mark.parametrize("elf_class", [1, 2])
def test_program_header_core_layout_is_the_kernels(elf_class: int) -> None:
    ram = pattern(0x40, 1)
    sram = pattern(0x18, 99)
    device = Device({0x1000: ram, 0x2000_0000: sram})
    store = CoredumpStore()
    rproc = make_rproc(store, device, elf_class=elf_class, machine=EM_RISCV, bootaddr=0x1004)
    cd.add_segment(rproc, 0x1000, 0x40)
    cd.add_segment(rproc, 0x2000_0000, 0x18)

    cd.rproc_coredump(rproc)
    core = take_only(store)

    ehsize = 52 if elf_class == 1 else 64
    phsize = PHDR_SIZE[elf_class]
    first = ehsize + 2 * phsize
    ehdr = struct.pack(
        EHDR_FMT[elf_class], ident(elf_class), 4, EM_RISCV, 1, 0x1004, ehsize, 0, 0,
        ehsize, phsize, 2, 0, 0, 0,
    )  # fmt: skip
    expected = (
        ehdr
        + phdr(elf_class, 1, first, 0x1000, 0x40, 7, 0)
        + phdr(elf_class, 1, first + 0x40, 0x2000_0000, 0x18, 7, 0)
        + ram
        + sram
    )
    assert core == expected

    # An independent parser agrees, and there is no PT_NOTE without crash registers.
    elf = ELFFile(io.BytesIO(core))
    assert elf["e_type"] == "ET_CORE"
    assert [s["p_type"] for s in elf.iter_segments()] == ["PT_LOAD", "PT_LOAD"]
    assert elf.get_segment(1).data() == sram


def test_nothing_is_dumped_when_disabled_without_segments_or_without_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = Device({0: bytearray(16)})
    store = CoredumpStore()
    added: list[tuple[int, str]] = []
    store.on_added.append(lambda n, name: added.append((n, name)))

    disabled = make_rproc(store, device, conf=DumpConf.DISABLED)
    cd.add_segment(disabled, 0, 16)
    cd.rproc_coredump(disabled)
    cd.rproc_coredump_using_sections(disabled)

    empty = make_rproc(store, device, conf=DumpConf.INLINE)  # would block if it dumped
    cd.rproc_coredump(empty)

    classless = make_rproc(store, device, elf_class=cd.ELFCLASSNONE)
    cd.add_segment(classless, 0, 16)
    with caplog.at_level(logging.ERROR, logger="remoteproc"):
        cd.rproc_coredump(classless)
    assert "ELF class is not set" in caplog.text
    assert store.list() == []
    assert added == []
    assert device.calls == []


def test_custom_dump_function_fills_its_segment() -> None:
    seen: list[tuple[int, int, int]] = []
    store = CoredumpStore()
    device = Device({0x8000: pattern(8, 3)})
    rproc = make_rproc(store, device)

    def dumpfn(r: Any, seg: DumpSegment, dest: memoryview, off: int, size: int) -> None:
        assert r is rproc and seg.priv == "cookie" and len(dest) == size
        seen.append((seg.da, off, size))
        dest[:] = bytes((off + i) ^ 0x5A for i in range(size))

    cd.add_segment(rproc, 0x8000, 8)
    cd.add_custom_segment(rproc, 0xDEAD_0000, 12, dumpfn, "cookie")
    cd.rproc_coredump(rproc)
    core = take_only(store)
    assert core[-12:] == bytes(i ^ 0x5A for i in range(12))
    assert core[-20:-12] == pattern(8, 3)
    assert seen == [(0xDEAD_0000, 0, 12)]
    # The custom segment was never translated through da_to_va.
    assert all(da == 0x8000 for da, _ in device.calls)


def test_failing_dump_function_costs_only_its_segment(caplog: pytest.LogCaptureFixture) -> None:
    store = CoredumpStore()
    rproc = make_rproc(store, Device({0: pattern(4, 9)}))

    def broken(r: Any, seg: DumpSegment, dest: memoryview, off: int, size: int) -> None:
        raise OSError("remote did not answer")

    cd.add_custom_segment(rproc, 0x4000, 3, broken)
    cd.add_segment(rproc, 0, 4)
    with caplog.at_level(logging.ERROR, logger="remoteproc"):
        cd.rproc_coredump(rproc)
    assert take_only(store)[-7:] == b"\xff" * 3 + pattern(4, 9)
    assert "dump function failed for segment 0x4000" in caplog.text


def test_untranslatable_segment_is_filled_with_ff(caplog: pytest.LogCaptureFixture) -> None:
    store = CoredumpStore()
    rproc = make_rproc(store, Device({0: pattern(4, 0)}))
    cd.add_segment(rproc, 0x5000_0000, 6)
    cd.add_segment(rproc, 0, 4)
    with caplog.at_level(logging.ERROR, logger="remoteproc"):
        cd.rproc_coredump(rproc)
    core = take_only(store)
    assert core[-10:] == b"\xff" * 6 + pattern(4, 0)
    assert "invalid copy request for segment 0x50000000" in caplog.text


# --- §7.4 sections variant ---------------------------------------------------------------------


@pytest.mark.parametrize("elf_class", [1, 2])
def test_section_core_layout_and_string_table(elf_class: int) -> None:
    a, b = pattern(0x10, 5), pattern(0x0C, 77)
    store = CoredumpStore()
    rproc = make_rproc(store, Device({0x100: a, 0x900: b}), elf_class=elf_class, bootaddr=0x104)
    cd.add_segment(rproc, 0x100, 0x10)
    cd.add_segment(rproc, 0x900, 0x0C)
    rproc.dump_segments[0].priv = "code"
    rproc.dump_segments[1].priv = b"heap\0junk"  # a C string: the name ends at the NUL

    cd.rproc_coredump_using_sections(rproc)
    core = take_only(store)

    ehsize = 52 if elf_class == 1 else 64
    shsize = SHDR_SIZE[elf_class]
    strtab = b"\0STR_TBL\0code\0heap\0"
    assert len(strtab) == len("STR_TBL") + 2 + (4 + 1) + (4 + 1)  # the spec's strtbl_size
    strtab_off = ehsize + 4 * shsize
    ehdr = struct.pack(
        EHDR_FMT[elf_class], ident(elf_class), 4, EM_ARM, 1, 0x104, 0, ehsize, 0,
        ehsize, 0, 0, shsize, 4, 1,
    )  # fmt: skip
    sfmt = "<10I" if elf_class == 1 else "<IIQQQQIIQQ"
    shdrs = (
        bytes(shsize)
        + struct.pack(sfmt, 1, 3, 0, 0, strtab_off, len(strtab), 0, 0, 0, 0)
        + struct.pack(sfmt, 9, 1, 1, 0x100, strtab_off + len(strtab), 0x10, 0, 0, 0, 0)
        + struct.pack(sfmt, 14, 1, 1, 0x900, strtab_off + len(strtab) + 0x10, 0x0C, 0, 0, 0, 0)
    )
    assert core == ehdr + shdrs + strtab + a + b

    elf = ELFFile(io.BytesIO(core))
    assert [s.name for s in elf.iter_sections()] == ["", "STR_TBL", "code", "heap"]
    heap = elf.get_section_by_name("heap")
    assert heap is not None and heap.data() == b


# --- the store ---------------------------------------------------------------------------------


def test_store_numbers_like_devcoredump_and_keeps_one_dump_per_processor() -> None:
    store = CoredumpStore()
    events: list[tuple[int, str]] = []
    store.on_added.append(lambda n, name: events.append((n, name)))
    assert store.add("a", b"one") == 1
    assert store.add("b", bytearray(b"two")) == 2
    # "a" still has an unreleased dump: devcoredump drops the new one.
    assert store.add("a", b"again") is None
    assert store.list() == [1, 2]
    assert store.info(2) == CoredumpInfo(2, "b", 3, False)
    store.release(1)
    assert store.list() == [2]
    # Indexes are never reused (devcd%d from a counter).
    assert store.add("a", b"three") == 3
    assert events == [(1, "a"), (2, "b"), (3, "a")]
    with pytest.raises(RprocError) as exc:
        store.release(1)
    assert exc.value.errno == errno.ENOENT


def test_store_releases_an_entry_when_a_reader_reaches_eof() -> None:
    store = CoredumpStore()
    n = store.add("a", b"0123456789")
    assert n is not None
    assert store.read(n, 0, 4) == b"0123"
    assert store.read(n, 4, 100) == b"456789"  # a short read: not yet EOF for the reader
    assert store.list() == [n]
    assert store.read(n, 10, 100) == b""  # the read that reports EOF releases it
    assert store.list() == []
    assert store.wait_released(n, 0)
    with pytest.raises(RprocError) as exc:
        store.read(n, 0, 1)
    assert exc.value.errno == errno.ENOENT


def test_store_can_keep_devcoredump_semantics() -> None:
    store = CoredumpStore(release_on_eof=False)
    n = store.add("a", b"xy")
    assert n is not None
    assert store.read(n, 0, 10) == b"xy"
    assert store.read(n, 2, 10) == b""
    assert store.list() == [n]
    store.release(n)
    assert store.list() == []


def test_store_timeout_releases_unread_dumps() -> None:
    store = CoredumpStore(timeout=0.3)
    freed = threading.Event()
    n = store.add_inline("a", 4, lambda off, size: b"abcd"[off : off + size], freed.set)
    assert n is not None
    assert store.list() == [n]
    assert not store.wait_released(n, 0.01)
    assert store.wait_released(n, 10), "the 0.3 s timeout never released the dump"
    assert store.list() == []
    assert freed.is_set()


def test_store_close_releases_everything_and_refuses_new_dumps() -> None:
    store = CoredumpStore()
    freed = threading.Event()
    store.add("a", b"x")
    store.add_inline("b", 1, lambda off, size: b"y", freed.set)
    store.close()
    assert store.list() == []
    assert freed.is_set()
    late = threading.Event()
    assert store.add_inline("c", 1, lambda off, size: b"", late.set) is None
    assert late.is_set()  # a dropped inline dump never blocks its producer


def test_store_frees_an_inline_entry_only_after_reads_in_flight() -> None:
    store = CoredumpStore()
    freed = threading.Event()
    inside = threading.Event()
    proceed = threading.Event()

    def read_fn(off: int, size: int) -> bytes:
        inside.set()
        assert proceed.wait(5)
        return b"z" * min(size, 8 - off)

    n = store.add_inline("a", 8, read_fn, freed.set)
    assert n is not None
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(store.read(n, 0, 8)))
    reader.start()
    assert inside.wait(5)
    store.release(n)
    assert store.list() == []
    assert not freed.is_set()  # the read still uses the device memory
    proceed.set()
    reader.join(5)
    assert result == [b"z" * 8]
    assert freed.is_set()
    assert store.wait_released(n, 1)


# --- INLINE ------------------------------------------------------------------------------------


def _start_dump(target: Callable[[Any], None], rproc: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=(rproc,), daemon=True)
    thread.start()
    return thread


def _wait_for_entry(store: CoredumpStore) -> int:
    wait_until(store.list, what="the inline dump")
    return store.list()[0]


@pytest.mark.parametrize("writer", [cd.rproc_coredump, cd.rproc_coredump_using_sections])
def test_inline_dump_blocks_until_read_and_reads_device_memory_live(
    writer: Callable[[Any], None], caplog: pytest.LogCaptureFixture
) -> None:
    ram, sram = pattern(0x30, 11), pattern(0x20, 200)
    store = CoredumpStore()
    rproc = make_rproc(store, Device({0x1000: ram, 0x8000: sram}), conf=DumpConf.INLINE)
    cd.add_segment(rproc, 0x1000, 0x30)
    cd.add_segment(rproc, 0x8000, 0x20)
    for seg, name in zip(rproc.dump_segments, ("ram", "sram"), strict=True):
        seg.priv = name

    # What ENABLED would have produced, to compare the inline bytes against.
    enabled_store = CoredumpStore()
    rproc.dump_conf, rproc.coredump_store = DumpConf.ENABLED, enabled_store
    writer(rproc)
    before = take_only(enabled_store)
    rproc.dump_conf, rproc.coredump_store = DumpConf.INLINE, store

    thread = _start_dump(writer, rproc)
    n = _wait_for_entry(store)
    header_size = len(before) - 0x50
    assert store.info(n).size == len(before) and store.info(n).inline

    # The device changes after the crash: an inline read must see it.
    ram[5] ^= 0xFF
    sram[-1] ^= 0xFF
    with caplog.at_level(logging.INFO, logger="remoteproc"):
        assert store.read(n, 0, 10_000) == before[:header_size]  # header-only read
        got = bytearray(before[:header_size])
        while len(got) < len(before):
            got += store.read(n, len(got), 7)  # small reads spanning both segments
        # Bounded observation: recovery must not go on before EOF, watched for 0.05 s.
        holds_for(thread.is_alive, 0.05, "recovery waiting for the reader's EOF")
        assert store.read(n, len(got), 4096) == b""
        thread.join(5)
    assert not thread.is_alive()
    assert bytes(got) == before[:header_size] + ram + sram
    assert bytes(got) != before
    assert f"Ramdump done, {len(before)} bytes read" in caplog.text
    assert store.list() == []


def test_inline_dump_gives_up_after_the_store_timeout() -> None:
    store = CoredumpStore(timeout=0.1)
    rproc = make_rproc(store, Device({0: bytearray(8)}), conf=DumpConf.INLINE)
    cd.add_segment(rproc, 0, 8)
    started = time.monotonic()
    thread = _start_dump(cd.rproc_coredump, rproc)
    thread.join(5)
    assert not thread.is_alive()
    assert 0.09 <= time.monotonic() - started < 5
    assert store.list() == []


def test_inline_dump_is_woken_by_close_and_by_release() -> None:
    store = CoredumpStore()
    rproc = make_rproc(store, Device({0: bytearray(8)}), conf=DumpConf.INLINE)
    cd.add_segment(rproc, 0, 8)
    thread = _start_dump(cd.rproc_coredump, rproc)
    store.release(_wait_for_entry(store))
    thread.join(5)
    assert not thread.is_alive()

    thread = _start_dump(cd.rproc_coredump, rproc)
    _wait_for_entry(store)
    store.close()
    thread.join(5)
    assert not thread.is_alive()


# --- registers (our extension) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "elf_class", "size", "reg_offset", "word", "nregs"),
    [
        ("arm", 1, 148, 72, 4, 18),
        ("riscv", 1, 204, 72, 4, 32),
        ("riscv", 2, 376, 112, 8, 32),
        ("aarch64", 2, 392, 112, 8, 34),
    ],
)
def test_prstatus_note_layout(
    arch: str, elf_class: int, size: int, reg_offset: int, word: int, nregs: int
) -> None:
    pc_name = {"arm": "pc", "riscv": "pc", "aarch64": "pc"}[arch]
    note = cd.encode_prstatus(elf_class, {"arch": arch, pc_name: 0x1234, "sp": 0x88, "signal": 6})
    namesz, descsz, ntype = struct.unpack_from("<3I", note)
    assert (namesz, descsz, ntype) == (5, size, 1)
    assert note[12:20] == b"CORE\0\0\0\0"
    desc = note[20:]
    assert len(desc) == size
    assert struct.unpack_from("<h", desc, 12)[0] == 6  # pr_cursig
    fmt = "<%d%s" % (nregs, "I" if word == 4 else "Q")  # noqa: UP031
    regs = struct.unpack_from(fmt, desc, reg_offset)
    index = {"arm": (15, 13), "riscv": (0, 2), "aarch64": (32, 31)}[arch]
    assert (regs[index[0]], regs[index[1]]) == (0x1234, 0x88)
    assert sum(1 for r in regs if r) == 2


def test_register_note_comes_first_and_bad_registers_are_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CoredumpStore()
    regs = {"arch": "arm", "pc": 0x100, "lr": 0x41}
    rproc = make_rproc(store, Device({0: pattern(16, 0)}), crash_regs=regs)
    cd.add_segment(rproc, 0, 16)
    cd.rproc_coredump(rproc)
    core = take_only(store)
    elf = ELFFile(io.BytesIO(core))
    segs = list(elf.iter_segments())
    assert [s["p_type"] for s in segs] == ["PT_NOTE", "PT_LOAD"]
    assert segs[0]["p_offset"] == 52 + 2 * 32
    assert segs[1]["p_offset"] == 52 + 2 * 32 + 20 + 148
    assert isinstance(segs[0], NoteSegment)
    (note,) = segs[0].iter_notes()
    assert note["n_type"] == "NT_PRSTATUS"
    assert segs[1].data() == pattern(16, 0)

    assert store.list() == []  # take_only read to EOF
    rproc.crash_regs = {"arch": "arm", "pc": 0x100, "mepc": 1}
    with caplog.at_level(logging.ERROR, logger="remoteproc"):
        cd.rproc_coredump(rproc)
    assert "unknown arm register 'mepc'" in caplog.text
    plain = take_only(store)
    rproc.crash_regs = None
    cd.rproc_coredump(rproc)
    assert plain == take_only(store)  # the kernel's layout, with no note
    with pytest.raises(RprocError):
        cd.encode_prstatus(1, {"arch": "aarch64"})


# --- gdb-multiarch on real firmware ------------------------------------------------------------

FIRMWARE_C = """
volatile int counter;
int data_var = 42;
void caller(void);
void _start(void) { caller(); for (;;) {} }
__attribute__((noinline)) void crash_here(int x) { counter = x; for (;;) { counter++; } }
__attribute__((noinline)) void caller(void) { crash_here(data_var); counter = 0; }
"""

TOOLCHAINS = {
    "arm": (["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"], EM_ARM),
    "riscv": (["riscv64-unknown-elf-gcc", "-march=rv32imac", "-mabi=ilp32"], EM_RISCV),
}


def _build_firmware(tmp: Path, arch: str) -> Path:
    cc, _ = TOOLCHAINS[arch]
    src = tmp / "fw.c"
    src.write_text(FIRMWARE_C)
    elf = tmp / f"{arch}.elf"
    subprocess.run(
        [
            *cc, "-nostdlib", "-g", "-O1", "-fno-toplevel-reorder", "-e", "_start",
            "-Wl,-Ttext=0x0", "-Wl,-Tdata=0x20000000", str(src), "-o", str(elf),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return elf


def _return_address(arch: str, code: bytes, start: int) -> int:
    """The address after the call to ``crash_here`` in ``caller``."""
    import capstone

    if arch == "arm":
        md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        calls = {"bl"}
    else:
        md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
        calls = {"jal", "c.jal"}
    for insn in md.disasm(code, start):
        if insn.mnemonic in calls:
            return int(insn.address + insn.size)
    raise AssertionError("no call in caller")


@pytest.mark.parametrize("arch", ["arm", "riscv"])
def test_gdb_reads_the_core_with_registers(tmp_path: Path, arch: str) -> None:
    assert shutil.which("gdb-multiarch"), "gdb-multiarch must be installed (CI installs it)"
    elf_path = _build_firmware(tmp_path, arch)
    flash, sram = bytearray(0x1000), bytearray(0x1000)
    with elf_path.open("rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                mem, base = (sram, 0x2000_0000) if seg["p_paddr"] >= 0x2000_0000 else (flash, 0)
                data = seg.data()
                mem[seg["p_paddr"] - base : seg["p_paddr"] - base + len(data)] = data
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        syms = {s.name: s["st_value"] & ~1 for s in symtab.iter_symbols() if s.name}
        sizes = {s.name: s["st_size"] for s in symtab.iter_symbols() if s.name}
    # Memory only the core knows: gdb must take variables from its PT_LOADs, not from the ELF.
    struct.pack_into("<ii", sram, syms["data_var"] - 0x2000_0000, 1234, 0)
    struct.pack_into("<i", sram, syms["counter"] - 0x2000_0000, 4321)
    ret = _return_address(
        arch, bytes(flash[syms["caller"] : syms["caller"] + sizes["caller"]]), syms["caller"]
    )
    pc = syms["crash_here"]  # the crash happened on entry, the argument still in r0/a0
    sp = 0x2000_0F00
    regs: dict[str, Any] = {"arch": arch, "pc": pc, "sp": sp, "signal": 11}
    if arch == "arm":
        regs |= {"r0": 42, "lr": ret | 1, "xpsr": 1 << 24}  # Thumb state is xPSR.T
    else:
        regs |= {"a0": 42, "ra": ret}

    store = CoredumpStore()
    rproc = make_rproc(
        store,
        Device({0: flash, 0x2000_0000: sram}),
        machine=TOOLCHAINS[arch][1],
        bootaddr=syms["_start"],
        crash_regs=regs,
    )
    cd.add_segment(rproc, 0, len(flash))
    cd.add_segment(rproc, 0x2000_0000, len(sram))
    cd.rproc_coredump(rproc)
    core_path = tmp_path / f"{arch}.core"
    core_path.write_bytes(take_only(store))

    out = subprocess.run(
        [
            "gdb-multiarch", "-batch", "-nx", "-ex", "info registers pc", "-ex", "bt",
            "-ex", "info registers sp", "-ex", "print data_var", "-ex", "print counter",
            str(elf_path), str(core_path),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout  # fmt: skip
    print(out)
    assert "Program terminated with signal SIGSEGV" in out
    assert f"pc             {pc:#x}" in out
    assert f"{pc:#x} <crash_here>" in out
    # At a line boundary gdb leaves the address out of frame #0.
    assert re.search(rf"^#0  ({pc:#010x} in )?crash_here \(x=42\)", out, re.M)
    assert f"#1  {ret:#010x} in caller ()" in out
    assert f"sp             {sp:#x}" in out
    assert "$1 = 1234\n$2 = 4321\n" in out


def test_inline_reads_call_the_custom_dump_function_per_chunk() -> None:
    store = CoredumpStore()
    rproc = make_rproc(store, Device({}), conf=DumpConf.INLINE)
    calls: list[tuple[int, int]] = []

    def dumpfn(r: Any, seg: DumpSegment, dest: memoryview, off: int, size: int) -> None:
        calls.append((off, size))
        dest[:] = bytes(range(off, off + size))

    cd.add_custom_segment(rproc, 0x100, 12, dumpfn)
    thread = _start_dump(cd.rproc_coredump, rproc)
    n = _wait_for_entry(store)
    header = store.read(n, 0, 1 << 20)
    assert len(header) == 52 + 32
    assert store.read(n, 84, 5) + store.read(n, 89, 5) + store.read(n, 94, 5) == bytes(range(12))
    assert calls == [(0, 5), (5, 5), (10, 2)]
    assert store.read(n, 96, 5) == b""
    thread.join(5)
    assert not thread.is_alive()
