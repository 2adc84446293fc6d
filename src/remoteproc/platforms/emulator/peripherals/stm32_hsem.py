"""STM32 HSEM (hardware semaphores) with the lock read back by core ID.

Owns ``Hsem`` (``model = "stm32-hsem"``). Layout (STM32MP1 RM0436 "HSEM"):

| offset | register | behaviour |
|---|---|---|
| 0x00 + 4i | R[i] | write LOCK(31)=1, COREID(11:8), PROCID(7:0): 2-step lock (see below) |
| 0x80 + 4i | RLR[i] | read: 1-step lock (PROCID 0) if free; returns the owner either way |
| 0x100 / 0x110 | C1IER / C2IER | interrupt enable per semaphore (on unlock) |
| 0x104 / 0x114 | C1ICR / C2ICR | write 1 to clear the status |
| 0x108 / 0x118 | C1ISR / C2ISR | a semaphore was freed |
| 0x10C / 0x11C | C1MISR / C2MISR | ISR & IER |
| 0x140 | CR | write KEY(31:16) = KEYR's key and COREID(11:8): free every semaphore of that core |
| 0x144 | KEYR | KEY (31:16) |

R[i]: a lock is taken only if the semaphore is free and COREID is the writing core's own; a
write with LOCK=0 and the owner's COREID and PROCID frees it. A read gives LOCK, COREID and
PROCID of the owner (0 when free): the lock read back by core ID.

Core IDs on STM32MP1: 1 = Cortex-A7 (the host), 2 = Cortex-M4 (HSEM_CPU1_COREID /
HSEM_CPU2_COREID). Params: ``core_id`` (the emulated core's, default 2), ``semaphores`` (32),
``irq`` (the core's HSEM line: HSEM_IT2 = 125 on the M4).

Rules: a 1-step read lock changes state (``read_changes_state``), so the core answers a
repeated read from its record (exactly once, cores/cpu.py). The host takes and frees semaphores
as core 1 with ``host_lock`` / ``host_unlock``.
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

__all__ = ["Hsem"]

LOCK = 1 << 31
IER, ICR, ISR, MISR = 0x100, 0x104, 0x108, 0x10C
CR, KEYR = 0x140, 0x144
HOST_CORE = 1


@register_model("stm32-hsem")
class Hsem(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        p = spec.params
        self.core_id = self.int_param(p, "core_id", 2)
        self.count = self.int_param(p, "semaphores", 32)
        self.irq = self.int_param(p, "irq", 125)
        for i in range(self.count):
            self.names.names[4 * i] = f"R{i}"
            self.names.names[0x80 + 4 * i] = f"RLR{i}"
        for c in (1, 2):
            base = IER + 0x10 * (c - 1)
            for off, n in ((0, "IER"), (4, "ICR"), (8, "ISR"), (12, "MISR")):
                self.names.names[base + off] = f"C{c}{n}"
        self.names.names.update({CR: "CR", KEYR: "KEYR"})
        self._lock = threading.Lock()
        self.owner: list[int] = [0] * self.count
        self.ier = [0, 0, 0]
        self.isr = [0, 0, 0]
        self.key = 0
        self.reset()

    @classmethod
    def param_names(cls) -> set[str]:
        return {"core_id", "semaphores", "irq"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        if not 1 <= cls.int_param(params, "semaphores", 32) <= 32:
            raise ValueError("params.semaphores: 1 to 32")
        if not 1 <= cls.int_param(params, "core_id", 2) <= 15:
            raise ValueError("params.core_id: 1 to 15")
        if cls.int_param(params, "irq", 125) >= 240:
            raise ValueError("params.irq: an NVIC has IRQs 0-239")

    def reset(self, *, clear_retained: bool = False) -> None:
        """The emulated core restarts: its semaphores are freed and its interrupt block
        cleared; what the other core (the host) holds is kept, as on the SoC, where the HSEM
        is not reset with one processor."""
        with self._lock:
            for i, own in enumerate(self.owner):
                if own and (own >> 8) & 0xF == self.core_id:
                    self.owner[i] = 0
            self.ier[self.core_id] = 0
            self.isr[self.core_id] = 0

    def _unlock(self, i: int) -> None:
        # lock held
        self.owner[i] = 0
        for c in (1, 2):
            self.isr[c] |= 1 << i

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset < 4 * self.count:
                return self.owner[offset // 4]
            if 0x80 <= offset < 0x80 + 4 * self.count:
                i = (offset - 0x80) // 4
                if not self.owner[i]:
                    self.owner[i] = LOCK | self.core_id << 8
                return self.owner[i]
            if IER <= offset < IER + 0x20:
                c = 1 + (offset - IER) // 0x10
                reg = (offset - IER) % 0x10
                if reg == 0:
                    return self.ier[c]
                if reg == 8:
                    return self.isr[c]
                if reg == 0xC:
                    return self.isr[c] & self.ier[c]
                return 0
            if offset == KEYR:
                return self.key << 16
        return super().read(offset, size)

    def read_changes_state(self, offset: int, value: int) -> bool:
        return 0x80 <= offset < 0x80 + 4 * self.count and value == LOCK | self.core_id << 8

    def write(self, offset: int, value: int, size: int) -> None:
        known = (offset < 4 * self.count or IER <= offset < IER + 0x20
                 or offset in (CR, KEYR))
        if not known:
            super().write(offset, value, size)
            return
        with self._lock:
            if offset < 4 * self.count:
                self._write_r(offset // 4, value, self.core_id)
            elif offset == CR:
                if (value >> 16) == self.key:
                    core = (value >> 8) & 0xF
                    for i, own in enumerate(self.owner):
                        if own and (own >> 8) & 0xF == core:
                            self._unlock(i)
            elif offset == KEYR:
                self.key = (value >> 16) & 0xFFFF
            else:
                c = 1 + (offset - IER) // 0x10
                reg = (offset - IER) % 0x10
                if reg == 0:
                    self.ier[c] = value & ((1 << self.count) - 1)
                elif reg == 4:
                    self.isr[c] &= ~value
        self.irq_changed()

    def _write_r(self, i: int, value: int, writer: int) -> None:
        # lock held
        core, proc = (value >> 8) & 0xF, value & 0xFF
        if core != writer:
            return  # a core cannot lock or free in another core's name
        if value & LOCK:
            if not self.owner[i]:
                self.owner[i] = LOCK | core << 8 | proc
        elif self.owner[i] == LOCK | core << 8 | proc:
            self._unlock(i)

    def lines(self) -> int:
        with self._lock:
            return 1 << self.irq if self.isr[self.core_id] & self.ier[self.core_id] else 0

    # ---- host side -----------------------------------------------------------------------------

    def host_lock(self, i: int, proc: int = 0) -> bool:
        with self._lock:
            self._write_r(i, LOCK | HOST_CORE << 8 | proc, HOST_CORE)
            return self.owner[i] == LOCK | HOST_CORE << 8 | proc

    def host_unlock(self, i: int, proc: int = 0) -> None:
        with self._lock:
            self._write_r(i, HOST_CORE << 8 | proc, HOST_CORE)
        self.irq_changed()

    def owner_of(self, i: int) -> int:
        with self._lock:
            return self.owner[i]
