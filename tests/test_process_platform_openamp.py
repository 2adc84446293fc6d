"""Interoperability with OpenAMP's own Linux demo programs, unmodified, in both directions:
OpenAMP's ``rpmsg-echo`` remote under our host, and OpenAMP's ``rpmsg-echo-ping`` host against
our Python echo remote. They use the default names (``openamp.shm``, ``/tmp/openamp.event.0``),
so these tests take a lock and run one at a time.

The programs come from outside this repository; point the tests at them with
``RPROC_OPENAMP_REMOTE=/path/to/rpmsg-echo-static`` and
``RPROC_OPENAMP_HOST=/path/to/rpmsg-echo-ping-static``. They were built from upstream libmetal,
open-amp and openamp-system-reference (``examples/legacy_apps``, ``MACHINE=generic``; the ping
with ``-DWITH_VIRTIO_DRIVER=ON -DWITH_VIRTIO_DEVICE=OFF``). Without them the tests are skipped
with that reason.

libmetal's Linux port starts its interrupt thread only when its bus probe finds a uio or vfio
driver in /sys; a container without either never delivers the kick. The programs are therefore
run in a private mount namespace where a tmpfs shows an empty ``uio_pdrv_genirq`` driver
directory: the programs themselves are untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest
from test_process_platform import TIMEOUT, payload, stop_proc, wait_channel, wait_for

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.platforms.process import DEFAULT_SHM_NAME, DEFAULT_SOCKET_PATH, ProcessPlatform
from remoteproc.platforms.process import shm_path as _shm_path
from remoteproc.remotes.echo import SHUTDOWN_MSG
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

OPENAMP_REMOTE = os.environ.get("RPROC_OPENAMP_REMOTE", "")
OPENAMP_HOST = os.environ.get("RPROC_OPENAMP_HOST", "")

_NS_SCRIPT = (
    "mount -t tmpfs none /sys/bus/platform/drivers && "
    'mkdir /sys/bus/platform/drivers/uio_pdrv_genirq && exec "$@"'
)


def _runnable(path: str) -> bool:
    return bool(path) and os.access(path, os.X_OK) and shutil.which("unshare") is not None


def _in_namespace(*argv: str) -> list[str]:
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _NS_SCRIPT, "openamp", *argv]


@pytest.fixture
def default_names() -> Iterator[None]:
    """Exclusive use of OpenAMP's fixed shm name and socket path."""
    with open("/tmp/openamp.event.0.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in (_shm_path(DEFAULT_SHM_NAME), DEFAULT_SOCKET_PATH):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            yield
        finally:
            for path in (_shm_path(DEFAULT_SHM_NAME), DEFAULT_SOCKET_PATH):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


@pytest.mark.skipif(
    not _runnable(OPENAMP_REMOTE), reason="RPROC_OPENAMP_REMOTE (OpenAMP rpmsg-echo) not given"
)
def test_openamp_echo_remote_under_our_host(default_names: None) -> None:
    remote = subprocess.Popen(
        _in_namespace(OPENAMP_REMOTE), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    host = Host()
    platform = ProcessPlatform("openamp")  # every name at its OpenAMP default
    try:
        wait_for(lambda: os.path.exists(DEFAULT_SOCKET_PATH), what="OpenAMP remote socket")
        rproc = platform.make_rproc(auto_boot=False)
        host.add(rproc)
        rproc.boot()
        assert rproc.state is State.ATTACHED
        ch = wait_channel(rproc)
        assert ch.dst == 0x400
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        ept = bus.create_ept(None)
        # OpenAMP's echo answers every non-empty message (rpmsg_send refuses length 0 there).
        for n in range(1, 497):
            ept.sendto(payload(n), ch.dst)
            assert ept.recv(TIMEOUT) == payload(n), f"size {n}"
        rproc.recovery_disabled = True
        ept.sendto(struct.pack("=I", SHUTDOWN_MSG), ch.dst)
        wait_for(lambda: bus.find_channel(ch.name) is None, what="NS destroy")
        assert remote.wait(TIMEOUT) == 0
        wait_for(lambda: rproc.state is State.CRASHED, what="peer death")
        rproc.close()
    finally:
        host.close()
        platform.close()
        stop_proc(remote)
        out = remote.stdout.read().decode(errors="replace") if remote.stdout else ""
        if remote.returncode:
            sys.stderr.write(out[-2000:])


@pytest.mark.skipif(
    not _runnable(OPENAMP_HOST), reason="RPROC_OPENAMP_HOST (OpenAMP rpmsg-echo-ping) not given"
)
def test_openamp_ping_host_against_our_remote(default_names: None) -> None:
    remote = subprocess.Popen(
        [sys.executable, "-m", "remoteproc.remotes.echo", "--once", "-v"],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: os.path.exists(DEFAULT_SOCKET_PATH), what="our remote's socket")
        ping = subprocess.run(
            _in_namespace(OPENAMP_HOST, "1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = ping.stdout + ping.stderr
        assert ping.returncode == 0, out[-2000:]
        assert "Error count = 0" in out, out[-2000:]
        assert "received payload number" in out
        # The ping sends one payload per size until its buffer is full, each checked on return.
        assert "echo test: sent : 496" in out
        # Our remote exits once the host has gone (--once).
        assert remote.wait(TIMEOUT) == 0
    finally:
        stop_proc(remote)
