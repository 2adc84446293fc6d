"""The process platform end to end: a host ``Rproc`` attached to the Python echo remote running
as another process, over a real file in /dev/shm and a real Unix socket.

Every test uses its own shm name and socket path, so tests may run in parallel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_until

from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import Feature, State
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import ResourceTable, Vdev
from remoteproc.platforms.process import (
    DEFAULT_LAYOUT,
    DEFAULT_SHM_NAME,
    DEFAULT_SOCKET_PATH,
    NATIVE_BYTEORDER,
    ProcessPlatform,
    echo_command,
    loaded_table_size,
    shm_path,
)
from remoteproc.remotes.echo import ECHO_SERVICE, SHUTDOWN_MSG, build_table
from remoteproc.rpmsg.core import registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus
from remoteproc.virtio.bus import VIRTIO_CONFIG_S_DRIVER_OK

TIMEOUT = 20.0


# -- helpers (imported by the other test_process_platform_* modules) ---------------------------


def unique_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:12]
    # Socket paths must stay under 108 bytes, so they do not go into pytest's tmp_path.
    return f"rproc-test-{tag}.shm", f"/tmp/rproc-test-{tag}.sock"


def cleanup_names(shm: str, sock: str) -> None:
    for path in (shm_path(shm), sock):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def wait_for(cond: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> None:
    wait_until(cond, timeout, what)


def bus_of(rproc: Rproc) -> RpmsgBus | None:
    return next((b for b in registry.buses() if b.rproc is rproc and not b.removed), None)


def channel_of(rproc: Rproc, name: str = ECHO_SERVICE) -> Channel | None:
    bus = bus_of(rproc)
    if bus is None:
        return None
    return bus.find_channel(name)


def wait_channel(rproc: Rproc, name: str = ECHO_SERVICE, timeout: float = TIMEOUT) -> Channel:
    found: list[Channel] = []

    def look() -> bool:
        ch = channel_of(rproc, name)
        if ch is not None:
            found.append(ch)
        return ch is not None

    wait_for(look, timeout, f"channel {name}")
    return found[0]


def spawn_echo(shm: str, sock: str, *extra: str) -> subprocess.Popen[bytes]:
    """A remote we do not ask the platform to own: it must be running before the host attaches."""
    proc = subprocess.Popen(echo_command(shm, sock, "-v", *extra), stdin=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, what="remote socket")
    assert proc.poll() is None, "echo remote died at start"
    return proc


def stop_proc(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class Pair:
    """A host processor attached to one echo remote process."""

    def __init__(
        self,
        *,
        launch: bool = True,
        features: tuple[Feature, ...] = (),
        remote_args: tuple[str, ...] = (),
    ) -> None:
        self.shm, self.sock = unique_names()
        self.remote: subprocess.Popen[bytes] | None = None
        command = echo_command(self.shm, self.sock, *remote_args) if launch else None
        if not launch:
            self.remote = spawn_echo(self.shm, self.sock)
        self.host = Host()
        self.platform = ProcessPlatform(
            f"proc-{self.shm[11:17]}", shm=self.shm, socket_path=self.sock, command=command
        )
        self.rproc = self.platform.make_rproc(features=features, auto_boot=False)
        self.host.add(self.rproc)

    def attach(self) -> Channel:
        self.rproc.boot()
        return wait_channel(self.rproc)

    def endpoint(self) -> tuple[Endpoint, int]:
        ch = wait_channel(self.rproc)
        bus = ch.bus
        assert isinstance(bus, RpmsgBus)
        return bus.create_ept(None), ch.dst

    @property
    def remote_pid(self) -> int:
        proc = self.platform.process or self.remote
        assert proc is not None
        return proc.pid

    def close(self) -> None:
        try:
            self.rproc.close()
            self.host.close()
        finally:
            self.platform.close()
            if self.remote is not None:
                stop_proc(self.remote)
            cleanup_names(self.shm, self.sock)

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    with Pair() as p:
        p.attach()
        yield p


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + n + seed) & 0xFF for i in range(n))


# -- layout and wire facts ----------------------------------------------------------------------


def test_defaults_are_openamps() -> None:
    assert DEFAULT_SHM_NAME == "openamp.shm"
    assert DEFAULT_SOCKET_PATH == "/tmp/openamp.event.0"
    assert shm_path(DEFAULT_SHM_NAME) == "/dev/shm/openamp.shm"
    lay = DEFAULT_LAYOUT
    assert (lay.shm_size, lay.rsc_offset) == (0x80000, 0)
    assert lay.vring_da == (0x4000, 0x8000)
    assert (lay.vring_num, lay.vring_align, lay.vring_notifyid) == (256, 0x1000, (1, 2))
    assert (lay.buf_pa, lay.buf_size) == (0x10000, 0x40000)
    # 512 buffers of 512 bytes fill the pool exactly; both rings fit below it.
    assert lay.buf_size == 512 * 512
    assert lay.vring_da[1] + lay.vring_region <= lay.buf_pa


def test_remote_writes_the_table_before_listening() -> None:
    shm, sock = unique_names()
    proc = spawn_echo(shm, sock)
    try:
        data = Path(shm_path(shm)).read_bytes()
        assert len(data) == 0x80000
        expected = build_table()
        assert data[: len(expected)] == expected
        table = ResourceTable(data[: len(expected)], NATIVE_BYTEORDER)
        assert (table.ver, table.num) == (1, 1)
        (entry,) = list(table.entries())
        vdev = Vdev.from_entry(entry)
        assert (vdev.id, vdev.dfeatures, vdev.status, vdev.num_of_vrings) == (7, 1, 0, 2)
        rings = [(r.da, r.align, r.num, r.notifyid) for r in vdev.vrings]
        assert rings == [(0x4000, 0x1000, 256, 1), (0x8000, 0x1000, 256, 2)]
        assert loaded_table_size(memoryview(data)) == len(expected)
    finally:
        stop_proc(proc)
        cleanup_names(shm, sock)


def test_table_size_rules() -> None:
    table = bytearray(build_table()) + bytes(64)
    n = loaded_table_size(memoryview(table))
    assert n == len(build_table())
    with pytest.raises(RprocError) as exc:
        loaded_table_size(memoryview(bytes(64)))
    assert exc.value.errno == errno.EINVAL
    short = memoryview(bytes(build_table())[:40])
    with pytest.raises(RprocError):
        loaded_table_size(short)


# -- attach, echo, memory -------------------------------------------------------------------------


def test_attach_to_running_remote_and_echo_every_size() -> None:
    with Pair(launch=False) as p:
        assert p.rproc.state is State.DETACHED
        p.attach()
        assert p.rproc.state is State.ATTACHED
        ept, dst = p.endpoint()
        for n in range(497):
            data = payload(n)
            ept.sendto(data, dst)
            got, src = ept.recvfrom(TIMEOUT)
            assert got == data, f"size {n}"
            assert src == dst
        with pytest.raises(RprocError) as exc:
            ept.sendto(bytes(497), dst)
        assert exc.value.errno == errno.EMSGSIZE


def test_shared_memory_is_the_layout(pair: Pair) -> None:
    rproc = pair.rproc
    mems = {m.name: (m.da, m.dma, m.len) for m in rproc.carveouts}
    assert mems["vdev0vring0"][:2] == (0x4000, 0x4000)
    assert mems["vdev0vring1"][:2] == (0x8000, 0x8000)
    assert mems["vdev0buffer"] == (0x10000, 0x10000, 0x40000)
    data = Path(shm_path(pair.shm)).read_bytes()
    table = ResourceTable(data[: len(build_table())], NATIVE_BYTEORDER)
    vdev = Vdev.from_entry(next(table.entries()))
    assert vdev.status & VIRTIO_CONFIG_S_DRIVER_OK
    assert vdev.gfeatures == 1
    assert [r.da for r in vdev.vrings] == [0x4000, 0x8000]
    # Every receive buffer the host posted is in the pool, as a file offset.
    for i in range(256):
        addr, length, _flags, _next = struct.unpack_from(
            NATIVE_BYTEORDER + "QIHH", data, 0x4000 + 16 * i
        )
        assert 0x10000 <= addr < 0x10000 + 0x20000 and length == 512


def test_two_pairs_at_once() -> None:
    with Pair() as a, Pair() as b:
        a.attach()
        b.attach()
        ea, da = a.endpoint()
        eb, db = b.endpoint()
        for i in range(50):
            ea.sendto(b"a%d" % i, da)
            eb.sendto(b"b%d" % i, db)
        assert [ea.recv(TIMEOUT) for _ in range(50)] == [b"a%d" % i for i in range(50)]
        assert [eb.recv(TIMEOUT) for _ in range(50)] == [b"b%d" % i for i in range(50)]


# -- name service ------------------------------------------------------------------------------


def test_name_service_create_and_destroy(pair: Pair) -> None:
    ch = wait_channel(pair.rproc)
    assert ch.dst == 1024 and ch.name == ECHO_SERVICE
    pair.rproc.recovery_disabled = True
    ept, dst = pair.endpoint()
    ept.sendto(b"before", dst)
    assert ept.recv(TIMEOUT) == b"before"
    proc = pair.platform.process
    assert proc is not None
    # The shutdown message: the remote destroys its endpoint (NS DESTROY) and exits cleanly.
    ept.sendto(struct.pack("=I", SHUTDOWN_MSG), dst)
    wait_for(lambda: channel_of(pair.rproc) is None, what="channel destroyed")
    assert proc.wait(TIMEOUT) == 0
    # The remote is gone: the host sees EOF and reports a crash (recovery disabled here).
    wait_for(lambda: pair.rproc.state is State.CRASHED, what="crash reported")
    assert pair.platform.peer_deaths == 1
    pair.rproc.shutdown()
    assert pair.rproc.state is State.OFFLINE


# -- flow control --------------------------------------------------------------------------------


def test_sender_blocks_without_buffers_and_wakes_when_remote_returns_them(pair: Pair) -> None:
    ept, dst = pair.endpoint()
    ept.sendto(b"warm", dst)
    assert ept.recv(TIMEOUT) == b"warm"
    pid = pair.remote_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # 256 TX buffers; the one that came back from "warm" is among them.
        sent = 0
        while True:
            try:
                ept.trysendto(b"%d" % sent, dst)
            except RprocError as exc:
                assert exc.errno == errno.ENOMEM
                break
            sent += 1
            assert sent <= 256
        assert sent == 256
        done = threading.Event()
        errors: list[BaseException] = []

        def blocked_send() -> None:
            try:
                ept.sendto(b"%d" % sent, dst, timeout=TIMEOUT)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            done.set()

        t = threading.Thread(target=blocked_send)
        t.start()
        assert not done.wait(0.3), "sender did not block"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.wait(TIMEOUT), "sender not woken"
    t.join()
    assert not errors
    got = [ept.recv(TIMEOUT) for _ in range(sent + 1)]
    assert got == [b"%d" % i for i in range(sent + 1)]


def test_send_times_out_with_erestartsys_when_remote_never_returns_buffers(pair: Pair) -> None:
    ept, dst = pair.endpoint()
    pid = pair.remote_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(256):
            ept.trysendto(b"%d" % i, dst)
        with pytest.raises(RprocError) as exc:
            ept.sendto(b"late", dst, timeout=0.2)
        assert exc.value.errno == 512  # ERESTARTSYS, as the kernel's 15 s timeout
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [ept.recv(TIMEOUT) for _ in range(256)] == [b"%d" % i for i in range(256)]


# -- lifecycle -----------------------------------------------------------------------------------


def test_detach_leaves_remote_running_and_reattach_recreates_channel() -> None:
    with Pair(launch=False) as p:
        p.attach()
        ept, dst = p.endpoint()
        ept.sendto(b"one", dst)
        assert ept.recv(TIMEOUT) == b"one"
        p.rproc.detach()
        assert p.rproc.state is State.DETACHED
        assert channel_of(p.rproc) is None
        with pytest.raises(RprocError) as exc:
            ept.recv(0)
        assert exc.value.errno == errno.EPIPE
        assert p.remote is not None and p.remote.poll() is None
        # The remote went back to a pristine table and waits for the next host.
        expected = build_table()
        wait_for(
            lambda: Path(shm_path(p.shm)).read_bytes()[: len(expected)] == expected,
            what="pristine table",
        )
        p.rproc.boot()
        assert p.rproc.state is State.ATTACHED
        ept2, dst2 = p.endpoint()
        ept2.sendto(b"two", dst2)
        assert ept2.recv(TIMEOUT) == b"two"
        assert p.platform.connects == 2


def test_stop_terminates_the_remote_we_launched(pair: Pair) -> None:
    proc = pair.platform.process
    assert proc is not None
    pair.rproc.shutdown()
    assert pair.rproc.state is State.OFFLINE
    assert proc.poll() is not None
    assert bus_of(pair.rproc) is None
    assert pair.platform.peer_deaths == 0  # our own disconnect is not a crash


def test_crash_and_recovery_relaunch_and_recreate_channels(pair: Pair) -> None:
    ept, dst = pair.endpoint()
    ept.sendto(b"alive", dst)
    assert ept.recv(TIMEOUT) == b"alive"
    old = pair.platform.process
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    with pytest.raises(RprocError) as exc:
        ept.recv(TIMEOUT)
    assert exc.value.errno == errno.EPIPE
    wait_for(
        lambda: (
            pair.rproc.crash_cnt == 1
            and pair.rproc.state is State.RUNNING
            and channel_of(pair.rproc) is not None
        ),
        what="recovery",
    )
    new = pair.platform.process
    assert new is not None and new.pid != old.pid
    ept2, dst2 = pair.endpoint()
    for n in (0, 1, 496):
        ept2.sendto(payload(n), dst2)
        assert ept2.recv(TIMEOUT) == payload(n)
    assert pair.platform.peer_deaths == 1


def test_attach_on_recovery_waits_for_a_restarted_remote() -> None:
    with Pair(launch=False, features=(Feature.ATTACH_ON_RECOVERY,)) as p:
        p.attach()
        assert p.remote is not None
        p.remote.kill()
        p.remote.wait()
        # Someone else (a supervisor) brings the remote back after the host saw it die.
        wait_for(lambda: p.platform.peer_deaths == 1, what="the remote's death seen")
        p.remote = spawn_echo(p.shm, p.sock)
        wait_for(
            lambda: (
                p.rproc.crash_cnt == 1
                and p.rproc.state is State.ATTACHED
                and channel_of(p.rproc) is not None
            ),
            what="attach recovery",
        )
        ept, dst = p.endpoint()
        ept.sendto(b"back", dst)
        assert ept.recv(TIMEOUT) == b"back"


def test_second_host_is_refused_while_one_is_attached(pair: Pair) -> None:
    host = Host()
    intruder = ProcessPlatform("intruder", shm=pair.shm, socket_path=pair.sock, connect_timeout=0.3)
    try:
        rproc = intruder.make_rproc(auto_boot=False)
        host.add(rproc)
        with pytest.raises(RprocError) as exc:
            rproc.boot()
        assert exc.value.errno == errno.ETIMEDOUT
        rproc.close()
    finally:
        host.close()
        intruder.close()
    # The first host never noticed.
    ept, dst = pair.endpoint()
    ept.sendto(b"still mine", dst)
    assert ept.recv(TIMEOUT) == b"still mine"


def test_attach_fails_cleanly_without_a_remote() -> None:
    shm, sock = unique_names()
    host = Host()
    platform = ProcessPlatform("none", shm=shm, socket_path=sock, connect_timeout=0.2)
    try:
        rproc = platform.make_rproc(auto_boot=False)
        host.add(rproc)
        with pytest.raises(RprocError) as exc:
            rproc.boot()
        assert exc.value.errno == errno.ETIMEDOUT
        assert rproc.state is State.DETACHED and rproc.power == 0
        rproc.close()
    finally:
        host.close()
        platform.close()
        cleanup_names(shm, sock)


# -- the remote on its own ---------------------------------------------------------------------


def test_remote_cli_help_names_its_defaults() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "remoteproc.remotes.echo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "openamp.shm" in out and "/tmp/openamp.event.0" in out


def test_remote_exits_on_sigterm_and_removes_its_socket() -> None:
    shm, sock = unique_names()
    proc = spawn_echo(shm, sock)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert not os.path.exists(sock)
    finally:
        stop_proc(proc)
        cleanup_names(shm, sock)


# -- pieces on their own ---------------------------------------------------------------------


def test_table_size_counts_every_known_entry_and_stops_at_unknown_ones() -> None:
    from remoteproc.firmware.rsc_table import TableBuilder

    tb = TableBuilder(NATIVE_BYTEORDER)
    tb.add_carveout(0x1000, 0x1000, 0x1000, name="text")
    tb.add_trace(0x2000, 0x100, name="trace0")
    tb.add_vdev(7, 0, 1, config=b"\x01\x02\x03", vrings=[(0x4000, 0x1000, 16, 0, 0)])
    table = bytes(tb.build())
    region = memoryview(bytearray(table) + bytes(100))
    assert loaded_table_size(region) == len(table)
    tb.add_vendor(200, b"\0" * 8)
    with_vendor = bytes(tb.build())
    region = memoryview(bytearray(with_vendor) + bytes(100))
    # A vendor entry's size is not in the header: the table may use the whole region.
    assert loaded_table_size(region) == len(region)


def test_host_refuses_a_missing_or_short_shm_file(tmp_path: Path) -> None:
    from remoteproc.platforms.process import ShmFile

    with pytest.raises(RprocError) as exc:
        ShmFile(str(tmp_path / "absent.shm"), 0x1000, create=False)
    assert exc.value.errno == errno.ENOENT
    short = tmp_path / "short.shm"
    short.write_bytes(bytes(0x800))
    with pytest.raises(RprocError) as exc:
        ShmFile(str(short), 0x1000, create=False)
    assert exc.value.errno == errno.EINVAL
    with ShmFile(str(short), 0x1000, create=True) as shm:  # the remote's side grows it
        assert len(shm.view) == 0x1000
    assert short.stat().st_size == 0x1000


def test_device_addresses_are_file_offsets(pair: Pair) -> None:
    rproc = pair.rproc
    view = rproc.da_to_va(0, 16)
    assert view is not None and bytes(view) == bytes(build_table()[:16])
    assert rproc.da_to_va(0x80000 - 4, 4) is not None
    assert rproc.da_to_va(0x80000 - 4, 8) is None
    assert rproc.da_to_va(0x80000, 1) is None


def test_kick_socket_holds_kicks_during_a_pass() -> None:
    import socket as socket_mod

    from remoteproc.platforms.process import KickSocket

    a, b = socket_mod.socketpair()
    try:
        link = KickSocket(a, batch=8)
        link.kick()
        assert b.recv(16) == b"\x01"  # outside a pass: at once
        link.begin()
        for _ in range(3):
            link.kick()
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(16)
        link.end()  # the three leave as one byte
        assert b.recv(16) == b"\x01"
        link.begin()
        for _ in range(8):
            link.kick()  # the eighth goes out without waiting for the end of the pass
        assert b.recv(16) == b"\x01"
        link.end()
        with pytest.raises(BlockingIOError):
            b.recv(16)
        assert link.kicks_sent == 3
        b.close()
        assert not link.wait()  # EOF
    finally:
        a.close()


def test_recv_kicks_polls_then_sleeps() -> None:
    import socket as socket_mod

    from remoteproc.platforms.process import recv_kicks

    a, b = socket_mod.socketpair()
    try:
        b.send(b"\x01\x01")
        assert recv_kicks(a, spin=0.001) == b"\x01\x01"  # found while polling
        threading.Timer(0.05, lambda: b.send(b"\x01")).start()
        t0 = time.monotonic()
        assert recv_kicks(a, spin=0.001) == b"\x01"  # polled 1 ms, then slept until it came
        assert time.monotonic() - t0 >= 0.04
        b.close()
        assert recv_kicks(a, spin=0.001) == b""
    finally:
        a.close()
