"""One emulated core: a unicorn CPU on its own thread, interrupt driven, faults captured.

Owns ``Core`` (the architecture-neutral run loop, WFI sleep, interrupt delivery, halting and
fault capture), ``Fault`` (what went wrong, where, and the registers) and ``CoreState``. The
architecture subclasses (``cortexm.CortexM4`` / ``CortexM33``, ``riscv.RiscV``) supply
exception entry and return, the "was that a wfi" test, the register dump and, for a core with
an instruction-counted timer, the run budget and the idle deadline.

Threads and locks:
- ``start()`` creates a fresh ``Uc`` (a clean CPU: nothing survives a restart but memory) and a
  thread that owns it; ``stop()`` asks that thread to halt and joins it. Only the core's own
  thread touches the ``Uc`` while it runs; other threads only call ``uc.emu_stop()``.
- ``self._cv`` (a Condition) guards the run flags (halt/fault requests, sleeping, in-emulation,
  the interrupt generation). ``self._mmio_lock`` (an RLock) is held while an MMIO callback runs.
  Lock order: ``_mmio_lock`` -> a peripheral's lock and ``_mmio_lock`` -> ``_cv``; nothing else is
  called out while holding them except ``emu_stop`` (which only sets a flag in unicorn).
- Wake-ups: ``irq_changed()`` (any thread) bumps the generation, notifies the sleeping thread
  and, if the core is inside ``emu_start``, stops it so the loop can enter the exception. The
  core's own thread defers that stop to the scheduler. A stop that lands in the tiny window
  before unicorn resets its stop flag would be lost, so the scheduler re-checks 2 ms later and
  stops again if the core has not seen that generation.
- Every MMIO access happens exactly once (``_mmio_access``). unicorn checks for a pending stop
  after every guest load and store and, if there is one, leaves with the pc rolled back to the
  instruction that just made the access (``check_exit_request`` -> ``cpu_loop_exit_restore``):
  on resume that instruction runs again and repeats its access. Any stop requested since the
  last check counts, not only one that lands inside the callback, so holding ``_mmio_lock``
  around ``emu_stop`` is not enough. Therefore, for an access with a side effect (any write;
  a read that pops the mailbox FIFO or clears CTRL_RX):
  - if a stop is pending (``_stop_pending``), the callback stops too (making the rollback
    certain even if that stop was lost in unicorn's start window) and the access is recorded
    with the pc unicorn rolled back to; on resume the same access from that pc is answered
    from the record (a write is dropped, a read returns what it returned) instead of reaching
    the device again;
  - otherwise other threads hold back their stops (``_gap``) until the core's next MMIO
    access or the end of the run, at most ``_GAP_S`` of the running thread's CPU time: the
    instruction completes without a rollback. A stop held back is taken at that next access
    (``_stop_wanted``). The bound is CPU time, not wall time: on a loaded host the OS parks
    the core's thread between its callback and unicorn's check for longer than any wall-clock
    bound (a 5 ms one let a stop land there: the store ran twice), while a thread that runs
    leaves that window within microseconds of CPU.
  Records are kept per pc, so an interrupt taken before the resume (its handler making
  accesses of its own) does not lose the interrupted one. Limit: a Thumb access inside an IT
  block has no check after it (unicorn never stops inside one), so a stop lands later; its
  record then waits at a pc that does not repeat the access and is dropped after the next run
  that starts there.
- No per-instruction Python hooks: the loop regains control at ``wfi`` (unicorn returns there),
  at CPU exceptions (the architecture's interrupt hook stops the run: exception returns, svc,
  faults), at the architecture's own check points (Cortex-M: after unmasking instructions), on
  ``emu_stop`` and when a counted run (``_budget``: SysTick) has executed its instructions.
  ``RunCounter`` reads how many a counted run executed when it ended early.
- Consequence (documented in docs/virtual-soc.md): on RISC-V an interrupt left pending while
  masked is taken at the next stop point after it is unmasked, not at the unmasking instruction.
- Faults: the run loop turns them into a ``Fault`` and calls ``on_fault`` (the platform posts
  the crash report to its dispatcher thread); the thread then ends, the core is CRASHED and its
  registers stay readable until the next ``start()``.
"""

from __future__ import annotations

