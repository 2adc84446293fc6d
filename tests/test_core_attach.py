"""Attach and detach (spec §1.7, §1.8): preloaded cores, the live table, clean-table restore,
error unwinding, validation at registration."""

from __future__ import annotations

import errno

import pytest
from test_core_support import TABLE_DA, EventLog, Rig, assert_clean, image, rig

from remoteproc.core.events import EventKind
from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import Carveout, ResourceTable
from remoteproc.platforms.sim import RecordingSubdev, SimPlatform

IMG = image()


def attached_rig(**kw: object) -> Rig:
    r = rig(IMG, state=State.DETACHED, preload=IMG, **kw)  # type: ignore[arg-type]
    r.rproc.add_subdev(RecordingSubdev(r.sim, "A"))
    r.rproc.add_subdev(RecordingSubdev(r.sim, "B"))
    return r


def device_table(r: Rig) -> memoryview:
    view = r.sim.translate(TABLE_DA, r.rproc.table_sz or len(pristine()))
    assert view is not None
    return view


def pristine() -> bytes:
    from remoteproc.platforms.sim import parse_image

    t = parse_image(IMG).rsc_table
    assert t is not None
    return bytes(t)


ATTACH = [
    "prepare",
    "get_loaded_rsc_table",
    "A.prepare",
    "B.prepare",
    "attach",
    "A.start",
    "B.start",
]


def test_attach_uses_the_live_table_and_loads_nothing() -> None:
    r = attached_rig()
    try:
        log = EventLog()
        r.rproc.subscribe(log)
        r.host.builtin_firmware.clear()  # attaching must never need a firmware file
        r.rproc.boot()
        assert r.rproc.state is State.ATTACHED and r.rproc.power == 1
        assert r.sim.take_calls() == ATTACH
        live = device_table(r)
        assert r.rproc.table_ptr is not None and r.rproc.table_ptr.obj is live.obj
        assert r.rproc.cached_table is None
        assert r.rproc.clean_table == pristine()
        # Carveout write-back went straight into device memory.
        heap = r.rproc.find_carveout_by_name("heap")
        assert heap is not None
        c = Carveout.from_entry(ResourceTable(live).entry(0))
        assert c.pa == heap.dma
        assert EventKind.ATTACHED in log.kinds()
        assert ("detached", "attached") in log.states()
    finally:
        r.close()


def test_detach_restores_the_pristine_table_and_can_reattach() -> None:
    r = attached_rig()
    try:
        log = EventLog()
        r.rproc.subscribe(log)
        r.rproc.boot()
        assert bytes(device_table(r)) != pristine()  # host write-backs are in device memory
        r.sim.take_calls()
        r.rproc.detach()
        assert r.sim.take_calls() == [
            "B.stop(clean)",
            "A.stop(clean)",
            "detach",
            "B.unprepare",
            "A.unprepare",
            "unprepare",
        ]
        assert r.rproc.state is State.DETACHED
        assert bytes(device_table(r)) == pristine()
        assert_clean(r)
        assert EventKind.DETACHED in log.kinds()
        r.rproc.boot()
        assert r.rproc.state is State.ATTACHED
        assert r.sim.take_calls() == ATTACH
    finally:
        r.close()


def test_detach_refcount_and_state_checks() -> None:
    r = attached_rig()
    try:
        with pytest.raises(RprocError) as ei:
            r.rproc.detach()  # DETACHED is not ATTACHED
        assert ei.value.errno == errno.EINVAL
        r.rproc.boot()
        r.rproc.boot()
        r.rproc.detach()
        assert (r.rproc.state, r.rproc.power) == (State.ATTACHED, 1)
        r.rproc.detach()
        assert (r.rproc.state, r.rproc.power) == (State.DETACHED, 0)
    finally:
        r.close()


def test_detach_needs_the_op() -> None:
    r = attached_rig(sim_kw={"can_detach": False})
    try:
        r.rproc.boot()
        assert r.rproc.clean_table is None  # no detach op: no pristine copy
        with pytest.raises(RprocError) as ei:
            r.rproc.detach()
        assert ei.value.errno == errno.EINVAL
        assert (r.rproc.state, r.rproc.power) == (State.ATTACHED, 1)
    finally:
        r.close()


def test_detach_failure_restores_power() -> None:
    r = attached_rig()
    try:
        r.rproc.boot()
        r.sim.fail_at("detach", errno.EBUSY)
        with pytest.raises(RprocError) as ei:
            r.rproc.detach()
        assert ei.value.errno == errno.EBUSY
        assert (r.rproc.state, r.rproc.power) == (State.ATTACHED, 1)
    finally:
        r.close()


def test_detach_of_running_is_einval() -> None:
    r = rig()
    try:
        r.rproc.boot()
        with pytest.raises(RprocError) as ei:
            r.rproc.detach()
        assert ei.value.errno == errno.EINVAL
    finally:
        r.close()


