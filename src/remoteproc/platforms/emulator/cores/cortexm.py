"""Cortex-M4 on unicorn: exception entry and return, PRIMASK, a small NVIC, VTOR.

Owns ``CortexM4`` (a ``cpu.Core``) and ``Nvic`` (the System Control Space subset at
``0xE000_E000``: ISER0/ICER0/ISPR0/ICPR0 and VTOR).

How exceptions work here (unicorn models none of it for M-profile):
- Entry (on the core's thread, emulation stopped): push the 8-word frame r0-r3, r12, lr, pc,
  xPSR on the current stack, 8-byte aligned (bit 9 of the stacked xPSR records the padding),
  set ``LR`` to the return marker, write the exception number into IPSR and jump to the vector
  read through ``VTOR``.
- Return: the handler's ``bx lr`` / ``pop {pc}`` fetches from the marker, an unmapped address;
  unicorn reports a prefetch abort (interrupt 3) there, the hook stops emulation, and the loop
  unstacks the frame. The marker is ``0xEFFF_FFF9``, not ``0xFFFF_FFF9``: unicorn's QEMU core
  intercepts fetches from ``0xFFFF_FFxx`` itself (interrupt 8) and cannot resume afterwards.
  Firmware must therefore return with the LR it got and must not test LR's bits.
- Priorities: every IRQ has the same priority, so a handler is never preempted; a line still
  asserted when a handler returns is taken again (tail-chained after unstacking).
- The frame has no floating-point part (as with CONTROL.FPCA = 0): handlers must not use the
  FPU. The stack is the current SP (MSP in the SDK; PSP threads are not modelled).
- HardFault (exception 3) and the other faults are never vectored: they become crash reports.
  ``svc`` is vectored to exception 11 (it returns after the instruction).
"""

from __future__ import annotations

import struct

from unicorn import UC_ARCH_ARM, UC_HOOK_INTR, UC_MODE_MCLASS, UC_MODE_THUMB
from unicorn.arm_const import (
    UC_ARM_REG_LR,
    UC_ARM_REG_PC,
    UC_ARM_REG_PRIMASK,
    UC_ARM_REG_R0,
    UC_ARM_REG_R1,
    UC_ARM_REG_R2,
    UC_ARM_REG_R3,
    UC_ARM_REG_R4,
    UC_ARM_REG_R5,
    UC_ARM_REG_R6,
    UC_ARM_REG_R7,
    UC_ARM_REG_R8,
    UC_ARM_REG_R9,
    UC_ARM_REG_R10,
    UC_ARM_REG_R11,
    UC_ARM_REG_R12,
    UC_ARM_REG_SP,
    UC_ARM_REG_XPSR,
)

from remoteproc.core.states import CrashType
from remoteproc.platforms.emulator.cores.cpu import Core, Fault, Uc, new_uc
from remoteproc.platforms.emulator.machine import SCS_BASE, SCS_SIZE

__all__ = ["EXC_RETURN", "CortexM4", "Nvic"]

EXC_RETURN = 0xEFFF_FFF9  # LR on exception entry (see the module docstring)
_MARK_MASK = 0xFFFF_FF00
_MARK = EXC_RETURN & _MARK_MASK
_IRQ_BASE = 16  # IRQ n is exception 16 + n
_SVC = 11
_FRAME = struct.Struct("<8I")
_REGS = (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_R4,
         UC_ARM_REG_R5, UC_ARM_REG_R6, UC_ARM_REG_R7, UC_ARM_REG_R8, UC_ARM_REG_R9,
         UC_ARM_REG_R10, UC_ARM_REG_R11, UC_ARM_REG_R12, UC_ARM_REG_SP, UC_ARM_REG_LR,
         UC_ARM_REG_PC)
_STACKED = (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_R12,
            UC_ARM_REG_LR)
_INTR_NAMES = {1: "undefined instruction", 2: "svc", 3: "prefetch abort (bad fetch)",
               4: "data abort", 5: "irq", 6: "fiq", 7: "bkpt",
               8: "exception return to 0xFFFFFFxx (unsupported; return with the LR given)"}


