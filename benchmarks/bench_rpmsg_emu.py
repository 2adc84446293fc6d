"""rpmsg figures through the emulated firmware: the host ``Rproc`` booting ``rpmsg-echo-m4.elf``
on a unicorn Cortex-M4 of the virtual SoC, everything in this one process (the core runs on its
own thread). A message goes: host ``send`` → TX vring → kick → mailbox FIFO → the core's
interrupt → the firmware's rpmsg stack and echo callback → RX vring → ``TX_DATA`` MMIO →
``Rproc.vq_interrupt`` → the host bus → the endpoint. By default (``inline_kicks``) a ``recv``
about to block runs the idle core itself and takes the reply on its own thread;
``RPROC_BENCH_EMU_INLINE=0`` measures the hand-off path (the core's thread, then the
platform's dispatcher thread).

- ``rpmsg_emu_rtt_us_p50`` / ``rpmsg_emu_rtt_us_p99``: one message in flight on "rpmsg-raw"
  (send, then block in ``recv`` for its echo), timed with ``perf_counter_ns``; percentiles of all
  samples, half 1-byte and half 496-byte messages (interleaved in blocks of 250 after a warm-up).
  ``_1b`` / ``_496b``: each size alone. ``_rv32``: the p50 of both sizes on an RV32IMAC core
  running ``rpmsg-echo-rv32.elf``.
- ``rpmsg_emu_msgs_per_s``: pipelined 496-byte messages: a thread sends (blocking when the 16
  TX buffers the firmware's 16-entry rings give are out), the caller receives the echoes with
  ``recv``; completed echoes per second, best of three rounds (``RPROC_BENCH_EMU_MESSAGES``,
  default 20,000 each). ``_rv32``: the same on the RV32 core.
- ``rpmsg_emu_core_cpu_us_per_msg`` / ``rpmsg_emu_host_cpu_us_per_msg``: CPU time per echoed
  message in those rounds (median round), split between the emulation thread (unicorn and the
  MMIO callbacks it makes) and every other thread of the process (host rpmsg, vrings,
  dispatcher, scheduler, the benchmark's own threads).

Run ``python benchmarks/bench_rpmsg_emu.py`` to print every figure from one process.

Where the time goes on the hand-off path (as measured before inline runs became the default
and before the register calls went direct; docs/performance.md has the inline path's stages)
(1-byte round trip on the M4, p50 of the time since ``send`` was called,
measured by wrapping each stage; 2 shared host cores): host kick reaches the mailbox at ~6 us,
the core thread is woken and starts its exception entry at ~30 us and ends it at ~60-90 us
(stacking and ~13 unicorn register calls, 1.5-4.5 us each as every ctypes call gives up the
GIL), the handler (3 mailbox MMIO reads, each a Python callback), the exception return (~10
register calls) and the echo itself bring the first ``TX_DATA`` write at ~100-120 us, the
dispatcher thread runs ``vq_interrupt`` at ~150-165 us, the endpoint gets the message at
~170-180 us and ``recv`` returns at ~210-230 us. The firmware executes ~414 instructions per
echo (~690 on RV32): the emulated code itself is well under 1 us; the rest is Python around
unicorn and three thread hand-offs (host → core thread → dispatcher → receiver). On RV32 one
more cost dominates: every interrupt entry writes ``mstatus`` with MPP = M after ``mret`` left
MPP = U (unicorn's RV32 CPUs all have the U extension), and QEMU flushes the TLB on that change:
that single register write took ~290 us (p50) in the live core, against ~1.5 us for the others.
"""


from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine
from remoteproc.rpmsg.core import registry
from remoteproc.rpmsg.endpoint import Endpoint

ROOT = Path(__file__).resolve().parents[1]
FW_DIR = ROOT / "src" / "remoteproc" / "data" / "firmware"
CPUS = {"m4": "cortex-m4", "rv32": "rv32imac"}
RTT_SAMPLES = int(os.environ.get("RPROC_BENCH_EMU_RTT_SAMPLES", "2000"))  # per size
RTT_WARMUP = 200
THROUGHPUT_MESSAGES = int(os.environ.get("RPROC_BENCH_EMU_MESSAGES", "20000"))  # per round
THROUGHPUT_ROUNDS = 3
# 1 (the default, as the platform's): a receiver about to block runs the kicked core itself
# (EmulatorPlatform.inline_kicks); 0: every run on the core's thread (the hand-off path).
INLINE = os.environ.get("RPROC_BENCH_EMU_INLINE", "1") != "0"


class Session(NamedTuple):
    platform: EmulatorPlatform
    ept: Endpoint
    core_tid: int  # the emulation thread's native id


def _machine(arch: str) -> str:
    return (f"[machine]\nname = 'bench'\n[[core]]\nname = 'c'\ncpu = '{CPUS[arch]}'\n"
            f"boot = 'manual'\nfirmware = 'rpmsg-echo-{arch}.elf'\n")


