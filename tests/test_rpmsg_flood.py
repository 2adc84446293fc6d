"""Floods: nothing lost, duplicated or reordered per endpoint.

The big one sends RPROC_FLOOD_MESSAGES (default 1,000,000) host→remote messages spread over
four endpoint pairs, in the deterministic synchronous mode, so every TX buffer is recycled
~2000 times. A smaller flood runs both directions at once with real threads.
"""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from rpmsg_pair import RpmsgPair

from remoteproc.rpmsg.endpoint import Endpoint
from remoteproc.rpmsg.remote import RemoteEndpoint

SEQ = struct.Struct("<IQ")  # (endpoint number, sequence number)


class Checker:
    """Per-source expected sequence numbers; any gap, duplicate or reordering is recorded."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self.bad: list[tuple[int, int, int]] = []
        self.count = 0

    def __call__(self, data: bytes, src: int) -> None:
        ep, seq = SEQ.unpack_from(data)
        want = self.next.get(ep, 0)
        if seq != want:
            self.bad.append((ep, want, seq))
        self.next[ep] = seq + 1
        self.count += 1


def _flood(total: int, endpoints: int = 4) -> tuple[float, Checker]:
    check = Checker()
    with RpmsgPair() as pair:
        assert pair.bus is not None
        remote_epts: list[RemoteEndpoint] = [
            pair.remote.create_ept(f"sink{i}", lambda e, d, s: check(d, s))
            for i in range(endpoints)
        ]
        hosts: list[Endpoint] = [
            pair.bus.create_ept(None, dst=pair.channel(f"sink{i}").dst) for i in range(endpoints)
        ]
        pad = b"\xee" * 32
        t0 = time.perf_counter()
        for n in range(total):
            i = n % endpoints
            hosts[i].send(SEQ.pack(i, n // endpoints) + pad)
        elapsed = time.perf_counter() - t0
        assert pair.bus.tx_messages == total + 0  # announcements went the other way
        assert pair.shm.guards_intact()
        assert pair.bus.rvq.errors == pair.bus.svq.errors == 0
        assert all(r.received == total // endpoints for r in remote_epts)
    return elapsed, check


def test_flood_small() -> None:
    _elapsed, check = _flood(20_000)
    assert check.bad == []
    assert check.count == 20_000
    assert check.next == {i: 5_000 for i in range(4)}


@pytest.mark.slow
def test_flood_one_million() -> None:
    total = int(os.environ.get("RPROC_FLOOD_MESSAGES", "1000000"))
    total -= total % 4
    elapsed, check = _flood(total)
    assert check.bad == []
    assert check.count == total
    assert check.next == {i: total // 4 for i in range(4)}
    print(f"\n{total} messages in {elapsed:.1f} s: {total / elapsed:,.0f} msg/s")


def test_flood_both_directions_threaded() -> None:
    n = int(os.environ.get("RPROC_FLOOD_THREADED", "5000"))
    to_remote = Checker()
    with RpmsgPair(mode="thread") as pair:
        assert pair.bus is not None
        lock = threading.Lock()

        def remote_cb(e: RemoteEndpoint, d: bytes, s: int) -> None:
            with lock:
                to_remote(d, s)

        rept = pair.remote.create_ept("sink", remote_cb)
        pair.settle()
        host = pair.bus.create_ept(None, dst=pair.channel("sink").dst)
        errors: list[BaseException] = []

        def remote_sender() -> None:
            try:
                for k in range(n):
                    rept.sendto(SEQ.pack(9, k), host.addr, timeout=10)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=remote_sender)
        t.start()
        for k in range(n):
            host.send(SEQ.pack(1, k), timeout=10)
        from_remote = Checker()
        for _ in range(n):
            data, src = host.recvfrom(10)
            from_remote(data, src)
        t.join(30)
        pair.settle()
        assert errors == []
        assert from_remote.bad == [] and from_remote.count == n
        assert to_remote.bad == [] and to_remote.count == n
        assert pair.shm.guards_intact()
