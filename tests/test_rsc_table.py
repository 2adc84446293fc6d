"""The resource-table codec (firmware/rsc_table.py) against spec §5 and the debugfs format of §2.2.

Expected bytes and offsets are written out from the spec's layout tables with ``struct.pack``, not
taken from the codec, so a wrong field offset in the codec's declarations fails here.
"""

from __future__ import annotations

import errno
import json
import struct

import pytest

from remoteproc.errors import RprocError
from remoteproc.firmware import rsc_table as rt
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
    rsc_type_name,
)

BOTH = pytest.mark.parametrize("bo", ["<", ">"])


def u32(bo: str, *values: int) -> bytes:
    return struct.pack(f"{bo}{len(values)}I", *values)


def name32(s: str) -> bytes:
    return s.encode().ljust(32, b"\0")


def hdr(bo: str, ver: int, num: int, offsets: list[int], r0: int = 0, r1: int = 0) -> bytes:
    return u32(bo, ver, num, r0, r1) + u32(bo, *offsets)


def carveout_body(bo: str, da: int, pa: int, ln: int, flags: int, res: int, name: str) -> bytes:
    return u32(bo, da, pa, ln, flags, res) + name32(name)


def trace_body(bo: str, da: int, ln: int, res: int, name: str) -> bytes:
    return u32(bo, da, ln, res) + name32(name)


def vdev_body(
    bo: str,
    vid: int,
    nid: int,
    dfeat: int,
    gfeat: int,
    cfg: bytes,
    status: int,
    vrings: list[tuple[int, int, int, int, int]],
    res: tuple[int, int] = (0, 0),
    cfg_len: int | None = None,
    nvr: int | None = None,
) -> bytes:
    head = u32(bo, vid, nid, dfeat, gfeat, len(cfg) if cfg_len is None else cfg_len)
    head += bytes([status, len(vrings) if nvr is None else nvr, res[0], res[1]])
    return head + b"".join(u32(bo, *v) for v in vrings) + cfg


def entry(bo: str, rsc_type: int, body: bytes) -> bytes:
    return u32(bo, rsc_type) + body


def check_err(
    exc: pytest.ExceptionInfo[RprocError],
    msg: str,
    *,
    index: int | None = None,
    offset: int | None = None,
    code: int = errno.EINVAL,
) -> None:
    assert exc.value.errno == code
    assert exc.value.message == msg
    if index is not None:
        assert exc.value.index == index
    if offset is not None:
        assert exc.value.offset == offset


# --------------------------------------------------------------------------- constants


def test_constants_match_spec() -> None:
    assert (rt.RSC_CARVEOUT, rt.RSC_DEVMEM, rt.RSC_TRACE, rt.RSC_VDEV, rt.RSC_LAST) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert (rt.RSC_VENDOR_START, rt.RSC_VENDOR_END) == (128, 512)
    assert FW_RSC_ADDR_ANY == 0xFFFFFFFF and rt.RVDEV_NUM_VRINGS == 2
    assert (rt.TABLE_HDR_SIZE, rt.RSC_HDR_SIZE) == (16, 4)
    assert (rt.CARVEOUT_SIZE, rt.DEVMEM_SIZE, rt.TRACE_SIZE) == (52, 52, 44)
    assert (rt.VDEV_SIZE, rt.VRING_SIZE) == (24, 20)


def test_type_names() -> None:
    assert [rsc_type_name(t) for t in range(4)] == ["carveout", "devmem", "trace", "vdev"]
    assert rsc_type_name(200) == "vendor 200"
    assert rsc_type_name(128) == "vendor 128" and rsc_type_name(512) == "vendor 512"
    assert rsc_type_name(5) == "unknown 5"
    assert rsc_type_name(127) == "unknown 127" and rsc_type_name(513) == "unknown 513"


# --------------------------------------------------------------------------- building


