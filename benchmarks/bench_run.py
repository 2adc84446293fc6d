"""``rproc run`` benchmark: what running a board program under rprocd's namespace costs.

- ``abi_run_overhead_ms``: median wall time of ``rproc run --root M -- true`` as a new process
  minus the median of ``true`` alone (21 runs each after a warm-up), against ``rprocd --sim m4``:
  interpreter start-up, the CLI, ``unshare``, the ``/sys`` merge (a bind mount per top-level
  entry of the host's ``class``, ``bus``, ``devices`` and ``kernel``), ``/dev`` and
  ``/lib/firmware``, then ``exec``. The CLI runs as ``python -m remoteproc.cli`` from this
  checkout.
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

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _median_ms(cmd: list[str], env: dict[str, str], runs: int = 21) -> float:
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def abi_run_overhead_ms() -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        mnt = Path(tmp) / "mnt"
        daemon = subprocess.Popen([sys.executable, "-m", "remoteproc.daemon", "--mount",
                                   str(mnt), "--sim", "m4"], stdout=subprocess.PIPE, env=env,
                                  text=True)
        try:
            assert daemon.stdout is not None
            line = daemon.stdout.readline()
            assert line.startswith("rprocd: serving"), line
            true = _median_ms(["true"], env)
            run = _median_ms([sys.executable, "-m", "remoteproc.cli", "run", "--root",
                              str(mnt), "--", "true"], env)
        finally:
            daemon.terminate()
            daemon.wait(30)
    return round(run - true, 1)


BENCHMARKS: dict[str, Callable[[], float]] = {"abi_run_overhead_ms": abi_run_overhead_ms}
