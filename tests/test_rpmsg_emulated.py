"""rpmsg end to end with the real firmware on the emulated virtual SoC (issue 5, emulated half).

The host side is the whole stack (``Host`` → ``Rproc`` → vdev → ``RpmsgBus``); the remote side is
the example firmware built from ``firmware/examples`` (``rpmsg-echo-*.elf``, ``crash-*.elf``)
running on a unicorn Cortex-M4 or RV32IMAC core. Nothing here is simulated in Python: every
message goes host kick → mailbox FIFO → the core's interrupt → the firmware's rpmsg stack →
``TX_DATA`` MMIO → the platform's dispatcher → ``Rproc.vq_interrupt`` → the host bus.

What the firmware gives us to work with (firmware/examples/common/echo.c, firmware/sdk/src/rpmsg.c):
- three channels, announced in this order when DRIVER_OK is seen: "rpmsg-raw" (1024),
  "rpmsg-tty" (1025), "rpmsg-openamp-demo-channel" (1026); every message is echoed to its
  sender from the channel's address; "bench N" runs a compute loop of N iterations and replies;
- vrings of 16 entries, so the host has 16 RX and 16 TX buffers of 512 bytes (the kernel's
  rule, ``num_bufs = 2 * num``; 256 each needs rings of 256, which these images do not ask for);
- no command destroys an endpoint, so name-service DESTROY is never sent by this firmware: the
  channels go away when the processor stops, crashes or detaches (the bus is removed), which is
  what the destroy tests check, on the host's channel list and through the listeners.

Flooding: ``RPROC_EMU_FLOOD_MESSAGES`` (default 100,000) messages through the firmware.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import holds_for
from test_core_support import EventLog
from test_emulator import FW_DIR, machine, wait_until

from remoteproc.core.events import Event, EventKind
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, State
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import EmulatedProcessor, EmulatorPlatform, parse_machine
from remoteproc.rpmsg import (
    RPMSG_ADDR_ANY,
    RPMSG_MTU,
    Channel,
    Endpoint,
    RpmsgBus,
    RpmsgDriver,
    RpmsgListener,
    registry,
)

CPUS = {"m4": "cortex-m4", "rv32": "rv32imac"}
ARCHES = list(CPUS)
# name -> address, in the order the firmware creates (and announces) them
ECHO_CHANNELS = {"rpmsg-raw": 1024, "rpmsg-tty": 1025, "rpmsg-openamp-demo-channel": 1026}
TX_BUFFERS = 16  # half of num_bufs = 2 * 16 (the firmware's vrings have 16 entries)
FLOOD_MESSAGES = int(os.environ.get("RPROC_EMU_FLOOD_MESSAGES", "100000"))


# ---- a machine with one core, and who is told what -------------------------------------------


class BusLog(RpmsgListener):
    """Everything the rpmsg registry tells an application about one processor's buses."""

    def __init__(self, rproc: Callable[[], Rproc | None]) -> None:
        self._rproc = rproc
        self.log: list[tuple[str, str, int]] = []  # ("+ch"/"-ch"/"+bus"/"-bus", name, dst)
        self.cond = threading.Condition()

    def _mine(self, bus: Any) -> bool:
        return bus.rproc is not None and bus.rproc is self._rproc()

    def _add(self, entry: tuple[str, str, int]) -> None:
        with self.cond:
            self.log.append(entry)
            self.cond.notify_all()

    def on_bus_added(self, bus: RpmsgBus) -> None:
        if self._mine(bus):
            self._add(("+bus", bus.name, 0))

    def on_bus_removed(self, bus: RpmsgBus) -> None:
        if self._mine(bus):
            self._add(("-bus", bus.name, 0))

    def on_channel_added(self, channel: Channel) -> None:
        if self._mine(channel.bus):
            self._add(("+ch", channel.name, channel.dst))

    def on_channel_removed(self, channel: Channel) -> None:
        if self._mine(channel.bus):
            self._add(("-ch", channel.name, channel.dst))

    def mark(self) -> int:
        with self.cond:
            return len(self.log)

    def since(self, mark: int) -> list[tuple[str, str, int]]:
        with self.cond:
            return self.log[mark:]

    def wait_for(self, entries: list[tuple[str, str, int]], mark: int = 0,
                 timeout: float = 10.0) -> None:
        """Wait until ``entries`` appear, in this order, after ``mark``."""

        def match(want: tuple[str, str, int], got: tuple[str, str, int]) -> bool:
            return want[0] == got[0] and want[1] in ("*", got[1]) and want[2] == got[2]

        def seen() -> bool:  # an ordered subsequence; "*" matches any name
            it = iter(self.log[mark:])
            return all(any(match(e, g) for g in it) for e in entries)

        with self.cond:
            ok = self.cond.wait_for(seen, timeout)
            assert ok, f"{entries} not in order in {self.log[mark:]}"


