"""Cortex-M on unicorn: the ARMv7-M / ARMv8-M exception model, the NVIC, the SCB and SysTick.

Owns ``CortexM4`` (ARMv7-M with the FPv4-SP FPU: the M4F), ``CortexM33`` (ARMv8-M Mainline,
non-secure state, FPv5-SP) and ``Scs`` (the System Control Space at ``0xE000_E000``: SysTick,
NVIC, SCB, MPU_TYPE, FP control).

unicorn executes instructions (including ``msr``/``mrs`` of PRIMASK, BASEPRI, BASEPRI_MAX,
FAULTMASK, CONTROL, MSP, PSP) but models no M-profile exception: every exception is a
``UC_HOOK_INTR`` call (svc = 2, exception return = 8, faults) and this module does the rest, as
the Architecture Reference Manuals' ``ExceptionEntry`` / ``ExceptionReturn`` pseudocode says:

- Entry pushes the basic frame (r0-r3, r12, lr, return address, xPSR) or, when CONTROL.FPCA is
  set, the extended frame (plus s0-s15, FPSCR and a reserved word; "lazy" stacking is done
  eagerly) on the stack in use (PSP in thread mode with CONTROL.SPSEL, else MSP), 8-byte
  aligned (bit 9 of the stacked xPSR records the aligner word). It sets LR to the real
  EXC_RETURN (ARMv7-M ``0xFFFFFFF1/F9/FD``, ``E1/E9/ED`` with an FP frame; ARMv8-M
  non-secure ``0xFFFFFFB0/B8/BC``, ``A0/A8/AC``), IPSR, CONTROL.SPSEL = 0, CONTROL.FPCA = 0
  and jumps to the vector read through VTOR. A literal EXC_RETURN in firmware works.
- Return: a ``bx``/``pop``/``ldr`` of an EXC_RETURN value in handler mode reaches the hook as
  interrupt 8 with the value in the pc. The frame is popped from the stack the value names,
  CONTROL.SPSEL/FPCA and IPSR are restored, FAULTMASK is cleared, and a pending exception that
  can now preempt is taken at once (tail-chaining).
- Both happen with the run stopped: the hook records the exception and ends ``emu_start``, the
  loop enters or returns and resumes at the new pc (writing the pc from inside a hook would
  continue the run, but unicorn would then repeat the next MMIO access behind the
  exactly-once records' back). A counted run (SysTick) stays exact: the instructions it ran
  are read back from unicorn's counter. The registers move in one C call per list
  (``RegAccess``, cores/regs.py).
- Priorities: NVIC_IPR (240 lines), SHPR1-3, AIRCR.PRIGROUP (group and subpriority), with
  ``PRIO_BITS`` (4) implemented bits. Preemption by group priority against the execution
  priority (active exceptions, PRIMASK, BASEPRI, FAULTMASK); among pending exceptions the lowest
  group priority, then subpriority, then exception number wins.
- When masks fall: ``cpsie``, ``msr primask/basepri/basepri_max/faultmask`` and ``isb`` are
  found in the core's memory when it starts (their Thumb encodings, aligned halfwords) and a
  hook on the instruction after each one takes a pending exception there, before that
  instruction. unicorn ends its translation block after each of these instructions (as QEMU
  does, so that a pending interrupt is seen), so the instruction after one always starts a
  block and the hooks are block hooks: a code hook would be checked by unicorn at every
  instruction of a counted run (SysTick), each one slowing the whole run. A pend made by a
  register write (ICSR.PENDSVSET, NVIC_ISPR, STIR) is latched without stopping the run (a
  stopped store is re-executed); if it can preempt at once, the run is also stopped soon after
  (the scheduler), in case no such instruction follows.
- Faults: an undefined instruction, an unmapped access or fetch, a bad EXC_RETURN ... set
  CFSR (and MMFAR/BFAR), then vector to MemManage/BusFault/UsageFault when SHCSR enables it and
  its priority can preempt, else escalate to HardFault (HFSR.FORCED). A fault the firmware
  cannot take (in HardFault or NMI, or under FAULTMASK: lockup) or a vector that is not a Thumb
  address in memory becomes a crash report naming the original fault, its pc and registers.
  When the firmware's own fault handler reports through the FATAL register, the crash report
  also names the original fault (the handler's store is not where the firmware crashed).
- SysTick counts one per emulated instruction at the ``clock_hz`` the machine declares: a run
  is limited (``emu_start(count=)``) to the next tick; a core in ``wfi`` sleeps until the
  tick's wall-clock deadline (remaining cycles / clock_hz) and no longer. unicorn counts
  through a per-instruction hook, which costs most of its speed while SysTick runs; with
  ``clock_mode = "realtime"`` the machine trades exactness for speed: SysTick then counts
  host time at ``clock_hz`` (as QEMU does without -icount), a scheduler deadline stops the
  core at each tick and runs are not counted.

Not modelled (docs/virtual-soc.md): the MPU (MPU_TYPE says none), the security extension
(the M33 is non-secure only), SLEEPONEXIT, the debug monitor, priority boosting by NMI
sources other than ICSR.NMIPENDSET, CPACR access faults (the FPU always works; CPACR reads back
what was written), and imprecise bus faults (every bus fault is precise).
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

from unicorn import (
    UC_ARCH_ARM,
    UC_ERR_INSN_INVALID,
    UC_HOOK_BLOCK,
    UC_HOOK_INTR,
    UC_MODE_MCLASS,
    UC_MODE_THUMB,
)
from unicorn.arm_const import (
    UC_ARM_REG_APSR_NZCV,
    UC_ARM_REG_BASEPRI,
    UC_ARM_REG_CONTROL,
    UC_ARM_REG_FAULTMASK,
    UC_ARM_REG_FPSCR,
    UC_ARM_REG_LR,
    UC_ARM_REG_MSP,
    UC_ARM_REG_PC,
    UC_ARM_REG_PRIMASK,
    UC_ARM_REG_PSP,
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
    UC_ARM_REG_S0,
    UC_ARM_REG_SP,
    UC_ARM_REG_XPSR,
    UC_ARM_REG_XPSR_NZCVQG,
    UC_CPU_ARM_CORTEX_M4,
    UC_CPU_ARM_CORTEX_M33,
)

from remoteproc.core.states import CrashType
from remoteproc.platforms.emulator.cores.cpu import (
    _MMU_ERRORS,
    Core,
    Fault,
    RunCounter,
    Uc,
    new_uc,
)
from remoteproc.platforms.emulator.machine import SCS_BASE, SCS_SIZE
from remoteproc.platforms.emulator.scheduler import Call

__all__ = ["CortexM4", "CortexM33", "Scs"]

# Exception numbers.
RESET, NMI, HARDFAULT, MEMMANAGE, BUSFAULT, USAGEFAULT = 1, 2, 3, 4, 5, 6
SVCALL, DEBUGMON, PENDSV, SYSTICK = 11, 12, 14, 15
IRQ_BASE = 16
NUM_IRQS = 240
_NAMES = {NMI: "NMI", HARDFAULT: "HardFault", MEMMANAGE: "MemManage", BUSFAULT: "BusFault",
          USAGEFAULT: "UsageFault", SVCALL: "SVCall", DEBUGMON: "DebugMonitor",
          PENDSV: "PendSV", SYSTICK: "SysTick"}
PRIO_BITS = 4
_PRIO_MASK = (0xFF << (8 - PRIO_BITS)) & 0xFF

# CFSR bits (MMFSR byte 0, BFSR byte 1, UFSR halfword 2).
IACCVIOL, DACCVIOL, MMARVALID = 1 << 0, 1 << 1, 1 << 7
IBUSERR, PRECISERR, BFARVALID = 1 << 8, 1 << 9, 1 << 15
UNDEFINSTR, INVSTATE, INVPC, NOCP = 1 << 16, 1 << 17, 1 << 18, 1 << 19
STKOF, UNALIGNED, DIVBYZERO = 1 << 20, 1 << 24, 1 << 25
# HFSR bits.
VECTTBL, FORCED, DEBUGEVT = 1 << 1, 1 << 30, 1 << 31
# SHCSR enable bits.
MEMFAULTENA, BUSFAULTENA, USGFAULTENA = 1 << 16, 1 << 17, 1 << 18
_FAULT_ENABLE = {MEMMANAGE: MEMFAULTENA, BUSFAULT: BUSFAULTENA, USAGEFAULT: USGFAULTENA}
# ICSR bits.
NMIPENDSET, PENDSVSET, PENDSVCLR, PENDSTSET, PENDSTCLR = 1 << 31, 1 << 28, 1 << 27, 1 << 26, \
    1 << 25
# SysTick CSR bits.
ST_ENABLE, ST_TICKINT, ST_CLKSOURCE, ST_COUNTFLAG = 1, 2, 4, 1 << 16

_BASIC = struct.Struct("<8I")
_MASKS = (UC_ARM_REG_XPSR, UC_ARM_REG_CONTROL, UC_ARM_REG_BASEPRI, UC_ARM_REG_PRIMASK,
          UC_ARM_REG_FAULTMASK)
_WAKE_MASKS = (UC_ARM_REG_XPSR, UC_ARM_REG_CONTROL, UC_ARM_REG_BASEPRI, UC_ARM_REG_FAULTMASK)
_FP_WORDS = 18  # s0-s15, FPSCR, reserved
_STACKED = (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_R12,
            UC_ARM_REG_LR)
_ENTRY_READS = (*_STACKED, UC_ARM_REG_XPSR, UC_ARM_REG_CONTROL, UC_ARM_REG_MSP, UC_ARM_REG_PSP)
_RETURN_READS = (UC_ARM_REG_CONTROL, UC_ARM_REG_MSP, UC_ARM_REG_PSP)
_SP_SLOTS = (UC_ARM_REG_MSP, UC_ARM_REG_PSP)
_PC_XPSR = (UC_ARM_REG_PC, UC_ARM_REG_XPSR)
_FP_REGS = (*(UC_ARM_REG_S0 + i for i in range(16)), UC_ARM_REG_FPSCR)
_REGS = (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_R4,
         UC_ARM_REG_R5, UC_ARM_REG_R6, UC_ARM_REG_R7, UC_ARM_REG_R8, UC_ARM_REG_R9,
         UC_ARM_REG_R10, UC_ARM_REG_R11, UC_ARM_REG_R12, UC_ARM_REG_SP, UC_ARM_REG_LR,
         UC_ARM_REG_PC)
_DUMP_REGS = (*_REGS, UC_ARM_REG_XPSR)

# unicorn interrupt numbers (QEMU's EXCP_*) -> (exception, CFSR/HFSR bit, description).
_EXCP = {
    1: (USAGEFAULT, UNDEFINSTR, "undefined instruction"),
    3: (BUSFAULT, IBUSERR, "instruction fetch from unmapped memory"),
    4: (BUSFAULT, PRECISERR, "data abort"),
    7: (HARDFAULT, DEBUGEVT, "breakpoint (bkpt) with no debugger"),
    17: (USAGEFAULT, NOCP, "coprocessor access (NOCP)"),
    18: (USAGEFAULT, INVSTATE, "invalid state (INVSTATE)"),
    19: (USAGEFAULT, STKOF, "stack overflow (STKOF)"),
    22: (USAGEFAULT, UNALIGNED, "unaligned access (UNALIGNED)"),
}
_EXCP_SVC, _EXCP_EXIT = 2, 8
_CHECK = -1  # not a unicorn number: a check hook found a takeable exception

# Regions larger than this (the DDR window) are not scanned for unmasking instructions.
_SCAN_LIMIT = 8 << 20


def _group_mask(prigroup: int) -> int:
    return (0xFF << (prigroup + 1)) & 0xFF


class Scs:
    """The architectural state behind the System Control Space (one core's thread only)."""

    def __init__(self, *, cpuid: int, ccr: int, clock_hz: int) -> None:
        self.cpuid = cpuid
        self.ccr = ccr
        self.clock_hz = clock_hz
        self.enabled = 0  # ISER: bit n = IRQ n
        self.pending = 0  # latched pending: bit e = exception e (IRQs at 16+)
        self.active: list[int] = []  # active exceptions, outermost first
        self.active_mask = 0
        self.prio = bytearray(256)  # raw priorities, exceptions 4..255
        self.prigroup = 0
        self.vtor = 0
        self.scr = 0
        self.shcsr = 0  # the enable bits only; active/pended bits are derived
        self.cfsr = 0
        self.hfsr = 0
        self.dfsr = 0
        self.mmfar = 0
        self.bfar = 0
        self.afsr = 0
        self.actlr = 0
        self.cpacr = 0
        self.fpccr = 0xC000_0000  # ASPEN | LSPEN (lazy stacking is performed eagerly)
        self.fpcar = 0
        self.fpdscr = 0
        self.mpu_ctrl = 0
        self.mpu_rnr = 0
        # SysTick: counts one per instruction; the next tick is at cycle ``st_next``.
        self.st_csr = 0
        self.st_rvr = 0
        self.st_cvr = 0  # the current value while disabled
        self.st_next = 0
        self.cycles = 0  # instructions executed (and cycles slept) since reset
        self.reset_requested = False


class CortexM4(Core):
    """ARMv7-M with FPv4-SP: the Cortex-M4F."""

    arch = "arm"
    CPU_MODEL = UC_CPU_ARM_CORTEX_M4
    CPUID = 0x410F_C241  # Cortex-M4 r0p1
    CCR_RESET = 0x0000_0200  # STKALIGN
    V8 = False
    DEFAULT_CLOCK_HZ = 209_000_000
    scs: Scs
    _fault_ctx: dict[int, Fault]
    _pending_fault: Fault | None
    _run_base: int

    # ---- setup -------------------------------------------------------------------------------

    def _new_uc(self) -> Uc:
        uc = new_uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(self.CPU_MODEL)
        return uc

    @property
    def clock_hz(self) -> int:
        hz = getattr(self.spec, "clock_hz", None)
        return int(hz) if hz else self.DEFAULT_CLOCK_HZ

    @property
    def realtime(self) -> bool:
        """SysTick against the host's clock (``clock_mode = "realtime"``), not instructions."""
        return getattr(self.spec, "clock_mode", "instructions") == "realtime"

    def _on_start(self) -> None:
        self.scs = Scs(cpuid=self.CPUID, ccr=self.CCR_RESET, clock_hz=self.clock_hz)
        self._epoch = time.monotonic()
        self._rt_call: Call | None = None
        self._fault_ctx = {}  # a vectored fault's report, by the exception handling it
        self._run_base = 0
        self._pending_fault = None
        self.systick_ticks = 0  # counters for tests and benchmarks
        self.exceptions_taken = 0

    def _extra_mmio(self, uc: Uc) -> None:
        uc.mmio_map(SCS_BASE, SCS_SIZE, self._scs_read, None, self._scs_write, None)

    def _install_hooks(self, uc: Uc) -> None:
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        # Block hooks, not code hooks: while a counted run (SysTick) is under way unicorn walks
        # every code hook at every instruction, so each check point would slow all code (50
        # points took a counted loop from ~250 to ~15 MIPS); a block hook costs only where a
        # block starts at its address, and each check point starts a block (see above).
        for addr in sorted(self._check_points()):
            uc.hook_add(UC_HOOK_BLOCK, self._on_check, None, addr, addr)

    def _check_points(self) -> set[int]:
        """Addresses just after each instruction that may unmask a pending exception.

        Thumb encodings at halfword-aligned offsets: ``cpsie`` i/f/if is ``B66x`` (bytes
        ``6x B6``); ``isb`` is ``F3BF 8F6x`` (``BF F3 6x 8F``); ``msr`` of PRIMASK, BASEPRI,
        BASEPRI_MAX or FAULTMASK is ``F38n 88SS`` (``8n F3 SS 88``, SYSm 0x10-0x13). Found
        from their second byte, which sits at an odd offset (most of memory is zeros: fast).
        """
        points: set[int] = set()
        for r in self.amap:
            if r.size > _SCAN_LIMIT:
                continue
            data = bytes(r.view)
            end = len(data) - 2
            i = data.find(b"\xb6")
            while i >= 0:
                if i & 1 and 0x61 <= data[i - 1] <= 0x63:
                    points.add(r.da + i + 1)
                i = data.find(b"\xb6", i + 1)
            i = data.find(b"\xf3")
            while 0 <= i < end:
                if i & 1:
                    prev, b2, b3 = data[i - 1], data[i + 1], data[i + 2]
                    if (prev == 0xBF and b3 == 0x8F and b2 & 0xF0 == 0x60) or (
                            prev & 0xF0 == 0x80 and b3 == 0x88 and 0x10 <= b2 <= 0x13):
                        points.add(r.da + i + 3)
                i = data.find(b"\xf3", i + 1)
        return points

    def _reset_regs(self, uc: Uc, entry: int) -> None:
        sp = 0
        view = self.amap.translate(0, 4)
        if view is not None:
            sp = struct.unpack("<I", view)[0]
        if sp == 0 or self.amap.translate((sp - 4) & 0xFFFF_FFFF, 4) is None:
            sram = self.amap.find("sram") or next(iter(self.amap))
            sp = sram.end
        self.regs.write(UC_ARM_REG_MSP, sp & ~3)
        self.regs.write(UC_ARM_REG_LR, 0xFFFF_FFFF)
        self.regs.write(UC_ARM_REG_PC, entry | 1)
        self._entry = entry

    # ---- small helpers -----------------------------------------------------------------------

    def pc(self) -> int:
        assert self.uc is not None
        return self.regs.read(UC_ARM_REG_PC)

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

    def _raw_prio(self, exc: int) -> int:
        if exc <= HARDFAULT:
            return (0, -3, -2, -1)[exc]
        return self.scs.prio[exc]

    def _group(self, prio: int) -> int:
        return prio if prio < 0 else prio & _group_mask(self.scs.prigroup)

    def _exec_prio(self) -> int:
        """The execution priority: active exceptions and the mask registers."""
        uc = self.uc
        assert uc is not None
        s = self.scs
        prio = 256
        for exc in s.active:
            prio = min(prio, self._group(self._raw_prio(exc)))
        xpsr, control, basepri, primask, faultmask = self.regs.reads(_MASKS)
        if not xpsr & 0x1FF and control & 1:
            # Unprivileged thread mode reads the mask registers as 0: read them privileged.
            self.regs.write(UC_ARM_REG_XPSR, (1 << 24) | 1)
            basepri, primask, faultmask = self.regs.reads(_MASKS[2:])
            self.regs.write(UC_ARM_REG_XPSR_NZCVQG, xpsr)
        basepri &= _PRIO_MASK
        if basepri:
            prio = min(prio, self._group(basepri))
        if primask & 1:
            prio = min(prio, 0)
        if faultmask & 1:
            prio = min(prio, -1)
        return prio

    def _pending_set(self, lines: int) -> int:
        """Pending exceptions that are enabled (bit e = exception e)."""
        s = self.scs
        irqs = ((s.pending >> IRQ_BASE) | lines) & s.enabled
        irqs &= ~(s.active_mask >> IRQ_BASE) | (s.pending >> IRQ_BASE)
        return (s.pending & 0xFFFF) | (irqs << IRQ_BASE)

    def _best(self, pending: int) -> int:
        """The pending exception with the highest priority (0 if none)."""
        best, key = 0, (1 << 30, 0, 0)
        while pending:
            low = pending & -pending
            exc = low.bit_length() - 1
            pending ^= low
            raw = self._raw_prio(exc)
            k = (self._group(raw), raw, exc)
            if k < key:
                best, key = exc, k
        return best

    def _takeable(self, lines: int) -> int:
        """The exception to take now (0 if none can preempt)."""
        pending = self._pending_set(lines)
        if not pending:
            return 0
        exc = self._best(pending)
        if self._group(self._raw_prio(exc)) < self._exec_prio():
            return exc
        return 0

    # ---- Core hooks used by the run loop -----------------------------------------------------

    def _wakes(self, lines: int) -> bool:
        self._sync_clock()
        # wfi wakes on a pending exception that would preempt if PRIMASK were clear; the
        # other masks keep it asleep (B1.5.19 / WFI wake-up).
        pending = self._pending_set(lines)
        if not pending:
            return False
        assert self.uc is not None
        exc = self._best(pending)
        prio = 256
        for a in self.scs.active:
            prio = min(prio, self._group(self._raw_prio(a)))
        # PRIMASK does not keep wfi asleep: ignore it (the other masks do).
        xpsr, control, basepri, faultmask = self.regs.reads(_WAKE_MASKS)
        if not xpsr & 0x1FF and control & 1:
            # Unprivileged thread mode reads the masks as 0: read them privileged.
            self.regs.write(UC_ARM_REG_XPSR, (1 << 24) | 1)
            basepri, faultmask = self.regs.reads(_WAKE_MASKS[2:])
            self.regs.write(UC_ARM_REG_XPSR_NZCVQG, xpsr)
        basepri &= _PRIO_MASK
        if basepri:
            prio = min(prio, self._group(basepri))
        if faultmask & 1:
            prio = min(prio, -1)
        return self._group(self._raw_prio(exc)) < prio

    def _can_enter(self) -> bool:
        return bool(self._takeable(self.io.lines()))

    def _take_interrupt(self, lines: int) -> bool:
        self._sync_clock()
        exc = self._takeable(lines)
        if not exc:
            return False
        return self._enter(exc, self.pc())

    # ---- SysTick and the instruction clock ---------------------------------------------------

    def _sync_clock(self) -> None:
        """Realtime mode: the cycle count is the host time since reset times the clock."""
        if self.realtime:
            s = self.scs
            s.cycles = max(s.cycles, int((time.monotonic() - self._epoch) * s.clock_hz))
            self._tick()

    def _schedule_tick(self) -> None:
        """Realtime mode: stop the core at the next tick's host-time deadline."""
        if self._rt_call is not None:
            self._rt_call.cancel()
            self._rt_call = None
        s = self.scs
        if s.st_csr & ST_ENABLE and s.st_rvr:
            self._rt_call = self.scheduler.call_at(self._epoch + s.st_next / s.clock_hz,
                                                   self.irq_changed)

    def _budget(self) -> int:
        s = self.scs
        self._run_base = s.cycles  # (an uncounted run counts nothing: SysTick is off)
        if self.realtime:
            return 0
        if s.st_csr & ST_ENABLE and s.st_rvr:
            return max(1, s.st_next - s.cycles)
        return 0

    def _now_cycles(self) -> int:
        """The cycle count now, inside or outside a run."""
        s = self.scs
        if self.realtime:
            return max(s.cycles, int((time.monotonic() - self._epoch) * s.clock_hz))
        if self._in_emu and s.st_csr & ST_ENABLE and s.st_rvr and self.uc is not None:
            done = RunCounter.executed(self.uc, 1 << 62)
            if done is not None:
                return self._run_base + done
        return s.cycles

    def _ran(self, budget: int) -> None:
        if self.realtime:
            self._sync_clock()
            return
        if not budget:
            return
        assert self.uc is not None
        done = RunCounter.executed(self.uc, budget)
        self.scs.cycles += budget if done is None else done
        self._tick()

    def _tick(self) -> None:
        s = self.scs
        if not (s.st_csr & ST_ENABLE and s.st_rvr) or s.cycles < s.st_next:
            return
        period = s.st_rvr + 1
        missed = (s.cycles - s.st_next) // period
        s.st_next += (missed + 1) * period
        s.st_csr |= ST_COUNTFLAG
        self.systick_ticks += 1
        if s.st_csr & ST_TICKINT:
            s.pending |= 1 << SYSTICK
        if self.realtime:
            self._schedule_tick()

    def _idle_timeout(self) -> float | None:
        s = self.scs
        if s.st_csr & ST_ENABLE and s.st_rvr and s.st_csr & ST_TICKINT:
            return max(0.0, (s.st_next - s.cycles) / s.clock_hz)
        return None

    def _idle_elapsed(self, seconds: float) -> None:
        s = self.scs
        if self.realtime:
            self._sync_clock()
            return
        if s.st_csr & ST_ENABLE and s.st_rvr:
            slept = int(seconds * s.clock_hz)
            # A wait that ended within 100 us of the deadline reached it (timer granularity).
            if s.cycles + slept + s.clock_hz // 10_000 >= s.st_next:
                slept = max(slept, s.st_next - s.cycles)
            s.cycles += slept
            self._tick()

    def _st_cvr(self) -> int:
        s = self.scs
        if s.st_csr & ST_ENABLE and s.st_rvr:
            left = s.st_next - self._now_cycles()
            return max(0, min(left, s.st_rvr)) & 0xFF_FFFF
        return s.st_cvr

    # ---- exception entry and return ----------------------------------------------------------

    def _exc_return_value(self, handler: bool, psp: bool, fp: bool) -> int:
        # ARMv8-M: S=0 (non-secure), DCRS=1, ES=0. Bit 4 (FType) clear: an FP frame.
        value = (0xFFFF_FFA0 if self.V8 else 0xFFFF_FFE1) | (0 if fp else 0x10)
        if not handler:
            value |= 0x8 | (0x4 if psp else 0)
        return value

    @staticmethod
    def _state_writes(*, ipsr: int, xpsr: int, control: int, msp: int, psp: int,
                      msp_only: bool = False) -> list[tuple[int, int]]:
        """Register writes (in order) that switch mode, CONTROL and both stack pointers.

        QEMU keeps the current SP in r13 and the other one aside, switching them when SPSEL or
        the mode changes through its own paths, and ignores MSP/PSP/CONTROL writes from
        unprivileged thread mode: go through privileged modes and write both SPs last. The
        final flags write rebuilds QEMU's cached mode flags (handler mode, privilege).

        ``msp_only``: MSP is the stack in use before and after and CONTROL does not change
        (an interrupt of MSP code without FP state, the common case): r13 is MSP throughout,
        so the mode and r13 are written directly.
        """
        if msp_only:
            return [(UC_ARM_REG_XPSR_NZCVQG, (xpsr & ~0x1FF) | ipsr | (1 << 24)),
                    (UC_ARM_REG_SP, msp),
                    (UC_ARM_REG_APSR_NZCV, xpsr & 0xF000_0000)]
        writes = [
            (UC_ARM_REG_XPSR, (1 << 24) | 1),  # handler mode: privileged
            (UC_ARM_REG_CONTROL, control & 0x4),  # nPRIV = 0, FPCA
            (UC_ARM_REG_XPSR, 1 << 24),  # privileged thread mode
            (UC_ARM_REG_CONTROL, control & 0x6),  # SPSEL (swaps; both SPs are set next)
            (UC_ARM_REG_MSP, msp),
            (UC_ARM_REG_PSP, psp),
            (UC_ARM_REG_XPSR_NZCVQG, (xpsr & ~0x1FF) | ipsr | (1 << 24)),
        ]
        if control & 1:
            writes.append((UC_ARM_REG_CONTROL, control & 0x7))
        writes.append((UC_ARM_REG_APSR_NZCV, xpsr & 0xF000_0000))
        return writes

    def _lockup(self, reason: str, exc: int) -> None:
        """A fault that cannot be taken, or no usable vector: the core locks up (a crash)."""
        rec = self._fault_ctx.get(HARDFAULT) or self._pending_fault
        if rec is not None:
            fault = Fault(rec.crash_type, f"{rec.reason}; lockup: {reason}", rec.pc,
                          address=rec.address, regs=dict(rec.regs), arch=self.arch)
        else:
            fault = Fault(CrashType.FATAL_ERROR, f"lockup: {reason}", self.pc(), arch=self.arch)
        self.request_fault(fault)

    def _enter(self, exc: int, return_pc: int) -> bool:
        uc = self.uc
        assert uc is not None
        s = self.scs
        vector_addr = (s.vtor + 4 * exc) & 0xFFFF_FFFF
        vec = self.amap.translate(vector_addr, 4)
        handler = struct.unpack("<I", vec)[0] if vec is not None else 0
        if vec is None or not handler & 1 or self.amap.translate(handler & ~1, 2) is None:
            what = (f"vector table entry at {vector_addr:#x} unmapped" if vec is None
                    else f"{_exc_name(exc)} vector at {vector_addr:#x} is {handler:#x}, "
                         "not a Thumb address in memory")
            if exc in (HARDFAULT, NMI):
                s.hfsr |= VECTTBL
                self._lockup(what, exc)
                return False
            return self._fault(HARDFAULT, VECTTBL, what, CrashType.FATAL_ERROR, None,
                               return_pc, hfsr=True)
        r0, r1, r2, r3, r12, lr, xpsr, control, msp, psp = (
            int(v) for v in self.regs.reads(_ENTRY_READS))
        cur = xpsr & 0x1FF
        if not cur and control & 1:
            # Unprivileged thread mode reads MSP and PSP as 0: read QEMU's two stack slots
            # from (privileged) handler mode, where r13 is the one in use.
            self.regs.write(UC_ARM_REG_XPSR, (1 << 24) | 1)
            in_use, other = (int(v) for v in self.regs.reads(_SP_SLOTS))
            self.regs.write(UC_ARM_REG_XPSR_NZCVQG, xpsr)
            msp, psp = (other, in_use) if control & 2 else (in_use, other)
        on_psp = cur == 0 and bool(control & 2)
        sp = psp if on_psp else msp
        fp = bool(control & 4)
        size = 0x68 if fp else 0x20
        frame_sp = ((sp - size) & ~7) & 0xFFFF_FFFF
        stack = self.amap.translate(frame_sp, size)
        if stack is None:
            self._lockup(f"{_exc_name(exc)} entry: stack at {frame_sp:#x} unmapped", exc)
            return False
        stacked_xpsr = (xpsr & ~0x200) | (0x200 if sp & 4 else 0)
        stack[:32] = _BASIC.pack(r0, r1, r2, r3, r12, lr, return_pc & ~1, stacked_xpsr)
        if fp:
            fregs = [int(v) for v in self.regs.reads(_FP_REGS)]
            stack[32:size] = struct.pack("<18I", *fregs, 0)
        if on_psp:
            psp = frame_sp
        else:
            msp = frame_sp
        writes = self._state_writes(ipsr=exc, xpsr=xpsr & ~0x0600_FC00,
                                    control=control & ~0x6, msp=msp, psp=psp,
                                    msp_only=not on_psp and not control & 0x6)
        writes.append((UC_ARM_REG_LR, self._exc_return_value(cur != 0, on_psp, fp)))
        writes.append((UC_ARM_REG_PC, handler | 1))
        self.regs.writes(writes)
        s.pending &= ~(1 << exc)
        s.active.append(exc)
        s.active_mask |= 1 << exc
        self.exceptions_taken += 1
        return True

    def _exception_return(self, excret: int) -> Fault | None:
        uc = self.uc
        assert uc is not None
        s = self.scs
        if not s.active:
            return Fault(CrashType.FATAL_ERROR,
                         f"exception return ({excret:#x}) in thread mode", self.pc())
        valid = (excret & 0xFFFF_FF00) == 0xFFFF_FF00 and (
            excret & 0xE3 == 0xA0 if self.V8 else excret & 0xE3 == 0xE1)
        if self.V8 and excret & 0xE3 == 0xE1:
            valid = True  # the v7-M forms, as firmware built for ARMv7-M writes them
        to_thread = bool(excret & 8)
        if not valid or (not to_thread and excret & 4):
            return Fault(CrashType.FATAL_ERROR, f"invalid EXC_RETURN {excret:#x} (INVPC)",
                         self.pc())
        exc = s.active.pop()
        s.active_mask &= ~(1 << exc)
        self._fault_ctx.pop(exc, None)
        control, msp, psp = (int(v) for v in self.regs.reads(_RETURN_READS))
        on_psp = to_thread and bool(excret & 4)
        fp = not excret & 0x10
        size = 0x68 if fp else 0x20
        sp = psp if on_psp else msp
        stack = self.amap.translate(sp, size)
        if stack is None:
            return Fault(CrashType.MMUFAULT, f"exception return: stack at {sp:#x} unmapped",
                         self.pc(), address=sp)
        r0, r1, r2, r3, r12, lr, pc, xpsr = _BASIC.unpack(stack[:32])
        writes = list(zip(_STACKED, (r0, r1, r2, r3, r12, lr), strict=True))
        if exc != NMI:
            writes.append((UC_ARM_REG_FAULTMASK, 0))
        if fp:
            fregs = struct.unpack("<18I", stack[32:size])
            writes += zip(_FP_REGS, fregs[:17], strict=True)
        sp = (sp + size + (4 if xpsr & 0x200 else 0)) & 0xFFFF_FFFF
        if on_psp:
            psp = sp
        else:
            msp = sp
        new_control = (control & ~0x6) | (0x2 if on_psp else 0) | (0x4 if fp else 0)
        ipsr = 0 if to_thread else xpsr & 0x1FF
        # FAULTMASK is written before the mode changes: still in (privileged) handler mode.
        writes += self._state_writes(ipsr=ipsr, xpsr=xpsr & ~0x200, control=new_control,
                                     msp=msp, psp=psp,
                                     msp_only=not on_psp and new_control & 0x7 == control & 0x7)
        writes.append((UC_ARM_REG_PC, pc | 1))
        self.regs.writes(writes)
        # Tail-chain: a pending exception that can preempt the context we return to.
        nxt = self._takeable(self.io.lines())
        if nxt:
            self._enter(nxt, pc)
        return None

    # ---- faults ------------------------------------------------------------------------------

    def _fault(self, exc: int, bit: int, reason: str, kind: CrashType, address: int | None,
               pc: int, *, hfsr: bool = False) -> bool:
        """Raise a synchronous fault at ``pc``: set the status registers, escalate, vector.

        Returns True when a handler was entered; otherwise the core locks up (a crash report
        is requested).
        """
        s = self.scs
        record = Fault(kind, reason, pc, address=address, arch=self.arch)
        record.regs = self.read_regs()
        record.regs["r15"] = pc
        self._pending_fault = record
        if hfsr:
            s.hfsr |= bit
        else:
            s.cfsr |= bit
        if address is not None:
            if bit & 0xFF:
                s.mmfar = address
                s.cfsr |= MMARVALID
            elif bit & 0xFF00:
                s.bfar = address
                s.cfsr |= BFARVALID
        exec_prio = self._exec_prio()
        target = exc
        if exc in _FAULT_ENABLE and (not s.shcsr & _FAULT_ENABLE[exc]
                                     or self._group(self._raw_prio(exc)) >= exec_prio):
            target = HARDFAULT
            s.hfsr |= FORCED
        if target == HARDFAULT and exec_prio <= -1:
            self._lockup(f"{reason} while the execution priority is {exec_prio} "
                         "(in HardFault/NMI or under FAULTMASK)", exc)
            return False
        if not self._enter(target, pc):
            return False
        self._fault_ctx[target] = record
        self._pending_fault = None
        return True

    def fatal(self, code: int) -> None:
        # The firmware's fault handler reports through FATAL: name the fault it handles.
        rec = None
        for exc in reversed(self.scs.active):
            rec = self._fault_ctx.get(exc)
            if rec is not None:
                break
        if rec is None:
            super().fatal(code)
            return
        with self._cv:
            if self._fault_req is None:
                self._fault_req = Fault(
                    rec.crash_type, f"{rec.reason}; the firmware's fault handler reported "
                    f"fatal-error code {code:#x}", rec.pc, address=rec.address, code=code,
                    regs=dict(rec.regs), arch=self.arch)

    def _handle_trap(self, intno: int, pc: int) -> Fault | None:
        if self._fault_req is not None or intno == _CHECK:
            return None  # (a check: the loop takes the pending exception next)
        if intno == _EXCP_EXIT:
            return self._exception_return(pc)
        if intno == _EXCP_SVC:
            if self._group(self._raw_prio(SVCALL)) < self._exec_prio():
                self._enter(SVCALL, pc)
            else:  # svc that cannot be taken (masked, or from a higher-priority handler)
                self._fault(HARDFAULT, FORCED, "svc while SVCall cannot preempt",
                            CrashType.FATAL_ERROR, None, pc - 2, hfsr=True)
            return None
        exc, bit, what = _EXCP.get(intno, (HARDFAULT, DEBUGEVT, f"CPU exception {intno}"))
        kind = CrashType.MMUFAULT if exc == BUSFAULT else CrashType.FATAL_ERROR
        address = pc if intno == 3 else None
        if intno == 3:
            what = f"instruction fetch from unmapped memory at {pc:#x}"
        self._fault(exc, bit, what, kind, address, pc, hfsr=exc == HARDFAULT)
        return None

    def _fault_from_error(self, err: Any) -> Fault | None:
        code = err.errno
        pc = self.pc()
        if code in _MMU_ERRORS:
            addr = self._mem_fault[1] if self._mem_fault else None
            self._mem_fault = None
            reason = _MMU_ERRORS[code]
            if addr is not None:
                reason += f" at {addr:#x}"
            fetch = "fetch" in reason
            bit = IBUSERR if fetch else PRECISERR
            # Vectored, or a lockup was requested: the loop goes on either way.
            self._fault(BUSFAULT, bit, reason, CrashType.MMUFAULT, None if fetch else addr, pc)
            return None
        if code == UC_ERR_INSN_INVALID:
            self._fault(USAGEFAULT, UNDEFINSTR, "undefined instruction",
                        CrashType.FATAL_ERROR, None, pc)
            return None
        return super()._fault_from_error(err)

    # ---- unicorn hooks -----------------------------------------------------------------------

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        # Every exception ends the run; the loop enters or returns with the CPU stopped. (The
        # pc written from inside a hook would continue the run, but unicorn then re-executes
        # the next MMIO access without the exactly-once records of cpu.py knowing.)
        if intno == _EXCP_EXIT:
            pc, xpsr = self.regs.reads(_PC_XPSR)
            pc |= (xpsr >> 24) & 1
        else:
            pc = self.regs.read(UC_ARM_REG_PC)
        self._intr(intno, pc)

    def _stop_with(self, fault: Fault) -> None:
        with self._cv:
            if self._fault_req is None:
                self._fault_req = fault
        assert self.uc is not None
        with self._mmio_lock:
            self._stop_pending = True
        self.uc.emu_stop()

    def _on_check(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        if self._takeable(self.io.lines()):
            self._intr(_CHECK, address)  # the loop takes it, before this instruction

    def request_fault(self, fault: Fault) -> None:
        if self._in_emu and self.uc is not None and threading.current_thread() is self._thread:
            self._stop_with(fault)  # from an MMIO callback on the core's own thread
            return
        super().request_fault(fault)

    def read_regs(self) -> dict[str, int]:
        uc = self.uc
        assert uc is not None
        values = self.regs.reads(_DUMP_REGS)
        regs = {f"r{i}": v for i, v in enumerate(values[:-1])}
        regs["cpsr"] = values[-1]
        return regs

    # ---- the System Control Space ------------------------------------------------------------

    def _scs_read(self, uc: Uc, offset: int, size: int, _ud: object) -> int:
        word = offset & ~3
        shift = 8 * (offset & 3)
        value = self._mmio_access((1, 0, offset, size, 0), lambda: self._scs_read_word(word),
                                  self._scs_read_changes)
        value >>= shift
        return value & ((1 << (8 * size)) - 1) if size < 4 else value

    @staticmethod
    def _scs_read_changes(offset: int, value: int) -> bool:
        return offset & ~3 == 0x010 and bool(value & ST_COUNTFLAG)

    def _scs_write(self, uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
        word = offset & ~3
        shift = 8 * (offset & 3)
        mask = (((1 << (8 * size)) - 1) << shift) & 0xFFFF_FFFF
        kick = False

        def write() -> int:
            nonlocal kick
            kick = self._scs_write_word(word, (value << shift) & mask, mask)
            return 0

        self._mmio_access((1, 1, offset, size, value), write)
        if kick:
            self.irq_changed()  # (priority changes: a deferred re-check)

    def _shcsr(self) -> int:
        s = self.scs
        v = s.shcsr
        act = s.active_mask
        for exc, bit in ((MEMMANAGE, 0), (BUSFAULT, 1), (USAGEFAULT, 3), (SVCALL, 7),
                         (DEBUGMON, 8), (PENDSV, 10), (SYSTICK, 11)):
            if act >> exc & 1:
                v |= 1 << bit
        if self.V8 and act >> HARDFAULT & 1:
            v |= 1 << 2
        if self.V8 and act >> NMI & 1:
            v |= 1 << 5
        for exc, bit in ((USAGEFAULT, 12), (MEMMANAGE, 13), (BUSFAULT, 14), (SVCALL, 15)):
            if s.pending >> exc & 1:
                v |= 1 << bit
        return v

    def _scs_read_word(self, off: int) -> int:
        s = self.scs
        if 0x100 <= off < 0x140 or 0x200 <= off < 0x240 or 0x180 <= off < 0x1C0 \
                or 0x280 <= off < 0x2C0 or 0x300 <= off < 0x340:
            n = (off & 0x3F) // 4
            if off < 0x200:
                bits = s.enabled
            elif off < 0x300:
                lines = self.io.lines()
                bits = (s.pending >> IRQ_BASE) | (lines & ~(s.active_mask >> IRQ_BASE))
            else:
                bits = s.active_mask >> IRQ_BASE
            return (bits >> (32 * n)) & (0xFFFF_FFFF if n < 7 else 0xFFFF)
        if 0x400 <= off < 0x400 + NUM_IRQS:
            base = IRQ_BASE + off - 0x400
            return int.from_bytes(s.prio[base:base + 4], "little")
        if 0xD18 <= off < 0xD24:
            base = 4 + off - 0xD18
            return int.from_bytes(s.prio[base:base + 4], "little")
        if off == 0x010:
            v = s.st_csr | ST_CLKSOURCE
            s.st_csr &= ~ST_COUNTFLAG
            return v
        if off == 0xD04:
            return self._icsr()
        regs = {
            0x004: NUM_IRQS // 32 - 1, 0x008: s.actlr,
            0x014: s.st_rvr, 0x01C: 0x8000_0000 | min(s.clock_hz // 100 - 1, 0xFF_FFFF),
            0xD00: s.cpuid, 0xD08: s.vtor, 0xD0C: 0xFA05_0000 | (s.prigroup << 8),
            0xD10: s.scr, 0xD14: s.ccr, 0xD28: s.cfsr, 0xD2C: s.hfsr, 0xD30: s.dfsr,
            0xD34: s.mmfar, 0xD38: s.bfar, 0xD3C: s.afsr,
            0xD40: 0x30, 0xD44: 0x200, 0xD48: 0x100000, 0xD4C: 0, 0xD50: 0x100030,
            0xD54: 0, 0xD58: 0x1000000, 0xD5C: 0, 0xD60: 0x1101110, 0xD64: 0x2111000,
            0xD68: 0x21112231, 0xD6C: 0x1111110, 0xD70: 0x1310132,
            0xD88: s.cpacr, 0xD90: 0, 0xD94: s.mpu_ctrl, 0xD98: s.mpu_rnr,
            0xF34: s.fpccr, 0xF38: s.fpcar, 0xF3C: s.fpdscr,
            0xF40: 0x1011_0021, 0xF44: 0x1100_0011, 0xF48: 0x40 if self.V8 else 0,
        }
        if off == 0x018:
            return self._st_cvr()
        if off == 0xD24:
            return self._shcsr()
        return regs.get(off, 0)

    def _icsr(self) -> int:
        s = self.scs
        v = s.active[-1] if s.active else 0
        if len(s.active) <= 1:
            v |= 1 << 11  # RETTOBASE
        pending = self._pending_set(self.io.lines())
        if pending:
            v |= (self._best(pending) & 0x1FF) << 12
        if pending >> IRQ_BASE:
            v |= 1 << 22  # ISRPENDING
        if s.pending >> SYSTICK & 1:
            v |= PENDSTSET
        if s.pending >> PENDSV & 1:
            v |= PENDSVSET
        if s.pending >> NMI & 1:
            v |= NMIPENDSET
        return v

    def _scs_write_word(self, off: int, value: int, mask: int) -> bool:
        """Write ``value`` (already shifted into place) under ``mask``; True: may preempt."""
        s = self.scs
        before = s.pending, s.enabled
        if 0x100 <= off < 0x140 or 0x180 <= off < 0x1C0 or 0x200 <= off < 0x240 \
                or 0x280 <= off < 0x2C0:
            n = (off & 0x3F) // 4
            bits = (value & mask) << (32 * n)
            if n == 7:
                bits &= (0xFFFF << (32 * 7))
            if off < 0x180:
                s.enabled |= bits
            elif off < 0x200:
                s.enabled &= ~bits
            elif off < 0x280:
                s.pending |= bits << IRQ_BASE
            else:
                s.pending &= ~(bits << IRQ_BASE)
        elif 0x400 <= off < 0x400 + NUM_IRQS or 0xD18 <= off < 0xD24:
            base = IRQ_BASE + off - 0x400 if off < 0xD00 else 4 + off - 0xD18
            for i in range(4):
                if mask >> (8 * i) & 0xFF:
                    s.prio[base + i] = (value >> (8 * i)) & _PRIO_MASK
            if self._takeable(self.io.lines()):
                self._stop_after_access()
            return False
        elif off == 0xF00:  # STIR
            s.pending |= 1 << (IRQ_BASE + (value & 0x1FF) % NUM_IRQS)
        elif off == 0xD04:
            if value & NMIPENDSET:
                s.pending |= 1 << NMI
            if value & PENDSVSET:
                s.pending |= 1 << PENDSV
            elif value & PENDSVCLR:
                s.pending &= ~(1 << PENDSV)
            if value & PENDSTSET:
                s.pending |= 1 << SYSTICK
            elif value & PENDSTCLR:
                s.pending &= ~(1 << SYSTICK)
        elif off == 0xD08:
            s.vtor = _merge(s.vtor, value, mask) & 0xFFFF_FF80
        elif off == 0xD0C:
            if (value & mask) >> 16 == 0x05FA:
                s.prigroup = (value >> 8) & 7
                if value & 4:
                    s.reset_requested = True
                    self.request_fault(Fault(
                        CrashType.FATAL_ERROR, "the firmware requested a system reset "
                        "(AIRCR.SYSRESETREQ)", 0, arch=self.arch))
                elif self._takeable(self.io.lines()):
                    self._stop_after_access()
                return False
        elif off == 0xD10:
            s.scr = _merge(s.scr, value, mask) & 0x16
        elif off == 0xD14:
            s.ccr = _merge(s.ccr, value, mask) & 0x31B | self.CCR_RESET
        elif off == 0xD24:
            s.shcsr = _merge(s.shcsr, value, mask) & (0x7 << 16)
        elif off == 0xD28:
            s.cfsr &= ~(value & mask)
        elif off == 0xD2C:
            s.hfsr &= ~(value & mask)
        elif off == 0xD30:
            s.dfsr &= ~(value & mask)
        elif off == 0xD34:
            s.mmfar = _merge(s.mmfar, value, mask)
        elif off == 0xD38:
            s.bfar = _merge(s.bfar, value, mask)
        elif off == 0xD3C:
            s.afsr &= ~(value & mask)
        elif off == 0x008:
            s.actlr = _merge(s.actlr, value, mask)
        elif off == 0xD88:
            s.cpacr = _merge(s.cpacr, value, mask) & (0xF << 20)
        elif off == 0xD94:
            s.mpu_ctrl = _merge(s.mpu_ctrl, value, mask) & 7
        elif off == 0xD98:
            s.mpu_rnr = _merge(s.mpu_rnr, value, mask) & 0xFF
        elif off == 0xF34:
            s.fpccr = _merge(s.fpccr, value, mask) & 0xC000_0000
        elif off == 0xF38:
            s.fpcar = _merge(s.fpcar, value, mask) & ~7
        elif off == 0xF3C:
            s.fpdscr = _merge(s.fpdscr, value, mask) & 0x07C0_0000
        elif off in (0x010, 0x014, 0x018):
            return self._systick_write(off, value, mask)
        if (s.pending != before[0] or s.enabled != before[1]) \
                and self._takeable(self.io.lines()):
            # Takeable now, as after the store on hardware: end the run right after it.
            self._stop_after_access()
        return False

    def _systick_write(self, off: int, value: int, mask: int) -> bool:
        s = self.scs
        now = self._now_cycles()
        cvr = self._st_cvr()
        was_on = bool(s.st_csr & ST_ENABLE and s.st_rvr)
        if off == 0x010:
            s.st_csr = (s.st_csr & ST_COUNTFLAG) | (_merge(s.st_csr, value, mask) & 3)
        elif off == 0x014:
            s.st_rvr = _merge(s.st_rvr, value, mask) & 0xFF_FFFF
        else:  # CVR: any write clears it and COUNTFLAG
            cvr = 0
            s.st_csr &= ~ST_COUNTFLAG
        on = bool(s.st_csr & ST_ENABLE and s.st_rvr)
        if not on:
            s.st_cvr = cvr
            if self.realtime:
                self._schedule_tick()  # cancels
            return False
        if was_on and off != 0x018:
            return False  # RVR / TICKINT changes take effect at the next reload
        # Counting (re)starts now: from CVR, or with a reload at the next cycle when it is 0.
        s.st_next = now + (cvr if cvr else s.st_rvr + 1)
        if self.realtime:
            self._schedule_tick()
        elif self._in_emu:
            # This run was sized for another deadline, or not counted at all: end it right
            # after this store (recorded, so that its repetition is not a second write).
            self._stop_after_access()
        return False

    def _stop_after_access(self) -> None:
        """From inside an MMIO write: stop the run once the access completes (cpu.py records
        the access under the pc unicorn rolls back to and answers its repetition)."""
        with self._mmio_lock:
            self._stop_pending = True


class CortexM33(CortexM4):
    """ARMv8-M Mainline with FPv5-SP, non-secure state only: the Cortex-M33."""

    CPU_MODEL = UC_CPU_ARM_CORTEX_M33
    CPUID = 0x410F_D214  # Cortex-M33 r0p4
    CCR_RESET = 0x0000_0201  # STKALIGN, NONBASETHRDENA (RES1 in ARMv8-M)
    V8 = True
    DEFAULT_CLOCK_HZ = 400_000_000


def _merge(old: int, value: int, mask: int) -> int:
    return (old & ~mask) | (value & mask)


def _exc_name(exc: int) -> str:
    if exc >= IRQ_BASE:
        return f"IRQ {exc - IRQ_BASE}"
    return _NAMES.get(exc, f"exception {exc}")
