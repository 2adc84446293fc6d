"""Hostile peers for both roles: each bad ring content is refused with a log line naming the
vring and index, reported (host: a ``vring-broken`` event for ring-level refusals, remote:
``on_ring_broken``), never livelocks, and the channel comes back after the device is reset
(re-probe, as after a restart or re-attach)."""

from __future__ import annotations

import logging
import struct
import threading
import time

import pytest
from rpmsg_pair import RpmsgPair

from remoteproc.errors import RprocError
from remoteproc.rpmsg.endpoint import Endpoint
from remoteproc.rpmsg.remote import echo
from remoteproc.virtio.vring import VRING_DESC_F_NEXT

pytestmark = pytest.mark.timeout(180)


def host_ept(pair: RpmsgPair) -> Endpoint:
    assert pair.bus is not None
    return pair.bus.create_ept(None, dst=pair.channel("rpmsg-echo").dst)


def echoes(pair: RpmsgPair, payload: bytes = b"alive") -> None:
    ept = host_ept(pair)
    try:
        ept.send(payload)
        assert ept.recv(30) == payload
    finally:
        ept.destroy()


def threaded_pair() -> RpmsgPair:
    return RpmsgPair(mode="thread", remote_setup=lambda r: r.create_ept("rpmsg-echo", echo))


# -- the remote role facing a hostile host ----------------------------------------------------


def test_host_jumping_its_avail_index_is_refused_once_without_livelock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken: list[RprocError] = []
    with threaded_pair() as pair:
        pair.remote.on_ring_broken = broken.append
        echoes(pair)
        attaches = pair.remote.attach_count
        lay = pair.layout()
        ring = pair.ring(1)
        with caplog.at_level(logging.WARNING):
            avail = struct.unpack_from("<H", ring, lay.avail_idx)[0]
            struct.pack_into("<H", ring, lay.avail_idx, (avail + 1000) & 0xFFFF)
            start = time.process_time()
            for _ in range(20):  # the host keeps kicking: each kick must stay cheap
                pair._host_kick(1)
            pair.settle(60)  # a livelock never settles
            cpu = time.process_time() - start
        assert pair.remote.attach_count == attaches, "the remote re-attached to the bad ring"
        assert caplog.text.count("jumps") == 1
        assert caplog.text.count("the channel is dead until the host resets") == 1
        assert len(broken) == 1 and broken[0].vring == 1
        assert cpu < 10
        # the host resets the device (a restart): the channel comes back
        pair.restart()
        echoes(pair, b"back")
        assert pair.remote.attach_count == attaches + 1


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        ((0x7FFF_0000, 16, 0, 0), "outside shared memory"),  # address outside shm
        ((0, 1 << 20, 0, 0), "outside shared memory"),  # length past the buffer / region
        ((0, 16, VRING_DESC_F_NEXT, None), "loops"),  # descriptor loop
        ((0, 16, VRING_DESC_F_NEXT, 4096), "next 4096 out of range"),  # index out of range
    ],
)
def test_remote_refuses_bad_descriptors_and_keeps_going(
    caplog: pytest.LogCaptureFixture, desc: tuple[int, int, int, int | None], message: str
) -> None:
    with threaded_pair() as pair:
        echoes(pair)
        lay = pair.layout()
        ring = pair.ring(1)
        ept = host_ept(pair)
        pair.pause_remote()
        ept.send(b"poisoned")
        avail = struct.unpack_from("<H", ring, lay.avail_idx)[0]
        head = struct.unpack_from("<H", ring, lay.avail_ring + 2 * ((avail - 1) % pair.num))[0]
        addr, length, flags, nxt = desc
        struct.pack_into(
            "<QIHH", ring, 16 * head, addr, length, flags, head if nxt is None else nxt
        )
        with caplog.at_level(logging.ERROR):
            pair.resume_remote()
            pair.settle(60)
        assert f"descriptor {head} vring 1: " in caplog.text
        assert message in caplog.text
        ept.destroy()
        echoes(pair, b"after")
        assert pair.shm.guards_intact()


def test_remote_refuses_rpmsg_header_longer_than_its_buffer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with threaded_pair() as pair:
        echoes(pair)
        lay = pair.layout()
        ring = pair.ring(1)
        ept = host_ept(pair)
        pair.pause_remote()
        ept.send(b"x" * 8)
        avail = struct.unpack_from("<H", ring, lay.avail_idx)[0]
        head = struct.unpack_from("<H", ring, lay.avail_ring + 2 * ((avail - 1) % pair.num))[0]
        addr, length, _flags, _nxt = struct.unpack_from("<QIHH", ring, 16 * head)
        buf = pair.shm.pa_to_va(addr, length)
        assert buf is not None
        struct.pack_into("<H", buf, 12, 4000)  # rpmsg_hdr.len past the 24-byte buffer
        with caplog.at_level(logging.ERROR):
            pair.resume_remote()
            pair.settle(60)
        assert "msg too big" in caplog.text and "vring 1" in caplog.text
        ept.destroy()
        echoes(pair, b"after")


def test_remote_sees_no_work_from_a_stream_of_kicks_on_a_dead_ring() -> None:
    # back-off: once refused, further kicks neither log nor re-attach
    with threaded_pair() as pair:
        lay = pair.layout()
        ring = pair.ring(1)
        struct.pack_into("<H", ring, lay.avail_idx, 5000)
        done = threading.Event()

        def storm() -> None:
            for _ in range(2000):
                pair._host_kick(1)
            done.set()

        t = threading.Thread(target=storm)
        t.start()
        assert done.wait(120)
        t.join()
        pair.settle(60)
        assert pair.remote.errors == 1  # the refusal, once
        assert pair.remote._rx is not None and pair.remote._rx.errors == 1  # the jump, once
        assert pair.remote.attach_count == 1
