"""``/dev/rpmsgN`` through a real FUSE mount, against the Python echo remote over the process
platform (announced as "rpmsg-raw", so rpmsg_char gives it a device at once): sequence-numbered
messages written and read back by one thread driven by ``poll``; nothing lost, duplicated,
reordered or altered. ``poll`` waits on events (the POLLOUT wake-up comes from the bus's TX-done
interrupt, not a timer).

``RPROC_CHAR_FLOOD_MESSAGES`` sets the slow flood's total (default 50,000; the full flood of
docs/performance.md is 1,000,000); a bounded one runs in every pass.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_process_platform import TIMEOUT, Pair

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree

_SEQ = struct.Struct("<Q")
_BODIES = [bytes((i * 11 + n) & 0xFF for i in range(n)) for n in range(497 - _SEQ.size)]


def _msg(seq: int) -> bytes:
    return _SEQ.pack(seq) + _BODIES[(seq * 29) % len(_BODIES)]


@pytest.fixture
def rpmsg_dev(tmp_path: Path) -> Iterator[str]:
    with Pair(remote_args=("--service", "rpmsg-raw")) as p:
        p.rproc.boot()
        tree = AbiTree(p.host)
        try:
            mnt = tmp_path / "mnt"
            mnt.mkdir()
            with Mount(tree.root, mnt):
                dev = mnt / "dev/rpmsg0"
                deadline = time.monotonic() + TIMEOUT
                while not dev.exists():
                    assert time.monotonic() < deadline, "no /dev/rpmsg0"
                    time.sleep(0.01)
                yield str(dev)
        finally:
            tree.close()


def _flood(path: str, total: int, window: int = 32) -> float:
    """One thread, non-blocking, driven by ``poll``: write while POLLOUT says a TX buffer is
    free (at most ``window`` in flight), read while POLLIN says an echo is queued. (Two
    threads cannot block in ``read`` and ``write`` on one file: the kernel serialises them
    on the file position lock, and the device opens only once.)"""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        sent = got = 0
        t0 = time.perf_counter()
        while got < total:
            want = select.POLLIN | (select.POLLOUT if sent < total and sent - got < window else 0)
            p.modify(fd, want)
            events = p.poll(TIMEOUT * 1000)
            assert events, f"nothing happened for {TIMEOUT} s at {got} of {total}"
            mask = events[0][1]
            if mask & select.POLLOUT and sent < total and sent - got < window:
                try:
                    data = _msg(sent)
                    assert os.write(fd, data) == len(data)
                    sent += 1
                except BlockingIOError:
                    pass  # the buffer went to someone else; poll again
            if mask & select.POLLIN:
                data = os.read(fd, 512)
                assert data == _msg(got), f"want #{got}, got {_SEQ.unpack_from(data)}"
                got += 1
        rate = total / (time.perf_counter() - t0)
        # Nothing more: a poll for input times out.
        p.modify(fd, select.POLLIN)
        assert p.poll(50) == []
        return rate
    finally:
        os.close(fd)


def test_char_flood_bounded(rpmsg_dev: str) -> None:
    _flood(rpmsg_dev, 3000)


@pytest.mark.slow
def test_char_flood_long(rpmsg_dev: str) -> None:
    total = int(os.environ.get("RPROC_CHAR_FLOOD_MESSAGES", "50000"))
    rate = _flood(rpmsg_dev, total)
    print(f"rpmsg_char flood: {total} messages at {rate:.0f} msgs/s")


def test_poll_waits_on_events_only(rpmsg_dev: str) -> None:
    """POLLOUT is there while TX buffers are free, POLLIN exactly when an echo is queued."""
    fd = os.open(rpmsg_dev, os.O_RDWR | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert p.poll(1000) == [(fd, select.POLLOUT)]
        os.write(fd, b"ping")
        p.modify(fd, select.POLLIN)
        assert p.poll(TIMEOUT * 1000) == [(fd, select.POLLIN)]
        assert os.read(fd, 512) == b"ping"
        assert p.poll(20) == []
    finally:
        os.close(fd)
