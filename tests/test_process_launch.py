"""Launch failures of the process platform (issue 13): no remote command, a command the kernel
refuses to execute (ENOEXEC, EACCES), a remote that exits before accepting, one that never
listens, and a layout whose regions lie outside the shared memory. Each attach fails with a
clear error carrying the errno, the processor stays DETACHED, and nothing is left behind: child
processes, open descriptors and threads are back at their baseline."""

from __future__ import annotations

import errno
import gc
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_until
from test_process_platform import cleanup_names, echo_command, unique_names

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.platforms.process import ProcessPlatform
from remoteproc.transport.openamp_linux import DEFAULT_LAYOUT, ShmFile, ShmLayout

pytestmark = pytest.mark.timeout(120)


def children() -> set[int]:
    """Our live (or unreaped) child processes, from /proc."""
    me = os.getpid()
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.add(int(entry))
    return out


@dataclass(frozen=True)
class Counts:
    """What a test may leave behind: child processes, open descriptors, threads (by identity,
    so what earlier tests' leftovers do meanwhile, e.g. a daemon thread ending, is no leak)."""

    children: frozenset[int]
    fds: frozenset[str]
    threads: frozenset[int]

    @staticmethod
    def now() -> Counts:
        return Counts(frozenset(children()), frozenset(os.listdir("/proc/self/fd")),
                      frozenset(id(t) for t in threading.enumerate()))

    def new_since(self, before: Counts) -> dict[str, set[object]]:
        out = {"children": set(self.children - before.children),
               "fds": set(self.fds - before.fds), "threads": set(self.threads - before.threads)}
        return {k: v for k, v in out.items() if v}


@pytest.fixture
def baseline() -> Iterator[Counts]:
    before = Counts.now()
    yield before

    def back() -> bool:
        # Threads end asynchronously (a reader joining, a daemon winding down), and a mapping
        # of the shared file closes with the last view of it, which an error's traceback
        # cycle can hold until the collector runs.
        gc.collect()
        return not Counts.now().new_since(before)

    wait_until(back, 10.0, what="nothing left behind (new since the test began: "
               f"{Counts.now().new_since(before)})")


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    shm, sock = unique_names()
    yield shm, sock
    cleanup_names(shm, sock)


@dataclass(frozen=True)
class Failure:
    errno: int
    text: str


def attach_fails(platform: ProcessPlatform) -> Failure:
    """Attach (boot a DETACHED processor) and return the error's errno and text (not the error:
    its traceback would keep views of the shared file, and so the mapping, alive); check the
    processor and the platform are back where they were."""
    host = Host([], panic_hook=False)
    try:
        rproc = platform.make_rproc(auto_boot=False, host=host)
        try:
            rproc.boot()
        except RprocError as exc:
            failure = Failure(exc.errno, str(exc))
        else:
            raise AssertionError("the attach succeeded")
        assert rproc.state is State.DETACHED and rproc.power == 0
        assert rproc.carveouts == [] and rproc.rvdevs == []
        assert platform.process is None or not platform.remote_alive
        assert platform._sock is None and platform._reader is None
        return failure
    finally:
        host.close()
        platform.close()


def test_no_remote_command_and_no_remote(baseline: Counts, names: tuple[str, str]) -> None:
    shm, sock = names
    platform = ProcessPlatform("p", shm=shm, socket_path=sock, connect_timeout=0.2)
    with pytest.raises(RprocError) as launch:
        platform.launch()
    assert launch.value.errno == errno.EINVAL
    assert "no remote command to launch" in str(launch.value)
    err = attach_fails(platform)
    assert err.errno == errno.ETIMEDOUT
    assert f"no remote listening on {sock}" in str(err)


def test_a_file_of_the_wrong_format_gives_enoexec(baseline: Counts, names: tuple[str, str],
                                                  tmp_path: Path) -> None:
    bad = tmp_path / "not-a-program"
    bad.write_bytes(b"\x7fELF\x01\x01\x01garbage that no loader takes")
    bad.chmod(0o755)
    shm, sock = names
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=[str(bad)]))
    assert err.errno == errno.ENOEXEC
    assert "cannot launch remote" in str(err) and str(bad) in str(err)


