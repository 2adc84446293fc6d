"""The host rpmsg bus against the Python remote, in one process (tests/rpmsg_pair.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import holds_for, wait_until
from rpmsg_pair import RpmsgPair

from remoteproc.errors import ERESTARTSYS, RprocError
from remoteproc.rpmsg import (
    RPMSG_ADDR_ANY,
    Channel,
    Endpoint,
    RpmsgDriver,
    RpmsgListener,
    register_rpmsg_driver,
    registry,
    unregister_rpmsg_driver,
)
from remoteproc.rpmsg.remote import RemoteEndpoint, RpmsgRemote, echo
from remoteproc.rpmsg.wire import VIRTIO_RPMSG_F_NS
from remoteproc.virtio.bus import VIRTIO_RING_F_EVENT_IDX
from remoteproc.virtio.vring import VRING_DESC_F_WRITE


class Recorder(RpmsgListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_bus_added(self, bus: object) -> None:
        self.events.append(("bus+", getattr(bus, "name", "")))

    def on_bus_removed(self, bus: object) -> None:
        self.events.append(("bus-", getattr(bus, "name", "")))

    def on_channel_added(self, channel: Channel) -> None:
        self.events.append(("ch+", channel.device_name))

    def on_channel_removed(self, channel: Channel) -> None:
        self.events.append(("ch-", channel.device_name))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    unsubscribe = registry.subscribe(rec)
    yield rec
    unsubscribe()


def _echo_pair(**kw: object) -> RpmsgPair:
    return RpmsgPair(remote_setup=lambda r: r.create_ept("rpmsg-echo", echo), **kw)  # type: ignore[arg-type]


def _host_ept(pair: RpmsgPair, name: str = "rpmsg-echo") -> Endpoint:
    assert pair.bus is not None
    return pair.bus.create_ept(None, dst=pair.channel(name).dst)


# ---- probe ------------------------------------------------------------------------------------


def test_probe_follows_the_kernel_order() -> None:
    with RpmsgPair() as pair:
        bus = pair.bus
        assert bus is not None
        # ACKNOWLEDGE, DRIVER, then DRIVER_OK once everything is in place
        assert pair.vdev.status_log == [1, 3, 7]
        assert pair.entry.gfeatures == 1 << VIRTIO_RPMSG_F_NS
        assert bus.num_bufs == 512
        # every RX buffer posted, device-writable, 512 bytes, in address order
        ring = pair.ring(0)
        pool = pair.ring_pas[1] + len(pair.ring(1)) + (-len(pair.ring(1)) % 4096)
        for i in range(256):
            addr, length, flags, _ = struct.unpack_from("<QIHH", ring, 16 * i)
            assert (addr, length, flags) == (pool + 512 * i, 512, VRING_DESC_F_WRITE)
        lay = pair.layout()
        assert struct.unpack_from("<H", ring, lay.avail_idx)[0] == 256
        assert bus.rvq.kicks == 1  # one kick telling the remote RX buffers are there
        assert struct.unpack_from("<H", pair.ring(1), lay.avail_idx)[0] == 0
        # the vring addresses were written back into the table for the remote (§5.2)
        assert [pair.entry.vring(i).da for i in (0, 1)] == pair.ring_pas
        names = [c.device_name for c in bus.channels()]
        assert names == [f"{bus.name}.rpmsg_ctrl.0.0", f"{bus.name}.rpmsg_ns.53.53"]
        ns = bus.get_ept(53)
        assert ns is not None and ns.channel is bus.ns_channel
        assert pair.remote.attached.is_set()
        assert registry.find_bus(bus.name) is bus


@pytest.mark.parametrize(("num", "bufs"), [(4, 8), (16, 32), (128, 256), (256, 512), (512, 512)])
def test_num_bufs_rule(num: int, bufs: int) -> None:
    with RpmsgPair(num=num, align=16) as pair:
        assert pair.bus is not None
        assert pair.bus.num_bufs == bufs
        assert pair.bus.rvq.num_free == num - bufs // 2


def test_without_ns_feature_no_name_service() -> None:
    with RpmsgPair(dfeatures=0, remote_setup=lambda r: r.create_ept("svc", echo)) as pair:
        bus = pair.bus
        assert bus is not None and not bus.ns_enabled
        assert bus.get_ept(53) is None
        assert [c.name for c in bus.channels()] == ["rpmsg_ctrl"]
        # a fixed-address conversation still works
        remote = pair.remote.endpoints()[0]
        host = bus.create_ept(None, dst=remote.addr)
        host.send(b"hi")
        assert host.recv(0) == b"hi"


# ---- data path --------------------------------------------------------------------------------


@pytest.mark.parametrize("bo", ["<", ">"])
def test_echo_every_payload_size(bo: str) -> None:
    with _echo_pair(byteorder=bo) as pair:
        host = _host_ept(pair)
        for n in range(0, 497):
            data = bytes((i * 31 + n) & 0xFF for i in range(n))
            host.send(data)
            got, src = host.recvfrom(0)
            assert got == data, n
            assert src == host.dst
        assert pair.shm.guards_intact()


def test_echo_with_event_idx_and_threads() -> None:
    feats = (1 << VIRTIO_RPMSG_F_NS) | (1 << VIRTIO_RING_F_EVENT_IDX)
    with _echo_pair(dfeatures=feats, mode="thread") as pair:
        assert pair.bus is not None and pair.bus.rvq.use_event_idx
        host = _host_ept(pair)
        for n in (0, 1, 100, 496):
            for k in range(50):
                host.send(bytes([k]) * n)
        for n in (0, 1, 100, 496):
            for k in range(50):
                assert host.recv(5) == bytes([k]) * n


def test_callback_endpoint_and_remote_learns_dst() -> None:
    got: list[tuple[bytes, int]] = []
    with RpmsgPair() as pair:
        assert pair.bus is not None
        remote_rx: list[bytes] = []
        rept = pair.remote.create_ept("", lambda e, d, s: remote_rx.append(d))
        assert rept.dst == RPMSG_ADDR_ANY
        host = pair.bus.create_ept(lambda e, d, s: got.append((d, s)), "cb", dst=rept.addr)
        host.send(b"first")
        assert remote_rx == [b"first"]
        assert rept.dst == host.addr  # taken from the first message, as OpenAMP does
        rept.send(b"reply")
        assert got == [(b"reply", rept.addr)]
        with pytest.raises(RprocError) as ei:
            host.recv(0)
        assert ei.value.errno == errno.EINVAL


def test_send_errors() -> None:
    with _echo_pair() as pair:
        assert pair.bus is not None
        host = _host_ept(pair)
        with pytest.raises(RprocError) as ei:
            host.send(b"x" * 497)
        assert ei.value.errno == errno.EMSGSIZE
        host.send(b"x" * 496)  # exactly the MTU is fine
        assert host.recv(0) == b"x" * 496
        nodst = pair.bus.create_ept(None)
        with pytest.raises(RprocError) as ei:
            nodst.send(b"x")
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(RprocError) as ei:
            host.sendto(b"x", RPMSG_ADDR_ANY)
        assert ei.value.errno == errno.EINVAL
        assert host.mtu == pair.bus.mtu == 496


def test_recv_timeouts() -> None:
    with _echo_pair() as pair:
        host = _host_ept(pair)
        with pytest.raises(RprocError) as ei:
            host.recv(0)
        assert ei.value.errno == errno.EAGAIN
        t0 = time.monotonic()
        with pytest.raises(RprocError) as ei:
            host.recv(0.05)
        assert ei.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - t0 >= 0.05


def test_addresses() -> None:
    with RpmsgPair() as pair:
        bus = pair.bus
        assert bus is not None
        a = bus.create_ept(None)
        b = bus.create_ept(None)
        assert (a.addr, b.addr) == (1024, 1025)
        a.destroy()
        assert bus.create_ept(None).addr == 1024  # lowest free again
        fixed = bus.create_ept(None, src=77)
        assert fixed.addr == 77
        with pytest.raises(RprocError) as ei:
            bus.create_ept(None, src=77)
        assert ei.value.errno == errno.EADDRINUSE
        with pytest.raises(RprocError):
            bus.create_ept(None, src=53)  # the name service has it


def _race_the_count_in(pair: RpmsgPair) -> list[bool]:
    """Make the remote catch up at the worst moment for a sender: right after the sender's
    look at the TX ring found no buffer and before it counts itself in as a waiter. The remote
    then takes every message, returns every buffer and its TX-done interrupt runs, which
    wakes nobody (no waiter yet). Returns a list that holds True once that happened."""
    bus = pair.bus
    assert bus is not None
    look = bus._get_a_tx_buf
    raced: list[bool] = []

    def racing_look() -> int | None:
        idx = look()
        if idx is None and not raced:
            raced.append(True)
            pair.resume_remote()  # delivered on this thread (sync mode): the interrupt too
        return idx

    bus._get_a_tx_buf = racing_look  # type: ignore[method-assign]
    return raced


@pytest.mark.parametrize("burst", [False, True], ids=["send", "send_many"])
def test_buffers_returned_before_the_sender_waits_are_found(burst: bool) -> None:
    """The lost wake-up behind the emulated flood's 15 s stall: a sender that found no TX
    buffer must look at the ring again after counting itself in as a waiter, not sleep until
    its timeout because the remote's TX-done interrupt came before it counted in."""
    with _echo_pair() as pair:
        bus = pair.bus
        assert bus is not None
        host = _host_ept(pair)
        pair.pause_remote()
        for i in range(256):
            host.trysend(i.to_bytes(2, "little"))
        raced = _race_the_count_in(pair)
        t0 = time.monotonic()
        if burst:
            assert host.send_many([b"late", b"later"], timeout=3) == 2
        else:
            host.send(b"late", timeout=3)
        took = time.monotonic() - t0
        assert raced == [True]
        assert took < 1.5, f"the sender slept {took:.1f} s on a buffer already returned"
        for i in range(256):
            assert host.recv(2) == i.to_bytes(2, "little")
        assert host.recv(2) == b"late"
        if burst:
            assert host.recv(2) == b"later"


