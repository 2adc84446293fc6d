"""The emulator under stress and hostile machine descriptions:
- every MMIO access happens exactly once while other threads keep stopping the core (unicorn
  rolls an instruction back to repeat its access when a stop lands after it: doubled console
  characters, doubled kicks, lost FIFO entries);
- a crash/detach/attach storm on a preloaded core prints only lines the firmware can print;
- the boot loader refuses a segment in the host's DMA pool;
- machine descriptions with duplicate memory names, overlapping regions or more processors
  than the remoteproc character devices allow are refused, naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from elfbuild import Seg, build_elf

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import EmulatorPlatform, parse_machine
from remoteproc.platforms.emulator.cores.cpu import CoreState, HostLink
from remoteproc.platforms.emulator.platform import EmulatedProcessor

FW_DIR = Path(__file__).resolve().parents[1] / "src" / "remoteproc" / "data" / "firmware"

LINES = 120  # lines the printer prints
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# Prints LINES lines "a..z" on the console, one character per store, and after each line
# kicks the host with its number (TX_DATA); the mailbox handler drains RX_DATA, adding each id
# to SRAM[0] and counting in SRAM[8]. DDR[0] is the number of lines, DDR[4] = LINES + 1 at the
# end.
M4_PRINTER = r"""
.syntax unified
.thumb
.section .vectors,"a"
.word 0x20001000
.word _start+1
.rept 14
.word 0
.endr
.word mbox_isr+1
.text
.thumb_func
.global _start
_start:
  ldr r0, =0xE000E100
  movs r1, #1
  str r1, [r0]
  ldr r4, =0x40000000
  movs r1, #1
  str r1, [r4, #0xC]
  ldr r5, =0x40001000
  ldr r6, =0x80000000
  movs r7, #1
  cpsie i
line:
  movs r0, #97
1:
  str r0, [r5]
  adds r0, r0, #1
  cmp r0, #123
  bne 1b
  movs r0, #10
  str r0, [r5]
  str r7, [r4, #8]
  ldr r1, [r6]
  adds r7, r7, #1
  cmp r7, r1
  bls line
  str r7, [r6, #4]
2:
  wfi
  b 2b
.thumb_func
mbox_isr:
  ldr r0, =0x40000000
3:
  ldr r1, [r0]
  adds r3, r1, #1
  beq 4f
  ldr r2, =0x20000000
  ldr r3, [r2]
  adds r3, r3, r1
  str r3, [r2]
  ldr r3, [r2, #8]
  adds r3, r3, #1
  str r3, [r2, #8]
  b 3b
4:
  bx lr
"""

RV_PRINTER = r"""
.section .text
.global _start
_start:
  la t0, trap
  csrw mtvec, t0
  li t0, 0x800
  csrw mie, t0
  li s0, 0x40000000
  li t1, 1
  sw t1, 0xC(s0)
  li s1, 0x40001000
  li s2, 1
  li s3, 0x80000000
  csrsi mstatus, 8
line:
  li a0, 97
  li a1, 123
1:
  sw a0, 0(s1)
  addi a0, a0, 1
  bne a0, a1, 1b
  li a0, 10
  sw a0, 0(s1)
  sw s2, 8(s0)
  lw a1, 0(s3)
  addi s2, s2, 1
  bgeu a1, s2, line
  sw s2, 4(s3)
2:
  wfi
  j 2b
.balign 4
trap:
  addi sp, sp, -16
  sw t0, 0(sp)
  sw t1, 4(sp)
  sw t2, 8(sp)
  sw t3, 12(sp)
  li t1, 0x40000000
3:
  lw t2, 0(t1)
  li t3, -1
  beq t2, t3, 4f
  li t3, 0x20000000
  lw t0, 0(t3)
  add t0, t0, t2
  sw t0, 0(t3)
  lw t0, 8(t3)
  addi t0, t0, 1
  sw t0, 8(t3)
  j 3b
4:
  lw t0, 0(sp)
  lw t1, 4(sp)
  lw t2, 8(sp)
  lw t3, 12(sp)
  addi sp, sp, 16
  mret
"""


def build_printer(arch: str) -> bytes:
    src = M4_PRINTER if arch == "m4" else RV_PRINTER
    cache = Path(os.environ.get("RPROC_TEST_CACHE",
                                Path(tempfile.gettempdir()) / "rproc-emu-progs"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"printer-{arch}-{hashlib.sha256(src.encode()).hexdigest()[:12]}.elf"
    if not out.exists():
        s = out.with_suffix(".S")
        s.write_text(src)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        if arch == "m4":
            cmd = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib",
                   "-Wl,-Ttext=0x100", "-Wl,--section-start=.vectors=0", "-o", str(tmp), str(s)]
        else:
            cmd = ["riscv64-unknown-elf-gcc", "-march=rv32imac_zicsr", "-mabi=ilp32",
                   "-nostdlib", "-Wl,-Ttext=0", "-o", str(tmp), str(s)]
        subprocess.run(cmd, check=True, capture_output=True)
        tmp.replace(out)
    return out.read_bytes()


# ---- exactly-once MMIO ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_mmio_accesses_happen_once_while_other_threads_stop_the_core(arch: str) -> None:
    # A stop has to land after an access for the test to mean something; on a loaded machine
    # the kicking thread may get too little CPU for that in one round.
    replays = 0
    for _ in range(3):
        replays = _print_under_kicks(arch)
        if replays:
            break
    assert replays > 0, "no stop landed after an MMIO access"


def _printer_platform(arch: str) -> EmulatorPlatform:
    """One core of ``arch`` beside DDR at 0x80000000, where the printer reads its line count."""
    cpu = "cortex-m4" if arch == "m4" else "rv32imac"
    text = ("[ddr]\nbase = 0x80000000\nsize = 0x1000000\n"
            f"[[core]]\nname = 'c0'\ncpu = '{cpu}'\n")
    return EmulatorPlatform(parse_machine(text))


def _word(proc: EmulatedProcessor, da: int) -> int:
    view = proc.translate(da, 4)
    assert view is not None
    return int(struct.unpack("<I", view)[0])


def _print_under_kicks(arch: str) -> int:
    """Run the printer while another thread kicks it; check every access happened once."""
    with _printer_platform(arch) as plat:
        proc = plat["c0"]
        lines: list[str] = []
        kicks: list[int] = []
        proc.core.host = HostLink(kicks.append, lambda word: None, lines.append)
        ddr = plat.ddr.translate(0x8000_0000, 8)
        assert ddr is not None
        ddr[:] = struct.pack("<II", LINES, 0)
        ddr.release()
        sent: list[int] = []
        done = threading.Event()

        def hammer() -> None:
            # Every kick stops the running core (irq_changed -> emu_stop) to take the
            # interrupt, wherever it is in its console loop.
            i = 0
            while not done.is_set():
                i += 1
                if proc.io.host_kick(i):
                    sent.append(i)
                time.sleep(0.0002)

        proc.boot_preloaded(f"printer-{arch}", build_printer(arch))  # resets the FIFO
        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            wait_until(lambda: _word(proc, 0x8000_0004) == LINES + 1, what="printing")
        finally:
            done.set()
            thread.join()
        # the handler adds to the total, then counts: wait for both
        wait_until(lambda: (_word(proc, 0x2000_0008), _word(proc, 0x2000_0000))
                   == (len(sent), sum(sent)), what="drain")
        total, count = _word(proc, 0x2000_0000), _word(proc, 0x2000_0008)
        assert proc.core.state is CoreState.RUNNING
        bad = [line for line in lines if line != LETTERS]
        assert not bad, f"console lines not printed by the firmware: {bad[:5]}"
        assert len(lines) == LINES
        assert kicks == list(range(1, LINES + 1))  # each TX_DATA store exactly once
        assert (count, total) == (len(sent), sum(sent))  # each FIFO pop exactly once
        return proc.core.mmio_replays


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_a_stop_made_while_the_core_thread_is_parked_after_a_store_repeats_nothing(
        arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The OS may park the core's thread between an MMIO callback and unicorn's stop check (a
    # loaded host) for longer than any wall-clock bound; a stop made meanwhile rolls the store
    # back and it runs again. Here the thread is parked right after the 5th console store while
    # another thread keeps stopping the core for 50 ms (ten times the old 5 ms hold).
    with _printer_platform(arch) as plat:
        proc = plat["c0"]
        core = proc.core
        lines: list[str] = []
        core.host = HostLink(lambda i: None, lambda word: None, lines.append)
        ddr = plat.ddr.translate(0x8000_0000, 8)
        assert ddr is not None
        ddr[:] = struct.pack("<II", 3, 0)
        ddr.release()
        stores = 0
        stopped = 0
        write = core._mmio_write

        def keep_stopping() -> None:
            nonlocal stopped
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                core.irq_changed()  # another thread: emu_stop unless held back
                stopped += 1

        def parked(uc: object, offset: int, size: int, value: int, base: int) -> None:
            nonlocal stores
            write(uc, offset, size, value, base)
            if base + offset == 0x4000_1000:
                stores += 1
                if stores == 5:  # after the callback, before unicorn's check
                    stopper = threading.Thread(target=keep_stopping)
                    stopper.start()
                    stopper.join()

        monkeypatch.setattr(core, "_mmio_write", parked)  # unicorn gets it at boot

        proc.boot_preloaded(f"printer-{arch}", build_printer(arch))
        wait_until(lambda: _word(proc, 0x8000_0004) == 4, what="printing")
        assert stopped > 0
        assert lines == [LETTERS] * 3, f"console lines: {lines}"
        assert core.state is CoreState.RUNNING


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_a_stop_at_the_second_store_of_a_block_is_answered_once(
        arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside an MMIO callback unicorn's pc is the start of the translation block, not the
    # instruction's address, and the records are looked up by it. That still finds them: a
    # record is kept at the pc unicorn rolled back to, and the resume starts a block there.
    # The printer's newline store and the kick after it are two stores of one block: a stop
    # held back after the first (_stop_wanted, as for a stop made during its gap) is taken at
    # the second, which unicorn rolls back; its repetition must be answered from the record,
    # and the first store must not run again.
    with _printer_platform(arch) as plat:
        proc = plat["c0"]
        core = proc.core
        lines: list[str] = []
        kicks: list[int] = []
        core.host = HostLink(kicks.append, lambda word: None, lines.append)
        ddr = plat.ddr.translate(0x8000_0000, 8)
        assert ddr is not None
        ddr[:] = struct.pack("<II", 3, 0)
        ddr.release()
        write = core._mmio_write

        def stop_after_newline(uc: object, offset: int, size: int, value: int,
                               base: int) -> None:
            write(uc, offset, size, value, base)
            if base + offset == 0x4000_1000 and value == 10:
                with core._mmio_lock:
                    core._stop_wanted = True  # taken at the next access: the kick store

        monkeypatch.setattr(core, "_mmio_write", stop_after_newline)

        proc.boot_preloaded(f"printer-{arch}", build_printer(arch))
        wait_until(lambda: _word(proc, 0x8000_0004) == 4, what="printing")
        assert lines == [LETTERS] * 3, f"console lines: {lines}"
        assert kicks == [1, 2, 3]
        assert core.mmio_replays >= 3


# ---- a crash / detach / attach storm on a preloaded core --------------------------------------

_FW_LINES = [re.compile(p) for p in (
    r"detachable on (cortex-m4|riscv32) core [0-9]",
    r"detached, still running",
    r"rpmsg: (announced|destroyed) channel (rpmsg-raw|rpmsg-tty|rpmsg-openamp-demo-channel)"
    r" addr 0x4[0-9a-f]{2}",
    r"rpmsg: link up, vring0 da 0x[0-9a-f]{1,8} id [0-9]+, vring1 da 0x[0-9a-f]{1,8} "
    r"id [0-9]+, num 16",
    r"rpmsg: link down \((detach|reset|[a-z ]+)\), waiting for DRIVER_OK",
    r"rpmsg: bad vrings \(da 0x[0-9a-f]{1,8}/0x[0-9a-f]{1,8} num [0-9]+/[0-9]+\), "
    r"staying down",
    r"shutdown requested after [0-9]+ heartbeats",
    r"(rpmsg: )?control word [0-9]+ ignored",
)]


@pytest.fixture
def early() -> Iterator[Callable[[str], EmulatorPlatform]]:
    made: list[tuple[Host, EmulatorPlatform]] = []

    def factory(arch: str) -> EmulatorPlatform:
        cpu = "cortex-m4" if arch == "m4" else "rv32imac"
        text = (f"[[core]]\nname = 'early'\ncpu = '{cpu}'\nboot = 'preloaded'\n"
                f"firmware = 'detachable-{arch}.elf'\nrecovery = 'attach'\n")
        host = Host([FW_DIR], panic_hook=False)
        plat = EmulatorPlatform(parse_machine(text, "storm.toml"))
        made.append((host, plat))
        plat.register(host)
        return plat

    yield factory
    for host, plat in made:
        host.close()
        plat.close()


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_crash_detach_attach_storm_prints_only_firmware_lines(
        early: Callable[[str], EmulatorPlatform], arch: str) -> None:
    plat = early(arch)
    proc = plat["early"]
    rproc = proc.rproc
    assert rproc is not None and rproc.state is State.ATTACHED
    lines: list[str] = []
    assert proc.core.host is not None
    proc.core.host = dataclasses.replace(proc.core.host, console=lines.append)
    cycles = 20
    for i in range(cycles):
        rproc.detach()
        rproc.boot()  # attach again: the firmware announces its channels again
        proc.core.watchdog_expired(1)  # crash: attach recovery has the loader restart it
        wait_until(lambda i=i: rproc.crash_cnt == i + 1 and rproc.state is State.ATTACHED,
                   what=f"recovery {i + 1}")
    wait_until(lambda: sum("detachable on" in line for line in lines) >= cycles, 5,
               "one announcement per restart")
    bad = [line for line in lines if not any(p.fullmatch(line) for p in _FW_LINES)]
    assert not bad, f"console lines the firmware cannot print: {bad[:5]}"
    # One per restart (plus the first boot's, when it came after the hook was set).
    assert sum("detachable on" in line for line in lines) >= cycles
    assert proc.core.state is CoreState.RUNNING


# ---- the boot loader and the host's DMA pool --------------------------------------------------

POOL = 0x8800_0000  # the DMA pool of the machine below (the upper half of its DDR)
PRELOADED = ("[ddr]\nbase = 0x80000000\nsize = 0x10000000\n"
             "[[core]]\nname = 'c'\ncpu = 'cortex-m4'\nboot = 'preloaded'\n"
             "firmware = '{fw}'\nrecovery = 'attach'\n")


def _image(*segments: tuple[int, int]) -> bytes:
    """A Cortex-M image: a vector table and a wfi loop in TCM, plus (paddr, memsz) segments."""
    vectors = struct.pack("<II", 0x2000_1000, 0x101) + bytes(0x100 - 8)
    code = b"\x30\xbf\xfe\xe7"  # wfi; b .
    segs = [Seg(vectors + code, paddr=0)]
    segs += [Seg(b"\xa5" * 0x100, paddr=da, memsz=size) for da, size in segments]
    return bytes(build_elf(segs, entry=0x101).data)


def _pool_untouched(plat: EmulatorPlatform) -> bool:
    view = plat.ddr.translate(POOL, 0x2000)
    assert view is not None
    try:
        return not any(view)
    finally:
        view.release()


@pytest.mark.parametrize("segment", [(POOL, 0x1000), (POOL - 0x1000, 0x2000),
                                     (0x8FFF_F000, 0x1000)])
def test_boot_loader_refuses_a_preloaded_segment_in_the_dma_pool(
        tmp_path: Path, segment: tuple[int, int]) -> None:
    (tmp_path / "evil.elf").write_bytes(_image((0x8000_0000, 0x1000), segment))
    spec = parse_machine(PRELOADED.format(fw="evil.elf"), "m.toml")
    with EmulatorPlatform(spec, firmware_dirs=[tmp_path]) as plat:
        with pytest.raises(RprocError) as info:
            plat.preload()
        text = str(info.value)
        assert info.value.errno == 22
        assert text.startswith("m.toml: core[0].firmware: evil.elf: program header 2 "
                               f"da {segment[0]:#x}: "), text
        assert "the host's DMA pool" in text
        assert _pool_untouched(plat)
        low = plat.ddr.translate(0x8000_0000, 4)
        assert low is not None and bytes(low) == bytes(4)  # nothing written, not even before
        low.release()
        assert not plat["c"].core.running


def test_boot_loader_still_loads_ddr_outside_the_pool(tmp_path: Path) -> None:
    (tmp_path / "fine.elf").write_bytes(_image((0x8000_0000, 0x1000), (POOL - 0x1000, 0x1000)))
    spec = parse_machine(PRELOADED.format(fw="fine.elf"), "m.toml")
    with EmulatorPlatform(spec, firmware_dirs=[tmp_path]) as plat:
        plat.preload()
        assert plat["c"].core.running
        low = plat.ddr.translate(POOL - 0x1000, 4)
        assert low is not None and bytes(low) == b"\xa5" * 4
        low.release()
        assert _pool_untouched(plat)


def test_attach_recovery_reload_refuses_a_segment_in_the_dma_pool(tmp_path: Path) -> None:
    (tmp_path / "fine.elf").write_bytes(_image())
    spec = parse_machine(PRELOADED.format(fw="fine.elf"), "m.toml")
    with EmulatorPlatform(spec, firmware_dirs=[tmp_path]) as plat:
        plat.preload()
        proc = plat["c"]
        # What the loader restarts at an attach recovery, had it kept such an image.
        plat.bootloader.images["c"] = ("evil.elf", _image((POOL + 0x1000, 0x1000)))
        with pytest.raises(RprocError) as info:
            proc.reboot_from_loader()
        assert str(info.value).startswith(
            f"m.toml: core[0].firmware: evil.elf: program header 1 da {POOL + 0x1000:#x}: ")
        assert "the host's DMA pool" in str(info.value)
        assert _pool_untouched(plat)


# ---- machine descriptions ------------------------------------------------------------------


def _cores(n: int, extra: str = "") -> str:
    return "".join(f"[[core]]\nname = 'c{i}'\ncpu = 'rv32imac'\n{extra}" for i in range(n))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_cores(1, "memory = [{name='tcm',da=0x0,size=0x1000},"
                   "{name='tcm',da=0x20000000,size=0x1000}]\n"),
         "m.toml: core[0].memory[1].name: duplicate region name 'tcm' (also core[0].memory[0])"),
        (_cores(1, "memory = [{name='a',da=0x0,size=0x2000},{name='b',da=0x1000,size=0x1000}]\n"),
         "m.toml: core[0].memory[1].da: region 'b' at 0x1000 overlaps a"),
        (_cores(1, "memory = [{name='a',da=0x80001000,size=0x1000}]\n"),
         "m.toml: core[0].memory[0].da: region 'a' at 0x80001000 overlaps ddr"),
        (_cores(65), "m.toml: core: 65 processors, at most 64"),
        ("[ddr]\nbase = 0x0\nsize = 0x10000000\n" + _cores(1),
         "m.toml: core[0].memory: the default region 'tcm' at 0x0 overlaps ddr"),
        ("[ddr]\nbase = 0x40000000\nsize = 0x10000000\n" + _cores(1),
         "m.toml: ddr.base: the DDR window [0x40000000, 0x50000000) overlaps the peripheral"),
        ("[ddr]\nbase = 0xe0000000\nsize = 0x10000000\n"
         "[[core]]\nname = 'm'\ncpu = 'cortex-m4'\n",
         "m.toml: core[0].cpu: cortex-m4's system control space at 0xe000e000 is inside"),
    ],
    ids=["duplicate-region-name", "overlapping-regions", "region-in-ddr", "65-processors",
         "default-memory-in-ddr", "ddr-over-peripherals", "ddr-over-scs"],
)
def test_machine_refuses_ambiguous_or_overlapping_layouts(text: str, needle: str) -> None:
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml")
    assert info.value.errno == 22
    assert needle in str(info.value), str(info.value)


def test_machine_accepts_64_processors() -> None:
    spec = parse_machine(_cores(64), "m.toml")
    assert len(spec.cores) == 64