def echo_channels_added() -> list[tuple[str, str, int]]:
    return [("+ch", name, addr) for name, addr in ECHO_CHANNELS.items()]


def echo_channels_removed() -> list[tuple[str, str, int]]:
    # the bus unregisters its channels newest first, then leaves the registry
    return [("-ch", name, addr) for name, addr in reversed(ECHO_CHANNELS.items())]


@dataclass
class Soc:
    host: Host
    plat: EmulatorPlatform
    proc: EmulatedProcessor
    rproc: Rproc
    buses: BusLog
    events: EventLog
    _epts: list[Endpoint] = field(default_factory=list)

    @property
    def bus(self) -> RpmsgBus:
        bus = next((b for b in registry.buses() if b.rproc is self.rproc), None)
        assert bus is not None, f"no rpmsg bus for {self.rproc.name} ({self.rproc.state})"
        return bus

    def channels_up(self) -> bool:
        bus = next((b for b in registry.buses() if b.rproc is self.rproc), None)
        return bus is not None and all(bus.find_channel(n) is not None for n in ECHO_CHANNELS)

    def wait_channels(self, timeout: float = 10.0) -> None:
        wait_until(self.channels_up, timeout, "the firmware's channels")

    def ept(self, channel: str = "rpmsg-raw", callback: Any = None) -> Endpoint:
        """A host endpoint talking to ``channel``'s remote address."""
        ch = self.bus.find_channel(channel)
        assert ch is not None, channel
        ept = self.bus.create_ept(callback, dst=ch.dst)
        self._epts.append(ept)
        return ept

    def echo(self, payload: bytes, channel: str = "rpmsg-raw") -> bytes:
        ept = self.ept(channel)
        try:
            ept.send(payload, timeout=5)
            data, src = ept.recvfrom(5)
            assert src == ECHO_CHANNELS[channel]
            return data
        finally:
            ept.destroy()


@contextlib.contextmanager
def emulated(arch: str, firmware: str = "rpmsg-echo", recovery: str = "reload",
             boot: str = "auto") -> Iterator[Soc]:
    """One core of ``arch`` running ``<firmware>-<arch>.elf``, channels up: booted by the host
    (``boot="auto"``) or started by the boot loader and attached to (``"preloaded"``)."""
    image = f"{firmware}-{arch}.elf"
    assert (FW_DIR / image).is_file(), f"{image} is not built (firmware/examples)"
    host = Host([FW_DIR], panic_hook=False)
    plat = EmulatorPlatform(parse_machine(machine([("c", CPUS[arch], boot, image, recovery)])))
    proc = plat["c"]
    buses = BusLog(lambda: proc.rproc)
    events = EventLog()
    unsubscribe = registry.subscribe(buses)
    sub = host.subscribe(events)
    try:
        plat.register(host)
        rproc = proc.rproc
        assert rproc is not None
        soc = Soc(host, plat, proc, rproc, buses, events)
        soc.wait_channels()
        assert rproc.state is (State.ATTACHED if boot == "preloaded" else State.RUNNING)
        yield soc
        for ept in soc._epts:
            if ept.alive:
                ept.destroy()
    finally:
        sub.close()
        unsubscribe()
        host.close()
        plat.close()


def pattern(n: int, salt: int = 0) -> bytes:
    """``n`` bytes that differ from every other size's and from a shifted copy of themselves."""
    return bytes((i * 131 + n * 7 + salt) & 0xFF for i in range(n))


