"""Crash handling and recovery (spec §1.9, §8) and our fixes of the kernel's stuck states
(§10.3, seed 000): recovery flavours, failure injection, coredump, events, threads."""

from __future__ import annotations

import errno
import threading
import time

import pytest
from conftest import wait_until
from test_core_support import EventLog, Rig, assert_clean, image, rig

from remoteproc.core import coredump
from remoteproc.core.events import EventKind
from remoteproc.core.states import CrashType, Feature, State
from remoteproc.errors import RprocError
from remoteproc.platforms.sim import RecordingSubdev

IMG = image()


def booted(**kw: object) -> tuple[Rig, EventLog]:
    r = rig(IMG, **kw)  # type: ignore[arg-type]
    r.rproc.add_subdev(RecordingSubdev(r.sim, "A"))
    r.rproc.boot()
    r.sim.take_calls()
    log = EventLog()
    r.rproc.subscribe(log)
    return r, log


def recovered(log: EventLog) -> None:
    log.wait(lambda e: e.kind in (EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED))


def test_boot_recovery_sequence_and_events() -> None:
    r, log = booted()
    try:
        heap = r.rproc.find_carveout_by_name("heap")
        r.sim.crash(CrashType.WATCHDOG)
        recovered(log)
        assert r.rproc.state is State.RUNNING
        assert r.rproc.power == 1 and r.rproc.crash_cnt == 1
        # No sanity check, prepare or parse: the cached table and carveouts are reused.
        assert r.sim.take_calls() == [
            "A.stop(crashed)",
            "stop",
            "A.unprepare",
            "load",
            "find_loaded_rsc_table",
            "A.prepare",
            "start",
            "A.start",
        ]
        assert r.rproc.find_carveout_by_name("heap") is heap
        assert log.kinds() == [
            EventKind.CRASH,
            EventKind.STATE,
            EventKind.CRASH_HANDLED,
            EventKind.RECOVERY_START,
            EventKind.STATE,
            EventKind.COREDUMP,
            EventKind.STATE,
            EventKind.RECOVERY_DONE,
        ]
        assert log.states() == [
            ("running", "crashed"),
            ("crashed", "offline"),
            ("offline", "running"),
        ]
        crash = log.events[0]
        assert crash.detail == "watchdog" and crash.rproc == "remoteproc0"
        assert log.events[2].count == 1
    finally:
        r.close()


def test_crash_type_names_in_log(caplog: pytest.LogCaptureFixture) -> None:
    r, log = booted()
    try:
        r.rproc.recovery_disabled = True
        with caplog.at_level("ERROR", logger="remoteproc"):
            r.rproc.report_crash(CrashType.MMUFAULT)
            log.wait(lambda e: e.kind is EventKind.CRASH_HANDLED)
            r.rproc.report_crash(7)
            r.rproc.report_crash("fatal error")
            r.host.workqueue.flush(5)
        msgs = [rec.getMessage() for rec in caplog.records]
        assert "remoteproc0: crash detected in m4: type mmufault" in msgs
        assert "remoteproc0: crash detected in m4: type unknown" in msgs
        assert "remoteproc0: crash detected in m4: type fatal error" in msgs
        assert "remoteproc0: handling crash #1 in m4" in msgs
        # Only the first crash is handled while CRASHED.
        assert r.rproc.crash_cnt == 1
    finally:
        r.close()


def test_recovery_disabled_stays_crashed_then_recover() -> None:
    r, log = booted()
    try:
        r.rproc.recovery_disabled = True
        r.sim.crash()
        log.wait(lambda e: e.kind is EventKind.CRASH_HANDLED)
        r.host.workqueue.flush(5)
        assert r.rproc.state is State.CRASHED and r.rproc.power == 1
        assert r.sim.take_calls() == []
        with pytest.raises(RprocError) as ei:
            r.rproc.set_coredump("enabled")
        assert ei.value.errno == errno.EBUSY
        r.rproc.boot()  # CRASHED with power >= 1: just a reference (§1.4 note)
        assert r.rproc.power == 2
        r.rproc.trigger_recovery()
        assert r.rproc.state is State.RUNNING and r.rproc.power == 2
    finally:
        r.close()


def test_crashed_with_recovery_disabled_can_be_stopped() -> None:
    """Kernel stuck state: stop returns EINVAL on CRASHED. Ours stops it (crashed=True)."""
    r, log = booted()
    try:
        r.rproc.recovery_disabled = True
        r.sim.crash()
        log.wait(lambda e: e.kind is EventKind.CRASH_HANDLED)
        r.rproc.shutdown()
        assert r.rproc.state is State.OFFLINE
        assert r.sim.take_calls() == ["A.stop(crashed)", "stop", "A.unprepare", "unprepare"]
        assert_clean(r)
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING
    finally:
        r.close()