def test_a_file_that_is_not_executable_gives_eacces(baseline: Counts, names: tuple[str, str],
                                                    tmp_path: Path) -> None:
    script = tmp_path / "remote.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    shm, sock = names
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=[str(script)]))
    assert err.errno == errno.EACCES
    assert "cannot launch remote" in str(err) and str(script) in str(err)


def test_a_missing_program_gives_enoent(baseline: Counts, names: tuple[str, str],
                                        tmp_path: Path) -> None:
    shm, sock = names
    missing = str(tmp_path / "no-such-remote")
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=[missing]))
    assert err.errno == errno.ENOENT and missing in str(err)


def test_a_remote_that_exits_before_accepting(baseline: Counts, names: tuple[str, str]) -> None:
    shm, sock = names
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=command))
    assert err.errno == errno.ECONNREFUSED
    assert f"exited (status 3) before accepting on {sock}" in str(err)


def test_a_remote_that_never_listens_is_stopped(baseline: Counts, names: tuple[str, str]) -> None:
    """It runs but never accepts: the connect times out, and the launcher stops what it
    launched instead of leaving it running."""
    shm, sock = names
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=command,
                                       connect_timeout=0.3, stop_timeout=2.0))
    assert err.errno == errno.ETIMEDOUT and sock in str(err)


@pytest.mark.parametrize("layout", [
    ShmLayout(buf_pa=0x70000),  # the pool runs past the end of the file
    ShmLayout(vring_da=(0x4000, 0x7F000)),  # a ring past the end
    ShmLayout(shm_size=0x8000),  # a file too small for the default regions
], ids=["pool", "vring", "small-file"])
def test_a_region_outside_the_shared_memory(baseline: Counts, names: tuple[str, str],
                                            layout: ShmLayout) -> None:
    """Refused before anything is launched or connected: the layout is the caller's error."""
    shm, sock = names
    remote = ShmFile(shm, DEFAULT_LAYOUT.shm_size, create=True)  # a file to find, anyway
    try:
        platform = ProcessPlatform("p", shm=shm, socket_path=sock, layout=layout,
                                   command=echo_command(shm, sock))
        err = attach_fails(platform)
        assert err.errno == errno.EINVAL
        assert "is outside the shared memory" in str(err) and shm in str(err)
        assert platform.connects == 0 and platform.process is None
    finally:
        remote.close()


def test_a_launched_remote_on_a_table_the_host_refuses_is_stopped(
        baseline: Counts, names: tuple[str, str]) -> None:
    """The remote runs and accepts, but its table is refused (handle_resources fails after
    prepare): the attach unwinds and the launcher stops the remote it launched."""
    shm, sock = names
    # --bad-table makes no sense to the echo remote; give it a table version Linux refuses.
    command = [sys.executable, "-c",
               "import struct, sys; sys.argv[1:] = " + repr(["--shm", shm, "--socket", sock]) +
               "\nfrom remoteproc.remotes import echo"
               "\nbuild = echo.build_table"
               "\necho.build_table = lambda *a, **k: struct.pack('<I', 2) + build(*a, **k)[4:]"
               "\necho.main()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    err = attach_fails(ProcessPlatform("p", shm=shm, socket_path=sock, command=command, env=env))
    assert err.errno == errno.EINVAL and "ver 2" in str(err)


def test_a_relaunched_remote_that_never_listens_is_stopped_after_a_failed_recovery(
        baseline: Counts) -> None:
    """Recovery relaunches the remote (stop, then start); the new one never accepts: the start
    fails, the recovery is reported failed, and the launcher stops what it launched."""
    from test_process_platform import Pair, wait_for

    from remoteproc.core.events import EventKind

    with Pair() as p:
        p.attach()
        failed = p.host.subscribe(kinds={EventKind.RECOVERY_FAILED})
        try:
            old = p.platform.process
            assert old is not None
            p.platform.command = [sys.executable, "-c", "import time; time.sleep(60)"]
            p.platform.connect_timeout = 0.3
            old.kill()
            ev = failed.get(60)
            assert ev is not None and isinstance(ev.error, RprocError)
            assert ev.error.errno == errno.ETIMEDOUT and p.sock in str(ev.error)
            wait_for(lambda: not p.platform.remote_alive, what="the relaunched remote stopped")
            assert p.platform._sock is None and p.platform._reader is None
        finally:
            failed.close()
