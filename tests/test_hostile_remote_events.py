"""A hostile remote against the HOST, on the real stack (issue 13): a ``ProcessPlatform`` attached
to the Python remote (``ProcessRemote``, served on a thread of this process so the test can
write into its rings as a hostile remote would, in step with its own indices).

Each bad thing the remote writes is refused by the host with a log line naming the vring and
the index, and published: a ``vring_refused`` event (the ring stays usable, the channel keeps
echoing) or, for a used index that jumps, a ``vring_broken`` event (the channel is dead until a
re-attach or a recovery, either of which brings it back). The events reach the in-process
subscribers and the ``rprocd/events`` file. No livelock: a flood of bad elements costs bounded
CPU and at most one refusal event per ring per ``Rproc.refused_interval`` (1 s).

The remote cannot make the host follow an address outside the shared memory or a descriptor
loop: the host never reads its own descriptors back from the shared ring (private shadows, as
Linux's ``desc_extra``); ``test_scribbled_descriptors_are_never_followed`` shows it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import wait_until
from test_process_platform import TIMEOUT, bus_of, cleanup_names, unique_names, wait_channel

from remoteproc.abi.node import Request, lookup
from remoteproc.abi.tree import AbiTree
from remoteproc.client.events import ProcessorEvent
from remoteproc.core.events import Event, EventKind, Subscription
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.platforms.process import ProcessPlatform
from remoteproc.remotes.echo import ProcessRemote
from remoteproc.rpmsg.remote import echo
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus
from remoteproc.virtio.vring import VRING_DESC_F_NEXT, DeviceQueue

pytestmark = pytest.mark.timeout(120)

SERVICE = "rpmsg-hostile-echo"
BUF = 512  # the host's rpmsg buffer size


@dataclass
class Rig:
    remote: ProcessRemote
    host: Host
    platform: ProcessPlatform
    rproc: Rproc
    events: Subscription
    tree: AbiTree

    @property
    def bus(self) -> RpmsgBus:
        bus = bus_of(self.rproc)
        assert bus is not None
        return bus

    def tx(self) -> DeviceQueue:
        """The remote's side of vring 0 (remote -> host)."""
        q = self.remote.rpmsg._tx
        assert q is not None
        return q

    def raw_push(self, head: int, length: int) -> None:
        """Write a used element exactly as given, keeping the remote's own index in step."""
        with self.remote.rpmsg._lock:
            q = self.tx()
            lay = q.layout
            struct.pack_into("<II", q.mem, lay.used_ring + 8 * (q._used_idx % q.num), head,
                             length)
            q._used_idx = (q._used_idx + 1) & 0xFFFF
            struct.pack_into("<H", q.mem, lay.used_idx, q._used_idx)

    def take_rx_buffer(self) -> tuple[int, memoryview]:
        """Pop one of the host's receive buffers, to fill it by hand."""
        with self.remote.rpmsg._lock:
            got = self.tx().pop_avail()
        assert got is not None
        head, parts = got
        return head, parts[0][0]

    def interrupt(self) -> None:
        """What the remote's kick makes the host do (the platform's reader calls the same)."""
        self.rproc.vq_interrupt(self.rproc.rvdevs[0].vrings[0].notifyid)

    def echoes(self, payload: bytes = b"alive", timeout: float = TIMEOUT) -> None:
        ch = wait_channel(self.rproc, SERVICE)
        ept = self.bus.create_ept(None)
        try:
            ept.sendto(payload, ch.dst)
            assert ept.recv(timeout) == payload
        finally:
            ept.destroy()

    def next_event(self) -> Event:
        ev = self.events.get(TIMEOUT)
        assert ev is not None, "no event"
        return ev


@pytest.fixture
def rig() -> Iterator[Rig]:
    shm, sock = unique_names()
    remote = ProcessRemote(shm, sock, spin=0.0, sched_slice=0.0, name="hostile")
    remote.rpmsg.create_ept(SERVICE, echo)
    server = threading.Thread(target=remote.serve, name="hostile-remote", daemon=True)
    server.start()
    host = Host([], panic_hook=False)
    platform = ProcessPlatform("hostile", shm=shm, socket_path=sock, spin=0.0, sched_slice=0.0)
    rproc = platform.make_rproc(auto_boot=False, host=host)
    events = host.subscribe(kinds={EventKind.VRING_REFUSED, EventKind.VRING_BROKEN})
    tree = AbiTree(host, rpmsg=False)
    try:
        rproc.boot()
        rig = Rig(remote, host, platform, rproc, events, tree)
        rig.echoes()
        yield rig
    finally:
        events.close()
        tree.close()
        rproc.close()
        host.close()
        platform.close()
        remote.close()
        server.join(TIMEOUT)
        assert not server.is_alive()
        cleanup_names(shm, sock)


