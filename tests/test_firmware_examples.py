"""The committed example firmware for the virtual SoC (firmware/examples, installed into
src/remoteproc/data/firmware/): what every image promises the host, checked from the ELF alone.

- each image is a 32-bit little-endian ELF for its CPU, entry point in TCM, vector table / _start
  at TCM 0;
- its ``.resource_table`` is valid (spec §4.4, §5.1) and holds exactly the entries its example
  claims (docs/virtual-soc.md, "Writing firmware");
- the table and the trace buffer are where the loader will put them (PT_LOAD by p_paddr);
- symbols and line info are present, so crash reports can name functions;
- ``big`` has at least 8 MiB of PT_LOAD file data, and its pattern is what the firmware checks;
- ``make -C firmware/examples`` rebuilds identical resource tables and segment layouts (slow).
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from remoteproc.firmware import check, elf

ROOT = Path(__file__).resolve().parents[1]
FW_DIR = ROOT / "src" / "remoteproc" / "data" / "firmware"
EXAMPLES_DIR = ROOT / "firmware" / "examples"

ARCHES = {"m4": "EM_ARM", "rv32": "EM_RISCV"}
EXAMPLES = ["hello", "rpmsg-echo", "crash", "detachable", "big"]
RPMSG_EXAMPLES = {"rpmsg-echo", "crash", "detachable"}

TCM = (0x0000_0000, 512 * 1024)
SRAM = (0x2000_0000, 256 * 1024)
DDR = (0x8000_0000, 256 * 1024 * 1024)

RSC_TRACE, RSC_VDEV = 2, 3
ANY = 0xFFFF_FFFF
TRACE_SIZE = 4096

# Functions a crash report should be able to name, per example (besides the common ones).
EXPECTED_SYMBOLS = {
    "hello": {"main", "vsoc_timer_tick", "trace_printf"},
    "rpmsg-echo": {"main", "rpmsg_poll", "rpmsg_send", "echo_cb", "echo_bench_loop"},
    "crash": {
        "main",
        "crash_mmu_read",
        "crash_mmu_write",
        "crash_watchdog",
        "crash_abort",
        "crash_undefined",
        "rpmsg_poll",
    },
    "detachable": {"main", "rpmsg_poll", "detachable_heartbeat"},
    "big": {"main", "big_pattern", "big_pattern_end"},
}
COMMON_SYMBOLS = {"vsoc_trace_buf", "resource_table", "vsoc_sleep", "vsoc_fatal"}
ENTRY_SYMBOL = {"m4": "Reset_Handler", "rv32": "_start"}

IMAGES = [(e, a) for e in EXAMPLES for a in ARCHES]


def image_path(example: str, arch: str) -> Path:
    return FW_DIR / f"{example}-{arch}.elf"


def in_region(addr: int, size: int, region: tuple[int, int]) -> bool:
    base, length = region
    return base <= addr and addr + size <= base + length


def parse_table(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, offset, body) for each entry, with the kernel's validation (§4.4, §5.3)."""
    assert len(data) >= 16, "header-less resource table"
    ver, num, r0, r1 = struct.unpack_from("<4I", data)
    assert ver == 1 and r0 == 0 and r1 == 0
    assert 16 + 4 * num <= len(data), "resource table incomplete"
    entries = []
    for i in range(num):
        off = struct.unpack_from("<I", data, 16 + 4 * i)[0]
        assert 16 + 4 * num <= off and off + 4 <= len(data), f"entry {i} offset {off:#x}"
        (rtype,) = struct.unpack_from("<I", data, off)
        entries.append((rtype, off, data[off + 4 :]))
    return entries


def check_trace(body: bytes, syms: dict[str, int]) -> None:
    da, length, reserved = struct.unpack_from("<3I", body)
    name = body[12:44].split(b"\0")[0]
    assert reserved == 0
    assert name == b"trace0"
    assert length == TRACE_SIZE
    assert da == syms["vsoc_trace_buf"]
    assert in_region(da, length, SRAM)


def check_rpmsg_vdev(body: bytes) -> None:
    vid, notifyid, dfeatures, gfeatures, config_len, status, nvr = struct.unpack_from("<5IBB", body)
    assert body[22:24] == b"\0\0"  # reserved
    assert (vid, notifyid, dfeatures, gfeatures, config_len, status, nvr) == (
        7,  # VIRTIO_ID_RPMSG
        ANY,  # the host never assigns it
        1 << 0,  # VIRTIO_RPMSG_F_NS
        0,
        0,
        0,  # pristine: the host writes status
        2,
    )
    for i in range(2):
        da, align, num, vr_notifyid, pa = struct.unpack_from("<5I", body, 24 + 20 * i)
        assert (da, align, vr_notifyid, pa) == (ANY, 16, ANY, 0)
        assert num >= 16 and num & (num - 1) == 0


