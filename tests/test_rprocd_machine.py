"""End to end: ``rprocd`` on the bundled virtual SoC (emulated Cortex-M4 and RV32 cores running
the example firmware), driven only through the mount with shell commands and system calls.

Each test starts its own daemon (about a second): no test depends on another's leftovers."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_abi_support import read_text, wait_until
from test_rprocd import Rprocd, mounted


@pytest.fixture
def vsoc(tmp_path: Path) -> Iterator[Rprocd]:
    d = Rprocd(tmp_path / "root", "--firmware-dir", str(tmp_path / "fw"))
    try:
        assert wait_until(lambda: "rpmsg0" in os.listdir(d.root / "dev"), 10)
        yield d
    finally:
        d.kill()


def names(d: Rprocd) -> dict[str, str]:
    base = d.root / "sys/class/remoteproc"
    return {read_text(base / n / "name").strip(): n for n in sorted(os.listdir(base))}


def test_default_machine_processors(vsoc: Rprocd) -> None:
    by_name = names(vsoc)
    assert set(by_name) == {"m4", "rv", "m4-early"}
    base = vsoc.root / "sys/class/remoteproc"
    assert wait_until(lambda: read_text(base / by_name["m4"] / "state") == "running\n", 10)
    assert read_text(base / by_name["rv"] / "state") == "offline\n"
    assert read_text(base / by_name["m4-early"] / "state") == "attached\n"
    assert read_text(base / by_name["m4-early"] / "firmware") == "unknown\n"


def test_rpmsg_echo_through_dev_rpmsg(vsoc: Rprocd) -> None:
    fd = os.open(vsoc.root / "dev/rpmsg0", os.O_RDWR)
    try:
        for msg in (b"hello", b"x" * 496):
            assert os.write(fd, msg) == len(msg)
            p = select.poll()
            p.register(fd, select.POLLIN)
            assert p.poll(5000)
            assert os.read(fd, 496) == msg
    finally:
        os.close(fd)


def test_tty_echo(vsoc: Rprocd) -> None:
    fd = os.open(vsoc.root / "dev/ttyRPMSG0", os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
        os.write(fd, b"ping over tty")
        got = b""
        deadline = time.monotonic() + 5
        while got != b"ping over tty" and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                got += os.read(fd, 100)
        assert got == b"ping over tty"
    finally:
        os.close(fd)


def test_seed_commands_on_rv(vsoc: Rprocd) -> None:
    n = names(vsoc)["rv"]
    R = f"$R/sys/class/remoteproc/{n}"
    D = f"$R/sys/kernel/debug/remoteproc/{n}"
    assert vsoc.sh(f"echo start > {R}/state").returncode == 0
    assert vsoc.sh(f"cat {R}/state").stdout == "running\n"
    assert wait_until(lambda: "hello" in vsoc.sh(f"cat {D}/trace0").stdout, 5)
    assert vsoc.sh(f"echo disabled > {D}/coredump").returncode == 0
    assert vsoc.sh(f"echo 1 > {D}/crash").returncode == 0
    assert wait_until(lambda: vsoc.sh(f"cat {R}/state").stdout == "running\n", 10)
    assert vsoc.sh(f"echo stop > {R}/state").returncode == 0
    assert vsoc.sh(f"cat {R}/state").stdout == "offline\n"


def test_sigkill_holder_stops_emulated_core(vsoc: Rprocd) -> None:
    n = names(vsoc)["rv"]
    holder = (
        "import fcntl, os, struct, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.ioctl(fd, 0x4004B701, bytearray(struct.pack('<i', 1)), True)\n"
        "os.write(fd, b'start')\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(vsoc.root / "dev" / n)],
                            stdout=subprocess.PIPE, text=True)
    state = vsoc.root / "sys/class/remoteproc" / n / "state"
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert read_text(state) == "running\n"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        assert wait_until(lambda: read_text(state) == "offline\n", 1.0)
        assert time.monotonic() - t0 < 1.0
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_stops_everything(vsoc: Rprocd) -> None:
    code, err = vsoc.stop(signal.SIGTERM, timeout=20)
    assert code == 0, err
    tail = err[err.index("stopping ("):]
    assert "stopped remote processor m4\n" in tail
    assert "stopped remote processor m4-early" in tail
    assert not mounted(vsoc.root)
