"""Issue 13's command-line findings, as a user meets them: a stale mount after rprocd was
SIGKILLed (found by rprocd, `rproc up` and `rproc down` and cleaned with a message, a live one
refused), `--firmware-dir` that does not exist, `--mount /proc/self`, an 18-byte text file given
as firmware, and the power refcount (`rproc status`, `rproc stop --force`)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import remoteproc
from remoteproc.client.launch import find_rprocd
from remoteproc.client.root import AbiRoot

pytestmark = pytest.mark.timeout(300)

SRC = str(Path(remoteproc.__file__).resolve().parent.parent)


def env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def rproc(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env(**extra))


def rprocd(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "remoteproc.daemon", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def refused(*args: str) -> tuple[int, str]:
    """rprocd run with arguments it must refuse at once; stopped if it serves instead."""
    d = rprocd(*args)
    try:
        _, err = d.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        d.send_signal(signal.SIGTERM)
        d.communicate(timeout=60)
        raise AssertionError("rprocd served instead of refusing") from None
    return d.returncode, err


def wait_for(cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


def stale(mount: Path) -> bool:
    try:
        os.stat(mount)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "rproc"
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path)
    try:
        yield mnt
    finally:
        daemon = find_rprocd(mnt)
        if daemon is not None:
            daemon.stop()
        if AbiRoot(mnt).mount_type() is not None:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        del os.environ["XDG_RUNTIME_DIR"]


def kill_rprocd(mount: Path) -> None:
    daemon = find_rprocd(mount)
    assert daemon is not None
    os.kill(daemon.pid, signal.SIGKILL)
    wait_for(lambda: not daemon.alive())
    wait_for(lambda: stale(mount))
    assert AbiRoot(mount).mount_type() == "fuse.rprocd"


def test_rproc_down_cleans_the_stale_mount_of_a_killed_rprocd(mount: Path) -> None:
    assert rproc("up", "--mount", str(mount), "--sim", "m4").returncode == 0
    kill_rprocd(mount)
    r = rproc("down", "--mount", str(mount))
    assert r.returncode == 0, r.stderr
    assert "removed the stale mount" in r.stdout and "not connected" in r.stdout
    assert AbiRoot(mount).mount_type() is None


def test_rproc_up_over_a_stale_mount_cleans_it_and_serves(mount: Path) -> None:
    assert rproc("up", "--mount", str(mount), "--sim", "m4").returncode == 0
    kill_rprocd(mount)
    r = rproc("up", "--mount", str(mount), "--sim", "m4")
    assert r.returncode == 0, r.stderr
    assert "removed the stale mount" in r.stderr
    assert (mount / "sys/class/remoteproc/remoteproc0/state").read_text() == "offline\n"
    assert rproc("down", "--mount", str(mount)).returncode == 0


def test_rprocd_over_a_stale_mount_cleans_it_and_serves(mount: Path) -> None:
    assert rproc("up", "--mount", str(mount), "--sim", "m4").returncode == 0
    kill_rprocd(mount)
    d = rprocd("--mount", str(mount), "--sim", "m4")
    try:
        assert d.stdout is not None
        line = d.stdout.readline()
        assert "serving 1 processors" in line
        assert not stale(mount)
    finally:
        d.send_signal(signal.SIGTERM)
        _, err = d.communicate(timeout=60)
    assert "removed the stale mount" in err
    assert d.returncode == 0
    assert AbiRoot(mount).mount_type() is None


def test_a_live_mount_is_refused_as_before(mount: Path) -> None:
    d = rprocd("--mount", str(mount), "--sim", "m4")
    try:
        assert d.stdout is not None and "serving" in d.stdout.readline()
        r = rproc("up", "--mount", str(mount), "--sim", "m4")
        assert r.returncode == 1 and "already mounted there [EBUSY]" in r.stderr
        r = rproc("down", "--mount", str(mount))
        assert r.returncode == 1 and "no rprocd started by `rproc up`" in r.stderr
        assert not stale(mount)
    finally:
        d.send_signal(signal.SIGTERM)
        d.communicate(timeout=60)


def test_firmware_dir_that_does_not_exist_is_an_error_not_a_new_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    code, err = refused("--mount", str(tmp_path / "m"), "--firmware-dir", str(missing), "--sim",
                        "m4")
    assert code == 1
    assert f"{missing}: firmware folder does not exist" in err and "[ENOENT]" in err
    assert not missing.exists() and not missing.parent.exists()


def test_mount_on_proc_self_says_why() -> None:
    code, err = refused("--mount", "/proc/self", "--sim", "m4")
    assert code == 1
    assert "inside proc, a kernel file system" in err and "Traceback" not in err


def test_18_byte_text_file_is_named_not_an_elf_file(tmp_path: Path) -> None:
    fw = tmp_path / "notes.txt"
    fw.write_text("just some notes.\n.")
    assert len(fw.read_bytes()) == 18
    for cmd in ("check", "info"):
        r = rproc("fw", cmd, str(fw))
        assert "Image is too small (18 bytes, and not an ELF file)" in r.stdout + r.stderr, cmd
    assert rproc("fw", "check", str(fw)).returncode == 2


def test_status_shows_the_power_count_and_stop_force_stops(mount: Path) -> None:
    assert rproc("up", "--mount", str(mount), "--sim", "m4").returncode == 0
    root = str(mount)
    for _ in range(3):
        assert rproc("start", "m4", "--root", root).returncode == 0
    info = json.loads(rproc("status", "m4", "--json", "--root", root).stdout)
    assert info[0]["power"] == 3
    assert "power" in rproc("status", "--root", root).stdout
    r = rproc("stop", "m4", "--force", "--root", root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "remoteproc0 (m4): offline (3 stop writes)"
    info = json.loads(rproc("status", "m4", "--json", "--root", root).stdout)
    assert info[0]["power"] == 0 and info[0]["state"] == "offline"
    assert "--force" in rproc("stop", "--help").stdout
    assert rproc("down", "--mount", str(mount)).returncode == 0