@BOTH
def test_builder_matches_hand_assembled_table(bo: str) -> None:
    vrings = [(0x10040000, 16, 8, 0, 0x80040000), (0x10041000, 16, 8, 1, 0x80041000)]
    b = TableBuilder(bo)
    b.add_carveout(0x10000000, 0x80000000, 0x8000, flags=3, name="vdev0buffer")
    b.add_trace(0x20000, 0x1000, name="trace0")
    b.add_vdev(7, 5, 1, gfeatures=0, config=b"\xaa\xbb", status=0, vrings=vrings)
    b.add_vendor(200, b"\x01\x02\x03")

    off0 = 16 + 4 * 4
    off1 = off0 + 4 + 52
    off2 = off1 + 4 + 44
    off3 = off2 + 4 + 24 + 40 + 2
    expected = (
        hdr(bo, 1, 4, [off0, off1, off2, off3])
        + entry(bo, 0, carveout_body(bo, 0x10000000, 0x80000000, 0x8000, 3, 0, "vdev0buffer"))
        + entry(bo, 2, trace_body(bo, 0x20000, 0x1000, 0, "trace0"))
        + entry(bo, 3, vdev_body(bo, 7, 5, 1, 0, b"\xaa\xbb", 0, vrings))
        + entry(bo, 200, b"\x01\x02\x03")
    )
    built = b.build()
    assert isinstance(built, bytearray)
    assert bytes(built) == expected
    assert b.entry_offsets() == [off0, off1, off2, off3]


def test_offset_slots_put_first_entry_at_0x30() -> None:
    b = TableBuilder(offset_slots=8)
    b.add_trace(0x1000, 0x100, name="t")
    b.add_carveout(0x2000, 0, 0x100)
    table = b.build()
    assert struct.unpack_from("<I", table, 4)[0] == 2  # num counts entries, not slots
    assert struct.unpack_from("<8I", table, 16) == (0x30, 0x30 + 48, 0, 0, 0, 0, 0, 0)
    assert struct.unpack_from("<I", table, 0x30)[0] == rt.RSC_TRACE
    parsed = ResourceTable(memoryview(table))
    parsed.validate()
    assert [e.offset for e in parsed.entries()] == [0x30, 0x60]


def test_offset_slots_smaller_than_entries_is_an_error() -> None:
    b = TableBuilder(offset_slots=1)
    b.add_trace(0, 0)
    b.add_trace(0, 0)
    with pytest.raises(RprocError):
        b.build()


def test_builder_rejects_bad_values() -> None:
    b = TableBuilder()
    with pytest.raises(RprocError):
        b.add_carveout(1 << 32, 0, 0)
    with pytest.raises(RprocError):
        b.add_trace(0, 0, name="x" * 33)
    with pytest.raises(RprocError):
        b.add_vendor(5, b"")
    with pytest.raises(RprocError):
        TableBuilder("=")


# --------------------------------------------------------------------------- round trips


@BOTH
def test_round_trip_every_type(bo: str) -> None:
    b = TableBuilder(bo, offset_slots=8)
    b.add_carveout(0x11, 0x22, 0x33, flags=0x44, name="carve")
    b.add_devmem(0x55, 0x66, 0x77, flags=0x88, name="dev")
    b.add_trace(0x99, 0xAA, name="tr")
    vrings = [(FW_RSC_ADDR_ANY, 4096, 256, 0xFFFFFFFF, 0), (0x1234, 64, 16, 9, 0x5678)]
    b.add_vdev(7, 3, 0x1, gfeatures=0x2, config=bytes(range(10)), status=0x4, vrings=vrings)
    b.add_vendor(300, b"vendor-body")
    b.add_raw(77, b"unknown-body")
    table = ResourceTable(memoryview(b.build()), bo)
    table.validate()
    assert (table.ver, table.num, table.reserved) == (1, 6, (0, 0))
    items = list(table.typed())

    c = items[0]
    assert isinstance(c, Carveout)
    assert (c.da, c.pa, c.len, c.flags, c.reserved, c.name) == (0x11, 0x22, 0x33, 0x44, 0, "carve")
    assert c.name_raw == name32("carve")
    d = items[1]
    assert isinstance(d, Devmem)
    assert (d.da, d.pa, d.len, d.flags, d.reserved, d.name) == (0x55, 0x66, 0x77, 0x88, 0, "dev")
    t = items[2]
    assert isinstance(t, Trace)
    assert (t.da, t.len, t.reserved, t.name) == (0x99, 0xAA, 0, "tr")
    v = items[3]
    assert isinstance(v, Vdev)
    assert (v.id, v.notifyid, v.dfeatures, v.gfeatures) == (7, 3, 1, 2)
    assert (v.config_len, v.status, v.num_of_vrings, v.reserved) == (10, 4, 2, (0, 0))
    assert [(r.da, r.align, r.num, r.notifyid, r.pa) for r in v.vrings] == vrings
    assert bytes(v.config) == bytes(range(10))
    vendor = items[4]
    assert isinstance(vendor, RawEntry) and vendor.type == 300 and vendor.is_vendor
    assert bytes(vendor.body[:11]) == b"vendor-body"
    unknown = items[5]
    assert isinstance(unknown, RawEntry) and unknown.type == 77 and not unknown.is_vendor
    assert bytes(unknown.body) == b"unknown-body"


