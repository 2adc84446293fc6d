"""Resource handlers (spec §5.3, §5.4, §6): checks, kernel messages, binding of pre-registered
carveouts, FW_RSC_ADDR_ANY allocation, write-backs, vendor entries, devmem, the da walk."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

import pytest
from test_core_support import ANY, TABLE_DA, LogCapture, assert_clean, image, rig

from remoteproc.core.memory import MemEntry
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import (
    RSC_HANDLED,
    RSC_IGNORED,
    Carveout,
    ResourceTable,
    TableBuilder,
)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    cap = LogCapture()
    logger = logging.getLogger("remoteproc")
    logger.addHandler(cap)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield cap
    logger.removeHandler(cap)
    logger.setLevel(old)


def boot_table(tb: TableBuilder, **kw: object) -> tuple[object, RprocError | None]:
    r = rig(image(tb.build()), **kw)  # type: ignore[arg-type]
    try:
        r.rproc.boot()
    except RprocError as exc:
        return r, exc
    return r, None


def live_carveout(rp: object, index: int) -> Carveout:
    table = ResourceTable(rp.table_ptr)  # type: ignore[attr-defined]
    return Carveout.from_entry(table.entry(index))


def test_any_carveout_gets_pool_memory_and_write_back() -> None:
    tb = TableBuilder()
    tb.add_carveout(ANY, ANY, 0x3000, flags=5, name="a")
    r, err = boot_table(tb)
    try:
        assert err is None
        rp = r.rproc  # type: ignore[attr-defined]
        (mem,) = rp.carveouts
        assert mem.name == "a" and mem.len == 0x3000 and mem.flags == 5
        assert mem.da == mem.dma and r.sim.dma.owns(mem.dma)  # type: ignore[attr-defined]
        c = live_carveout(rp, 0)
        assert (c.da, c.pa, c.len) == (mem.da, mem.dma, 0x3000)
        # da -> memory walk: the carveout is reachable at its da, bounds respected.
        view = rp.da_to_va(mem.da + 0x10, 0x20)
        assert view is not None
        view[:4] = b"abcd"
        assert bytes(mem.va[0x10:0x14]) == b"abcd"
        assert rp.da_to_va(mem.da + 0x2FF0, 0x20) is None
    finally:
        r.close()  # type: ignore[attr-defined]


def test_fixed_da_without_iommu_warns_and_keeps_da(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_carveout(0x1000_0000, 0, 0x1000, name="fixed")
    r, err = boot_table(tb)
    try:
        assert err is None
        (mem,) = r.rproc.carveouts  # type: ignore[attr-defined]
        assert mem.da == 0x1000_0000 and mem.dma != mem.da
        assert "remoteproc0: Allocated carveout doesn't fit device address request" in logs.messages
        c = live_carveout(r.rproc, 0)  # type: ignore[attr-defined]
        assert (c.da, c.pa) == (0x1000_0000, mem.dma)
    finally:
        r.close()  # type: ignore[attr-defined]


def test_fixed_da_with_iommu_is_mapped() -> None:
    tb = TableBuilder()
    tb.add_carveout(0x1000_0000, 0, 0x1000, name="fixed")
    r, err = boot_table(tb, has_iommu=True)
    try:
        assert err is None
        rp = r.rproc  # type: ignore[attr-defined]
        (m,) = rp.mappings
        assert (m.da, m.len) == (0x1000_0000, 0x1000) and m.pa == rp.carveouts[0].dma
        assert rp.da_to_va(0x1000_0000, 4) is not None
        rp.shutdown()
        assert rp.mappings == []
    finally:
        r.close()  # type: ignore[attr-defined]


REGION_DA = 0x3000_0000


def region_rig(tb: TableBuilder, size: int = 0x4000, da: int | None = REGION_DA) -> tuple:
    r = rig(image(tb.build()), sim_kw={"regions": [("shm", da, size)]})
    try:
        r.rproc.boot()
    except RprocError as exc:
        return r, exc
    return r, None


def test_registered_carveout_binds_by_name() -> None:
    tb = TableBuilder()
    tb.add_carveout(REGION_DA + 0x1000, 0, 0x1000, flags=3, name="shm")
    r, err = region_rig(tb)
    try:
        assert err is None
        rp = r.rproc
        (mem,) = rp.carveouts
        assert mem.rsc_offset == tb.entry_offsets()[0] + 4
        assert mem.flags == 3
        c = live_carveout(rp, 0)
        # The write-back reports the region itself (its da, pa and whole length).
        assert (c.da, c.pa, c.len) == (REGION_DA, r.sim.regions[0][3], 0x4000)
        rp.shutdown()
        # Pre-registered entries are freed at shutdown and re-registered by prepare.
        assert rp.carveouts == []
        rp.boot()
        assert rp.find_carveout_by_name("shm") is not None
        rp.shutdown()
        assert_clean(r)
    finally:
        r.close()


@pytest.mark.parametrize(
    ("da", "length", "message"),
    [
        (REGION_DA, 0x8000, "Registered carveout doesn't fit len request"),
        (REGION_DA - 0x1000, 0x1000, "Registered carveout doesn't fit da request"),
        (REGION_DA + 0x3800, 0x1000, "Registered carveout doesn't fit len request"),
    ],
)
def test_registered_carveout_da_checks(
    da: int, length: int, message: str, logs: LogCapture
) -> None:
    tb = TableBuilder()
    tb.add_carveout(da, 0, length, name="shm")
    r, err = region_rig(tb)
    try:
        assert err is not None and err.errno == errno.ENOMEM
        assert f"remoteproc0: {message}" in logs.messages
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
    finally:
        r.close()


def test_floating_region_refuses_fixed_da_silently(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_carveout(0x1000, 0, 0x1000, name="shm")
    r = rig(image(tb.build()))
    try:
        r.rproc.ops.prepare = lambda rp: rp.add_carveout(MemEntry("shm", ANY, 0x1000))
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.ENOMEM
        assert not any("Registered carveout" in m for m in logs.messages)
    finally:
        r.close()


def test_carveout_bound_twice_is_enomem(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_carveout(ANY, 0, 0x1000, name="shm")
    tb.add_carveout(ANY, 0, 0x1000, name="shm")
    r, err = region_rig(tb, da=None)
    try:
        assert err is not None and err.errno == errno.ENOMEM and err.index == 1
        assert "remoteproc0: Carveout already associated to resource table" in logs.messages
        assert_clean(r)
    finally:
        r.close()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda tb: tb.add_raw(0, b"\0" * 20), "carveout rsc is truncated"),
        (lambda tb: tb.add_trace(0, 16, reserved=7), "trace rsc has non zero reserved bytes"),
        (lambda tb: tb.add_raw(2, b"\0" * 10), "trace rsc is truncated"),
        (lambda tb: tb.add_vdev(7, 0, 0, reserved=(1, 0)), "vdev rsc has non zero reserved bytes"),
        (
            lambda tb: tb.add_vdev(7, 0, 0, vrings=[(ANY, 16, 16, 0, 0)] * 3),
            "too many vrings: 3",
        ),
        (lambda tb: tb.add_vdev(7, 0, 0, config_len=64), "vdev rsc is truncated"),
    ],
)
def test_handler_checks(build: object, message: str, logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_trace(0x2000_0000, 16)
    build(tb)  # type: ignore[operator]
    r = rig(image(tb.build()))
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EINVAL
        assert ei.value.message == message
        assert ei.value.index == 1
        assert f"remoteproc0: {message}" in logs.messages
        assert_clean(r)
    finally:
        r.close()


def test_truncated_table_offset(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_trace(0x2000_0000, 16)
    table = tb.build()
    table[16:20] = (len(table) - 2).to_bytes(4, "little")  # entry header runs off the end
    r = rig(image(table))
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EINVAL
        assert "remoteproc0: rsc table is truncated" in logs.messages
    finally:
        r.close()


def test_unsupported_types_are_warned_and_skipped(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_raw(4, b"")
    tb.add_raw(127, b"\0" * 8)
    tb.add_raw(513, b"")
    r = rig(image(tb.build()))
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        for t in (4, 127, 513):
            assert f"remoteproc0: unsupported resource {t}" in logs.messages
    finally:
        r.close()


def test_vendor_entries() -> None:
    seen: list[tuple[int, bytes, int, int]] = []

    def handler(rp: object, rtype: int, body: memoryview, offset: int, avail: int) -> int:
        seen.append((rtype, bytes(body[:4]), offset, avail))
        return RSC_HANDLED if rtype == 128 else RSC_IGNORED

    tb = TableBuilder()
    tb.add_vendor(128, b"abcd")
    tb.add_vendor(512, b"wxyz")  # ignored, and last: must not fail the boot (§10.3 fix)
    table = tb.build()
    r = rig(image(table), sim_kw={"vendor_handler": handler})
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        offs = tb.entry_offsets()
        assert seen == [
            (128, b"abcd", offs[0] + 4, len(table) - offs[0] - 4),
            (512, b"wxyz", offs[1] + 4, len(table) - offs[1] - 4),
        ]
    finally:
        r.close()


def test_vendor_entry_without_handler_is_ignored(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_vendor(200, b"")
    r = rig(image(tb.build()))
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        assert "remoteproc0: unsupported vendor resource 200" in logs.messages
    finally:
        r.close()


def test_vendor_handler_error_fails_boot() -> None:
    def handler(rp: object, rtype: int, body: memoryview, offset: int, avail: int) -> int:
        raise RprocError(errno.EPERM, "nope")

    tb = TableBuilder()
    tb.add_carveout(ANY, 0, 0x1000, name="c")
    tb.add_vendor(300, b"")
    r = rig(image(tb.build()), sim_kw={"vendor_handler": handler})
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EPERM
        assert_clean(r)
    finally:
        r.close()


def test_devmem_needs_iommu() -> None:
    tb = TableBuilder()
    tb.add_devmem(0x4000_0000, 0x5000_0000, 0x1000, name="regs")
    r = rig(image(tb.build()))
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EINVAL
    finally:
        r.close()
    r = rig(image(tb.build()), has_iommu=True)
    try:
        r.rproc.boot()
        (m,) = r.rproc.mappings
        assert (m.da, m.pa, m.len) == (0x4000_0000, 0x5000_0000, 0x1000)
        r.rproc.shutdown()
        assert r.rproc.mappings == []
    finally:
        r.close()


def test_devmem_checks_with_iommu(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_devmem(0, 0, 0x1000, reserved=2)
    r = rig(image(tb.build()), has_iommu=True)
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.message == "devmem rsc has non zero reserved bytes"
    finally:
        r.close()


def test_multiple_traces_numbered_in_order() -> None:
    tb = TableBuilder()
    tb.add_trace(0x2000_0000, 0x10, name="a")
    tb.add_trace(0x2000_0010, 0x10, name="b")
    r = rig(image(tb.build()))
    try:
        r.rproc.boot()
        assert [t.name for t in r.rproc.traces] == ["trace0", "trace1"]
        assert [t.fw_name for t in r.rproc.traces] == ["a", "b"]
        r.rproc.shutdown()
        assert r.rproc.traces == []
    finally:
        r.close()


def test_no_table_at_all_boots() -> None:
    from remoteproc.platforms.sim import build_image

    r = rig(build_image([(0, b"x")]))
    try:
        r.rproc.boot()
        assert r.rproc.table_ptr is None and r.rproc.carveouts == []
    finally:
        r.close()


def test_name_with_percent_is_plain_text() -> None:
    """The kernel uses carveout names as format strings (§10.3); here they are plain text."""
    tb = TableBuilder()
    tb.add_carveout(ANY, 0, 0x1000, name="%s%n%d")
    r = rig(image(tb.build()))
    try:
        r.rproc.boot()
        assert r.rproc.find_carveout_by_name("%s%n%d") is not None
    finally:
        r.close()


def test_loaded_table_lives_where_the_image_put_it() -> None:
    r = rig()
    try:
        r.rproc.boot()
        view = r.sim.translate(TABLE_DA, 4)
        assert view is not None and bytes(view) == (1).to_bytes(4, "little")
    finally:
        r.close()
