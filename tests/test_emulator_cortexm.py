"""The Cortex-M exception model (cores/cortexm.py) with the committed ``cortexm-exc`` firmware
(firmware/examples/cortexm-exc/main.c), on the Cortex-M4F and the Cortex-M33.

The host writes a scenario number at DDR 0x80000000 and boots the image; the firmware writes
its results at DDR 0x80000100 (RES[0] = 0x600D when done, RES[1] = error bits) and an event log
at 0x80000200. Each scenario checks one behaviour that a simpler model gets wrong: the
expected values below come from the ARMv7-M / ARMv8-M rules, not from running the emulator.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remoteproc.core.states import CrashType
from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine
from remoteproc.platforms.emulator.cores.cortexm import CortexM4, CortexM33
from remoteproc.platforms.emulator.cores.cpu import CoreState, RunCounter

FW_DIR = Path(__file__).resolve().parents[1] / "src" / "remoteproc" / "data" / "firmware"
CPUS = {"m4": "cortex-m4", "m33": "cortex-m33"}
CMD, RES, LOG = 0x8000_0000, 0x8000_0100, 0x8000_0200
DONE = 0x600D
# EXC_RETURN for thread mode on PSP: basic frame, extended (FP) frame.
EXC_RETURN_PSP = {"m4": (0xFFFF_FFFD, 0xFFFF_FFED), "m33": (0xFFFF_FFBC, 0xFFFF_FFAC)}
DEADLINE = 60.0  # generous: the machine is shared


class Run:
    def __init__(self, plat: EmulatorPlatform) -> None:
        self.plat = plat
        self.proc = plat["c0"]

    def word(self, da: int) -> int:
        view = self.plat.ddr.translate(da, 4)
        assert view is not None
        try:
            return int(struct.unpack("<I", view)[0])
        finally:
            view.release()

    def res(self, i: int) -> int:
        return self.word(RES + 4 * i)

    def log(self) -> list[int]:
        out = []
        for i in range(64):
            v = self.word(LOG + 4 * i)
            if not v:
                break
            out.append(v)
        return out

    def wait_done(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.res(0) != DONE:
            assert self.proc.core.fault is None, str(self.proc.core.fault)
            assert time.monotonic() < deadline, f"scenario not done: RES {self.res(0):#x}"
            time.sleep(0.005)
        assert self.res(1) == 0, f"the firmware found errors {self.res(1):#x}"

    def wait_crash(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while not self.proc.crashes:
            assert time.monotonic() < deadline, "no crash report"
            time.sleep(0.005)


@pytest.fixture
def run() -> Iterator[Callable[[str, int], Run]]:
    made: list[EmulatorPlatform] = []

    def factory(arch: str, scenario: int, clock: int | None = None,
                mode: str | None = None) -> Run:
        text = ("[ddr]\nbase = 0x80000000\nsize = 0x1000000\n"
                f"[[core]]\nname = 'c0'\ncpu = '{CPUS[arch]}'\n")
        if clock:
            text += f"clock_hz = {clock}\n"
        if mode:
            text += f"clock_mode = '{mode}'\n"
        plat = EmulatorPlatform(parse_machine(text))
        made.append(plat)
        view = plat.ddr.translate(CMD, 4)
        assert view is not None
        view[:] = struct.pack("<I", scenario)
        view.release()
        plat["c0"].boot_preloaded(f"cortexm-exc-{arch}.elf",
                                  (FW_DIR / f"cortexm-exc-{arch}.elf").read_bytes())
        return Run(plat)

    yield factory
    for p in made:
        p.close()


@pytest.mark.parametrize("arch", CPUS)
def test_cpu_types_are_the_right_classes(run: Callable[..., Run], arch: str) -> None:
    r = run(arch, 0)
    assert type(r.proc.core) is (CortexM4 if arch == "m4" else CortexM33)


@pytest.mark.parametrize("arch", CPUS)
def test_two_threads_switched_by_pendsv_with_svc(run: Callable[..., Run], arch: str) -> None:
    r = run(arch, 1)
    r.wait_done()
    # 500 rounds each; every round yields once (svc #1 -> PendSV), plus thread 0's final yields
    assert (r.res(2), r.res(3)) == (500, 500)
    assert r.res(4) >= 1000
    # PendSV was entered from a thread on PSP with a basic frame: the real EXC_RETURN
    assert r.res(5) == EXC_RETURN_PSP[arch][0]
    assert r.res(6) & 0x6 == 0x2  # CONTROL in the thread: SPSEL = 1 (PSP), FPCA = 0


@pytest.mark.parametrize("arch", CPUS)
def test_fp_context_switch_uses_extended_frames(run: Callable[..., Run], arch: str) -> None:
    r = run(arch, 2)
    r.wait_done()  # RES[1] bit 3: an FP register changed across a switch
    assert (r.res(2), r.res(3)) == (500, 500)
    assert r.res(5) == EXC_RETURN_PSP[arch][1]  # bit 4 clear: the extended frame
    assert r.res(6) & 0x6 == 0x6  # FPCA set in the thread


@pytest.mark.parametrize("arch", CPUS)
def test_systick_counts_emulated_instructions(run: Callable[..., Run], arch: str) -> None:
    if RunCounter.executed(run(arch, 0).proc.core.uc, 1) is None:
        pytest.skip("this unicorn build hides its instruction counter")
    r = run(arch, 3)
    r.wait_done()
    # 1,000,000 loop instructions plus the ticks' own handlers, a tick every 10,000
    assert r.res(2) == 100
    # CVR went down by exactly the 20 instructions executed between the two reads
    assert r.res(3) == 20
    # COUNTFLAG: set by the wrap, cleared by the first read
    assert (r.res(4), r.res(5)) == (1, 0)


@pytest.mark.parametrize("arch", CPUS)
def test_systick_wakes_wfi_at_the_core_clock_without_spinning(run: Callable[..., Run],
                                                              arch: str) -> None:
    t0 = time.monotonic()
    c0 = time.process_time()
    r = run(arch, 8)  # 100 ticks at 1 kHz, asleep in wfi in between
    r.wait_done()
    wall = time.monotonic() - t0
    cpu = time.process_time() - c0
    assert r.res(2) == 100
    assert wall >= 0.095, f"100 ticks of 1 ms took {wall:.3f} s: the sleep ignored the clock"
    assert r.proc.core.wfi_sleeps >= 100
    assert cpu < max(0.5 * wall, 0.05) + 0.3, f"{cpu:.3f} s of CPU in {wall:.3f} s"


def test_realtime_clock_mode_ticks_at_host_time(run: Callable[..., Run]) -> None:
    t0 = time.monotonic()
    r = run("m33", 8, None, "realtime")
    r.wait_done()
    wall = time.monotonic() - t0
    # Host time runs on between the firmware's last check and its disabling store: a loaded
    # host may deliver a tick or more there.
    assert r.res(2) >= 100
    assert wall >= 0.095, f"100 ticks of 1 ms took {wall:.3f} s"
    core = r.proc.core
    assert isinstance(core, CortexM33) and core.realtime
    assert core._budget() == 0  # runs are not counted in this mode


def test_clock_hz_from_the_machine_sets_the_tick_rate(run: Callable[..., Run]) -> None:
    # SYST_CALIB.TENMS follows clock_hz, so the firmware's 1 kHz is 1 kHz at any clock; the
    # wall time of 100 ticks does not depend on it, the instructions per tick do.
    r = run("m4", 8, 10_000_000)
    r.wait_done()
    core = r.proc.core
    assert isinstance(core, CortexM4)
    assert core.scs.st_rvr == 10_000_000 // 1000 - 1


@pytest.mark.parametrize("arch", CPUS)
def test_priorities_masks_preemption_and_tail_chaining(run: Callable[..., Run],
                                                       arch: str) -> None:
    r = run(arch, 4)
    r.wait_done()  # RES[1]: IABR/VECTACTIVE/VECTPENDING/preemption checks in the handlers
    assert r.res(2) == 1  # taken at the `msr basepri, 0`, before the next instruction
    assert r.res(3) == 0x0102  # PRIMASK held IRQ 6 back; taken right after cpsie i
    assert r.res(4) == 0x0203  # FAULTMASK, cpsie f
    assert r.log() == [
        # BASEPRI 0x80 lifted: IRQ 5 (0x80) runs, pends 6 (0x40: preempts at once) and
        # 7 (0xC0: waits, then tail-chains)
        0x105, 0x106, 0x306, 0x205, 0x305, 0x107, 0x307,
        0x106, 0x306,  # PRIMASK
        0x106, 0x306,  # FAULTMASK
        # PRIGROUP 0: IRQ 8 (0x40) preempts IRQ 9 (0x50)
        0xA0, 0x109, 0x108, 0x308, 0x209, 0x309,
        # PRIGROUP 5: 0x40 and 0x50 are one group: 8 waits for 9 to return
        0xA1, 0x109, 0x209, 0x309, 0x108, 0x308, 0xA2,
    ]


@pytest.mark.parametrize("arch", CPUS)
def test_faults_handled_by_the_firmware(run: Callable[..., Run], arch: str) -> None:
    r = run(arch, 5)
    r.wait_done()
    assert (r.res(2), r.res(3), r.res(4)) == (1, 1, 1)  # UsageFault, BusFault, HardFault
    assert r.res(8 + 6) == 1 << 16  # CFSR.UNDEFINSTR seen by the UsageFault handler
    assert r.res(8 + 5) == (1 << 9) | (1 << 15)  # PRECISERR | BFARVALID
    assert r.res(16) == 0x6000_0000  # BFAR
    assert r.res(8 + 3) == 1 << 16 and r.res(15) == 1 << 30  # escalated: HFSR.FORCED
    assert r.proc.core.state is CoreState.RUNNING
    assert not r.proc.crashes


@pytest.mark.parametrize("arch", CPUS)
def test_fault_reported_by_the_firmware_names_the_original_fault(run: Callable[..., Run],
                                                                 arch: str) -> None:
    r = run(arch, 6)
    r.wait_crash()
    report = r.proc.crashes[0]
    assert report.crash_type is CrashType.MMUFAULT
    assert "0x60000000" in report.reason and "0xdead0003" in report.reason
    assert "do_bad_read" in report.where  # the faulting load, not the handler's store
    assert report.regs["r15"] == report.pc


@pytest.mark.parametrize("arch", CPUS)
def test_fault_in_the_hardfault_handler_is_a_lockup_crash(run: Callable[..., Run],
                                                          arch: str) -> None:
    r = run(arch, 7)
    r.wait_crash()
    report = r.proc.crashes[0]
    assert report.crash_type is CrashType.FATAL_ERROR
    assert "undefined instruction" in report.reason and "lockup" in report.reason
    assert "do_udf" in report.where
    assert r.proc.core.state is CoreState.CRASHED


# ---- crash-loop back-off, end to end ----------------------------------------------------------


def test_a_crash_loop_stops_recovery_and_leaves_the_processor_crashed() -> None:
    from remoteproc.core.events import EventKind
    from remoteproc.core.host import Host
    from remoteproc.core.rproc import CRASH_LOOP_MAX
    from remoteproc.core.states import State

    host = Host([FW_DIR], panic_hook=False)
    text = ("[machine]\nname = 'loop'\n[[core]]\nname = 'c'\ncpu = 'cortex-m4'\n"
            "boot = 'manual'\nfirmware = 'cortexm-exc-m4.elf'\nrecovery = 'reload'\n")
    plat = EmulatorPlatform(parse_machine(text))
    try:
        plat.register(host)
        view = plat.ddr.translate(CMD, 4)
        assert view is not None
        view[:] = struct.pack("<I", 7)  # locks up at boot, every boot
        view.release()
        rproc = plat["c"].rproc
        assert rproc is not None
        events: list[EventKind] = []
        rproc.events.subscribe(lambda ev: events.append(ev.kind))
        rproc.boot()
        deadline = time.monotonic() + DEADLINE
        while EventKind.RECOVERY_STOPPED not in events:
            assert time.monotonic() < deadline, f"no back-off: {rproc.crash_cnt} crashes"
            time.sleep(0.01)
        time.sleep(0.2)  # nothing recovers it any more
        assert rproc.state is State.CRASHED
        assert rproc.crash_cnt == CRASH_LOOP_MAX
        assert events.count(EventKind.RECOVERY_DONE) == CRASH_LOOP_MAX - 1
        # By hand, it is recovered again (and crashes again: the count starts afresh)
        rproc.trigger_recovery()
        deadline = time.monotonic() + DEADLINE
        while rproc.crash_cnt < CRASH_LOOP_MAX + 1:
            assert time.monotonic() < deadline, "no crash after a manual recovery"
            time.sleep(0.01)
    finally:
        host.close()
        plat.close()


@pytest.mark.parametrize(("line", "message"), [
    ("clock_hz = 5", "core[0].clock_hz: 5 Hz is not a core clock"),
    ("clock_hz = 'fast'", "core[0].clock_hz: expected an unsigned integer"),
    ("clock_mode = 'sundial'", "core[0].clock_mode: unknown clock_mode 'sundial'"),
])
def test_bad_clock_keys_name_the_file_and_key(line: str, message: str) -> None:
    import errno

    from remoteproc.errors import RprocError

    text = f"[[core]]\nname = 'c0'\ncpu = 'cortex-m33'\n{line}\n"
    with pytest.raises(RprocError) as info:
        parse_machine(text, "soc.toml")
    assert info.value.errno == errno.EINVAL
    assert f"soc.toml: {message}" in str(info.value)


@pytest.mark.parametrize("arch", CPUS)
def test_stack_alignment_and_unprivileged_threads(run: Callable[..., Run], arch: str) -> None:
    r = run(arch, 11)
    r.wait_done()
    sp = r.res(4)  # SP when the interrupt was taken: 4 (mod 8)
    assert sp % 8 == 4
    assert r.res(2) & (1 << 9)  # the stacked xPSR records the aligner word
    assert r.res(3) == (sp - 32) & ~7  # the frame was aligned down
    assert r.res(5) == sp  # and SP came back as it was
    assert r.res(6) & 1  # CONTROL.nPRIV set in thread mode ...
    assert r.res(7) == 0  # ... so msr basepri is ignored (and the svc was still taken)
    assert r.res(8) & 1 == 0  # the SVC handler dropped nPRIV: privileged again
    assert r.res(9) == 0x40


def test_mask_check_points_are_block_hooks(run: Callable[..., Run],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # While a run is counted (SysTick on), unicorn walks every code hook at every
    # instruction: each per-address code hook slowed all code (50 of them took a counted loop
    # from ~250 to ~15 MIPS). The instruction after cpsie/msr/isb starts a translation block,
    # so block hooks there see it at no per-instruction cost; the masking test above proves
    # they still fire.
    from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, Uc

    owner = next(c for c in Uc.__mro__ if "hook_add" in c.__dict__)
    added: list[tuple[int, int, int]] = []
    real = owner.hook_add

    def spy(self: Uc, htype: int, callback: object, user_data: object = None,
            begin: int = 1, end: int = 0, *args: object) -> int:
        added.append((htype, begin, end))
        return int(real(self, htype, callback, user_data, begin, end, *args))

    monkeypatch.setattr(owner, "hook_add", spy)
    r = run("m4", 4)
    r.wait_done()
    points = [(b, e) for t, b, e in added if t == UC_HOOK_BLOCK and b == e]
    assert len(points) >= 3  # the cpsie i, cpsie f and msr basepri of scenario 4, at least
    assert not [a for a in added if a[0] == UC_HOOK_CODE], added


def test_register_batches_read_and_write_what_single_calls_do() -> None:
    # RegAccess moves an exception's registers in one C call; it must agree with the binding's
    # one-register calls, keep the list order (a later write wins), and carry 32-bit values.
    from unicorn import UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
    from unicorn.arm_const import (
        UC_ARM_REG_BASEPRI,
        UC_ARM_REG_LR,
        UC_ARM_REG_R0,
        UC_ARM_REG_R12,
        UC_ARM_REG_S3,
    )

    from remoteproc.platforms.emulator.cores.regs import RegAccess

    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    rb = RegAccess(uc)
    assert rb.fast  # the C calls, not the fallback
    regs = (UC_ARM_REG_R0, UC_ARM_REG_R12, UC_ARM_REG_LR, UC_ARM_REG_S3, UC_ARM_REG_BASEPRI)
    rb.writes([(UC_ARM_REG_R0, 0x1234_5678), (UC_ARM_REG_R12, 0xFFFF_FFFF),
              (UC_ARM_REG_LR, 0xFFFF_FFFD), (UC_ARM_REG_S3, 0x3F80_0000),
              (UC_ARM_REG_BASEPRI, 0x40), (UC_ARM_REG_R0, 0xCAFE_F00D)])
    assert rb.reads(regs) == tuple(int(uc.reg_read(r)) for r in regs)
    assert rb.reads(regs) == (0xCAFE_F00D, 0xFFFF_FFFF, 0xFFFF_FFFD, 0x3F80_0000, 0x40)
    uc.reg_write(UC_ARM_REG_R12, 7)  # the prepared arrays are refilled on every call
    assert rb.reads(regs)[1] == 7