import enum
import errno
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
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

from remoteproc.closing import Closeable
from remoteproc.core.states import CrashType
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.cores.regs import RegAccess
from remoteproc.platforms.emulator.machine import CoreSpec
from remoteproc.platforms.emulator.memory import AddressMap
from remoteproc.platforms.emulator.peripherals.base import MmioFault
from remoteproc.platforms.emulator.peripherals.bus import DeviceBus
from remoteproc.platforms.emulator.scheduler import Scheduler

__all__ = ["Core", "CoreState", "Fault", "FaultSink", "HostLink", "RunCounter", "Uc", "new_uc"]

# unicorn's own annotations are partial (mypy strict rejects its untyped methods): the CPU
# handle is dynamically typed here, and created through ``new_uc``.
Uc = Any
UcError: type[Exception] = getattr(unicorn, "UcError")  # noqa: B009


def new_uc(arch: int, mode: int) -> Any:
    import unicorn

    factory: Any = getattr(unicorn, "Uc")  # noqa: B009 - see above
    return factory(arch, mode)


class RunCounter:
    """How many instructions the last ``emu_start(..., count=N)`` executed.

    unicorn counts the instructions of a counted run in ``uc_struct.emu_counter`` but has no API
    to read it, and a run that ends early (``wfi``, a host stop, a fault) must still advance a
    core's cycle count exactly (SysTick). The field's offset is found once per process by
    running known instruction counts on a scratch CPU and looking for the (counter, count) pair
    they leave; it is checked with a second count. If unicorn's layout ever defeats the probe,
    ``executed`` answers ``None`` and callers fall back to an estimate (logged once).
    """

    _offset: int | None = None
    _probed = False
    _lock = threading.Lock()

    @classmethod
    def _probe(cls) -> int | None:
        import ctypes

        from unicorn import UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB

        uc = new_uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.mem_map(0, 0x1000)
        uc.mem_write(0, b"\x00\xbf" * 0x800)  # nop
        base = ctypes.cast(uc._uch, ctypes.c_void_p).value
        if not base:
            return None
        word = ctypes.sizeof(ctypes.c_size_t)
        found: set[int] | None = None
        for n in (1000, 777):
            uc.emu_start(1, 0xFFFF_FFFF, 0, n)
            raw = ctypes.string_at(base, 4096)
            fmt = "<Q" if word == 8 else "<I"
            hits = set()
            for off in range(0, 4096 - 2 * word, word):
                if (struct_unpack(fmt, raw, off) == n + 1
                        and struct_unpack(fmt, raw, off + word) == n):
                    hits.add(off)
            found = hits if found is None else found & hits
        if found and len(found) == 1:
            return found.pop()
        return None

    @classmethod
    def executed(cls, uc: Any, count: int) -> int | None:
        """Instructions the last counted run executed (at most ``count``), None if unknown."""
        if not cls._probed:
            with cls._lock:
                if not cls._probed:
                    try:
                        cls._offset = cls._probe()
                    except Exception:  # pragma: no cover - a foreign unicorn build
                        cls._offset = None
                    if cls._offset is None:
                        log.warning("unicorn's instruction counter not found: SysTick counts "
                                    "a run that ends early as a full slice")
                    cls._probed = True
        if cls._offset is None:
            return None
        import ctypes

        base = ctypes.cast(uc._uch, ctypes.c_void_p).value
        if not base:
            return None
        counter = ctypes.c_size_t.from_address(base + cls._offset).value
        return min(int(counter), count)


def _thread_cpu(ident: int | None) -> float | None:
    """CPU time (seconds) a thread of this process has used, None if it is unknown."""
    if ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):  # ended, or a platform without them
        return None


def struct_unpack(fmt: str, raw: bytes, off: int) -> int:
    import struct

    return int(struct.unpack_from(fmt, raw, off)[0])

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
# How long other threads hold back a stop while the instruction that made a side-effecting MMIO
# access completes, in CPU time of the thread running the core (_gap_hold): completing takes a
# few microseconds of C; the bound matters only if the firmware makes no MMIO access for that
# long afterwards (the stop is then that much late). Time the OS parks the thread does not
# count: a stop landing then would roll the access back and repeat it.
_GAP_S = 0.005
_REPLAYS_KEPT = 8
# How long a kicking thread may run a borrowed core (run_inline) before the core's own thread
# takes it back: a reply takes microseconds; firmware that computes must not hold the caller.
_INLINE_SLICE_S = 0.002

