"""STM32 USART/UART (the "v2" USART of STM32MP1/MP2, H7, L4...): transmit to the processor's
console log, status bits that say ready.

Owns ``Usart`` (``model = "stm32-usart"``). Registers: CR1 0x00 (UE 0, RE 2, TE 3, TCIE 6,
TXEIE 7), CR2 0x04, CR3 0x08, BRR 0x0C, GTPR 0x10, RTOR 0x14, RQR 0x18, ISR 0x1C (TC 6,
TXE/TXFNF 7, TEACK 21, REACK 22), ICR 0x20, RDR 0x24, TDR 0x28, PRESC 0x2C.

Rules:
- Transmission is instant: ISR always shows TXE and TC; TEACK/REACK follow CR1's TE/RE while UE
  is set. A byte written to TDR goes to the console line buffer; a newline ends the line, which
  is kept (``console``) and logged by the platform, like the virtual SoC's console register.
- Nothing is ever received: RXNE stays 0 and RDR reads 0.
- The interrupt line (param ``irq``) is asserted while TXEIE or TCIE is enabled (both flags are
  always set).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    register_model,
)

__all__ = ["Usart"]

CR1, CR2, CR3, BRR, GTPR, RTOR, RQR, ISR, ICR, RDR, TDR, PRESC = range(0, 0x30, 4)
UE, RE, TE, TCIE, TXEIE = 1 << 0, 1 << 2, 1 << 3, 1 << 6, 1 << 7
TC, TXE, TEACK, REACK = 1 << 6, 1 << 7, 1 << 21, 1 << 22
CONSOLE_KEEP = 200
_NAMES = ("CR1", "CR2", "CR3", "BRR", "GTPR", "RTOR", "RQR", "ISR", "ICR", "RDR", "TDR", "PRESC")


@register_model("stm32-usart")
class Usart(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self.irq = self.int_param(spec.params, "irq", 0) if "irq" in spec.params else None
        self.is_console = bool(spec.params.get("console", True))
        self.names.names.update({4 * i: n for i, n in enumerate(_NAMES)})
        self.names.resets.update({ISR: TXE | TC})
        self._lock = threading.Lock()
        self.console: collections.deque[str] = collections.deque(maxlen=CONSOLE_KEEP)
        self._line = bytearray()
        self.bytes_sent = 0
        self.reset()

    @classmethod
    def param_names(cls) -> set[str]:
        return {"irq", "console"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        if "irq" in params and cls.int_param(params, "irq", 0) >= 240:
            raise ValueError("params.irq: an NVIC has IRQs 0-239")
        if not isinstance(params.get("console", True), bool):
            raise ValueError("params.console: expected true or false")

    def reset(self, *, clear_retained: bool = False) -> None:
        with self._lock:
            self.regs = dict.fromkeys(range(0, 0x30, 4), 0)
            self._line.clear()

    def read(self, offset: int, size: int) -> int:
        if offset >= 0x30:
            return super().read(offset, size)
        with self._lock:
            if offset == ISR:
                cr1 = self.regs[CR1]
                v = TXE | TC
                if cr1 & UE:
                    v |= (TEACK if cr1 & TE else 0) | (REACK if cr1 & RE else 0)
                return v
            if offset in (RDR, RQR, ICR):
                return 0
            return self.regs[offset & ~3]

    def write(self, offset: int, value: int, size: int) -> None:
        if offset >= 0x30:
            super().write(offset, value, size)
            return
        line: str | None = None
        with self._lock:
            if offset == TDR:
                self.bytes_sent += 1
                ch = value & 0xFF
                if ch == 0x0A:
                    line = self._line.decode("utf-8", "replace")
                    self._line.clear()
                    self.console.append(line)
                elif ch != 0x0D and len(self._line) < 4096:
                    self._line.append(ch)
            elif offset not in (ISR, RDR, RQR, ICR):
                self.regs[offset] = value & 0xFFFF_FFFF
        if line is not None and self.is_console:
            self.ctx.bus.console_line(line)
        if offset == CR1:
            self.irq_changed()

    def lines(self) -> int:
        if self.irq is None:
            return 0
        with self._lock:
            cr1 = self.regs[CR1]
        return 1 << self.irq if cr1 & UE and cr1 & (TXEIE | TCIE) else 0
