"""A hostile or buggy peer writes anything into shared memory: each case is refused with a logged
error naming the vring and the index, nothing outside the shared region is touched, no exception
reaches the thread that delivered the interrupt, and (unless the ring itself is lost) the bus
keeps working afterwards."""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpmsg_pair import RpmsgPair

from remoteproc.errors import RprocError
from remoteproc.rpmsg.endpoint import Endpoint
from remoteproc.rpmsg.remote import echo
from remoteproc.rpmsg.wire import RPMSG_NS_ADDR, RPMSG_NS_DESTROY, encode_ns_msg
from remoteproc.virtio.vring import VRING_DESC_F_NEXT, DeviceQueue


@pytest.fixture
def pair() -> Iterator[RpmsgPair]:
    p = RpmsgPair(remote_setup=lambda r: r.create_ept("rpmsg-echo", echo))
    yield p
    assert p.shm.guards_intact()
    p.close()


def _host(pair: RpmsgPair) -> Endpoint:
    assert pair.bus is not None
    return pair.bus.create_ept(None, dst=pair.channel("rpmsg-echo").dst)


def _dq(pair: RpmsgPair, i: int) -> DeviceQueue:
    q = pair.remote._tx if i == 0 else pair.remote._rx
    assert q is not None
    return q


def _raw_push(pair: RpmsgPair, vring: int, head: int, length: int) -> None:
    """Write a used element exactly as given, as the remote's ring code would if it were wrong,
    keeping the remote's own index in step so the rest of the test can go on."""
    dq = _dq(pair, vring)
    lay = pair.layout()
    ring = pair.ring(vring)
    slot = dq._used_idx % pair.num
    struct.pack_into("<II", ring, lay.used_ring + 8 * slot, head, length)
    dq._used_idx = (dq._used_idx + 1) & 0xFFFF
    struct.pack_into("<H", ring, lay.used_idx, dq._used_idx)


def _take_rx_buffer(pair: RpmsgPair) -> tuple[int, memoryview]:
    """The remote pops one host RX buffer to fill it by hand."""
    got = _dq(pair, 0).pop_avail()
    assert got is not None
    head, parts = got
    return head, parts[0][0]


def _still_echoes(pair: RpmsgPair) -> None:
    host = _host(pair)
    host.send(b"still alive")
    assert host.recv(0) == b"still alive"
    host.destroy()


