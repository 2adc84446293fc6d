"""Bad input never escapes the ELF loader as anything but ``RprocError``, never hangs, and never
writes outside the views the caller's translation handed out.

Inputs: (a) synthetic images from ``elfbuild`` with random segments, tables and header fields,
(b) byte mutations (bit flips, field overwrites with edge values, truncations, inserted and
deleted bytes) of valid images: synthetic ones and every ELF under ``firmware/prebuilt/`` and
``src/remoteproc/data/firmware/`` (none is fine). Device memory is a ``GuardedMemory``: guard
bytes around each region, and a record of the views handed out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elfbuild import (
    GuardedMemory,
    Seg,
    build_elf,
    resource_table,
    rsc_carveout,
    rsc_trace,
    rsc_vdev,
)
from fuzzkit import cached, pick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remoteproc.errors import RprocError
from remoteproc.firmware.elf import (
    PT_LOAD,
    ElfImage,
    Firmware,
    check_image,
    find_rsc_table,
    layout,
    locate_rsc_table,
    sanity_check,
)
from remoteproc.firmware.elf_layout import (
    PT_NOTE,
)
from remoteproc.firmware.elf_loader import (
    find_loaded_rsc_table,
    get_boot_addr,
    load_rsc_table,
    load_segments,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RSC_DA = 0x2000_0000
BASES = (0x0, 0x1000, RSC_DA, 0x8000_0000)
REGIONS = [(0x0, 0x2000), (RSC_DA, 0x1000), (0x8000_0000, 0x6000)]
MAX_REGION = 1 << 20


def exercise(data: bytes, regions: list[tuple[int, int]]) -> GuardedMemory:
    """Run every loader entry point on ``data``; only RprocError may come out."""
    mem = GuardedMemory(regions)
    fw = Firmware("fuzz.elf", data)
    calls: list[Callable[[], Any]] = [
        lambda: ElfImage.parse(data),
        lambda: sanity_check(data),
        lambda: find_rsc_table(fw),
        lambda: locate_rsc_table(fw),
        lambda: load_rsc_table(fw),
        lambda: get_boot_addr(fw),
        lambda: load_segments(fw, mem.da_to_va),
        lambda: load_segments(fw, mem.da_to_va, size_max=2**32 - 1),
        lambda: find_loaded_rsc_table(fw, mem.da_to_va),
    ]
    for call in calls:
        try:
            call()
        except RprocError as exc:
            assert exc.errno > 0 and exc.message
            str(exc)  # renders
    for f in check_image(fw):  # never raises
        str(f)
    assert mem.guards_intact(), "a write landed between regions"
    assert mem.untouched_outside_views(), "a write landed outside the views handed out"
    return mem


def expected_memory(data: bytes, regions: list[tuple[int, int]], fill: int) -> GuardedMemory:
    """A model of a successful load: each PT_LOAD in order, bytes then zeros, at p_paddr."""
    img = ElfImage.parse(data)
    model = GuardedMemory(regions, fill)
    for seg in img.load_segments():
        view = model.da_to_va(seg.paddr, seg.memsz)
        assert view is not None
        view[: seg.filesz] = data[seg.offset : seg.offset + seg.filesz]
        view[seg.filesz :] = bytes(seg.memsz - seg.filesz)
    return model


# --- (a) synthetic images --------------------------------------------------------------------


@cached
def edge_values(size: int, bits: int) -> st.SearchStrategy[int]:
    top = (1 << bits) - 1
    vals = [0, 1, 2, 0x10, 0x34, 0x40, size // 2, size - 1, size, size + 1, 0x7FFF_FFFF,
            0xFFFF_FFFF, 2**63, 2**64 - 1, 2**64 - 8]  # fmt: skip
    return st.one_of(
        pick(sorted({v & top for v in vals if v >= 0})),
        st.integers(0, top),
    )


@st.composite
def tables(draw: st.DrawFn, order: str) -> bytes | None:
    kind = draw(pick(["none", "good", "fields", "raw"]))
    if kind == "none":
        return None
    entries = [
        rsc_carveout(0x8000_0000, 0x1000, "mem", byteorder=order),
        rsc_trace(0x8000_1000, 0x100, "trace0", byteorder=order),
        rsc_vdev(byteorder=order),
    ]
    n = draw(st.integers(0, 3))
    if kind == "good":
        return resource_table(entries[:n], byteorder=order)
    if kind == "fields":
        return resource_table(
            entries[:n],
            byteorder=order,
            ver=draw(pick([0, 1, 1, 2, 0xFFFF_FFFF])),
            reserved=(draw(pick([0, 0, 1])), draw(pick([0, 0, 7]))),
            num=draw(st.one_of(st.none(), st.integers(0, 0xFFFF_FFFF))),
        )[: draw(st.integers(0, 300))]
    return draw(st.binary(max_size=80))


@st.composite
def synthetic(draw: st.DrawFn) -> bytes:
    elf_class = draw(pick([1, 2]))
    order = draw(pick("<>"))
    bits = 32 if elf_class == 1 else 64
    segs = []
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=64))
        segs.append(
            Seg(
                data,
                paddr=draw(pick(BASES)) + draw(st.integers(0, 0x40)),
                vaddr=draw(pick(BASES)),
                memsz=len(data) + draw(pick([0, 0, 1, 0x20, 0x1000, 0x5000])),
                type=draw(pick([PT_LOAD, PT_LOAD, PT_LOAD, PT_NOTE, 0x6474E551])),
            )
        )
    table = draw(tables(order))
    b = build_elf(
        segs,
        elf_class=elf_class,
        byteorder=order,
        rsc_table=table,
        rsc_da=RSC_DA + draw(pick([0, 0, 0xF00, 0x2000])),
        entry=draw(st.integers(0, 2**bits - 1)),
        with_sections=draw(st.booleans()) or table is not None,
    )
    size = len(b.data)
    lay = layout(elf_class, order)
    # Overwrite some header fields, program headers and section headers with edge values.
    widths = {"phoff": bits, "shoff": bits, "phnum": 16, "shnum": 16, "shstrndx": 16,
              "phentsize": 16}  # fmt: skip
    for name in draw(st.lists(pick(sorted(widths)), max_size=2, unique=True)):
        b.patch_ehdr(**{name: draw(edge_values(size, widths[name]))})
    nphdr = len(segs) + (table is not None)
    for _ in range(draw(st.integers(0, 2)) if nphdr else 0):
        field = draw(pick(["offset", "filesz", "memsz", "paddr", "type"]))
        idx = draw(st.integers(0, nphdr - 1))
        at = b.phoff + idx * lay.phdr.size
        if b.phoff and at + lay.phdr.size <= size:
            b.patch_phdr(idx, **{field: draw(edge_values(size, 32 if field == "type" else bits))})
    if table is not None and draw(st.booleans()):
        field = draw(pick(["offset", "size", "name", "addr"]))
        at = b.shdr_offset(".resource_table")
        if at + lay.shdr.size <= size:
            w = 32 if field == "name" else bits
            b.patch_shdr(".resource_table", **{field: draw(edge_values(size, w))})
    return bytes(b.data)


@FUZZ
@given(synthetic())
def test_synthetic_images(data: bytes) -> None:
    exercise(data, REGIONS)


@FUZZ
@given(synthetic())
def test_successful_loads_match_the_model(data: bytes) -> None:
    """Whenever a load succeeds, memory holds exactly each PT_LOAD (later ones win) and zeros."""
    mem = GuardedMemory(REGIONS)
    try:
        load_segments(Firmware("m.elf", data), mem.da_to_va)
    except RprocError:
        return
    assert mem.buf == expected_memory(data, REGIONS, mem.fill).buf


# --- (b) mutations of valid images -----------------------------------------------------------


def _prebuilt() -> list[bytes]:
    root = Path(__file__).resolve().parent.parent
    out: list[bytes] = []
    for d in (root / "firmware" / "prebuilt", root / "src" / "remoteproc" / "data" / "firmware"):
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.stat().st_size <= 4 << 20:
                    raw = p.read_bytes()
                    if raw[:4] == b"\x7fELF":
                        out.append(raw)
    return out


def _synthetic_seeds() -> list[bytes]:
    seeds = []
    for elf_class in (1, 2):
        for order in "<>":
            table = resource_table(
                [
                    rsc_carveout(0x8000_0000, 0x1000, "m", byteorder=order),
                    rsc_vdev(byteorder=order),
                ],
                byteorder=order,
            )
            b = build_elf(
                [Seg(bytes(range(48)), paddr=0x100, memsz=0x200),
                 Seg(b"\x01" * 16, paddr=0x8000_0000, memsz=0x4000)],
                elf_class=elf_class,
                byteorder=order,
                rsc_table=table,
                rsc_da=RSC_DA,
            )  # fmt: skip
            seeds.append(bytes(b.data))
    return seeds


SEEDS = _synthetic_seeds() + _prebuilt()


def regions_for(data: bytes) -> list[tuple[int, int]]:
    """Regions covering the seed's PT_LOAD segments (merged), so mutated loads really write."""
    spans: list[tuple[int, int]] = []
    for s in ElfImage.parse(data).load_segments():
        if 0 < s.memsz <= MAX_REGION:
            spans.append((s.paddr, s.paddr + s.memsz))
    spans.sort()
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b - a) for a, b in merged] or REGIONS


