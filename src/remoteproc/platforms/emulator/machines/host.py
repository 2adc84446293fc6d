"""The host side of a SoC: what the platform driver does on the Cortex-A (or host) side of the
machine's mailbox and control registers, one class per SoC family.

Owns ``HostDriver``, the interface ``platform.EmulatedProcessor`` calls; ``platform.py``
picks the class from ``[machine] platform = ...``, so this module knows no implementation.
Implementations: ``host_vsoc.VsocHost`` (the default virtual SoC's mailbox and sysctl
registers) and ``host_stm32.Stm32Host`` (Linux's ``stm32_rproc`` over IPCC, RCC and TAMP, for
STM32MP1 and STM32MP2).

Rules:
- A driver only touches the peripherals of its processor's bus through their host-side methods
  and posts anything that reaches the remoteproc core (``vq_interrupt``) to the machine's
  dispatcher thread: callbacks from a peripheral run on the emulation thread.
- Waits (an acknowledgement from the firmware) are bounded, as the kernel's mailbox timeouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remoteproc.core.rproc import Rproc
    from remoteproc.platforms.emulator.platform import EmulatedProcessor

__all__ = ["HostDriver"]


class HostDriver:
    """Defaults: no mailbox, no console, no published table."""

    def __init__(self, proc: EmulatedProcessor) -> None:
        self.proc = proc
        self.bus = proc.bus

    def console(self) -> list[str]:
        return []

    def prepare(self, rproc: Rproc) -> None:
        """Register the processor's reserved memory as carveouts (the DT memory-region)."""

    def before_start(self) -> None:
        """Release the core (hold boot / reset) before it runs."""

    def request_stop(self, rproc: Rproc) -> None:
        """Tell the firmware it is about to be stopped (before the core is halted)."""

    def after_stop(self) -> None:
        """Hold the core again."""

    def kick(self, notifyid: int) -> bool:
        return False

    def detach(self) -> None:
        """Tell a running firmware the host detaches; wait (bounded) for its acknowledgement."""

    def panic(self) -> int:
        return 0

    def published_rsc_table(self) -> tuple[int, int]:
        """(device address, size) of the table a running firmware published; (0, 0): none."""
        return 0, 0

    def da_to_pa(self, da: int) -> int | None:
        """The host physical address of device address ``da`` (stm32_rproc_da_to_pa)."""
        for m in self.proc.spec.memory:
            for at in (m.da, *m.aliases):
                if at <= da < at + m.size:
                    return m.bus_addr + (da - at)
        return da