def test_trigger_recovery_when_not_crashed_is_a_noop() -> None:
    r, _ = booted()
    try:
        r.rproc.trigger_recovery()
        assert r.sim.take_calls() == []
        assert r.rproc.state is State.RUNNING
    finally:
        r.close()


def test_crash_of_offline_is_ignored() -> None:
    r = rig(IMG)
    try:
        r.rproc.report_crash()
        r.host.workqueue.flush(5)
        assert r.rproc.state is State.OFFLINE and r.rproc.crash_cnt == 0
    finally:
        r.close()


@pytest.mark.parametrize("step", ["load", "find_loaded_rsc_table", "A.prepare", "start", "A.start"])
def test_failed_recovery_leaves_offline_power_zero(step: str) -> None:
    """Kernel stuck state: OFFLINE with power 1. Ours: OFFLINE, power 0, everything released,
    and the user can set a new firmware and start again (seed 000)."""
    r, log = booted()
    try:
        r.sim.fail_at(step, errno.EIO)
        r.sim.crash()
        ev = log.wait(lambda e: e.kind in (EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED))
        assert ev.kind is EventKind.RECOVERY_FAILED
        assert isinstance(ev.error, RprocError) and ev.error.errno == errno.EIO
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
        with pytest.raises(RprocError) as ei:
            r.rproc.shutdown()
        assert ei.value.errno == errno.EINVAL
        r.host.add_firmware("new.fw", IMG)
        r.rproc.set_firmware("new.fw")
        r.rproc.boot()
        assert r.rproc.state is State.RUNNING and r.rproc.power == 1
    finally:
        r.close()


def test_failed_recovery_missing_firmware() -> None:
    r, log = booted()
    try:
        r.host.builtin_firmware.clear()
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.OFFLINE and r.rproc.power == 0
        assert_clean(r)
    finally:
        r.close()


def test_recovery_stop_failure_stays_crashed_and_can_be_stopped_later() -> None:
    r, log = booted()
    try:
        r.sim.fail_at("stop", errno.ETIMEDOUT)
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.CRASHED and r.rproc.power == 1
        r.rproc.shutdown()
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
    finally:
        r.close()


def test_attach_on_recovery_detaches_and_attaches() -> None:
    r = rig(IMG, state=State.DETACHED, preload=IMG, features=[Feature.ATTACH_ON_RECOVERY])
    try:
        r.rproc.add_subdev(RecordingSubdev(r.sim, "A"))
        r.host.builtin_firmware.clear()  # never needed
        dumps: list[object] = []
        r.rproc.ops.coredump = dumps.append
        r.rproc.boot()
        pristine = r.rproc.clean_table
        r.sim.take_calls()
        log = EventLog()
        r.rproc.subscribe(log)
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.ATTACHED and r.rproc.power == 1
        assert r.sim.take_calls() == [
            "A.stop(clean)",
            "detach",
            "A.unprepare",
            "get_loaded_rsc_table",
            "A.prepare",
            "attach",
            "A.start",
        ]
        assert dumps == []
        assert log.states() == [
            ("attached", "crashed"),
            ("crashed", "detached"),
            ("detached", "attached"),
        ]
        # Our fix: the live table is bound again, so a later detach still works.
        assert r.rproc.clean_table == pristine
        r.rproc.detach()
        assert r.rproc.state is State.DETACHED
        view = r.sim.translate(0x8000, len(pristine or b""))
        assert view is not None and bytes(view) == pristine
    finally:
        r.close()


def test_recovery_of_an_attached_core_never_requests_firmware() -> None:
    r = rig(IMG, state=State.DETACHED, preload=IMG)
    try:
        r.host.builtin_firmware.clear()
        r.rproc.boot()
        r.sim.take_calls()
        log = EventLog()
        r.rproc.subscribe(log)
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.RUNNING
        calls = r.sim.take_calls()
        assert "load" not in calls and calls[:1] == ["stop"] and "start" in calls
        assert EventKind.RECOVERY_DONE in log.kinds()
    finally:
        r.close()


def test_coredump_runs_in_recovery_and_lands_in_the_store() -> None:
    r, log = booted()
    try:
        r.rproc.set_coredump("enabled")
        coredump.set_elf_info(r.rproc, coredump.ELFCLASS32, 40)
        heap = r.rproc.find_carveout_by_name("heap")
        assert heap is not None and heap.va is not None
        heap.va[:4] = b"CORE"
        coredump.add_segment(r.rproc, heap.da, 0x100)
        r.sim.crash()
        recovered(log)
        store = r.host.coredump_store
        (n,) = store.list()
        data = store.read(n, 0, 1 << 20)
        assert data[:4] == b"\x7fELF" and b"CORE" in data
        assert log.wait(lambda e: e.kind is EventKind.COREDUMP).detail == "enabled"
        r.rproc.shutdown()
        assert r.rproc.dump_segments == []
    finally:
        r.close()


