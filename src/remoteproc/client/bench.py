"""Echo round trips over an rpmsg endpoint: what ``rproc rpmsg bench`` and
``benchmarks/bench_client.py`` measure.

Rules:
- One message in flight at a time (send, then wait for its echo), so the figures are
  latencies; throughput is payload bytes per second in each direction.
- Every reply must equal what was sent (a numbered payload), so a lost or reordered message is
  an error, not a fast run.
"""

from __future__ import annotations

import errno
import statistics
import time
from typing import TYPE_CHECKING

from remoteproc.errors import RprocError
from remoteproc.uapi import RPMSG_MTU

if TYPE_CHECKING:
    from remoteproc.client.rpmsg import Endpoint

__all__ = ["echo_bench"]


def _payload(i: int, size: int) -> bytes:
    head = f"{i:08d}".encode()
    return (head * (size // len(head) + 1))[:size]


def echo_bench(ept: Endpoint, *, count: int = 1000, size: int = 64,
               timeout: float = 5.0, window: int = 1) -> dict[str, float | int]:
    """``count`` round trips of ``size`` bytes; returns seconds, rates and latency figures
    (microseconds). ``window`` > 1 streams: up to that many in flight, sent with
    ``send_many`` and received with ``recv_many``; latency is then send to echo of each."""
    if not 1 <= size <= RPMSG_MTU:
        raise RprocError(errno.EINVAL, f"size must be 1..{RPMSG_MTU} bytes")
    if count < 1:
        raise RprocError(errno.EINVAL, "count must be at least 1")
    if window < 1:
        raise RprocError(errno.EINVAL, "window must be at least 1")
    ept.drain()
    lat: list[float] = []
    start = time.perf_counter()
    if window > 1:
        _stream(ept, count, size, timeout, window, lat)
    for i in range(count if window == 1 else 0):
        msg = _payload(i, size)
        t0 = time.perf_counter()
        ept.send(msg)
        reply = ept.recv(timeout)
        lat.append(time.perf_counter() - t0)
        if reply != msg:
            raise RprocError(errno.EPROTO, f"round trip {i}: sent {msg[:16]!r}... but got "
                             f"{reply[:16]!r}... ({len(reply)} bytes): is the firmware an echo?",
                             file=str(ept.path))
    seconds = time.perf_counter() - start
    lat_us = sorted(x * 1e6 for x in lat)
    return {
        "count": count,
        "size": size,
        "window": window,
        "seconds": seconds,
        "round_trips_per_s": count / seconds,
        "mb_per_s": count * size / seconds / 1e6,
        "p50_us": statistics.median(lat_us),
        "p99_us": lat_us[min(len(lat_us) - 1, int(len(lat_us) * 0.99))],
        "max_us": lat_us[-1],
    }


def _stream(ept: Endpoint, count: int, size: int, timeout: float, window: int,
            lat: list[float]) -> None:
    sent_at: list[float] = []
    got = 0
    while got < count:
        room = min(window - (len(sent_at) - got), count - len(sent_at))
        if room > 0:
            first = len(sent_at)
            now = time.perf_counter()
            ept.send_many([_payload(i, size) for i in range(first, first + room)], timeout)
            sent_at += [now] * room
        for reply in ept.recv_many(window, timeout):
            if reply != _payload(got, size):
                raise RprocError(errno.EPROTO, f"message {got}: got {reply[:16]!r}... "
                                 f"({len(reply)} bytes) out of order or altered",
                                 file=str(ept.path))
            lat.append(time.perf_counter() - sent_at[got])
            got += 1