def test_vendor_entry_kept_raw_with_kernel_avail() -> None:
    b = TableBuilder()
    b.add_vendor(128, b"\xde\xad")
    b.add_trace(1, 2)
    data = b.build()
    raw = next(ResourceTable(memoryview(data)).entries())
    assert parse_entry(raw) is raw
    # avail runs to the end of the table, as the kernel passes it to handle_rsc
    assert raw.avail == len(data) - raw.offset - 4
    assert raw.body_offset == raw.offset + 4
    assert bytes(raw.body[:2]) == b"\xde\xad"
    # the body is a window on the table, not a copy
    raw.body[0] = 0x11
    assert data[raw.offset + 4] == 0x11


# --------------------------------------------------------------------------- header checks


def test_header_less() -> None:
    with pytest.raises(RprocError) as exc:
        ResourceTable(memoryview(bytearray(15))).validate()
    check_err(exc, "header-less resource table")


@BOTH
def test_unsupported_version_checked_before_reserved(bo: str) -> None:
    data = hdr(bo, 2, 0, [], r0=1)
    with pytest.raises(RprocError) as exc:
        ResourceTable(memoryview(data), bo).validate()
    check_err(exc, "unsupported fw ver: 2")


def test_unsupported_version_printed_as_signed_int() -> None:
    with pytest.raises(RprocError) as exc:
        ResourceTable(hdr("<", 0xFFFFFFFF, 0, [])).validate()
    check_err(exc, "unsupported fw ver: -1")


def test_reserved_checked_before_incomplete() -> None:
    data = hdr("<", 1, 100, [], r1=5)
    with pytest.raises(RprocError) as exc:
        ResourceTable(data).validate()
    check_err(exc, "non zero reserved bytes")


def test_incomplete_offsets_array() -> None:
    data = hdr("<", 1, 2, [20])  # 16 + 4*2 = 24 > 20
    with pytest.raises(RprocError) as exc:
        ResourceTable(data).validate()
    check_err(exc, "resource table incomplete")
    ResourceTable(data + b"\0" * 4).validate()  # exactly 24 bytes is complete


def test_validate_does_not_walk_entries() -> None:
    # offsets pointing outside are the walk's business (§5.3), not the header's
    ResourceTable(hdr("<", 1, 1, [1000])).validate()


# --------------------------------------------------------------------------- the walk


def test_walk_truncated_offset() -> None:
    b = TableBuilder()
    b.add_trace(0, 0)
    data = b.build()
    size = len(data)
    struct.pack_into("<I", data, 16, size - 3)  # avail = -1
    with pytest.raises(RprocError) as exc:
        list(ResourceTable(data).entries())
    check_err(exc, "rsc table is truncated", index=0, offset=size - 3)
    assert exc.value.what == "resource entry"


def test_walk_accepts_zero_avail_header_at_end() -> None:
    data = hdr("<", 1, 1, [20]) + u32("<", 129)  # a vendor header with an empty body
    (raw,) = ResourceTable(data).entries()
    assert (raw.type, raw.avail, len(raw.body)) == (129, 0, 0)