# ---- echo of every size ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_echo_every_payload_size(arch: str) -> None:
    with emulated(arch) as soc:
        ept = soc.ept()
        for n in range(RPMSG_MTU + 1):  # 0..496
            payload = pattern(n)
            ept.send(payload, timeout=5)
            data, src = ept.recvfrom(5)
            assert src == ECHO_CHANNELS["rpmsg-raw"]
            assert len(data) == n, (n, len(data))
            assert data == payload, f"{n}-byte echo differs"
        with pytest.raises(RprocError) as err:
            ept.send(bytes(RPMSG_MTU + 1))
        assert err.value.errno == errno.EMSGSIZE
        assert ept.pending() == 0  # nothing extra came back
        bus = soc.bus
        assert bus.rx_errors == 0
        assert bus.rvq.errors == bus.svq.errors == 0


# ---- the name service --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_name_service_creates_the_announced_channels(arch: str) -> None:
    with emulated(arch) as soc:
        bus = soc.bus
        # the listener saw the bus, its own two devices, then the firmware's announcements in
        # the order the firmware created its endpoints
        soc.buses.wait_for([("+bus", bus.name, 0), ("+ch", "rpmsg_ctrl", 0),
                            ("+ch", "rpmsg_ns", 53), *echo_channels_added()])
        announced = [c for c in bus.channels() if c.driver_override is None]
        assert [(c.name, c.dst) for c in announced] == list(ECHO_CHANNELS.items())
        for ch in announced:
            assert ch.src == RPMSG_ADDR_ANY  # a remote-announced channel, no driver bound
            assert ch.device_name == f"{bus.name}.{ch.name}.-1.{ch.dst}"
            assert not ch.announce  # nothing is announced back for them
        for name in ECHO_CHANNELS:  # each channel echoes from its own address
            assert soc.echo(name.encode(), name) == name.encode()


def test_driver_binds_an_announced_channel_and_talks_through_it() -> None:
    """The kernel's flow for an announced channel: a driver matching its name is probed, gets a
    default endpoint (the channel's src), and ``rpmsg_send`` reaches the firmware's address."""
    got: list[tuple[bytes, int]] = []
    cond = threading.Condition()

    def cb(ept: Endpoint, data: bytes, src: int) -> None:
        with cond:
            got.append((data, src))
            cond.notify_all()

    probed: list[Channel] = []
    removed: list[Channel] = []
    drv = RpmsgDriver("emu-tty-test", id_table=("rpmsg-tty",), probe=probed.append,
                      remove=removed.append, callback=cb)
    registry.register_driver(drv)
    try:
        with emulated("m4") as soc:
            ch = soc.bus.find_channel("rpmsg-tty")
            assert ch is not None
            assert probed == [ch] and ch.driver is drv
            assert ch.ept is not None and ch.src == ch.ept.addr != RPMSG_ADDR_ANY
            assert ch.dst == ECHO_CHANNELS["rpmsg-tty"]
            ch.send(b"through the channel", timeout=5)
            with cond:
                assert cond.wait_for(lambda: got, 5)
            assert got == [(b"through the channel", ch.dst)]
            soc.rproc.shutdown()
            assert removed == [ch]  # the stop removed the channel: remove was called
            assert ch.ept is None and not ch.registered
    finally:
        registry.unregister_driver(drv)


# ---- destroy: the channels go away with the processor ------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_stop_destroys_the_channels_and_boot_recreates_them(arch: str) -> None:
    with emulated(arch) as soc:
        bus = soc.bus
        reader = soc.ept("rpmsg-tty")
        woke: list[RprocError] = []

        def blocked_recv() -> None:
            try:
                reader.recv(10)
            except RprocError as exc:
                woke.append(exc)

        t = threading.Thread(target=blocked_recv)
        t.start()
        mark = soc.buses.mark()
        ev_mark = len(soc.events.events)
        soc.rproc.shutdown()
        t.join(5)
        assert not t.is_alive()
        assert [e.errno for e in woke] == [errno.EPIPE]  # the reader was told at once
        assert soc.rproc.state is State.OFFLINE
        # the host's channel list is empty: the bus left the registry with its channels
        assert bus.channels() == []
        assert all(b.rproc is not soc.rproc for b in registry.buses())
        assert not [c for c in registry.channels() if c.bus is bus]
        # shutdown returns after every listener has been told (the removal is synchronous)
        after = soc.buses.since(mark)
        assert after == [*echo_channels_removed(), ("-ch", "rpmsg_ns", 53),
                         ("-ch", "rpmsg_ctrl", 0), ("-bus", bus.name, 0)], after
        # the core's events: RUNNING -> OFFLINE, delivered before shutdown() returned
        states = [(e.old, e.state) for e in soc.events.events[ev_mark:]
                  if e.kind is EventKind.STATE]
        assert states == [("running", "offline")], states
        with pytest.raises(RprocError) as err:
            reader.send(b"late")
        assert err.value.errno == errno.EPIPE
        assert soc.proc.core.state.value == "halted"

        mark = soc.buses.mark()
        soc.rproc.boot()
        soc.wait_channels()
        soc.buses.wait_for([("+bus", soc.bus.name, 0), *echo_channels_added()], mark)
        assert soc.bus is not bus  # a new device, new buffers
        assert soc.echo(b"after the stop") == b"after the stop"


