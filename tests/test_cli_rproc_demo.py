"""``rproc demo``: the README's main job, run as a user runs it, on its own rprocd.

On the emulated default machine every step passes. On in-memory processors (no rpmsg) it must
say which steps it skipped and why, and in every case stop its rprocd and leave no mount."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", "demo", "-o", str(tmp_path),
                           *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def test_demo_reports_each_step_and_always_unmounts(tmp_path: Path) -> None:
    mnt = tmp_path / "root"
    r = demo(tmp_path, "--sim", "m4", "--mount", str(mnt), "--timeout", "2")
    out = r.stdout
    assert r.returncode == 0, out + r.stderr  # skipped steps are not failures
    assert "✓ rprocd" in out
    assert "✓ boot" in out and "resource table: carveout, trace" in out
    assert "✓ trace" in out and "hello from sim" in out
    assert "- firmware swap" in out and "no running processor has an rpmsg vdev" in out
    assert "- rpmsg echo" in out and "- crash, coredump, recovery" in out
    assert "✓ stop" in out
    assert "- detach and re-attach" in out and "none is detached" in out
    assert "Traceback" not in r.stderr
    assert mounts_under(mnt) == []


def test_demo_on_an_empty_root_says_what_is_missing(tmp_path: Path) -> None:
    r = demo(tmp_path, "--root", str(tmp_path))
    assert r.returncode == 1
    assert "is rprocd mounted there?" in r.stderr and "Traceback" not in r.stderr


def test_demo_on_the_default_machine(tmp_path: Path) -> None:
    """The README's main job: every step passes on the emulated default machine."""
    mnt = tmp_path / "root"
    r = demo(tmp_path, "--mount", str(mnt))
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for step in ("rprocd", "boot", "trace", "firmware swap", "rpmsg echo",
                 "crash, coredump, recovery", "stop", "detach and re-attach"):
        assert f"✓ {step} " in out, step
    assert "✗" not in out and "Traceback" not in r.stderr
    # boot with resource handling, and the trace the firmware wrote
    assert "loaded hello-rv32.elf" in out and "trace0| hello from riscv32 core 1" in out
    assert "loaded crash-m4.elf" in out and "carveouts: vdev0vring0, vdev0vring1" in out
    assert "echoed 'hello from Linux'" in out
    # a real watchdog expiry inside the firmware, its dump with the registers note
    assert "firmware watchdog left to expire ('crashing: wdog')" in out
    core = (tmp_path / "m4.core").read_bytes()
    assert core[:4] == b"\x7fELF" and core[16] == 4  # ET_CORE
    assert "(1 note, 2 load)" in out
    assert "m4 runs rpmsg-echo-m4.elf again" in out
    assert "trace0| detached, still running" in out
    assert out.count("echo over rpmsg-raw works") == 2
    assert mounts_under(mnt) == []
