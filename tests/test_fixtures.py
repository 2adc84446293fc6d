"""The committed firmware fixtures (firmware/prebuilt/) have the shapes that
firmware/fixtures/manifest.toml claims, and the manifest's expected `rproc fw check` findings and
Linux verdicts follow from the images themselves.

Everything here reads the images with pyelftools and struct only, independently of the project's
ELF loader and resource-table codec, so a fixture that lost its shape (a rebuild with another
linker script, a changed table) fails here even if the project's code has the same bug.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import struct
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
PREBUILT = FIRMWARE / "prebuilt"
MANIFEST = tomllib.loads((FIRMWARE / "fixtures" / "manifest.toml").read_text())
FIXTURES: dict[str, dict] = MANIFEST["fixtures"]

ADDR_ANY = 0xFFFFFFFF
PT_LOAD = 1
PF_W, PF_R = 2, 4
RSC_CARVEOUT, RSC_DEVMEM, RSC_TRACE, RSC_VDEV, RSC_LAST = 0, 1, 2, 3, 4
VENDOR_START, VENDOR_END = 128, 512
MACHINES = {"machine-arm": 40, "machine-riscv": 243, "machine-ti-pru": 144}

FINDING_IDS = {
    "no-rsc-table",
    "rsc-table-empty",
    "rsc-table-incomplete",
    "big-endian",
    "vendor-last-ignored",
    "devmem-no-iommu",
    "carveout-name-percent",
    "unknown-type",
    "vring-num-not-pow2",
    "vring-align-zero",
    "vring-da-zero",
    "vring-outside-segments",
    "trace-outside-segments",
    "table-outside-segments",
    "rsc-table-readonly",
    "overlapping-segments",
    "paddr-ne-vaddr",
}
# Findings with which Linux's default ops refuse to boot, and what rproc_boot() returns.
FATAL = {
    "big-endian": "EINVAL",
    "no-rsc-table": "EINVAL",
    "rsc-table-empty": "EINVAL",
    "rsc-table-incomplete": "EINVAL",
    "devmem-no-iommu": "EINVAL",
    "vendor-last-ignored": "RSC_IGNORED",
}


# --- an independent reader of the images ---------------------------------------------------


@dataclass
class Segment:
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int
    offset: int

    def contains(self, start: int, length: int = 1) -> bool:
        return self.memsz > 0 and self.paddr <= start and start + length <= self.paddr + self.memsz


@dataclass
class Entry:
    offset: int
    type: int
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class Image:
    name: str
    data: bytes
    order: str
    elfclass: int
    machine: int
    entry: int
    segments: list[Segment]
    table: bytes | None
    table_addr: int = 0
    table_alloc: bool = False
    table_error: str | None = None
    num: int = 0
    offsets: tuple[int, ...] = ()
    entries: list[Entry] = field(default_factory=list)

    def u32(self, data: bytes, off: int, n: int = 1) -> tuple[int, ...]:
        return struct.unpack_from(f"{self.order}{n}I", data, off)

    def covered(self, start: int, length: int) -> bool:
        return any(s.contains(start, max(length, 1)) for s in self.segments)

    def of_type(self, rtype: int) -> list[Entry]:
        return [e for e in self.entries if e.type == rtype]

    def vrings(self) -> list[dict[str, int]]:
        return [v for e in self.of_type(RSC_VDEV) for v in e.fields["vrings"]]

    def read_da(self, da: int, length: int) -> bytes:
        for s in self.segments:
            if s.paddr <= da and da + length <= s.paddr + s.filesz:
                start = s.offset + da - s.paddr
                return self.data[start : start + length]
        raise AssertionError(f"{da:#x} is not in the file image of any segment")


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _parse_entries(img: Image) -> None:
    t, table = img, img.table
    assert table is not None
    for off in t.offsets:
        (rtype,) = t.u32(table, off)
        body = off + 4
        e = Entry(off, rtype)
        if rtype in (RSC_CARVEOUT, RSC_DEVMEM):
            da, pa, length, flags, reserved = t.u32(table, body, 5)
            e.fields = {
                "da": da,
                "pa": pa,
                "len": length,
                "flags": flags,
                "reserved": reserved,
                "name": _name(table[body + 20 : body + 52]),
            }
        elif rtype == RSC_TRACE:
            da, length, reserved = t.u32(table, body, 3)
            e.fields = {
                "da": da,
                "len": length,
                "reserved": reserved,
                "name": _name(table[body + 12 : body + 44]),
            }
        elif rtype == RSC_VDEV:
            vid, notifyid, dfeat, gfeat, config_len = t.u32(table, body, 5)
            status, nvrings = table[body + 20], table[body + 21]
            vrings = []
            for i in range(nvrings):
                da, align, num, vnotify, pa = t.u32(table, body + 24 + 20 * i, 5)
                vrings.append({"da": da, "align": align, "num": num, "notifyid": vnotify, "pa": pa})
            e.fields = {
                "id": vid,
                "notifyid": notifyid,
                "dfeatures": dfeat,
                "gfeatures": gfeat,
                "config_len": config_len,
                "status": status,
                "reserved": table[body + 22 : body + 24],
                "vrings": vrings,
            }
        img.entries.append(e)


def load(name: str) -> Image:
    path = PREBUILT / FIXTURES[name]["file"]
    data = path.read_bytes()
    elf = ELFFile(open(path, "rb"))  # noqa: SIM115 - closed below
    try:
        order = "<" if elf.little_endian else ">"
        segments = [
            Segment(
                p["p_vaddr"], p["p_paddr"], p["p_filesz"], p["p_memsz"], p["p_flags"], p["p_offset"]
            )
            for p in elf.iter_segments()
            if p["p_type"] == "PT_LOAD"
        ]
        sec = elf.get_section_by_name(".resource_table")
        machine = struct.unpack_from(order + "H", data, 18)[0]  # e_machine, as a number
        table = bytes(sec.data()) if sec is not None else None
        img = Image(name, data, order, elf.elfclass, machine, elf["e_entry"], segments, table)
        if sec is not None:
            img.table_addr = sec["sh_addr"]
            img.table_alloc = bool(sec["sh_flags"] & SH_FLAGS.SHF_ALLOC)
    finally:
        elf.stream.close()
    # Linux's find_table() checks, in its order (spec §4.4).
    table = img.table
    if table is None:
        img.table_error = "missing"
    elif len(table) < 16:
        img.table_error = "header-less"
    else:
        ver, num, r0, r1 = img.u32(table, 0, 4)
        img.num = num
        if ver != 1 or r0 or r1:
            img.table_error = "bad header"
        elif 16 + 4 * num > len(table):
            img.table_error = "incomplete"
        else:
            img.offsets = img.u32(table, 16, num)
            _parse_entries(img)
    return img


# --- the expected findings, computed from the image -----------------------------------------


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def compute_findings(img: Image) -> set[str]:
    found: set[str] = set()
    if img.order == ">":
        found.add("big-endian")
    loads = [s for s in img.segments if s.memsz > 0]
    for i, a in enumerate(loads):
        if a.paddr != a.vaddr:
            found.add("paddr-ne-vaddr")
        for b in loads[i + 1 :]:
            if a.paddr < b.paddr + b.memsz and b.paddr < a.paddr + a.memsz:
                found.add("overlapping-segments")
    errors = {
        "missing": "no-rsc-table",
        "header-less": "rsc-table-empty",
        "incomplete": "rsc-table-incomplete",
    }
    if img.table_error is not None:
        found.add(errors[img.table_error])
        return found
    assert img.table is not None
    size = len(img.table)
    holders = [s for s in loads if s.contains(img.table_addr, size)]
    if not img.table_alloc or not holders:
        found.add("table-outside-segments")
    elif not all(s.flags & PF_W for s in holders):
        found.add("rsc-table-readonly")
    ret = 0  # rproc_handle_resources() with no handle_rsc op, every handler succeeding
    for e in img.entries:
        if VENDOR_START <= e.type <= VENDOR_END:
            ret = 1
        elif e.type >= RSC_LAST:
            found.add("unknown-type")
        else:
            ret = 0
        if e.type == RSC_DEVMEM:
            found.add("devmem-no-iommu")
        if e.type == RSC_CARVEOUT and "%" in str(e.fields["name"]):
            found.add("carveout-name-percent")
        if e.type == RSC_TRACE and not img.covered(e.fields["da"], e.fields["len"]):
            found.add("trace-outside-segments")
    if ret == 1:
        found.add("vendor-last-ignored")
    for v in img.vrings():
        if not is_pow2(v["num"]):
            found.add("vring-num-not-pow2")
        if v["align"] == 0:
            found.add("vring-align-zero")
        if v["da"] == 0:
            found.add("vring-da-zero")
        if v["da"] != ADDR_ANY and not img.covered(v["da"], 1):
            found.add("vring-outside-segments")
    return found


# --- the shapes the manifest claims ----------------------------------------------------------


def _rpmsg_vdevs(img: Image) -> list[Entry]:
    return [
        e
        for e in img.of_type(RSC_VDEV)
        if e.fields["id"] == 7
        and len(e.fields["vrings"]) == 2
        and e.fields["dfeatures"] & 1
        and e.fields["reserved"] == b"\0\0"
    ]


def _openamp_table(img: Image) -> bool:
    if img.num != 2 or [e.type for e in img.entries] != [RSC_VDEV, RSC_TRACE]:
        return False
    vdev, trace = img.entries
    good_rings = all(
        v == {"da": ADDR_ANY, "align": 16, "num": 16, "notifyid": v["notifyid"], "pa": 0}
        for v in vdev.fields["vrings"]
    )
    return (
        vdev in _rpmsg_vdevs(img)
        and vdev.fields["dfeatures"] == 1
        and vdev.fields["config_len"] == 0
        and good_rings
        and img.covered(trace.fields["da"], trace.fields["len"])
    )


def _entry_is_vector_reset(img: Image) -> bool:
    # Cortex-M: word 0 of the vector table is the initial SP, word 1 the reset handler = e_entry.
    sp, reset = img.u32(img.read_da(0, 8), 0, 2)
    return reset == img.entry and reset & 1 == 1 and img.covered(sp - 4, 4)


def _table_ro_alone(img: Image) -> bool:
    size = len(img.table or b"")
    holders = [s for s in img.segments if s.contains(img.table_addr, size)]
    return (
        size > 0
        and len(holders) == 1
        and holders[0].flags == PF_R
        and holders[0].paddr == img.table_addr
        and holders[0].filesz == size
    )


def _offsets_8_slots(img: Image) -> bool:
    table = img.table or b""
    if img.table_error is not None or not 0 < img.num < 8:
        return False
    unused = table[16 + 4 * img.num : 0x30]
    return img.offsets[0] == 0x30 and min(img.offsets) == 0x30 and unused == bytes(len(unused))


def _paddr_ne_vaddr(img: Image) -> bool:
    for s in img.segments:
        if s.paddr != s.vaddr and s.filesz > 0 and s.flags & PF_W:
            # the initialised data (boot_magic "RPRC") really is in the file at the load address
            return struct.pack(img.order + "I", 0x52505243) in img.read_da(s.paddr, s.filesz)
    return False


def _overlapping(img: Image) -> bool:
    loads = [s for s in img.segments if s.memsz > 0]
    return any(
        a.paddr < b.paddr + b.memsz and b.paddr < a.paddr + a.memsz
        for i, a in enumerate(loads)
        for b in loads[i + 1 :]
    )


def _machine_is(machine: int, img: Image) -> bool:
    return img.machine == machine


SHAPES: dict[str, Callable[[Image], bool]] = {
    **{k: functools.partial(_machine_is, m) for k, m in MACHINES.items()},
    "elf32": lambda img: img.elfclass == 32,
    "elf64": lambda img: img.elfclass == 64,
    "little-endian": lambda img: img.order == "<",
    "big-endian": lambda img: img.order == ">",
    "entry-is-vector-reset": _entry_is_vector_reset,
    "openamp-rpmsg-table": _openamp_table,
    "rpmsg-vdev": lambda img: bool(_rpmsg_vdevs(img)),
    "trace-entry": lambda img: bool(img.of_type(RSC_TRACE)),
    "carveout-entry": lambda img: bool(img.of_type(RSC_CARVEOUT)),
    "devmem-entry": lambda img: bool(img.of_type(RSC_DEVMEM)),
    "paddr-ne-vaddr": _paddr_ne_vaddr,
    "rsc-table-sh-size-0": lambda img: img.table is not None and len(img.table) == 0,
    "no-rsc-table": lambda img: img.table is None,
    "rsc-table-ro-segment": _table_ro_alone,
    "offsets-8-slots": _offsets_8_slots,
    "type-5-entry": lambda img: bool(img.of_type(5)),
    "vring-da-0": lambda img: any(v["da"] == 0 for v in img.vrings()),
    "vring-da-any": lambda img: any(v["da"] == ADDR_ANY for v in img.vrings()),
    "trace-odd-addr-len-0x401": lambda img: any(
        e.fields["da"] % 2 == 1 and e.fields["len"] == 0x401 for e in img.of_type(RSC_TRACE)
    ),
    "vdev-notifyid-31": lambda img: any(e.fields["notifyid"] == 31 for e in img.of_type(RSC_VDEV)),
    "vring-256-align-0x1000": lambda img: (
        bool(img.vrings()) and all(v["num"] == 256 and v["align"] == 0x1000 for v in img.vrings())
    ),
    "table-num-0": lambda img: img.table_error is None and img.num == 0,
    "vendor-last": lambda img: (
        bool(img.entries) and VENDOR_START <= img.entries[-1].type <= VENDOR_END
    ),
    "carveout-name-percent": lambda img: any(
        "%" in str(e.fields["name"]) for e in img.of_type(RSC_CARVEOUT)
    ),
    "vring-num-not-pow2": lambda img: any(not is_pow2(v["num"]) for v in img.vrings()),
    "vring-align-0": lambda img: any(v["align"] == 0 for v in img.vrings()),
    "overlapping-pt-load": _overlapping,
    "trace-outside-pt-load": lambda img: any(
        not img.covered(e.fields["da"], e.fields["len"]) for e in img.of_type(RSC_TRACE)
    ),
    "vring-fixed-outside-pt-load": lambda img: any(
        v["da"] not in (0, ADDR_ANY) and not img.covered(v["da"], 1) for v in img.vrings()
    ),
    "table-not-in-pt-load": lambda img: (
        img.table is not None
        and not img.table_alloc
        and not img.covered(img.table_addr, len(img.table))
    ),
    "num-exceeds-section": lambda img: (
        img.table is not None and len(img.table) >= 16 and 16 + 4 * img.num > len(img.table)
    ),
}

IMAGES = {name: load(name) for name in FIXTURES}


# --- tests ------------------------------------------------------------------------------------


def test_manifest_and_prebuilt_folder_list_the_same_images() -> None:
    files = {f["file"] for f in FIXTURES.values()}
    assert len(files) == len(FIXTURES)
    assert files == {p.name for p in PREBUILT.glob("*.elf")}


def test_every_fixture_has_a_source_and_a_make_target() -> None:
    makefile = (FIRMWARE / "fixtures" / "Makefile").read_text()
    for name, fx in FIXTURES.items():
        assert fx["file"] == f"{name}.elf"
        assert (FIRMWARE / "fixtures" / "src" / f"{name}.c").is_file()
        assert f"\t{name} \\" in makefile or f"\t{name}\n" in makefile


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_manifest_entry_is_well_formed(name: str) -> None:
    fx = FIXTURES[name]
    for key in (
        "file",
        "arch",
        "machine",
        "class",
        "endian",
        "description",
        "shapes",
        "boot",
        "findings",
        "linux",
    ):
        assert key in fx, key
    assert fx["boot"] in ("ok", "fails")
    assert ("errno" in fx) == (fx["boot"] == "fails")
    assert set(fx["findings"]) <= FINDING_IDS
    assert len(set(fx["findings"])) == len(fx["findings"])
    assert set(fx["shapes"]) <= SHAPES.keys()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_elf_header_matches_manifest(name: str) -> None:
    fx, img = FIXTURES[name], IMAGES[name]
    assert img.data[:4] == b"\x7fELF"
    assert img.machine == fx["machine"]
    assert img.elfclass == fx["class"]
    assert img.order == {"little": "<", "big": ">"}[fx["endian"]]
    assert img.segments, "Linux refuses an image without segments"
    assert img.covered(img.entry & ~1, 2), "the entry point is in a loaded segment"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_has_its_claimed_shapes(name: str) -> None:
    img = IMAGES[name]
    missing = [s for s in FIXTURES[name]["shapes"] if not SHAPES[s](img)]
    assert not missing, f"{name} lost its shape(s): {missing}"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shape_checks_are_not_vacuous(shape: str) -> None:
    holds = {name for name, img in IMAGES.items() if SHAPES[shape](img)}
    claimed = {name for name, fx in FIXTURES.items() if shape in fx["shapes"]}
    assert claimed, f"no fixture claims {shape}"
    assert holds != set(IMAGES), f"{shape} holds for every image: the check proves nothing"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_expected_findings_follow_from_the_image(name: str) -> None:
    assert compute_findings(IMAGES[name]) == set(FIXTURES[name]["findings"])


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_boot_verdict_follows_from_the_findings(name: str) -> None:
    fx = FIXTURES[name]
    fatal = [FATAL[f] for f in fx["findings"] if f in FATAL]
    assert fx["boot"] == ("fails" if fatal else "ok")
    if fatal:
        assert fx["errno"] == fatal[0]


def test_every_finding_id_has_a_witness() -> None:
    witnessed = {f for fx in FIXTURES.values() for f in fx["findings"]}
    assert witnessed == FINDING_IDS


def test_clean_stm32mp1_like_image_is_exactly_the_openamp_table() -> None:
    img = IMAGES["stm32mp1-like-m4"]
    vdev, trace = img.entries
    assert img.offsets == (0x18, 0x18 + 4 + 24 + 40)
    assert vdev.fields["notifyid"] == 0 and vdev.fields["gfeatures"] == 0
    assert vdev.fields["status"] == 0
    assert trace.fields["name"] == "cm4_log" and trace.fields["len"] == 2048
    assert compute_findings(img) == set()


def test_specific_values_from_the_issue() -> None:
    assert IMAGES["offsets-8-slots"].offsets[0] == 0x30
    trace = IMAGES["trace-odd-len"].of_type(RSC_TRACE)[0].fields
    assert (trace["da"] % 2, trace["len"]) == (1, 0x401)
    assert IMAGES["vdev-notifyid-31"].of_type(RSC_VDEV)[0].fields["notifyid"] == 31
    assert [v["da"] for v in IMAGES["vring-da-zero-and-any"].vrings()] == [0, ADDR_ANY]
    assert IMAGES["ti-pru-like"].machine == 144
    assert IMAGES["vendor-last"].entries[-1].type == VENDOR_START
    assert IMAGES["carveout-name-percent"].of_type(RSC_CARVEOUT)[0].fields["name"] == (
        "vdev%dbuffer"
    )
    assert IMAGES["rsc-table-incomplete"].num == 40
    assert len(IMAGES["rsc-table-incomplete"].table or b"") == 140
    # the big-endian table really is big-endian: read little-endian, ver would be 1 << 24
    be = IMAGES["big-endian-cr4"]
    assert struct.unpack_from(">I", be.table or b"", 0)[0] == 1
    assert be.data[5] == 2  # EI_DATA = ELFDATA2MSB


# --- firmware/check_prebuilt.py ---------------------------------------------------------------


def _check_prebuilt():
    spec = importlib.util.spec_from_file_location("check_prebuilt", FIRMWARE / "check_prebuilt.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_check_prebuilt_accepts_identical_folders(tmp_path: Path) -> None:
    cp = _check_prebuilt()
    for p in PREBUILT.glob("*.elf"):
        shutil.copy(p, tmp_path / p.name)
    assert cp.compare_dirs(tmp_path, PREBUILT) == []
    pair = cp.Pair("fixtures", tmp_path, PREBUILT)
    assert cp.check([pair]) == 0


def test_check_prebuilt_reports_a_changed_table_and_a_changed_image_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = _check_prebuilt()
    for p in PREBUILT.glob("*.elf"):
        shutil.copy(p, tmp_path / p.name)
    img = IMAGES["stm32mp1-like-m4"]
    elf = ELFFile(open(tmp_path / "stm32mp1-like-m4.elf", "rb"))  # noqa: SIM115
    offset = elf.get_section_by_name(".resource_table")["sh_offset"]
    elf.stream.close()
    patched = bytearray(img.data)
    patched[offset + 4] = 3  # num 2 -> 3
    (tmp_path / "stm32mp1-like-m4.elf").write_bytes(bytes(patched))
    (tmp_path / "devmem.elf").unlink()
    shutil.copy(PREBUILT / "rv32-imac.elf", tmp_path / "extra.elf")
    problems = "\n".join(cp.compare_dirs(tmp_path, PREBUILT))
    assert "stm32mp1-like-m4.elf: .resource_table differs" in problems
    assert "01 00 00 00 03 00 00 00" in problems and "01 00 00 00 02 00 00 00" in problems
    assert "devmem.elf: committed" in problems
    assert "extra.elf: built but not committed" in problems
    assert cp.check([cp.Pair("fixtures", tmp_path, PREBUILT)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_check_prebuilt_treats_a_lost_table_as_a_mismatch() -> None:
    cp = _check_prebuilt()
    assert cp.table_diff(None, None) == []
    assert cp.table_diff(b"\x01" * 16, None)
    assert cp.table_diff(b"\x01" * 16, b"\x01" * 20)


@pytest.mark.slow
def test_rebuilt_fixtures_match_the_committed_ones(tmp_path: Path) -> None:
    out = tmp_path / "fixtures"
    subprocess.run(
        ["make", "-s", "-j4", "-C", str(FIRMWARE / "fixtures"), f"OUT={out}"],
        check=True,
        capture_output=True,
    )
    assert _check_prebuilt().compare_dirs(out, PREBUILT) == []


def test_check_prebuilt_skips_a_folder_make_did_not_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = _check_prebuilt()
    stale = tmp_path / "out"
    stale.mkdir()
    shutil.copy(PREBUILT / "devmem.elf", stale / "leftover.elf")
    (tmp_path / "src").mkdir()  # no Makefile: `make` skipped it, so out/ is stale
    assert cp.check([cp.Pair("examples", stale, tmp_path / "none", tmp_path / "src")]) == 0
    assert "has no Makefile, skipped" in capsys.readouterr().out
    (tmp_path / "src" / "Makefile").write_text("all:\n")
    assert cp.check([cp.Pair("examples", stale, tmp_path / "none", tmp_path / "src")]) == 1