def refused(rig: Rig, caplog: pytest.LogCaptureFixture, log_text: str, error_text: str) -> None:
    """The host logged ``log_text``, published one vring_refused event for vring 0 whose error
    says ``error_text``, and the channel still echoes."""
    assert log_text in caplog.text, caplog.text
    ev = rig.next_event()
    assert ev.kind is EventKind.VRING_REFUSED, ev
    assert ev.detail == "vdev0 vring0" and ev.count == 1
    assert isinstance(ev.error, RprocError) and error_text in ev.error.message, ev.error
    assert rig.rproc.state is State.ATTACHED
    rig.echoes(b"still alive")
    assert not rig.bus.rvq.broken


def test_used_id_out_of_range(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    used = rig.tx()._used_idx
    with caplog.at_level(logging.ERROR):
        rig.raw_push(999, 16)
        rig.interrupt()
    refused(rig, caplog, f"used element {used} vring 0: id 999 out of range", "out of range")


def test_used_id_returned_twice(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    head, view = rig.take_rx_buffer()
    struct.pack_into("<IIIHH", view, 0, 1024, 1024, 0, 0, 0)
    with caplog.at_level(logging.ERROR):
        rig.raw_push(head, 16)
        rig.raw_push(head, 16)  # the same buffer twice: the second is not outstanding
        rig.interrupt()
    refused(rig, caplog, f"vring 0: id {head} is not a head", "is not a head")


def test_used_length_past_the_buffer(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    head, _view = rig.take_rx_buffer()
    with caplog.at_level(logging.ERROR):
        rig.raw_push(head, BUF + 1)
        rig.interrupt()
    refused(rig, caplog, f"id {head}: used len {BUF + 1} exceeds buffer length {BUF}",
            "exceeds buffer length")


def test_rpmsg_header_length_past_the_buffer(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    head, view = rig.take_rx_buffer()
    struct.pack_into("<IIIHH", view, 0, 1024, 1024, 0, 4000, 0)  # claims 4000 bytes
    with caplog.at_level(logging.ERROR):
        rig.raw_push(head, 16 + 10)  # only 10 were written
        rig.interrupt()
    refused(rig, caplog, f"rx buffer {head} vring 0: inbound msg too big", "inbound msg too big")


def test_used_length_shorter_than_a_header(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    head, _view = rig.take_rx_buffer()
    with caplog.at_level(logging.ERROR):
        rig.raw_push(head, 5)
        rig.interrupt()
    refused(rig, caplog, f"rx buffer {head} vring 0: inbound msg too short (5)", "too short")


def test_a_flood_of_bad_elements_is_bounded(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """200 bad elements over 40 interrupts: each refused and logged once, bounded CPU, and
    the refusals of one ring folded into at most one event per interval."""
    start_cpu = time.process_time()
    start = time.monotonic()
    with caplog.at_level(logging.ERROR):
        for _ in range(40):
            for _ in range(5):
                rig.raw_push(999, 16)
            rig.interrupt()
    elapsed = time.monotonic() - start
    assert caplog.text.count("id 999 out of range") == 200
    assert time.process_time() - start_cpu < 5.0
    # Events reach subscribers on the dispatcher's thread: wait for the first, then take
    # whatever else has arrived (a late one only lowers the count checked below).
    first = rig.events.get(TIMEOUT)
    assert first is not None, "no vring_refused event"
    got = [first, *rig.events.drain()]
    assert all(ev.kind is EventKind.VRING_REFUSED for ev in got)
    assert 1 <= len(got) <= 1 + int(elapsed / rig.rproc.refused_interval), got
    assert got[0].count == 1
    rig.echoes(b"after the flood")
    # the next refusal once the interval is over carries the ones folded since the last event
    rig.rproc.refused_interval = 0.0
    rig.raw_push(999, 16)
    rig.interrupt()
    # Every refusal is counted in exactly one event: the ones drained above, any that were
    # still on the dispatcher then, and this last one, which carries those folded since.
    total = sum(e.count or 0 for e in got)
    while total < 201:
        ev = rig.next_event()
        assert ev.kind is EventKind.VRING_REFUSED
        total += ev.count or 0
    assert total == 201


def test_refusals_reach_the_event_file(rig: Rig) -> None:
    """``rprocd/events`` (what ``rproc watch`` reads) carries the refusal as a JSON line."""
    node = lookup(rig.tree.root, "/rprocd/events")
    handle = node.open(os.O_RDONLY)  # type: ignore[attr-defined]
    try:
        rig.raw_push(999, 16)
        rig.interrupt()
        deadline = time.monotonic() + TIMEOUT
        lines: list[dict[str, object]] = []
        while not any(d["kind"] == "vring_refused" for d in lines):
            assert time.monotonic() < deadline, lines
            lines.append(json.loads(bytes(handle.read(65536, 0, Request()))))
        ev = next(d for d in lines if d["kind"] == "vring_refused")
        assert ev["detail"] == "vdev0 vring0" and ev["errno"] == errno.EIO
        assert "id 999 out of range" in str(ev["error"])
        # what `rproc watch` prints for it
        shown = ProcessorEvent.from_json(json.dumps(ev)).describe()
        assert shown.startswith("vdev0 vring0: refused what the remote wrote: ") and \
            "id 999 out of range" in shown
    finally:
        handle.release()


def test_scribbled_descriptors_are_never_followed(rig: Rig) -> None:
    """The remote points every descriptor of both rings outside the shared memory and into a
    loop. The host never reads them back, so it follows none of them: what the remote then
    returns (it refuses its own scribbles and gives the buffers back empty) is refused and
    published, the host re-posts with fresh descriptors and the channel echoes again, and
    nothing in the file outside the rings and the pool changed."""
    shm = rig.platform.shm
    assert shm is not None
    tail = shm.view[0x50000:]
    tail[:] = b"\x5a" * len(tail)
    bus = rig.bus
    with rig.remote.rpmsg._lock:
        for vq in (bus.rvq, bus.svq):
            for i in range(vq.num):
                struct.pack_into("<QIHH", vq.mem, 16 * i, 0x7FFF_0000_0000, 0xFFFF_FFFF,
                                 VRING_DESC_F_NEXT, i)  # outside the file, and a loop on itself

    def echoes_again() -> bool:
        try:
            rig.echoes(b"through scribbled descriptors", timeout=0.5)
        except RprocError:
            return False
        return True

    wait_until(echoes_again, TIMEOUT, what="the channel to echo again")
    assert not bus.rvq.broken and not bus.svq.broken
    assert all(ev.kind is EventKind.VRING_REFUSED for ev in rig.events.drain())
    assert bytes(tail) == b"\x5a" * len(tail)


def test_used_index_jump_breaks_the_ring_visibly_and_reattach_restores(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with rig.remote.rpmsg._lock:
        q = rig.tx()
        used = struct.unpack_from("<H", q.mem, q.layout.used_idx)[0]
        struct.pack_into("<H", q.mem, q.layout.used_idx, (used + 1000) & 0xFFFF)
    start_cpu = time.process_time()
    with caplog.at_level(logging.ERROR):
        for _ in range(20):  # the remote keeps kicking: each stays cheap and quiet
            rig.interrupt()
    assert time.process_time() - start_cpu < 2.0
    assert caplog.text.count("input: used idx") == 1  # refused once, then the ring stays quiet
    ev = rig.next_event()
    assert ev.kind is EventKind.VRING_BROKEN and ev.detail == "vdev0 vring0"
    ch = wait_channel(rig.rproc, SERVICE)
    ept = rig.bus.create_ept(None)
    with pytest.raises(RprocError) as sent:
        ept.sendto(b"one way", ch.dst)
    assert sent.value.errno == errno.EIO
    # the remote fixes itself on the next host (it forgets its rings when the host goes)
    rig.rproc.detach()
    rig.rproc.boot()
    rig.echoes(b"back")


def test_a_broken_ring_comes_back_through_recovery(rig: Rig) -> None:
    """The other way back: a crash report (what a watchdog would raise) and the recovery that
    follows rebuild the rings and the channel, with no re-attach by hand."""
    with rig.remote.rpmsg._lock:
        q = rig.tx()
        used = struct.unpack_from("<H", q.mem, q.layout.used_idx)[0]
        struct.pack_into("<H", q.mem, q.layout.used_idx, (used + 1000) & 0xFFFF)
    rig.interrupt()
    assert rig.next_event().kind is EventKind.VRING_BROKEN
    done = rig.host.subscribe(kinds={EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED})
    try:
        rig.rproc.report_crash()
        ev = done.get(TIMEOUT)
        assert ev is not None and ev.kind is EventKind.RECOVERY_DONE, ev
    finally:
        done.close()
    assert rig.rproc.state is State.RUNNING
    rig.echoes(b"recovered")
