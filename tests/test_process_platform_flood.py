"""Flood the Python echo remote over the process platform: several host endpoints, each with its
own sender thread, every message numbered and byte-checked on return. Nothing may be lost,
duplicated or reordered per endpoint.

``RPROC_FLOOD_MESSAGES`` sets the total of the slow test (default 1,000,000); a short flood runs
in every test pass.
"""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from conftest import holds_for
from test_process_platform import TIMEOUT, Pair

from remoteproc.rpmsg.endpoint import Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

_HDR = struct.Struct("<II")  # endpoint number, sequence number
# Payload bodies by size, so checking a message is one comparison.
_BODIES = [bytes((i * 31 + size) & 0xFF for i in range(size)) for size in range(497 - _HDR.size)]


def _message(ept_no: int, seq: int) -> bytes:
    size = (seq * 7 + ept_no) % len(_BODIES)
    return _HDR.pack(ept_no, seq) + _BODIES[size]


class _Checker:
    """Per endpoint: the next sequence number expected, and what went wrong."""

    def __init__(self, endpoints: int, per_endpoint: int) -> None:
        self.expected = [0] * endpoints
        self.per_endpoint = per_endpoint
        self.errors: list[str] = []
        self.done = threading.Event()
        self.finished = 0
        self._lock = threading.Lock()

    def callback(self, ept_no: int, remote: int) -> object:
        def on_message(ept: Endpoint, data: bytes, src: int) -> None:
            seq = self.expected[ept_no]
            if data != _message(ept_no, seq) or src != remote:
                got = _HDR.unpack_from(data) if len(data) >= _HDR.size else None
                self.errors.append(f"endpoint {ept_no}: expected #{seq}, got {got} from {src}")
                return
            self.expected[ept_no] = seq + 1
            if seq + 1 == self.per_endpoint:
                with self._lock:
                    self.finished += 1
                    if self.finished == len(self.expected):
                        self.done.set()

        return on_message


def _flood(total: int, endpoints: int = 4) -> float:
    per = total // endpoints
    with Pair() as p:
        ch = p.attach()
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        check = _Checker(endpoints, per)
        epts = [bus.create_ept(check.callback(i, ch.dst)) for i in range(endpoints)]
        send_errors: list[BaseException] = []

        def sender(i: int) -> None:
            try:
                send = epts[i].sendto
                for seq in range(per):
                    send(_message(i, seq), ch.dst, TIMEOUT)
            except BaseException as exc:
                send_errors.append(exc)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(endpoints)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not send_errors, send_errors[0]
        # Wait for the echoes, as long as they keep coming.
        last = -1
        while not check.done.wait(2.0):
            now = sum(check.expected)
            assert not check.errors, check.errors[:5]
            assert now != last, f"echoes stopped at {now} of {per * endpoints}"
            last = now
        elapsed = time.monotonic() - started
        assert not check.errors, check.errors[:5]
        assert check.expected == [per] * endpoints
        # Nothing more arrives afterwards (no duplicates): a bounded observation of 0.05 s.
        holds_for(lambda: check.expected == [per] * endpoints and not check.errors, 0.05,
                  "no echo after the last one")
        assert bus.rx_errors == 0
        assert all(e.received == per for e in epts)
        for e in epts:
            e.destroy()
        return per * endpoints / elapsed


def test_flood_short() -> None:
    _flood(20_000)


@pytest.mark.slow
def test_flood_million() -> None:
    total = int(os.environ.get("RPROC_FLOOD_MESSAGES", "1000000"))
    rate = _flood(total)
    print(f"flood: {total} messages echoed at {rate:.0f} msgs/s")
