"""The client library against a real ``rprocd`` on the emulated default machine (m4: rpmsg echo,
auto-booted; rv: hello, offline; m4-early: detachable, preloaded): real firmware, real faults,
real coredumps, through the same files a board has.

Each test gets its own freshly started machine (about a second), so no test depends on what
another left behind and the states are asserted exactly."""

from __future__ import annotations

import asyncio
import errno
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import holds_for, wait_until

from remoteproc.client.launch import Rprocd, start_rprocd
from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import RpmsgCtrl, channel_device, channels
from remoteproc.client.watch import StateWatcher
from remoteproc.errors import RprocError


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rprocd]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "fw").mkdir()
    d = start_rprocd(tmp_path / "root", firmware_dir=str(tmp_path / "fw"))
    try:
        root = d.root
        # auto-boot and attach run on the host's workers: wait until the machine settles
        assert root.processor("m4").wait_state("running", 20) == "running"
        assert root.processor("m4-early").wait_state("attached", 20) == "attached"
        yield d
    finally:
        d.stop()


@pytest.fixture
def root(daemon: Rprocd) -> AbiRoot:
    return daemon.root


def echo_ready(root: AbiRoot, name: str, timeout: float = 10) -> None:
    p = root.processor(name)

    def ready() -> bool:
        try:
            channel_device(p)
        except RprocError:
            return False
        return True

    wait_until(ready, timeout, f"{name}'s echo channel")


def test_status_of_the_default_machine(root: AbiRoot) -> None:
    assert root.state_change_notifies()
    by_name = {p.name: p.status() for p in root.processors()}
    assert by_name["m4"]["firmware"] == "rpmsg-echo-m4.elf"
    assert by_name["m4"]["state"] == "running" and by_name["m4"]["traces"] == [0]
    assert by_name["rv"]["state"] == "offline"
    assert by_name["m4-early"]["firmware"] == "unknown"  # attached: the kernel shows unknown
    m4 = root.processor("m4")
    assert "Entry 0 is of type vdev" in m4.resource_table()
    assert "vdev0vring0" in m4.carveout_memories()
    assert {c.name for c in channels(root, m4)} >= {"rpmsg-raw", "rpmsg-tty", "rpmsg_ctrl"}


def test_rpmsg_echo_each_way(root: AbiRoot) -> None:
    m4 = root.processor("m4")
    echo_ready(root, "m4")
    with channel_device(m4).open() as ept:
        ept.send(b"ping")
        assert ept.recv(5) == b"ping"
    demo = next(c for c in channels(root, m4) if c.name == "rpmsg-openamp-demo-channel")
    with RpmsgCtrl.for_processor(m4) as ctrl, ctrl.create_endpoint("t", dst=demo.dst) as ept:
        async def talk() -> bytes:
            await ept.asend(b"async ping")
            return await asyncio.wait_for(ept.arecv(), 5)

        assert asyncio.run(talk()) == b"async ping"
        # the firmware's bench command answers with the emulated loop's timing
        ept.send(b"bench 1000")
        assert ept.recv(5).startswith(b"bench 1000 result 0x")


def test_session_owns_the_processor(root: AbiRoot) -> None:
    rv = root.processor("rv")
    assert rv.state == "offline"
    code = textwrap.dedent(f"""
        import time
        from remoteproc.client.root import AbiRoot
        s = AbiRoot({str(root.root)!r}).processor("rv").session()
        s.start()
        print("started", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        assert rv.wait_state("running", 10) == "running"
        wait_until(lambda: "hello from riscv32 core 1" in rv.trace(0), what="rv's hello")
        child.send_signal(signal.SIGKILL)
        assert rv.wait_state("offline", 10) == "offline"
    finally:
        child.kill()
        child.wait()
    with rv.session() as s:
        s.shutdown_on_release = False  # hand it back to sysfs control
        s.start()
    assert rv.wait_state("running", 5) == "running"
    rv.stop()


def test_inline_coredump_holds_recovery_until_read(root: AbiRoot, tmp_path: Path) -> None:
    m4 = root.processor("m4")
    m4.set_coredump_mode("inline")
    assert m4.coredumps() == []
    last = -1
    try:
        with StateWatcher([m4]) as w:
            m4.crash("mmufault")
            dump = m4.wait_coredump(10, after=last)
            # recovery waits for the reader: the processor stays down meanwhile (stopped
            # before the dump was taken, the kernel's order). A bounded observation: "stays
            # down" is watched for 0.3 s.
            holds_for(lambda: m4.state == "offline", 0.3, "m4 down while the dump is unread")
            w.changes(0.1)
            assert w.states()["remoteproc0"] == "offline"
            size = dump.save(tmp_path / "inline.core")
        assert size > 64 * 1024 and (tmp_path / "inline.core").read_bytes()[:4] == b"\x7fELF"
        assert m4.wait_state("running", 10) == "running"
    finally:
        m4.set_coredump_mode("disabled")
    echo_ready(root, "m4")


def test_recovery_disabled_then_recover(root: AbiRoot) -> None:
    m4 = root.processor("m4")
    m4.set_recovery("disabled")
    try:
        m4.crash("fatal")
        assert m4.wait_state("crashed", 10) == "crashed"
        # nothing recovers it behind the user's back (a bounded observation of 0.3 s)
        holds_for(lambda: m4.state == "crashed", 0.3, "m4 crashed, recovery disabled")
        with pytest.raises(RprocError) as e:
            m4.set_coredump_mode("enabled")
        assert e.value.errno == errno.EBUSY
        m4.recover()
        assert m4.wait_state("running", 10) == "running"
    finally:
        m4.set_recovery("enabled")
    echo_ready(root, "m4")


def test_detach_and_reattach_the_preloaded_core(root: AbiRoot) -> None:
    early = root.processor("m4-early")
    assert early.state == "attached"
    early.detach()
    assert early.wait_state("detached", 10) == "detached"
    with pytest.raises(RprocError) as e:
        early.detach()
    assert "only an attached processor" in str(e.value)
    early.start()
    assert early.wait_state("attached", 10) == "attached"
    echo_ready(root, "m4-early")
    with channel_device(early).open() as ept:
        ept.send(b"still there")
        assert ept.recv(5) == b"still there"
    assert "detached, still running" in early.trace(0)


def test_trace_follow_sees_the_firmware_write(root: AbiRoot) -> None:
    rv = root.processor("rv")
    assert rv.state == "offline"
    rv.start()
    assert rv.wait_state("running", 10) == "running"
    proc = subprocess.Popen([sys.executable, "-m", "remoteproc.cli", "trace", "rv", "--follow",
                             "--interval", "0.05", "--root", str(root.root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ticks = []
        deadline = time.monotonic() + 20
        while len(ticks) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("tick "):
                ticks.append(int(line.split()[1]))
        # new lines arrive as the firmware writes them, each once, in order
        assert len(ticks) == 3 and ticks == sorted(set(ticks)), ticks
    finally:
        proc.terminate()
        proc.wait(10)
        rv.stop()
