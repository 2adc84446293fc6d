"""A channel unregistered while its driver's probe runs is unbound after the probe, not leaked.

The adversarial run left 32 of 32 ttyRPMSG ports allocated after concurrent start/stop/crash:
``_bind`` set ``ch.driver`` before the probe returned and ``ch.driver_data`` after, so a bus
removal in between called the driver's ``remove`` with nothing to free. Each test here holds a
probe at the exact point of the race (the bus is being removed on stop) and then checks that what
the probe allocated is freed: driver data, the default endpoint, ttyRPMSG ports and their threads.
"""

from __future__ import annotations

import errno
import threading
import time

import pytest
from rpmsg_pair import RpmsgPair

from remoteproc.abi import tty as tty_abi
from remoteproc.abi.tty import TtyAbi
from remoteproc.errors import RprocError
from remoteproc.rpmsg.core import RpmsgDriver, registry
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.remote import echo

pytestmark = pytest.mark.timeout(120)


def wait_for(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


def test_unregister_during_probe_frees_what_the_probe_allocated() -> None:
    entered = threading.Event()
    release = threading.Event()
    live: set[object] = set()

    def probe(ch: Channel) -> object:
        entered.set()
        assert release.wait(60)
        token = object()
        live.add(token)
        return token

    def remove(ch: Channel) -> None:
        live.discard(ch.driver_data)

    def cb(ept: Endpoint, data: bytes, src: int) -> object:
        return None

    drv = RpmsgDriver("race-drv", id_table=("race-svc",), probe=probe, remove=remove, callback=cb)
    registry.register_driver(drv)
    try:
        with RpmsgPair(mode="thread") as pair:
            bus = pair.bus
            assert bus is not None
            pair.remote.create_ept("race-svc", echo)
            assert entered.wait(30), "the announcement never reached the driver's probe"
            stopper = threading.Thread(target=pair.stop)
            stopper.start()
            # The bus is being removed: the channel has left the bus's list while its probe runs.
            wait_for(lambda: not any(c.name == "race-svc" for c in bus.channels()))
            release.set()
            stopper.join(60)
            assert not stopper.is_alive()
            assert live == set(), "the probe's driver data outlived the channel"
            assert bus.endpoints() == []
    finally:
        release.set()
        registry.unregister_driver(drv)


def test_tty_port_of_a_channel_removed_mid_probe_is_freed() -> None:
    entered = threading.Event()
    release = threading.Event()
    original = TtyAbi.add_port

    def slow_add_port(self: TtyAbi, channel: Channel) -> tty_abi.TtyPort:
        entered.set()
        assert release.wait(60)
        return original(self, channel)

    threads_before = threading.active_count()
    TtyAbi.add_port = slow_add_port  # type: ignore[method-assign]
    abi = TtyAbi()
    try:
        with RpmsgPair(mode="thread") as pair:
            bus = pair.bus
            assert bus is not None
            pair.remote.create_ept("rpmsg-tty", echo)
            assert entered.wait(30)
            stopper = threading.Thread(target=pair.stop)
            stopper.start()
            wait_for(lambda: not any(c.name == "rpmsg-tty" for c in bus.channels()))
            release.set()
            stopper.join(60)
            assert not stopper.is_alive()
            assert abi.ports == {}, f"ttyRPMSG ports leaked: {sorted(abi.ports)}"
        wait_for(lambda: not any(t.name.startswith("ttyRPMSG") for t in threading.enumerate()))
    finally:
        release.set()
        TtyAbi.add_port = original  # type: ignore[method-assign]
        abi.close()
    wait_for(lambda: threading.active_count() <= threads_before)


def test_probe_racing_with_close_of_the_tty_abi_allocates_nothing() -> None:
    # _probe picked this ABI before close() ran; its add_port must refuse, or the port would
    # outlive the ABI that is supposed to close it.
    abi = TtyAbi()
    with RpmsgPair() as pair:
        pair.remote.create_ept("rpmsg-other", echo)
        pair.settle()
        ch = pair.channel("rpmsg-other")
        abi.close()
        with pytest.raises(RprocError) as info:
            abi.add_port(ch)
        assert info.value.errno == errno.ENODEV
    assert abi.ports == {}
