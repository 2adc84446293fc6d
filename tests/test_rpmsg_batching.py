"""The streaming API (``Endpoint.send_many`` / ``trysend_many`` / ``recv_many``) end to end
over the process platform, with and without VIRTIO_RING_F_EVENT_IDX negotiated, and a
sequence-numbered flood through it: nothing lost, duplicated, reordered or altered.

``RPROC_BATCH_FLOOD_MESSAGES`` sets the slow flood's total (default 200,000, what CI runs;
``RPROC_BATCH_FLOOD_MESSAGES=1000000`` is the full flood of docs/performance.md); a bounded
one runs in every pass.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time

import pytest
from test_process_platform import TIMEOUT, Pair

from remoteproc.errors import RprocError
from remoteproc.rpmsg.endpoint import Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus
from remoteproc.virtio.bus import VIRTIO_RING_F_EVENT_IDX

_SEQ = struct.Struct("<Q")
_BODIES = [bytes((i * 7 + n) & 0xFF for i in range(n)) for n in range(497 - _SEQ.size)]


def _msg(seq: int) -> bytes:
    return _SEQ.pack(seq) + _BODIES[(seq * 13) % len(_BODIES)]


def _flood(total: int, *, event_idx: bool, burst: int = 64) -> float:
    args = ("--event-idx",) if event_idx else ()
    with Pair(remote_args=args) as p:
        ch = p.attach()
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        assert bool(bus.features >> VIRTIO_RING_F_EVENT_IDX & 1) is event_idx
        assert bus.rvq.use_event_idx is event_idx and bus.svq.use_event_idx is event_idx
        ept = bus.create_ept(None)
        errors: list[BaseException] = []

        def sender() -> None:
            try:
                seq = 0
                while seq < total:
                    n = min(burst, total - seq)
                    assert ept.send_many([_msg(s) for s in range(seq, seq + n)], ch.dst) == n
                    seq += n
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=sender)
        started = time.monotonic()
        t.start()
        expect = 0
        while expect < total:
            got = ept.recvfrom_many(burst, TIMEOUT)
            assert got, "recv_many returned nothing"
            for data, src in got:
                assert src == ch.dst
                assert data == _msg(expect), f"expected #{expect}, got {_SEQ.unpack_from(data)}"
                expect += 1
        t.join()
        assert not errors, errors[0]
        elapsed = time.monotonic() - started
        # Nothing more arrives (no duplicates), nothing was refused on the way.
        with pytest.raises(RprocError) as err:
            ept.recv(0.05)
        assert err.value.errno == errno.ETIMEDOUT
        assert bus.rx_errors == 0 and bus.rvq.errors == 0 and bus.svq.errors == 0
        # Suppression at work: far fewer kicks than messages either way.
        assert bus.svq.kicks < total // 4, bus.svq.kicks
        return total / elapsed


@pytest.mark.parametrize("event_idx", [False, True], ids=["flags", "event_idx"])
def test_batched_flood_bounded(event_idx: bool) -> None:
    _flood(20_000, event_idx=event_idx)


@pytest.mark.slow
def test_batched_flood_long() -> None:
    total = int(os.environ.get("RPROC_BATCH_FLOOD_MESSAGES", "200000"))
    rate = _flood(total, event_idx=False)
    print(f"batched flood: {total} messages echoed at {rate:.0f} msgs/s")


def test_send_many_checks_every_message_first_and_trysend_many_stops_at_no_buffer() -> None:
    with Pair() as p:
        ch = p.attach()
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        ept = bus.create_ept(None)
        # One oversized message refuses the whole burst before anything is sent.
        before = bus.tx_messages
        with pytest.raises(RprocError) as err:
            ept.send_many([b"a", bytes(497), b"c"], ch.dst)
        assert err.value.errno == errno.EMSGSIZE
        assert bus.tx_messages == before
        assert ept.send_many([], ch.dst) == 0
        # recv_many waits for the first message only, then takes what is queued.
        assert ept.send_many([b"x", b"y", b"z"], ch.dst) == 3
        got: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 3 and time.monotonic() < deadline:
            got += ept.recv_many(2, TIMEOUT)
        assert got == [b"x", b"y", b"z"]
        with pytest.raises(RprocError) as err:
            ept.recv_many(0)
        assert err.value.errno == errno.EINVAL
        # trysend_many sends what fits now and says how many.
        n = ept.trysend_many([b"m"] * 10, ch.dst)
        assert 1 <= n <= 10
        seen = 0
        while seen < n:
            seen += len(ept.recv_many(64, TIMEOUT))
        assert seen == n


class _NoBus:
    name = "nobus"
    tx_timeout = 1.0


@pytest.mark.parametrize("queued", [3, 10, 200])
def test_recvfrom_many_takes_in_order_whatever_is_queued(queued: int) -> None:
    """All of a short queue, max_msgs of a longer one (what exceeds goes back in front of
    later messages), and one at a time from a queue far longer than asked for: every way
    keeps the order and loses nothing."""
    ept = Endpoint(_NoBus(), 0x400)  # type: ignore[arg-type]
    ept.deliver_many([(_msg(i), 0x35 + i) for i in range(queued)])
    got: list[tuple[bytes, int]] = []
    while len(got) < queued:
        batch = ept.recvfrom_many(4, 0)
        assert 1 <= len(batch) <= 4
        got += batch
    assert got == [(_msg(i), 0x35 + i) for i in range(queued)]
    assert ept.pending() == 0
    ept.deliver(_msg(7), 1)
    assert ept.recv_many(4, 0) == [_msg(7)]