@pytest.mark.parametrize("offset", [-4, -100, 0x7FFFFFFF, -(2**31)])
def test_walk_offset_outside_view_is_truncated(offset: int) -> None:
    # a negative offset passes the kernel's avail check; we still must not read before the table
    data = bytearray(hdr("<", 1, 1, [0]) + bytes(64))
    struct.pack_into("<i", data, 16, offset)
    with pytest.raises(RprocError) as exc:
        list(ResourceTable(data).entries())
    check_err(exc, "rsc table is truncated", index=0, offset=offset)


def test_walk_is_lazy_and_in_order() -> None:
    b = TableBuilder()
    b.add_trace(1, 2)
    b.add_trace(3, 4)
    data = b.build()
    struct.pack_into("<I", data, 20, 0xFFFF)
    walk = ResourceTable(data).entries()
    first = next(walk)
    assert first.index == 0 and first.type == rt.RSC_TRACE
    with pytest.raises(RprocError) as exc:
        next(walk)
    check_err(exc, "rsc table is truncated", index=1, offset=0xFFFF)


def test_walk_offsets_array_beyond_table() -> None:
    data = hdr("<", 1, 3, [16])  # num 3 but only one slot present
    with pytest.raises(RprocError) as exc:
        list(ResourceTable(data).entries())
    check_err(exc, "resource table incomplete", index=1)


def test_offsets_are_signed() -> None:
    data = bytearray(hdr("<", 1, 1, [0xFFFFFFF0]))
    assert ResourceTable(data).offset(0) == -16


# --------------------------------------------------------------------------- typed checks


def table_with(body: bytes, rsc_type: int, bo: str = "<", tail: int = 0) -> bytearray:
    return bytearray(hdr(bo, 1, 1, [20]) + entry(bo, rsc_type, body) + bytes(tail))


def first(data: bytearray, bo: str = "<") -> RawEntry:
    return next(ResourceTable(memoryview(data), bo).entries())


@pytest.mark.parametrize(
    ("cls", "rsc_type", "kind"),
    [(Carveout, 0, "carveout"), (Devmem, 1, "devmem")],
)
def test_carveout_devmem_checks(
    cls: type[Carveout] | type[Devmem], rsc_type: int, kind: str
) -> None:
    body = carveout_body("<", 1, 2, 3, 4, 0, "n")
    with pytest.raises(RprocError) as exc:
        cls.from_entry(first(table_with(body[:51], rsc_type)), "<")
    check_err(exc, f"{kind} rsc is truncated", index=0, offset=20)
    assert exc.value.what == "resource entry"
    cls.from_entry(first(table_with(body, rsc_type)), "<")  # exactly 52 bytes fits

    bad = carveout_body("<", 1, 2, 3, 4, 9, "n")
    with pytest.raises(RprocError) as exc:
        cls.from_entry(first(table_with(bad, rsc_type)), "<")
    check_err(exc, f"{kind} rsc has non zero reserved bytes", index=0, offset=20)
    # truncation is checked before the reserved word
    with pytest.raises(RprocError) as exc:
        cls.from_entry(first(table_with(bad[:40], rsc_type)), "<")
    check_err(exc, f"{kind} rsc is truncated")
    # display tools can still look at a broken entry
    shown = cls.from_entry(first(table_with(bad, rsc_type)), "<", check=False)
    assert shown.reserved == 9


def test_trace_checks() -> None:
    body = trace_body("<", 1, 2, 0, "t")
    with pytest.raises(RprocError) as exc:
        Trace.from_entry(first(table_with(body[:43], 2)))
    check_err(exc, "trace rsc is truncated", index=0, offset=20)
    Trace.from_entry(first(table_with(body, 2)))
    with pytest.raises(RprocError) as exc:
        Trace.from_entry(first(table_with(trace_body("<", 1, 2, 1, "t"), 2)))
    check_err(exc, "trace rsc has non zero reserved bytes", index=0, offset=20)


def test_truncated_field_access_with_check_false_raises_rproc_error() -> None:
    raw = first(table_with(carveout_body("<", 1, 2, 3, 4, 0, "n")[:10], 0))
    c = Carveout.from_entry(raw, check=False)
    assert c.da == 1 and c.pa == 2
    with pytest.raises(RprocError) as exc:
        _ = c.len
    check_err(exc, "carveout rsc is truncated")


