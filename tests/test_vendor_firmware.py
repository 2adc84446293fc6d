"""Opt-in: unmodified vendor firmware on the bundled SoC machines, through ``rprocd`` as a user
runs it. ``RPROC_VENDOR_FW_DIR`` names a folder of vendor ELF images (built from public
sources on your machine, never committed: docs/virtual-soc.md "Vendor firmware" says which
and how). Each image runs on the bundled machine whose memory map holds all of its PT_LOAD
segments; the test boots it (``echo FW > firmware; echo start > state``), waits for its
name-service announcements, checks that the unknown-access log of the boot is empty,
exchanges messages on every channel it announced, then stops it (``echo stop > state``) and
checks that it went offline without a crash.

What a channel answers depends on the firmware family, recognised from the image
(a Zephyr kernel carries ``z_cstart``; anything else is taken for STM32Cube):

- ``rpmsg-tty``: STM32Cube OpenAMP_TTY_echo echoes the bytes as they are; Zephyr's
  ``openamp_rsc_table`` answers ``TTY 0x<its address>: `` + the bytes + a NUL
  (its sample's format), over each ``/dev/ttyRPMSGn``;
- ``rpmsg-raw``: an echo over its ``/dev/rpmsgN``;
- ``rpmsg-client-sample``: through an endpoint created with ``/dev/rpmsg_ctrlN``,
  STM32Cube OpenAMP_raw answers ``hello world! 01`` (Linux's rpmsg_client_sample peer) and
  Zephyr echoes the message.

A Zephyr ``openamp_rsc_table`` image must announce ``rpmsg-client-sample`` and, when its
sample has the tty thread (Zephyr 2.6 on), ``rpmsg-tty``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from test_emulator import wait_until
from test_rprocd import Rprocd

from remoteproc.platforms.emulator.machine import bundled_machines, load_machine_spec

VENDOR_DIR = os.environ.get("RPROC_VENDOR_FW_DIR")
pytestmark = pytest.mark.skipif(
    not VENDOR_DIR, reason="RPROC_VENDOR_FW_DIR is not set (a folder of vendor firmware ELFs)")


def _images() -> list[Path]:
    if not VENDOR_DIR:
        return []
    return sorted(p for p in Path(VENDOR_DIR).glob("*.elf") if p.is_file())


def machine_for(image: Path) -> str | None:
    """The bundled machine (not ``default``) whose one core's memory holds every segment."""
    with open(image, "rb") as fh:
        elf = ELFFile(fh)
        segs = [(int(s["p_paddr"]), int(s["p_memsz"])) for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD" and s["p_memsz"]]
    for name, path in bundled_machines().items():
        if name == "default":
            continue
        spec = load_machine_spec(path)
        core = spec.cores[0]
        spans = [(m.da, m.size) for m in core.memory] + [(spec.ddr_base, spec.ddr_size)]
        if all(any(b <= a and a + n <= b + s for b, s in spans) for a, n in segs):
            return name
    return None


def _symbols(image: Path, *names: str) -> set[str]:
    """Which of ``names`` the image's symbol table defines (vendors ship the unstripped twin
    beside a stripped image, and the test images here are unstripped)."""
    with open(image, "rb") as fh:
        symtab = ELFFile(fh).get_section_by_name(".symtab")
        return {n for n in names if symtab is not None and symtab.get_symbol_by_name(n)}


def is_zephyr(image: Path) -> bool:
    """A Zephyr kernel: its C entry ``z_cstart`` is in the symbol table."""
    return bool(_symbols(image, "z_cstart"))


def zephyr_channels(image: Path) -> set[str]:
    """The channels Zephyr's openamp_rsc_table announces: ``rpmsg-client-sample`` in every
    version, and ``rpmsg-tty`` from the version (2.6 on) whose sample has an ``app_rpmsg_tty``
    thread."""
    return {"rpmsg-client-sample"} | ({"rpmsg-tty"} if _symbols(image, "app_rpmsg_tty") else set())


def _rproc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def _tty_echo(path: Path, msg: bytes, want: int) -> bytes:
    """Write ``msg`` and read until ``want`` bytes came back (or 10 s passed)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, msg)
        got = b""
        deadline = time.monotonic() + 10
        while len(got) < want and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                got += os.read(fd, 512)
        return got
    finally:
        os.close(fd)


@pytest.fixture(params=_images(), ids=lambda p: p.name)
def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Rprocd, Path]]:
    image: Path = request.param
    machine = machine_for(image)
    if machine is None:
        pytest.skip(f"{image.name}: no bundled machine holds its segments")
    fw = tmp_path / "fw"
    fw.mkdir()
    shutil.copy(image, fw / image.name)
    d = Rprocd(tmp_path / "root", "--machine", machine, "--firmware-dir", str(fw))
    try:
        yield d, image
    finally:
        d.kill()


def test_vendor_image_announces_and_echoes(vendor: tuple[Rprocd, Path]) -> None:
    d, image = vendor
    zephyr = is_zephyr(image)
    R = "$R/sys/class/remoteproc/remoteproc0"
    r = d.sh(f"echo {image.name} > {R}/firmware && echo start > {R}/state")
    assert r.returncode == 0, r.stderr + d.log()

    def listing() -> list[dict[str, object]]:
        out = _rproc(d.root, "rpmsg", "list", "--json")
        return list(json.loads(out.stdout)["channels"]) if out.returncode == 0 else []

    def announced() -> list[str]:
        return [str(c["name"]) for c in listing() if c["name"] != "rpmsg_ns"]

    # Zephyr's sample announces its channels from separate threads; wait for all of them
    want = zephyr_channels(image) if zephyr else set()
    wait_until(lambda: announced() and want <= set(announced()), 30,
               f"{image.name}'s name-service announcements {sorted(want)}; "
               f"log:\n{d.log()[-2000:]}")
    time.sleep(0.2)  # a second announcement may follow the first (two ttys)
    chans = listing()
    names = [str(c["name"]) for c in chans]
    assert "unmodelled" not in d.log(), d.log()
    checked = 0
    ttys = [c for c in chans if c["name"] == "rpmsg-tty"]
    for i, c in enumerate(ttys):
        tty = d.root / f"dev/ttyRPMSG{i}"
        wait_until(tty.exists, 10, str(tty))
        msg = f"vendor tty {i}".encode()
        want_back = (f"TTY 0x{int(str(c['dst'])):04x}: ".encode() + msg + b"\0" if zephyr
                     else msg)
        assert _tty_echo(tty, msg, len(want_back)) == want_back
        checked += 1
    if "rpmsg-raw" in names:
        r = _rproc(d.root, "rpmsg", "send", "remoteproc0", "vendor raw")
        assert r.returncode == 0 and "vendor raw" in r.stdout, r.stderr
        checked += 1
    for c in chans:
        if c["name"] == "rpmsg-client-sample":
            # Zephyr copies the message into a 20-byte buffer: keep it shorter
            msg, want_reply = ("zephyr cs", "zephyr cs") if zephyr else ("hi", "hello world! 01")
            r = _rproc(d.root, "rpmsg", "send", "remoteproc0", msg, "--dst", str(c["dst"]))
            assert r.returncode == 0 and want_reply in r.stdout, r.stdout + r.stderr
            checked += 1
    assert checked, f"{image.name}: no channel this test knows how to talk to: {names}"

    r = d.sh(f"echo stop > {R}/state")
    assert r.returncode == 0, r.stderr + d.log()
    state = d.root / "sys/class/remoteproc/remoteproc0/state"
    wait_until(lambda: state.read_text().strip() == "offline", 10, f"offline; {d.log()[-2000:]}")
    log = d.log()
    assert "crash" not in log.lower() and "fault" not in log.lower(), log[-3000:]
