"""``rproc fw info / check / map``: verdicts against the fixture manifest, the CLI as a user runs
it (real subprocesses, exit statuses, no tracebacks), and bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remoteproc.firmware import rsc_table as rt
from remoteproc.firmware.check import check_firmware
from remoteproc.firmware.elf import Firmware
from remoteproc.firmware.fwmap import build_map, layout, to_svg
from remoteproc.firmware.inspect import describe_firmware, format_info

ROOT = Path(__file__).resolve().parent.parent
PREBUILT = ROOT / "firmware" / "prebuilt"
MANIFEST = tomllib.loads((ROOT / "firmware" / "fixtures" / "manifest.toml").read_text())
FIXTURES = MANIFEST["fixtures"]


def rproc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remoteproc.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_check_agrees_with_what_linux_does(name: str) -> None:
    fx = FIXTURES[name]
    report = check_firmware(Firmware.from_file(str(PREBUILT / fx["file"])))
    assert report.codes() == set(fx["findings"]), [str(f) for f in report.findings]
    assert (report.exit_status == 2) == (fx["boot"] == "fails")
    if fx["boot"] == "fails" and fx.get("errno") not in (None, "RSC_IGNORED"):
        import errno

        assert any(f.errno == getattr(errno, fx["errno"]) for f in report.errors)


@pytest.mark.parametrize(
    ("fixture", "status", "words"),
    [
        ("stm32mp1-like-m4.elf", 0, "ok"),
        ("unknown-type-5.elf", 1, "unsupported resource 5"),
        ("vendor-last.elf", 2, "RSC_IGNORED"),
        ("devmem.elf", 2, "devmem rsc needs an iommu"),
        ("big-endian-cr4.elf", 2, "Unsupported firmware endianness"),
        ("no-rsc-table.elf", 2, "no .resource_table section"),
    ],
)
def test_check_cli_exit_status_and_message(fixture: str, status: int, words: str) -> None:
    proc = rproc("fw", "check", str(PREBUILT / fixture))
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert words in proc.stdout
    assert "Traceback" not in proc.stderr


def test_check_names_entry_offset_and_address() -> None:
    proc = rproc("fw", "check", "--json", str(PREBUILT / "vring-outside-segments.elf"))
    data = json.loads(proc.stdout)
    assert [f["da"] for f in data["findings"]] == [0x10040000, 0x10041000]
    finding = data["findings"][0]
    assert finding["code"] == "vring-outside-segments"
    assert finding["offset"] is not None and "vring" in finding["where"]
    assert data["exit_status"] == proc.returncode == 1


def test_check_options_change_the_target() -> None:
    assert rproc("fw", "check", "--iommu", str(PREBUILT / "devmem.elf")).returncode == 0
    big = rproc("fw", "check", "--host-endian", "big", str(PREBUILT / "big-endian-cr4.elf"))
    assert big.returncode == 0, big.stdout


def test_info_prints_segments_at_paddr_and_the_debugfs_table() -> None:
    path = PREBUILT / "paddr-ne-vaddr.elf"
    fw = Firmware.from_file(str(path))
    proc = rproc("fw", "info", str(path))
    assert proc.returncode == 0, proc.stderr
    moved = [s for s in fw.elf.segments if s.type == 1 and s.paddr != s.vaddr]
    assert moved
    for seg in moved:
        assert f"{seg.paddr:#010x}   {seg.vaddr:#010x}" in proc.stdout
    sec = next(s for s in fw.elf.sections if s.name == ".resource_table")
    table = bytes(fw.data[sec.offset : sec.offset + sec.size])
    assert rt.format_resource_table(memoryview(table), "<").rstrip() in proc.stdout
    assert f"{fw.elf.entry:#010x}" in proc.stdout


def test_info_json_matches_the_image() -> None:
    path = PREBUILT / "rv64-imac.elf"
    fw = Firmware.from_file(str(path))
    data = json.loads(rproc("fw", "info", "--json", str(path)).stdout)
    assert data["elf"]["class"] == "ELF64" and data["elf"]["machine"] == 243
    assert [s["device_address"] for s in data["segments"]] == [s.paddr for s in fw.elf.segments]
    kinds = [e["type_name"] for e in data["resource_table"]["entries"]]
    assert "vdev" in kinds and "trace" in kinds


def test_info_big_endian_table_is_read_in_its_own_order() -> None:
    info = describe_firmware(Firmware.from_file(str(PREBUILT / "big-endian-cr4.elf")))
    assert info["elf"]["byteorder"] == "big"
    vdev = next(e for e in info["resource_table"]["entries"] if e["type_name"] == "vdev")
    assert vdev["id"] == 7  # 0x07000000 if it were read little-endian


def test_map_svg_and_png(tmp_path: Path) -> None:
    svg = tmp_path / "m.svg"
    png = tmp_path / "m.png"
    fixture = str(PREBUILT / "vring-outside-segments.elf")
    assert rproc("fw", "map", fixture, "-o", str(svg)).returncode == 0
    text = svg.read_text()
    for label in ("LOAD 0", ".resource_table", "vdev vring0", "vdev vring1", "trace0", "gap of"):
        assert label in text
    assert rproc("fw", "map", fixture, "-o", str(png)).returncode == 0
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] >= 900
    bad = rproc("fw", "map", fixture, "-o", str(tmp_path / "m.gif"))
    assert bad.returncode == 2 and "use .svg or .png" in bad.stderr


def test_map_is_to_scale_within_a_cluster() -> None:
    # Two segments of 0x1000 and 0x3000 bytes, back to back: heights must be in ratio 1:3.
    from elfbuild import Seg, build_elf

    image = build_elf([Seg(b"\1" * 0x1000, paddr=0), Seg(b"\1" * 0x3000, paddr=0x1000)])
    drawing = layout(build_map(Firmware("two.elf", bytes(image))))
    heights = sorted(r.h for r in drawing.rects if r.fill and r.w > 300)
    assert heights[1] == pytest.approx(3 * heights[0], rel=1e-6)


def test_bad_input_gets_a_message_not_a_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 60)
    for cmd in ("info", "check"):
        proc = rproc("fw", cmd, str(junk))
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
    missing = rproc("fw", "info", str(tmp_path / "nope.elf"))
    assert missing.returncode == 2 and "ENOENT" in missing.stderr
    assert "Traceback" not in missing.stderr


def _mutations() -> st.SearchStrategy[bytes]:
    images = [p.read_bytes() for p in sorted(PREBUILT.glob("*.elf"))]

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(images)))
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 4))
            data[pos : pos + 4] = struct.pack("<I", draw(st.sampled_from(
                [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(data), draw(st.integers(0, 2**32 - 1))]
            )))
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        return bytes(data)

    return mutate()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_fuzz_check_info_map_never_raise(data: bytes) -> None:
    fw = Firmware("fuzz.elf", data)
    report = check_firmware(fw)
    assert report.exit_status in (0, 1, 2)
    json.dumps(report.to_dict())
    info = describe_firmware(fw)
    format_info(info)
    json.dumps(info)
    to_svg(layout(build_map(fw)))