class Nvic:
    """ISER/ICER/ISPR/ICPR (240 lines) and VTOR; no lock needed (one thread uses it)."""

    def __init__(self) -> None:
        self.enabled = 0
        self.sw_pending = 0
        self.vtor = 0

    # ISER/ICER/ISPR/ICPR hold 8 words each (240 lines, IRQ n in word n // 32); SoC models
    # (peripherals/) assert lines above 31 (STM32MP157's IPCC is IRQ 103).
    def read(self, offset: int) -> int:
        word = (offset & 0x1F) >> 2
        if 0x100 <= offset < 0x120 or 0x180 <= offset < 0x1A0:
            return (self.enabled >> (32 * word)) & 0xFFFF_FFFF
        if 0x200 <= offset < 0x220 or 0x280 <= offset < 0x2A0:
            return (self.sw_pending >> (32 * word)) & 0xFFFF_FFFF
        if offset == 0xD08:
            return self.vtor
        return 0

    def write(self, offset: int, value: int) -> bool:
        """Returns True when the write may have made an interrupt deliverable."""
        bits = (value & 0xFFFF_FFFF) << (32 * ((offset & 0x1F) >> 2))
        if 0x100 <= offset < 0x120:
            self.enabled |= bits
            return True
        if 0x180 <= offset < 0x1A0:
            self.enabled &= ~bits
        elif 0x200 <= offset < 0x220:
            self.sw_pending |= bits
            return True
        elif 0x280 <= offset < 0x2A0:
            self.sw_pending &= ~bits
        elif offset == 0xD08:
            self.vtor = value & 0xFFFF_FF80
        return False