# An MMIO access: (space, is_write, offset, size, value); space 0 is the device bus (offset:
# the absolute address), 1 the Cortex-M SCS. ``value`` is 0 for reads.
Access = tuple[int, int, int, int, int]


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


@dataclass
class _Replay:
    """Side-effecting MMIO accesses the instruction at a pc made before unicorn rolled it back."""

    accesses: list[tuple[Access, int]]  # (access, what a read returned)
    done: int = 0  # how many of them the repetition has answered so far


@dataclass(frozen=True)
class HostLink:
    """Where a core sends its host-bound traffic: the platform driver that owns the core.

    The peripherals report mailbox kicks, control words and console lines to the core (their
    ``IoSink``); the core hands them on through this link, given at construction, so that the
    platform never replaces the core's methods.
    """

    notify: Callable[[int], None]  # a vring kick for the host (notify id)
    ctrl: Callable[[int], None]  # a control word (shutdown ack, ...)
    console: Callable[[str], None]  # one line the firmware printed


class Core(ABC, Closeable):
    """The run loop shared by every architecture. Subclasses implement the abstract hooks."""

    arch = "arm"
    UNTIL = 0xFFFF_FFFF  # an address never reached: emu_start runs until stopped

    def __init__(self, spec: CoreSpec, amap: AddressMap, io: DeviceBus, scheduler: Scheduler,
                 *, on_fault: FaultSink | None = None,
                 on_halt: Callable[[Core], None] | None = None,
                 host: HostLink | None = None) -> None:
        self.spec = spec
        self.host = host
        self.name = spec.name
        self.amap = amap
        self.io = io
        self.scheduler = scheduler
        self.on_fault = on_fault
        self.on_halt = on_halt
        self.uc: Uc | None = None
        self.regs = RegAccess(None)
        self.state = CoreState.HALTED
        self.fault: Fault | None = None
        self._cv = threading.Condition()
        # Held while an MMIO callback runs; other threads take it before ``emu_stop``.
        # Lock order: _mmio_lock -> a peripheral's lock, _mmio_lock -> _cv.
        self._mmio_lock = threading.RLock()
        self._thread: threading.Thread | None = None
        # The thread inside emu_start (or about to be): the core's own, or a borrower's.
        self._runner: int | None = None
        # A kicking thread runs the core while it would otherwise wake from wfi (run_inline);
        # the core's own thread waits meanwhile.
        self._borrowed = False
        self._inline_fault: Fault | None = None  # a fault met by a borrower, for _run
        self._sleep_waiters = 0  # threads in wait_sleeping()
        self._borrow_seq = 0
        self._borrower: int | None = None
        self._inline_expired = False  # the core's thread wants its core back
        self._inline_since = 0.0  # when the current borrower started running the core
        self._inline_watch_armed = False  # _inline_watch is scheduled
        self._halt = False
        self._fault_req: Fault | None = None
        self._sleeping = False
        self._in_emu = False
        self._gen = 0
        self._entered_gen = 0
        self._masked_spin_gen = -1
        self._trap: tuple[int, int] | None = None  # (intno, pc) seen by the interrupt hook
        self._mem_fault: tuple[int, int] | None = None  # (access, address) of a bad access
        # Exactly-once MMIO (see the module docstring); guarded by _mmio_lock.
        self._replays: dict[int, _Replay] = {}  # pc -> accesses to answer on resume
        self._run_new: list[tuple[Access, int]] = []  # side-effecting accesses this run made
        self._run_answered: dict[int, list[tuple[Access, int]]] = {}  # answered this run, by pc
        self._stop_pending = False  # an emu_stop was asked for since this run began
        self._stop_wanted = False  # one was held back: take it at the next MMIO access
        # Nonzero (a serial) while the instruction that made a side-effecting access may not
        # have passed unicorn's stop check yet: other threads hold back emu_stop (_gap_hold).
        self._gap = 0
        self._gap_serial = 0
        self._gap_seen = 0  # the gap other threads measure (_gap_hold) ...
        self._gap_cpu0 = 0.0  # ... and the runner's CPU time when they first saw it
        self.mmio_replays = 0  # repeated accesses answered from the record (tests)
        self.inline_runs = 0  # run_inline calls that ran the core (tests, benchmarks)
        self.inline_preempts = 0  # borrowers stopped after a whole slice
        self.inline_steps = 0  # emu_start runs made by borrowers
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

    def _extra_mmio(self, uc: Uc) -> None:
        """Architecture MMIO besides the peripheral block (the Cortex-M SCS)."""

    def _on_start(self) -> None:
        """Reset architecture state that lives outside the Uc (NVIC, active exceptions)."""

    def _reg_bits(self) -> int:
        """The width of the core's registers (``RegAccess``)."""
        return 32

    def _budget(self) -> int:
        """Instructions the next run may execute (0: unlimited): up to the next tick."""
        return 0

    def _ran(self, budget: int) -> None:
        """A run ended: account the instructions it executed (tick counting)."""

    def _idle_timeout(self) -> float | None:
        """How long a core sleeping in wfi may sleep before its own tick (None: forever)."""
        return None

    def _idle_elapsed(self, seconds: float) -> None:
        """The core slept ``seconds`` in wfi: let its clock advance."""

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state is CoreState.RUNNING

    def start(self, entry: int) -> None:
        """Reset the CPU to ``entry`` and run it on a new thread."""
        if self._thread is not None:
            self.stop()
        uc = self._new_uc()
        # The thread that runs the core (its own or a borrower) moves registers through it;
        # others (a crash report) may too: RegAccess locks the buffers it reuses.
        self.regs = RegAccess(uc, self._reg_bits())
        for r in self.amap:
            uc.mem_map_ptr(r.da, r.size, UC_PROT_ALL, r.host_addr)
        # The machine's peripherals (peripherals/bus.py); callbacks get the window's base.
        for base, size in self.io.windows():
            uc.mmio_map(base, size, self._mmio_read, base, self._mmio_write, base)
        self._extra_mmio(uc)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_bad_access)
        self._install_hooks(uc)
        self._reset_regs(uc, entry)
        self.uc = uc
        self._on_start()
        with self._cv:
            self._halt = False
            self._fault_req = None
            self._inline_fault = None
            self._borrowed = False
            self._sleeping = False
            self._trap = None
            self._mem_fault = None
            self.fault = None
            self.state = CoreState.RUNNING
        with self._mmio_lock:
            self._replays.clear()
            self._run_new = []
            self._run_answered = {}
            self._stop_pending = False
            self._stop_wanted = False
            self._gap = 0
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
            if self._borrowed and self._borrower == threading.get_ident() and not self._in_emu:
                # A host callback run inline by a kick stops the core it borrowed: cancel
                # the borrow, or the core's thread would wait for it forever.
                self._borrowed = False
                self._borrower = None
            self._cv.notify_all()
        while thread.is_alive():
            # Repeated: a stop can be lost in unicorn's start window.
            # A halt never resumes the core: no need to hold back for a repeated access.
            with self._mmio_lock, self._cv:
                if self._in_emu and self.uc is not None:
                    self._stop_pending = True
                    self.uc.emu_stop()
            thread.join(0.02)
        self._thread = None
        self.io.quiesce()
        if self.state is CoreState.RUNNING:
            self.state = CoreState.HALTED

    def close(self) -> None:
        self.stop()
        self.uc = None


    def wait_sleeping(self, timeout: float = 5.0) -> bool:
        """Wait until the core sleeps in wfi (tests and benchmarks)."""
        with self._cv:
            self._sleep_waiters += 1
            try:
                return self._cv.wait_for(lambda: self._sleeping or self.state is not
                                         CoreState.RUNNING, timeout) and self._sleeping
            finally:
                self._sleep_waiters -= 1

    # ---- events from other threads -----------------------------------------------------------

    def irq_changed(self) -> None:
        """A line may have risen: wake the wfi sleep or interrupt the running emulation."""
        with self._cv:
            self._gen += 1
            gen = self._gen
            if not self._borrowed:  # a borrower looks at the lines itself after each run
                self._cv.notify_all()
        self._interrupt_emulation(gen)

    def borrow(self, *, pending_only: bool = False) -> int:
        """Take the core for ``run_inline`` if it sleeps in wfi with nothing to do: then a
        line raised next is not a wake-up for the core's thread but work for the caller.
        Returns a token for ``run_inline`` (which gives the core back), or 0 (nothing taken).
        A ``stop()`` on the borrowing thread itself cancels the borrow."""
        with self._cv:
            if (self.state is not CoreState.RUNNING or self._thread is None or self._borrowed
                    or self._in_emu or not self._sleeping or self._halt
                    or self._fault_req is not None or self._inline_fault is not None
                    or threading.get_ident() == self._thread.ident):
                return 0
            if pending_only and not (self._gen != self._masked_spin_gen
                                     and self._wakes(self.io.lines())):
                return 0  # nothing would wake it: no work to run
            self._borrowed = True
            self._borrow_seq += 1
            self._borrower = threading.get_ident()
            return self._borrow_seq

    def run_inline(self, token: int, budget: int = 64) -> None:
        """Run the borrowed core on the calling thread until it sleeps in wfi again (at most
        ``budget`` runs of ``emu_start``), then give it back.

        Why: a kick into a core idle in wfi used to wake the core's thread (a hand-off costing
        tens of microseconds on a loaded machine, and another one back for its reply). The
        borrower does exactly what the core's thread would do, run by run, with the same
        exactly-once MMIO rules (``_runner`` names the thread inside ``emu_start``, which is
        what those rules ask about). A fault, a halt, or a core still busy after ``budget``
        runs goes back to the core's thread, which carries on from there."""
        uc = self.uc
        with self._cv:
            self._inline_since = time.monotonic()
            arm = not self._inline_watch_armed and budget > 0
            self._inline_watch_armed = True
        if arm:
            self.scheduler.call_later(_INLINE_SLICE_S, self._inline_watch)
        self.inline_runs += 1
        try:
            for _ in range(budget):
                with self._cv:
                    if not self._borrowed or self._borrow_seq != token:
                        return  # cancelled by a stop(): the core is not ours any more
                    if (self._halt or self._fault_req is not None or uc is None
                            or self._inline_expired):
                        break
                    if self._sleeping:
                        if self._gen != self._masked_spin_gen and self._wakes(self.io.lines()):
                            self._sleeping = False
                        else:
                            break
                    self._in_emu = True
                    self._entered_gen = self._gen
                    self._runner = threading.get_ident()
                self.inline_steps += 1
                try:
                    fault = self._step(uc)
                except Exception as exc:  # an emulator bug: a fatal error, as in _run
                    log.exception("%s: emulation failed", self.name)
                    with self._cv:
                        self._in_emu = False
                    fault = Fault(CrashType.FATAL_ERROR, f"emulator error: {exc}",
                                  self._safe_pc(), arch=self.arch)
                if fault is not None:
                    with self._cv:
                        self._inline_fault = fault
                    break
        finally:
            with self._cv:
                if not self._borrowed or self._borrow_seq != token:
                    return  # noqa: B012 - cancelled: nothing of ours to give back
                self._borrowed = False
                self._borrower = None
                self._runner = None
                self._inline_expired = False
                # The core's thread only needs to look if the core is not back in wfi.
                if (not self._sleeping or self._sleep_waiters or self._halt
                        or self._inline_fault is not None or self._fault_req is not None
                        or (self._gen != self._masked_spin_gen
                            and self._wakes(self.io.lines()))):
                    self._cv.notify_all()

    def _interrupt_emulation(self, gen: int) -> None:
        """Make ``emu_start`` return so the loop sees generation ``gen``.

        The core's own thread (inside an MMIO callback) defers to the scheduler; other threads
        stop it now, unless an instruction that made a side-effecting MMIO access is completing
        (then at its next access, or a little later).
        """
        if threading.get_ident() == self._runner:
            self.scheduler.call_later(0, lambda: self._recheck(gen))
            return
        self._stop_for(gen, force=True)

    def _inline_watch(self) -> None:
        """Scheduler thread, armed while cores are borrowed: a borrower that has run the core
        for a whole slice (firmware computing) gives it back to the core's thread."""
        with self._cv:
            if not self._borrowed:
                self._inline_watch_armed = False
                return
            seq = self._borrow_seq
            left = self._inline_since + _INLINE_SLICE_S - time.monotonic()
        if left <= 0:
            self._preempt_borrower(seq)
            left = _INLINE_SLICE_S
        self.scheduler.call_later(left, self._inline_watch)

    def _preempt_borrower(self, seq: int) -> None:
        """Stop a borrower's run the way any other stop is made (exactly-once MMIO) and make
        ``run_inline`` return; the core's thread carries on."""
        with self._mmio_lock, self._cv:
            if not (self._borrowed and self._borrow_seq == seq and self._in_emu):
                return
            if self.uc is None:
                return
            self._inline_expired = True
            self.inline_preempts += 1
            if self._gap_hold() > 0:
                self._stop_wanted = True  # at the borrower's next MMIO access
            else:
                self._stop_pending = True
                self.uc.emu_stop()

    def _gap_hold(self) -> float:
        """How much longer (seconds of the runner's CPU time) other threads must hold back a
        stop: 0 when no side-effecting access is completing. Called with ``_mmio_lock`` held.

        Measured on the thread inside ``emu_start``: while the OS parks it, it cannot pass
        unicorn's check, so the hold must not run out (module docstring)."""
        gap = self._gap
        if not gap:
            return 0.0
        used = _thread_cpu(self._runner)
        if used is None:
            return 0.0  # the runner is gone: its run is over
        if self._gap_seen != gap:
            self._gap_seen = gap
            self._gap_cpu0 = used
        return max(_GAP_S - (used - self._gap_cpu0), 0.0)

    def _recheck(self, gen: int) -> None:
        self._stop_for(gen, force=False)

    def _stop_for(self, gen: int, *, force: bool) -> None:
        delay = _RECHECK_S
        with self._mmio_lock, self._cv:
            if not self._in_emu or self.uc is None:
                return
            if not force and self._entered_gen >= gen:
                return
            hold = self._gap_hold()
            if hold > 0:
                self._stop_wanted = True  # the core's next MMIO access takes it
                delay = hold
            else:
                self._stop_pending = True
                self.uc.emu_stop()
        self.scheduler.call_later(delay, lambda: self._recheck(gen))

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
        # On the emulation thread, inside the MMIO write, which ends the run (_mmio_access):
        # unicorn leaves the pc on the store, so the registers read after the stop show the
        # very instruction that wrote FATAL. The core does not resume.
        with self._cv:
            if self._fault_req is None:
                self._fault_req = Fault(CrashType.FATAL_ERROR,
                                        f"firmware fatal-error hook (code {code:#x})", 0,
                                        code=code, arch=self.arch)

    def watchdog_expired(self, timeout_ms: int) -> None:
        self.request_fault(Fault(CrashType.WATCHDOG,
                                 f"watchdog not refreshed within {timeout_ms} ms", 0,
                                 arch=self.arch))

    def to_host_notify(self, notifyid: int) -> None:
        if self.host is not None:
            self.host.notify(notifyid)

    def to_host_ctrl(self, word: int) -> None:
        if self.host is not None:
            self.host.ctrl(word)

    def console_line(self, text: str) -> None:
        if self.host is not None:
            self.host.console(text)
        else:
            log.info("%s: %s", self.name, text)

    # ---- hooks -------------------------------------------------------------------------------

    def _install_hooks(self, uc: Uc) -> None:
        """Architecture hooks (the interrupt hook); the default installs nothing."""

    def _mmio_read(self, uc: Uc, offset: int, size: int, base: int) -> int:
        offset += base  # the bus takes absolute addresses
        with self._mmio_lock:
            if self._replays or self._stop_pending or self._stop_wanted:
                value = self._mmio_access((0, 0, offset, size, 0),
                                          lambda: self.io.read(offset, size),
                                          self.io.read_changes_state)
            else:  # the common case, kept short: nothing to repeat, no stop on its way
                value = self.io.read(offset, size)
                if self.io.read_changes_state(offset, value):
                    self._gap_serial += 1
                    self._gap = self._gap_serial
                else:
                    self._gap = 0
        return value & ((1 << (8 * size)) - 1) if size < 4 else value

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, base: int) -> None:
        offset += base
        with self._mmio_lock:
            if self._replays or self._stop_pending or self._stop_wanted:
                self._mmio_access((0, 1, offset, size, value),
                                  lambda: self._io_write(offset, value, size))
            else:  # the common case (see _mmio_read)
                self.io.write(offset, value, size)
                self._gap_serial += 1
                self._gap = self._gap_serial

    def _io_write(self, offset: int, value: int, size: int) -> int:
        self.io.write(offset, value, size)
        return 0

    def _mmio_access(self, access: Access, perform: Callable[[], int],
                     changes_state: Callable[[int, int], bool] | None = None) -> int:
        """Run one MMIO access exactly once (module docstring); returns what a read reads.

        ``changes_state(offset, result)`` says whether a read had a side effect; every write
        has one.
        """
        with self._mmio_lock:
            uc = self.uc
            assert uc is not None
            self._gap = 0
            if self._stop_wanted and not self._stop_pending:
                self._stop_wanted = False
                self._stop_pending = True
                uc.emu_stop()  # the stop held back: it rolls this access back
            if self._replays:
                pc = self.pc()
                rec = self._replays.get(pc)
                if rec is not None and rec.done < len(rec.accesses):
                    expected, result = rec.accesses[rec.done]
                    if expected == access:
                        self.mmio_replays += 1
                        if self._stop_pending:
                            uc.emu_stop()  # rolled back once more, for sure: keep the record
                        else:
                            rec.done += 1
                            self._run_answered.setdefault(pc, []).append((access, result))
                            self._gap_serial += 1
                            self._gap = self._gap_serial
                        return result
            result = perform()
            if access[1] or (changes_state is not None and changes_state(access[2], result)):
                if self._stop_pending:
                    # Make the rollback certain (the pending stop may have been lost in
                    # unicorn's start window) and remember the access for the repetition.
                    self._run_new.append((access, result))
                    uc.emu_stop()
                else:
                    self._gap_serial += 1
                    self._gap = self._gap_serial
            return result

    def _settle_mmio(self, began: int) -> bool:
        """After a run: remember what the rolled-back instruction did, drop what completed.
        Returns whether a stop was asked for during the run (it may be what ended it)."""
        with self._mmio_lock:
            stopped = self._stop_pending
            self._stop_pending = False
            self._stop_wanted = False  # the run ended: whoever held back rechecks anyway
            self._gap = 0
            new, self._run_new = self._run_new, []
            answered, self._run_answered = self._run_answered, {}
            if not new and not self._replays:
                return stopped
            pc = self.pc()
            for at in answered:
                rec = self._replays.get(at)
                if rec is not None and rec.done == len(rec.accesses):
                    del self._replays[at]  # repeated in full: the instruction completed
            if new:
                # The last one ended the run and was rolled back to ``pc``; earlier ones (none,
                # unless an IT block hid a check) completed. An instruction making several
                # accesses (ldm/stm/ldrd/strd) is rolled back once per access: keep what was
                # answered of it, unless this access repeats one of them (then it is the same
                # instruction running again, e.g. a loop).
                last = new[-1]
                prefix = answered.get(pc, [])
                if prefix and all(a[2] != last[0][2] for a, _ in prefix):
                    accesses = [*prefix, last]
                else:
                    accesses = [last]
                self._replays[pc] = _Replay(accesses)
                while len(self._replays) > _REPLAYS_KEPT:
                    del self._replays[next(iter(self._replays))]
            rec = self._replays.get(began)
            if rec is not None and pc != began and began not in answered and not new:
                # The run started at that pc and went past it without repeating the access
                # (an IT block's stop landed later): nothing will repeat it.
                del self._replays[began]
            return stopped

    def _on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int,
                       _ud: object) -> bool:
        self._mem_fault = (access, address)
        return False  # unicorn then ends emu_start with the matching UcError

    def _intr(self, intno: int, pc: int) -> None:
        """Called from the architecture's interrupt hook: remember it and stop."""
        self._trap = (intno, pc)
        assert self.uc is not None
        with self._mmio_lock:
            self._stop_pending = True
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
        if not fault.regs:  # a fault recorded earlier keeps the registers of its moment
            fault.regs = self.read_regs()
        fault.arch = self.arch
        return fault

    def _loop(self, uc: Uc) -> Fault | None:
        me = threading.get_ident()
        while True:
            with self._cv:
                while True:
                    if self._borrowed:  # another thread runs the core (run_inline)
                        self._cv.wait()
                        continue
                    if self._inline_fault is not None:
                        return self._inline_fault
                    if self._halt:
                        return None
                    if self._fault_req is not None:
                        return self._finish_fault(self._fault_req)
                    if self._sleeping:
                        if self._gen != self._masked_spin_gen and self._wakes(self.io.lines()):
                            self._sleeping = False
                        else:
                            # An idle core with a running tick (SysTick) sleeps until the
                            # tick's wall-clock deadline, never spinning.
                            timeout = self._idle_timeout()
                            t0 = time.monotonic()
                            self._cv.wait(timeout)
                            if timeout is not None:
                                self._idle_elapsed(time.monotonic() - t0)
                            continue
                    break
                self._in_emu = True
                self._entered_gen = self._gen
                self._runner = me
            fault = self._step(uc)
            if fault is not None:
                return fault

    def _step(self, uc: Uc) -> Fault | None:
        """One run: enter a pending interrupt, ``emu_start`` until it returns, sort out why.
        Called with ``_in_emu`` set by the thread that runs the core; a fault ends the core."""
        lines = self.io.lines()
        # unconditionally: an architecture may have exceptions pending that no line carries
        # (Cortex-M SysTick, PendSV)
        if self._take_interrupt(lines):
            self.interrupts_taken += 1
            self._masked_spin_gen = -1
        with self._cv:
            if self._fault_req is not None:  # exception entry itself failed
                self._in_emu = False
                return None
        err: Any = None
        began = self.pc()
        budget = self._budget()
        try:
            uc.emu_start(self._begin(), self.UNTIL, 0, budget)
        except UcError as exc:
            err = exc
        except MmioFault as exc:  # the machine's "strict" policy refused an access
            with self._cv:
                self._in_emu = False
            return self._finish_fault(Fault(CrashType.MMUFAULT, str(exc), 0,
                                            address=exc.address))
        except Exception as exc:  # an MMIO callback raised: unicorn re-raises it here
            with self._cv:
                self._in_emu = False
            return self._finish_fault(Fault(CrashType.FATAL_ERROR,
                                            f"device model error: {exc}", 0))
        with self._cv:
            self._in_emu = False
        self._ran(budget)
        ended_by_access = bool(self._run_new)
        stopped = self._settle_mmio(began)
        if err is not None:
            # None: the architecture vectored it (a Cortex-M fault handler); the run goes on
            return self._fault_from_error(err)
        trap, self._trap = self._trap, None
        if trap is not None:
            f = self._handle_trap(*trap)
            if f is not None:
                return self._finish_fault(f)
            return None
        with self._cv:
            if self._fault_req is not None or self._halt:
                return None
        if ended_by_access:  # stopped by its own MMIO access, not by a wfi before it
            return None
        # A pc just past a wfi does not prove the wfi ran: a stop (a kick, a borrower's slice,
        # a recheck) can end a run right after a branch over the wfi or an exception return
        # to just past it (the SDK resumes an interrupted sleep window there). Taking that for
        # a sleep lost the firmware's pending work until the next interrupt (a 15 s stall of
        # the inline recv flood). When a stop was asked for, resume instead: if the wfi did
        # run, that is a spurious wake-up, which wfi allows and firmware loops back from.
        if not stopped and self._after_wfi():
            self.wfi_sleeps += 1
            with self._cv:
                lines = self.io.lines()
                if lines and self._wakes(lines) and not self._can_enter():
                    # Woken by a line we cannot take (masked): sleep again only once the
                    # generation moves, or wfi in a masked loop would spin a host core.
                    self._masked_spin_gen = self._gen
                self._sleeping = True
                if not self._borrowed or self._sleep_waiters:
                    self._cv.notify_all()  # wait_sleeping(); not the waiting core thread
        return None

    def _can_enter(self) -> bool:
        """Could an exception be entered now (global mask clear, not already active)?"""
        return True

    def _fault_from_error(self, err: Any) -> Fault | None:
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
