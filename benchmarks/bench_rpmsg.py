"""rpmsg figures over the process platform: the host ``Rproc`` attached to the Python echo remote
running as another process (``python -m remoteproc.remotes.echo``), shared memory in a
/dev/shm file, kicks as single bytes on a Unix socket. Both ends share this machine's cores.

- ``rpmsg_rtt_us_p50`` / ``rpmsg_rtt_us_p99``: one message in flight (send, then block in
  ``recv`` for its echo), timed with ``perf_counter_ns``; the percentiles of all samples, half of
  them 1-byte and half 496-byte messages (interleaved in blocks). Target p50 <= 100 us.
  ``_1b`` / ``_496b`` variants give each size alone.
- ``rpmsg_msgs_per_s``: pipelined 496-byte messages: one thread sends (blocking when the 256
  transmit buffers are out), the caller receives the echoes; completed echoes per second, best
  of three rounds of 100,000 (the round least disturbed by other load). Target >= 100,000.
  ``_callback``: the same with the echoes counted by an endpoint callback on the transport's
  thread instead of a ``recv`` loop (one thread handoff less per message).
- ``rpmsg_host_cpu_us_per_msg`` / ``rpmsg_remote_cpu_us_per_msg``: CPU time (user + system)
  each process spends per echoed message in the ``recv`` rounds (median round). Unlike msgs/s
  these hardly move with the machine's load, and they bound msgs/s on an idle machine:
  ``1e6 / max(host, remote)`` when each side has a core.
- ``rpmsg_host_floor_us_per_msg``: the host's Python work per echoed message with nothing
  but the rings, the header and the copies (one thread, no locks, no kicks, the remote's part
  untimed; median of 5 runs, CPU time): the floor ``rpmsg_host_cpu_us_per_msg`` cannot go below
  in this design, to compare it with.

Run ``python benchmarks/bench_rpmsg.py`` to print every figure from one process (quicker than
``run.py``, which measures each in a fresh interpreter).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import NamedTuple

from remoteproc.core.host import Host
from remoteproc.platforms.process import (
    DEFAULT_SCHED_SLICE,
    ProcessPlatform,
    echo_command,
    set_sched_slice,
    shm_path,
)
from remoteproc.remotes.echo import ECHO_SERVICE
from remoteproc.rpmsg.core import registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

RTT_SAMPLES = int(os.environ.get("RPROC_BENCH_RTT_SAMPLES", "5000"))  # per size
RTT_WARMUP = 300
THROUGHPUT_MESSAGES = int(os.environ.get("RPROC_BENCH_MESSAGES", "100000"))  # per round
THROUGHPUT_ROUNDS = 3
# Messages per send_many / recv_many call in the pipelined rounds (1: send/recv one by one).
BURST = int(os.environ.get("RPROC_BENCH_BURST", "64"))
# The scheduler slice both ends (and this process's waiting thread) request; 0 keeps the
# kernel's default, to show what it costs (see set_sched_slice).
SCHED_SLICE = float(os.environ.get("RPROC_BENCH_SLICE_US", DEFAULT_SCHED_SLICE * 1e6)) * 1e-6


class Session(NamedTuple):
    platform: ProcessPlatform
    ept: Endpoint
    dst: int


@contextlib.contextmanager
def session(service: str = ECHO_SERVICE) -> Iterator[Session]:
    tag = uuid.uuid4().hex[:12]
    shm, sock = f"rproc-bench-{tag}.shm", f"/tmp/rproc-bench-{tag}.sock"
    host = Host()
    if SCHED_SLICE > 0:
        set_sched_slice(SCHED_SLICE)
    platform = ProcessPlatform(
        "bench",
        shm=shm,
        socket_path=sock,
        command=echo_command(
            shm, sock, "--slice-us", str(SCHED_SLICE * 1e6), "--service", service
        ),
        sched_slice=SCHED_SLICE,
    )
    rproc = platform.make_rproc(auto_boot=False)
    host.add(rproc)
    try:
        rproc.boot()
        ch = _wait_channel(rproc, service)
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        yield Session(platform, bus.create_ept(None), ch.dst)
    finally:
        rproc.close()
        host.close()
        platform.close()
        for path in (shm_path(shm), sock):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _wait_channel(rproc: object, service: str = ECHO_SERVICE, timeout: float = 20.0) -> Channel:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for bus in registry.buses():
            if bus.rproc is rproc:
                ch = bus.find_channel(service)
                if ch is not None:
                    return ch
        time.sleep(0.002)
    raise TimeoutError("echo channel did not appear")


def _rtt_samples(s: Session, size: int, count: int) -> list[int]:
    data = bytes((i * 13) & 0xFF for i in range(size))
    ept, dst = s.ept, s.dst
    send, recv = ept.sendto, ept.recv
    clock = time.perf_counter_ns
    out: list[int] = []
    for _ in range(count):
        t0 = clock()
        send(data, dst)
        got = recv(10.0)
        out.append(clock() - t0)
        if len(got) != size:
            raise AssertionError("echo of the wrong size")
    return out


def _percentile(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k] / 1000.0


_cache: dict[int, list[int]] = {}


def _rtt(size: int | None) -> list[int]:
    """Samples for one size (or both when None); both sizes are measured together, once per
    process, interleaved in blocks so drift on this shared machine hits both alike."""
    if not _cache:
        with session() as s:
            _rtt_samples(s, 1, RTT_WARMUP)
            _rtt_samples(s, 496, RTT_WARMUP)
            small: list[int] = []
            large: list[int] = []
            while len(small) < RTT_SAMPLES:
                small += _rtt_samples(s, 1, 250)
                large += _rtt_samples(s, 496, 250)
        _cache[1], _cache[496] = small, large
    if size is None:
        return _cache[1] + _cache[496]
    return _cache[size]


def rtt_p50() -> float:
    return _percentile(_rtt(None), 50)


def rtt_p99() -> float:
    return _percentile(_rtt(None), 99)


def rtt_p50_1b() -> float:
    return _percentile(_rtt(1), 50)


def rtt_p99_1b() -> float:
    return _percentile(_rtt(1), 99)


def rtt_p50_496b() -> float:
    return _percentile(_rtt(496), 50)


def rtt_p99_496b() -> float:
    return _percentile(_rtt(496), 99)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Round(NamedTuple):
    msgs_per_s: float
    host_cpu_us: float  # per echoed message, whole host process
    remote_cpu_us: float  # per echoed message, the remote process


def _pipelined(s: Session, n: int, *, callback: bool) -> Round:
    """``n`` echoes of 496 bytes, pipelined. ``callback=False``: a sender thread, the caller
    receiving with ``recv``. ``callback=True``: the caller sends, an endpoint callback counts
    the echoes on the transport's thread (how kernel rpmsg drivers receive)."""
    data = bytes(496)
    dst = s.dst
    remote_pid = s.platform.process.pid if s.platform.process else None
    assert remote_pid is not None
    bus = s.ept.bus
    assert isinstance(bus, RpmsgBus)
    done = threading.Event()
    count = [0]

    def on_echo(ept: Endpoint, payload: bytes, src: int) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    errors: list[BaseException] = []
    ept = bus.create_ept(on_echo) if callback else s.ept

    def sender() -> None:
        try:
            if BURST > 1:
                send_many = ept.send_many
                burst = [data] * BURST
                left = n
                while left:
                    k = min(left, BURST)
                    send_many(burst[:k], dst)
                    left -= k
                return
            send = ept.sendto
            for _ in range(n):
                send(data, dst)
        except BaseException as exc:
            errors.append(exc)

    h0, r0 = time.process_time(), _cpu_seconds(remote_pid)
    t0 = time.perf_counter_ns()
    if callback:
        sender()
        if not done.wait(60.0):
            raise TimeoutError(f"only {count[0]} of {n} echoes")
    else:
        t = threading.Thread(target=sender)
        t.start()
        if BURST > 1:
            recv_many = ept.recv_many
            got = 0
            while got < n:
                msgs = recv_many(BURST, 30.0)
                got += len(msgs)
                # No echo exceeds the 496-byte MTU, so the sum is 496 * n only if each is 496
                # (one C-level pass: the check is the benchmark's, not the host's, cost).
                if sum(map(len, msgs)) != 496 * len(msgs):
                    raise AssertionError("echo of the wrong size")
        else:
            recv = ept.recv
            for _ in range(n):
                if len(recv(30.0)) != 496:
                    raise AssertionError("echo of the wrong size")
        t.join()
    elapsed = time.perf_counter_ns() - t0
    h1, r1 = time.process_time(), _cpu_seconds(remote_pid)
    if callback:
        ept.destroy()
    if errors:
        raise errors[0]
    return Round(n / (elapsed / 1e9), (h1 - h0) / n * 1e6, (r1 - r0) / n * 1e6)


