"""Programs on the mount see what happened to a processor (issue 13, finding 4): the rprocd event
stream through a real FUSE mount, the client's ``EventStream`` and ``rproc watch``.

A crash that recovers used to show as ``running -> offline -> running`` in ``rproc watch``; the
stream shows ``running -> crashed``, the crash type, the coredump and the recovery, each with a
sequence number and the time, and a failed recovery too.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_abi_support import Abi, mounted_host

import remoteproc
from remoteproc.client.events import EventStream, ProcessorEvent
from remoteproc.client.root import AbiRoot
from remoteproc.core.states import State
from remoteproc.errors import RprocError

pytestmark = pytest.mark.timeout(180)

PROCS: list[tuple[str, dict[str, object]]] = [("m4", {})]


@pytest.fixture
def abi(tmp_path: Path) -> Iterator[Abi]:
    with mounted_host(tmp_path, PROCS, rpmsg=False) as a:
        yield a


def collect(stream: EventStream, until: str, timeout: float = 60.0) -> list[ProcessorEvent]:
    out: list[ProcessorEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = stream.next(max(0.0, deadline - time.monotonic()))
        if ev is None:
            break
        out.append(ev)
        if ev.kind == until:
            return out
    raise AssertionError(f"no {until} event; got {[e.kind for e in out]}")


def test_crash_and_recovery_are_seen_with_type_seq_and_time(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    m4.start()
    (abi.dbg(0, "coredump")).write_text("enabled")
    before = time.time()
    with EventStream(abi.root) as stream:
        abi.dbg(0, "crash").write_text("1")  # RPROC_WATCHDOG
        events = collect(stream, "recovery_done")
    kinds = [e.kind for e in events]
    assert "crash" in kinds and "coredump" in kinds and "recovery_start" in kinds
    crash = next(e for e in events if e.kind == "crash")
    assert crash.detail == "watchdog" and crash.device == "remoteproc0" and crash.name == "m4"
    states = [(e.old, e.state) for e in events if e.kind == "state"]
    assert ("running", "crashed") in states  # the state a state-file reader never sees
    assert states[-1][1] == "running"
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(before - 1 <= e.time <= time.time() + 1 for e in events)
    m4.stop()


def test_failed_recovery_is_an_event(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    m4.start()
    abi.sims["m4"].fail_at("start", errno.EIO)
    with EventStream(abi.root) as stream:
        abi.dbg(0, "crash").write_text("1")
        events = collect(stream, "recovery_failed")
    failed = events[-1]
    assert failed.error is not None and "injected failure at start" in failed.error
    assert failed.errno == errno.EIO


def test_stream_blocks_polls_and_ends_when_the_tree_closes(abi: Abi) -> None:
    with EventStream(abi.root) as stream:
        assert stream.next(0.2) is None and not stream.ended  # blocks, nothing came
        AbiRoot(abi.root).processor("m4").start()
        ev = stream.next(30)
        assert ev is not None and ev.kind == "state" and ev.state == "running"


def test_no_stream_on_a_board_is_explained(tmp_path: Path) -> None:
    with pytest.raises(RprocError) as info:
        EventStream(tmp_path)
    assert info.value.errno == errno.ENOENT and "only rprocd" in str(info.value)


def test_rproc_watch_shows_the_crash_type_and_recovery(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    m4.start()
    watch = subprocess.Popen(
        [sys.executable, "-m", "remoteproc.cli", "watch", "m4", "--json", "--timeout", "60",
         "--root", str(abi.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    try:
        # wait until watch has the stream open (one reader of rprocd/events)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and watch.poll() is None and _readers(abi) == 0:
            time.sleep(0.01)
        abi.dbg(0, "crash").write_text("0")  # RPROC_MMUFAULT
        assert watch.stdout is not None
        seen: list[dict[str, object]] = []
        while True:
            line = watch.stdout.readline()
            assert line, f"watch ended early: {seen} {watch.stderr and watch.stderr.read()}"
            seen.append(json.loads(line))
            if seen[-1]["kind"] == "recovery_done":
                break
    finally:
        watch.kill()
        watch.wait()
    crash = next(d for d in seen if d["kind"] == "crash")
    assert crash["type"] == "mmufault"
    assert {"kind": "state", "old": "running", "new": "crashed"}.items() <= next(
        d for d in seen if d["kind"] == "state").items()
    assert abi.rproc(0).state is State.RUNNING


def child_env() -> dict[str, str]:
    """This checkout's package for child processes: libfuse moves our cwd to / when it mounts,
    so a relative PYTHONPATH would find another installed copy."""
    src = str(Path(remoteproc.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _readers(abi: Abi) -> int:
    assert abi.tree is not None
    return len(abi.tree._readers)


@pytest.mark.parametrize("code", [errno.ENOTCONN, errno.ECONNABORTED])
def test_stream_ends_when_rprocd_goes_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           code: int) -> None:
    """A read of the events file whose FUSE connection is gone ends the stream: ENOTCONN once
    unmounted, ECONNABORTED for the read the kernel aborts while tearing the connection down
    (seen from `rproc watch` during `rproc down`). Any other errno stays an error."""
    events = tmp_path / "rprocd" / "events"
    events.parent.mkdir()
    events.write_bytes(b"")
    stream = EventStream(tmp_path)
    real_read = os.read

    def gone(fd: int, n: int) -> bytes:
        if fd == stream.fileno():
            raise OSError(code, os.strerror(code))
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", gone)
    try:
        assert stream.next(timeout=1.0) is None
        assert stream.ended
    finally:
        monkeypatch.undo()
        stream.close()
