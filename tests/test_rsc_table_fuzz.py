"""Property tests: no byte string makes the resource-table codec fail with anything but RprocError.

Inputs are random bytes, and mutations (byte flips, interesting u32 values, truncation,
extension) of tables built from random entries, including a realistic OpenAMP-style table. The
table sits in a slice of a larger buffer with sentinel bytes around it, so a write outside the
view would show.
"""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import (
    FW_RSC_ADDR_ANY,
    Carveout,
    Devmem,
    RawEntry,
    ResourceTable,
    TableBuilder,
    Trace,
    Vdev,
    describe_table,
    format_resource_table,
    parse_entry,
)

FUZZ = settings(max_examples=200, deadline=None)
SENTINEL = b"\xa5" * 32
u32s = st.integers(0, 0xFFFFFFFF)
byteorders = st.sampled_from(["<", ">"])
names = st.text(st.characters(codec="ascii", exclude_characters="\0"), max_size=31)
INTERESTING = [0, 1, 3, 4, 16, 23, 24, 51, 52, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFC, 0xFFFFFFFF]


def realistic_table(bo: str) -> bytearray:
    """The shape of an OpenAMP/Zephyr image: 8 offset slots, vdev with rpmsg vrings, a trace."""
    b = TableBuilder(bo, offset_slots=8)
    b.add_vdev(
        7,
        0,
        1,
        vrings=[(FW_RSC_ADDR_ANY, 16, 8, 0, 0), (FW_RSC_ADDR_ANY, 16, 8, 1, 0)],
    )
    b.add_trace(0x20004000, 0x800, name="cm4_log")
    b.add_carveout(FW_RSC_ADDR_ANY, 0, 0x8000, name="vdev0buffer")
    return b.build()


@st.composite
def built_tables(draw: st.DrawFn) -> tuple[bytearray, str]:
    bo = draw(byteorders)
    slots = draw(st.none() | st.integers(0, 8))
    b = TableBuilder(bo)
    kinds = draw(st.lists(st.sampled_from(["c", "d", "t", "v", "vendor", "raw"]), max_size=6))
    for kind in kinds:
        if kind in ("c", "d"):
            add = b.add_carveout if kind == "c" else b.add_devmem
            add(
                draw(u32s),
                draw(u32s),
                draw(u32s),
                draw(u32s),
                draw(names),
                draw(st.sampled_from([0, 1])),
            )
        elif kind == "t":
            b.add_trace(draw(u32s), draw(u32s), draw(names), draw(st.sampled_from([0, 1])))
        elif kind == "v":
            rings = draw(st.lists(st.tuples(u32s, u32s, u32s, u32s, u32s), max_size=3))
            b.add_vdev(
                draw(u32s),
                draw(u32s),
                draw(u32s),
                draw(u32s),
                draw(st.binary(max_size=16)),
                draw(st.integers(0, 255)),
                rings,
            )
        elif kind == "vendor":
            b.add_vendor(draw(st.integers(128, 512)), draw(st.binary(max_size=12)))
        else:
            # types the codec does not know (0..3 with a random body are the mutations' job)
            unknown = st.integers(4, 127) | st.integers(513, 0xFFFFFFFF)
            b.add_raw(draw(unknown), draw(st.binary(max_size=12)))
    if slots is not None and slots >= len(kinds):
        b.offset_slots = slots
    return b.build(), bo


@st.composite
def mutated(
    draw: st.DrawFn, base: st.SearchStrategy[tuple[bytearray, str]]
) -> tuple[bytearray, str]:
    data, bo = draw(base)
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "u32", "truncate", "extend"]))
        if op == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "u32" and len(data) >= 4:
            pos = draw(st.integers(0, len(data) - 4))
            value = draw(st.sampled_from(INTERESTING) | u32s)
            struct.pack_into(bo + "I", data, pos, value)
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(max_size=16))
    return data, bo


def in_window(data: bytes) -> tuple[bytearray, memoryview]:
    device = bytearray(SENTINEL + data + SENTINEL)
    return device, memoryview(device)[len(SENTINEL) : len(SENTINEL) + len(data)]


