"""Boot and shutdown (spec §1.3-§1.6): step order, error unwinding at every step, the power
refcount, set_firmware and the firmware search path."""

from __future__ import annotations

import errno
import logging
import struct
import threading
from pathlib import Path

import pytest
from test_core_support import (
    ANY,
    TABLE_DA,
    LogCapture,
    Rig,
    assert_clean,
    image,
    rig,
    standard_table,
)

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import Carveout, ResourceTable, TableBuilder, Vdev
from remoteproc.platforms.sim import RecordingSubdev, SimPlatform

FW_BOOT = ["sanity_check", "prepare", "parse_fw", "load", "find_loaded_rsc_table"]


@pytest.fixture
def logs() -> object:
    cap = LogCapture()
    logger = logging.getLogger("remoteproc")
    logger.addHandler(cap)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield cap
    logger.removeHandler(cap)
    logger.setLevel(old)


def with_subdevs(r: Rig) -> Rig:
    r.rproc.add_subdev(RecordingSubdev(r.sim, "A"))
    r.rproc.add_subdev(RecordingSubdev(r.sim, "B"))
    return r


def test_boot_runs_the_kernel_step_order_and_ends_running() -> None:
    r = with_subdevs(rig())
    try:
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        assert r.rproc.power == 1
        assert r.sim.take_calls() == [
            *FW_BOOT,
            "A.prepare",
            "B.prepare",
            "start",
            "A.start",
            "B.start",
        ]
        assert r.rproc.bootaddr == 0x101
        assert r.sim.running
    finally:
        r.close()


def test_boot_moves_the_table_to_device_memory_and_writes_back() -> None:
    r = rig()
    try:
        rp = r.rproc
        rp.boot()
        tcm = r.sim.translate(TABLE_DA, rp.table_sz)
        assert tcm is not None
        # table_ptr now aliases the loaded table in the device's TCM.
        assert rp.table_ptr is not None and rp.table_ptr.obj is tcm.obj
        table = ResourceTable(tcm)
        carve = Carveout.from_entry(table.entry(0))
        heap = rp.find_carveout_by_name("heap")
        assert heap is not None and heap.va is not None
        assert (carve.da, carve.pa, carve.len) == (heap.da, heap.dma, 0x2000)
        assert r.sim.dma.owns(carve.pa)
        vdev = Vdev.from_entry(table.entry(2))
        assert [v.notifyid for v in vdev.vrings] == [0, 1]
        ring0 = rp.find_carveout_by_name("vdev0vring0")
        assert ring0 is not None
        # With no virtio driver registered the device still exists and the firmware sees
        # ACKNOWLEDGE; the vring da is only written by find_vqs.
        assert vdev.status & 1
        # The cached copy (host memory) got the notify ids before start.
        assert rp.cached_table is not None
        cached = Vdev.from_entry(ResourceTable(rp.cached_table).entry(2))
        assert [v.notifyid for v in cached.vrings] == [0, 1]
    finally:
        r.close()


def test_trace_reads_up_to_nul_and_exposes_the_raw_ring() -> None:
    r = rig()
    try:
        r.rproc.boot()
        (trace,) = r.rproc.traces
        assert trace.name == "trace0"
        assert trace.read() == b"booted"
        raw = trace.raw()
        assert raw is not None and len(raw) == 0x100
        assert bytes(raw[:14]) == b"booted\0garbage"
        raw[0:6] = b"HELLO!"  # the remote writing its log
        assert trace.read() == b"HELLO!"
    finally:
        r.close()


def test_trace_not_available_message() -> None:
    tb = TableBuilder()
    tb.add_trace(0x7000_0000, 0x40, name="nowhere")
    r = rig(image(tb.build()))
    try:
        r.rproc.boot()
        assert r.rproc.traces[0].read() == b"Trace trace0 not available\n"
        assert r.rproc.traces[0].raw() is None
    finally:
        r.close()


