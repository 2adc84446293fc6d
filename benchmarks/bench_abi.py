"""ABI benchmarks: what the FUSE mount costs on top of the core.

- ``sysfs_start_overhead_ms``: median time of ``open + write("start\\n") + close`` on a mounted
  sysfs ``state`` file, minus the median of the same boot called in process (``rproc.boot()``),
  on an in-memory (sim) processor, so the figure is the ABI's cost, not the platform's.
- ``rpmsg_char_msgs_per_s``: echo round trips per second through ``/dev/rpmsg0`` of rprocd's
  mount (one 32-byte ``write`` and one ``read`` per message) against the rpmsg-echo firmware on
  the bundled virtual SoC's emulated Cortex-M4.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.daemon import sim_image
from remoteproc.platforms.sim import SimPlatform
from remoteproc.rpmsg.endpoint import Endpoint


def sysfs_start_overhead_ms(rounds: int = 200) -> float:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        host = Host([], panic_hook=False)
        stack.callback(host.close)
        sim = SimPlatform("m4")
        stack.callback(sim.close)
        host.add_firmware("rproc-m4-fw", sim_image())
        rproc = sim.make_rproc("m4", host=host, auto_boot=False)
        tree = AbiTree(host, rpmsg=False)
        stack.callback(tree.close)
        mnt = Path(tmp) / "mnt"
        mnt.mkdir()
        stack.enter_context(Mount(tree.root, mnt))
        state = str(mnt / "sys/class/remoteproc/remoteproc0/state")

        def via_mount() -> None:
            fd = os.open(state, os.O_WRONLY)
            try:
                os.write(fd, b"start\n")
            finally:
                os.close(fd)

        def measure(boot: Callable[[], None]) -> float:
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                boot()
                times.append(time.perf_counter() - t0)
                rproc.shutdown()
            return statistics.median(times)

        measure(rproc.boot)  # warm up both paths
        measure(via_mount)
        inproc = measure(rproc.boot)
        mounted = measure(via_mount)
        return (mounted - inproc) * 1000.0


def rpmsg_char_msgs_per_s(seconds: float = 2.0) -> float:
    """Through rprocd's mount of the bundled virtual SoC: the emulated Cortex-M4 runs the
    rpmsg-echo firmware and ``dev/rpmsg0`` is its "rpmsg-raw" channel."""
    from remoteproc.daemon import Daemon

    with tempfile.TemporaryDirectory() as tmp, Daemon(Path(tmp) / "mnt") as daemon:
        dev = daemon.mountpoint / "dev/rpmsg0"
        deadline = time.monotonic() + 10
        while not dev.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no /dev/rpmsg0")
            time.sleep(0.01)
        fd = os.open(dev, os.O_RDWR)
        try:
            msg = b"m" * 32
            for _ in range(50):
                os.write(fd, msg)
                os.read(fd, 496)
            n = 0
            t0 = time.perf_counter()
            end = t0 + seconds
            while True:
                os.write(fd, msg)
                if os.read(fd, 496) != msg:
                    raise RuntimeError("echo mismatch")
                n += 1
                if n % 64 == 0 and time.perf_counter() >= end:
                    break
            return n / (time.perf_counter() - t0)
        finally:
            os.close(fd)


BENCHMARKS: dict[str, Callable[[], float]] = {
    "sysfs_start_overhead_ms": sysfs_start_overhead_ms,
    "rpmsg_char_msgs_per_s": rpmsg_char_msgs_per_s,
}


@contextlib.contextmanager
def _char_session() -> Iterator[tuple[str, Endpoint, int]]:
    """An ABI mount over a host attached to the Python echo remote (process platform) that
    announces "rpmsg-raw", so rpmsg_char gives it ``/dev/rpmsg0``. Yields the device path, a
    plain endpoint on the same bus and the remote's address (the in-process baseline)."""
    from bench_rpmsg import session

    from remoteproc.rpmsg.core import registry

    with tempfile.TemporaryDirectory() as tmp, session(service="rpmsg-raw") as s:
        host = s.platform.rproc.host if s.platform.rproc else None
        assert host is not None
        tree = AbiTree(host)
        try:
            mnt = Path(tmp) / "mnt"
            mnt.mkdir()
            with Mount(tree.root, mnt):
                dev = mnt / "dev/rpmsg0"
                deadline = time.monotonic() + 20
                while not dev.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no /dev/rpmsg0 (buses: {registry.buses()})")
                    time.sleep(0.01)
                yield str(dev), s.ept, s.dst
        finally:
            tree.close()


def _char_round_trips(path: str, seconds: float) -> float:
    fd = os.open(path, os.O_RDWR)
    try:
        msg = b"m" * 32
        for _ in range(200):
            os.write(fd, msg)
            os.read(fd, 496)
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        write, read = os.write, os.read
        while True:
            write(fd, msg)
            if read(fd, 496) != msg:
                raise RuntimeError("echo mismatch")
            n += 1
            if n % 64 == 0 and time.perf_counter() >= end:
                break
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def _inproc_round_trips(ept: Endpoint, dst: int, seconds: float) -> float:
    msg = b"m" * 32
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        ept.sendto(msg, dst)
        if ept.recv(10.0) != msg:
            raise RuntimeError("echo mismatch")
        n += 1
        if n % 64 == 0 and time.perf_counter() >= end:
            break
    return n / (time.perf_counter() - t0)


_char: dict[str, float] = {}


def _char_figures() -> dict[str, float]:
    if not _char:
        with _char_session() as (path, ept, dst):
            _inproc_round_trips(ept, dst, 0.3)
            inproc = _inproc_round_trips(ept, dst, 2.0)
            mounted = _char_round_trips(path, 3.0)
        _char["mounted"] = mounted
        _char["inproc"] = inproc
    return _char


def abi_rpmsg_char_round_trips_per_s() -> float:
    """Echo round trips per second through ``/dev/rpmsg0`` of an ABI mount (one 32-byte
    ``write`` and one ``read`` each, one in flight), the remote being the Python echo over the
    process platform: the fastest real remote we have, so the figure is mostly the ABI's."""
    return _char_figures()["mounted"]


def abi_rpmsg_char_overhead_us() -> float:
    """What the mount adds to one round trip: 1/mounted - 1/in-process, in microseconds, the
    in-process round trips measured in the same session on the same bus and remote."""
    f = _char_figures()
    return (1 / f["mounted"] - 1 / f["inproc"]) * 1e6


BENCHMARKS["abi_rpmsg_char_round_trips_per_s"] = abi_rpmsg_char_round_trips_per_s
BENCHMARKS["abi_rpmsg_char_overhead_us"] = abi_rpmsg_char_overhead_us

if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or list(BENCHMARKS):
        print(f"{name} = {BENCHMARKS[name]():.1f}", flush=True)