def test_report_crash_from_another_thread_inside_an_op() -> None:
    """A platform's emulation thread reports a crash while the core holds the lock (in start):
    no deadlock, the crash is handled once the boot finishes."""
    r = rig(IMG)
    try:
        real = r.rproc.ops.start
        assert real is not None

        calls: list[int] = []

        def start(rp: object) -> None:
            calls.append(1)
            if len(calls) == 1:  # only the first start crashes; recovery's start is clean
                t = threading.Thread(target=r.rproc.report_crash, args=(CrashType.MMUFAULT,))
                t.start()
                t.join(5)
                assert not t.is_alive()
            real(rp)

        r.rproc.ops.start = start
        log = EventLog()
        r.rproc.subscribe(log)
        r.rproc.boot()
        recovered(log)
        assert r.rproc.crash_cnt == 1 and r.rproc.state is State.RUNNING
        assert len(calls) == 2
    finally:
        r.close()


def test_crash_reports_collapse_while_pending() -> None:
    r, log = booted()
    try:
        r.rproc.recovery_disabled = True
        for _ in range(50):
            r.rproc.report_crash()
        r.host.workqueue.flush(5)
        assert r.host.dispatcher.flush(5)  # crash reports do not wait for their delivery
        assert r.rproc.crash_cnt == 1
        assert log.kinds().count(EventKind.CRASH) == 50
    finally:
        r.close()


def test_subscriber_may_shut_down_from_its_callback() -> None:
    """Events are published outside the lock: a subscriber may act on the processor."""
    r, _ = booted()
    try:
        r.rproc.recovery_disabled = True
        done = threading.Event()

        def on_event(ev: object) -> None:
            if getattr(ev, "kind", None) is EventKind.CRASH_HANDLED:
                r.rproc.shutdown()
                done.set()

        r.rproc.subscribe(on_event)
        r.sim.crash()
        assert done.wait(5)
        assert r.rproc.state is State.OFFLINE
    finally:
        r.close()


def test_standalone_rproc_has_its_own_worker() -> None:
    from remoteproc.platforms.sim import SimPlatform

    sim = SimPlatform("solo")
    rp = sim.make_rproc("solo", auto_boot=False)
    from remoteproc.core.host import WorkQueue

    wq = rp._workqueue()
    assert isinstance(wq, WorkQueue)
    rp.report_crash()  # OFFLINE: ignored, but runs on the worker
    assert wq.flush(5)
    assert wq.threads == 1
    rp.close()
    time.sleep(0)
    assert wq.threads == 0
    assert rp.state is State.DELETED
    sim.close()


def test_crash_registers_go_into_this_crash_coredump_only() -> None:
    r, log = booted()
    try:
        r.rproc.set_coredump("enabled")
        coredump.set_elf_info(r.rproc, coredump.ELFCLASS32, 40)
        heap = r.rproc.find_carveout_by_name("heap")
        assert heap is not None
        coredump.add_segment(r.rproc, heap.da, 0x40)
        r.rproc.report_crash(CrashType.MMUFAULT, regs={"arch": "arm", "pc": 0x1234ABCD})
        recovered(log)
        assert r.rproc.crash_regs is None  # used once
        store = r.host.coredump_store
        (n,) = store.list()
        data = store.read(n, 0, 1 << 20)
        assert (0x1234ABCD).to_bytes(4, "little") in data
        assert b"CORE\0" in data  # the NT_PRSTATUS note's owner name
    finally:
        r.close()


def test_host_close_releases_a_recovery_blocked_on_an_inline_dump() -> None:
    r, _ = booted()
    coredump.set_elf_info(r.rproc, coredump.ELFCLASS32, 40)
    heap = r.rproc.find_carveout_by_name("heap")
    assert heap is not None
    coredump.add_segment(r.rproc, heap.da, 0x40)
    r.rproc.set_coredump("inline")
    r.sim.crash()
    # the recovery now waits for a reader
    wait_until(r.host.coredump_store.list, 5, "the inline dump")
    assert r.rproc.state is State.OFFLINE  # stopped, not restarted: blocked in the dump
    t0 = time.monotonic()
    r.close()  # nobody reads the dump: close must not wait for the 5 minute timeout
    assert time.monotonic() - t0 < 5
    assert r.rproc.state is State.DELETED