def test_trysend_enomem_and_send_timeout() -> None:
    with _echo_pair() as pair:
        bus = pair.bus
        assert bus is not None
        assert bus.tx_timeout == 15.0
        host = _host_ept(pair)
        pair.pause_remote()
        assert host.poll_out()
        for i in range(256):
            host.trysend(i.to_bytes(2, "little"))
        assert not host.poll_out()
        with pytest.raises(RprocError) as ei:
            host.trysend(b"one too many")
        assert ei.value.errno == errno.ENOMEM
        t0 = time.monotonic()
        with pytest.raises(RprocError) as ei:
            host.send(b"late", timeout=0.1)
        assert ei.value.errno == ERESTARTSYS
        assert ei.value.message == "timeout waiting for a tx buffer"
        assert time.monotonic() - t0 >= 0.1
        pair.resume_remote()
        assert host.poll_out()
        for i in range(256):
            assert host.recv(0) == i.to_bytes(2, "little")


@pytest.mark.parametrize("mode", ["sync", "thread"])
def test_blocked_sender_wakes_when_remote_returns_buffers(mode: str) -> None:
    with _echo_pair(mode=mode) as pair:
        host = _host_ept(pair)
        pair.pause_remote()
        for i in range(256):
            host.trysend(i.to_bytes(2, "little"))
        done = threading.Event()
        errors: list[BaseException] = []

        def sender() -> None:
            try:
                host.send(b"blocked", timeout=10)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            done.set()

        t = threading.Thread(target=sender)
        t0 = time.monotonic()
        t.start()
        assert not done.wait(0.2)  # really blocked
        pair.resume_remote()
        assert done.wait(5)
        assert time.monotonic() - t0 < 5
        t.join()
        assert errors == []
        pair.settle()
        got = [host.recv(5) for _ in range(257)]
        assert got == [i.to_bytes(2, "little") for i in range(256)] + [b"blocked"]