def test_used_id_out_of_range(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    assert pair.bus is not None
    used = _dq(pair, 0)._used_idx
    _raw_push(pair, 0, 999, 16)
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
    assert f"used element {used} vring 0: id 999 out of range" in caplog.text
    assert pair.bus.rvq.errors == 1
    _still_echoes(pair)


def test_used_id_not_outstanding(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    assert pair.bus is not None
    head, view = _take_rx_buffer(pair)
    struct.pack_into("<IIIHH", view, 0, 1024, 1024, 0, 0, 0)
    _raw_push(pair, 0, head, 16)
    _raw_push(pair, 0, head, 16)  # the same buffer twice
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
    assert f"vring 0: id {head} is not a head" in caplog.text
    assert pair.bus.rvq.num_free == 0  # nothing double-freed: all 256 buffers posted again
    _still_echoes(pair)


def test_used_len_beyond_buffer(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    assert pair.bus is not None
    head, _view = _take_rx_buffer(pair)
    used = _dq(pair, 0)._used_idx
    _raw_push(pair, 0, head, 513)
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
    assert f"used element {used} vring 0: id {head}: used len 513 exceeds buffer length 512" in (
        caplog.text
    )
    assert pair.bus.rvq.num_free == 0  # the refused buffer was posted again
    assert pair.bus.rvq.dropped == []
    _still_echoes(pair)


def test_used_len_shorter_than_header(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    head, _view = _take_rx_buffer(pair)
    _raw_push(pair, 0, head, 5)
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
    assert f"rx buffer {head} vring 0: inbound msg too short (5)" in caplog.text
    _still_echoes(pair)


def test_header_len_beyond_used_len(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    head, view = _take_rx_buffer(pair)
    host = _host(pair)
    struct.pack_into("<IIIHH", view, 0, 1024, host.addr, 0, 400, 0)  # claims 400 bytes
    _raw_push(pair, 0, head, 16 + 10)  # but only 10 were written
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
    assert f"rx buffer {head} vring 0: inbound msg too big" in caplog.text
    assert host.pending() == 0
    _still_echoes(pair)


def test_used_idx_jump(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    assert pair.bus is not None
    lay = pair.layout()
    struct.pack_into("<H", pair.ring(0), lay.used_idx, 40000)
    with caplog.at_level(logging.ERROR):
        pair.interrupt_host(0)
        pair.interrupt_host(0)  # a broken ring stays quiet
    assert "used idx 40000 vring 0: used index 40000 jumps" in caplog.text
    assert caplog.text.count("used idx 40000 vring 0: used index 40000 jumps") == 1
    assert caplog.text.count("is dead") == 1
    assert pair.bus.rvq.broken
    # the device is visibly dead: the next send fails with the reason (issue 13)
    with pytest.raises(RprocError) as info:
        _host(pair).send(b"one way")
    assert info.value.errno == errno.EIO and "vring 0 was broken" in info.value.message


@pytest.mark.parametrize("length", [0, 39, 41, 100])
def test_ns_message_of_the_wrong_length(
    pair: RpmsgPair, caplog: pytest.LogCaptureFixture, length: int
) -> None:
    assert pair.bus is not None
    before = len(pair.bus.channels())
    rept = pair.remote.endpoints()[0]
    with caplog.at_level(logging.ERROR):
        rept.sendto(b"n" * length, RPMSG_NS_ADDR)
    assert f"vring 0: malformed ns msg ({length})" in caplog.text
    assert "rx buffer" in caplog.text
    assert len(pair.bus.channels()) == before
    _still_echoes(pair)


@pytest.mark.parametrize(("name", "addr"), [("rpmsg_ns", 53), ("rpmsg_ctrl", 0)])
def test_ns_destroy_cannot_remove_bus_devices(
    pair: RpmsgPair, caplog: pytest.LogCaptureFixture, name: str, addr: int
) -> None:
    assert pair.bus is not None
    rept = pair.remote.endpoints()[0]
    with caplog.at_level(logging.ERROR):
        rept.sendto(encode_ns_msg(name, addr, RPMSG_NS_DESTROY, "<"), RPMSG_NS_ADDR)
    assert "rpmsg_destroy_channel failed" in caplog.text
    assert pair.bus.find_channel(name) is not None
    assert pair.bus.get_ept(53) is not None
    _still_echoes(pair)


def test_message_to_nobody(pair: RpmsgPair, caplog: pytest.LogCaptureFixture) -> None:
    rept = pair.remote.endpoints()[0]
    with caplog.at_level(logging.WARNING):
        rept.sendto(b"?", 4242)
    assert "msg received with no recipient (src 0x400, dst 0x1092)" in caplog.text
    _still_echoes(pair)


def test_remote_scribbling_descriptors_is_ignored(pair: RpmsgPair) -> None:
    """The host never reads descriptor addresses back: it uses its own record of each buffer."""
    host = _host(pair)
    rept = pair.remote.endpoints()[0]
    head, view = _take_rx_buffer(pair)
    struct.pack_into("<IIIHH", view, 0, rept.addr, host.addr, 0, 3, 0)
    view[16:19] = b"abc"
    ring = pair.ring(0)
    for i in range(pair.num):  # every descriptor: far outside, huge, looping
        struct.pack_into("<QIHH", ring, 16 * i, 1 << 40, 0xFFFF_FFFF, VRING_DESC_F_NEXT, i)
    _raw_push(pair, 0, head, 19)
    pair.interrupt_host(0)
    assert host.recv(0) == b"abc"  # read from the host's own buffer for that descriptor
    assert pair.shm.refused == []  # the host dereferenced nothing the remote wrote
    # and the descriptor it posted again is its own, not the scribble
    assert struct.unpack_from("<QI", ring, 16 * head)[1] == 512


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        ((1 << 40, 16, 0, 0), "addr 0x10000000000 len 16 outside shared memory"),
        ((0, 0xFFFF_FFFF, 0, 0), "len 4294967295 outside shared memory"),
        ((0, 16, VRING_DESC_F_NEXT, None), "loops"),
        ((0, 16, VRING_DESC_F_NEXT, 4096), "next 4096 out of range"),
    ],
)
def test_remote_refuses_bad_host_descriptors(
    pair: RpmsgPair,
    caplog: pytest.LogCaptureFixture,
    desc: tuple[int, int, int, int | None],
    message: str,
) -> None:
    """The remote role faces the same hostile memory from the other side (vring 1)."""
    host = _host(pair)
    host.send(b"fine")
    assert host.recv(0) == b"fine"
    lay = pair.layout()
    ring = pair.ring(1)
    # while the remote is busy, the host posts a buffer; its descriptor is then corrupted
    addr, length, flags, nxt = desc
    pair.pause_remote()
    host.send(b"poisoned")
    avail = struct.unpack_from("<H", ring, lay.avail_idx)[0]
    head = struct.unpack_from("<H", ring, lay.avail_ring + 2 * ((avail - 1) % pair.num))[0]
    struct.pack_into("<QIHH", ring, 16 * head, addr, length, flags, head if nxt is None else nxt)
    with caplog.at_level(logging.ERROR):
        pair.resume_remote()
    assert f"descriptor {head} vring 1: " in caplog.text
    assert message in caplog.text
    assert _dq(pair, 1).errors == 1
    # the refused buffer went back to the host (used, length 0) and traffic goes on
    host.send(b"after")
    assert host.recv(0) == b"after"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    used=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=8),
    idx=st.integers(0, 0xFFFF),
    payload=st.binary(min_size=512, max_size=512),
)
def test_fuzzed_used_ring_and_buffers(
    used: list[tuple[int, int]], idx: int, payload: bytes
) -> None:
    with RpmsgPair(num=16, align=16) as pair:
        assert pair.bus is not None
        lay = pair.layout()
        ring = pair.ring(0)
        # whatever the remote leaves in the buffers and the used ring
        pool = pair.bus._rbufs
        for off in range(0, len(pool), 512):
            pool[off : off + 512] = payload
        for slot, (head, length) in enumerate(used):
            struct.pack_into("<II", ring, lay.used_ring + 8 * slot, head, length)
        struct.pack_into("<H", ring, lay.used_idx, idx)
        pair.remote.close()  # the remote must not repair anything
        pair.interrupt_host(0)
        pair.interrupt_host(1)
        assert pair.shm.guards_intact()
        assert pair.bus.rvq.num_free <= pair.num
