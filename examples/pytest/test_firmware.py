"""A firmware project's tests: the same file runs on the emulated SoC (``pytest``) and on a board
(``pytest --rproc-root /``). See README.md for what a board needs."""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from target import CORE, CRASH_FW, ECHO_FW

from remoteproc.client import RemoteProc, open_channel
from remoteproc.errors import RprocError


@pytest.mark.rproc(firmware={CORE: ECHO_FW})
def test_echo(core: RemoteProc) -> None:
    with open_channel(core, "rpmsg-raw", timeout=30) as ep:
        for text in (b"hello", b"x" * 200, bytes(range(1, 64))):
            ep.send(text)
            assert ep.recv(timeout=10) == text


@pytest.mark.rproc(firmware={CORE: ECHO_FW})
def test_boot_trace(core: RemoteProc) -> None:
    banner = core.expect(r"rpmsg-echo on (\S+) core (\d+)", timeout=30)
    assert banner.group(1) in ("cortex-m4", "rv32imac", "rv64imac") or banner.group(1)
    # the channels are announced in this order, after the banner
    for channel in ("rpmsg-raw", "rpmsg-tty", "rpmsg-openamp-demo-channel"):
        core.expect(rf"announced channel {channel} addr 0x[0-9a-f]+", timeout=30)


def _crash(core: RemoteProc) -> None:
    with open_channel(core, "rpmsg-raw", timeout=30) as ep:
        ep.send(b"crash mmu")
        try:
            assert ep.recv(timeout=10) == b"crashing: mmu"
        except RprocError as exc:
            # The firmware crashes right after its reply: the recovery can remove the channel,
            # and the reply queued on it, before this read (rpmsg_char: EPIPE once the endpoint
            # is gone). That happens on a board as well; the crash itself is checked after.
            if exc.errno != errno.EPIPE:
                raise


@pytest.mark.rproc(firmware={CORE: CRASH_FW})
def test_crash_coredump_backtrace(core: RemoteProc, tmp_path: Path) -> None:
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.skip("gdb-multiarch is not installed (apt-get install gdb-multiarch)")
    core.set_coredump_mode("enabled")
    before = max((d.index for d in core.coredumps()), default=-1)
    _crash(core)
    dump = core.wait_coredump(timeout=30, after=before)
    path = tmp_path / "core"
    dump.save(path)
    out = subprocess.run([gdb, "-batch", "-nx", "-ex", "bt", str(CRASH_FW), str(path)],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    if "No registers" in text:
        # the kernel's own rproc_coredump writes memory only; registers need a platform
        # driver that records them (the emulated cores do)
        pytest.skip("this coredump holds no registers, so gdb can show no backtrace")
    assert re.search(r"#0 .*crash_mmu_read", text), text


@pytest.mark.rproc(firmware={CORE: CRASH_FW})
def test_recovery(core: RemoteProc) -> None:
    core.set_recovery("enabled")
    core.expect(r"crash on \S+ core \d+", timeout=30)
    _crash(core)
    # recovery reboots the firmware: its banner shows again, and the echo works again
    core.expect(r"crash on \S+ core \d+", timeout=30)
    core.wait_state("running", timeout=30)
    with open_channel(core, "rpmsg-raw", timeout=30) as ep:
        ep.send(b"still there?")
        assert ep.recv(timeout=10) == b"still there?"