class Image:
    def __init__(self, example: str, arch: str) -> None:
        self.example, self.arch = example, arch
        self.path = image_path(example, arch)
        self.data = self.path.read_bytes()
        with open(self.path, "rb") as fh:
            ef = ELFFile(fh)
            self.header = ef.header
            self.machine = ef["e_machine"]
            self.elfclass, self.little = ef.elfclass, ef.little_endian
            self.segments = [dict(s.header) for s in ef.iter_segments()]
            self.sections = {s.name: (dict(s.header), s.data()) for s in ef.iter_sections()}
            symtab = ef.get_section_by_name(".symtab")
            self.symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}
            self.has_dwarf = ef.has_dwarf_info()

    def loads(self) -> list[dict[str, int]]:
        return [s for s in self.segments if s["p_type"] == "PT_LOAD"]

    def table(self) -> tuple[dict[str, int], bytes]:
        return self.sections[".resource_table"]


@pytest.fixture(scope="module", params=IMAGES, ids=[f"{e}-{a}" for e, a in IMAGES])
def img(request: pytest.FixtureRequest) -> Image:
    return Image(*request.param)


def test_every_image_is_committed() -> None:
    missing = [p.name for e, a in IMAGES if not (p := image_path(e, a)).is_file()]
    assert not missing


def test_elf_header_and_entry(img: Image) -> None:
    assert img.elfclass == 32 and img.little
    assert img.machine == ARCHES[img.arch]
    entry = img.header["e_entry"]
    assert in_region(entry & ~1, 2, TCM)
    assert entry & ~1 == img.symbols[ENTRY_SYMBOL[img.arch]] & ~1
    text = img.sections[".text"][1]
    if img.arch == "m4":
        assert entry & 1, "Cortex-M entry must be a Thumb address"
        sp, reset = struct.unpack_from("<2I", text)  # the vector table at TCM 0
        assert sp == SRAM[0] + SRAM[1]  # the stack starts at the top of SRAM
        assert reset == entry
        mailbox, timer = struct.unpack_from("<2I", text, 16 * 4)  # IRQ 0 and IRQ 1
        assert in_region(mailbox & ~1, 2, TCM) and mailbox & 1
        assert in_region(timer & ~1, 2, TCM) and timer & 1
    else:
        assert entry == 0  # _start at TCM 0


def test_segments_fit_the_memory_map(img: Image) -> None:
    for seg in img.loads():
        pa, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
        assert filesz <= memsz
        assert any(in_region(pa, memsz, r) for r in (TCM, SRAM, DDR)), f"segment at {pa:#x}"
        if in_region(pa, memsz, DDR):
            # images keep out of the host's DMA pool (the upper half of DDR)
            assert pa + memsz <= DDR[0] + DDR[1] // 2


def test_resource_table_entries(img: Image) -> None:
    hdr, data = img.table()
    entries = parse_table(data)
    types = [t for t, _, _ in entries]
    if img.example in RPMSG_EXAMPLES:
        assert types == [RSC_VDEV, RSC_TRACE]
        check_rpmsg_vdev(entries[0][2])
        check_trace(entries[1][2], img.symbols)
    else:
        assert types == [RSC_TRACE]
        check_trace(entries[0][2], img.symbols)
    assert hdr["sh_addr"] == img.symbols["resource_table"]


def test_resource_table_is_loaded_where_its_section_says(img: Image) -> None:
    """The host finds the loaded table at sh_addr (rproc_elf_find_loaded_rsc_table): a PT_LOAD
    must put the section's bytes exactly there (p_paddr == p_vaddr, inside the file data)."""
    hdr, data = img.table()
    addr, size = hdr["sh_addr"], hdr["sh_size"]
    assert in_region(addr, size, TCM)
    covering = [
        s
        for s in img.loads()
        if s["p_paddr"] <= addr and addr + size <= s["p_paddr"] + s["p_filesz"]
    ]
    assert len(covering) == 1
    seg = covering[0]
    assert seg["p_vaddr"] == seg["p_paddr"]
    start = seg["p_offset"] + addr - seg["p_paddr"]
    assert img.data[start : start + size] == data


