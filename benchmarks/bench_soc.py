"""Benchmarks of the SoC machines (machines/*.toml) with firmware written for their real
registers.

- ``vendor_boot_to_ns_ms``: on the bundled ``stm32mp157`` machine, from ``Rproc.boot()`` of the
  STM32MP157-layout example (``stm32mp157-echo-m4.elf``: RCC/PWR ready flags, UART7, HSEM, then
  rpmsg over the IPCC) until the host has created the channel of its last name-service
  announcement (``rpmsg-raw``); median of 11 boots, in milliseconds (goal <= 50). With
  ``RPROC_VENDOR_FW`` naming a vendor image (e.g. STM32CubeMP1's OpenAMP_TTY_echo) that image
  is timed instead, until its first announced channel.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FW_DIR = ROOT / "src" / "remoteproc" / "data" / "firmware"


def vendor_boot_to_ns_ms() -> float:
    from remoteproc.core.host import Host
    from remoteproc.platforms.emulator import EmulatorPlatform
    from remoteproc.platforms.emulator.machine import bundled_machines, load_machine_spec
    from remoteproc.rpmsg import Channel, RpmsgListener, registry

    vendor = os.environ.get("RPROC_VENDOR_FW")
    image = Path(vendor) if vendor else FW_DIR / "stm32mp157-echo-m4.elf"
    wanted = None if vendor else "rpmsg-raw"
    plat = EmulatorPlatform(load_machine_spec(bundled_machines()["stm32mp157"]))
    host = Host([image.parent], panic_hook=False)
    seen = threading.Event()

    class Listener(RpmsgListener):
        def on_channel_added(self, channel: Channel) -> None:
            if channel.driver_override is None and (wanted is None or channel.name == wanted):
                seen.set()

    listener = Listener()
    unsubscribe = registry.subscribe(listener)
    try:
        rproc = plat.register(host)[0]
        rproc.firmware = image.name
        times = []
        for _ in range(11):
            seen.clear()
            t0 = time.perf_counter()
            rproc.boot()
            assert seen.wait(30), "no name-service announcement"
            times.append((time.perf_counter() - t0) * 1000)
            rproc.shutdown()
        return float(statistics.median(times))
    finally:
        unsubscribe()
        host.close()
        plat.close()


BENCHMARKS = {"vendor_boot_to_ns_ms": vendor_boot_to_ns_ms}
