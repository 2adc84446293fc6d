"""Notification suppression on the split ring, both roles, without threads: the flags
(VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY) and the event indices, the drain /
re-enable / re-check loop that closes the lost-notification race (``virtqueue_enable_cb``),
one kick per burst, and the batched ring operations (``get_bufs``, ``add_inbufs``) being the
one-at-a-time ones in a loop, hostile elements included.

Each race is replayed deterministically: the peer's step is made between the two steps of the
side under test, exactly where another CPU could make it.
"""

from __future__ import annotations

import logging
import struct

import pytest
from test_vring import BUF_PA, Pair

from remoteproc.virtio.vring import VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY


def _flags(p: Pair, off: int) -> int:
    value: int = struct.unpack_from("<H", p.ring, off)[0]
    return value


def _used(p: Pair, n: int, start: int = 0) -> list[int]:
    """The device takes ``n`` buffers and returns them used."""
    heads = []
    for _ in range(n):
        got = p.dev.pop_avail()
        assert got is not None
        heads.append(got[0])
    for h in heads:
        p.dev.push_used(h, 4)
    return heads


@pytest.mark.parametrize("event_idx", [False, True])
def test_driver_drain_reenable_recheck_closes_the_race(event_idx: bool) -> None:
    """The driver drains with interrupts off; the device uses one more buffer after the
    driver's last look but before it re-enables: the device sees interrupts still off and does
    not interrupt, so enable_cb must report it (False) and the driver drains again."""
    p = Pair(event_idx=event_idx)
    for i in range(4):
        p.drv.add_inbuf(BUF_PA + 64 * i, 64, i)
    _used(p, 2)
    assert p.dev.notify() is True  # first interrupt: interrupts are on
    p.drv.disable_cb()
    if not event_idx:
        assert _flags(p, p.lay.avail_flags) & VRING_AVAIL_F_NO_INTERRUPT
    assert [t for t, _ in p.drv.get_bufs()] == [0, 1]
    # The device, between the driver's drain and its re-enable:
    _used(p, 1)
    assert p.dev.notify() is False  # suppressed: the driver said it is busy
    assert p.drv.enable_cb() is False  # ... so the re-check finds it
    assert [t for t, _ in p.drv.get_bufs()] == [2]
    assert p.drv.enable_cb() is True  # nothing left: safe to sleep
    if not event_idx:
        assert not _flags(p, p.lay.avail_flags) & VRING_AVAIL_F_NO_INTERRUPT
    # And now the device does interrupt for the next one.
    _used(p, 1)
    assert p.dev.notify() is True
    assert p.irqs == 2


@pytest.mark.parametrize("event_idx", [False, True])
def test_device_drain_reenable_recheck_closes_the_race(event_idx: bool) -> None:
    """The device drains with kicks off; the driver adds a buffer between the device's last
    pop and its re-enable and does not kick (it was told not to): enable_notify must report
    it and the device pops again."""
    p = Pair(event_idx=event_idx)
    p.drv.add_outbuf(BUF_PA, 16, "a")
    assert p.drv.kick() is True
    p.dev.disable_notify()
    if not event_idx:
        assert _flags(p, p.lay.used_flags) & VRING_USED_F_NO_NOTIFY
    assert p.dev.pop_avail() is not None
    assert p.dev.pop_avail() is None
    # The driver, between the device's last pop and its re-enable:
    p.drv.add_outbuf(BUF_PA + 16, 16, "b")
    assert p.drv.kick() is False  # the device asked not to be kicked
    assert p.dev.enable_notify() is False  # the re-check sees "b"
    assert p.dev.pop_avail() is not None
    assert p.dev.enable_notify() is True
    p.drv.add_outbuf(BUF_PA + 32, 16, "c")
    assert p.drv.kick() is True  # kicks are wanted again
    assert p.kicks == 2


@pytest.mark.parametrize("event_idx", [False, True])
def test_one_kick_per_burst(event_idx: bool) -> None:
    """A burst of adds followed by one kick decision notifies once; while the device is busy
    (suppressed), a burst notifies not at all."""
    p = Pair(num=16, event_idx=event_idx)
    for i in range(8):
        p.drv.add_outbuf(BUF_PA + 16 * i, 16, i)
    assert p.drv.kick() is True and p.kicks == 1
    p.dev.disable_notify()
    for _ in range(8):
        assert p.dev.pop_avail() is not None
    for i in range(8, 16):
        p.drv.add_outbuf(BUF_PA + 16 * i, 16, i)
    assert p.drv.kick() is False and p.kicks == 1