SEED_REGIONS = [regions_for(s) for s in SEEDS]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    k = draw(st.integers(0, len(SEEDS) - 1))
    data = bytearray(SEEDS[k])
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        # Most of what matters sits in the first bytes and the header tables.
        pos = draw(st.one_of(st.integers(4, 0x80), st.integers(0, max(n, 1))))
        op = draw(pick(["flip", "set", "set", "truncate", "insert", "delete"]))
        if op == "flip" and pos < n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < n:
            width = draw(pick([1, 2, 4, 8]))
            value = draw(edge_values(n, 8 * width))
            order = draw(pick("<>"))
            raw = value.to_bytes(width, "little" if order == "<" else "big")
            data[pos : pos + width] = raw[: max(0, n - pos)]
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data), SEED_REGIONS[k]


@FUZZ
@given(mutated())
def test_mutated_images(case: tuple[bytes, list[tuple[int, int]]]) -> None:
    data, regions = case
    exercise(data, regions)


@pytest.mark.parametrize("seed", range(4), ids=["elf32le", "elf32be", "elf64le", "elf64be"])
def test_every_truncation_of_a_valid_image(seed: int) -> None:
    data = SEEDS[seed]
    mem = exercise(data, SEED_REGIONS[seed])  # the whole image loads...
    assert mem.calls and len(mem.handed) == len(mem.calls)
    for cut in range(len(data)):
        exercise(data[:cut], SEED_REGIONS[seed])  # ...and no prefix escapes


def test_seeds_are_valid() -> None:
    """The mutation seeds load cleanly, so the mutations start from something that works."""
    for data, regions in zip(SEEDS, SEED_REGIONS, strict=True):
        mem = GuardedMemory(regions)
        fw = Firmware("seed.elf", data)
        sanity_check(data)
        try:
            load_segments(fw, mem.da_to_va)
        except RprocError as exc:  # a prebuilt image may load outside our regions
            assert exc.message.startswith("bad phdr da"), str(exc)
        assert struct.unpack_from("4s", data)[0] == b"\x7fELF"
