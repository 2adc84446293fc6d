"""The STM32MP157 machine (machines/stm32mp157.toml) with firmware written against the SoC's real
registers (firmware/examples/stm32mp157-echo): RCC/PWR ready flags, HSEM with the lock read
back by core ID, UART7 as the console, the IPCC in both directions with Linux's stm32_rproc
channel use (vq0, vq1, shutdown, detach), vrings and buffers in the device tree's reserved
memory, unmodelled registers under the ``log`` and ``strict`` policies, and symbols taken
from the unstripped twin of a stripped image.

In-process tests drive a real ``Host`` + ``EmulatorPlatform``; the last ones go through
``rprocd --machine stm32mp157`` and the ``rproc`` CLI exactly as a user does.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from test_emulator import FW_DIR, wait_until

from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, State
from remoteproc.platforms.emulator.machine import bundled_machines, parse_machine
from remoteproc.platforms.emulator.platform import EmulatedProcessor, EmulatorPlatform
from remoteproc.rpmsg import registry

FW = "stm32mp157-echo-m4.elf"
MACHINE = bundled_machines()["stm32mp157"]
MACHINES_DIR = MACHINE.parent


def _symbol(name: str, image: Path = FW_DIR / FW) -> int:
    with open(image, "rb") as fh:
        sym = ELFFile(fh).get_section_by_name(".symtab").get_symbol_by_name(name)
        return int(sym[0]["st_value"])


class Board:
    """A host with the stm32mp157 machine registered (the firmware not started)."""

    def __init__(self, text: str | None = None, fw_dir: Path = FW_DIR) -> None:
        spec = parse_machine(text if text is not None else MACHINE.read_text(), "stm32mp157.toml",
                             MACHINES_DIR)
        self.plat = EmulatorPlatform(spec)
        self.host = Host([fw_dir], panic_hook=False)
        self.rproc: Rproc = self.plat.register(self.host)[0]
        self.proc: EmulatedProcessor = self.plat["m4"]

    def word(self, da: int) -> int:
        view = self.proc.translate(da, 4)
        assert view is not None
        return int(struct.unpack("<I", view)[0])

    def boot(self) -> None:
        self.rproc.firmware = FW
        self.rproc.boot()

    def wait_console(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: any(text in line for line in self.proc.console), timeout,
                   f"{text!r} on the console; have {self.proc.console[-5:]}")

    def channels(self) -> dict[str, int]:
        for bus in registry.buses():
            if bus.rproc is self.rproc:
                return {c.name: c.dst for c in bus.channels() if c.driver_override is None}
        return {}

    def close(self) -> None:
        self.host.close()
        self.plat.close()


@pytest.fixture
def board() -> Iterator[Board]:
    b = Board()
    try:
        yield b
    finally:
        b.close()


def test_boot_reaches_the_name_service_through_the_ipcc(board: Board) -> None:
    board.boot()
    board.wait_console("announced channel rpmsg-raw")
    wait_until(lambda: set(board.channels()) == {"rpmsg-tty", "rpmsg-raw"}, 20, "channels")
    assert board.channels() == {"rpmsg-tty": 1024, "rpmsg-raw": 1025}
    # The firmware rang IPCC channel 0 (vq0: its announcements) and the host acknowledged it.
    host = board.proc.host
    assert host.rx_counts[0] >= 2  # type: ignore[attr-defined]
    ipcc = board.proc.bus.find("IPCC")
    assert not ipcc.remote_flag(0)  # type: ignore[union-attr]
    # The host kicked vq0 after posting buffers: the firmware took it from channel 0.
    assert board.word(_symbol("ipcc_rx_count")) >= 1
    # Vrings in the device tree's reserved memory, at the addresses the firmware was told.
    assert any("vring0 da 0x10040000 id 0, vring1 da 0x10041000 id 1" in line
               for line in board.proc.console)
    assert board.proc.unknown_accesses == []


def test_echo_both_directions(board: Board) -> None:
    board.boot()
    wait_until(lambda: "rpmsg-raw" in board.channels(), 20, "rpmsg-raw")
    bus = next(b for b in registry.buses() if b.rproc is board.rproc)
    ept = bus.create_ept(None, dst=board.channels()["rpmsg-raw"])
    try:
        for i in range(20):
            msg = f"ping {i}".encode()
            ept.send(msg, timeout=5)
            assert ept.recv(10) == msg
    finally:
        ept.destroy()
    # vq1 kicks (host -> firmware) arrived on IPCC channel 1.
    base = _symbol("ipcc_rx_count")
    assert board.word(base + 4) >= 20


def test_rcc_pwr_ready_flags_uart_console_and_ids(board: Board) -> None:
    board.boot()
    board.wait_console("announced channel rpmsg-raw")
    console = board.proc.console
    for what in ("HSI", "PLL3", "MCU clock source", "MCU divider", "APB1 divider",
                 "backup regulator"):
        assert any(line.startswith(f"ready: {what} ") for line in console), what
    # Set/clear pairs: the enable bits read back through RCC_MC_AHB3ENCLRR.
    assert "rcc: AHB3 clocks 0x1800" in console
    # HWCFGR says 6 channels; DBGMCU IDCODE is the STM32MP15's; the SCS says "no MPU".
    assert "stm32mp157-echo: idcode 0x20000500, ipcc 6 channels, mpu type 0x0" in console
    # The console is UART7's TDR: the model counted every byte of those lines.
    uart = board.proc.bus.find("UART7")
    assert uart.bytes_sent >= sum(len(line) + 1 for line in console)  # type: ignore[union-attr]
    # The resource table's address is in TAMP_BKP17R, as stm32_rproc's attach reads it.
    assert board.proc.host.published_rsc_table() == (_symbol("resource_table"), 1024)


def test_hsem_lock_read_back_by_core_id_and_release_interrupt(board: Board) -> None:
    hsem = board.proc.bus.find("HSEM")
    assert hsem.host_lock(7)  # type: ignore[union-attr]  # the Cortex-A holds 7
    board.boot()
    board.wait_console("hsem: 7 busy (core 1)")
    console = board.proc.console
    assert "hsem: 5 locked by core 2 (0x80000201)" in console  # LOCK | COREID 2 | PROCID 1
    assert "hsem: 5 free again (0x0)" in console
    assert hsem.owner_of(7) == 0x80000100  # type: ignore[union-attr]
    hsem.host_unlock(7)  # type: ignore[union-attr]
    board.wait_console("hsem: 7 freed")  # HSEM_IT2 (IRQ 125) through C2IER/C2MISR


def test_shutdown_is_acknowledged_before_the_core_stops(
        board: Board, caplog: pytest.LogCaptureFixture) -> None:
    board.boot()
    board.wait_console("announced channel rpmsg-raw")
    with caplog.at_level(logging.WARNING):
        t0 = time.monotonic()
        board.rproc.shutdown()
        took = time.monotonic() - t0
    assert board.rproc.state is State.OFFLINE
    assert "shutdown requested" in board.proc.console  # IPCC channel 2, then freed (the ack)
    assert "without ack" not in caplog.text
    assert took < 0.5  # no wait for the 500 ms timeout
    assert board.word(_symbol("ipcc_rx_count") + 8) == 1


def test_attach_through_tamp_then_detach_is_acknowledged(
        caplog: pytest.LogCaptureFixture) -> None:
    # A boot loader started the image: the host attaches, finding the resource table where the
    # firmware published it (TAMP_BKP17R, stm32_rproc_get_loaded_rsc_table), then detaches.
    text = MACHINE.read_text().replace('boot = "manual"', 'boot = "preloaded"')
    b = Board(text)
    try:
        wait_until(lambda: b.rproc.state is State.ATTACHED, 20, "attached")
        wait_until(lambda: set(b.channels()) == {"rpmsg-tty", "rpmsg-raw"}, 20, "channels")
        with caplog.at_level(logging.WARNING):
            b.rproc.detach()
        assert b.rproc.state is State.DETACHED
        assert "without ack" not in caplog.text
        b.wait_console("detached, still running")  # IPCC channel 3, acknowledged
        assert b.proc.core.running
        assert b.word(_symbol("ipcc_rx_count") + 12) == 1
    finally:
        b.close()


# ---- unmodelled registers: the machine's policy ---------------------------------------------

# The RCC without its MC_APB1ENSETR/ENCLRR pair: the firmware's UART7 clock enable becomes an
# access no model implements.
_NO_APB1 = MACHINE.read_text().replace("  [0xA80, 0xA84], ", "  ")


def test_log_policy_reports_each_register_once_with_pc_and_function() -> None:
    assert MACHINE.read_text() != _NO_APB1
    b = Board(_NO_APB1)
    try:
        b.boot()
        b.wait_console("announced channel rpmsg-raw")  # the boot goes on
        log = b.proc.unknown_accesses
        assert [(u.what, u.is_write) for u in log] == [("RCC+0xa80", True)]
        assert log[0].address == 0x5000_0A80 and log[0].value == 1 << 18
        assert log[0].where.startswith("clocks_init+0x")
    finally:
        b.close()


def test_strict_policy_makes_it_an_mmufault_naming_register_and_function() -> None:
    text = _NO_APB1.replace('unknown_access = "log"', 'unknown_access = "strict"')
    b = Board(text)
    try:
        b.boot()
        wait_until(lambda: b.proc.last_crash is not None, 20, "the crash")
        report = b.proc.last_crash
        assert report is not None
        assert report.crash_type is CrashType.MMUFAULT
        assert "write to unmodelled RCC+0xa80 at 0x50000a80" in report.reason
        assert report.where.startswith("clocks_init+0x")
    finally:
        b.close()


def test_svd_names_unmodelled_registers() -> None:
    b = Board()
    try:
        bus = b.proc.bus
        assert bus.read(0x4000_E01C) == 0x0080_00C0  # USART2.ISR: the SVD's reset value
        bus.write(0x4000_E000, 1)
        bus.read(0x4000_E01C)  # reported once only
        assert [(u.what, u.is_write) for u in b.proc.unknown_accesses] == [
            ("USART2.ISR", False), ("USART2.CR1", True)]
        # A coded model that names an SVD: offsets it does not implement are named from it.
        assert bus.read(0x4000_F030) == 0
        assert b.proc.unknown_accesses[-1].what == "USART3+0x30"
        # An address no peripheral covers inside the peripheral space reads 0, reported too.
        assert bus.read(0x4800_0000) == 0
        assert b.proc.unknown_accesses[-1].what == "0x48000000"
    finally:
        b.close()


# ---- symbols for stripped images ------------------------------------------------------------


def _stripped(tmp: Path) -> Path:
    out = tmp / FW
    subprocess.run(["arm-none-eabi-strip", "-o", str(out), str(FW_DIR / FW)], check=True)
    with open(out, "rb") as fh:
        assert ELFFile(fh).get_section_by_name(".symtab") is None
    return out


@pytest.mark.parametrize("twin", [f"{FW}.debug", "stm32mp157-echo-m4.debug",
                                  ".debug/" + FW, "stm32mp157-echo-m4-unstripped.elf"])
def test_stripped_image_names_functions_from_its_twin(tmp_path: Path, twin: str) -> None:
    _stripped(tmp_path)
    (tmp_path / twin).parent.mkdir(exist_ok=True)
    shutil.copy(FW_DIR / FW, tmp_path / twin)
    text = _NO_APB1.replace('unknown_access = "log"', 'unknown_access = "strict"')
    b = Board(text, fw_dir=tmp_path)
    try:
        b.boot()
        wait_until(lambda: b.proc.last_crash is not None, 20, "the crash")
        report = b.proc.last_crash
        assert report is not None and report.where.startswith("clocks_init+0x")
        assert f"symbols from {tmp_path / twin}" in str(report)
    finally:
        b.close()


def test_stripped_image_without_twin_gives_addresses_and_symbols_key_names_one(
        tmp_path: Path) -> None:
    _stripped(tmp_path)
    text = _NO_APB1
    b = Board(text, fw_dir=tmp_path)
    try:
        b.boot()
        b.wait_console("announced channel rpmsg-raw")
        assert b.proc.unknown_accesses[0].where.startswith("0x")
    finally:
        b.close()
    keep = tmp_path / "elsewhere" / "symbols.elf"
    keep.parent.mkdir()
    shutil.copy(FW_DIR / FW, keep)
    text = text.replace('boot = "manual"', f'boot = "manual"\nsymbols = "{keep}"')
    b = Board(text, fw_dir=tmp_path)
    try:
        b.boot()
        b.wait_console("announced channel rpmsg-raw")
        assert b.proc.unknown_accesses[0].where.startswith("clocks_init+0x")
    finally:
        b.close()


# ---- through rprocd and the rproc CLI, as a user -------------------------------------------


def _rproc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_rproc_machines_lists_the_bundled_machines() -> None:
    r = _rproc("machines")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines() if line and line[0] != " "]
    assert names == ["default", "stm32mp157", "stm32mp215", "stm32mp257"]


def test_rprocd_machine_stm32mp157_boots_echoes_over_rpmsg_and_tty(tmp_path: Path) -> None:
    from test_rprocd import Rprocd

    fw = tmp_path / "fw"
    fw.mkdir()
    shutil.copy(FW_DIR / FW, fw / FW)
    d = Rprocd(tmp_path / "root", "--machine", "stm32mp157", "--firmware-dir", str(fw))
    try:
        R = "$R/sys/class/remoteproc/remoteproc0"
        assert d.sh(f"cat {R}/name").stdout == "m4\n"
        assert d.sh(f"cat {R}/state").stdout == "offline\n"
        r = d.sh(f"echo {FW} > {R}/firmware && echo start > {R}/state")
        assert r.returncode == 0, r.stderr
        root = str(d.root)
        wait_until(lambda: "rpmsg-tty" in _rproc("--root", root, "rpmsg", "list").stdout, 30,
                   "rpmsg list")
        listing = _rproc("--root", root, "rpmsg", "list").stdout
        assert "rpmsg-raw" in listing and "rpmsg-tty" in listing
        r = _rproc("--root", root, "rpmsg", "send", "m4", "hello stm32mp157")
        assert r.returncode == 0, r.stderr
        assert "hello stm32mp157" in r.stdout
        tty = d.root / "dev/ttyRPMSG0"
        wait_until(tty.exists, 10, "ttyRPMSG0")
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"ping over tty")
            got = b""
            deadline = time.monotonic() + 10
            while got != b"ping over tty" and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    got += os.read(fd, 100)
            assert got == b"ping over tty"
        finally:
            os.close(fd)
        assert d.sh(f"echo stop > {R}/state").returncode == 0
        assert d.sh(f"cat {R}/state").stdout == "offline\n"
    finally:
        d.kill()


def _strict_machine(tmp: Path) -> Path:
    """The stm32mp157 machine without the RCC's APB1 enable pair, strict: the firmware's
    UART7 clock enable becomes an mmufault in clocks_init."""
    text = _NO_APB1.replace('unknown_access = "log"', 'unknown_access = "strict"')
    path = tmp / "mp1-strict.toml"
    path.write_text(text)
    shutil.copy(MACHINES_DIR / "stm32mp15.svd", tmp / "stm32mp15.svd")
    return path


@pytest.mark.parametrize("how", ["rprocd --symbols", "rproc firmware --symbols"])
def test_rprocd_and_client_name_a_symbol_file_for_a_stripped_image(tmp_path: Path,
                                                                   how: str) -> None:
    from test_rprocd import Rprocd

    stripped = _stripped(tmp_path)
    twin = tmp_path / "twin" / "symbols.elf"
    twin.parent.mkdir()
    shutil.copy(FW_DIR / FW, twin)
    fw = tmp_path / "fw"
    fw.mkdir()
    args = ["--machine", str(_strict_machine(tmp_path)), "--firmware-dir", str(fw)]
    if how == "rprocd --symbols":
        shutil.copy(stripped, fw / FW)
        args += ["--symbols", f"m4={twin}"]
    d = Rprocd(tmp_path / "root", *args)
    try:
        if how == "rproc firmware --symbols":
            r = _rproc("--root", str(d.root), "firmware", "m4", FW, "--install", str(stripped),
                       "--symbols", str(twin))
            assert r.returncode == 0, r.stderr
            assert (fw / f"{FW}.debug").read_bytes() == twin.read_bytes()
        R = "$R/sys/class/remoteproc/remoteproc0"
        assert d.sh(f"echo {FW} > {R}/firmware && echo start > {R}/state").returncode == 0
        wait_until(lambda: "mmufault" in d.log(), 30, "the crash report")
        wait_until(lambda: "called from" in d.log() or "firmware " in d.log(), 5, "report")
        log = d.log()
        assert "write to unmodelled RCC+0xa80" in log
        assert "in clocks_init+0x" in log, log
    finally:
        d.kill()


def test_rprocd_symbols_option_is_checked(tmp_path: Path) -> None:
    for bad, why in (("m4", "expected CORE=FILE"), ("zz=/x", "no core named 'zz'")):
        r = subprocess.run([sys.executable, "-m", "remoteproc.daemon", "--mount",
                            str(tmp_path / "m"), "--machine", "stm32mp157", "--symbols", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and why in r.stderr, r.stderr


def test_coredump_of_a_stripped_image_names_functions_with_its_twin(tmp_path: Path) -> None:
    from remoteproc.core.coredump import DumpConf

    _stripped(tmp_path)
    shutil.copy(FW_DIR / FW, tmp_path / f"{FW}.debug")
    text = _NO_APB1.replace('unknown_access = "log"', 'unknown_access = "strict"')
    b = Board(text, fw_dir=tmp_path)
    try:
        b.rproc.set_coredump(DumpConf.ENABLED)
        store = b.rproc.coredump_store
        before = set(store.list())
        b.boot()
        wait_until(lambda: set(store.list()) - before != set(), 20, "the coredump")
        (n,) = set(store.list()) - before
        core = tmp_path / "m4.core"
        core.write_bytes(store.read(n, 0, store.info(n).size))
        report = b.proc.last_crash
        assert report is not None and report.where.startswith("clocks_init+0x")
        # The dump has the registers and memory; the twin the platform found gives gdb the
        # names (the stripped image alone gives none: the second run).
        for elf, named in ((tmp_path / f"{FW}.debug", True), (tmp_path / FW, False)):
            out = subprocess.run(["gdb-multiarch", "-batch", "-nx", "-ex", "bt 1", str(elf),
                                  str(core)], capture_output=True, text=True, timeout=60)
            assert ("clocks_init" in out.stdout) is named, out.stdout + out.stderr
    finally:
        b.close()
