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
from collections.abc import Callable
from pathlib import Path

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.daemon import sim_image
from remoteproc.platforms.sim import SimPlatform


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
