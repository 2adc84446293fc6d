"""One emulated core: a unicorn CPU on its own thread, interrupt driven, faults captured.

Owns ``Core`` (the architecture-neutral run loop, WFI sleep, interrupt delivery, halting and
fault capture), ``Fault`` (what went wrong, where, and the registers) and ``CoreState``. The
architecture subclasses (``cortexm.CortexM4``, ``riscv.RiscV``) supply exception entry and
return, the "was that a wfi" test and the register dump.

Threads and locks:
- ``start()`` creates a fresh ``Uc`` (a clean CPU: nothing survives a restart but memory) and a
  thread that owns it; ``stop()`` asks that thread to halt and joins it. Only the core's own
  thread touches the ``Uc`` while it runs; other threads only call ``uc.emu_stop()``.
- ``self._cv`` (a Condition) guards the run flags (halt/fault requests, sleeping, in-emulation,
  the interrupt generation). ``self._mmio_lock`` (an RLock) is held while an MMIO callback runs.
  Lock order: ``_mmio_lock`` -> ``CoreIo.lock`` and ``_mmio_lock`` -> ``_cv``; nothing else is
  called out while holding them except ``emu_stop`` (which only sets a flag in unicorn).
- Wake-ups: ``irq_changed()`` (any thread) bumps the generation, notifies the sleeping thread
  and, if the core is inside ``emu_start``, stops it so the loop can enter the exception.
  ``emu_stop`` is never called inside an MMIO callback (unicorn would then abandon the access
  and re-execute it on resume): other threads take ``_mmio_lock`` first, and the core's own
  thread defers its stop to the scheduler. A stop that lands in the tiny window before unicorn
  resets its stop flag would be lost, so the scheduler re-checks 2 ms later and stops again if
  the core has not seen that generation.
- No per-instruction hooks: the loop regains control only at ``wfi`` (unicorn returns there),
  at exception returns (a fetch from the return marker), at faults and on ``emu_stop``.
  Consequence (documented in docs/virtual-soc.md): an interrupt left pending while masked is
  taken at the next stop point after it is unmasked, not at the unmasking instruction.
- Faults: the run loop turns them into a ``Fault`` and calls ``on_fault`` (the platform posts
  the crash report to its dispatcher thread); the thread then ends, the core is CRASHED and its
  registers stay readable until the next ``start()``.
"""

from __future__ import annotations

import enum
import errno
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import unicorn
from unicorn import (
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNALIGNED,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNALIGNED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNALIGNED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_MEM_INVALID,
    UC_PROT_ALL,
)

from remoteproc.core.states import CrashType
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import MMIO_BASE, MMIO_SIZE, CoreSpec
from remoteproc.platforms.emulator.memory import AddressMap
from remoteproc.platforms.emulator.peripherals import CoreIo, Scheduler

__all__ = ["Core", "CoreState", "Fault", "FaultSink", "Uc", "new_uc"]

# unicorn's own annotations are partial (mypy strict rejects its untyped methods): the CPU
# handle is dynamically typed here, and created through ``new_uc``.
Uc = Any
UcError: type[Exception] = getattr(unicorn, "UcError")  # noqa: B009


def new_uc(arch: int, mode: int) -> Any:
    import unicorn

    factory: Any = getattr(unicorn, "Uc")  # noqa: B009 - see above
    return factory(arch, mode)

log = logging.getLogger("remoteproc.emulator")

_MMU_ERRORS = {
    UC_ERR_READ_UNMAPPED: "read of unmapped memory",
    UC_ERR_WRITE_UNMAPPED: "write to unmapped memory",
    UC_ERR_FETCH_UNMAPPED: "instruction fetch from unmapped memory",
    UC_ERR_READ_PROT: "read of protected memory",
    UC_ERR_WRITE_PROT: "write to protected memory",
    UC_ERR_FETCH_PROT: "instruction fetch from non-executable memory",
    UC_ERR_READ_UNALIGNED: "unaligned read",
    UC_ERR_WRITE_UNALIGNED: "unaligned write",
    UC_ERR_FETCH_UNALIGNED: "unaligned instruction fetch",
}
_RECHECK_S = 0.002


class CoreState(enum.Enum):
    HALTED = "halted"
    RUNNING = "running"
    CRASHED = "crashed"