def test_shutdown_order_and_release(logs: LogCapture) -> None:
    r = with_subdevs(rig())
    try:
        r.rproc.boot()
        r.sim.take_calls()
        r.rproc.shutdown()
        assert r.sim.take_calls() == [
            "B.stop(clean)",
            "A.stop(clean)",
            "stop",
            "B.unprepare",
            "A.unprepare",
            "unprepare",
        ]
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
        assert "remoteproc0: stopped remote processor m4" in logs.messages
        # The vring notify ids were reset in the table that was live at cleanup time.
    finally:
        r.close()


def test_power_refcount() -> None:
    r = rig()
    try:
        rp = r.rproc
        rp.boot()
        rp.boot()  # already powered: just a reference
        assert rp.power == 2
        assert r.sim.take_calls().count("start") == 1
        rp.shutdown()
        assert (rp.state, rp.power) == (State.RUNNING, 1)
        assert "stop" not in r.sim.take_calls()
        rp.shutdown()
        assert (rp.state, rp.power) == (State.OFFLINE, 0)
        with pytest.raises(RprocError) as ei:
            rp.shutdown()  # redundant shutdown: EINVAL, power never negative
        assert ei.value.errno == errno.EINVAL
        assert rp.power == 0
    finally:
        r.close()


def test_boot_deleted_is_enodev() -> None:
    r = rig()
    rp = r.rproc
    r.host.delete(rp)
    assert rp.state is State.DELETED
    with pytest.raises(RprocError) as ei:
        rp.boot()
    assert ei.value.errno == errno.ENODEV
    assert "can't boot deleted rproc m4" in ei.value.message
    assert rp.power == 0
    r.close()


# ---- failure injection at every boot step ------------------------------------------------------

_UNPREP = ["B.unprepare", "A.unprepare", "unprepare"]
BOOT_FAILURES = {
    "sanity_check": ["sanity_check"],
    "prepare": ["sanity_check", "prepare"],
    "parse_fw": ["sanity_check", "prepare", "parse_fw", "unprepare"],
    "load": [*FW_BOOT[:4], "unprepare"],
    "find_loaded_rsc_table": [*FW_BOOT, "unprepare"],
    "A.prepare": [*FW_BOOT, "A.prepare", "unprepare"],
    "B.prepare": [*FW_BOOT, "A.prepare", "B.prepare", "A.unprepare", "unprepare"],
    "start": [*FW_BOOT, "A.prepare", "B.prepare", "start", *_UNPREP],
    "A.start": [*FW_BOOT, "A.prepare", "B.prepare", "start", "A.start", "stop", *_UNPREP],
    "B.start": [
        *FW_BOOT,
        "A.prepare",
        "B.prepare",
        "start",
        "A.start",
        "B.start",
        "A.stop(crashed)",
        "stop",
        *_UNPREP,
    ],
}


@pytest.mark.parametrize("step", list(BOOT_FAILURES))
def test_boot_failure_unwinds(step: str) -> None:
    r = with_subdevs(rig())
    try:
        r.sim.fail_at(step, errno.EIO)
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EIO
        assert r.sim.take_calls() == BOOT_FAILURES[step]
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
        # Nothing leaked: the same processor boots normally afterwards.
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
        r.rproc.shutdown()
        assert_clean(r)
    finally:
        r.close()


def test_vdev_start_failure_stops_started_subdevs_crashed(logs: LogCapture) -> None:
    """No kick op: the vdev subdevice (last in the list) fails to start."""
    r = with_subdevs(rig())
    try:
        r.rproc.ops.kick = None
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EINVAL
        assert ".kick method not defined for m4" in logs.messages[-1] or any(
            ".kick method not defined for m4" in m for m in logs.messages
        )
        assert r.sim.take_calls() == [
            *FW_BOOT,
            "A.prepare",
            "B.prepare",
            "start",
            "A.start",
            "B.start",
            "B.stop(crashed)",
            "A.stop(crashed)",
            "stop",
            *_UNPREP,
        ]
        assert_clean(r)
    finally:
        r.close()


