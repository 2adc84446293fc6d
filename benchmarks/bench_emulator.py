"""Benchmarks of the emulator platform (the virtual SoC on unicorn).

- ``emu_boot_ms_p50``: ``Rproc.boot()`` of an offline Cortex-M4 with the rpmsg echo firmware,
  from the call until the processor is RUNNING (ELF checks, resource table, load into TCM/SRAM,
  vdev and vrings, a fresh CPU started on its thread); median of 15 boots, in milliseconds.
- ``emu_mips``: millions of emulated instructions per second on a compute loop (4 Thumb
  instructions per iteration, 20 M iterations) in a bare-metal program on one Cortex-M4 core.
- ``emu_idle_cpu_pct``: host CPU (user + system, whole process) used while one core running the
  rpmsg echo firmware sits idle in ``wfi`` for 5 s, in percent of one host core (target < 1).
"""

from __future__ import annotations

import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FW_DIR = ROOT / "src" / "remoteproc" / "data" / "firmware"


def _one_core(firmware: str, boot: str = "manual") -> str:
    return (f"[machine]\nname = 'bench'\n[[core]]\nname = 'm4'\ncpu = 'cortex-m4'\n"
            f"boot = '{boot}'\nfirmware = '{firmware}'\n")


def emu_boot_ms_p50() -> float:
    from remoteproc.core.host import Host
    from remoteproc.core.states import State
    from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine

    host = Host([FW_DIR], panic_hook=False)
    plat = EmulatorPlatform(parse_machine(_one_core("rpmsg-echo-m4.elf")))
    try:
        rproc = plat.make_rproc("m4", host=host, auto_boot=False)
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            rproc.boot()
            times.append((time.perf_counter() - t0) * 1000)
            assert rproc.state is State.RUNNING
            rproc.shutdown()
        return float(statistics.median(times))
    finally:
        host.close()
        plat.close()


def emu_mips() -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_emulator_support import ARG, CMD, DONE, build

    from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine

    text = "[machine]\nname = 'bench'\n[[core]]\nname = 'c0'\ncpu = 'cortex-m4'\n"
    plat = EmulatorPlatform(parse_machine(text))
    try:
        proc = plat["c0"]
        proc.boot_preloaded("prog-m4", build("m4"))
        assert proc.core.wait_sleeping()
        ddr = plat.ddr

        def put(da: int, value: int) -> None:
            view = ddr.translate(da, 4)
            assert view is not None
            view[:] = struct.pack("<I", value)

        def done() -> bool:
            view = ddr.translate(DONE, 4)
            assert view is not None
            return bool(struct.unpack("<I", view)[0])

        iterations = 20_000_000
        best = 0.0
        for _ in range(3):
            put(DONE, 0)
            put(ARG, iterations)
            put(CMD, 7)
            t0 = time.perf_counter()
            proc.io.host_kick(0)
            while not done():
                time.sleep(0.0005)
            dt = time.perf_counter() - t0
            best = max(best, 4 * iterations / dt / 1e6)
        return best
    finally:
        plat.close()


def emu_idle_cpu_pct() -> float:
    import resource

    from remoteproc.core.host import Host
    from remoteproc.core.states import State
    from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine

    host = Host([FW_DIR], panic_hook=False)
    plat = EmulatorPlatform(parse_machine(_one_core("rpmsg-echo-m4.elf")))
    try:
        rproc = plat.make_rproc("m4", host=host, auto_boot=False)
        rproc.boot()
        assert rproc.state is State.RUNNING
        time.sleep(0.5)  # the firmware announces its channels, then idles
        assert plat["m4"].core.wait_sleeping()

        def cpu() -> float:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            return ru.ru_utime + ru.ru_stime

        c0, t0 = cpu(), time.monotonic()
        time.sleep(5.0)
        used, wall = cpu() - c0, time.monotonic() - t0
        assert rproc.state is State.RUNNING
        return 100.0 * used / wall
    finally:
        host.close()
        plat.close()


BENCHMARKS: dict[str, Callable[[], float]] = {
    "emu_boot_ms_p50": emu_boot_ms_p50,
    "emu_mips": emu_mips,
    "emu_idle_cpu_pct": emu_idle_cpu_pct,
}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(f"{name}: {fn():.3f}")
