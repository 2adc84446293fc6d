"""The split virtqueue over a bytearray: layout, both roles, notification rules, hostile peers."""

from __future__ import annotations

import errno
import logging
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remoteproc.errors import RprocError
from remoteproc.virtio.vring import (
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY,
    DeviceQueue,
    DriverQueue,
    VringLayout,
    vring_need_event,
    vring_size,
)

GUARD = 256
RING_PA = 0x1000
BUF_PA = 0x4000
SHM = 0x8000  # shared region: [0, SHM) in "physical" addresses


class Shm:
    """One shared region with guard bytes either side; pa == offset inside the region."""

    def __init__(self, size: int = SHM) -> None:
        self.raw = bytearray(b"\xa5" * (GUARD + size + GUARD))
        self.view = memoryview(self.raw)[GUARD : GUARD + size]
        self.view[:] = bytes(size)
        self.size = size
        self.reads: list[tuple[int, int]] = []

    def pa_to_va(self, pa: int, length: int) -> memoryview | None:
        self.reads.append((pa, length))
        if pa < 0 or length < 0 or pa + length > self.size:
            return None
        return self.view[pa : pa + length]

    def guards_intact(self) -> bool:
        return self.raw[:GUARD] == b"\xa5" * GUARD and self.raw[-GUARD:] == b"\xa5" * GUARD