@dataclass
class Fault:
    """A crash captured on the emulation thread."""

    crash_type: CrashType
    reason: str
    pc: int
    address: int | None = None  # the data address of a memory fault
    code: int | None = None  # the FATAL register value
    regs: dict[str, int] = field(default_factory=dict)  # crash_regs without "arch"
    arch: str = "arm"

    def crash_regs(self) -> dict[str, object]:
        out: dict[str, object] = {"arch": self.arch}
        out.update(self.regs)
        return out


FaultSink = Callable[["Core", Fault], None]


class Core(ABC):
    """The run loop shared by every architecture. Subclasses implement the abstract hooks."""

    arch = "arm"
    UNTIL = 0xFFFF_FFFF  # an address never reached: emu_start runs until stopped

    def __init__(self, spec: CoreSpec, amap: AddressMap, io: CoreIo, scheduler: Scheduler,
                 *, on_fault: FaultSink | None = None,
                 on_halt: Callable[[Core], None] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.amap = amap
        self.io = io
        self.scheduler = scheduler
        self.on_fault = on_fault
        self.on_halt = on_halt
        self.uc: Uc | None = None
        self.state = CoreState.HALTED
        self.fault: Fault | None = None
        self._cv = threading.Condition()
        # Held while an MMIO callback runs; other threads take it before ``emu_stop``.
        # Lock order: _mmio_lock -> CoreIo.lock, _mmio_lock -> _cv.
        self._mmio_lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = False
        self._fault_req: Fault | None = None
        self._sleeping = False
        self._in_emu = False
        self._gen = 0
        self._entered_gen = 0
        self._masked_spin_gen = -1
        self._trap: tuple[int, int] | None = None  # (intno, pc) seen by the interrupt hook
        self._mem_fault: tuple[int, int] | None = None  # (access, address) of a bad access
        self.wfi_sleeps = 0  # counters for tests and benchmarks
        self.interrupts_taken = 0
        io.sink = self

    # ---- architecture hooks ------------------------------------------------------------------

    @abstractmethod
    def _new_uc(self) -> Uc: ...

    @abstractmethod
    def _reset_regs(self, uc: Uc, entry: int) -> None: ...

    @abstractmethod
    def pc(self) -> int: ...

    @abstractmethod
    def _begin(self) -> int:
        """The address to pass to ``emu_start`` to resume at the current pc."""

    @abstractmethod
    def _after_wfi(self) -> bool:
        """Did the core stop because it executed ``wfi`` (pc is just past it)?"""

    @abstractmethod
    def _wakes(self, lines: int) -> bool:
        """Would these pending lines wake the core from wfi (enabled in the controller)?"""

    @abstractmethod
    def _take_interrupt(self, lines: int) -> bool:
        """Enter the exception for the best pending line if unmasked; True if one was taken."""

    @abstractmethod
    def _handle_trap(self, intno: int, pc: int) -> Fault | None:
        """A CPU exception the interrupt hook saw: an exception return, or a fault."""

    @abstractmethod
    def read_regs(self) -> dict[str, int]:
        """The registers by coredump name (``r0``.. / ``pc``, ``x1``..)."""

    def _extra_mmio(self, uc: Uc) -> None:  # noqa: B027
        """Architecture MMIO besides the peripheral block (the Cortex-M SCS)."""

    def _on_start(self) -> None:  # noqa: B027
        """Reset architecture state that lives outside the Uc (NVIC, active exceptions)."""

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state is CoreState.RUNNING

    def start(self, entry: int) -> None:
        """Reset the CPU to ``entry`` and run it on a new thread."""
        if self._thread is not None:
            self.stop()
        uc = self._new_uc()
        for r in self.amap:
            uc.mem_map_ptr(r.da, r.size, UC_PROT_ALL, r.host_addr)
        uc.mmio_map(MMIO_BASE, MMIO_SIZE, self._mmio_read, None, self._mmio_write, None)
        self._extra_mmio(uc)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_bad_access)
        self._install_hooks(uc)
        self._reset_regs(uc, entry)
        self.uc = uc
        self._on_start()
        with self._cv:
            self._halt = False
            self._fault_req = None
            self._sleeping = False
            self._trap = None
            self._mem_fault = None
            self.fault = None
            self.state = CoreState.RUNNING
        self._thread = threading.Thread(target=self._run, name=f"core-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Halt the core and join its thread (no-op when it is not running)."""
        thread = self._thread
        if thread is None:
            return
        if thread is threading.current_thread():
            raise RprocError(errno.EDEADLK, f"{self.name}: a core cannot stop itself")
        with self._cv:
            self._halt = True
            self._cv.notify_all()
        while thread.is_alive():
            # Repeated: a stop can be lost in unicorn's start window.
            with self._mmio_lock, self._cv:
                if self._in_emu and self.uc is not None:
                    self.uc.emu_stop()
            thread.join(0.02)
        self._thread = None
        self.io.quiesce()
        if self.state is CoreState.RUNNING:
            self.state = CoreState.HALTED

    def close(self) -> None:
        self.stop()
        self.uc = None

    def __enter__(self) -> Core:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def wait_sleeping(self, timeout: float = 5.0) -> bool:
        """Wait until the core sleeps in wfi (tests and benchmarks)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._sleeping or self.state is not
                                     CoreState.RUNNING, timeout) and self._sleeping

    # ---- events from other threads -----------------------------------------------------------

    def irq_changed(self) -> None:
        """A line may have risen: wake the wfi sleep or interrupt the running emulation."""
        with self._cv:
            self._gen += 1
            gen = self._gen
            self._cv.notify_all()
        self._interrupt_emulation(gen)

    def _interrupt_emulation(self, gen: int) -> None:
        """Make ``emu_start`` return so the loop sees generation ``gen``.

        Never from inside an MMIO callback: unicorn then abandons the access and re-executes
        the instruction on resume (a FIFO pop or a read-to-clear would happen twice). The core's
        own thread defers to the scheduler; other threads wait for a running callback to end
        (``_mmio_lock``) before stopping, so the stop lands on an instruction boundary.
        """
        if threading.current_thread() is self._thread:
            self.scheduler.call_later(0, lambda: self._recheck(gen))
            return
        with self._mmio_lock, self._cv:
            running = self._in_emu and self.uc is not None
            if running:
                assert self.uc is not None
                self.uc.emu_stop()
        if running:
            self.scheduler.call_later(_RECHECK_S, lambda: self._recheck(gen))

    def _recheck(self, gen: int) -> None:
        with self._mmio_lock, self._cv:
            if self._in_emu and self._entered_gen < gen and self.uc is not None:
                self.uc.emu_stop()

    def request_fault(self, fault: Fault) -> None:
        """Stop the core with ``fault`` (the watchdog); registers are taken where it stopped."""
        with self._cv:
            if self.state is not CoreState.RUNNING or self._fault_req is not None:
                return
            self._fault_req = fault
            self._gen += 1
            gen = self._gen
            self._cv.notify_all()
        self._interrupt_emulation(gen)

    # IoSink: the peripherals call these.
    def fatal(self, code: int) -> None:
        # On the emulation thread, inside the MMIO write. Stopping here abandons the store:
        # unicorn leaves the pc on it (and would re-execute it on resume, which never happens),
        # so the registers read after the stop show the very instruction that wrote FATAL.
        assert self.uc is not None
        with self._cv:
            if self._fault_req is None:
                self._fault_req = Fault(CrashType.FATAL_ERROR,
                                        f"firmware fatal-error hook (code {code:#x})", 0,
                                        code=code, arch=self.arch)
        self.uc.emu_stop()

    def watchdog_expired(self, timeout_ms: int) -> None:
        self.request_fault(Fault(CrashType.WATCHDOG,
                                 f"watchdog not refreshed within {timeout_ms} ms", 0,
                                 arch=self.arch))

    def to_host_notify(self, notifyid: int) -> None:  # noqa: B027 - the platform replaces it
        pass

    def to_host_ctrl(self, word: int) -> None:  # noqa: B027 - the platform replaces it
        pass

    def console_line(self, text: str) -> None:
        log.info("%s: %s", self.name, text)

    # ---- hooks -------------------------------------------------------------------------------

    def _install_hooks(self, uc: Uc) -> None:  # noqa: B027
        """Architecture hooks (the interrupt hook); the default installs nothing."""

    def _mmio_read(self, uc: Uc, offset: int, size: int, _ud: object) -> int:
        with self._mmio_lock:
            value = self.io.read(offset)
        return value & ((1 << (8 * size)) - 1) if size < 4 else value

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
        with self._mmio_lock:
            self.io.write(offset, value, size)

    def _on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int,
                       _ud: object) -> bool:
        self._mem_fault = (access, address)
        return False  # unicorn then ends emu_start with the matching UcError

    def _intr(self, intno: int, pc: int) -> None:
        """Called from the architecture's interrupt hook: remember it and stop."""
        self._trap = (intno, pc)
        assert self.uc is not None
        self.uc.emu_stop()

    # ---- the run loop ------------------------------------------------------------------------

    def _run(self) -> None:
        uc = self.uc
        assert uc is not None
        fault: Fault | None = None
        try:
            fault = self._loop(uc)
        except Exception as exc:  # an emulator bug: report it as a fatal error, never hang
            log.exception("%s: emulation failed", self.name)
            fault = Fault(CrashType.FATAL_ERROR, f"emulator error: {exc}", self._safe_pc(),
                          arch=self.arch)
        with self._cv:
            self._in_emu = False
            self._sleeping = False
            if fault is not None:
                self.fault = fault
                self.state = CoreState.CRASHED
            else:
                self.state = CoreState.HALTED
            self._cv.notify_all()
        if fault is not None:
            self.io.quiesce()
            if self.on_fault is not None:
                self.on_fault(self, fault)
        elif self.on_halt is not None:
            self.on_halt(self)

    def _safe_pc(self) -> int:
        try:
            return self.pc()
        except Exception:
            return 0

    def _finish_fault(self, fault: Fault) -> Fault:
        if not fault.pc:
            fault.pc = self.pc()
        fault.regs = self.read_regs()
        fault.arch = self.arch
        return fault

    def _loop(self, uc: Uc) -> Fault | None:
        while True:
            with self._cv:
                while True:
                    if self._halt:
                        return None
                    if self._fault_req is not None:
                        return self._finish_fault(self._fault_req)
                    if self._sleeping:
                        if self._gen != self._masked_spin_gen and self._wakes(self.io.lines()):
                            self._sleeping = False
                        else:
                            self._cv.wait()
                            continue
                    break
                self._in_emu = True
                self._entered_gen = self._gen
            lines = self.io.lines()
            if lines and self._take_interrupt(lines):
                self.interrupts_taken += 1
                self._masked_spin_gen = -1
            with self._cv:
                if self._fault_req is not None:  # exception entry itself failed
                    self._in_emu = False
                    continue
            err: Any = None
            try:
                uc.emu_start(self._begin(), self.UNTIL)
            except UcError as exc:
                err = exc
            except Exception as exc:  # an MMIO callback raised: unicorn re-raises it here
                with self._cv:
                    self._in_emu = False
                return self._finish_fault(Fault(CrashType.FATAL_ERROR,
                                                f"device model error: {exc}", 0))
            with self._cv:
                self._in_emu = False
            if err is not None:
                return self._fault_from_error(err)
            trap, self._trap = self._trap, None
            if trap is not None:
                f = self._handle_trap(*trap)
                if f is not None:
                    return self._finish_fault(f)
                continue
            with self._cv:
                if self._fault_req is not None or self._halt:
                    continue
            if self._after_wfi():
                self.wfi_sleeps += 1
                with self._cv:
                    lines = self.io.lines()
                    if lines and self._wakes(lines) and not self._can_enter():
                        # Woken by a line we cannot take (masked): sleep again only once the
                        # generation moves, or wfi in a masked loop would spin a host core.
                        self._masked_spin_gen = self._gen
                    self._sleeping = True
                    self._cv.notify_all()  # wait_sleeping()

    def _can_enter(self) -> bool:
        """Could an exception be entered now (global mask clear, not already active)?"""
        return True

    def _fault_from_error(self, err: Any) -> Fault:
        code = err.errno
        if code in _MMU_ERRORS:
            addr = self._mem_fault[1] if self._mem_fault else None
            reason = _MMU_ERRORS[code]
            if addr is not None:
                reason += f" at {addr:#x}"
            return self._finish_fault(Fault(CrashType.MMUFAULT, reason, self.pc(), address=addr))
        if code == UC_ERR_INSN_INVALID:
            return self._finish_fault(Fault(CrashType.FATAL_ERROR, "undefined instruction",
                                            self.pc()))
        if code == UC_ERR_EXCEPTION:
            return self._finish_fault(Fault(CrashType.FATAL_ERROR, "unhandled CPU exception",
                                            self.pc()))
        return self._finish_fault(Fault(CrashType.FATAL_ERROR, f"emulation error: {err}",
                                        self.pc()))