def test_trace_buffer_is_zero_filled_by_the_loader(img: Image) -> None:
    """The trace buffer starts as an empty string because a PT_LOAD's memsz covers it."""
    da = img.symbols["vsoc_trace_buf"]
    assert any(
        s["p_paddr"] + s["p_filesz"] <= da and da + TRACE_SIZE <= s["p_paddr"] + s["p_memsz"]
        for s in img.loads()
    )


def test_data_is_copied_from_tcm(img: Image) -> None:
    """.data runs in SRAM but is loaded (p_paddr) in TCM, where the startup code copies it from."""
    if ".data" not in img.sections:
        pytest.skip("no initialised data")
    hdr, _ = img.sections[".data"]
    assert in_region(hdr["sh_addr"], hdr["sh_size"], SRAM)
    seg = next(s for s in img.loads() if s["p_vaddr"] == hdr["sh_addr"])
    assert in_region(seg["p_paddr"], seg["p_filesz"], TCM)
    assert img.symbols["_sidata"] == seg["p_paddr"]


def test_symbols_and_debug_info(img: Image) -> None:
    missing = (EXPECTED_SYMBOLS[img.example] | COMMON_SYMBOLS) - img.symbols.keys()
    assert not missing
    assert img.has_dwarf and ".debug_line" in img.sections
    for name in EXPECTED_SYMBOLS[img.example]:
        if name.startswith(("crash_", "echo_", "rpmsg_")) or name == "main":
            assert in_region(img.symbols[name] & ~1, 2, TCM), name


def test_no_build_machine_paths(img: Image) -> None:
    """Reproducible builds: no absolute path of the build tree ends up in the image."""
    assert str(ROOT).encode() not in img.data
    assert b"firmware/sdk/src" in img.data  # the mapped, relative form is there instead


def test_the_project_checker_accepts_it(img: Image) -> None:
    report = check.check_firmware(elf.Firmware(img.path.name, img.data))
    assert not report.errors, [f.message for f in report.errors]


@pytest.mark.parametrize("arch", list(ARCHES))
def test_big_has_8_mib_of_pattern(arch: str) -> None:
    big = Image("big", arch)
    assert sum(s["p_filesz"] for s in big.loads()) >= 8 * 1024 * 1024
    hdr, data = big.sections[".ddr"]
    assert hdr["sh_type"] == "SHT_PROGBITS" and len(data) == 8 * 1024 * 1024
    base = big.symbols["big_pattern"]
    assert hdr["sh_addr"] == base == (0x8000_0000 if arch == "m4" else 0x8100_0000)
    for page in (0, 1, 1000, 2047):
        addr, index = struct.unpack_from("<2I", data, page * 4096)
        assert (addr, index) == (base + page * 4096, page)
        fill = struct.pack("<I", 0xB16B0000 | page) * 1022
        assert data[page * 4096 + 8 : (page + 1) * 4096] == fill


def test_rpmsg_channel_names_are_in_the_images() -> None:
    for arch in ARCHES:
        data = image_path("rpmsg-echo", arch).read_bytes()
        for name in (b"rpmsg-raw\0", b"rpmsg-tty\0", b"rpmsg-openamp-demo-channel\0"):
            assert name in data


@pytest.mark.slow
def test_rebuild_gives_the_committed_tables(tmp_path: Path) -> None:
    out, obj = tmp_path / "out", tmp_path / "obj"
    jobs = str(max(2, min(8, os.cpu_count() or 2)))
    res = subprocess.run(
        ["make", "-s", "-j", jobs, "-C", str(EXAMPLES_DIR), f"OUT={out}", f"OBJBASE={obj}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for example, arch in IMAGES:
        committed = Image(example, arch)
        path = out / f"{example}-{arch}.elf"
        with open(path, "rb") as fh:
            ef = ELFFile(fh)
            table = ef.get_section_by_name(".resource_table")
            assert table.data() == committed.table()[1], f"{example}-{arch}: .resource_table"
            assert table["sh_addr"] == committed.table()[0]["sh_addr"]
            layout = [
                (s["p_paddr"], s["p_vaddr"], s["p_memsz"], s["p_filesz"])
                for s in ef.iter_segments()
                if s["p_type"] == "PT_LOAD"
            ]
        assert layout == [
            (s["p_paddr"], s["p_vaddr"], s["p_memsz"], s["p_filesz"]) for s in committed.loads()
        ], f"{example}-{arch}: segments"