class Pair:
    def __init__(self, num: int = 8, align: int = 64, bo: str = "<", event_idx: bool = False):
        self.shm = Shm()
        self.num = num
        self.lay = VringLayout(num, align)
        ring = self.shm.view[RING_PA : RING_PA + vring_size(num, align)]
        self.kicks = 0
        self.irqs = 0
        self.cb_calls = 0
        self.drv = DriverQueue(
            ring,
            num,
            align,
            index=1,
            name="output",
            byteorder=bo,
            notify=self._kick,
            callback=self._cb,
            pa_to_va=self.shm.pa_to_va,
            use_event_idx=event_idx,
        )
        self.dev = DeviceQueue(
            ring,
            num,
            align,
            index=1,
            name="remote-rx",
            byteorder=bo,
            pa_to_va=self.shm.pa_to_va,
            notify=self._irq,
            use_event_idx=event_idx,
        )
        self.ring = ring
        self.bo = bo

    def _kick(self) -> None:
        self.kicks += 1

    def _irq(self) -> None:
        self.irqs += 1

    def _cb(self, q: DriverQueue) -> None:
        self.cb_calls += 1

    # raw pokes, as a hostile peer would do them
    def poke16(self, off: int, value: int) -> None:
        struct.pack_into(self.bo + "H", self.ring, off, value)

    def poke_used(self, slot: int, head: int, length: int) -> None:
        struct.pack_into(self.bo + "II", self.ring, self.lay.used_ring + 8 * slot, head, length)

    def poke_desc(self, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        struct.pack_into(self.bo + "QIHH", self.ring, 16 * i, addr, length, flags, nxt)


def test_vring_size_examples() -> None:
    assert vring_size(256, 4096) == 10246
    assert vring_size(16, 4096) == 4230
    lay = VringLayout(256, 4096)
    assert (lay.avail, lay.used, lay.size) == (4096, 8192, 10246)


@pytest.mark.parametrize("num", [0, 3, 100, 65536])
def test_num_must_be_power_of_two(num: int) -> None:
    with pytest.raises(RprocError) as ei:
        DriverQueue(
            memoryview(bytearray(1 << 20)),
            num,
            16,
            index=0,
            name="input",
            byteorder="<",
            notify=lambda: None,
            callback=None,
            pa_to_va=lambda pa, n: None,
        )
    assert ei.value.errno == errno.ENOMEM
    assert "Bad virtqueue length" in ei.value.message


def test_memory_too_small_refused() -> None:
    with pytest.raises(RprocError) as ei:
        DeviceQueue(
            memoryview(bytearray(100)),
            16,
            16,
            index=0,
            name="x",
            byteorder="<",
            pa_to_va=lambda pa, n: None,
            notify=lambda: None,
        )
    assert ei.value.errno == errno.ENOMEM


@pytest.mark.parametrize("bo", ["<", ">"])
def test_roundtrip_layout_bytes(bo: str) -> None:
    p = Pair(bo=bo)
    p.drv.add_inbuf(BUF_PA, 512, "rx0")
    # the descriptor and the avail ring are where §9.1 says, in the ring's byte order
    assert struct.unpack_from(bo + "QIHH", p.ring, 0) == (BUF_PA, 512, VRING_DESC_F_WRITE, 0)
    assert struct.unpack_from(bo + "HHH", p.ring, p.lay.avail) == (0, 1, 0)
    assert p.drv.kick() is True and p.kicks == 1
    popped = p.dev.pop_avail()
    assert popped is not None
    head, parts = popped
    assert head == 0 and len(parts) == 1
    view, writable = parts[0]
    assert writable and len(view) == 512
    view[:5] = b"hello"
    p.dev.push_used(head, 5)
    assert struct.unpack_from(bo + "HHII", p.ring, p.lay.used) == (0, 1, 0, 5)
    assert p.dev.notify() is True and p.irqs == 1
    assert p.drv.interrupt() is True and p.cb_calls == 1
    assert p.drv.get_buf() == ("rx0", 5)
    assert bytes(p.shm.view[BUF_PA : BUF_PA + 5]) == b"hello"
    assert p.drv.get_buf() is None
    assert p.drv.interrupt() is False  # IRQ_NONE: nothing new
    assert p.drv.num_free == 8


def test_chains_readable_then_writable() -> None:
    p = Pair()
    p.drv.add_sgs([(BUF_PA, 16), (BUF_PA + 16, 4)], [(BUF_PA + 100, 64)], token=7)
    assert p.drv.num_free == 5
    popped = p.dev.pop_avail()
    assert popped is not None
    head, parts = popped
    assert [(len(v), w) for v, w in parts] == [(16, False), (4, False), (64, True)]
    p.dev.push_used(head, 64)
    assert p.drv.get_buf() == (7, 64)
    assert p.drv.num_free == 8


def test_full_ring_and_enospc() -> None:
    p = Pair(num=4)
    for i in range(4):
        p.drv.add_outbuf(BUF_PA + 32 * i, 32, i)
    with pytest.raises(RprocError) as ei:
        p.drv.add_outbuf(BUF_PA, 32, 99)
    assert ei.value.errno == errno.ENOSPC
    assert p.drv.num_free == 0


def test_index_wraparound_many_cycles() -> None:
    p = Pair(num=4)
    for n in range(70_000):  # past 2**16 on every index
        p.drv.add_outbuf(BUF_PA + 16 * (n % 4), 16, n)
        popped = p.dev.pop_avail()
        assert popped is not None
        p.dev.push_used(popped[0], 0)
        assert p.drv.get_buf() == (n, 0)
    assert p.drv.errors == 0 and p.dev.errors == 0


def test_no_notify_and_no_interrupt_flags() -> None:
    p = Pair()
    p.dev.disable_notify()
    assert struct.unpack_from("<H", p.ring, p.lay.used_flags)[0] == VRING_USED_F_NO_NOTIFY
    p.drv.add_outbuf(BUF_PA, 16, "a")
    assert p.drv.kick() is False and p.kicks == 0
    assert p.dev.enable_notify() is False  # something arrived while disabled: pop again
    p.drv.disable_cb()
    assert struct.unpack_from("<H", p.ring, p.lay.avail_flags)[0] == VRING_AVAIL_F_NO_INTERRUPT
    popped = p.dev.pop_avail()
    assert popped is not None
    p.dev.push_used(popped[0], 0)
    assert p.dev.notify() is False and p.irqs == 0
    assert p.drv.enable_cb() is False  # a used buffer is pending
    assert p.drv.get_buf() == ("a", 0)
    assert p.drv.enable_cb() is True


def test_event_idx_suppression() -> None:
    p = Pair(event_idx=True)
    # device asks to be kicked when entry 0 is added (avail_event = 0)
    for i in range(3):
        p.drv.add_outbuf(BUF_PA + 16 * i, 16, i)
    assert p.drv.kick() is True  # avail_event 0 is in [0, 3)
    p.drv.add_outbuf(BUF_PA + 64, 16, 3)
    assert p.drv.kick() is False  # device has not caught up: avail_event still 0
    heads = []
    while (got := p.dev.pop_avail()) is not None:
        heads.append(got[0])
    assert len(heads) == 4
    assert struct.unpack_from("<H", p.ring, p.lay.avail_event)[0] == 4
    p.drv.add_outbuf(BUF_PA + 80, 16, 4)
    assert p.drv.kick() is True
    # driver wants an interrupt at used_event 0: first batch interrupts, later ones only past it
    p.dev.push_used(heads[0], 0)
    assert p.dev.notify() is True
    p.dev.push_used(heads[1], 0)
    assert p.dev.notify() is False  # driver has not consumed anything yet
    assert p.drv.get_buf() == (0, 0)
    assert p.drv.get_buf() == (1, 0)
    assert struct.unpack_from("<H", p.ring, p.lay.used_event)[0] == 2
    p.dev.push_used(heads[2], 0)
    assert p.dev.notify() is True


def test_need_event_rule() -> None:
    assert vring_need_event(0, 1, 0)
    assert not vring_need_event(1, 1, 0)
    assert vring_need_event(0xFFFF, 1, 0xFFFE)  # across the wrap


# ---- hostile device (the remote writes the used ring) -----------------------------------------


def _posted(p: Pair, n: int = 3) -> None:
    for i in range(n):
        p.drv.add_inbuf(BUF_PA + 512 * i, 512, f"rx{i}")


def test_used_id_out_of_range(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    _posted(p)
    p.poke_used(0, 1000, 4)
    p.poke_used(1, 1, 4)
    p.poke16(p.lay.used_idx, 2)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.drv.get_buf() == ("rx1", 4)  # the bad element is dropped, the next one is fine
    assert p.drv.errors == 1
    assert "used element 0 vring 1: id 1000 out of range" in caplog.text
    assert p.shm.guards_intact()


def test_used_id_not_outstanding_or_duplicated(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    _posted(p, 3)
    p.poke_used(0, 0, 1)
    p.poke_used(1, 0, 1)  # same head twice
    p.poke_used(2, 5, 1)  # a descriptor that is free
    p.poke16(p.lay.used_idx, 3)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.drv.get_buf() == ("rx0", 1)
        assert p.drv.get_buf() is None
    assert p.drv.errors == 2
    assert "used element 1 vring 1: id 0 is not a head" in caplog.text
    assert "used element 2 vring 1: id 5 is not a head" in caplog.text
    assert p.drv.num_free == 6  # rx1, rx2 still outstanding, nothing double-freed


def test_used_len_beyond_buffer(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    _posted(p, 1)
    p.poke_used(0, 0, 513)
    p.poke16(p.lay.used_idx, 1)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.drv.get_buf() is None
    assert "used element 0 vring 1: id 0: used len 513 exceeds buffer length 512" in caplog.text
    assert p.drv.dropped == ["rx0"]  # the owner can take the buffer back
    assert p.drv.num_free == 8


def test_used_idx_jump_breaks_queue(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    _posted(p, 2)
    p.poke16(p.lay.used_idx, 40)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.drv.interrupt() is True
        assert p.drv.get_buf() is None
    assert p.drv.broken
    assert "used idx 40 vring 1: used index 40 jumps" in caplog.text
    assert p.drv.get_buf() is None  # stays quiet
    with pytest.raises(RprocError) as ei:
        p.drv.add_inbuf(BUF_PA, 16, "x")
    assert ei.value.errno == errno.EIO


def test_device_scribbling_descriptors_cannot_redirect_driver() -> None:
    """The driver keeps its own record of each chain; the table is never read back."""
    p = Pair()
    p.drv.add_sgs([], [(BUF_PA, 64), (BUF_PA + 64, 64)], "chain")
    p.poke_desc(0, 0xDEAD_0000, 0xFFFF_FFFF, VRING_DESC_F_NEXT, 0)  # loop + bad addr
    p.poke_desc(1, 0xDEAD_0000, 0xFFFF_FFFF, VRING_DESC_F_NEXT, 1)
    p.poke_used(0, 0, 128)
    p.poke16(p.lay.used_idx, 1)
    assert p.drv.get_buf() == ("chain", 128)
    assert p.drv.num_free == 8
    assert p.shm.reads == []  # the driver never dereferenced an address


# ---- hostile driver (for the device role) -----------------------------------------------------


def _offer(p: Pair, head: int) -> None:
    idx = struct.unpack_from("<H", p.ring, p.lay.avail_idx)[0]
    p.poke16(p.lay.avail_ring + 2 * (idx % p.num), head)
    p.poke16(p.lay.avail_idx, idx + 1)


@pytest.mark.parametrize(
    ("descs", "message"),
    [
        ([(0, BUF_PA, 16, VRING_DESC_F_NEXT, 1), (1, BUF_PA, 16, VRING_DESC_F_NEXT, 0)], "loops"),
        ([(0, BUF_PA, 16, VRING_DESC_F_NEXT, 0)], "loops"),
        ([(0, BUF_PA, 16, VRING_DESC_F_NEXT, 9)], "descriptor 0 vring 1: next 9 out of range"),
        ([(0, SHM - 8, 16, 0, 0)], "descriptor 0 vring 1: addr 0x7ff8 len 16 outside shared"),
        ([(0, 1 << 40, 16, 0, 0)], "outside shared memory"),
        ([(0, BUF_PA, 0xFFFF_FFFF, 0, 0)], "outside shared memory"),
        ([(0, BUF_PA, 16, VRING_DESC_F_INDIRECT, 0)], "indirect descriptor not negotiated"),
        (
            [(0, BUF_PA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1), (1, BUF_PA, 16, 0, 0)],
            "readable descriptor after a writable one",
        ),
    ],
)
def test_device_refuses_bad_chains(
    descs: list[tuple[int, int, int, int, int]], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pair()
    for i, addr, length, flags, nxt in descs:
        p.poke_desc(i, addr, length, flags, nxt)
    _offer(p, 0)
    p.poke_desc(5, BUF_PA + 1024, 32, 0, 0)
    _offer(p, 5)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        got = p.dev.pop_avail()
    assert got is not None and got[0] == 5  # the good chain behind the bad one still flows
    assert message in caplog.text
    assert p.dev.errors == 1
    # the bad chain went straight back to the driver, used with length 0
    assert struct.unpack_from("<HHII", p.ring, p.lay.used) == (0, 1, 0, 0)
    assert p.shm.guards_intact()


def test_device_refuses_head_out_of_range(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    _offer(p, 8)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.dev.pop_avail() is None
    assert "avail entry 0 vring 1: head 8 out of range" in caplog.text


def test_device_avail_idx_jump(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()
    p.poke16(p.lay.avail_idx, 9)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.dev.pop_avail() is None
    assert p.dev.broken
    assert "avail idx 9 vring 1: avail index 9 jumps" in caplog.text


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=vring_size(8, 64), max_size=vring_size(8, 64)))
def test_random_ring_contents_never_raise_or_escape(garbage: bytes) -> None:
    """Whatever a peer writes into the ring, both roles stay inside the shared region."""
    p = Pair()
    _posted(p, 4)
    p.ring[:] = garbage
    for _ in range(20):
        got = p.dev.pop_avail()
        if got is None:
            break
        for view, _w in got[1]:
            assert len(view) <= SHM
        p.dev.push_used(got[0], 0)
    for _ in range(20):
        if p.drv.get_buf() is None:
            break
    p.drv.interrupt()
    assert p.shm.guards_intact()


def test_device_does_not_interrupt_for_nothing() -> None:
    p = Pair()
    assert p.dev.notify() is False  # nothing used yet
    p.drv.add_outbuf(BUF_PA, 16, "a")
    got = p.dev.pop_avail()
    assert got is not None
    p.dev.push_used(got[0], 0)
    assert p.dev.notify() is True
    assert p.dev.notify() is False  # already signalled
    assert p.irqs == 1


def test_callback_exception_does_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair()

    def boom(q: DriverQueue) -> None:
        raise RuntimeError("driver bug")

    p.drv.callback = boom
    p.drv.add_outbuf(BUF_PA, 16, "a")
    got = p.dev.pop_avail()
    assert got is not None
    p.dev.push_used(got[0], 0)
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        assert p.drv.interrupt() is True
    assert "vring 1 callback failed" in caplog.text


def test_device_notices_a_ring_recreated_under_it() -> None:
    p = Pair()
    p.drv.add_outbuf(BUF_PA, 16, "a")
    got = p.dev.pop_avail()
    assert got is not None
    p.dev.push_used(got[0], 0)
    assert p.dev.in_sync()
    p.ring[:] = bytes(len(p.ring))  # the driver zeroes the ring in find_vqs
    assert not p.dev.in_sync()
    fresh = DeviceQueue(
        p.ring,
        8,
        64,
        index=1,
        name="again",
        byteorder="<",
        pa_to_va=p.shm.pa_to_va,
        notify=lambda: None,
    )
    fresh.resume_from_ring()
    assert fresh.in_sync() and not fresh.has_avail()


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["add", "add2", "pop", "push", "get", "irq"]), max_size=300),
    event_idx=st.booleans(),
)
def test_model_random_interleavings(ops: list[str], event_idx: bool) -> None:
    """Any interleaving of both roles keeps FIFO order, returns every token exactly once and
    accounts for every descriptor; no error is ever logged for well-behaved peers."""
    p = Pair(num=8, event_idx=event_idx)
    next_token = 0
    posted: list[int] = []  # tokens in avail order
    popped: list[tuple[int, int]] = []  # (head, token) popped, not yet pushed
    used_order: list[int] = []
    returned: list[int] = []
    ndesc: dict[int, int] = {}
    for op in ops:
        if op in ("add", "add2") and p.drv.num_free >= (2 if op == "add2" else 1):
            if op == "add":
                p.drv.add_outbuf(BUF_PA + 16 * (next_token % 64), 16, next_token)
            else:
                p.drv.add_sgs([(BUF_PA, 8)], [(BUF_PA + 8, 8)], next_token)
            posted.append(next_token)
            ndesc[next_token] = 1 if op == "add" else 2
            next_token += 1
            p.drv.kick()
        elif op == "pop":
            got = p.dev.pop_avail()
            if got is not None:
                token = posted.pop(0)
                popped.append((got[0], token))
        elif op == "push" and popped:
            head, token = popped.pop(0)
            p.dev.push_used(head, 0)
            used_order.append(token)
            p.dev.notify()
        elif op == "get":
            got2 = p.drv.get_buf()
            if got2 is not None:
                returned.append(got2[0])
        elif op == "irq":
            p.drv.interrupt()
    while (got2 := p.drv.get_buf()) is not None:
        returned.append(got2[0])
    assert returned == used_order
    outstanding = posted + [token for _head, token in popped]
    assert 8 - p.drv.num_free == sum(ndesc[t] for t in outstanding)
    assert p.drv.errors == 0 and p.dev.errors == 0


@pytest.mark.parametrize("bo", ["<", ">"])
def test_get_bufs_batch_across_the_ring_end(bo: str, caplog: pytest.LogCaptureFixture) -> None:
    """get_bufs reads a batch of used elements at once (as words, in the machine's order, or
    element by element for a foreign-endian ring): a batch that wraps past the end of the
    ring comes back whole and in order, and an element with a lying length stops the batch
    where the one-at-a-time path takes over (logged, token dropped, later ones still
    returned)."""
    p = Pair(num=8, bo=bo)
    for n in range(6):  # move the indices to 6, so the next batch wraps
        p.drv.add_outbuf(BUF_PA + 16 * n, 16, ("warm", n))
        popped = p.dev.pop_avail()
        assert popped is not None
        p.dev.push_used(popped[0], 0)
    assert len(p.drv.get_bufs()) == 6
    for n in range(7):
        p.drv.add_inbuf(BUF_PA + 64 * n, 64, n)
    heads = []
    for _ in range(7):
        popped = p.dev.pop_avail()
        assert popped is not None
        heads.append(popped[0])
    for n, head in enumerate(heads):
        p.dev.push_used(head, 65 if n == 4 else n)  # element 4 claims more than its 64 bytes
    with caplog.at_level(logging.ERROR, "remoteproc.virtio"):
        got = p.drv.get_bufs()
    assert got == [(n, n) for n in range(7) if n != 4]
    assert "used len 65 exceeds buffer length 64" in caplog.text
    assert p.drv.dropped == [4]
    assert p.drv.num_free == 8 and not p.drv.more_used()
    # a limit cuts a batch without losing the rest
    for n in range(3):
        p.drv.add_inbuf(BUF_PA + 64 * n, 64, n)
        popped = p.dev.pop_avail()
        assert popped is not None
        p.dev.push_used(popped[0], 1)
    assert p.drv.get_bufs(2) == [(0, 1), (1, 1)]
    assert p.drv.get_bufs() == [(2, 1)]