def test_missing_firmware_is_enoent_and_logged(logs: LogCapture) -> None:
    r = rig()
    try:
        r.rproc.set_firmware("nope.elf")
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.ENOENT
        assert "remoteproc0: request_firmware failed: -2" in logs.messages
        assert r.rproc.power == 0 and r.sim.take_calls() == []
    finally:
        r.close()


def test_resource_failure_unwinds_with_message(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_carveout(ANY, 0, 0x1000, name="ok")
    tb.add_carveout(ANY, 0, 0x1000, name="bad", reserved=1)
    r = rig(image(tb.build()))
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EINVAL
        assert ei.value.index == 1
        assert "remoteproc0: carveout rsc has non zero reserved bytes" in logs.messages
        assert "remoteproc0: Failed to process resources: -22" in logs.messages
        assert r.sim.take_calls() == ["sanity_check", "prepare", "parse_fw", "unprepare"]
        assert_clean(r)
    finally:
        r.close()


def test_carveout_allocation_failure_unwinds(logs: LogCapture) -> None:
    tb = TableBuilder()
    tb.add_carveout(ANY, 0, 0x1000, name="small")
    tb.add_carveout(ANY, 0, 0x100000, name="huge")  # bigger than the sim's pool
    r = rig(image(tb.build()))
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.ENOMEM
        assert any(
            m.startswith("remoteproc0: Unable to allocate carveout huge: -12")
            for m in logs.messages
        )
        assert "remoteproc0: Failed to allocate associated carveouts: -12" in logs.messages
        assert_clean(r)  # "small" was allocated and given back
    finally:
        r.close()


def test_no_loaded_table_keeps_the_cached_one() -> None:
    r = rig(image(loaded=False))
    try:
        r.rproc.boot()
        assert r.rproc.cached_table is not None
        assert r.rproc.table_ptr is not None and r.rproc.table_ptr.obj is r.rproc.cached_table
        r.rproc.shutdown()
        assert_clean(r)
    finally:
        r.close()


def test_stale_table_size_cleared_on_stop() -> None:
    """CVE-2025-38152: a second image without a table must not copy a stale table_sz."""
    r = rig()
    try:
        r.rproc.boot()
        r.rproc.shutdown()
        assert r.rproc.table_sz == 0
        from remoteproc.platforms.sim import build_image

        r.host.add_firmware("plain", build_image([(0, b"\x01")]))
        r.rproc.set_firmware("plain")
        r.rproc.boot()
        assert r.rproc.table_ptr is None and r.rproc.state is State.RUNNING
    finally:
        r.close()


def test_shutdown_stop_failure_keeps_power() -> None:
    r = rig()
    try:
        r.rproc.boot()
        r.sim.fail_at("stop", errno.ETIMEDOUT)
        with pytest.raises(RprocError) as ei:
            r.rproc.shutdown()
        assert ei.value.errno == errno.ETIMEDOUT
        assert r.rproc.state is State.RUNNING and r.rproc.power == 1
        r.rproc.shutdown()
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
    finally:
        r.close()


def test_shutdown_without_stop_op_is_einval() -> None:
    r = rig(sim_kw={"can_stop": False})
    try:
        r.rproc.boot()
        with pytest.raises(RprocError) as ei:
            r.rproc.shutdown()
        assert ei.value.errno == errno.EINVAL
        assert r.rproc.power == 1 and r.rproc.state is State.RUNNING
    finally:
        r.rproc.ops.stop = lambda rp: None
        r.close()


def test_start_on_running_bumps_refcount_only() -> None:
    """§1.3: since 5.19 a second start succeeds and only bumps the count."""
    r = rig()
    try:
        r.rproc.boot()
        r.rproc.boot()
        r.rproc.shutdown()
        assert r.rproc.state is State.RUNNING
    finally:
        r.close()


# ---- set_firmware (§1.10) ----------------------------------------------------------------------


def test_set_firmware_rules() -> None:
    r = rig()
    try:
        rp = r.rproc
        assert rp.firmware == "rproc-m4-fw"
        rp.set_firmware("other.elf\ntrailing")
        assert rp.firmware == "other.elf"
        for bad in ("", "\n", "\nx"):
            with pytest.raises(RprocError) as ei:
                rp.set_firmware(bad)
            assert ei.value.errno == errno.EINVAL
        with pytest.raises(RprocError) as ei:
            rp.set_firmware(None)
        assert ei.value.errno == errno.EINVAL
        for escaping in ("../x.elf", "/etc/passwd", "a/../../b"):
            with pytest.raises(RprocError) as ei:
                rp.set_firmware(escaping)
            assert ei.value.errno == errno.EINVAL
        assert rp.firmware == "other.elf"
        rp.set_firmware("rproc-m4-fw")
        rp.boot()
        with pytest.raises(RprocError) as ei:
            rp.set_firmware("x")
        assert ei.value.errno == errno.EBUSY
        assert ei.value.message == "can't change firmware while running"
    finally:
        r.close()


def _block_start(r: Rig) -> tuple[threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()
    real = r.rproc.ops.start
    assert real is not None

    def start(rp: object) -> None:
        entered.set()
        release.wait(5)
        real(rp)

    r.rproc.ops.start = start
    return entered, release


def test_interrupted_lock_wait_is_eintr_and_einval_for_set_firmware() -> None:
    r = rig()
    try:
        entered, release = _block_start(r)
        t = threading.Thread(target=r.rproc.boot)
        t.start()
        assert entered.wait(5)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(RprocError) as ei:
            r.rproc.shutdown(cancel=cancel)
        assert ei.value.errno == errno.EINTR
        with pytest.raises(RprocError) as ei:
            r.rproc.set_firmware("x", cancel=cancel)
        assert ei.value.errno == errno.EINVAL
        release.set()
        t.join(5)
        assert r.rproc.state is State.RUNNING and r.rproc.power == 1
    finally:
        r.close()


def test_op_calling_back_gets_edeadlk_not_a_hang() -> None:
    r = rig()
    try:
        seen: list[int] = []

        def start(rp: object) -> None:
            try:
                r.rproc.shutdown()
            except RprocError as exc:
                seen.append(exc.errno)

        r.rproc.ops.start = start
        r.rproc.boot()
        assert seen == [errno.EDEADLK]
    finally:
        r.close()


# ---- firmware search path ----------------------------------------------------------------------


def test_firmware_path_search(tmp_path: Path, logs: LogCapture) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "sub").mkdir(parents=True)
    first.mkdir()
    (second / "sub" / "m4.fw").write_bytes(image())
    with Host([first, second], panic_hook=False) as host, SimPlatform("m4") as sim:
        rp = sim.make_rproc("m4", auto_boot=False, host=host, firmware="sub/m4.fw")
        rp.boot()
        assert rp.state is State.RUNNING
        rp.shutdown()
        fw = host.request_firmware("sub/m4.fw")
        assert fw.path == str(second / "sub" / "m4.fw")
        # The first folder wins.
        (first / "sub").mkdir()
        (first / "sub" / "m4.fw").write_bytes(b"first")
        assert host.request_firmware("sub/m4.fw").path == str(first / "sub" / "m4.fw")
        for bad in ("../b/sub/m4.fw", str(second / "sub" / "m4.fw"), "sub/../../x"):
            with pytest.raises(RprocError) as ei:
                host.request_firmware(bad)
            assert ei.value.errno == errno.EINVAL
        with pytest.raises(RprocError) as ei:
            host.request_firmware("missing.fw")
        assert ei.value.errno == errno.ENOENT


def test_default_names_and_index() -> None:
    with Host([], panic_hook=False) as host:
        sims = [SimPlatform(f"c{i}") for i in range(3)]
        rps = [s.make_rproc(f"c{i}", auto_boot=False, host=host) for i, s in enumerate(sims)]
        assert [rp.dev_name for rp in rps] == ["remoteproc0", "remoteproc1", "remoteproc2"]
        assert rps[1].firmware == "rproc-c1-fw"
        host.delete(rps[1])
        again = SimPlatform("d").make_rproc("d", auto_boot=False, host=host)
        assert again.index == 1  # lowest free index
        assert host.get(1) is again and host.by_name("c2") is rps[2]
        assert host.by_name("remoteproc0") is rps[0]
        assert [rp.name for rp in host] == ["c0", "d", "c2"]
        with pytest.raises(RprocError) as ei:
            host.get(7)
        assert ei.value.errno == errno.ENODEV


def test_elf_defaults_installed_and_boot_a_real_elf() -> None:
    from elfbuild import Seg, build_elf

    from remoteproc.firmware import elf_loader

    table = standard_table(vdev=False)
    img = build_elf(
        [Seg(b"\x00\x01" * 32, paddr=0x0, memsz=0x100)], rsc_table=bytes(table), rsc_da=TABLE_DA
    )
    with Host([], panic_hook=False) as host, SimPlatform("m4", elf=True) as sim:
        host.add_firmware("rproc-m4-fw", bytes(img.data))
        rp = sim.make_rproc("m4", auto_boot=False, host=host)
        assert rp.ops.load is elf_loader.rproc_elf_load_segments
        assert rp.ops.parse_fw is elf_loader.rproc_elf_load_rsc_table
        assert rp.ops.sanity_check is elf_loader.rproc_elf_sanity_check
        assert rp.ops.find_loaded_rsc_table is elf_loader.rproc_elf_find_loaded_rsc_table
        assert rp.ops.get_boot_addr is elf_loader.rproc_elf_get_boot_addr
        rp.boot()
        assert rp.state is State.RUNNING
        heap = rp.find_carveout_by_name("heap")
        assert heap is not None
        live = r_table = rp.table_ptr
        assert live is not None
        pa = struct.unpack_from("<I", r_table, 0x10 + 4 * 2 + 4 + 4)[0]
        assert pa == heap.dma
        rp.shutdown()


def test_platform_ops_are_copied() -> None:
    sim = SimPlatform()
    ops = sim.ops()
    from remoteproc.core.rproc import Rproc

    rp = Rproc("x", ops, dma=sim.dma)
    assert rp.ops is not ops
    assert ops.coredump is None and rp.ops.coredump is not None
    rp.close()
    sim.close()


BOOT_MESSAGES = {
    "prepare": "remoteproc0: can't prepare rproc m4: -5",
    "load": "remoteproc0: Failed to load program segments: -5",
    "A.prepare": "remoteproc0: failed to prepare subdevices for m4: -5",
    "start": "remoteproc0: can't start rproc m4: -5",
    "B.start": "remoteproc0: failed to probe subdevices for m4: -5",
}


@pytest.mark.parametrize("step", list(BOOT_MESSAGES))
def test_boot_failure_messages(step: str, logs: LogCapture) -> None:
    r = with_subdevs(rig())
    try:
        r.sim.fail_at(step, errno.EIO)
        with pytest.raises(RprocError):
            r.rproc.boot()
        assert BOOT_MESSAGES[step] in logs.messages
        assert "remoteproc0: powering up m4" in logs.messages
        assert not any("is now up" in m for m in logs.messages)
    finally:
        r.close()


def test_success_messages_in_order(logs: LogCapture) -> None:
    r = rig()
    try:
        r.rproc.boot()
        r.rproc.shutdown()
        wanted = [
            "remoteproc0: powering up m4",
            f"remoteproc0: Booting fw image rproc-m4-fw, size {len(image())}",
            "remoteproc0: remote processor m4 is now up",
            "remoteproc0: stopped remote processor m4",
        ]
        got = [m for m in logs.messages if m in wanted]
        assert got == wanted
    finally:
        r.close()


def test_deleted_boot_is_logged(logs: LogCapture) -> None:
    r = rig()
    rp = r.rproc
    r.host.delete(rp)
    with pytest.raises(RprocError):
        rp.boot()
    assert "m4: can't boot deleted rproc m4" in logs.messages
    r.close()
