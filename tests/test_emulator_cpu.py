"""The emulator's CPU layer with tiny bare-metal programs (tests/test_emulator_support.py):
interrupts taken and returned from, WFI sleep at ~0 host CPU, the timer, the watchdog, faults
with their PC, two cores on their own threads, DDR shared with the host, the machine TOML."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import holds_for, wait_until
from test_emulator_support import (
    ARG,
    CMD,
    DONE,
    OUT,
    RESULT,
    build,
    compute_expected,
    symbol,
)

from remoteproc.core.states import CrashType
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine
from remoteproc.platforms.emulator.cores.cpu import CoreState
from remoteproc.platforms.emulator.memory import AddressMap, HostMemory, Region

ARCHES = ["m4", "rv32", "rv64"]
CPU = {"m4": "cortex-m4", "rv32": "rv32imac", "rv64": "rv64imac"}


def machine_toml(cpus: list[str]) -> str:
    text = "[machine]\nname = 't'\n[ddr]\nbase = 0x80000000\nsize = 0x1000000\n"
    for i, cpu in enumerate(cpus):
        text += f"[[core]]\nname = 'c{i}'\ncpu = '{cpu}'\n"
    return text


@pytest.fixture
def make() -> Iterator[Callable[[list[str]], EmulatorPlatform]]:
    made: list[EmulatorPlatform] = []

    def factory(arches: list[str]) -> EmulatorPlatform:
        plat = EmulatorPlatform(parse_machine(machine_toml([CPU[a] for a in arches])))
        made.append(plat)
        for i, a in enumerate(arches):
            plat[f"c{i}"].boot_preloaded(f"prog-{a}", build(a))
        return plat

    yield factory
    for p in made:
        p.close()


def u32(plat: EmulatorPlatform, da: int, core: str = "c0") -> int:
    view = plat[core].translate(da, 4)
    assert view is not None
    return int(struct.unpack("<I", view)[0])


def put(plat: EmulatorPlatform, da: int, value: int) -> None:
    view = plat.ddr.translate(da, 4)
    assert view is not None
    view[:] = struct.pack("<I", value)


def command(plat: EmulatorPlatform, cmd: int, arg: int = 0, core: str = "c0") -> None:
    put(plat, ARG, arg)
    put(plat, CMD, cmd)
    plat[core].io.host_kick(0)  # the doorbell wakes the core, which then reads the command


@pytest.mark.parametrize("arch", ARCHES)
def test_doorbell_interrupts_are_taken_and_returned_from(make: Callable[..., EmulatorPlatform],
                                                         arch: str) -> None:
    plat = make([arch])
    proc = plat["c0"]
    assert proc.core.wait_sleeping()
    for i in range(1, 41):
        proc.io.host_kick(i)
        if i % 8 == 0:  # let the FIFO (64 deep) drain now and then
            wait_until(lambda i=i: u32(plat, 0x2000_0008) == i)
    wait_until(lambda: u32(plat, 0x2000_0008) == 40)
    assert u32(plat, 0x2000_0000) == sum(range(1, 41))
    assert proc.core.interrupts_taken >= 5
    assert proc.core.state is CoreState.RUNNING


@pytest.mark.parametrize("arch", ARCHES)
def test_idle_core_sleeps_in_wfi_without_host_cpu(make: Callable[..., EmulatorPlatform],
                                                  arch: str) -> None:
    plat = make([arch])
    core = plat["c0"].core
    assert core.wait_sleeping()
    # Bounded observation: the property is that an idle core costs no host CPU over a window,
    # so the 0.5 s window is the measurement itself, not a wait for something; nothing may
    # wake the core meanwhile (no interrupt taken).
    taken = core.interrupts_taken
    t0 = time.process_time()
    holds_for(lambda: core.interrupts_taken == taken, 0.5, "the core idle in wfi")
    used = time.process_time() - t0
    assert used < 0.02, f"an idle core used {used:.3f} s of CPU in 0.5 s"


@pytest.mark.parametrize("arch", ARCHES)
def test_interrupts_during_computation_preserve_its_state(
        make: Callable[..., EmulatorPlatform], arch: str) -> None:
    plat = make([arch])
    proc = plat["c0"]
    assert proc.core.wait_sleeping()
    n = 3_000_000
    command(plat, 7, n)
    kicks = 0
    while not u32(plat, DONE) and kicks < 200:
        proc.io.host_kick(1)
        kicks += 1
        time.sleep(0.0005)  # pacing the interrupt storm, not waiting for anything
    wait_until(lambda: u32(plat, DONE) == 1, 20)
    assert u32(plat, RESULT) == compute_expected(n)
    assert u32(plat, 0x2000_0008) >= 2  # handlers ran, some of them in the middle of the loop


@pytest.mark.parametrize("arch", ARCHES)
def test_timer_interrupt_is_periodic(make: Callable[..., EmulatorPlatform], arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    command(plat, 6, 2000)  # 2 ms
    wait_until(lambda: u32(plat, CMD) == 0, what="the command taken")
    # Bounded observation: the tick rate is counted over a 0.3 s window (the window is the
    # measurement); the upper bound holds throughout it.
    holds_for(lambda: u32(plat, 0x2000_0004) <= 160, 0.3, "at most 160 ticks")
    ticks = u32(plat, 0x2000_0004)
    assert 30 <= ticks <= 160, ticks  # ~150 expected; a loaded host skips periods
    command(plat, 6, 0)
    # taken (CMD cleared), then the period written and the core back in wfi: stopped
    wait_until(lambda: u32(plat, CMD) == 0, what="the stop command taken")
    assert plat["c0"].core.wait_sleeping()
    stopped = u32(plat, 0x2000_0004)
    holds_for(lambda: u32(plat, 0x2000_0004) == stopped, 0.05, "no tick once stopped")
    assert u32(plat, 0x2000_0004) == stopped


# A program that never sleeps but spins at the address just past a wfi it branches over:
# where the SDK's sleep window also resumes an interrupted sleep.
_PAST_WFI_SRC = r"""
.syntax unified
.thumb
.section .vectors,"a"
.word 0x20001000
.word _start+1
.text
.thumb_func
.global _start
_start:
  b.n past
  wfi