def test_shutdown_of_attached_goes_offline_and_next_start_loads_firmware() -> None:
    r = attached_rig()
    try:
        r.rproc.boot()
        r.rproc.shutdown()
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
        r.sim.take_calls()
        r.rproc.boot()
        calls = r.sim.take_calls()
        assert "load" in calls and "attach" not in calls
        assert r.rproc.state is State.RUNNING
    finally:
        r.close()


_UNPREP = ["B.unprepare", "A.unprepare", "unprepare"]
ATTACH_FAILURES = {
    "prepare": ["prepare"],
    "get_loaded_rsc_table": ["prepare", "get_loaded_rsc_table", "unprepare"],
    "A.prepare": ["prepare", "get_loaded_rsc_table", "A.prepare", "unprepare"],
    "attach": ["prepare", "get_loaded_rsc_table", "A.prepare", "B.prepare", "attach", *_UNPREP],
    "A.start": [*ATTACH[:5], "A.start", "stop", *_UNPREP],
    "B.start": [*ATTACH, "A.stop(crashed)", "stop", *_UNPREP],
}


@pytest.mark.parametrize("step", list(ATTACH_FAILURES))
def test_attach_failure_unwinds(step: str) -> None:
    r = attached_rig()
    try:
        r.sim.fail_at(step, errno.EIO)
        with pytest.raises(RprocError) as ei:
            r.rproc.boot()
        assert ei.value.errno == errno.EIO
        assert r.sim.take_calls() == ATTACH_FAILURES[step]
        assert r.rproc.state is State.DETACHED
        assert_clean(r)  # v6.16: resources and the clean table are released
        r.rproc.boot()
        assert r.rproc.state is State.ATTACHED
    finally:
        r.close()


def test_attach_without_a_table_is_fine() -> None:
    from remoteproc.platforms.sim import build_image

    plain = build_image([(0, b"x")])
    r = rig(plain, state=State.DETACHED, preload=plain)
    try:
        r.rproc.boot()
        assert r.rproc.state is State.ATTACHED and r.rproc.table_ptr is None
        r.rproc.detach()
        assert r.rproc.state is State.DETACHED
    finally:
        r.close()


def test_validation_at_add() -> None:
    with Host([], panic_hook=False) as host:
        sim = SimPlatform("a", can_attach=False)
        rp = sim.make_rproc("a", state=State.DETACHED, auto_boot=False)
        with pytest.raises(RprocError) as ei:
            host.add(rp)
        assert ei.value.errno == errno.EINVAL
        assert len(host) == 0 and rp.index == -1
        ops = SimPlatform("b").ops()
        ops.start = None
        from remoteproc.core.rproc import Rproc

        with pytest.raises(RprocError) as ei:
            host.add(Rproc("b", ops, auto_boot=False))
        assert ei.value.errno == errno.EINVAL
        for bad in (State.RUNNING, State.CRASHED, State.ATTACHED):
            with pytest.raises(RprocError) as ei:
                host.add(SimPlatform("c").make_rproc("c", state=bad, auto_boot=False))
            assert ei.value.errno == errno.EINVAL
        # DETACHED with a cached table is refused too.
        rp = SimPlatform("d").make_rproc("d", state=State.DETACHED, auto_boot=False)
        rp.cached_table = bytearray(16)
        with pytest.raises(RprocError):
            host.add(rp)


def test_auto_boot_detached_attaches_synchronously() -> None:
    with Host([], panic_hook=False) as host:
        sim = SimPlatform("m4")
        sim.preload(IMG)
        rp = sim.make_rproc("m4", state=State.DETACHED, host=host)
        assert rp.state is State.ATTACHED and rp.power == 1


def test_auto_boot_detached_failure_unwinds_registration() -> None:
    with Host([], panic_hook=False) as host:
        sim = SimPlatform("m4")
        sim.preload(IMG)
        sim.fail_at("attach", errno.EIO)
        rp = sim.make_rproc("m4", state=State.DETACHED)
        with pytest.raises(RprocError):
            host.add(rp)
        assert len(host) == 0 and rp.index == -1 and rp.host is None
        assert rp.state is State.DETACHED and rp.power == 0


def test_platform_sets_detached_before_registration_only() -> None:
    sim = SimPlatform("m4")
    sim.preload(IMG)
    rp = sim.make_rproc("m4", auto_boot=False)
    rp.state = State.DETACHED
    with pytest.raises(RprocError) as ei:
        rp.state = State.RUNNING
    assert ei.value.errno == errno.EINVAL
    with Host([], panic_hook=False) as host:
        host.add(rp)
        with pytest.raises(RprocError) as ei:
            rp.state = State.OFFLINE
        assert ei.value.errno == errno.EBUSY
        rp.boot()
        assert rp.state is State.ATTACHED
