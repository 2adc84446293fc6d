"""rpmsg through the whole stack: a sim processor booted by the core, its vdev probed by the
virtio bus, the rpmsg host driver on top, and a Python remote reading the loaded resource table
in the processor's memory. Channels go away on stop and crash and come back after recovery,
and rpmsg subscribers are told each time."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_until
from rpmsg_pair import Wire
from test_core_support import TABLE_DA, image

from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.firmware.rsc_table import RSC_HDR_SIZE, TableBuilder
from remoteproc.platforms.sim import SimPlatform
from remoteproc.rpmsg import Channel, RpmsgListener, registry
from remoteproc.rpmsg.remote import RpmsgRemote, echo
from remoteproc.rpmsg.wire import VIRTIO_RPMSG_F_NS


class KickingSim(SimPlatform):
    """A sim processor whose firmware is an ``RpmsgRemote``: host kicks reach it on a thread."""

    wire: Wire
    remote: RpmsgRemote | None = None

    def _kick(self, rproc: Rproc, notifyid: int) -> None:
        super()._kick(rproc, notifyid)
        remote = self.remote
        if remote is not None and self.running:
            self.wire.post(f"fw-{notifyid}", remote.on_kick, notifyid)


class Channels(RpmsgListener):
    def __init__(self) -> None:
        self.log: list[str] = []
        self.cond = threading.Condition()

    def on_channel_added(self, channel: Channel) -> None:
        with self.cond:
            self.log.append(f"+{channel.name}")
            self.cond.notify_all()

    def on_channel_removed(self, channel: Channel) -> None:
        with self.cond:
            self.log.append(f"-{channel.name}")
            self.cond.notify_all()

    def wait_for(self, entry: str, count: int = 1, timeout: float = 5.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.log.count(entry) >= count, timeout)
        assert ok, f"{entry} x{count} not in {self.log}"


def rpmsg_table() -> bytearray:
    tb = TableBuilder()
    tb.add_vdev(7, 0, 1 << VIRTIO_RPMSG_F_NS, vrings=[(0xFFFFFFFF, 16, 16, 0, 0)] * 2)
    return tb.build()


@contextlib.contextmanager
def make_stack(state: State) -> Iterator[tuple[Rproc, KickingSim, Channels]]:
    table = rpmsg_table()
    host = Host([], panic_hook=False)
    sim = KickingSim("m4")
    sim.wire = Wire("thread")
    host.add_firmware("rproc-m4-fw", image(table))
    if state is State.DETACHED:
        sim.preload(image(table))  # a boot loader started it before us
    rproc = sim.make_rproc("m4", host=host, auto_boot=False, state=state)
    # The firmware knows where its table is loaded (TABLE_DA in its TCM); the vdev entry is the
    # first and only one, right after the header and its offset slot.
    vdev_off = 16 + 4 * 1
    view = sim.translate(TABLE_DA, len(table))
    assert view is not None

    def kick(notifyid: int) -> None:
        sim.wire.post(f"host-{notifyid}", sim.remote_kick, notifyid)

    sim.remote = RpmsgRemote(
        view[vdev_off + RSC_HDR_SIZE :], pa_to_va=sim.dma.pa_to_va, kick=kick, name="m4-fw"
    )
    sim.remote.create_ept("rpmsg-echo", echo)
    listener = Channels()
    unsubscribe = registry.subscribe(listener)
    try:
        yield rproc, sim, listener
    finally:
        unsubscribe()
        sim.remote = None
        sim.wire.close()
        host.close()
        sim.close()
    assert sim.wire.errors == []


@pytest.fixture(params=[State.OFFLINE, State.DETACHED], ids=["booted", "attached"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[Rproc, KickingSim, Channels]]:
    with make_stack(request.param) as parts:
        yield parts


def _bus_of(rproc: Rproc) -> Any:
    for bus in registry.buses():
        if bus.rproc is rproc:
            return bus
    raise LookupError("no rpmsg bus for this processor")


def _echo_once(rproc: Rproc, payload: bytes) -> bytes:
    bus = _bus_of(rproc)
    ch = bus.find_channel("rpmsg-echo")
    assert ch is not None
    ept = bus.create_ept(None, dst=ch.dst)
    try:
        ept.send(payload, timeout=5)
        return bytes(ept.recv(5))
    finally:
        ept.destroy()


def test_boot_stop_crash_recover(stack: tuple[Rproc, KickingSim, Channels]) -> None:
    rproc, sim, channels = stack
    rproc.boot()
    channels.wait_for("+rpmsg-echo")
    assert _echo_once(rproc, b"hello") == b"hello"

    # crash: the vdev is stopped (channels torn down), recovery boots again (re-announced)
    rproc.report_crash()
    channels.wait_for("-rpmsg-echo")
    channels.wait_for("+rpmsg-echo", 2)
    wait_until(lambda: rproc.state is State.RUNNING, 5, "recovery")
    assert rproc.state is State.RUNNING
    assert _echo_once(rproc, b"after recovery") == b"after recovery"
    assert sim.remote is not None and sim.remote.attach_count == 2

    rproc.shutdown()
    channels.wait_for("-rpmsg-echo", 2)
    assert not [b for b in registry.buses() if b.rproc is rproc]


def test_detach_and_attach_again() -> None:
    with make_stack(State.DETACHED) as (rproc, _sim, channels):
        _detach_and_attach(rproc, channels)


def _detach_and_attach(rproc: Rproc, channels: Channels) -> None:
    rproc.boot()  # attach
    channels.wait_for("+rpmsg-echo")
    assert _echo_once(rproc, b"attached") == b"attached"
    rproc.detach()
    channels.wait_for("-rpmsg-echo")
    assert rproc.state is State.DETACHED
    rproc.boot()  # attach again: the remote kept running and announces again
    channels.wait_for("+rpmsg-echo", 2)
    assert _echo_once(rproc, b"re-attached") == b"re-attached"
    rproc.detach()
