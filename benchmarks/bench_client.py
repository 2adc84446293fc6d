"""Client figures, against rprocd on the emulated default machine (real firmware).

- ``client_echo_rtt_us``: median round trip of a 64-byte message through the client library
  (``Endpoint.send`` + ``recv``) to the m4 core's rpmsg-echo firmware over ``/dev/rpmsgN``,
  over 1000 round trips after 100 warm-up ones: the latency a Linux-side program sees.
- ``client_status_ms``: median time of ``RemoteProc.status()`` for every processor (each reads
  five sysfs attributes, the debugfs directory and devcoredump), over 50 runs: what
  ``rproc status`` costs on top of start-up.
- ``demo_s``: wall time of ``rproc demo`` as a new process, rprocd start and unmount included.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _with_rprocd(fn: Callable[[Path], float]) -> float:
    from remoteproc.client.launch import start_rprocd

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_RUNTIME_DIR"] = tmp
        daemon = start_rprocd(Path(tmp) / "root", verbose=0)
        try:
            daemon.root.processor("m4").wait_state("running", 30)
            return fn(daemon.mount)
        finally:
            daemon.stop()


def client_echo_rtt_us() -> float:
    from remoteproc.client.root import AbiRoot
    from remoteproc.client.rpmsg import channel_device
    from remoteproc.errors import RprocError

    def measure(mount: Path) -> float:
        m4 = AbiRoot(mount).processor("m4")
        deadline = time.monotonic() + 30
        while True:
            try:
                dev = channel_device(m4)
                break
            except RprocError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        msg = b"x" * 64
        times = []
        with dev.open() as ept:
            for i in range(1100):
                t0 = time.perf_counter()
                ept.send(msg)
                ept.recv(5)
                if i >= 100:
                    times.append(time.perf_counter() - t0)
        return round(statistics.median(times) * 1e6, 1)

    return _with_rprocd(measure)


def client_status_ms() -> float:
    from remoteproc.client.root import AbiRoot

    def measure(mount: Path) -> float:
        root = AbiRoot(mount)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            for p in root.processors():
                p.status()
            times.append(time.perf_counter() - t0)
        return round(statistics.median(times) * 1000, 2)

    return _with_rprocd(measure)


def demo_s() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XDG_RUNTIME_DIR": tmp}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "remoteproc.cli", "demo", "-o", tmp], check=True,
                       capture_output=True, env=env, timeout=300)
        return round(time.perf_counter() - t0, 2)


BENCHMARKS: dict[str, Callable[[], float]] = {
    "client_echo_rtt_us": client_echo_rtt_us,
    "client_status_ms": client_status_ms,
    "demo_s": demo_s,
}