def test_async_receive() -> None:
    with _echo_pair() as pair:
        host = _host_ept(pair)
        remote = pair.remote.endpoints()[0]

        async def main() -> list[bytes]:
            host.send(b"queued")  # echoed synchronously: already queued
            first = await host.arecv()
            timer = threading.Timer(0.05, remote.sendto, (b"later", host.addr))
            timer.start()
            second = await asyncio.wait_for(host.arecv(), 5)
            timer.join()
            return [first, second]

        assert asyncio.run(main()) == [b"queued", b"later"]


def test_async_receive_cancel_and_teardown() -> None:
    with _echo_pair() as pair:
        host = _host_ept(pair)

        async def cancelled() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(host.arecv(), 0.05)

        asyncio.run(cancelled())

        async def torn_down() -> int:
            threading.Timer(0.05, pair.stop).start()
            try:
                await asyncio.wait_for(host.arecv(), 5)
            except RprocError as err:
                return err.errno
            return 0

        assert asyncio.run(torn_down()) == errno.EPIPE


# ---- name service and channels ----------------------------------------------------------------


def test_ns_create_and_destroy(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    with RpmsgPair() as pair:
        bus = pair.bus
        assert bus is not None
        caplog.set_level(logging.INFO, "remoteproc.rpmsg")
        rept = pair.remote.create_ept("rpmsg-client-sample", echo)
        ch = pair.channel("rpmsg-client-sample")
        assert (ch.src, ch.dst, ch.announce) == (RPMSG_ADDR_ANY, rept.addr, False)
        assert ch.device_name == f"{bus.name}.rpmsg-client-sample.-1.{rept.addr}"
        assert ch.modalias == "rpmsg:rpmsg-client-sample"
        assert ("ch+", ch.device_name) in recorder.events
        assert f"creating channel rpmsg-client-sample addr 0x{rept.addr:x}" in caplog.text
        rept.destroy()
        assert bus.find_channel("rpmsg-client-sample") is None
        assert ("ch-", ch.device_name) in recorder.events
        assert not ch.registered
        assert f"destroying channel rpmsg-client-sample addr 0x{rept.addr:x}" in caplog.text


def test_ns_duplicate_and_unknown_destroy(caplog: pytest.LogCaptureFixture) -> None:
    with RpmsgPair() as pair:
        bus = pair.bus
        assert bus is not None
        rept = pair.remote.create_ept("dup", echo)
        caplog.set_level(logging.INFO, "remoteproc.rpmsg")
        # the remote announces the same service again
        pair.remote._announce(rept, 0)
        assert "channel dup:ffffffff:" in caplog.text and "already exist" in caplog.text
        assert len([c for c in bus.channels() if c.name == "dup"]) == 1
        ghost = pair.remote.create_ept("ghost", echo, announce=False)
        ghost.announce = True
        ghost.destroy()  # DESTROY for a channel the host never had
        assert "rpmsg_destroy_channel failed" in caplog.text


def test_rpmsg_driver_binds_channels() -> None:
    received: list[tuple[bytes, int]] = []
    probed: list[Channel] = []
    removed: list[str] = []

    def probe(ch: Channel) -> str:
        probed.append(ch)
        return "drvdata"

    drv = RpmsgDriver(
        "test-sample",
        id_table=("rpmsg-client-sample",),
        probe=probe,
        remove=lambda ch: removed.append(ch.device_name),
        callback=lambda ept, data, src: received.append((data, src)),
    )
    with RpmsgPair() as pair:
        bus = pair.bus
        assert bus is not None
        early = pair.remote.create_ept("rpmsg-client-sample", echo)
        register_rpmsg_driver(drv)  # binds the channel that is already there
        try:
            ch = pair.channel("rpmsg-client-sample")
            assert probed == [ch] and ch.driver is drv and ch.driver_data == "drvdata"
            assert ch.ept is not None and ch.src == ch.ept.addr >= 1024
            ch.send(b"hello")
            assert received == [(b"hello", early.addr)]
            # a channel announced later binds at creation
            late = pair.remote.create_ept("rpmsg-client-sample", echo, addr=2000)
            assert len(probed) == 2 and probed[1].dst == late.addr
        finally:
            unregister_rpmsg_driver(drv)
        assert len(removed) == 2
        assert ch.driver is None and ch.ept is None


def test_local_channel_is_announced_to_the_remote() -> None:
    binds: list[tuple[str, int]] = []
    unbinds: list[tuple[str, int]] = []
    drv = RpmsgDriver("host-svc-drv", id_table=("host-svc",), callback=lambda e, d, s: None)

    def setup(remote: RpmsgRemote) -> None:
        remote.on_ns_bind = lambda name, addr: binds.append((name, addr))
        remote.on_ns_unbind = lambda name, addr: unbinds.append((name, addr))

    register_rpmsg_driver(drv)
    try:
        with RpmsgPair(remote_setup=setup) as pair:
            bus = pair.bus
            assert bus is not None
            ch = bus.create_channel("host-svc", src=0x500)
            assert ch.announce and ch.ept is not None and ch.ept.addr == 0x500
            assert binds == [("host-svc", 0x500)]
            with pytest.raises(RprocError) as ei:
                bus.create_channel("host-svc", src=0x500)
            assert ei.value.errno == errno.EEXIST
            bus.release_channel("host-svc", src=0x500)
            assert unbinds == [("host-svc", 0x500)]
            with pytest.raises(RprocError) as ei:
                bus.release_channel("host-svc", src=0x500)
            assert ei.value.errno == errno.EINVAL
    finally:
        unregister_rpmsg_driver(drv)


def test_flow_control_not_supported() -> None:
    with RpmsgPair() as pair:
        assert pair.bus is not None
        ept = pair.bus.create_ept(None)
        with pytest.raises(RprocError) as ei:
            pair.bus.set_flow_control(ept, True, 1)
        assert ei.value.errno == errno.EOPNOTSUPP


# ---- teardown and recreation ------------------------------------------------------------------


def test_stop_wakes_everyone_and_restart_recreates_channels(recorder: Recorder) -> None:
    with _echo_pair() as pair:
        bus = pair.bus
        assert bus is not None
        name = bus.name
        host = _host_ept(pair)
        sender_ept = _host_ept(pair)
        pair.pause_remote()
        for _ in range(256):
            sender_ept.trysend(b"fill")
        results: dict[str, int] = {}

        def blocked(key: str, fn: object) -> threading.Thread:
            def run() -> None:
                try:
                    fn()  # type: ignore[operator]
                except RprocError as err:
                    results[key] = err.errno

            t = threading.Thread(target=run)
            t.start()
            return t

        threads = [
            blocked("recv", lambda: host.recv()),
            blocked("send", lambda: sender_ept.send(b"x", timeout=10)),
        ]
        wait_until(lambda: bus._tx_waiters == 1, what="the sender waiting for a TX buffer")
        # Both stay blocked (a bounded observation of 0.1 s): the remote stays paused, only
        # the teardown may wake them.
        holds_for(lambda: results == {}, 0.1, "both blocked")
        pair.stop()
        for t in threads:
            t.join(5)
        assert results == {"recv": errno.EPIPE, "send": errno.EPIPE}
        assert not pair.remote.attached.is_set()
        assert registry.find_bus(name) is None
        assert ("ch-", f"{name}.rpmsg-echo.-1.1024") in recorder.events
        assert recorder.events[-1] == ("bus-", name)
        with pytest.raises(RprocError) as ei:
            host.send(b"after")
        assert ei.value.errno == errno.EPIPE
        pair.resume_remote()

        # recovery / re-attach: a new bus, the remote announces again, the channel is back
        recorder.events.clear()
        bus2 = pair.start()
        assert pair.vdev.status_log[-3:] == [1, 3, 7]
        assert recorder.events[0] == ("bus+", name)
        assert ("ch+", f"{name}.rpmsg-echo.-1.1024") in recorder.events
        assert pair.remote.attach_count == 2
        host2 = bus2.create_ept(None, dst=pair.channel("rpmsg-echo").dst)
        host2.send(b"again")
        assert host2.recv(1) == b"again"


def test_remote_waits_for_driver_ok_and_handles_reset() -> None:
    pair = RpmsgPair(start=False, remote_setup=lambda r: r.create_ept("svc", echo))
    try:
        rept: RemoteEndpoint = pair.remote.endpoints()[0]
        pair.remote.on_kick(0)  # a stray kick before the host is up does nothing
        assert not pair.remote.attached.is_set()
        with pytest.raises(RprocError) as ei:
            rept.sendto(b"x", 1024)
        assert ei.value.errno == errno.ENOTCONN
        pair.start()
        assert pair.remote.attached.is_set()
        pair.vdev.reset()  # status -> 0: the remote lets go of the rings at once
        assert not pair.remote.attached.is_set()
        with pytest.raises(RprocError) as ei:
            rept.sendto(b"x", 1024)
        assert ei.value.errno == errno.ENOTCONN
    finally:
        pair.close()


def test_pair_buses_are_listed_in_the_registry() -> None:
    with RpmsgPair() as a, RpmsgPair() as b:
        assert a.bus is not None and b.bus is not None
        names = {bus.name for bus in registry.buses()}
        assert {a.bus.name, b.bus.name} <= names
        chans = {c.device_name for c in registry.channels()}
        assert f"{a.bus.name}.rpmsg_ns.53.53" in chans


def test_restart_the_remote_was_not_told_about() -> None:
    """A transport that cannot report status changes: the remote notices the re-created rings
    at the next kick, attaches again and re-announces."""
    with _echo_pair() as pair:
        host = _host_ept(pair)
        host.send(b"before")
        assert host.recv(0) == b"before"
        pair.vdev.status_changed = lambda: None  # the remote hears nothing but kicks
        pair.stop()
        assert pair.remote.attached.is_set()  # it has no idea
        bus = pair.start()  # probe kicks vring 0 once: the remote resyncs there
        assert pair.remote.attach_count == 2
        host2 = bus.create_ept(None, dst=pair.channel("rpmsg-echo").dst)
        host2.send(b"after")
        assert host2.recv(0) == b"after"
        assert pair.remote.errors == 0


def test_stop_wakes_a_callback_blocked_in_send() -> None:
    with _echo_pair() as pair:
        bus = pair.bus
        assert bus is not None
        outcome: list[int] = []
        filler = _host_ept(pair)

        def on_msg(ept: Endpoint, data: bytes, src: int) -> None:
            try:
                ept.sendto(b"reply", src, timeout=10)
            except RprocError as err:
                outcome.append(err.errno)

        cb_ept = bus.create_ept(on_msg)
        pair.pause_remote()
        for _ in range(256):
            filler.trysend(b"fill")
        rept = pair.remote.endpoints()[0]
        t = threading.Thread(target=rept.sendto, args=(b"ping", cb_ept.addr))
        t.start()
        wait_until(lambda: bus._tx_waiters == 1, what="the callback waiting for a TX buffer")
        t0 = time.monotonic()
        pair.stop()
        t.join(5)
        assert time.monotonic() - t0 < 3
        assert outcome == [errno.EPIPE]
        pair.resume_remote()