@contextlib.contextmanager
def session(arch: str = "m4") -> Iterator[Session]:
    host = Host([FW_DIR], panic_hook=False)
    plat = EmulatorPlatform(parse_machine(_machine(arch)))
    plat.inline_kicks = INLINE
    try:
        rproc = plat.make_rproc("c", host=host, auto_boot=False)
        rproc.boot()
        assert rproc.state is State.RUNNING
        deadline = time.monotonic() + 10
        while True:
            bus = next((b for b in registry.buses() if b.rproc is rproc), None)
            ch = bus.find_channel("rpmsg-raw") if bus is not None else None
            if bus is not None and ch is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("no rpmsg-raw channel")
            time.sleep(0.002)
        thread = plat["c"].core._thread
        assert thread is not None and thread.native_id is not None
        ept = bus.create_ept(None, dst=ch.dst)
        try:
            yield Session(plat, ept, thread.native_id)
        finally:
            ept.destroy()
    finally:
        host.close()
        plat.close()


# ---- one message in flight ---------------------------------------------------------------------


def _rtt_samples(ept: Endpoint, size: int, count: int) -> list[int]:
    data = bytes((i * 13) & 0xFF for i in range(size))
    send, recv = ept.send, ept.recv
    clock = time.perf_counter_ns
    out: list[int] = []
    for _ in range(count):
        t0 = clock()
        send(data)
        got = recv(10.0)
        out.append(clock() - t0)
        if got != data:
            raise AssertionError("wrong echo")
    return out


def _percentile(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k] / 1000.0


_cache: dict[tuple[str, int], list[int]] = {}


def _rtt(size: int | None, arch: str = "m4") -> list[int]:
    """Both sizes measured together once per process, interleaved in blocks of 250."""
    if (arch, 1) not in _cache:
        with session(arch) as s:
            _rtt_samples(s.ept, 1, RTT_WARMUP)
            _rtt_samples(s.ept, 496, RTT_WARMUP)
            small: list[int] = []
            large: list[int] = []
            while len(small) < RTT_SAMPLES:
                small += _rtt_samples(s.ept, 1, 250)
                large += _rtt_samples(s.ept, 496, 250)
        _cache[arch, 1], _cache[arch, 496] = small, large
    if size is None:
        return _cache[arch, 1] + _cache[arch, 496]
    return _cache[arch, size]


def rtt_p50() -> float:
    return _percentile(_rtt(None), 50)


def rtt_p99() -> float:
    return _percentile(_rtt(None), 99)


def rtt_p50_1b() -> float:
    return _percentile(_rtt(1), 50)


def rtt_p50_496b() -> float:
    return _percentile(_rtt(496), 50)


def rtt_p50_rv32() -> float:
    return _percentile(_rtt(None, "rv32"), 50)


# ---- pipelined ---------------------------------------------------------------------------------


def _thread_cpu(tid: int) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Round(NamedTuple):
    msgs_per_s: float
    core_cpu_us: float  # per echoed message, the emulation thread
    host_cpu_us: float  # per echoed message, every other thread


def _pipelined(s: Session, n: int) -> Round:
    data = bytes(range(256)) + bytes(range(240))
    ept = s.ept
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send = ept.send
            for _ in range(n):
                send(data)
        except BaseException as exc:
            errors.append(exc)

    p0, c0 = time.process_time(), _thread_cpu(s.core_tid)
    t0 = time.perf_counter_ns()
    t = threading.Thread(target=sender)
    t.start()
    recv = ept.recv
    for _ in range(n):
        if len(recv(10.0)) != 496:
            raise AssertionError("echo of the wrong size")
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    t.join()
    if errors:
        raise errors[0]
    core = _thread_cpu(s.core_tid) - c0
    total = time.process_time() - p0
    return Round(n / elapsed, core * 1e6 / n, (total - core) * 1e6 / n)


_rounds: dict[str, list[Round]] = {}


def _throughput(arch: str = "m4") -> list[Round]:
    if arch not in _rounds:
        with session(arch) as s:
            _pipelined(s, 2000)  # warm-up
            _rounds[arch] = [_pipelined(s, THROUGHPUT_MESSAGES) for _ in range(THROUGHPUT_ROUNDS)]
    return _rounds[arch]


def msgs_per_s() -> float:
    return max(r.msgs_per_s for r in _throughput())


def msgs_per_s_rv32() -> float:
    return max(r.msgs_per_s for r in _throughput("rv32"))


def core_cpu_us_per_msg() -> float:
    return float(statistics.median(r.core_cpu_us for r in _throughput()))


def host_cpu_us_per_msg() -> float:
    return float(statistics.median(r.host_cpu_us for r in _throughput()))


BENCHMARKS: dict[str, Callable[[], float]] = {
    "rpmsg_emu_rtt_us_p50": rtt_p50,
    "rpmsg_emu_rtt_us_p99": rtt_p99,
    "rpmsg_emu_rtt_us_p50_1b": rtt_p50_1b,
    "rpmsg_emu_rtt_us_p50_496b": rtt_p50_496b,
    "rpmsg_emu_rtt_us_p50_rv32": rtt_p50_rv32,
    "rpmsg_emu_msgs_per_s": msgs_per_s,
    "rpmsg_emu_msgs_per_s_rv32": msgs_per_s_rv32,
    "rpmsg_emu_core_cpu_us_per_msg": core_cpu_us_per_msg,
    "rpmsg_emu_host_cpu_us_per_msg": host_cpu_us_per_msg,
}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(f"{name}: {fn():.1f}", flush=True)
