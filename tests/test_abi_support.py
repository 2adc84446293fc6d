"""Shared helpers for the ABI tests (no tests here): a host of sim processors mounted with its
ABI tree, and small syscall helpers that return the errno instead of raising."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.firmware.rsc_table import FW_RSC_ADDR_ANY, TableBuilder
from remoteproc.platforms.sim import SimPlatform, build_image

TABLE_DA = 0x0000_8000
TRACE_DA = 0x2000_0100


def table(*, vdev: bool = False) -> bytearray:
    tb = TableBuilder()
    tb.add_carveout(FW_RSC_ADDR_ANY, 0, 0x2000, name="heap")
    tb.add_trace(TRACE_DA, 0x100, name="trace0")
    if vdev:
        tb.add_vdev(7, 0, 1, vrings=[(FW_RSC_ADDR_ANY, 16, 16, 0, 0)] * 2)
    return tb.build()


def image(*, vdev: bool = False, trace_text: bytes = b"booted\0garbage") -> bytes:
    return build_image([(0x0, b"\xaa" * 256), (TRACE_DA, trace_text)],
                       rsc_table=table(vdev=vdev), rsc_da=TABLE_DA, entry=0x101)


@dataclass
class Abi:
    root: Path
    host: Host
    fwdir: Path
    sims: dict[str, SimPlatform] = field(default_factory=dict)
    tree: AbiTree | None = None

    def rproc(self, n: int) -> Rproc:
        return self.host.get(n)

    def sys(self, n: int, attr: str) -> Path:
        return self.root / f"sys/class/remoteproc/remoteproc{n}/{attr}"

    def dbg(self, n: int, attr: str) -> Path:
        return self.root / f"sys/kernel/debug/remoteproc/remoteproc{n}/{attr}"

    def dev(self, name: str) -> Path:
        return self.root / "dev" / name

    def sh(self, cmd: str) -> subprocess.CompletedProcess[str]:
        """A shell command with ``$R`` set to the mount point (the seed commands' root)."""
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=20,
                              env={**os.environ, "R": str(self.root)})


@contextlib.contextmanager
def mounted_host(tmp_path: Path, procs: list[tuple[str, dict[str, object]]],
                 *, rpmsg: bool = True) -> Iterator[Abi]:
    """Mount a host whose processors are ``(name, options)``: options ``state`` (DETACHED
    preloads an image), ``sim`` (SimPlatform keyword arguments), ``vdev`` (an rpmsg vdev in the
    image), other keys go to ``make_rproc``."""
    fwdir = tmp_path / "firmware"
    fwdir.mkdir(exist_ok=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        host = Host([fwdir], panic_hook=False)
        stack.callback(host.close)
        abi = Abi(mnt, host, fwdir)
        for name, opts in procs:
            opts = dict(opts)
            sim_kw = dict(opts.pop("sim", {}))  # type: ignore[call-overload]
            sim = SimPlatform(name, **sim_kw)
            stack.callback(sim.close)
            img = image(vdev=bool(opts.pop("vdev", False)))
            (fwdir / f"rproc-{name}-fw").write_bytes(img)
            state = opts.pop("state", State.OFFLINE)
            if state is State.DETACHED:
                sim.preload(img)
            opts.setdefault("auto_boot", False)
            sim.make_rproc(name, state=state, host=host, **opts)  # type: ignore[arg-type]
            abi.sims[name] = sim
        tree = AbiTree(host, rpmsg=rpmsg)
        # LIFO: unmount first, then the tree, then the host stops the processors.
        stack.callback(tree.close)
        abi.tree = tree
        stack.enter_context(Mount(tree.root, mnt))
        yield abi


def write_errno(path: Path | str, data: bytes, flags: int = os.O_WRONLY) -> int:
    """0 if one ``write()`` of ``data`` took all of it, else the errno (open's or write's)."""
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return exc.errno or -1
    try:
        n = os.write(fd, data)
        assert n == len(data), (n, len(data))
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(fd)


def read_text(path: Path | str) -> str:
    with open(path, "rb", buffering=0) as f:
        out = b""
        while True:
            chunk = f.read(4096)
            if not chunk:
                return out.decode()
            out += chunk


def wait_until(pred: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()