def touch(view: Carveout | Devmem | Trace | Vdev, values: st.DataObject | None) -> None:
    """Read every field and write some back, each access on its own (each may fail alone)."""
    fields: dict[str, Any] = view.fields()
    json.dumps(fields)
    for name in ("da", "pa", "len", "notifyid", "gfeatures", "status"):
        if not hasattr(view, name):
            continue
        try:
            current = getattr(view, name)
            setattr(view, name, current)
            if values is not None:
                setattr(view, name, values.draw(u32s if name != "status" else st.integers(0, 255)))
        except RprocError:
            pass
    if isinstance(view, Carveout | Devmem | Trace):
        try:
            _ = view.name
            view.name = view.name_raw.split(b"\0", 1)[0][:31].decode("latin-1")
        except RprocError:
            pass
    if isinstance(view, Vdev):
        try:
            for ring in view.vrings:
                ring.da = ring.da
                ring.notifyid = 0xFFFFFFFF
                _ = (ring.align, ring.num, ring.pa)
        except RprocError:
            pass
        try:
            cfg = view.config
            cfg[:] = bytes(len(cfg))
        except RprocError:
            pass


def exercise(data: bytes, bo: str, values: st.DataObject | None = None) -> None:
    """Everything a caller of the codec does; only RprocError may come out of the codec."""
    device, window = in_window(data)
    table = ResourceTable(window, bo)
    with contextlib.suppress(RprocError):
        table.validate()
    with contextlib.suppress(RprocError):
        _ = (table.ver, table.num, table.reserved)
    try:
        for raw in table.entries():
            assert isinstance(raw, RawEntry)
            # the §5.3 rule, plus ours: the header and body lie inside the table
            assert raw.offset >= 0 and raw.avail == len(data) - raw.offset - 4 >= 0
            assert len(raw.body) == raw.avail
            for check in (True, False):
                try:
                    typed = parse_entry(raw, check=check)
                except RprocError:
                    continue
                if not isinstance(typed, RawEntry):
                    touch(typed, values)
    except RprocError:
        pass
    text = format_resource_table(window, bo)
    assert isinstance(text, str)
    json.dumps(describe_table(window, bo))
    # nothing outside the window changed, and the window kept its size
    assert device[: len(SENTINEL)] == SENTINEL and device[-len(SENTINEL) :] == SENTINEL
    assert len(device) == len(data) + 2 * len(SENTINEL)


@FUZZ
@given(st.binary(max_size=300), byteorders)
def test_random_bytes(data: bytes, bo: str) -> None:
    exercise(data, bo)


@FUZZ
@given(st.binary(min_size=16, max_size=200), byteorders, st.integers(0, 12))
def test_random_bytes_with_valid_header(tail: bytes, bo: str, num: int) -> None:
    # a sane header makes the walk reach the entries, where most of the rules are
    data = struct.pack(bo + "4I", 1, num, 0, 0) + tail
    exercise(data, bo)


@FUZZ
@given(mutated(built_tables()), st.data())
def test_mutated_built_tables(table: tuple[bytearray, str], values: st.DataObject) -> None:
    data, bo = table
    exercise(bytes(data), bo, values)


@FUZZ
@given(mutated(byteorders.map(lambda bo: (realistic_table(bo), bo))), st.data())
def test_mutated_realistic_table(table: tuple[bytearray, str], values: st.DataObject) -> None:
    data, bo = table
    exercise(bytes(data), bo, values)


@FUZZ
@given(built_tables())
def test_built_tables_walk_cleanly(table: tuple[bytearray, str]) -> None:
    """Unmutated builder output always passes the header and walk checks, and every typed
    entry either parses or fails only on the reserved words the strategy sometimes sets."""
    data, bo = table
    parsed = ResourceTable(memoryview(data), bo)
    parsed.validate()
    for raw in parsed.entries():
        try:
            parse_entry(raw)
        except RprocError as exc:
            assert exc.message.endswith("non zero reserved bytes") or exc.message.startswith(
                "too many vrings"
            )
    text = format_resource_table(data, bo)
    assert "dump stopped" not in text
    assert text.count("Entry ") + text.count("Unknown resource type") == parsed.num


@FUZZ
@given(
    byteorders,
    st.lists(st.tuples(u32s, u32s, u32s, u32s, names), min_size=1, max_size=4),
)
def test_carveout_round_trip(bo: str, items: list[tuple[int, int, int, int, str]]) -> None:
    b = TableBuilder(bo)
    for da, pa, ln, flags, name in items:
        b.add_carveout(da, pa, ln, flags, name)
    got = [
        (c.da, c.pa, c.len, c.flags, c.name)
        for c in ResourceTable(b.build(), bo).typed()
        if isinstance(c, Carveout)
    ]
    assert got == items
