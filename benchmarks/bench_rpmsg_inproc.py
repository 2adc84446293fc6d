"""rpmsg figures over the in-process pair (``tests/rpmsg_pair.py``): the host bus, the vrings
and the Python remote over one bytearray, no emulator and no sockets.

- ``rpmsg_inproc_msgs_per_s``: host → remote messages per second (32-byte payloads, blocking
  ``send``, 4 endpoints), kicks delivered synchronously through the pair's trampoline; each TX
  buffer is recycled hundreds of times.
- ``rpmsg_inproc_echo_rtt_us_p50``: median round trip of a 64-byte message to the remote's echo
  endpoint and back into a blocking ``recv`` (synchronous delivery).
- ``rpmsg_inproc_thread_msgs_per_s``: host → remote messages per second with kicks delivered by
  worker threads, as real interrupts would be (batches form when the remote falls behind).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rpmsg_pair import RpmsgPair

from remoteproc.rpmsg.remote import echo


def _one_way(mode: str, total: int) -> float:
    received = [0]

    def sink(ept: object, data: bytes, src: int) -> None:
        received[0] += 1

    with RpmsgPair(mode=mode) as pair:
        assert pair.bus is not None
        remotes = [pair.remote.create_ept(f"sink{i}", sink) for i in range(4)]
        pair.settle()
        hosts = [pair.bus.create_ept(None, dst=r.addr) for r in remotes]
        payload = b"\x5a" * 32
        t0 = time.perf_counter()
        for n in range(total):
            hosts[n & 3].send(payload, timeout=10)
        pair.settle()
        elapsed = time.perf_counter() - t0
        assert received[0] == total
    return total / elapsed


def msgs_per_s() -> float:
    return round(_one_way("sync", 100_000))


def thread_msgs_per_s() -> float:
    return round(_one_way("thread", 20_000))


def echo_rtt_us_p50() -> float:
    with RpmsgPair(remote_setup=lambda r: r.create_ept("rpmsg-echo", echo)) as pair:
        assert pair.bus is not None
        ch = pair.channel("rpmsg-echo")
        host = pair.bus.create_ept(None, dst=ch.dst)
        payload = b"\xa5" * 64
        samples = []
        for _ in range(2000):
            t0 = time.perf_counter()
            host.send(payload)
            host.recv(1)
            samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1e6, 1)


BENCHMARKS: dict[str, Callable[[], float]] = {
    "rpmsg_inproc_msgs_per_s": msgs_per_s,
    "rpmsg_inproc_echo_rtt_us_p50": echo_rtt_us_p50,
    "rpmsg_inproc_thread_msgs_per_s": thread_msgs_per_s,
}


if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(f"{name}: {fn()}")
