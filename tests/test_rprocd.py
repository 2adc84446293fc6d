"""``rprocd`` as a user runs it: a foreground process serving the mount; the seed commands
through ``sh``; SIGTERM/SIGINT stop every processor and unmount, also with files held open."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_abi_support import wait_until

from remoteproc.daemon import DEFAULT_MACHINE, Daemon, sim_image


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


class Rprocd:
    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        # rprocd refuses a firmware folder that does not exist (it is the user's to create)
        for opt, value in itertools.pairwise(args):
            if opt == "--firmware-dir":
                Path(value).mkdir(parents=True, exist_ok=True)
        # -v logs go to a file: a pipe nobody reads during the test would fill and block rprocd
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remoteproc.daemon", "--mount", str(root), "-v", *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("rprocd: serving"):
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"rprocd did not start: {line!r} {self.log()}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def sh(self, cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=20,
                              env={**os.environ, "R": str(self.root)})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        self.proc.send_signal(sig)
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode, self.log()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self._log.close()
        if mounted(self.root):
            subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def rprocd(tmp_path: Path) -> Iterator[Rprocd]:
    d = Rprocd(tmp_path / "root", "--sim", "m4", "--sim", "dsp",
               "--firmware-dir", str(tmp_path / "fw"))
    try:
        yield d
    finally:
        d.kill()


def test_seed_commands_and_sigterm(rprocd: Rprocd, tmp_path: Path) -> None:
    R = "$R/sys/class/remoteproc/remoteproc0"
    D = "$R/sys/kernel/debug/remoteproc/remoteproc0"
    assert rprocd.sh(f"cat {R}/state").stdout == "offline\n"
    assert rprocd.sh(f"echo start > {R}/state").returncode == 0
    assert rprocd.sh(f"cat {R}/state").stdout == "running\n"
    assert rprocd.sh(f"cat {D}/trace0").stdout == "hello from sim\n"
    assert rprocd.sh(f"echo disabled > {D}/coredump").returncode == 0
    assert rprocd.sh(f"echo 1 > {D}/crash").returncode == 0
    assert wait_until(lambda: rprocd.sh(f"cat {R}/state").stdout == "running\n")
    assert rprocd.sh(f"echo stop > {R}/state").returncode == 0
    assert rprocd.sh(f"cat {R}/state").stdout == "offline\n"
    # a firmware copied into lib/firmware is found by name
    (tmp_path / "my.fw").write_bytes(sim_image())
    assert rprocd.sh(f"cp {tmp_path}/my.fw $R/lib/firmware/").returncode == 0
    assert rprocd.sh(f"echo -n my.fw > {R}/firmware").returncode == 0
    assert rprocd.sh(f"cat {R}/firmware").stdout == "my.fw\n"
    assert rprocd.sh(f"echo start > {R}/state").returncode == 0
    assert rprocd.sh("echo start > $R/sys/class/remoteproc/remoteproc1/state").returncode == 0
    code, err = rprocd.stop(signal.SIGTERM)
    assert code == 0, err
    assert "remoteproc0: stopping (running)" in err
    assert "remoteproc1: stopping (running)" in err
    tail = err[err.index("stopping (running)"):]
    assert "stopped remote processor m4" in tail and "stopped remote processor dsp" in tail
    assert not mounted(rprocd.root)


def test_sigint_with_files_held_open(rprocd: Rprocd) -> None:
    fd = os.open(rprocd.root / "dev/remoteproc0", os.O_WRONLY)
    try:
        os.write(fd, b"start")
        t0 = time.monotonic()
        code, err = rprocd.stop(signal.SIGINT)
        assert code == 0, err
        assert time.monotonic() - t0 < 5
        assert "stopped remote processor m4" in err
        assert not mounted(rprocd.root)
    finally:
        with contextlib.suppress(OSError):  # ENOTCONN: the connection was aborted
            os.close(fd)


def test_daemon_in_process_start_stop(tmp_path: Path) -> None:
    with Daemon(tmp_path / "mnt", sims=["a"]) as d:
        assert d.host is not None and len(d.host) == 1
        state = tmp_path / "mnt/sys/class/remoteproc/remoteproc0/state"
        state.write_text("start\n")
        assert state.read_text() == "running\n"
        fw = d.firmware_dir
        assert os.readlink(tmp_path / "mnt/lib/firmware") == str(fw)
    assert not mounted(tmp_path / "mnt")
    assert not fw.exists()


def test_bad_arguments_fail_cleanly(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "remoteproc.daemon"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "--mount" in r.stderr
    assert DEFAULT_MACHINE.name == "default.toml"