@pytest.mark.parametrize("arch", ARCHES)
def test_detach_destroys_the_channels_and_attach_recreates_them(arch: str) -> None:
    """A core the boot loader started: the host attached to it. Detach leaves the firmware
    running but takes the bus down (listeners told, DETACHED event); attaching again makes the
    firmware announce its channels on the new vrings."""
    with emulated(arch, "detachable", recovery="attach", boot="preloaded") as soc:
        bus = soc.bus
        assert soc.echo(b"attached") == b"attached"
        mark = soc.buses.mark()
        ev_mark = len(soc.events.events)
        soc.rproc.detach()
        assert soc.rproc.state is State.DETACHED
        assert soc.proc.core.running  # the firmware keeps running
        assert soc.buses.since(mark)[-1] == ("-bus", bus.name, 0)
        assert soc.buses.since(mark)[:3] == echo_channels_removed()
        assert not soc.channels_up() and bus.channels() == []
        mark = soc.buses.mark()
        soc.rproc.boot()  # attach again
        assert soc.rproc.state in (State.ATTACHED,)  # (mypy narrowed it to DETACHED)
        soc.wait_channels()
        soc.buses.wait_for([("+bus", "*", 0), *echo_channels_added()], mark)
        kinds = _kinds(soc.events.events[ev_mark:])
        assert EventKind.DETACHED in kinds and EventKind.ATTACHED in kinds, kinds
        assert kinds.index(EventKind.DETACHED) < kinds.index(EventKind.ATTACHED)
        assert soc.echo(b"attached again", "rpmsg-tty") == b"attached again"


# ---- a sender that runs out of TX buffers --------------------------------------------------------


def _sent_count(bus: RpmsgBus, start: int) -> int:
    return bus.tx_messages - start


BENCH_ITERATIONS = 250_000_000  # 1 G instructions: about a second of the core's time


@pytest.mark.parametrize("arch", ARCHES)
def test_sender_blocks_while_every_tx_buffer_is_in_flight(arch: str) -> None:
    """The firmware is busy: "bench N" keeps its core in a compute loop inside the endpoint
    callback, so it takes nothing more from the host's TX ring and returns nothing. 15 more
    messages fill the host's other TX buffers (16 in all: the firmware's rings have 16 entries),
    and the next ``send`` blocks. The firmware returns the buffers, and kicks, only after the
    loop: the sender wakes then, after the bench reply has reached the host, never before.

    (Stalling the host's receive path instead, with an endpoint callback that does not return,
    is no way to do this: the TX-complete interrupt that wakes senders is delivered by the same
    thread, as in the kernel, where rpmsg callbacks must not block either.)"""
    with emulated(arch) as soc:
        bus = soc.bus
        ept = soc.ept()
        start = bus.tx_messages
        ept.send(f"bench {BENCH_ITERATIONS}".encode(), timeout=5)
        for i in range(TX_BUFFERS - 1):
            ept.send(struct.pack("<I", i) + pattern(i), timeout=5)
        assert _sent_count(bus, start) == TX_BUFFERS
        woke_with_pending: list[int] = []
        done = threading.Event()

        def sender() -> None:
            ept.send(b"the blocked one", timeout=60)
            woke_with_pending.append(ept.pending())
            done.set()

        t = threading.Thread(target=sender)
        t0 = time.monotonic()
        t.start()
        assert not done.wait(0.2), "a TX buffer was free while the firmware computed"
        # every TX buffer is in flight: nothing to take, a non-blocking send fails at once
        assert not bus.tx_ready() and not ept.poll_out()
        with pytest.raises(RprocError) as err:
            ept.trysend(b"no buffer")
        assert err.value.errno == errno.ENOMEM
        assert ept.pending() == 0  # and the firmware has not answered anything yet
        assert done.wait(60)
        t.join()
        blocked_s = time.monotonic() - t0
        reply = ept.recv(5).decode()
        assert reply.startswith(f"bench {BENCH_ITERATIONS} result 0x"), reply
        us = int(reply.split(" us ")[1].split()[0])
        assert blocked_s > 0.2 and us > 0
        assert woke_with_pending[0] >= 1  # the reply was already there when the sender woke
        for i in range(TX_BUFFERS - 1):
            assert ept.recv(5) == struct.pack("<I", i) + pattern(i)
        assert ept.recv(5) == b"the blocked one"
        assert _sent_count(bus, start) == TX_BUFFERS + 1
        assert ept.pending() == 0


