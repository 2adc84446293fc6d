"""Opt-in: public board programs, built from their sources outside this repository, run
unmodified under ``rproc run`` against rprocd's emulated cores and the bundled echo firmware.

- ``RPROC_OPENAMP_LINUX_APPS=DIR``: openamp-system-reference's examples/linux programs; DIR holds
  ``echo_test-unsigned-char`` (echo_test built with -funsigned-char: upstream compares a plain
  ``char`` with 0xA5, always unequal where char is signed, as on x86). It finds
  ``rpmsg-openamp-demo-channel`` in /sys/bus/rpmsg/devices, binds it with driver_override +
  bind, finds rpmsg_ctrlN through ``virtio0.rpmsg_ctrl.0.0/rpmsg``, creates an endpoint, finds
  its rpmsgN below /sys/class/rpmsg/rpmsg_ctrlN and echoes 472 payloads.
- ``RPROC_TI_RPMSG_CHAR=DIR``: TI's ti-rpmsg-char install prefix (``bin/rpmsg_char_simple``). It
  reads /sys/devices/soc0/family, resolves /sys/bus/platform/devices/78000000.r5f to
  /sys/devices/..., walks remoteprocN/rproc-virtio.K.auto/virtioM with d_type, opens the ctrl
  device, and exchanges messages. The machine says family AM64X and puts the m4 at
  78000000.r5f (rproc id 2 for that family); the firmware's channel is rpmsg-raw at 1024.
  ``-l 1100``: the library reads the endpoint device's ``src`` after opening it, and the
  mainline kernel shows the requested address there (-1 for ANY).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_abi_run import rproc_run
from test_abi_support import wait_until
from test_rprocd import Rprocd

from remoteproc.platforms.emulator.machine import DEFAULT_MACHINE

OPENAMP = os.environ.get("RPROC_OPENAMP_LINUX_APPS")
TI = os.environ.get("RPROC_TI_RPMSG_CHAR")


@pytest.mark.skipif(not OPENAMP, reason="set RPROC_OPENAMP_LINUX_APPS to the directory of "
                    "openamp-system-reference's examples/linux programs")
def test_openamp_echo_test_unmodified(tmp_path: Path) -> None:
    assert OPENAMP is not None
    prog = Path(OPENAMP) / "echo_test-unsigned-char"
    assert prog.exists(), f"{prog} is missing"
    d = Rprocd(tmp_path / "root", "--firmware-dir", str(tmp_path / "fw"))
    try:
        assert wait_until(lambda: any("rpmsg-openamp-demo-channel" in n for n in os.listdir(
            d.root / "sys/bus/rpmsg/devices")), 30)
        r = rproc_run(d.root, str(prog), "-n", "1", timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        assert "Echo Test Round 0 Test Results: Error count = 0" in r.stdout
        assert "received payload number 471 of size 488" in r.stdout
    finally:
        d.kill()


@pytest.mark.skipif(not TI, reason="set RPROC_TI_RPMSG_CHAR to ti-rpmsg-char's install prefix")
def test_ti_rpmsg_char_simple_unmodified(tmp_path: Path) -> None:
    assert TI is not None
    prog = Path(TI) / "bin/rpmsg_char_simple"
    assert prog.exists(), f"{prog} is missing"
    text = DEFAULT_MACHINE.read_text().replace('family = "vsoc"', 'family = "AM64X"')
    text = text.replace('name = "m4"\nunit_address = 0x10000000',
                        'name = "m4"\nnode = "r5f"\nunit_address = 0x78000000')
    assert "AM64X" in text and "0x78000000" in text
    machine = tmp_path / "am64x.toml"
    machine.write_text(text)
    d = Rprocd(tmp_path / "root", "--machine", str(machine), "--firmware-dir",
               str(tmp_path / "fw"))
    try:
        assert wait_until(lambda: "rpmsg0" in os.listdir(d.root / "dev"), 30)
        r = rproc_run(d.root, str(prog), "-r", "2", "-n", "5", "-d", "rpmsg-raw", "-p", "1024",
                      "-l", "1100", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Communicated 5 messages successfully" in r.stdout
        assert "TEST STATUS: PASSED" in r.stdout
    finally:
        d.kill()