class CortexM4(Core):
    arch = "arm"
    nvic: Nvic
    active: list[int]
    _pending_fault: Fault | None

    def _new_uc(self) -> Uc:
        return new_uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)

    def _on_start(self) -> None:
        self.nvic = Nvic()
        self.active = []
        self._pending_fault: Fault | None = None

    def _extra_mmio(self, uc: Uc) -> None:
        uc.mmio_map(SCS_BASE, SCS_SIZE, self._scs_read, None, self._scs_write, None)

    def _scs_read(self, uc: Uc, offset: int, size: int, _ud: object) -> int:
        return self._mmio_access((1, 0, offset, size, 0), lambda: self.nvic.read(offset))

    def _scs_write(self, uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
        # Through _mmio_access like every MMIO write: a repeated ICPR write after a rollback
        # would clear a line pended in between.
        wake = False

        def write() -> int:
            nonlocal wake
            wake = self.nvic.write(offset, value)
            return 0

        self._mmio_access((1, 1, offset, size, value), write)
        if wake:
            self.irq_changed()

    def _install_hooks(self, uc: Uc) -> None:
        uc.hook_add(UC_HOOK_INTR, self._on_intr)

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        self._intr(intno, uc.reg_read(UC_ARM_REG_PC))

    def _reset_regs(self, uc: Uc, entry: int) -> None:
        # Vector 0 is the initial MSP when the table is in memory; the SDK's Reset_Handler sets
        # SP itself anyway (a loader need not read vector 0).
        sp = 0
        view = self.amap.translate(0, 4)
        if view is not None:
            sp = struct.unpack("<I", view)[0]
        if sp == 0 or self.amap.translate((sp - 4) & 0xFFFF_FFFF, 4) is None:
            sram = self.amap.find("sram") or next(iter(self.amap))
            sp = sram.end
        uc.reg_write(UC_ARM_REG_SP, sp)
        uc.reg_write(UC_ARM_REG_LR, 0xFFFF_FFFF)
        uc.reg_write(UC_ARM_REG_PC, entry & ~1)
        self._entry = entry

    def pc(self) -> int:
        assert self.uc is not None
        return int(self.uc.reg_read(UC_ARM_REG_PC))

    def _begin(self) -> int:
        return self.pc() | 1

    def _after_wfi(self) -> bool:
        assert self.uc is not None
        pc = self.pc()
        try:
            if bytes(self.uc.mem_read(pc - 2, 2)) == b"\x30\xbf":  # wfi (T1)
                return True
            return bytes(self.uc.mem_read(pc - 4, 4)) == b"\xaf\xf3\x03\x80"  # wfi.w (T2)
        except Exception:
            return False

    def _pending(self, lines: int) -> int:
        return (lines | self.nvic.sw_pending) & self.nvic.enabled

    def _wakes(self, lines: int) -> bool:
        return bool(self._pending(lines))

    def _can_enter(self) -> bool:
        assert self.uc is not None
        return not self.active and not self.uc.reg_read(UC_ARM_REG_PRIMASK) & 1

    def _take_interrupt(self, lines: int) -> bool:
        pending = self._pending(lines)
        if not pending or not self._can_enter():
            return False
        irq = (pending & -pending).bit_length() - 1
        self.nvic.sw_pending &= ~(1 << irq)
        return self._enter(_IRQ_BASE + irq, self.pc())

    def _enter(self, exc: int, return_pc: int) -> bool:
        uc = self.uc
        assert uc is not None
        sp = uc.reg_read(UC_ARM_REG_SP)
        xpsr = uc.reg_read(UC_ARM_REG_XPSR)
        frame_sp = (sp - 32) & ~7
        stacked_xpsr = (xpsr & ~0x200) | (0x200 if sp & 4 else 0)
        values = [uc.reg_read(r) for r in _STACKED] + [return_pc & ~1, stacked_xpsr]
        vector_addr = self.nvic.vtor + 4 * exc
        vec = self.amap.translate(vector_addr, 4)
        stack = self.amap.translate(frame_sp, 32)
        if vec is None or stack is None:
            what = "vector table" if vec is None else "stack"
            where = vector_addr if vec is None else frame_sp
            self._pending_fault = Fault(CrashType.MMUFAULT,
                                        f"exception {exc} entry: {what} at {where:#x} unmapped",
                                        return_pc, address=where)
            self.request_fault(self._pending_fault)
            return False
        stack[:] = _FRAME.pack(*values)
        handler = struct.unpack("<I", vec)[0]
        uc.reg_write(UC_ARM_REG_SP, frame_sp)
        uc.reg_write(UC_ARM_REG_LR, EXC_RETURN)
        uc.reg_write(UC_ARM_REG_XPSR, (xpsr & ~0x1FF) | exc | (1 << 24))
        uc.reg_write(UC_ARM_REG_PC, handler & ~1)
        self.active.append(exc)
        return True

    def _exception_return(self) -> Fault | None:
        uc = self.uc
        assert uc is not None
        if not self.active:
            return Fault(CrashType.FATAL_ERROR, "exception return outside a handler", self.pc())
        sp = uc.reg_read(UC_ARM_REG_SP)
        stack = self.amap.translate(sp, 32)
        if stack is None:
            return Fault(CrashType.MMUFAULT, f"exception return: stack at {sp:#x} unmapped",
                         self.pc(), address=sp)
        r0, r1, r2, r3, r12, lr, pc, xpsr = _FRAME.unpack(stack)
        for reg, val in zip(_STACKED, (r0, r1, r2, r3, r12, lr), strict=True):
            uc.reg_write(reg, val)
        uc.reg_write(UC_ARM_REG_SP, sp + 32 + (4 if xpsr & 0x200 else 0))
        uc.reg_write(UC_ARM_REG_XPSR, (xpsr & ~0x3FF) | (1 << 24))
        uc.reg_write(UC_ARM_REG_PC, pc & ~1)
        self.active.pop()
        return None

    def _handle_trap(self, intno: int, pc: int) -> Fault | None:
        if intno == 3 and pc & _MARK_MASK == _MARK:
            return self._exception_return()
        if intno == 2:  # svc: vector it, returning after the instruction
            if self._enter(_SVC, pc):
                return None
            return self._pending_fault
        what = _INTR_NAMES.get(intno, f"CPU exception {intno}")
        if intno == 3:
            return Fault(CrashType.MMUFAULT, f"instruction fetch from unmapped memory at "
                         f"{pc:#x}", pc, address=pc)
        if intno == 4:
            return Fault(CrashType.MMUFAULT, what, pc)
        return Fault(CrashType.FATAL_ERROR, f"{what} (HardFault)", pc)

    def read_regs(self) -> dict[str, int]:
        uc = self.uc
        assert uc is not None
        regs = {f"r{i}": int(uc.reg_read(r)) for i, r in enumerate(_REGS)}
        regs["cpsr"] = int(uc.reg_read(UC_ARM_REG_XPSR))
        return regs