_rounds: dict[bool, list[Round]] = {}


def _throughput(callback: bool) -> list[Round]:
    """``THROUGHPUT_ROUNDS`` rounds; every round is reported on stderr."""
    if callback not in _rounds:
        with session() as s:
            _pipelined(s, 2000, callback=callback)  # warm up
            rounds = [
                _pipelined(s, THROUGHPUT_MESSAGES, callback=callback)
                for _ in range(THROUGHPUT_ROUNDS)
            ]
        label = "callback" if callback else "recv"
        print(
            f"rpmsg pipelined ({label}) rounds: "
            + ", ".join(
                f"{r.msgs_per_s:.0f}/s (cpu us/msg host {r.host_cpu_us:.1f} "
                f"remote {r.remote_cpu_us:.1f})"
                for r in rounds
            ),
            file=sys.stderr,
        )
        _rounds[callback] = rounds
    return _rounds[callback]


def msgs_per_s() -> float:
    """Best round: the one least disturbed by other tenants of this shared 2-core machine."""
    return max(r.msgs_per_s for r in _throughput(False))


def msgs_per_s_callback() -> float:
    return max(r.msgs_per_s for r in _throughput(True))


def host_cpu_us_per_msg() -> float:
    """Host CPU per echoed message (median round): what bounds msgs/s on an idle machine."""
    return sorted(r.host_cpu_us for r in _throughput(False))[THROUGHPUT_ROUNDS // 2]


def remote_cpu_us_per_msg() -> float:
    return sorted(r.remote_cpu_us for r in _throughput(False))[THROUGHPUT_ROUNDS // 2]


STABILITY_RUNS = 10
STABILITY_SAMPLES = int(os.environ.get("RPROC_BENCH_STABILITY_SAMPLES", "1000"))
_stability: list[float] = []


def rtt_p50_runs() -> list[float]:
    """The p50 of ``STABILITY_RUNS`` separate sessions (a fresh remote process each,
    ``STABILITY_SAMPLES`` 1-byte and 496-byte round trips each): the issue's stability
    criterion is p50 <= 100 us in 9 of 10."""
    if not _stability:
        for _ in range(STABILITY_RUNS):
            with session() as s:
                _rtt_samples(s, 1, RTT_WARMUP)
                samples = _rtt_samples(s, 1, STABILITY_SAMPLES // 2)
                samples += _rtt_samples(s, 496, STABILITY_SAMPLES // 2)
            _stability.append(_percentile(samples, 50))
        print(
            "rpmsg rtt p50 per session: " + ", ".join(f"{v:.0f}" for v in _stability)
            + f" us (load average {os.getloadavg()[0]:.2f})",
            file=sys.stderr,
        )
    return _stability


def rtt_p50_runs_within_target() -> float:
    """How many of the 10 sessions had a p50 round trip of at most 100 us."""
    return float(sum(v <= 100.0 for v in rtt_p50_runs()))


def rtt_p50_worst_of_runs() -> float:
    return max(rtt_p50_runs())


FLOOR_BURST = 64
FLOOR_ROUNDS = 2000


def _floor_once(rounds: int) -> float:
    """Host CPU per echoed message for the least work this design can do in Python, one
    thread, no locks, no kicks: per message, pack an rpmsg header and copy 496 bytes into a
    transmit buffer and post it (``add_outbuf``); take the echo back (``get_bufs``), read its
    header, copy its payload out, queue and dequeue it (a ``deque``, as an endpoint does);
    re-post the receive buffer and reclaim the transmit one, both per burst of 64. The
    remote's side (moving 64 buffers from avail to used in both rings) runs untimed."""
    from collections import deque

    from remoteproc.rpmsg.wire import RPMSG_HDR_SIZE, hdr_struct
    from remoteproc.virtio.vring import DriverQueue, VringLayout, vring_size

    num, align, bufsz = 256, 4096, 512
    lay = VringLayout(num, align)
    mem = memoryview(bytearray(0x80000))
    tx_ring, rx_ring = mem[0x4000 : 0x4000 + vring_size(num, align)], mem[0x8000 : 0xC000]
    pool = 0x10000

    def pa_to_va(pa: int, n: int) -> memoryview | None:
        return mem[pa : pa + n]

    def queue(ring: memoryview, index: int) -> DriverQueue:
        return DriverQueue(ring, num, align, index=index, name=f"q{index}", byteorder="<",
                           notify=lambda: None, callback=None, pa_to_va=pa_to_va)

    tx, rx = queue(tx_ring, 1), queue(rx_ring, 0)
    rx.add_inbufs([(pool + bufsz * i, bufsz, i) for i in range(num)])
    hdr = hdr_struct("<")
    payload = bytes(496)
    tx_free = list(range(num))
    inbox: deque[bytes] = deque()
    tx16, rx16 = tx_ring.cast("H"), rx_ring.cast("H")
    used_ring, used_idx, avail_ring = lay.used_ring, lay.used_idx, lay.avail_ring
    dev_tx = dev_rx = 0
    spent = 0.0
    clock = time.thread_time  # CPU time: other tenants' load does not count
    for _ in range(rounds):
        t0 = clock()
        for _ in range(FLOOR_BURST):  # send
            slot = tx_free.pop()
            pa = pool + bufsz * (num + slot)
            hdr.pack_into(mem, pa, 0x400, 0x35, 0, len(payload), 0)
            mem[pa + RPMSG_HDR_SIZE : pa + RPMSG_HDR_SIZE + len(payload)] = payload
            tx.add_outbuf(pa, RPMSG_HDR_SIZE + len(payload), slot)
        spent += clock() - t0
        # The remote, untimed: consume the 64 sends, echo into 64 receive buffers.
        for _ in range(FLOOR_BURST):
            head = tx16[(avail_ring >> 1) + (dev_tx & (num - 1))]
            struct.pack_into("<II", tx_ring, used_ring + 8 * (dev_tx & (num - 1)), head, 0)
            dev_tx = (dev_tx + 1) & 0xFFFF
            rhead = rx16[(avail_ring >> 1) + (dev_rx & (num - 1))]
            rpa = struct.unpack_from("<Q", rx_ring, 16 * rhead)[0]
            hdr.pack_into(mem, rpa, 0x35, 0x400, 0, len(payload), 0)
            struct.pack_into("<II", rx_ring, used_ring + 8 * (dev_rx & (num - 1)), rhead,
                             RPMSG_HDR_SIZE + len(payload))
            dev_rx = (dev_rx + 1) & 0xFFFF
        tx16[used_idx >> 1] = dev_tx
        rx16[used_idx >> 1] = dev_rx
        t0 = clock()
        used = rx.get_bufs()  # receive
        repost = []
        for token, _n in used:
            pa = pool + bufsz * token
            _src, _dst, _res, length, _flags = hdr.unpack_from(mem, pa)
            inbox.append(bytes(mem[pa + RPMSG_HDR_SIZE : pa + RPMSG_HDR_SIZE + length]))
            repost.append((pa, bufsz, token))
        rx.add_inbufs(repost)
        got = [inbox.popleft() for _ in range(len(inbox))]
        tx_free.extend(token for token, _n in tx.get_bufs())
        spent += clock() - t0
        if len(got) != FLOOR_BURST:
            raise AssertionError("floor loop lost messages")
    return spent / (rounds * FLOOR_BURST) * 1e6


def host_floor_us_per_msg() -> float:
    """Median of 5 runs of ``_floor_once``: what the host's Python costs per echoed message
    before any thread hand-off, lock, kick or bus bookkeeping (the interpreter's floor for
    this design on this machine)."""
    runs = sorted(_floor_once(FLOOR_ROUNDS) for _ in range(5))
    print("rpmsg host floor us/msg runs: " + ", ".join(f"{r:.2f}" for r in runs), file=sys.stderr)
    return runs[2]


BENCHMARKS: dict[str, Callable[[], float]] = {
    "rpmsg_host_floor_us_per_msg": host_floor_us_per_msg,
    "rpmsg_rtt_p50_runs_within_100us": rtt_p50_runs_within_target,
    "rpmsg_rtt_us_p50_worst_of_10_runs": rtt_p50_worst_of_runs,
    "rpmsg_rtt_us_p50": rtt_p50,
    "rpmsg_rtt_us_p99": rtt_p99,
    "rpmsg_rtt_us_p50_1b": rtt_p50_1b,
    "rpmsg_rtt_us_p99_1b": rtt_p99_1b,
    "rpmsg_rtt_us_p50_496b": rtt_p50_496b,
    "rpmsg_rtt_us_p99_496b": rtt_p99_496b,
    "rpmsg_msgs_per_s": msgs_per_s,
    "rpmsg_msgs_per_s_callback": msgs_per_s_callback,
    "rpmsg_host_cpu_us_per_msg": host_cpu_us_per_msg,
    "rpmsg_remote_cpu_us_per_msg": remote_cpu_us_per_msg,
}


if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        print(f"{name} = {BENCHMARKS[name]():.1f}", flush=True)