def test_platform_bug_during_recovery_does_not_stick() -> None:
    r, log = booted()
    try:

        def broken_start(rp: object) -> None:
            raise ZeroDivisionError("platform bug")

        r.rproc.ops.start = broken_start
        r.sim.crash()
        ev = log.wait(lambda e: e.kind in (EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED))
        assert ev.kind is EventKind.RECOVERY_FAILED
        assert isinstance(ev.error, RprocError) and ev.error.errno == errno.EIO
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
    finally:
        r.close()


def _attached_aor() -> tuple[Rig, EventLog]:
    r = rig(IMG, state=State.DETACHED, preload=IMG, features=[Feature.ATTACH_ON_RECOVERY])
    r.rproc.add_subdev(RecordingSubdev(r.sim, "A"))
    r.rproc.boot()
    r.sim.take_calls()
    log = EventLog()
    r.rproc.subscribe(log)
    return r, log


def test_attach_recovery_detach_failure_stays_crashed() -> None:
    r, log = _attached_aor()
    try:
        r.sim.fail_at("detach", errno.EIO)
        r.sim.crash()
        recovered(log)
        assert (r.rproc.state, r.rproc.power) == (State.CRASHED, 1)
        r.rproc.shutdown()  # still possible: stop it for good
        assert r.rproc.state is State.OFFLINE
        assert_clean(r)
    finally:
        r.close()


@pytest.mark.parametrize("step", ["get_loaded_rsc_table", "A.prepare", "attach", "A.start"])
def test_attach_recovery_failure_after_detach_leaves_detached_power_zero(step: str) -> None:
    r, log = _attached_aor()
    try:
        r.sim.fail_at(step, errno.EIO)
        r.sim.crash()
        ev = log.wait(lambda e: e.kind in (EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED))
        assert ev.kind is EventKind.RECOVERY_FAILED
        assert (r.rproc.state, r.rproc.power) == (State.DETACHED, 0)
        assert_clean(r)
        r.rproc.boot()  # attaches again
        assert r.rproc.state is State.ATTACHED
    finally:
        r.close()


def test_coredump_failure_does_not_stop_recovery() -> None:
    r, log = booted()
    try:

        def bad_dump(rp: object) -> None:
            raise RprocError(errno.ENOMEM, "no memory for the dump")

        r.rproc.ops.coredump = bad_dump
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.RUNNING
        ev = log.wait(lambda e: e.kind is EventKind.COREDUMP)
        assert ev.detail is not None and ev.detail.startswith("failed")
    finally:
        r.close()


def test_attach_on_recovery_after_a_firmware_boot_reloads() -> None:
    r = rig(IMG, state=State.DETACHED, preload=IMG, features=[Feature.ATTACH_ON_RECOVERY])
    try:
        r.rproc.boot()
        r.rproc.shutdown()  # the preloaded image is gone for us: next start loads a file
        r.rproc.boot()
        r.sim.take_calls()
        log = EventLog()
        r.rproc.subscribe(log)
        r.sim.crash()
        recovered(log)
        assert r.rproc.state is State.RUNNING
        calls = r.sim.take_calls()
        assert "load" in calls and "detach" not in calls
    finally:
        r.close()


def test_host_close_racing_a_recovery_that_is_about_to_dump() -> None:
    r, log = booted()
    coredump.set_elf_info(r.rproc, coredump.ELFCLASS32, 40)
    heap = r.rproc.find_carveout_by_name("heap")
    assert heap is not None
    coredump.add_segment(r.rproc, heap.da, 0x40)
    r.rproc.set_coredump("inline")
    r.sim.crash()
    log.wait(lambda e: e.kind is EventKind.RECOVERY_START)
    t0 = time.monotonic()
    r.close()
    assert time.monotonic() - t0 < 5
    assert r.rproc.state is State.DELETED


def test_standalone_close_releases_an_inline_dump() -> None:
    from remoteproc.core.host import Host
    from remoteproc.platforms.sim import SimPlatform

    sim = SimPlatform("solo")
    rp = sim.make_rproc("solo", auto_boot=False)
    with Host([], panic_hook=False) as h:
        h.add_firmware("fw", IMG)
        fw = h.request_firmware("fw")
    rp.request_firmware = lambda name=None: fw  # type: ignore[method-assign]
    rp.boot()
    coredump.set_elf_info(rp, coredump.ELFCLASS32, 40)
    heap = rp.find_carveout_by_name("heap")
    assert heap is not None
    coredump.add_segment(rp, heap.da, 0x40)
    rp.set_coredump("inline")
    rp.report_crash()
    wait_until(rp.coredump_store.list, 5, "the inline dump")
    t0 = time.monotonic()
    rp.close()
    assert time.monotonic() - t0 < 5
    assert rp.state is State.DELETED
    sim.close()
