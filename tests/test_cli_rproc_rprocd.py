"""``rproc up`` / ``rproc down`` and the processor commands against a real background
``rprocd`` (in-memory processors: --sim), as separate processes, the way a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remoteproc.client.launch import find_rprocd
from remoteproc.client.root import AbiRoot


def rproc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.fixture
def mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    mnt = tmp_path / "rproc"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the daemon's record stays there
    try:
        yield mnt
    finally:
        daemon = find_rprocd(mnt)
        if daemon is not None:
            daemon.stop()


def test_up_serves_and_down_unmounts(mount: Path) -> None:
    r = rproc("up", "--mount", str(mount), "--sim", "m4", "--sim", "dsp")
    assert r.returncode == 0, r.stderr
    assert f"serves 2 processors at {mount}" in r.stdout
    assert AbiRoot(mount).mount_type() == "fuse.rprocd"
    r = rproc("up", "--mount", str(mount), "--sim", "m4")
    assert r.returncode == 1 and "already serves it" in r.stderr
    env = {**os.environ, "RPROC_ROOT": str(mount)}
    assert rproc("start", "dsp", env=env).stdout == "remoteproc1 (dsp): running\n"
    assert rproc("trace", "dsp", env=env).stdout == "hello from sim\n"
    rows = json.loads(rproc("list", "--json", env=env).stdout)
    assert [(r["name"], r["state"]) for r in rows] == [("m4", "offline"), ("dsp", "running")]
    # the seed's shell commands and the CLI see the same tree
    state = mount / "sys/class/remoteproc/remoteproc1/state"
    assert state.read_text() == "running\n"
    r = rproc("down", "--mount", str(mount))
    assert r.returncode == 0, r.stderr
    assert AbiRoot(mount).mount_type() is None
    assert find_rprocd(mount) is None
    r = rproc("down", "--mount", str(mount))
    assert r.returncode == 1 and "no rprocd" in r.stderr


def test_up_reports_a_daemon_that_fails(mount: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is not a machine = [\n")
    r = rproc("up", "--mount", str(mount), "--machine", str(bad), "--timeout", "60")
    assert r.returncode == 1
    assert "rprocd exited with status" in r.stderr and "Traceback" not in r.stderr.split("\n")[0]
    assert AbiRoot(mount).mount_type() is None


def test_watch_reports_processors_gone_when_rprocd_stops(mount: Path) -> None:
    assert rproc("up", "--mount", str(mount), "--sim", "m4").returncode == 0
    watch = subprocess.Popen([sys.executable, "-m", "remoteproc.cli", "watch", "--root",
                              str(mount)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert watch.stderr is not None and "watching remoteproc0=offline" in \
            watch.stderr.readline()
        assert rproc("start", "m4", "--root", str(mount)).returncode == 0
        assert rproc("down", "--mount", str(mount)).returncode == 0
        out, err = watch.communicate(timeout=20)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    lines = [line.split(" ", 1)[1] for line in out.splitlines()]
    # rprocd stops its processors before it unmounts: "running -> offline" may be seen first
    assert lines[0] == "remoteproc0 (m4): offline -> running"
    assert lines[-1] in ("remoteproc0 (m4): running -> gone", "remoteproc0 (m4): offline -> gone")
    assert len(lines) <= 3
    assert "Traceback" not in err