VR = (0xFFFFFFFF, 16, 8, 0, 0)


def test_vdev_truncated_rule_is_exact() -> None:
    body = vdev_body("<", 7, 0, 1, 0, b"abc", 0, [VR, VR])
    assert len(body) == 24 + 40 + 3
    Vdev.from_entry(first(table_with(body, 3)))
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body[:-1], 3)))
    check_err(exc, "vdev rsc is truncated", index=0, offset=20)


def test_vdev_fixed_part_outside_table_is_truncated() -> None:
    body = vdev_body("<", 7, 0, 1, 0, b"", 0, [])
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body[:23], 3)))
    check_err(exc, "vdev rsc is truncated")


def test_vdev_huge_config_len_does_not_overflow() -> None:
    body = vdev_body("<", 7, 0, 1, 0, b"", 0, [VR], cfg_len=0xFFFFFFFF)
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body, 3, tail=100)))
    check_err(exc, "vdev rsc is truncated")


def test_vdev_reserved_and_vring_count_order() -> None:
    body = vdev_body("<", 7, 0, 1, 0, b"", 0, [VR, VR, VR], res=(0, 1))
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body, 3)))
    check_err(exc, "vdev rsc has non zero reserved bytes", index=0, offset=20)
    body = vdev_body("<", 7, 0, 1, 0, b"", 0, [VR, VR, VR])
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body, 3)))
    check_err(exc, "too many vrings: 3", index=0, offset=20)
    # size is checked before the count: 255 declared vrings that are not there are "truncated"
    body = vdev_body("<", 7, 0, 1, 0, b"", 0, [VR], nvr=255)
    with pytest.raises(RprocError) as exc:
        Vdev.from_entry(first(table_with(body, 3)))
    check_err(exc, "vdev rsc is truncated")


def test_vring_index_out_of_range() -> None:
    v = Vdev.from_entry(first(table_with(vdev_body("<", 7, 0, 1, 0, b"", 0, [VR]), 3)))
    with pytest.raises(RprocError):
        v.vring(1)
    with pytest.raises(RprocError):
        v.vring(-1)


# --------------------------------------------------------------------------- in-place setters


@BOTH
def test_setters_write_into_the_buffer(bo: str) -> None:
    vrings = [(FW_RSC_ADDR_ANY, 16, 8, 0, 0), (FW_RSC_ADDR_ANY, 16, 8, 0, 0)]
    data = bytearray(
        hdr(bo, 1, 2, [24, 24 + 56])
        + entry(bo, 0, carveout_body(bo, FW_RSC_ADDR_ANY, 0, 0x1000, 0, 0, "buf"))
        + entry(bo, 3, vdev_body(bo, 7, 0, 1, 0, b"\0" * 4, 0, vrings))
    )
    before = bytes(data)
    c, v = list(ResourceTable(memoryview(data), bo).typed())
    assert isinstance(c, Carveout) and isinstance(v, Vdev)
    c.da = 0x10000000
    c.pa = 0x80000000
    c.len = 0x2000
    v.gfeatures = 0x1
    v.status = 0x0F
    v.vring(0).da = 0x10040000
    v.vring(1).notifyid = 1
    v.vring(0).notifyid = -1  # the kernel's rproc_free_vring writes -1 into the u32
    v.config[1:3] = b"\x12\x34"

    expected = bytearray(before)
    cbody = 24 + 4
    struct.pack_into(f"{bo}3I", expected, cbody, 0x10000000, 0x80000000, 0x2000)
    vbody = 24 + 56 + 4
    struct.pack_into(f"{bo}I", expected, vbody + 12, 0x1)
    expected[vbody + 20] = 0x0F
    struct.pack_into(f"{bo}I", expected, vbody + 24 + 0, 0x10040000)
    struct.pack_into(f"{bo}I", expected, vbody + 24 + 12, 0xFFFFFFFF)
    struct.pack_into(f"{bo}I", expected, vbody + 24 + 20 + 12, 1)
    expected[vbody + 64 + 1 : vbody + 64 + 3] = b"\x12\x34"
    assert data == expected
    assert v.vring(0).notifyid == 0xFFFFFFFF


