"""STM32 IPCC (inter-processor communication controller), both processors' views.

Owns ``Ipcc`` (``model = "stm32-ipcc"``). Register layout (STM32MP1 RM0436 "IPCC", the same
on STM32MP2's IPCC1/IPCC2): processor 1 (the Cortex-A, i.e. the host) at 0x00-0x0C, processor 2
(the emulated Cortex-M) at 0x10-0x1C:

| offset | C1 / C2 | bits |
|---|---|---|
| 0x00 / 0x10 | CxCR | RXOIE (0): RX-occupied interrupt enable; TXFIE (16): TX-free enable |
| 0x04 / 0x14 | CxMR | CHnOM (n-1): channel n occupied mask; CHnFM (16+n-1): free mask |
| 0x08 / 0x18 | CxSCR (write) | CHnC (n-1): clear the other's flag n; CHnS (16+n-1): set own |
| 0x0C / 0x1C | CxTOCySR (read) | CHnF (n-1): own flag n (channel n occupied towards the other) |
| 0x3F0 | HWCFGR | CHANNELS (7:0) |
| 0x3F4 / 0x3F8 / 0x3FC | VER / IPIDR / SIDR | identification |

Params: ``channels`` (HWCFGR, default 6), ``rx_irq`` / ``tx_irq`` (the emulated processor's
RX-occupied and TX-free NVIC lines: 103/104 on STM32MP157's Cortex-M4).

Rules:
- The host side (processor 1) is the platform driver, as Linux's stm32-ipcc is on a real SoC:
  ``host_set(ch)`` rings channel ``ch``; a channel still occupied keeps the request and re-rings
  it when the firmware frees it (the mailbox framework's queue); ``on_host_rx(ch)`` is called
  when the firmware sets its flag (the host then acknowledges with ``host_clear``);
  ``on_host_tx_free(ch)`` when the firmware acknowledges the host's flag. Callbacks run on the
  caller's thread outside the lock; the platform posts them to its dispatcher.
- Lines are level: RX while an unmasked host flag is set and RXOIE; TX while an unmasked own
  flag is clear and TXFIE.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    register_model,
)

__all__ = ["Ipcc"]

CR1, MR1, SCR1, SR1 = 0x00, 0x04, 0x08, 0x0C
CR2, MR2, SCR2, SR2 = 0x10, 0x14, 0x18, 0x1C
HWCFGR, VER, IPIDR, SIDR = 0x3F0, 0x3F4, 0x3F8, 0x3FC
RXOIE, TXFIE = 1 << 0, 1 << 16
_NAMES = {CR1: "C1CR", MR1: "C1MR", SCR1: "C1SCR", SR1: "C1TOC2SR", CR2: "C2CR", MR2: "C2MR",
          SCR2: "C2SCR", SR2: "C2TOC1SR", HWCFGR: "HWCFGR", VER: "VER", IPIDR: "IPIDR",
          SIDR: "SIDR"}


@register_model("stm32-ipcc")
class Ipcc(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        p = spec.params
        self.channels = self.int_param(p, "channels", 6)
        self.rx_irq = self.int_param(p, "rx_irq", 103)
        self.tx_irq = self.int_param(p, "tx_irq", 104)
        self.mask = (1 << self.channels) - 1
        self.names.names.update(_NAMES)
        self.names.resets.update({HWCFGR: self.channels, VER: 0x10, IPIDR: 0x100071,
                                  SIDR: 0xA3C5DD01, MR1: 0, MR2: 0})
        self._lock = threading.Lock()
        self.on_host_rx: Callable[[int], None] | None = None
        self.on_host_tx_free: Callable[[int], None] | None = None
        self.reset()

    @classmethod
    def param_names(cls) -> set[str]:
        return {"channels", "rx_irq", "tx_irq"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        ch = cls.int_param(params, "channels", 6)
        if not 1 <= ch <= 16:
            raise ValueError(f"params.channels: {ch} (an IPCC has 1 to 16 channels)")
        for k in ("rx_irq", "tx_irq"):
            if cls.int_param(params, k, 0) >= 240:
                raise ValueError(f"params.{k}: an NVIC has IRQs 0-239")

    def reset(self, *, clear_retained: bool = False) -> None:
        with self._lock:
            full = self.mask | (self.mask << 16)
            self.cr = [0, 0, 0]
            self.mr = [0, full, full]  # reset: every channel masked (RM0436)
            self.flags = [0, 0, 0]  # flags[p]: channels processor p set towards the other
            self.pending = 0  # host requests waiting for their channel to be freed
        # A reset core starts with no interrupt pending; nothing to tell.

    # ---- firmware side ------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset in (CR1, CR2):
                return self.cr[1 if offset == CR1 else 2]
            if offset in (MR1, MR2):
                return self.mr[1 if offset == MR1 else 2]
            if offset in (SCR1, SCR2):
                return 0
            if offset in (SR1, SR2):
                return self.flags[1 if offset == SR1 else 2]
            if offset == HWCFGR:
                return self.channels
            if offset in (VER, IPIDR, SIDR):
                return self.names.resets[offset]
        return super().read(offset, size)

    def write(self, offset: int, value: int, size: int) -> None:
        if offset not in (CR1, CR2, MR1, MR2, SCR1, SCR2):
            super().write(offset, value, size)
            return
        proc = 1 if offset < CR2 else 2
        self._write(proc, offset & 0xF, value)

    def _write(self, proc: int, reg: int, value: int) -> None:
        other = 3 - proc
        set_by_remote = cleared_for_host = 0
        with self._lock:
            if reg == 0x0:
                self.cr[proc] = value & (RXOIE | TXFIE)
            elif reg == 0x4:
                self.mr[proc] = value & (self.mask | (self.mask << 16))
            elif reg == 0x8:
                clear = value & self.mask & self.flags[other]
                setb = (value >> 16) & self.mask & ~self.flags[proc]
                self.flags[other] &= ~clear
                self.flags[proc] |= setb
                if proc == 2:
                    set_by_remote = setb
                    cleared_for_host = clear
                    # The mailbox framework's queue: a request that found its channel busy
                    # goes out as soon as the firmware frees the channel.
                    resend = clear & self.pending
                    self.pending &= ~resend
                    self.flags[1] |= resend
        if set_by_remote and self.on_host_rx is not None:
            for ch in range(self.channels):
                if set_by_remote >> ch & 1:
                    self.on_host_rx(ch)
        if cleared_for_host and self.on_host_tx_free is not None:
            for ch in range(self.channels):
                if cleared_for_host >> ch & 1:
                    self.on_host_tx_free(ch)
        self.irq_changed()

    def lines(self) -> int:
        with self._lock:
            lines = 0
            if self.cr[2] & RXOIE and self.flags[1] & ~self.mr[2] & self.mask:
                lines |= 1 << self.rx_irq
            if self.cr[2] & TXFIE and ~self.flags[2] & ~(self.mr[2] >> 16) & self.mask:
                lines |= 1 << self.tx_irq
            return lines

    # ---- host side (processor 1, the platform driver) ----------------------------------------

    def host_set(self, ch: int) -> bool:
        """Ring channel ``ch`` towards the firmware; False if it was busy (queued)."""
        with self._lock:
            bit = 1 << ch
            if self.flags[1] & bit:
                self.pending |= bit
                return False
            self.flags[1] |= bit
        self.irq_changed()
        return True

    def host_clear(self, ch: int) -> None:
        """Acknowledge the firmware's flag on ``ch`` (C1SCR CHnC)."""
        with self._lock:
            self.flags[2] &= ~(1 << ch)
        self.irq_changed()

    def host_busy(self, ch: int) -> bool:
        with self._lock:
            return bool((self.flags[1] | self.pending) >> ch & 1)

    def remote_flag(self, ch: int) -> bool:
        with self._lock:
            return bool(self.flags[2] >> ch & 1)