def test_stop_wakes_a_sender_blocked_on_tx_buffers() -> None:
    """The firmware computes, the host's TX buffers are all out and a sender waits: stopping
    the processor wakes it with EPIPE at once instead of after the 15 s send timeout."""
    with emulated("m4") as soc:
        bus = soc.bus
        ept = soc.ept()
        ept.send(f"bench {4 * BENCH_ITERATIONS}".encode(), timeout=5)  # several seconds
        for i in range(TX_BUFFERS - 1):
            ept.send(struct.pack("<I", i), timeout=5)
        assert not bus.tx_ready()
        woke: list[int] = []

        def sender() -> None:
            try:
                ept.send(b"never sent", timeout=30)
            except RprocError as exc:
                woke.append(exc.errno)

        t = threading.Thread(target=sender)
        t.start()
        wait_until(lambda: bus._tx_waiters == 1, 5, "the sender to wait")
        t0 = time.monotonic()
        soc.rproc.shutdown()  # halts the core in the middle of its loop
        t.join(5)
        assert not t.is_alive() and woke == [errno.EPIPE]
        assert time.monotonic() - t0 < 5
        assert soc.rproc.state is State.OFFLINE
        soc.rproc.boot()
        soc.wait_channels()
        assert soc.echo(b"fresh start") == b"fresh start"


# ---- crashes and recovery ----------------------------------------------------------------------

CRASHES = [
    ("mmu", CrashType.MMUFAULT),
    ("mmu-write", CrashType.MMUFAULT),
    ("wdog", CrashType.WATCHDOG),
    ("abort", CrashType.FATAL_ERROR),
    ("udf", CrashType.FATAL_ERROR),
]


def _kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(("crash", "kind"), CRASHES, ids=[c for c, _ in CRASHES])
def test_crash_recovery_recreates_the_channels(arch: str, crash: str, kind: CrashType) -> None:
    with emulated(arch, "crash") as soc:
        bus = soc.bus
        assert soc.echo(b"before") == b"before"
        reader = soc.ept("rpmsg-tty")
        woke: list[int] = []

        def blocked_recv() -> None:
            try:
                reader.recv(15)
            except RprocError as exc:
                woke.append(exc.errno)

        t = threading.Thread(target=blocked_recv)
        t.start()
        mark = soc.buses.mark()
        ev_mark = len(soc.events.events)
        cmd = soc.ept()
        cmd.send(f"crash {crash}".encode(), timeout=5)
        # the acknowledgement is kicked before the crash: it reaches the host first and can
        # still be read from the endpoint after the bus is gone
        assert cmd.recv(5) == f"crashing: {crash}".encode()
        soc.events.wait(lambda e: e.kind is EventKind.RECOVERY_DONE, 15)
        soc.wait_channels()
        t.join(5)
        assert woke == [errno.EPIPE]  # the blocked reader learned its endpoint is gone

        # the core's events: the crash with its type, handled, recovered, and the states
        evs = soc.events.events[ev_mark:]
        kinds = _kinds(evs)
        crash_ev = next(e for e in evs if e.kind is EventKind.CRASH)
        assert crash_ev.detail == kind.label
        order = [EventKind.CRASH, EventKind.CRASH_HANDLED, EventKind.RECOVERY_START,
                 EventKind.RECOVERY_DONE]
        assert [k for k in kinds if k in order] == order, kinds
        assert next(e for e in evs if e.kind is EventKind.CRASH_HANDLED).count == 1
        states = [(e.old, e.state) for e in evs if e.kind is EventKind.STATE]
        assert states[0] == ("running", "crashed") and states[-1][1] == "running", states
        assert soc.rproc.crash_cnt == 1
        last = soc.proc.last_crash
        assert last is not None and last.crash_type is kind

        # the rpmsg registry: every channel of the dead bus went, then the bus; the new bus
        # came with the same announced channels and addresses
        soc.buses.wait_for([*echo_channels_removed(), ("-bus", bus.name, 0),
                            ("+bus", soc.bus.name, 0), *echo_channels_added()], mark)
        assert bus.channels() == []
        assert soc.bus is not bus
        assert [(c.name, c.dst) for c in soc.bus.channels() if c.driver_override is None] == \
            list(ECHO_CHANNELS.items())
        for name in ECHO_CHANNELS:
            assert soc.echo(b"after " + name.encode(), name) == b"after " + name.encode()