def test_setters_on_a_slice_of_a_larger_buffer() -> None:
    b = TableBuilder(">")
    b.add_carveout(0, 0, 0x100, name="a")
    b.add_trace(0, 0, name="t")
    table = b.build()
    device = bytearray(b"\xee" * 64 + table + b"\xee" * 64)
    window = memoryview(device)[64 : 64 + len(table)]
    c, t = list(ResourceTable(window, ">").typed())
    assert isinstance(c, Carveout) and isinstance(t, Trace)
    c.pa = 0xCAFEF00D
    c.name = "renamed"
    t.da = 0x1234
    assert device[:64] == b"\xee" * 64 and device[-64:] == b"\xee" * 64
    off_c = b.entry_offsets()[0] + 4
    off_t = b.entry_offsets()[1] + 4
    assert struct.unpack_from(">I", device, 64 + off_c + 4)[0] == 0xCAFEF00D
    assert device[64 + off_c + 20 : 64 + off_c + 52] == name32("renamed")
    assert struct.unpack_from(">I", device, 64 + off_t)[0] == 0x1234


def test_setter_range_and_readonly() -> None:
    b = TableBuilder()
    b.add_vdev(7, 0, 1, vrings=[VR])
    data = b.build()
    (v,) = list(ResourceTable(memoryview(data)).typed())
    assert isinstance(v, Vdev)
    with pytest.raises(RprocError) as exc:
        v.status = 256
    assert exc.value.errno == errno.ERANGE
    with pytest.raises(RprocError):
        v.gfeatures = 1 << 32
    with pytest.raises(RprocError):
        v.reserved = (0, 300)
    (ro,) = list(ResourceTable(memoryview(bytes(data))).typed())
    assert isinstance(ro, Vdev)
    with pytest.raises(RprocError) as exc:
        ro.status = 1
    assert exc.value.errno == errno.EROFS


def test_carveout_at_body_offset_writes_back() -> None:
    b = TableBuilder(offset_slots=8)
    b.add_trace(0, 0)
    b.add_carveout(FW_RSC_ADDR_ANY, 0, 0x100, name="x")
    data = b.build()
    rsc_offset = b.entry_offsets()[1] + 4
    c = Carveout.at(memoryview(data), rsc_offset)
    c.da = 0x2000
    assert struct.unpack_from("<I", data, rsc_offset)[0] == 0x2000
    with pytest.raises(RprocError):
        Carveout.at(memoryview(data), len(data) + 8)


def test_name_not_nul_terminated_is_cut_at_32_bytes() -> None:
    data = table_with(u32("<", 1, 2, 3, 4, 0) + b"A" * 32, 0, tail=8)
    c = Carveout.from_entry(first(data))
    assert c.name == "A" * 32


# --------------------------------------------------------------------------- debugfs dump


def test_format_no_table() -> None:
    assert format_resource_table(None) == "No resource table found\n"