def test_event_idx_device_interrupts_only_past_used_event() -> None:
    """With event indices the driver asks for an interrupt at a given used index: after a
    re-enable it is the next one; while disabled, used_event is left behind, so a batch that
    does not cross it never interrupts."""
    p = Pair(num=16, event_idx=True)
    for i in range(8):
        p.drv.add_inbuf(BUF_PA + 64 * i, 64, i)
    p.drv.disable_cb()
    _used(p, 3)
    assert p.dev.notify() is True  # used_event 0 lies in [0, 3): the initial request
    assert len(p.drv.get_bufs()) == 3  # disabled: used_event stays at 0
    _used(p, 2)
    assert p.dev.notify() is False
    assert p.drv.enable_cb() is False  # two are pending
    assert len(p.drv.get_bufs()) == 2
    assert p.drv.enable_cb() is True
    assert struct.unpack_from("<H", p.ring, p.lay.used_event)[0] == 5
    _used(p, 1)
    assert p.dev.notify() is True


def test_get_bufs_equals_get_buf_in_a_loop_even_with_bad_elements(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch stops at a bad element, which the one-at-a-time path logs and accounts for,
    then carries on: same tokens, same order, same errors as get_buf in a loop."""
    results = []
    for batched in (False, True):
        p = Pair(num=8)
        for i in range(6):
            p.drv.add_inbuf(BUF_PA + 64 * i, 64, f"t{i}")
        heads = [p.dev.pop_avail() for _ in range(6)]
        # the device returns 0, 1, a lie (head 7, never posted), 3, an over-long 4, 5
        ring = [(heads[0][0], 4), (heads[1][0], 4), (7, 4), (heads[3][0], 4), (heads[4][0], 999),
                (heads[5][0], 4)]
        for slot, (head, length) in enumerate(ring):
            p.poke_used(slot, head, length)
        p.poke16(p.lay.used_idx, len(ring))
        with caplog.at_level(logging.ERROR, logger="remoteproc.virtio"):
            if batched:
                got = p.drv.get_bufs()
            else:
                got = []
                while (one := p.drv.get_buf()) is not None:
                    got.append(one)
        results.append((got, p.drv.errors, list(p.drv.dropped), p.drv.num_free))
    assert results[0] == results[1]
    got, errors, dropped, _free = results[1]
    assert [t for t, _ in got] == ["t0", "t1", "t3", "t5"]
    assert errors == 2 and dropped == ["t4"]


def test_get_bufs_limit_and_add_inbufs_publish_once() -> None:
    p = Pair(num=8)
    p.drv.add_inbufs([(BUF_PA + 64 * i, 64, i) for i in range(5)])
    assert struct.unpack_from("<H", p.ring, p.lay.avail_idx)[0] == 5
    assert p.drv.kick() is True and p.kicks == 1  # one decision for the whole batch
    _used(p, 5)
    assert [t for t, _ in p.drv.get_bufs(limit=2)] == [0, 1]
    assert [t for t, _ in p.drv.get_bufs()] == [2, 3, 4]
    assert p.drv.get_bufs() == []
    p.drv.add_inbufs([(BUF_PA + 64 * i, 64, i) for i in range(8)])
    assert p.drv.num_free == 0


@pytest.mark.parametrize("event_idx", [False, True])
def test_driver_delayed_interrupt_waits_for_a_batch(event_idx: bool) -> None:
    """``enable_cb_delayed(4)``: with event indices the device interrupts once, when the
    fourth buffer comes back, not for each; without them every return still interrupts (the
    flags cannot say "later"). ``num_used`` counts what is back and not yet taken."""
    p = Pair(event_idx=event_idx)
    for i in range(8):
        p.drv.add_outbuf(BUF_PA + 64 * i, 16, i)
    assert p.drv.in_flight == 8
    assert p.drv.enable_cb_delayed(4) is True  # nothing back yet: wait for the interrupt
    irqs = []
    for _ in range(4):
        _used(p, 1)
        irqs.append(p.dev.notify())
    assert irqs == ([False, False, False, True] if event_idx else [True] * 4)
    assert p.drv.num_used() == 4
    assert [t for t, _ in p.drv.get_bufs()] == [0, 1, 2, 3]
    assert p.drv.num_used() == 0 and p.drv.in_flight == 4


@pytest.mark.parametrize("event_idx", [False, True])
def test_driver_delayed_interrupt_rechecks_returns_made_before_it(event_idx: bool) -> None:
    """The device returns the whole batch before the driver re-arms (no interrupt asked for
    past the old event): ``enable_cb_delayed`` must report it (False), not leave the driver
    waiting for an interrupt that already went by."""
    p = Pair(event_idx=event_idx)
    for i in range(4):
        p.drv.add_outbuf(BUF_PA + 64 * i, 16, i)
    _used(p, 3)
    assert p.drv.enable_cb_delayed(3) is False
    assert p.drv.enable_cb_delayed(4) is True
    _used(p, 1)
    assert p.dev.notify() is True
    assert len(p.drv.get_bufs()) == 4