@pytest.mark.parametrize("arch", ARCHES)
def test_every_crash_in_a_row_then_stop_and_start(arch: str) -> None:
    """One firmware instance crashed in every way, one after the other: each recovery brings
    back a working bus, and a stop/start at the end still does."""
    with emulated(arch, "crash") as soc:
        for n, (crash, kind) in enumerate(CRASHES, 1):
            mark = soc.buses.mark()
            old = soc.bus
            payload = pattern(200 + n, salt=n)
            assert soc.echo(payload) == payload
            cmd = soc.ept("rpmsg-openamp-demo-channel")
            cmd.send(f"crash {crash}".encode(), timeout=5)
            count = n

            def handled(e: Event, count: int = count) -> bool:
                return e.kind is EventKind.CRASH_HANDLED and e.count == count

            soc.events.wait(handled, 10)
            assert soc.rproc.crash_cnt == n
            soc.buses.wait_for([("-bus", old.name, 0), ("+bus", "*", 0),
                                *echo_channels_added()], mark)
            soc.wait_channels()
            assert soc.proc.last_crash is not None and soc.proc.last_crash.crash_type is kind
            assert soc.echo(payload, "rpmsg-tty") == payload
        # the last RECOVERY_DONE is published after its channels came back: wait for it
        wait_until(lambda: _kinds(soc.events.events).count(EventKind.RECOVERY_DONE)
                   == len(CRASHES), 10, "a RECOVERY_DONE for every crash")
        assert _kinds(soc.events.events).count(EventKind.RECOVERY_DONE) == len(CRASHES)
        soc.rproc.shutdown()
        assert not soc.channels_up()
        soc.rproc.boot()
        soc.wait_channels()
        assert soc.echo(b"last") == b"last"


@pytest.mark.parametrize(("arch", "crash"), [("m4", "wdog"), ("m4", "abort"), ("rv32", "mmu"),
                                           ("rv32", "udf")])
