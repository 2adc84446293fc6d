"""``rproc rpmsg list/send/listen/bench`` through the ABI over FUSE, on a processor booted by the
core whose firmware is the Python echo remote (announcing "rpmsg-raw" and "svc"), and the client
following the channel through stop and start."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rpmsg_pair import Wire
from test_abi_support import wait_until
from test_core_support import TABLE_DA, image
from test_rpmsg_rproc import KickingSim, rpmsg_table

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.cli import main
from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import channel_device
from remoteproc.client.rproc import RemoteProc
from remoteproc.core.host import Host
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import RSC_HDR_SIZE
from remoteproc.rpmsg.remote import RemoteEndpoint, RpmsgRemote, echo


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Path, RemoteEndpoint]]:
    table = rpmsg_table()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with contextlib.ExitStack() as stack:
        host = Host([], panic_hook=False)
        stack.callback(host.close)
        sim = KickingSim("m4")
        stack.callback(sim.close)
        sim.wire = Wire("thread")
        stack.callback(sim.wire.close)
        host.add_firmware("rproc-m4-fw", image(table))
        sim.make_rproc("m4", host=host, auto_boot=False)
        view = sim.translate(TABLE_DA, len(table))
        assert view is not None

        def kick(notifyid: int) -> None:
            sim.wire.post(f"host-{notifyid}", sim.remote_kick, notifyid)

        remote = RpmsgRemote(view[16 + 4 + RSC_HDR_SIZE:], pa_to_va=sim.dma.pa_to_va,
                             kick=kick, name="m4-fw")
        raw = remote.create_ept("rpmsg-raw", echo)
        remote.create_ept("svc", echo)
        sim.remote = remote
        tree = AbiTree(host)
        stack.callback(tree.close)
        stack.enter_context(Mount(tree.root, mnt))
        yield mnt, raw


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--root", str(root)], catch_exceptions=False)


def test_rpmsg_commands(rig: tuple[Path, RemoteEndpoint]) -> None:
    root, _ = rig
    r = run(root, "rpmsg", "send", "m4", "hello")
    assert r.exit_code == 1 and "no rpmsg char device" in r.output and "offline" in r.output
    assert run(root, "start", "m4").exit_code == 0
    abi = AbiRoot(root)
    m4 = abi.processor("m4")
    assert wait_until(lambda: _has_raw(m4), 5)
    listing = json.loads(run(root, "rpmsg", "list", "m4", "--json").output)
    names = {c["name"] for c in listing["channels"]}
    assert {"rpmsg-raw", "svc"} <= names
    assert [e["name"] for e in listing["endpoints"]] == ["rpmsg-raw"]
    r = run(root, "rpmsg", "send", "m4", "hello")
    assert r.exit_code == 0 and r.output == "hello\n"
    svc = next(c for c in listing["channels"] if c["name"] == "svc")
    r = run(root, "rpmsg", "send", "m4", "via ctrl", "--dst", str(svc["dst"]))
    assert r.exit_code == 0 and r.output == "via ctrl\n"
    r = run(root, "rpmsg", "send", "m4", "x" * 497)
    assert r.exit_code == 1 and "at most 496" in r.output
    r = run(root, "rpmsg", "bench", "m4", "--count", "30", "--size", "200", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["count"] == 30
    r = run(root, "rpmsg", "bench", "m4", "--count", "200", "--window", "8", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["window"] == 8
    dev = channel_device(m4)
    r = run(root, "rpmsg", "send", "m4", "direct", "--dev", str(dev.dev))
    assert r.output == "direct\n"
    # stop: the channel goes; start: it comes back and the same command works again
    run(root, "stop", "m4")
    assert run(root, "rpmsg", "send", "m4", "gone").exit_code == 1
    run(root, "start", "m4")
    assert wait_until(lambda: _has_raw(m4), 5)
    assert run(root, "rpmsg", "send", "m4", "again").output == "again\n"
    run(root, "stop", "m4")


def test_listen_prints_each_message(rig: tuple[Path, RemoteEndpoint]) -> None:
    root, raw = rig
    run(root, "start", "m4")
    m4 = AbiRoot(root).processor("m4")
    assert wait_until(lambda: _has_raw(m4), 5)
    dev = channel_device(m4)
    result: list[Result] = []
    t = threading.Thread(target=lambda: result.append(run(
        root, "rpmsg", "listen", "m4", "--count", "2", "--timeout", "5")))
    t.start()
    assert wait_until(lambda: _raw_busy(m4), 5)
    # the firmware talks first: to the host's endpoint of the rpmsg-raw channel
    assert dev.src is not None
    raw.sendto(b"tick 1", dev.src)
    raw.sendto(b"tick 2", dev.src)
    t.join(10)
    assert result and result[0].exit_code == 0, result
    assert result[0].output == "tick 1\ntick 2\n"
    r = run(root, "rpmsg", "listen", "m4", "--count", "1", "--timeout", "0.2")
    assert r.exit_code == 1 and "no message within 0.2 s" in r.output
    run(root, "stop", "m4")


def _has_raw(m4: RemoteProc) -> bool:
    try:
        channel_device(m4)
        return True
    except RprocError:
        return False


def _raw_busy(m4: RemoteProc) -> bool:
    try:
        channel_device(m4).open().close()
        return False
    except RprocError:
        return True
