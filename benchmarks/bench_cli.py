"""CLI start-up figures.

fw_info_cold_ms: wall time of ``rproc fw info`` as a new process on a 3 MB ELF (median of 11
runs after one warm-up), interpreter start-up included. Target: <= 150 ms (the CLI imports
lazily). It runs the console script pip installed beside this interpreter (not a version
manager's shim on PATH), with bytecode caching allowed, as on an installed system.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _three_mb_elf(path: Path) -> None:
    from elfbuild import Seg, build_elf

    from remoteproc.firmware.rsc_table import TableBuilder

    table = TableBuilder(offset_slots=8)
    table.add_trace(0x2000_1000, 0x1000, "trace")
    table.add_vdev(7, 0, 1, vrings=[(0xFFFFFFFF, 16, 16, 0, 0), (0xFFFFFFFF, 16, 16, 1, 0)])
    code = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB of non-zero bytes
    image = build_elf([Seg(code, paddr=0x0, flags=5)], rsc_table=bytes(table.build()))
    path.write_bytes(bytes(image))


def fw_info_cold_ms() -> float:
    script = Path(sys.executable).parent / "rproc"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "remoteproc.cli"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        fw = Path(tmp) / "three-mb.elf"
        _three_mb_elf(fw)
        assert fw.stat().st_size >= 3 * 1024 * 1024
        times = []
        subprocess.run([*cmd, "fw", "info", str(fw)], check=True, capture_output=True, env=env)
        for _ in range(11):
            start = time.perf_counter()
            subprocess.run([*cmd, "fw", "info", str(fw)], check=True, capture_output=True, env=env)
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


BENCHMARKS = {"fw_info_cold_ms": fw_info_cold_ms}
