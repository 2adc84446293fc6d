"""Where the time of one pytest-plugin test goes, without pytest: the fixture's path done N times
in this process (serve a fresh bundled machine in process, wait for m4 ``running``, open its
``rpmsg-raw`` channel, echo once, stop m4, stop the machine), as the figure
``pytest_test_overhead_ms`` measures it through pytest (benchmarks/bench_pytest.py).

    PYTHONPATH=src python tools/profile_plugin_test.py [N]

Prints the median wall time of each phase, the CPU time per test (every thread of the process:
the client, the emulated cores, the work queue, the FUSE server's threads) and, per thread
kind, the CPU of all N tests. docs/performance.md quotes it. A measuring tool only: no
assertions beyond the echo.
"""

from __future__ import annotations

import collections
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_cpu: collections.Counter[str] = collections.Counter()
_cpu_lock = threading.Lock()
_run = threading.Thread.run


def _counted_run(self: threading.Thread) -> None:
    start = time.thread_time()
    try:
        _run(self)
    finally:
        kind = self.name.split("-")[0].split(":")[0].rstrip("0123456789")
        with _cpu_lock:
            _cpu[kind] += time.thread_time() - start


def main() -> None:
    threading.Thread.run = _counted_run  # type: ignore[method-assign]
    from remoteproc.client import AbiRoot, open_channel
    from remoteproc.daemon import Daemon
    from remoteproc.pytest_plugin import _machines_dir, load_spec

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    spec = load_spec(_machines_dir() / "default.toml")
    phases: dict[str, list[float]] = collections.defaultdict(list)
    cpu: list[float] = []
    main_cpu = 0.0
    process0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp_name:
        for i in range(n):
            folder = Path(tmp_name) / f"t{i}"
            (folder / "firmware").mkdir(parents=True)
            c0, m0 = time.process_time(), time.thread_time()
            marks = [time.perf_counter()]
            daemon = Daemon(folder / "mnt", firmware_dir=folder / "firmware", spec=spec)
            daemon.start()
            assert daemon.host is not None
            daemon.host.workqueue.flush(timeout=60)
            marks.append(time.perf_counter())
            m4 = AbiRoot(daemon.mountpoint).processor("m4")
            m4.wait_state("running", timeout=30)
            marks.append(time.perf_counter())
            with open_channel(m4, timeout=30) as ep:
                marks.append(time.perf_counter())
                ep.send(b"x")
                assert ep.recv(timeout=30) == b"x"
                marks.append(time.perf_counter())
            m4.stop()
            marks.append(time.perf_counter())
            daemon.stop()
            marks.append(time.perf_counter())
            cpu.append(time.process_time() - c0)
            main_cpu += time.thread_time() - m0
            names = ("serve", "wait running", "open channel", "echo", "stop m4", "unserve")
            for name, a, b in zip(names, marks[:-1], marks[1:], strict=True):
                phases[name].append(b - a)
    total = time.process_time() - process0
    for name, values in phases.items():
        print(f"{name:14s} median {statistics.median(values) * 1000:6.1f} ms wall")
    print(f"CPU per test   median {statistics.median(cpu) * 1000:6.1f} ms (all threads)")
    print(f"CPU of all {n} tests by thread:")
    _cpu["main (client)"] = main_cpu
    for kind, seconds in _cpu.most_common():
        print(f"  {kind:24s} {seconds * 1000:8.1f} ms")
    rest = total - sum(_cpu.values())
    print(f"  {'other (libfuse C workers)':24s} {rest * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
