"""The client library against the real ABI served over FUSE (the tree rprocd mounts, here over
in-memory sim processors so each test takes milliseconds): every request the client makes
reaches the kernel semantics, and every refusal comes back explained."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import holds_for
from test_abi_support import Abi, abi_fixture, image, wait_until

from remoteproc.client.root import AbiRoot
from remoteproc.client.watch import StateWatcher
from remoteproc.core.coredump import ELFCLASS32, add_segment, set_elf_info
from remoteproc.core.states import State
from remoteproc.errors import RprocError

PROCS: list[tuple[str, dict[str, object]]] = [
    ("m4", {}),
    ("ro", {"sysfs_read_only": True}),
    ("early", {"state": State.DETACHED}),
]


abi = abi_fixture(PROCS, fuse=True)  # the client library makes its own system calls


def test_discovery_and_status(abi: Abi) -> None:
    root = AbiRoot(abi.root)
    assert [(p.dev_name, p.name, p.state) for p in root.processors()] == [
        ("remoteproc0", "m4", "offline"), ("remoteproc1", "ro", "offline"),
        ("remoteproc2", "early", "detached")]
    info = root.processor("m4").status()
    assert info["firmware"] == "rproc-m4-fw" and info["recovery"] == "enabled"
    assert info["coredump"] == "disabled" and info["traces"] == []
    assert info["cdev"] == str(abi.root / "dev/remoteproc0")
    assert root.mount_type() == "fuse.rprocd"
    assert root.state_change_notifies()


def test_lifecycle_and_explained_refusals(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    with pytest.raises(RprocError) as e:
        m4.stop()
    assert e.value.errno == errno.EINVAL
    assert "only a running or attached processor can be stopped; it is offline" in str(e.value)
    m4.start()
    assert m4.wait_state("running", 5) == "running"
    assert m4.traces() == [0] and m4.trace(0) == "booted"
    with pytest.raises(RprocError) as e:
        m4.set_firmware("other")
    assert e.value.errno == errno.EBUSY and "it is running (stop it first)" in str(e.value)
    with pytest.raises(RprocError) as e:
        m4.detach()  # booted, not attached
    assert e.value.errno == errno.EINVAL and "only an attached processor" in str(e.value)
    m4.stop()
    assert m4.state == "offline"
    with pytest.raises(RprocError) as e:
        m4.trace(0)
    assert e.value.errno == errno.ENOENT and "not running (state offline)" in str(e.value)


def test_missing_firmware_says_how_to_install(abi: Abi, tmp_path: Path) -> None:
    root = AbiRoot(abi.root)
    m4 = root.processor("m4")
    m4.set_firmware("nothere.fw")
    with pytest.raises(RprocError) as e:
        m4.start()
    assert e.value.errno == errno.ENOENT
    assert "'nothere.fw' was not found" in str(e.value)
    assert "rproc firmware nothere.fw --install FILE" in str(e.value)
    built = tmp_path / "nothere.fw"
    built.write_bytes(image(trace_text=b"v2\0"))
    # lib/firmware under the root is where the kernel (and rprocd) look
    dest = m4.install_firmware(built)
    assert (abi.fwdir / "nothere.fw").read_bytes() == built.read_bytes(), dest
    m4.start()
    assert m4.wait_state("running", 5) == "running" and m4.trace(0) == "v2"
    m4.stop()


def test_read_only_sysfs_refuses_root_with_the_reason(abi: Abi) -> None:
    ro = AbiRoot(abi.root).processor("ro")
    with pytest.raises(RprocError) as e:
        ro.start()
    assert e.value.errno == errno.EACCES
    if os.geteuid() == 0:
        assert "read-only (sysfs_read_only)" in str(e.value)
    else:
        assert "run as root" in str(e.value)
    with ro.session() as s:  # the cdev is not affected by sysfs_read_only
        s.start()
        assert ro.wait_state("running", 5) == "running"
    assert ro.wait_state("offline", 5) == "offline"


def test_attach_detach_reattach(abi: Abi) -> None:
    early = AbiRoot(abi.root).processor("early")
    early.start()
    assert early.wait_state("attached", 5) == "attached"
    assert early.firmware == "unknown"
    early.detach()
    assert early.wait_state("detached", 5) == "detached"
    early.start()
    assert early.wait_state("attached", 5) == "attached"


def test_session_shutdown_on_release(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    with m4.session() as s:
        assert s.shutdown_on_release is True
        s.start()
        assert m4.wait_state("running", 5) == "running"
        with pytest.raises(RprocError) as e:
            s.detach()
        assert e.value.errno == errno.EINVAL and "running" in str(e.value)
    assert m4.wait_state("offline", 5) == "offline"
    with m4.session(shutdown_on_release=None) as s:
        assert s.shutdown_on_release is True  # the flag stays set on the processor
        s.shutdown_on_release = False
        s.start()
    # without the flag the processor outlives the descriptor (a bounded observation: FUSE
    # releases after close() returned, so "nothing happens" is watched for 0.1 s)
    holds_for(lambda: m4.state == "running", 0.1, "running after the session closed")
    assert m4.state == "running"
    with m4.session(shutdown_on_release=None) as s:
        assert s.shutdown_on_release is False
    assert m4.state == "running"
    m4.stop()


def test_session_flag_is_per_processor(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    with m4.session() as owner:
        owner.start()
        with m4.session(shutdown_on_release=None) as other:
            assert other.shutdown_on_release is True  # set by the owner: one flag per rproc
            other.shutdown_on_release = False
        assert owner.shutdown_on_release is False
        owner.shutdown_on_release = True
    assert m4.wait_state("offline", 5) == "offline"


def test_session_holder_killed_stops_the_processor(abi: Abi) -> None:
    """Seed 003: the processor's lifetime follows the controlling process, even on SIGKILL."""
    code = textwrap.dedent(f"""
        import sys, time
        from remoteproc.client.root import AbiRoot
        p = AbiRoot({str(abi.root)!r}).processor("m4")
        s = p.session()
        s.start()
        print("started", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        m4 = AbiRoot(abi.root).processor("m4")
        assert m4.wait_state("running", 5) == "running"
        child.send_signal(signal.SIGKILL)
        assert m4.wait_state("offline", 5) == "offline"
    finally:
        child.kill()
        child.wait()


def test_watch_wakes_on_poll(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    # an interval far above the test's patience: only a poll() wake-up can report in time
    with StateWatcher([m4], interval=30.0) as w:
        assert w.notifies and "poll()" in w.mode
        m4.start()
        t0 = time.monotonic()
        changes = w.changes(10)
        assert time.monotonic() - t0 < 3
        assert [(c.old, c.new) for c in changes] == [("offline", "running")]
        m4.stop()
        assert [c.new for c in w.changes(10)] == ["offline"]


def test_crash_recovery_and_coredump(abi: Abi, tmp_path: Path) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    rproc = abi.rproc(0)
    m4.set_coredump_mode("enabled")
    m4.start()
    m4.wait_state("running", 5)
    # the sim platform is memory only: give the core what a driver's parse_fw gives it
    set_elf_info(rproc, ELFCLASS32, 40)
    add_segment(rproc, 0x0, 0x100)
    m4.crash("watchdog")
    # recovery (stop, dump, start) may finish before any read of state: the dump is the proof
    dump = m4.wait_coredump(5)
    assert m4.wait_state("running", 5) == "running"
    assert dump.owner == "remoteproc0"
    progress: list[int] = []
    size = dump.save(tmp_path / "m4.core", lambda done, total: progress.append(done))
    core = (tmp_path / "m4.core").read_bytes()
    assert size == len(core) == 52 + 32 + 0x100 and core[:4] == b"\x7fELF"
    assert core[-0x100:] == b"\xaa" * 0x100  # the image's first segment, from device memory
    assert progress[-1] == size
    assert wait_until(lambda: m4.coredumps() == [], 3)  # released
    m4.stop()


def test_recovery_disabled_keeps_it_crashed(abi: Abi) -> None:
    m4 = AbiRoot(abi.root).processor("m4")
    m4.start()
    m4.wait_state("running", 5)
    m4.set_recovery("disabled")
    assert m4.recovery == "disabled"
    m4.crash("mmufault")
    assert m4.wait_state("crashed", 5) == "crashed"
    with pytest.raises(RprocError) as e:
        m4.set_coredump_mode("enabled")
    assert e.value.errno == errno.EBUSY and "crashed" in str(e.value)
    m4.recover()
    assert m4.wait_state("running", 5) == "running"
    m4.stop()
