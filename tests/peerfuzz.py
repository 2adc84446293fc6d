"""The fuzzing harness of the process platform's peer-written resource table, shared by
tests/test_fuzz_parsers.py (a bounded budget in CI) and tools/fuzz.sh (long runs).

The harness is the hostile remote: it creates the shared file and the listening socket as a
remote does, writes the case's table at offset 0, and lets a real ``ProcessPlatform`` attach
to it (``rproc.boot()`` on a DETACHED processor: connect, map, ``loaded_table_size``,
``handle_resources``, the vdev and its rings, the rpmsg bus), then detach.

Invariants checked per table (issue 13):
- the attach either succeeds or raises ``RprocError``; nothing else escapes;
- a refused attach leaves the processor DETACHED with power 0, no carveouts, vdevs or traces,
  no connection and no reader thread;
- an accepted one is ATTACHED and detaches cleanly, giving the remote its table back byte for
  byte;
- the host writes nothing outside the table area, the two vring carveouts and the buffer pool:
  the rest of the shared file keeps the canary the harness wrote there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import uuid

from elfbuild import rsc_carveout, rsc_devmem, rsc_entry, rsc_trace
from fuzzkit import cached, pick
from hypothesis import strategies as st

from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.platforms.process import ProcessPlatform
from remoteproc.remotes.echo import build_table
from remoteproc.transport.openamp_linux import (
    DEFAULT_LAYOUT,
    NATIVE_BYTEORDER,
    ShmFile,
    shm_path,
)

LAY = DEFAULT_LAYOUT
SEED = build_table()
_CANARY = 0xA5
# The parts of the shared file the host may write: the table area, the rings, the pool.
ALLOWED = [(0, LAY.rsc_max), *((da, LAY.vring_region) for da in LAY.vring_da),
           (LAY.buf_pa, LAY.buf_size)]


def _forbidden(size: int) -> list[tuple[int, int]]:
    """The complement of ``ALLOWED`` in ``[0, size)``, as (start, end) pairs."""
    out: list[tuple[int, int]] = []
    at = 0
    for start, n in sorted(ALLOWED):
        if start > at:
            out.append((at, start))
        at = max(at, start + n)
    if at < size:
        out.append((at, size))
    return out


FORBIDDEN = _forbidden(LAY.shm_size)
_CANARIES = {(start, end): bytes([_CANARY]) * (end - start) for start, end in FORBIDDEN}

_EDGE32 = [0, 1, 2, 3, 4, 0x10, 0x1000, 0x4000, 0x8000, 0x10000, 0x7FFFF, 0x80000, 0x7FFF_FFFF,
           0xFFFF_FFFF, 0xFFFF_FFFC]


@cached
def _u32() -> st.SearchStrategy[int]:
    return st.one_of(pick(_EDGE32), st.integers(0, 0xFFFF_FFFF))


@st.composite
def _vdev(draw: st.DrawFn) -> bytes:
    """A vdev entry with edge values in every field (OpenAMP's shape by default)."""
    bo = NATIVE_BYTEORDER
    nvrings = draw(pick([2, 2, 2, 0, 1, 3, 255]))
    config_len = draw(pick([0, 0, 8, 0x10000, 0xFFFF_FFFF]))
    body = struct.pack(bo + "IIIIIBBBB", draw(pick([7, 7, 0, 3, 0xFFFF_FFFF])),
                       draw(pick([0, 1, 0xFFFF_FFFF])), draw(_u32()),
                       draw(pick([0, 0])), config_len,
                       draw(pick([0, 0, 0xFF])), nvrings, 0, 0)
    for i in range(min(nvrings, 4)):
        body += struct.pack(bo + "IIIII",
                            draw(pick([LAY.vring_da[i % 2], 0xFFFF_FFFF, 0x7F000,
                                                  0x10000, 0xFFFF_F000])),
                            draw(pick([0x1000, 0x1000, 0, 3, 0x8000_0000])),
                            draw(pick([256, 256, 0, 1, 3, 512, 0x8000, 0xFFFF_FFFF])),
                            draw(pick([1 + i, 1 + i, 0, 0xFFFF_FFFF])), 0)
    body += b"\0" * min(config_len, draw(pick([0, 8])))
    return rsc_entry(3, body, bo)


@st.composite
def _entries(draw: st.DrawFn) -> list[bytes]:
    bo = NATIVE_BYTEORDER
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(pick(["vdev", "vdev", "carveout", "trace", "devmem", "other"]))
        if kind == "vdev":
            out.append(draw(_vdev()))
        elif kind == "carveout":
            out.append(rsc_carveout(draw(_u32()), draw(pick([0x1000, 0, 0x100000])),
                                    "vdev0buffer" if draw(st.booleans()) else "x", byteorder=bo))
        elif kind == "trace":
            out.append(rsc_trace(draw(pick([0x50000, 0x7FF00, 0xFFFF_FF00])),
                                 draw(pick([0x100, 0, 0x10_0000])), "trace0",
                                 byteorder=bo))
        elif kind == "devmem":
            out.append(rsc_devmem(0x5000_0000, 0x5000_0000, 0x1000, "dev", byteorder=bo))
        else:
            out.append(rsc_entry(draw(pick([4, 128, 0xFFFF_FFFF])), bytes(8), bo))
    return out


def _table(entries: list[bytes], ver: int = 1) -> bytes:
    bo = NATIVE_BYTEORDER
    head = struct.pack(bo + "III", ver, len(entries), 0) + b"\0" * 4
    offsets = b""
    body = b""
    base = len(head) + 4 * len(entries)
    for e in entries:
        offsets += struct.pack(bo + "I", base + len(body))
        body += e
    return head + offsets + body


@st.composite
def tables(draw: st.DrawFn) -> bytes:
    """A table as a (possibly hostile) remote writes it: OpenAMP's own table with bytes or
    words changed, or one built from edge-valued entries, or random bytes."""
    kind = draw(pick(["seed", "seed", "built", "built", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=128))
    data = bytearray(SEED if kind == "seed" else _table(draw(_entries()),
                                                        draw(pick([1, 1, 1, 0, 2]))))
    for _ in range(draw(st.integers(0 if kind == "built" else 1, 3))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(pick(["flip", "word", "word", "cut"]))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "word":
            pos &= ~3
            data[pos : pos + 4] = struct.pack(NATIVE_BYTEORDER + "I", draw(_u32()))
        else:
            del data[pos:]
    return bytes(data[: LAY.rsc_max + 64])


class PeerTableHarness:
    """One host, one ``ProcessPlatform`` and the fake remote's file and socket, reused across
    tables (``run(table)`` is one case)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.shm_name = f"rproc-peerfuzz-{tag}.shm"
        self.sock_path = f"/tmp/rproc-peerfuzz-{tag}.sock"
        self.shm = ShmFile(self.shm_name, LAY.shm_size, create=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.host = Host([], panic_hook=False)
        self.platform = ProcessPlatform("peerfuzz", shm=self.shm_name, socket_path=self.sock_path,
                                        connect_timeout=2.0)
        self.rproc = self.platform.make_rproc(auto_boot=False, host=self.host)
        self.cases = 0
        self.attached = 0

    def close(self) -> None:
        try:
            self.rproc.close()
            self.host.close()
        finally:
            self.platform.close()
            self._accept_all()
            self.listener.close()
            self.shm.close()
            for path in (shm_path(self.shm_name), self.sock_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _accept_all(self) -> None:
        """Take and close the connections the host made (it has hung up on each already)."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.close()

    def run(self, table: bytes) -> RprocError | None:
        self.cases += 1
        view = self.shm.view
        view[: LAY.rsc_max] = b"\0" * LAY.rsc_max
        view[: len(table)] = table
        for (start, end), canary in _CANARIES.items():
            view[start:end] = canary
        written = bytes(view[: LAY.rsc_max])
        rp = self.rproc
        err: RprocError | None = None
        try:
            rp.boot()
        except RprocError as exc:
            err = exc
            assert exc.errno > 0, exc
            assert rp.state is State.DETACHED and rp.power == 0, (rp.state, rp.power, exc)
            assert rp.carveouts == [] and rp.rvdevs == [] and rp.traces == [], exc
            assert self.platform._sock is None and self.platform._reader is None, exc
        else:
            self.attached += 1
            assert rp.state is State.ATTACHED
            rp.detach()
            assert rp.state is State.DETACHED
            assert bytes(view[: LAY.rsc_max]) == written, "detach did not restore the table"
        finally:
            self._accept_all()
        for (start, end), canary in _CANARIES.items():
            assert view[start:end] == canary, \
                f"the host wrote into [{start:#x}, {end:#x}) of the shared file"
        return err


def expected_errno(err: RprocError | None) -> bool:
    """Refusals of a bad table are EINVAL (the table), ENOMEM/EBUSY/ENODEV/ENOSPC/EIO/E2BIG
    (resources the kernel cannot give it) as the kernel's handlers return them."""
    return err is None or err.errno in (errno.EINVAL, errno.ENOMEM, errno.EBUSY, errno.ENODEV,
                                        errno.ENOSPC, errno.EIO, errno.E2BIG, errno.EFAULT,
                                        errno.ERANGE, errno.ENOENT, errno.EEXIST)
