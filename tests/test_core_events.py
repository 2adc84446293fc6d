"""Event subscriptions (seed 003): callbacks, blocking and asyncio iteration, host-wide
forwarding, robustness against failing subscribers."""

from __future__ import annotations

import asyncio
import threading

from test_core_support import EventLog, image, rig

from remoteproc.core.events import Event, EventBus, EventKind
from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.platforms.sim import SimPlatform


def ev(kind: EventKind = EventKind.STATE, state: str = "running") -> Event:
    return Event(kind, "remoteproc0", "m4", state)


def test_blocking_subscription_iterates_until_closed() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(ev(state="a"))
    bus.publish(ev(state="b"))
    got: list[str] = []

    def reader() -> None:
        for e in sub:
            got.append(e.state)

    t = threading.Thread(target=reader)
    t.start()
    bus.publish(ev(state="c"))
    sub.close()
    t.join(5)
    assert not t.is_alive()
    assert got == ["a", "b", "c"]
    bus.publish(ev(state="d"))  # closed subscriptions receive nothing
    assert sub.get(0) is None


def test_kind_filter_and_sequence_numbers() -> None:
    bus = EventBus()
    with bus.subscribe(kinds={EventKind.CRASH}) as sub:
        a, b = ev(EventKind.STATE), ev(EventKind.CRASH, "crashed")
        bus.publish(a)
        bus.publish(b)
        assert sub.drain() == [b]
        assert a.seq < b.seq


def test_failing_callback_does_not_break_others() -> None:
    bus = EventBus()
    seen: list[Event] = []

    def boom(e: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(boom)
    bus.subscribe(seen.append)
    bus.publish(ev())
    assert len(seen) == 1


def test_async_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(ev(state="early"))

    async def main() -> list[str]:
        out: list[str] = []
        loop = asyncio.get_running_loop()

        def producer() -> None:
            bus.publish(ev(state="late"))
            sub.close()

        loop.call_later(0.05, lambda: threading.Thread(target=producer).start())
        async for e in sub:
            out.append(e.state)
        return out

    assert asyncio.run(asyncio.wait_for(main(), 5)) == ["early", "late"]


def test_lifecycle_events_reach_rproc_and_host_subscribers() -> None:
    r = rig(image())
    try:
        host_log, rp_log = EventLog(), EventLog()
        r.host.subscribe(host_log)
        r.rproc.subscribe(rp_log)
        r.rproc.boot()
        r.rproc.shutdown()
        r.rproc.set_firmware("x.fw")
        expected = [("offline", "running"), ("running", "offline")]
        assert rp_log.states() == expected
        assert host_log.states() == expected
        fw = [e for e in rp_log.events if e.kind is EventKind.FIRMWARE]
        assert [e.detail for e in fw] == ["x.fw"]
        assert all(e.rproc == "remoteproc0" and e.name == "m4" for e in rp_log.events)
    finally:
        r.close()


def test_added_deleted_and_boot_failed_events() -> None:
    with Host([], panic_hook=False) as host:
        log = EventLog()
        host.subscribe(log)
        sim = SimPlatform("m4")
        rp = sim.make_rproc("m4", host=host)  # auto-boot, but no firmware: BOOT_FAILED
        failed = log.wait(lambda e: e.kind is EventKind.BOOT_FAILED)
        assert failed.error is not None and getattr(failed.error, "errno", None) == 2
        host.delete(rp)
        kinds = log.kinds()
        assert kinds[0] is EventKind.ADDED and EventKind.DELETED in kinds
        assert rp.state is State.DELETED


def test_subscribers_never_run_holding_the_lock_and_see_events_before_the_call_returns() -> None:
    r = rig(image())
    try:
        held: list[bool] = []
        seen: list[str] = []

        def on_event(e: Event) -> None:
            held.append(r.rproc._lock.owner == threading.get_ident())
            seen.append(e.state)

        r.rproc.subscribe(on_event)
        r.rproc.boot()
        assert seen == ["running"]  # delivered before boot() returned
        r.rproc.shutdown()
        assert seen == ["running", "offline"]
        assert held and not any(held)
    finally:
        r.close()


def test_events_flow_while_a_long_recovery_holds_the_lock() -> None:
    r = rig(image())
    try:
        r.rproc.boot()
        gate = threading.Event()
        r.rproc.ops.coredump = lambda rp: gate.wait(5)  # a recovery stuck in its coredump
        log = EventLog()
        r.rproc.subscribe(log)
        r.rproc.report_crash()
        # Delivered now, while the recovery still holds the lock.
        log.wait(lambda e: e.kind is EventKind.STATE and e.state == "offline")
        assert r.rproc._lock.owner is not None
        gate.set()
        log.wait(lambda e: e.kind is EventKind.RECOVERY_DONE)
    finally:
        r.close()
