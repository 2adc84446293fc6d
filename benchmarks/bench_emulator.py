"""Benchmarks of the emulator platform (the virtual SoC on unicorn).

- ``emu_boot_ms_p50``: ``Rproc.boot()`` of an offline Cortex-M4 with the rpmsg echo firmware,
  from the call until the processor is RUNNING (ELF checks, resource table, load into TCM/SRAM,
  vdev and vrings, a fresh CPU started on its thread); median of 15 boots, in milliseconds.
- ``emu_mips``: millions of emulated instructions per second on the rpmsg echo firmware's
  compute loop (``bench 50000000`` on rpmsg-raw: 4 Thumb instructions per iteration, timed by
  the firmware with the SoC timer) on one Cortex-M4 core; best of 3.
- ``emu_mips_irq``: the same measure with interrupts: the ``cortexm-exc`` firmware (scenario 9)
  runs two threads that compute (4 Thumb instructions per iteration) while SysTick at 1 kHz of
  the core clock (209 MHz) pends PendSV on every tick to switch them; MIPS = 4 x iterations /
  the microseconds the firmware measured with the SoC timer. SysTick counts emulated
  instructions (the default ``clock_mode``): unicorn then counts every instruction through a
  hook. Best of 2.
- ``emu_mips_irq_realtime``: the same with ``clock_mode = "realtime"`` (SysTick counts host time,
  runs are not counted). Best of 2.
- ``emu_mips_noirq``: the baseline of the two: the same firmware loop with SysTick off (one
  thread computes alone, scenario 10). Best of 2.
- ``emu_idle_cpu_pct``: host CPU (user + system, whole process) used while one core running the
  rpmsg echo firmware sits idle in ``wfi`` for 5 s, in percent of one host core (target < 1).
"""

from __future__ import annotations

import statistics
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
    import re

    from remoteproc.core.host import Host
    from remoteproc.core.states import State
    from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine
    from remoteproc.rpmsg import registry

    host = Host([FW_DIR], panic_hook=False)
    plat = EmulatorPlatform(parse_machine(_one_core("rpmsg-echo-m4.elf")))
    try:
        rproc = plat.make_rproc("m4", host=host, auto_boot=False)
        rproc.boot()
        assert rproc.state is State.RUNNING
        deadline = time.monotonic() + 10
        channel = None
        while channel is None:
            assert time.monotonic() < deadline, "no rpmsg-raw channel"
            bus = next((b for b in registry.buses() if b.rproc is rproc), None)
            channel = bus.find_channel("rpmsg-raw") if bus is not None else None
            time.sleep(0.01)
        ept = bus.create_ept(None, dst=channel.dst)
        try:
            best = 0.0
            n = 50_000_000
            for _ in range(3):
                ept.send(f"bench {n}".encode(), timeout=5)
                reply = bytes(ept.recv(30)).decode()
                m = re.search(r" us (\d+) insns/iter (\d+)", reply)
                assert m, reply
                us, per_iter = int(m.group(1)), int(m.group(2))
                best = max(best, per_iter * n / us)  # instructions per µs == MIPS
            return best
        finally:
            ept.destroy()
    finally:
        host.close()
        plat.close()


def _mips_irq(mode: str, scenario: int = 9) -> float:
    import struct

    from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine

    text = ("[ddr]\nbase = 0x80000000\nsize = 0x1000000\n[[core]]\nname = 'm4'\n"
            f"cpu = 'cortex-m4'\nclock_mode = '{mode}'\n")
    image = (FW_DIR / "cortexm-exc-m4.elf").read_bytes()
    best = 0.0
    for _ in range(2):
        plat = EmulatorPlatform(parse_machine(text))

        def word(da: int, plat: EmulatorPlatform = plat) -> int:
            view = plat.ddr.translate(da, 4)
            assert view is not None
            try:
                return int(struct.unpack("<I", view)[0])
            finally:
                view.release()

        try:
            cmd = plat.ddr.translate(0x8000_0000, 4)
            assert cmd is not None
            cmd[:] = struct.pack("<I", scenario)
            cmd.release()
            plat["m4"].boot_preloaded("cortexm-exc-m4.elf", image)
            deadline = time.monotonic() + 120
            while word(0x8000_0100) != 0x600D:
                assert plat["m4"].core.fault is None, str(plat["m4"].core.fault)
                assert time.monotonic() < deadline, "the benchmark did not finish"
                time.sleep(0.01)
            iterations, switches, us = (word(0x8000_0108), word(0x8000_010C),
                                        word(0x8000_0110))
            assert (switches > 0) == (scenario == 9) and us > 0
            best = max(best, 4 * iterations / us)
        finally:
            plat.close()
    return best


def emu_mips_irq() -> float:
    return _mips_irq("instructions")


def emu_mips_irq_realtime() -> float:
    return _mips_irq("realtime")


def emu_mips_noirq() -> float:
    return _mips_irq("instructions", 10)


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
    "emu_mips_irq": emu_mips_irq,
    "emu_mips_irq_realtime": emu_mips_irq_realtime,
    "emu_mips_noirq": emu_mips_noirq,
    "emu_idle_cpu_pct": emu_idle_cpu_pct,
}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(f"{name}: {fn():.3f}")
