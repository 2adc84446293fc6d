"""RISC-V (RV32IMAC / RV64IMAC, machine mode) on unicorn: interrupt entry, mret, wfi, faults.

Owns ``RiscV`` (a ``cpu.Core``).

How traps work here:
- unicorn executes CSR instructions and ``mret`` itself (mret restores MIE from MPIE and jumps
  to mepc), and ``wfi`` ends ``emu_start`` with the pc just past it. It does not raise
  interrupts: the run loop does, with the emulation stopped. Entry sets ``mepc`` to the
  interrupted pc, ``mcause`` to ``0x8000000B`` (machine external = mailbox line) or
  ``0x80000007`` (machine timer = timer line; bit 63 on RV64), moves MIE to MPIE, clears MIE,
  sets MPP to machine mode and jumps to ``mtvec`` (direct mode; vectored mode adds 4 * cause).
- Lines map to ``mip`` bits MEIP (11) and MTIP (7); an interrupt is taken when the bit is also
  set in ``mie`` and ``mstatus.MIE`` is set; external has priority over timer. ``mip`` itself is
  not written into unicorn (QEMU would then try to deliver it its own way); firmware reads the
  lines in sysctl ``IRQ_PENDING``.
- Synchronous exceptions (illegal instruction, ecall, ebreak, misaligned or faulting accesses)
  are not vectored: they become crash reports. unicorn's interrupt hook sees the pc 4 bytes past
  the faulting instruction whatever its length, so the report subtracts 4.
"""

from __future__ import annotations

from unicorn import UC_ARCH_RISCV, UC_HOOK_INTR, UC_MODE_RISCV32, UC_MODE_RISCV64, UC_TLB_VIRTUAL
from unicorn.riscv_const import (
    UC_RISCV_REG_MCAUSE,
    UC_RISCV_REG_MEPC,
    UC_RISCV_REG_MIE,
    UC_RISCV_REG_MSTATUS,
    UC_RISCV_REG_MTVEC,
    UC_RISCV_REG_PC,
    UC_RISCV_REG_SP,
    UC_RISCV_REG_X1,
)

from remoteproc.core.states import CrashType
from remoteproc.platforms.emulator.cores.cpu import Core, Fault, Uc, new_uc

__all__ = ["RiscV"]

_MSTATUS_MIE = 1 << 3
_MSTATUS_MPIE = 1 << 7
_MSTATUS_MPP = 3 << 11
_MEIP, _MTIP = 1 << 11, 1 << 7
_WFI = b"\x73\x00\x50\x10"
_CAUSES = {0: "instruction address misaligned", 1: "instruction access fault",
           2: "illegal instruction", 3: "breakpoint (ebreak)", 4: "load address misaligned",
           5: "load access fault", 6: "store address misaligned", 7: "store access fault",
           8: "ecall", 9: "ecall", 11: "ecall", 12: "instruction page fault",
           13: "load page fault", 15: "store page fault"}
_MMU_CAUSES = {1, 5, 7, 12, 13, 15}


class RiscV(Core):
    arch = "riscv"

    def _new_uc(self) -> Uc:
        uc = new_uc(UC_ARCH_RISCV, UC_MODE_RISCV64 if self.spec.bits == 64 else UC_MODE_RISCV32)
        # Firmware runs in machine mode with no address translation, so unicorn's identity TLB
        # is exact. With the CPU's own TLB, every mstatus write at interrupt entry (MPP) flushes
        # it, which measured ~290 us per interrupt; the identity TLB takes that to ~1.5 us.
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        return uc

    @property
    def _irq_bit(self) -> int:
        return 1 << (self.spec.bits - 1)

    def _reg_bits(self) -> int:
        return int(self.spec.bits)

    def _install_hooks(self, uc: Uc) -> None:
        uc.hook_add(UC_HOOK_INTR, self._on_intr)

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        self._intr(intno, self.regs.read(UC_RISCV_REG_PC))

    def _reset_regs(self, uc: Uc, entry: int) -> None:
        sram = self.amap.find("sram") or next(iter(self.amap))
        uc.reg_write(UC_RISCV_REG_SP, sram.end)
        uc.reg_write(UC_RISCV_REG_PC, entry)

    def pc(self) -> int:
        assert self.uc is not None
        return self.regs.read(UC_RISCV_REG_PC)

    def _begin(self) -> int:
        return self.pc()

    def _after_wfi(self) -> bool:
        assert self.uc is not None
        try:
            return bytes(self.uc.mem_read(self.pc() - 4, 4)) == _WFI
        except Exception:
            return False

    @staticmethod
    def _mip(lines: int) -> int:
        return (_MEIP if lines & 1 else 0) | (_MTIP if lines & 2 else 0)

    def _wakes(self, lines: int) -> bool:
        assert self.uc is not None
        return bool(self._mip(lines) & self.regs.read(UC_RISCV_REG_MIE))

    def _can_enter(self) -> bool:
        assert self.uc is not None
        return bool(self.regs.read(UC_RISCV_REG_MSTATUS) & _MSTATUS_MIE)

    def _take_interrupt(self, lines: int) -> bool:
        uc = self.uc
        assert uc is not None
        if not lines:
            return False
        pending = self._mip(lines) & self.regs.read(UC_RISCV_REG_MIE)
        if not pending:
            return False
        mstatus = self.regs.read(UC_RISCV_REG_MSTATUS)
        if not mstatus & _MSTATUS_MIE:
            return False
        cause = 11 if pending & _MEIP else 7
        pc = self.pc()
        mstatus = (mstatus & ~(_MSTATUS_MIE | _MSTATUS_MPIE)) | _MSTATUS_MPIE | _MSTATUS_MPP
        self.regs.writes(((UC_RISCV_REG_MSTATUS, mstatus), (UC_RISCV_REG_MEPC, pc),
                          (UC_RISCV_REG_MCAUSE, self._irq_bit | cause)))
        mtvec = self.regs.read(UC_RISCV_REG_MTVEC)
        target = mtvec & ~3
        if mtvec & 3 == 1:
            target += 4 * cause
        self.regs.write(UC_RISCV_REG_PC, target)
        return True

    def _handle_trap(self, intno: int, pc: int) -> Fault | None:
        fault_pc = pc - 4
        what = _CAUSES.get(intno, f"CPU exception {intno}")
        kind = CrashType.MMUFAULT if intno in _MMU_CAUSES else CrashType.FATAL_ERROR
        return Fault(kind, what, fault_pc)

    def _finish_fault(self, fault: Fault) -> Fault:
        fault = super()._finish_fault(fault)
        fault.regs["pc"] = fault.pc  # the hook's pc is past the instruction: report the culprit
        return fault

    def read_regs(self) -> dict[str, int]:
        uc = self.uc
        assert uc is not None
        regs = {"pc": int(uc.reg_read(UC_RISCV_REG_PC))}
        for i in range(1, 32):
            regs[f"x{i}"] = int(uc.reg_read(UC_RISCV_REG_X1 + i - 1))
        return regs
