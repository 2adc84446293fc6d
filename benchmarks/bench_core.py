"""Remoteproc core figures, on the in-memory platform (``remoteproc.platforms.sim``).

- ``boot_ms_p50``: ``boot()`` of an OFFLINE processor until it is RUNNING (firmware request from
  the host's built-in images, sanity check, table parse, resource handling with one carveout, one
  trace and one rpmsg vdev with two 256-entry vrings, carveout allocation, load, virtio device
  registration and driver probe if one is registered), median of 200 boots; each is followed by an
  untimed shutdown.
- ``recovery_ms_p50``: ``report_crash()`` until the RECOVERY_DONE event (crash worker, stop with
  crashed subdevices, coredump op with dumps disabled, firmware request, load, start), median of
  100 crashes.
- ``rprocs_256_rss_mb``: resident memory growth (MiB) for 256 registered and booted processors,
  each with a 64 KiB carveout (zeroed, so resident) and 64 KiB TCM/SRAM/DMA windows that are
  anonymous mappings (resident only where touched: the 1 KiB image, the table, the carveout).
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable

from remoteproc.core.events import Event, EventKind
from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.firmware.rsc_table import FW_RSC_ADDR_ANY, TableBuilder
from remoteproc.platforms.sim import SimPlatform, build_image

ANY = FW_RSC_ADDR_ANY
TABLE_DA = 0x8000


def _image(
    vdev: bool = True, trace: bool = True, carveout: int = 0x1000, code: int = 4096
) -> bytes:
    tb = TableBuilder()
    tb.add_carveout(ANY, 0, carveout, name="heap")
    if trace:
        tb.add_trace(0x2000_0000, 0x400, name="trace")
    if vdev:
        tb.add_vdev(7, 0, 1, vrings=[(ANY, 4096, 256, 0, 0)] * 2)
    return build_image(
        [(0x0, b"\x5a" * code), (0x2000_0000, b"hello\0")],
        rsc_table=tb.build(),
        rsc_da=TABLE_DA,
        entry=0x1,
    )


def _quiet() -> None:
    logging.getLogger("remoteproc").setLevel(logging.CRITICAL)


def boot_ms_p50(rounds: int = 200) -> float:
    _quiet()
    with Host([], panic_hook=False) as host, SimPlatform("m4", dma_size=0x100000) as sim:
        host.add_firmware("rproc-m4-fw", _image())
        rp = sim.make_rproc("m4", host=host, auto_boot=False)
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rp.boot()
            samples.append(time.perf_counter() - t0)
            assert rp.state is State.RUNNING
            rp.shutdown()
        return statistics.median(samples) * 1000.0


def recovery_ms_p50(rounds: int = 100) -> float:
    _quiet()
    with Host([], panic_hook=False) as host, SimPlatform("m4", dma_size=0x100000) as sim:
        host.add_firmware("rproc-m4-fw", _image())
        rp = sim.make_rproc("m4", host=host, auto_boot=False)
        # 100 crashes in a row on purpose: without this the crash-loop back-off (our addition,
        # docs/kernel-differences.md) would rightly stop recovering after the tenth
        rp.crash_loop_max = 0
        rp.boot()
        done = threading.Event()

        def on_event(ev: Event) -> None:
            if ev.kind in (EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED):
                done.set()

        rp.subscribe(on_event)
        samples = []
        for _ in range(rounds):
            done.clear()
            t0 = time.perf_counter()
            rp.report_crash()
            if not done.wait(10):
                raise RuntimeError("recovery did not finish")
            samples.append(time.perf_counter() - t0)
            assert rp.state is State.RUNNING
        rp.shutdown()
        return statistics.median(samples) * 1000.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rprocs_256_rss_mb(count: int = 256) -> float:
    _quiet()
    img = _image(vdev=False, trace=False, carveout=0x10000, code=1024)
    # Warm the imports and one full boot so only per-processor memory is measured.
    with Host([], panic_hook=False) as warm, SimPlatform("w", dma_size=0x20000) as sim:
        warm.add_firmware("fw", img)
        sim.make_rproc("w", host=warm, firmware="fw", auto_boot=False).boot()
    gc.collect()
    before = _rss_bytes()
    host = Host([], panic_hook=False)
    host.add_firmware("fw", img)
    sims = []
    for i in range(count):
        sim = SimPlatform(
            f"c{i}",
            memories=(("tcm", 0x0, 0x10000), ("sram", 0x2000_0000, 0x10000)),
            dma_size=0x10000,
        )
        rp = sim.make_rproc(f"c{i}", host=host, firmware="fw", auto_boot=False)
        rp.boot()
        sims.append(sim)
    gc.collect()
    grown = _rss_bytes() - before
    assert len(host) == count and all(r.state is State.RUNNING for r in host)
    host.close()
    for sim in sims:
        sim.close()
    return grown / (1 << 20)


BENCHMARKS: dict[str, Callable[[], float]] = {
    "boot_ms_p50": boot_ms_p50,
    "recovery_ms_p50": recovery_ms_p50,
    "rprocs_256_rss_mb": rprocs_256_rss_mb,
}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(name, round(fn(), 3))
