"""The virtual SoC platform: remote cores emulated with unicorn (docs/virtual-soc.md).

Modules: ``machine`` (the TOML description), ``memory`` (host memory the cores execute from),
``peripherals/`` (the peripheral models, by name, and each core's device bus), ``machines/``
(the bundled machines and each SoC's host side), ``scheduler`` (scheduler and dispatcher
threads), ``cores/`` (``cpu`` / ``cortexm`` / ``riscv``), ``symbolize`` (crash reports, symbol
twins of stripped images), ``bootloader`` (the simulated boot loader) and ``platform`` (the
driver: ``EmulatorPlatform``).

``load_machine(path, host)`` builds a machine and registers its processors with ``host``; the
caller closes the returned platform after closing the host.
"""

from __future__ import annotations

from remoteproc.platforms.emulator.machine import (
    DEFAULT_MACHINE,
    CoreSpec,
    MachineSpec,
    load_machine_spec,
    parse_machine,
)
from remoteproc.platforms.emulator.platform import (
    CrashReport,
    EmulatedProcessor,
    EmulatorPlatform,
    load_machine,
)

Machine = EmulatorPlatform

__all__ = [
    "DEFAULT_MACHINE",
    "CoreSpec",
    "CrashReport",
    "EmulatedProcessor",
    "EmulatorPlatform",
    "Machine",
    "MachineSpec",
    "load_machine",
    "load_machine_spec",
    "parse_machine",
]