@BOTH
def test_format_matches_debugfs(bo: str) -> None:
    b = TableBuilder(bo, offset_slots=8)
    b.add_carveout(0x10000000, 0x80000000, 0x8000, flags=0x5, name="vdev0buffer")
    b.add_trace(0x20001000, 0x400, name="trace0")
    b.add_vdev(
        7,
        0xFFFFFFFF,
        0x1,
        gfeatures=0x3,
        config=b"\0" * 8,
        status=0x7,
        vrings=[(0x10040000, 4096, 256, 0, 0x80040000), (FW_RSC_ADDR_ANY, 16, 8, 1, 0)],
    )
    b.add_vendor(200, b"\0\0\0\0")
    text = format_resource_table(memoryview(b.build()), bo)
    expected = (
        "Entry 0 is of type carveout\n"
        "  Device Address 0x10000000\n"
        "  Physical Address 0x80000000\n"
        "  Length 0x8000 Bytes\n"
        "  Flags 0x5\n"
        "  Reserved (should be zero) [0]\n"
        "  Name vdev0buffer\n"
        "\n"
        "Entry 1 is of type trace\n"
        "  Device Address 0x20001000\n"
        "  Length 0x400 Bytes\n"
        "  Reserved (should be zero) [0]\n"
        "  Name trace0\n"
        "\n"
        "Entry 2 is of type vdev\n"
        "  ID 7\n"
        "  Notify ID -1\n"  # %d of a u32
        "  Device features 0x1\n"
        "  Guest features 0x3\n"
        "  Config length 0x8\n"
        "  Status 0x7\n"
        "  Number of vrings 2\n"
        "  Reserved (should be zero) [0][0]\n"
        "\n"
        "  Vring 0\n"
        "    Device Address 0x10040000\n"
        "    Alignment 4096\n"
        "    Number of buffers 256\n"
        "    Notify ID 0\n"
        "    Physical Address 0x80040000\n"
        "\n"
        "  Vring 1\n"
        "    Device Address 0xffffffff\n"
        "    Alignment 16\n"
        "    Number of buffers 8\n"
        "    Notify ID 1\n"
        "    Physical Address 0x0\n"
        "\n"
        "Unknown resource type found: 200 [hdr: 0000000000000000]\n"
    )
    assert text == expected


def test_format_devmem_and_unknown() -> None:
    b = TableBuilder()
    b.add_devmem(0x1, 0x2, 0x3, flags=0x10, reserved=0xFFFFFFFF, name="mmio")
    b.add_raw(5, b"")
    text = format_resource_table(b.build())
    assert text == (
        "Entry 0 is of type devmem\n"
        "  Device Address 0x1\n"
        "  Physical Address 0x2\n"
        "  Length 0x3 Bytes\n"
        "  Flags 0x10\n"
        "  Reserved (should be zero) [-1]\n"
        "  Name mmio\n"
        "\n"
        "Unknown resource type found: 5 [hdr: 0000000000000000]\n"
    )


def test_format_broken_tables_stop_with_a_line() -> None:
    body = carveout_body("<", 0x1, 0x2, 0x3, 0, 0, "n")[:10]
    text = format_resource_table(table_with(body, 0))
    assert text.startswith(
        "Entry 0 is of type carveout\n  Device Address 0x1\n  Physical Address 0x2\n"
    )
    assert text.endswith("dump stopped)\n") and "Length" not in text

    data = bytearray(hdr("<", 1, 2, [24, 5000]) + entry("<", 129, b""))
    text = format_resource_table(data)
    assert text.splitlines()[0] == "Unknown resource type found: 129 [hdr: 0000000000000000]"
    assert "Entry 1" in text and text.endswith("dump stopped\n")
    assert "dump stopped" in format_resource_table(b"\1\0\0")


# --------------------------------------------------------------------------- describe


def test_describe_reports_fields_and_entry_errors() -> None:
    b = TableBuilder(offset_slots=4)
    b.add_carveout(0x10, 0x20, 0x30, name="c", reserved=1)
    b.add_vdev(7, 0, 1, config=b"\x01\x02", vrings=[(1, 2, 3, 4, 5)])
    b.add_vendor(130, b"\x09\x08")
    d = describe_table(b.build())
    json.dumps(d)
    assert (d["version"], d["num"], d["offsets"]) == (1, 3, b.entry_offsets())
    assert "error" not in d
    c, v, vend = d["entries"]
    assert (c["type_name"], c["da"], c["pa"], c["len"], c["name"]) == (
        "carveout",
        0x10,
        0x20,
        0x30,
        "c",
    )
    assert c["error"] == "carveout rsc has non zero reserved bytes"
    assert v["vrings"] == [{"da": 1, "align": 2, "num": 3, "notifyid": 4, "pa": 5}]
    assert v["config"] == "0102" and "error" not in v
    assert (vend["type_name"], vend["data"]) == ("vendor 130", "0908")


def test_describe_table_level_error() -> None:
    d = describe_table(hdr("<", 2, 0, []))
    assert d["error"] == "unsupported fw ver: 2" and d["version"] == 2
    assert describe_table(b"12")["error"] == "header-less resource table"
    assert describe_table(None) == {"present": False}
