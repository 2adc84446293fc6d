"""STM32 GPIO port (the layout shared by STM32MP1/MP2, H7, L4...).

Owns ``Gpio`` (``model = "stm32-gpio"``): MODER 0x00, OTYPER 0x04, OSPEEDR 0x08, PUPDR 0x0C,
IDR 0x10 (read-only: the pins driven as outputs read back ODR, inputs read 0), ODR 0x14, BSRR
0x18 (write: bits 0-15 set, 16-31 reset ODR; reads 0), LCKR 0x1C, AFRL 0x20, AFRH 0x24, BRR
0x28. Nothing is wired to a pin; ``odr`` is what a test or tool looks at.
"""

from __future__ import annotations

import threading

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    register_model,
)

__all__ = ["Gpio"]

_NAMES = ("MODER", "OTYPER", "OSPEEDR", "PUPDR", "IDR", "ODR", "BSRR", "LCKR", "AFRL", "AFRH",
          "BRR")
MODER, IDR, ODR, BSRR, BRR = 0x00, 0x10, 0x14, 0x18, 0x28


@register_model("stm32-gpio")
class Gpio(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self.names.names.update({4 * i: n for i, n in enumerate(_NAMES)})
        self._lock = threading.Lock()
        self.reset()

    def reset(self, *, clear_retained: bool = False) -> None:
        with self._lock:
            self.regs = dict.fromkeys(range(0, 0x2C, 4), 0)
            self.regs[MODER] = 0xFFFF_FFFF  # analog mode after reset (RM0436)

    def _outputs(self) -> int:
        moder = self.regs[MODER]
        return sum(1 << pin for pin in range(16) if (moder >> (2 * pin)) & 3 == 1)

    def read(self, offset: int, size: int) -> int:
        if offset >= 0x2C or offset % 4:
            return super().read(offset, size)
        with self._lock:
            if offset == IDR:
                return self.regs[ODR] & self._outputs()
            if offset in (BSRR, BRR):
                return 0
            return self.regs[offset]

    def write(self, offset: int, value: int, size: int) -> None:
        if offset >= 0x2C or offset % 4:
            super().write(offset, value, size)
            return
        with self._lock:
            if offset == BSRR:
                self.regs[ODR] = (self.regs[ODR] | (value & 0xFFFF)) & ~(value >> 16) & 0xFFFF
            elif offset == BRR:
                self.regs[ODR] &= ~value & 0xFFFF
            elif offset != IDR:
                self.regs[offset] = value & 0xFFFF_FFFF

    @property
    def odr(self) -> int:
        with self._lock:
            return self.regs[ODR]
