"""The vdev subdevice (spec §5.4 step 6, §6.3, §9.2): vring carveouts and notify ids before
start, the virtio device over the live table, driver probe/remove, find_vqs, kicks and
vq_interrupt dispatch."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from test_core_support import ANY, EventLog, LogCapture, Rig, image, rig

from remoteproc.core.events import EventKind
from remoteproc.core.states import State
from remoteproc.core.virtio import RprocVirtioDevice, transport_features
from remoteproc.firmware.rsc_table import ResourceTable, TableBuilder, Vdev
from remoteproc.virtio import bus
from remoteproc.virtio.vring import DeviceQueue

TEST_ID = 0x7E57  # a device id no real driver claims


class FakeDriver:
    name = "fake"
    device_ids = (TEST_ID,)

    def __init__(self, features: int = 0b1, fail: bool = False) -> None:
        self.features = features
        self.fail = fail
        self.probed: list[RprocVirtioDevice] = []
        self.removed: list[object] = []
        self.status_at_probe: list[int] = []
        self.received: list[int] = []
        self.vqs: list[Any] = []

    def probe(self, vdev: Any) -> object:
        self.status_at_probe.append(vdev.get_status())
        if self.fail:
            raise RuntimeError("probe failed")
        self.vqs = vdev.find_vqs(["input", "output"], [self._rx, None])
        self.probed.append(vdev)
        return {"vdev": vdev}

    def _rx(self, vq: Any) -> None:
        self.received.append(vq.index)
        while vq.get_buf() is not None:
            pass

    def remove(self, vdev: Any, state: object) -> None:
        vdev.reset()
        vdev.del_vqs()
        self.removed.append(state)


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    drv = FakeDriver()
    bus.register_driver(drv)
    yield drv
    bus.unregister_driver(drv)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    cap = LogCapture()
    logger = logging.getLogger("remoteproc")
    logger.addHandler(cap)
    yield cap
    logger.removeHandler(cap)


def vdev_table(
    *vdevs: tuple[int, list[tuple[int, int, int, int, int]]],
    dfeatures: int = 0xF000_0001,
    config: bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08",
) -> bytearray:
    tb = TableBuilder()
    for vid, rings in vdevs:
        tb.add_vdev(vid, 0, dfeatures, config=config, vrings=rings)
    return tb.build()


RINGS = [(ANY, 16, 16, 0, 0), (ANY, 16, 16, 0, 0)]


def live_vdev(r: Rig, i: int = 0) -> Vdev:
    assert r.rproc.table_ptr is not None
    return Vdev.from_entry(ResourceTable(r.rproc.table_ptr).entry(i))


def test_notify_ids_are_lowest_free_and_unique_across_vdevs() -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS), (TEST_ID, RINGS[:1]), (TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        ids = [[v.notifyid for v in live_vdev(r, i).vrings] for i in range(3)]
        assert ids == [[0, 1], [2], [3, 4]]
        assert sorted(r.rproc.notifyids) == [0, 1, 2, 3, 4]
        assert r.rproc.max_notifyid == 4
        names = [m.name for m in r.rproc.carveouts]
        assert names == [
            "vdev0vring0",
            "vdev0vring1",
            "vdev1vring0",
            "vdev2vring0",
            "vdev2vring1",
        ]
        # Allocated before start (seed 004): every ring carveout has memory.
        assert all(m.va is not None for m in r.rproc.carveouts)
    finally:
        r.close()


def test_bad_vring_is_logged_and_boot_continues(logs: LogCapture) -> None:
    r = rig(image(vdev_table((TEST_ID, [(ANY, 16, 0, 0, 0)]), (TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        assert "remoteproc0: invalid qsz (0) or alignment (16)" in logs.messages
        # The broken vdev is gone; the next one still gets index 1 and the first ids.
        assert [rv.index for rv in r.rproc.rvdevs] == [1]
        assert [v.notifyid for v in live_vdev(r, 1).vrings] == [0, 1]
    finally:
        r.close()


def test_registered_vring_carveout_is_checked(logs: LogCapture) -> None:
    ring_da = 0x3000_0000
    r = rig(
        image(vdev_table((TEST_ID, [(ring_da, 16, 16, 0, 0)]))),
        sim_kw={"regions": [("vdev0vring0", ring_da, 0x1000)]},
    )
    try:
        r.rproc.boot()
        (mem,) = r.rproc.carveouts
        assert mem.name == "vdev0vring0" and mem.da == ring_da
        assert r.rproc.notifyids
    finally:
        r.close()
    # A ring bigger than the region: the probe fails (ENOMEM), the boot goes on without it.
    r = rig(
        image(vdev_table((TEST_ID, [(ring_da, 16, 256, 0, 0)]))),
        sim_kw={"regions": [("vdev0vring0", ring_da, 0x1000)]},
    )
    try:
        r.rproc.boot()
        assert r.rproc.rvdevs == [] and r.rproc.notifyids == {}
        assert "remoteproc0: Registered carveout doesn't fit len request" in logs.messages
    finally:
        r.close()


def test_driver_probe_status_features_and_config(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        (vdev,) = driver.probed
        assert driver.status_at_probe == [
            bus.VIRTIO_CONFIG_S_ACKNOWLEDGE | bus.VIRTIO_CONFIG_S_DRIVER
        ]
        rsc = live_vdev(r)
        assert rsc.status == 7  # ACKNOWLEDGE | DRIVER | DRIVER_OK, in device memory
        # 0xF0000001 offered; driver wants bit 0; transport keeps 28 and 29, drops 30 and 31.
        assert rsc.gfeatures == (1 << 0) | (1 << 28) | (1 << 29)
        assert vdev.features == rsc.gfeatures
        assert vdev.get_features() == 0xF000_0001
        assert vdev.config_get(2, 4) == b"\x03\x04\x05\x06"
        vdev.config_set(0, b"\xaa\xbb")
        assert bytes(rsc.config[:2]) == b"\xaa\xbb"
        assert vdev.name.startswith("virtio") and vdev.rproc is r.rproc
        assert vdev.byteorder == "<"
    finally:
        r.close()


def test_config_access_out_of_bounds(driver: FakeDriver, logs: LogCapture) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        vdev = driver.probed[0]
        before = bytes(live_vdev(r).config)
        assert vdev.config_get(6, 4) is None
        vdev.config_set(7, b"\x00\x00")
        assert bytes(live_vdev(r).config) == before
        assert logs.messages.count("remoteproc0: access out of bounds") == 2
    finally:
        r.close()


def test_transport_feature_filter() -> None:
    assert transport_features((1 << 28) | (1 << 30) | (1 << 31) | 5) == (1 << 28) | 5
    assert transport_features(1 << 41) == 0
    assert transport_features(1 << 42) == 1 << 42  # outside the transport range: untouched


def test_find_vqs_writes_ring_da_into_device_table_and_zeroes_rings(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        rsc = live_vdev(r)
        for i in range(2):
            mem = r.rproc.find_carveout_by_name(f"vdev0vring{i}")
            assert mem is not None
            assert rsc.vring(i).da == mem.da
        assert [vq.name for vq in driver.vqs] == ["input", "output"]
        # The cached copy still holds the firmware's value: the da is a device-memory write.
        assert r.rproc.cached_table is not None
        cached = Vdev.from_entry(ResourceTable(r.rproc.cached_table).entry(0))
        assert cached.vring(0).da == ANY
    finally:
        r.close()


def test_kick_and_vq_interrupt_dispatch(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        rx = driver.vqs[0]
        vdev = driver.probed[0]
        buf, pa = vdev.dma_alloc(64)
        rx.add_inbuf(pa, 64, "tok")
        assert rx.kick()
        assert r.sim.kicks == [0]  # notify id of vring 0
        assert r.sim.remote_kick(0) is False  # nothing used yet: IRQ_NONE
        assert r.sim.remote_kick(99) is False  # no such notify id
        mem = r.rproc.find_carveout_by_name("vdev0vring0")
        assert mem is not None and mem.va is not None
        dev = DeviceQueue(
            mem.va[: rx.layout.size],
            16,
            16,
            index=0,
            name="input",
            byteorder="<",
            pa_to_va=r.rproc.pa_to_va,
            notify=lambda: None,
        )
        got = dev.pop_avail()
        assert got is not None
        head, bufs = got
        bufs[0][0][:5] = b"hello"
        dev.push_used(head, 5)
        assert r.sim.remote_kick(0) is True
        assert driver.received == [0]
        assert bytes(buf[:5]) == b"hello"
        vdev.dma_free(pa)
    finally:
        r.close()


def test_dma_from_vdev_buffer_region(driver: FakeDriver) -> None:
    r = rig(
        image(vdev_table((TEST_ID, RINGS))),
        sim_kw={"regions": [("vdev0buffer", None, 0x4000)]},
    )
    try:
        r.rproc.boot()
        vdev = driver.probed[0]
        region_pa = r.sim.regions[0][3]
        _view, pa = vdev.dma_alloc(0x100)
        assert region_pa <= pa < region_pa + 0x4000
        assert vdev.pa_to_va(pa, 4) is not None
        vdev.dma_free(pa)
    finally:
        r.close()
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        _view, pa = driver.probed[-1].dma_alloc(0x100)
        assert r.sim.dma.owns(pa)
    finally:
        r.close()


def test_shutdown_removes_driver_and_frees_vrings(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS)), loaded=False))
    try:
        r.rproc.boot()
        cached = r.rproc.cached_table
        assert cached is not None
        r.rproc.shutdown()
        assert len(driver.removed) == 1
        assert r.rproc.notifyids == {}
        assert r.sim.remote_kick(0) is False
        rsc = Vdev.from_entry(ResourceTable(cached).entry(0))
        # rproc_free_vring: da = 0, notifyid = -1, in the table live at cleanup.
        assert [(v.da, v.notifyid) for v in rsc.vrings] == [(0, 0xFFFFFFFF)] * 2
    finally:
        r.close()


def test_recovery_reprobes_the_driver(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        log = EventLog()
        r.rproc.subscribe(log)
        r.rproc.report_crash()
        log.wait(lambda e: e.kind is EventKind.RECOVERY_DONE)
        assert len(driver.probed) == 2 and len(driver.removed) == 1
        assert live_vdev(r).status == 7
        assert sorted(r.rproc.notifyids) == [0, 1]
    finally:
        r.close()


def test_failed_driver_probe_marks_failed_but_boots(driver: FakeDriver) -> None:
    driver.fail = True
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        assert live_vdev(r).status & bus.VIRTIO_CONFIG_S_FAILED
        assert all(rv.vq is None for rv in r.rproc.rvdevs[0].vrings)
    finally:
        r.close()


def test_no_driver_leaves_acknowledge() -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS))))
    try:
        r.rproc.boot()
        assert live_vdev(r).status == bus.VIRTIO_CONFIG_S_ACKNOWLEDGE
    finally:
        r.close()


def test_find_vqs_errors(driver: FakeDriver) -> None:
    r = rig(image(vdev_table((TEST_ID, RINGS[:1]))))
    try:
        from remoteproc.errors import RprocError

        driver.fail = True  # keep probe from creating queues
        r.rproc.boot()
        vdev = r.rproc.rvdevs[0].virtio
        assert vdev is not None
        with pytest.raises(RprocError) as ei:
            vdev.find_vqs(["a", "b"], [None, None])  # one vring: no vdev0vring1 carveout
        assert ei.value.errno == errno.ENOMEM
        assert r.rproc.rvdevs[0].vrings[0].vq is None  # unwound
        with pytest.raises(RprocError) as ei:
            vdev.find_vqs([None, None, "c"], [None, None, None])
        assert ei.value.errno == errno.EINVAL
        vqs = vdev.find_vqs([None], [None])
        assert vqs == [None]
    finally:
        r.close()
