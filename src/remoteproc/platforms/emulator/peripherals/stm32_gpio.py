"""STM32 GPIO port (the layout shared by STM32MP1/MP2, H7, L4...).

Owns ``Gpio`` (``model = "stm32-gpio"``): MODER 0x00, OTYPER 0x04, OSPEEDR 0x08, PUPDR 0x0C,
IDR 0x10 (read-only: the pins driven as outputs read back ODR, inputs read 0), ODR 0x14, BSRR
0x18 (write: bits 0-15 set, 16-31 reset ODR; reads 0), LCKR 0x1C, AFRL 0x20, AFRH 0x24, BRR
0x28. Nothing is wired to a pin; ``odr`` is what a test or tool looks at.

``params.rif = true`` (STM32MP2): the port's resource-isolation registers as well, which
STM32CubeMP2's resource manager reads before it uses a pin: SECCFGR 0x30, PRIVCFGR 0x34,
RCFGLOCKR 0x38, then CIDCFGRn 0x50 + 8n and SEMCRn 0x54 + 8n for pins 0-15 (the STM32MP2
CMSIS header's GPIO_TypeDef). They read back what was written, 0 after reset: pins neither
secure nor privileged, no CID filtering, as the Cortex-A side leaves the DK's pins for the M33.
"""

from __future__ import annotations

import threading
from typing import Any

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
_RIF = {0x30: "SECCFGR", 0x34: "PRIVCFGR", 0x38: "RCFGLOCKR"}
_RIF.update({0x50 + 8 * n: f"CIDCFGR{n}" for n in range(16)})
_RIF.update({0x54 + 8 * n: f"SEMCR{n}" for n in range(16)})


@register_model("stm32-gpio")
class Gpio(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self.names.names.update({4 * i: n for i, n in enumerate(_NAMES)})
        rif = spec.params.get("rif", False)
        self.rif: dict[int, str] = dict(_RIF) if rif else {}
        self.names.names.update(self.rif)
        self._lock = threading.Lock()
        self.reset()

    @classmethod
    def param_names(cls) -> set[str]:
        return {"rif"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        if not isinstance(params.get("rif", False), bool):
            raise ValueError(f"params.rif: expected true or false, not {params['rif']!r}")

    def reset(self, *, clear_retained: bool = False) -> None:
        with self._lock:
            self.regs = dict.fromkeys(range(0, 0x2C, 4), 0)
            self.regs[MODER] = 0xFFFF_FFFF  # analog mode after reset (RM0436)
            self.regs.update(dict.fromkeys(self.rif, 0))

    def _outputs(self) -> int:
        moder = self.regs[MODER]
        return sum(1 << pin for pin in range(16) if (moder >> (2 * pin)) & 3 == 1)

    def read(self, offset: int, size: int) -> int:
        if offset in self.rif and size == 4:
            with self._lock:
                return self.regs[offset]
        if offset >= 0x2C or offset % 4:
            return super().read(offset, size)
        with self._lock:
            if offset == IDR:
                return self.regs[ODR] & self._outputs()
            if offset in (BSRR, BRR):
                return 0
            return self.regs[offset]

    def write(self, offset: int, value: int, size: int) -> None:
        if offset in self.rif and size == 4:
            with self._lock:
                self.regs[offset] = value & 0xFFFF_FFFF
            return
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