def test_crash_under_traffic_wakes_everyone_and_recovers(arch: str, crash: str) -> None:
    """Three endpoints stream to the firmware (a sender and a reader each) when it crashes:
    every sender and reader wakes with EPIPE, each reader got an in-order, duplicate-free
    prefix of what its sender sent (what was in flight is lost with the crashed bus), and the
    recovered firmware echoes again."""
    with emulated(arch, "crash") as soc:
        epts = [soc.ept("rpmsg-raw") for _ in range(3)]
        sent = [0] * len(epts)
        got: list[list[int]] = [[] for _ in epts]
        ends: list[tuple[str, int, int]] = []
        lock = threading.Lock()

        def sender(k: int) -> None:
            try:
                while True:
                    epts[k].send(struct.pack("<I", sent[k]) + bytes(60), timeout=15)
                    sent[k] += 1
            except RprocError as exc:
                with lock:
                    ends.append(("send", k, exc.errno))

        def reader(k: int) -> None:
            try:
                while True:
                    got[k].append(struct.unpack_from("<I", epts[k].recv(15))[0])
            except RprocError as exc:
                with lock:
                    ends.append(("recv", k, exc.errno))

        threads = [threading.Thread(target=f, args=(k,)) for k in range(len(epts))
                   for f in (sender, reader)]
        for t in threads:
            t.start()
        wait_until(lambda: min(len(g) for g in got) >= 100, 10, "traffic")
        soc.ept("rpmsg-tty").send(f"crash {crash}".encode(), timeout=15)
        soc.events.wait(lambda e: e.kind is EventKind.RECOVERY_DONE, 20)
        for t in threads:
            t.join(15)
        assert not [t for t in threads if t.is_alive()]
        assert sorted(ends) == sorted([(op, k, errno.EPIPE) for k in range(len(epts))
                                       for op in ("send", "recv")])
        for k in range(len(epts)):
            assert got[k] == list(range(len(got[k]))), f"endpoint {k}: not an in-order prefix"
            assert 100 <= len(got[k]) <= sent[k]
        soc.wait_channels()
        assert soc.rproc.crash_cnt == 1
        assert soc.echo(b"after the storm") == b"after the storm"


# ---- flood -------------------------------------------------------------------------------------

SEQ = struct.Struct("<IQ")  # (stream number, sequence number)


def flood(soc: Soc, total: int) -> float:
    """``total`` messages over four host endpoints (two on rpmsg-raw, one on each other
    channel), each with its own sender thread; echoes checked per endpoint by its callback:
    nothing lost, duplicated, reordered or altered. Returns messages per second."""
    streams = [("rpmsg-raw", 0), ("rpmsg-raw", 1), ("rpmsg-tty", 2),
               ("rpmsg-openamp-demo-channel", 3)]
    per = total // len(streams)
    expect = [0] * len(streams)
    bad: list[str] = []
    done = threading.Semaphore(0)

    def make_cb(k: int, channel: str) -> Callable[[Endpoint, bytes, int], None]:
        addr = ECHO_CHANNELS[channel]

        def cb(ept: Endpoint, data: bytes, src: int) -> None:
            stream, seq = SEQ.unpack_from(data)
            wrong = stream != k or seq != expect[k] or src != addr
            if (wrong or data[SEQ.size:] != _body(seq)) and len(bad) < 10:
                bad.append(f"stream {k}: want {expect[k]}, got stream {stream} seq {seq} "
                           f"from {src} ({len(data)} bytes)")
            expect[k] = seq + 1
            if seq + 1 == per:
                done.release()

        return cb

    epts = [soc.ept(ch, make_cb(k, ch)) for ch, k in streams]
    errors: list[BaseException] = []

    def sender(k: int) -> None:
        ept = epts[k]
        try:
            for seq in range(per):
                ept.send(SEQ.pack(k, seq) + _body(seq), timeout=15)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(len(streams))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert errors == []
    for _ in streams:
        assert done.acquire(timeout=60), f"echoes missing: {expect} of {per}"
    elapsed = time.perf_counter() - t0
    assert bad == []
    assert expect == [per] * len(streams)
    # No duplicate arrives: a bounded observation of 0.05 s.
    holds_for(lambda: [e.received for e in epts] == [per] * len(streams), 0.05,
              "no echo after the last one")
    bus = soc.bus
    assert bus.rx_errors == 0 and bus.rvq.errors == bus.svq.errors == 0
    return per * len(streams) / elapsed


_BODIES = [bytes((i * 13 + n) & 0xFF for i in range(n % 97)) for n in range(997)]


def _body(seq: int) -> bytes:
    """A payload tail whose length and contents vary with the sequence number."""
    return _BODIES[seq % 997]


def test_flood_small_on_both_cores() -> None:
    for arch in ARCHES:
        with emulated(arch) as soc:
            flood(soc, 4000)


@pytest.mark.parametrize("arch", [
    "m4",  # ~5 s for 100,000 on an idle machine
    pytest.param("rv32", marks=pytest.mark.slow),  # ~10 s idle, more under load
])
def test_flood_through_the_firmware(arch: str) -> None:
    with emulated(arch) as soc:
        rate = flood(soc, FLOOD_MESSAGES)
        assert rate > 0
        assert soc.echo(b"after the flood") == b"after the flood"
