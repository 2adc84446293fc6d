"""A ring the remote breaks makes its channel visibly dead (issue 13, finding 5): a
``vring_broken`` event, a ``broken`` line in debugfs ``vrings``, EIO with the reason on the next
send and on a blocked receive; a re-attach brings the channel back. The remote is a real process
(the process platform); the test writes the used index into the shared file as a hostile remote.
"""

from __future__ import annotations

import errno
import struct
import threading

import pytest
from test_process_platform import TIMEOUT, Pair, bus_of, wait_for

from remoteproc.abi.node import Request, lookup
from remoteproc.abi.tree import AbiTree
from remoteproc.core.events import EventKind
from remoteproc.errors import RprocError

pytestmark = pytest.mark.timeout(180)


def read_node(tree: AbiTree, path: str) -> str:
    node = lookup(tree.root, path)
    handle = node.open(0)  # type: ignore[attr-defined]
    return bytes(handle.read(65536, 0, Request())).decode()


def test_remote_breaking_its_used_index_kills_the_channel_visibly() -> None:
    with Pair(launch=False) as p:
        tree = AbiTree(p.host, rpmsg=False)
        events = p.host.subscribe(kinds={EventKind.VRING_BROKEN})
        try:
            p.attach()
            ept, dst = p.endpoint()
            ept.sendto(b"fine", dst)
            assert ept.recv(TIMEOUT) == b"fine"
            vrings = read_node(tree, "/sys/kernel/debug/remoteproc/remoteproc0/vrings")
            assert vrings.count(": ok") == 2, vrings
            bus = bus_of(p.rproc)
            assert bus is not None
            rvq = bus.rvq
            # the remote's used index jumps by 1000 (what a hostile remote writes)
            used = struct.unpack_from("<H", rvq.mem, rvq.layout.used_idx)[0]
            struct.pack_into("<H", rvq.mem, rvq.layout.used_idx, (used + 1000) & 0xFFFF)
            receiver_error: list[RprocError] = []

            def blocked_receiver() -> None:
                try:
                    ept.recv(TIMEOUT)
                except RprocError as exc:
                    receiver_error.append(exc)

            t = threading.Thread(target=blocked_receiver)
            t.start()
            # and kicks the host (the platform's vq_interrupt, as its socket message would)
            p.rproc.vq_interrupt(p.rproc.rvdevs[0].vrings[0].notifyid)
            wait_for(lambda: bus.dead is not None, what="the ring to break")
            with pytest.raises(RprocError) as sent:
                ept.sendto(b"again", dst)
            assert sent.value.errno == errno.EIO
            t.join(TIMEOUT)
            assert not t.is_alive()
            assert receiver_error and receiver_error[0].errno == errno.EIO
            assert "vring 0 was broken by the remote" in receiver_error[0].message
            ev = events.get(TIMEOUT)
            assert ev is not None and ev.kind is EventKind.VRING_BROKEN
            assert ev.detail == "vdev0 vring0" and "jumps" in str(ev.error)
            vrings = read_node(tree, "/sys/kernel/debug/remoteproc/remoteproc0/vrings")
            assert "vdev0 vring0: num" in vrings and ": broken: used index" in vrings, vrings
            # a detach and re-attach brings the channel back
            p.rproc.detach()
            p.rproc.boot()
            ept2, dst2 = p.endpoint()
            ept2.sendto(b"back", dst2)
            assert ept2.recv(TIMEOUT) == b"back"
        finally:
            events.close()
            tree.close()
