"""The STM32MP257 and STM32MP215 machines with the Cortex-M33 image of the same example
(firmware/examples/stm32mp157-echo built with -DSOC_STM32MP257 / -DSOC_STM32MP215): firmware
running from DDR, IPCC1 at its real address with each part's own RX interrupt line (171 on
the MP257, 152 on the MP215), USART2 as the console, vrings and buffers in the device tree's
reserved DDR (0x812F8000...), shutdown acknowledged on IPCC channel 3."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from test_emulator import FW_DIR, wait_until

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.platforms.emulator.cores.cortexm import CortexM33
from remoteproc.platforms.emulator.machine import bundled_machines, load_machine_spec
from remoteproc.platforms.emulator.platform import EmulatorPlatform
from remoteproc.rpmsg import registry


@pytest.fixture(params=["stm32mp257", "stm32mp215"])
def soc(request: pytest.FixtureRequest) -> Iterator[tuple[str, EmulatorPlatform, Host]]:
    name: str = request.param
    plat = EmulatorPlatform(load_machine_spec(bundled_machines()[name]))
    host = Host([FW_DIR], panic_hook=False)
    try:
        yield name, plat, host
    finally:
        host.close()
        plat.close()


def test_m33_image_from_ddr_announces_echoes_and_acknowledges_shutdown(
        soc: tuple[str, EmulatorPlatform, Host], caplog: pytest.LogCaptureFixture) -> None:
    name, plat, host = soc
    rproc = plat.register(host)[0]
    proc = plat["m33"]
    rproc.firmware = f"{name}-echo-m33.elf"
    rproc.boot()
    # The part's own core, not an M4 stand-in: ARMv8-M EXC_RETURN values, its CPUID
    assert isinstance(proc.core, CortexM33), type(proc.core)

    def bus():  # type: ignore[no-untyped-def]
        return next((b for b in registry.buses() if b.rproc is rproc), None)

    wait_until(lambda: bus() is not None and bus().find_channel("rpmsg-raw") is not None, 20,
               "rpmsg-raw")
    assert f"{name}-echo: ipcc 16 channels" in proc.console  # USART2, IPCC1's HWCFGR
    assert any("vring0 da 0x812f8000 id 0, vring1 da 0x812f9000 id 1" in line
               for line in proc.console)
    ept = bus().create_ept(None, dst=bus().find_channel("rpmsg-raw").dst)
    try:
        ept.send(b"from the A35", timeout=5)
        assert ept.recv(10) == b"from the A35"
    finally:
        ept.destroy()
    assert proc.unknown_accesses == []
    with caplog.at_level(logging.WARNING):
        rproc.shutdown()
    assert rproc.state is State.OFFLINE
    assert "shutdown requested" in proc.console and "without ack" not in caplog.text


def test_each_part_has_its_own_ipcc_interrupt_line() -> None:
    irqs = {}
    for name in ("stm32mp257", "stm32mp215"):
        spec = load_machine_spec(bundled_machines()[name])
        ipcc = next(p for p in spec.cores[0].peripherals if p.name == "IPCC1")
        irqs[name] = (ipcc.params["rx_irq"], ipcc.params["tx_irq"])
    assert irqs == {"stm32mp257": (171, 172), "stm32mp215": (152, 153)}
