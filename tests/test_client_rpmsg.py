"""The client's rpmsg side against rpmsg_ctrl/rpmsg_char served over FUSE, over a live rpmsg bus
whose remote is the Python echo remote: channel and endpoint discovery from sysfs, echo through
an announced channel and through an endpoint made with the ctrl device, timeouts, size limits,
destroy, asyncio and the echo benchmark."""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rpmsg_pair import RpmsgPair
from test_abi_support import rpmsg_host, wait_until

from remoteproc.client.bench import echo_bench
from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import (
    RPMSG_ADDR_ANY,
    RpmsgCtrl,
    channels,
    endpoint_devices,
)
from remoteproc.errors import RprocError
from remoteproc.rpmsg.remote import RemoteEndpoint, RpmsgRemote, echo


@dataclass
class Rig:
    root: AbiRoot
    svc: RemoteEndpoint
    pair: RpmsgPair


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    svc: list[RemoteEndpoint] = []

    def setup(remote: RpmsgRemote) -> None:
        remote.create_ept("rpmsg-raw", echo)
        svc.append(remote.create_ept("svc", echo))

    # the client library makes its own system calls: a real mount
    with rpmsg_host(tmp_path, setup, fuse=True) as r:
        yield Rig(AbiRoot(r.root), svc[0], r.pair)


def test_discovery(rig: Rig) -> None:
    chans = {c.name: c for c in channels(rig.root)}
    assert {"rpmsg-raw", "svc"} <= set(chans)
    assert chans["svc"].dst == rig.svc.addr
    [dev] = [d for d in endpoint_devices(rig.root) if d.name == "rpmsg-raw"]
    assert dev.dst == chans["rpmsg-raw"].dst and dev.dev == rig.root.dev_dir / f"rpmsg{dev.index}"
    assert RpmsgCtrl.available(rig.root)[0][0] == 0


def test_echo_through_the_announced_channel(rig: Rig) -> None:
    [dev] = [d for d in endpoint_devices(rig.root) if d.name == "rpmsg-raw"]
    with dev.open() as ept:
        ept.send(b"hello")
        assert ept.recv(5) == b"hello"
        ept.send(b"x" * 496)
        assert ept.recv(5, size=10) == b"x" * 10  # one message per read, the rest dropped
        with pytest.raises(RprocError) as e:
            ept.recv(0.05)
        assert e.value.errno == errno.ETIMEDOUT
        with pytest.raises(RprocError) as e:
            ept.send(b"x" * 497)
        assert e.value.errno == errno.EMSGSIZE and "at most 496" in str(e.value)
        with pytest.raises(RprocError) as e:
            dev.open()
        assert e.value.errno == errno.EBUSY and "one opener" in str(e.value)
        with pytest.raises(RprocError) as e:
            ept.destroy()  # the default endpoint of an announced channel
        assert e.value.errno == errno.EINVAL and "announced" in str(e.value)


def test_endpoint_through_the_ctrl_device(rig: Rig) -> None:
    before = {d.index for d in endpoint_devices(rig.root)}
    with RpmsgCtrl(rig.root, 0) as ctrl:
        ept = ctrl.create_endpoint("mine", dst=rig.svc.addr)
    assert ept.device.index not in before
    assert (ept.name, ept.dst, ept.src) == ("mine", rig.svc.addr, RPMSG_ADDR_ANY)
    ept.send(b"ping")
    assert ept.recv(5) == b"ping"
    path = ept.path
    ept.destroy()
    assert ept.closed
    assert wait_until(lambda: not path.exists())


def test_endpoint_without_destination_cannot_send(rig: Rig) -> None:
    with RpmsgCtrl(rig.root, 0) as ctrl, ctrl.create_endpoint("nowhere") as ept:
        with pytest.raises(RprocError) as e:
            ept.send(b"lost")
        assert e.value.errno == errno.EINVAL and "dst ANY cannot send" in str(e.value)


def test_asyncio(rig: Rig) -> None:
    [dev] = [d for d in endpoint_devices(rig.root) if d.name == "rpmsg-raw"]

    async def talk() -> list[bytes]:
        with dev.open() as ept:
            reader = asyncio.create_task(ept.arecv())
            # Bounded observation: the reader waits on the loop, not in a thread, and stays
            # pending while nothing was sent (the loop runs for 0.01 s meanwhile).
            await asyncio.sleep(0.01)
            assert not reader.done()
            await ept.asend(b"async")
            first = await asyncio.wait_for(reader, 5)
            await ept.asend(b"again")
            return [first, await asyncio.wait_for(ept.arecv(), 5)]

    assert asyncio.run(talk()) == [b"async", b"again"]


def test_echo_bench(rig: Rig) -> None:
    [dev] = [d for d in endpoint_devices(rig.root) if d.name == "rpmsg-raw"]
    with dev.open() as ept:
        result = echo_bench(ept, count=50, size=100)
    assert result["count"] == 50 and result["size"] == 100
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["max_us"]
    with dev.open() as ept, pytest.raises(RprocError):
        echo_bench(ept, count=1, size=497)
    # Streaming: several in flight through send_many/recv_many, every echo checked in order.
    with dev.open() as ept:
        result = echo_bench(ept, count=400, size=64, window=8)
    assert result["count"] == 400 and result["window"] == 8
    assert 0 < result["p50_us"] <= result["max_us"]
    with dev.open() as ept:
        assert ept.send_many([b"a", b"b", b"c"]) == 3
        got: list[bytes] = []
        while len(got) < 3:
            got += ept.recv_many(2, 5)
        assert got == [b"a", b"b", b"c"]


def test_no_ctrl_device_is_explained(tmp_path: Path) -> None:
    with pytest.raises(RprocError) as e:
        RpmsgCtrl(AbiRoot(tmp_path), 0)
    assert e.value.errno == errno.ENOENT and "CONFIG_RPMSG_CTRL" in str(e.value)


def test_send_waits_for_a_tx_buffer(rig: Rig) -> None:
    """A busy remote holds every TX buffer: send waits (POLLOUT) and times out with a reason,
    then goes through as soon as the remote returns buffers."""
    [dev] = [d for d in endpoint_devices(rig.root) if d.name == "rpmsg-raw"]
    with dev.open() as ept:
        rig.pair.pause_remote()
        sent = 0
        with pytest.raises(RprocError) as e:
            for _ in range(1000):
                ept.send(b"fill", timeout=0.3)
                sent += 1
        assert e.value.errno == errno.ETIMEDOUT and "no free rpmsg buffer" in str(e.value)
        assert 0 < sent < 1000
        t0 = time.monotonic()
        threading.Timer(0.2, rig.pair.resume_remote).start()
        ept.send(b"last", timeout=5)
        assert 0.15 < time.monotonic() - t0 < 3
        assert ept.recv(5) == b"fill"  # the remote works through the backlog