past:
  b.n past
"""


def test_a_stop_just_past_a_wfi_is_not_a_sleep() -> None:
    """Every stop of the spinning core lands with its pc just past a wfi that never ran. The
    core must keep running: taking that for a wfi sleep put a core with pending work to sleep
    until the next interrupt (the inline recv flood's 15 s stall)."""
    plat = EmulatorPlatform(parse_machine(machine_toml([CPU["m4"]])))
    try:
        plat["c0"].boot_preloaded("past-wfi", build("m4", _PAST_WFI_SRC))
        core = plat["c0"].core
        wait_until(lambda: core._entered_gen == core._gen and core._in_emu, what="core running")
        first = core._entered_gen

        def stop_again() -> bool:
            core.irq_changed()  # no line rises: only a stop of the run, then the next run
            return not core._sleeping and core.wfi_sleeps == 0

        holds_for(stop_again, 0.3, "the spinning core running, never asleep")
        # The window is only meaningful if stops really ended runs (each new run records the
        # generation it started at).
        assert core._entered_gen - first >= 5, core._entered_gen - first
        assert core.state is CoreState.RUNNING
    finally:
        plat.close()


def wait_fault(plat: EmulatorPlatform, core: str = "c0") -> None:
    wait_until(lambda: plat[core].core.state is CoreState.CRASHED)
    wait_until(lambda: bool(plat[core].crashes))


@pytest.mark.parametrize("arch", ARCHES)
def test_unmapped_access_is_an_mmufault_with_the_pc(make: Callable[..., EmulatorPlatform],
                                                    arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    command(plat, 1)
    wait_fault(plat)
    report = plat["c0"].last_crash
    assert report is not None
    assert report.crash_type is CrashType.MMUFAULT
    assert "0x60000000" in report.reason
    start = symbol(build(arch), "do_mmu")
    assert start <= report.pc < start + 12
    assert report.where.startswith("do_mmu+")
    assert report.instruction.startswith(("ldr", "lw"))
    assert report.regs["r15" if arch == "m4" else "pc"] == report.pc


@pytest.mark.parametrize("arch", ARCHES)
def test_undefined_instruction_is_a_fatal_error(make: Callable[..., EmulatorPlatform],
                                                arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    command(plat, 2)
    wait_fault(plat)
    report = plat["c0"].last_crash
    assert report is not None
    assert report.crash_type is CrashType.FATAL_ERROR
    assert report.pc == symbol(build(arch), "do_udf")
    assert "undefined" in report.reason or "illegal" in report.reason


@pytest.mark.parametrize("arch", ARCHES)
def test_fatal_register_is_a_fatal_error(make: Callable[..., EmulatorPlatform],
                                         arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    command(plat, 3)
    wait_fault(plat)
    report = plat["c0"].last_crash
    assert report is not None
    assert report.crash_type is CrashType.FATAL_ERROR
    assert "0x1234" in report.reason


@pytest.mark.parametrize("arch", ARCHES)
def test_watchdog_expiry_is_a_watchdog_crash(make: Callable[..., EmulatorPlatform],
                                             arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    t0 = time.monotonic()
    command(plat, 4)
    wait_fault(plat)
    elapsed = time.monotonic() - t0
    report = plat["c0"].last_crash
    assert report is not None
    assert report.crash_type is CrashType.WATCHDOG
    assert 0.04 <= elapsed < 1.0
    assert report.regs  # registers where the core was stopped


def test_two_cores_run_on_their_own_threads(make: Callable[..., EmulatorPlatform]) -> None:
    plat = make(["m4", "rv32"])
    names = {t.name for t in threading.enumerate()}
    assert {"core-c0", "core-c1"} <= names
    for core in ("c0", "c1"):
        assert plat[core].core.wait_sleeping()
    # Each core computes in turn (the command words live in the shared DDR); the other one
    # keeps sleeping on its own thread, and stopping one leaves the other running.
    command(plat, 7, 500_000, core="c0")
    wait_until(lambda: u32(plat, DONE) == 1, 20)
    assert u32(plat, RESULT) == compute_expected(500_000)
    put(plat, DONE, 0)
    command(plat, 7, 400_000, core="c1")
    wait_until(lambda: u32(plat, DONE) == 1, 20)
    assert u32(plat, RESULT) == compute_expected(400_000)
    plat["c0"].core.stop()
    assert plat["c0"].core.state is CoreState.HALTED
    assert plat["c1"].core.state is CoreState.RUNNING


@pytest.mark.parametrize("arch", ARCHES)
def test_ddr_is_shared_with_the_host_without_copies(make: Callable[..., EmulatorPlatform],
                                                    arch: str) -> None:
    plat = make([arch])
    assert plat["c0"].core.wait_sleeping()
    command(plat, 5, 41)  # the firmware reads DDR[4] the host wrote and writes DDR[8]
    wait_until(lambda: u32(plat, OUT) == 42)
    host_view = plat.ddr.translate(OUT, 4)
    core_view = plat["c0"].translate(OUT, 4)
    assert host_view is not None and core_view is not None
    core_view[:] = b"\x01\x02\x03\x04"
    assert bytes(host_view) == b"\x01\x02\x03\x04"  # the same memory, not a copy


def test_stop_joins_the_thread_and_start_again(make: Callable[..., EmulatorPlatform]) -> None:
    plat = make(["m4"])
    core = plat["c0"].core
    assert core.wait_sleeping()
    core.stop()
    assert core.state is CoreState.HALTED
    assert "core-c0" not in {t.name for t in threading.enumerate()}
    plat["c0"].reboot_from_loader()
    assert core.wait_sleeping()
    plat["c0"].io.host_kick(5)
    wait_until(lambda: u32(plat, 0x2000_0000) >= 5)


def test_address_map_refuses_overlaps_and_translates_in_place() -> None:
    with HostMemory(0x2000) as a, HostMemory(0x1000) as b:
        amap = AddressMap([Region("a", 0x1000, 0x2000, a.view, a.address)])
        with pytest.raises(RprocError):
            amap.add(Region("b", 0x2000, 0x1000, b.view, b.address))
        view = amap.translate(0x1ffc, 8)
        assert view is not None and len(view) == 8
        view[:] = b"abcdefgh"
        assert bytes(a.view[0xffc:0x1004]) == b"abcdefgh"
        assert amap.translate(0x2ffc, 8) is None
        del view


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[core]]\nname='a'\ncpu='z80'\n", "m.toml: core[0].cpu: unknown cpu 'z80'"),
        ("[[core]]\ncpu='cortex-m4'\n", "m.toml: core[0].name: missing"),
        ("[[core]]\nname='a'\ncpu='cortex-m4'\nboot='auto'\n", "core[0].firmware"),
        ("[ddr]\nbase=0x80000001\n[[core]]\nname='a'\ncpu='rv32imac'\n", "ddr.base"),
        ("[[core]]\nname='a'\ncpu='rv32imac'\nmemory=[{name='x',da=0x40000000,size=0x1000}]\n",
         "core[0].memory[0].da"),
        ("[[core]]\nname='a'\ncpu='rv32imac'\n[[core]]\nname='a'\ncpu='rv32imac'\n",
         "duplicate core name"),
        ("[[core]]\nname='a'\ncpu='rv32imac'\ncolour='red'\n", "core[0].colour: unknown key"),
        ("[[core]\n", "not valid TOML"),
    ],
)
def test_machine_errors_name_the_file_and_key(text: str, needle: str) -> None:
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml")
    assert needle in str(info.value)
    assert info.value.errno == 22


def test_default_machine_has_the_three_processors() -> None:
    from remoteproc.platforms.emulator import DEFAULT_MACHINE, load_machine_spec

    spec = load_machine_spec(DEFAULT_MACHINE)
    by_name = {c.name: c for c in spec.cores}
    assert by_name["m4"].cpu == "cortex-m4" and by_name["m4"].boot == "auto"
    assert by_name["m4"].firmware == "rpmsg-echo-m4.elf"
    assert by_name["rv"].cpu == "rv32imac" and by_name["rv"].boot == "manual"
    assert by_name["rv"].firmware == "hello-rv32.elf"
    assert by_name["m4-early"].boot == "preloaded" and by_name["m4-early"].recovery == "attach"
    assert spec.dma_base == 0x8800_0000
