"""``rproc demo``: the README's main job, run as a user runs it, on its own rprocd.

On in-memory processors (no rpmsg, no ELF class for dumps) it must report what it could not do,
step by step, exit 1, and still stop rprocd and leave no mount behind."""

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
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "✓ rprocd" in out
    assert "✓ boot" in out and "resource table: carveout, trace" in out
    assert "- rpmsg echo" in out and "no vdev" in out
    assert "✓ trace" in out and "hello from sim" in out
    # the sim platform sets no ELF class, so the core writes no dump (as the kernel would not)
    assert "✗ crash, coredump, recovery" in out and "no coredump of remoteproc0" in out
    assert "✓ stop" in out
    assert "- detach and re-attach" in out and "none is detached" in out
    assert "Traceback" not in r.stderr
    assert mounts_under(mnt) == []
