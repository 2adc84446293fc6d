"""The emulator platform end to end with the real example firmware and the remoteproc core:
every state transition, auto-boot, attach to a preloaded core, detach and re-attach, each crash
type with both recovery flavours, a coredump gdb-multiarch reads, and 32 cores at once."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import holds_for, wait_until

from remoteproc.core.coredump import DumpConf
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, State
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import (
    DEFAULT_MACHINE,
    EmulatorPlatform,
    load_machine,
    parse_machine,
)
from remoteproc.platforms.emulator.cores.cpu import CoreState
from remoteproc.rpmsg import registry

FW_DIR = Path(__file__).resolve().parents[1] / "src" / "remoteproc" / "data" / "firmware"


def bus_of(rproc: Rproc) -> Any:
    for bus in registry.buses():
        if bus.rproc is rproc:
            return bus
    return None


def has_channel(rproc: Rproc, name: str = "rpmsg-raw") -> bool:
    bus = bus_of(rproc)
    return bus is not None and bus.find_channel(name) is not None


def echo(rproc: Rproc, payload: bytes, channel: str = "rpmsg-raw") -> bytes:
    wait_until(lambda: has_channel(rproc, channel), what=f"channel {channel}")
    bus = bus_of(rproc)
    ch = bus.find_channel(channel)
    ept = bus.create_ept(None, dst=ch.dst)
    try:
        ept.send(payload, timeout=5)
        return bytes(ept.recv(5))
    finally:
        ept.destroy()


def send(rproc: Rproc, payload: bytes, channel: str = "rpmsg-raw") -> None:
    wait_until(lambda: has_channel(rproc, channel), what=f"channel {channel}")
    bus = bus_of(rproc)
    ept = bus.create_ept(None, dst=bus.find_channel(channel).dst)
    try:
        ept.send(payload, timeout=5)
    finally:
        ept.destroy()


@pytest.fixture
def default_machine() -> Iterator[tuple[Host, EmulatorPlatform]]:
    host = Host([FW_DIR], panic_hook=False)
    plat = load_machine(None, host)
    try:
        yield host, plat
    finally:
        host.close()
        plat.close()


def machine(cores: list[tuple[str, str, str, str, str]]) -> str:
    """TOML for cores given as (name, cpu, boot, firmware, recovery)."""
    text = "[machine]\nname = 'e2e'\n"
    for name, cpu, boot, fw, recovery in cores:
        text += (f"[[core]]\nname = '{name}'\ncpu = '{cpu}'\nboot = '{boot}'\n"
                 f"firmware = '{fw}'\nrecovery = '{recovery}'\n")
    return text


@pytest.fixture
def build() -> Iterator[Callable[..., tuple[Host, EmulatorPlatform]]]:
    made: list[tuple[Host, EmulatorPlatform]] = []

    def factory(cores: list[tuple[str, str, str, str, str]]) -> tuple[Host, EmulatorPlatform]:
        host = Host([FW_DIR], panic_hook=False)
        plat = EmulatorPlatform(parse_machine(machine(cores)))
        made.append((host, plat))
        plat.register(host)
        return host, plat

    yield factory
    for host, plat in made:
        host.close()
        plat.close()


# ---- the default machine ------------------------------------------------------------------------


def test_default_machine_auto_boots_the_echo_core(
        default_machine: tuple[Host, EmulatorPlatform]) -> None:
    _host, plat = default_machine
    m4 = plat["m4"].rproc
    assert m4 is not None
    wait_until(lambda: m4.state is State.RUNNING, what="auto-boot")
    assert echo(m4, b"hello m4") == b"hello m4"
    assert plat["m4"].core.state is CoreState.RUNNING


def test_default_machine_offline_core_start_stop(
        default_machine: tuple[Host, EmulatorPlatform]) -> None:
    _host, plat = default_machine
    rv = plat["rv"].rproc
    assert rv is not None
    assert rv.state is State.OFFLINE
    assert plat["rv"].core.state is CoreState.HALTED
    rv.boot()
    assert rv.state is State.RUNNING
    # the hello firmware's trace buffer, read in place through the core's own view
    wait_until(lambda: _trace_has(rv, b"hello from riscv32"), what="hello trace")
    rv.shutdown()
    assert rv.state is State.OFFLINE
    assert plat["rv"].core.state is CoreState.HALTED
    rv.boot()  # and again: a fresh CPU, firmware loaded again
    assert rv.state is State.RUNNING
    rv.shutdown()


def _trace_has(rproc: Rproc, needle: bytes) -> bool:
    return any(needle in trace.read() for trace in rproc.traces)


def test_default_machine_attaches_to_the_preloaded_core(
        default_machine: tuple[Host, EmulatorPlatform]) -> None:
    _host, plat = default_machine
    early = plat["m4-early"]
    assert early.rproc is not None
    assert early.rproc.state is State.ATTACHED
    assert early.core.state is CoreState.RUNNING
    assert echo(early.rproc, b"attached") == b"attached"


def test_detach_keeps_the_core_running_and_reattach_brings_rpmsg_back(
        default_machine: tuple[Host, EmulatorPlatform]) -> None:
    _host, plat = default_machine
    early = plat["m4-early"]
    rproc = early.rproc
    assert rproc is not None
    assert echo(rproc, b"one") == b"one"
    thread_before = early.core._thread
    rproc.detach()
    assert rproc.state is State.DETACHED
    assert early.core.state is CoreState.RUNNING  # it kept running across the detach
    assert early.core._thread is thread_before
    assert not has_channel(rproc)
    rproc.boot()  # re-attach
    assert rproc.state is State.ATTACHED
    assert early.core._thread is thread_before  # never restarted
    assert echo(rproc, b"two") == b"two"
    rproc.shutdown()  # an attached core that is shut down goes OFFLINE (stopped)
    assert rproc.state is State.OFFLINE
    assert early.core.state is CoreState.HALTED


# ---- crashes and recovery -----------------------------------------------------------------------

CRASHES = [
    ("crash mmu", CrashType.MMUFAULT, "crash_mmu_read"),
    ("crash wdog", CrashType.WATCHDOG, None),
    ("crash abort", CrashType.FATAL_ERROR, "vsoc_fatal"),
    ("crash udf", CrashType.FATAL_ERROR, "crash_undefined"),
]


@pytest.mark.parametrize("arch", ["m4", "rv32"])
@pytest.mark.parametrize(("command", "kind", "function"), CRASHES)
def test_each_crash_is_reported_and_recovered_by_reload(
        build: Callable[..., tuple[Host, EmulatorPlatform]], arch: str, command: str,
        kind: CrashType, function: str | None) -> None:
    cpu = "cortex-m4" if arch == "m4" else "rv32imac"
    _host, plat = build([("c", cpu, "auto", f"crash-{arch}.elf", "reload")])
    proc = plat["c"]
    rproc = proc.rproc
    assert rproc is not None
    wait_until(lambda: rproc.state is State.RUNNING, what="boot")
    assert echo(rproc, b"before") == b"before"
    send(rproc, command.encode())
    wait_until(lambda: rproc.crash_cnt == 1, what="crash")
    report = proc.last_crash
    assert report is not None
    assert report.crash_type is kind
    if function is not None:
        assert function in report.where or function in (report.caller or ""), str(report)
    if kind is not CrashType.WATCHDOG:  # the watchdog stops the core wherever it is
        assert re.search(r"\.[ch]:\d+\)$", report.where), report.where  # line from DWARF
        assert report.regs["pc" if arch == "rv32" else "r15"] == report.pc
    wait_until(lambda: rproc.state is State.RUNNING and has_channel(rproc), what="recovery")
    assert echo(rproc, b"after") == b"after"
    assert proc.core.state is CoreState.RUNNING


@pytest.mark.parametrize(("command", "kind", "function"), CRASHES)
def test_crash_of_a_preloaded_core_recovers_by_attach(
        build: Callable[..., tuple[Host, EmulatorPlatform]], command: str, kind: CrashType,
        function: str | None) -> None:
    _host, plat = build([("c", "cortex-m4", "preloaded", "crash-m4.elf", "attach")])
    proc = plat["c"]
    rproc = proc.rproc
    assert rproc is not None
    assert rproc.state is State.ATTACHED
    assert echo(rproc, b"before") == b"before"
    send(rproc, command.encode())
    wait_until(lambda: rproc.crash_cnt == 1, what="crash")
    assert proc.last_crash is not None and proc.last_crash.crash_type is kind
    wait_until(lambda: rproc.state is State.ATTACHED and has_channel(rproc),
               what="attach recovery")
    assert echo(rproc, b"after") == b"after"
    assert proc.core.state is CoreState.RUNNING


def test_crash_without_recovery_stays_crashed_until_recovered_by_hand(
        build: Callable[..., tuple[Host, EmulatorPlatform]]) -> None:
    _host, plat = build([("c", "rv32imac", "auto", "crash-rv32.elf", "reload")])
    proc = plat["c"]
    rproc = proc.rproc
    assert rproc is not None
    wait_until(lambda: rproc.state is State.RUNNING, what="boot")
    rproc.recovery_disabled = True
    send(rproc, b"crash udf")
    wait_until(lambda: rproc.state is State.CRASHED, what="crashed")
    assert proc.core.state is CoreState.CRASHED
    # nobody recovers it (bounded observation: watched for 0.05 s)
    holds_for(lambda: rproc.state is State.CRASHED, 0.05, "crashed, recovery disabled")
    rproc.recovery_disabled = False
    rproc.trigger_recovery()
    assert rproc.state is State.RUNNING
    assert echo(rproc, b"back") == b"back"
    rproc.shutdown()
    assert rproc.state is State.OFFLINE and proc.core.state is CoreState.HALTED
    rproc.close()  # unregistered: DELETED
    assert rproc.state is State.DELETED


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_coredump_opens_in_gdb_with_the_faulting_pc(
        build: Callable[..., tuple[Host, EmulatorPlatform]], tmp_path: Path, arch: str) -> None:
    cpu = "cortex-m4" if arch == "m4" else "rv32imac"
    _host, plat = build([("c", cpu, "auto", f"crash-{arch}.elf", "reload")])
    proc = plat["c"]
    rproc = proc.rproc
    assert rproc is not None
    wait_until(lambda: rproc.state is State.RUNNING, what="boot")
    rproc.set_coredump(DumpConf.ENABLED)
    store = rproc.coredump_store
    before = set(store.list())
    send(rproc, b"crash mmu")
    wait_until(lambda: set(store.list()) - before != set(), what="coredump")
    (n,) = set(store.list()) - before
    size = store.info(n).size
    core_file = tmp_path / "core"
    core_file.write_bytes(store.read(n, 0, size))
    report = proc.last_crash
    assert report is not None
    out = subprocess.run(
        ["gdb-multiarch", "-batch", "-nx", "-ex", "info registers pc", "-ex", "bt 1",
         str(FW_DIR / f"crash-{arch}.elf"), str(core_file)],
        capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert f"{report.pc:#x}" in text, text
    assert "crash_mmu_read" in text, text


def test_32_cores_run_at_once(build: Callable[..., tuple[Host, EmulatorPlatform]]) -> None:
    cores = []
    for i in range(32):
        if i % 2:
            cores.append((f"c{i}", "rv32imac", "auto", "hello-rv32.elf", "reload"))
        else:
            cores.append((f"c{i}", "cortex-m4", "auto", "hello-m4.elf", "reload"))
    _host, plat = build(cores)
    procs = list(plat)
    wait_until(lambda: all(p.rproc is not None and p.rproc.state is State.RUNNING
                           for p in procs), 30, "32 cores running")
    assert all(p.core.state is CoreState.RUNNING for p in procs)
    # every core is alive: its timer ticks are counted in its own trace buffer
    wait_until(lambda: all(_trace_has(p.rproc, b"tick 2") for p in procs if p.rproc),
               30, "ticks on every core")
    assert len({p.core._thread for p in procs}) == 32


@pytest.mark.parametrize(("arch", "cpu"), [("m4", "cortex-m4"), ("rv32", "rv32imac")])
def test_big_image_is_loaded_into_ddr_and_checked_by_the_firmware(
        build: Callable[..., tuple[Host, EmulatorPlatform]], arch: str, cpu: str) -> None:
    _host, plat = build([("c", cpu, "manual", f"big-{arch}.elf", "reload")])
    rproc = plat["c"].rproc
    assert rproc is not None
    rproc.boot()  # 8 MiB of PT_LOAD data written through the DDR window the core executes from
    wait_until(lambda: _trace_has(rproc, b"bad pages"), what="big check")
    assert _trace_has(rproc, b"bytes at 0x8"), [t.read() for t in rproc.traces]
    assert _trace_has(rproc, b"bad pages 0 "), [t.read() for t in rproc.traces]


def test_panic_tells_the_core_and_asks_for_a_delay(
        build: Callable[..., tuple[Host, EmulatorPlatform]]) -> None:
    _host, plat = build([("c", "cortex-m4", "auto", "rpmsg-echo-m4.elf", "reload")])
    proc = plat["c"]
    rproc = proc.rproc
    assert rproc is not None
    wait_until(lambda: rproc.state is State.RUNNING, what="boot")
    assert rproc.ops.panic is not None
    assert rproc.ops.panic(rproc) == 10
    assert proc.io.ctrl_rx_log[-1] == 2  # SHUTDOWN posted to the mailbox's control channel
    assert proc.core.state is CoreState.RUNNING


def test_rprocd_entry_point_registers_the_default_machine() -> None:
    from remoteproc.daemon import load_machine as daemon_load_machine

    host = Host([FW_DIR], panic_hook=False)
    machine = daemon_load_machine(Path(DEFAULT_MACHINE), host)
    try:
        assert isinstance(machine, EmulatorPlatform)
        assert set(machine.processors) == {"m4", "rv", "m4-early"}
        early, rv = host.by_name("m4-early"), host.by_name("rv")
        assert early is not None and early.state is State.ATTACHED
        assert rv is not None and rv.state is State.OFFLINE
    finally:
        host.close()
        machine.close()


def test_close_joins_every_thread_it_started() -> None:
    before = set(threading.enumerate())
    host = Host([FW_DIR], panic_hook=False)
    plat = load_machine(None, host)
    m4 = plat["m4"].rproc
    assert m4 is not None
    wait_until(lambda: m4.state is State.RUNNING, what="auto-boot")
    started = set(threading.enumerate()) - before
    assert {"core-m4", "core-m4-early", "vsoc-sched", "vsoc-irq"} <= {t.name for t in started}
    host.close()
    plat.close()
    assert not [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


def test_platform_refuses_to_prepare_after_close() -> None:
    plat = EmulatorPlatform(parse_machine(machine([("c", "cortex-m4", "manual",
                                                     "hello-m4.elf", "reload")])))
    rproc = plat.make_rproc("c")
    plat.close()
    with pytest.raises(RprocError):
        rproc.boot()
    rproc.close()


@pytest.mark.parametrize("arch", ["m4", "rv32"])
def test_a_crash_the_host_asked_for_still_dumps_registers(
        build: Callable[..., tuple[Host, EmulatorPlatform]], tmp_path: Path, arch: str) -> None:
    # debugfs `crash` reports a crash with no registers; the dump is taken after recovery has
    # halted the core, so gdb must still see where it was (the echo firmware idles in sleep).
    cpu = "cortex-m4" if arch == "m4" else "rv32imac"
    _host, plat = build([("c", cpu, "auto", f"rpmsg-echo-{arch}.elf", "reload")])
    rproc = plat["c"].rproc
    assert rproc is not None
    wait_until(lambda: rproc.state is State.RUNNING, what="boot")
    rproc.set_coredump(DumpConf.ENABLED)
    store = rproc.coredump_store
    before = set(store.list())
    rproc.report_crash(CrashType.WATCHDOG)  # no regs: what the debugfs crash file does
    wait_until(lambda: set(store.list()) - before != set(), what="coredump")
    (n,) = set(store.list()) - before
    core_file = tmp_path / "core"
    core_file.write_bytes(store.read(n, 0, store.info(n).size))
    out = subprocess.run(
        ["gdb-multiarch", "-batch", "-nx", "-ex", "info registers pc", "-ex", "bt 1",
         str(FW_DIR / f"rpmsg-echo-{arch}.elf"), str(core_file)],
        capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert "Couldn't find general-purpose registers" not in text, text
    assert re.search(r"pc\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <\w+", text), text
    assert echo(rproc, b"after") == b"after"
