"""Shared helpers for the ABI tests (no tests here): a host of sim processors with its ABI tree,
served either in-process (``abi_host(..., fuse=False)``: ``abi/fs.py``'s operations called
directly, see ``abi_inproc``) or over a real FUSE mount (``mounted_host``), and small syscall
helpers that return the errno instead of raising.

A test written against ``abi.fs`` and ``abi.write_errno``/``abi.read_text`` runs either way; the
in-process way is the default for errno, format and bind-rule checks (fast, no /dev/fuse), the
mount is kept for what only a kernel can show (shell commands, signals, other processes, SIGKILL,
real poll/ioctl system calls)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from abi_inproc import INPROC_ROOT, NodeFs, OsFs
from conftest import wait_until
from rpmsg_pair import RpmsgPair

from remoteproc.abi.fs import Mount
from remoteproc.abi.node import Node
from remoteproc.abi.tree import AbiTree
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.firmware.rsc_table import FW_RSC_ADDR_ANY, TableBuilder
from remoteproc.platforms.sim import SimPlatform, build_image
from remoteproc.rpmsg.remote import RpmsgRemote

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
    fs: NodeFs | OsFs = field(default_factory=lambda: OsFs(Path("/")))

    @property
    def fuse(self) -> bool:
        return isinstance(self.fs, OsFs)

    def write_errno(self, path: Path | str, data: bytes, flags: int = os.O_WRONLY) -> int:
        """``write_errno`` through this ABI's filesystem."""
        return write_errno(path, data, flags, fs=self.fs)

    def read_bytes(self, path: Path | str) -> bytes:
        return read_bytes(path, self.fs)

    def read_text(self, path: Path | str) -> str:
        return self.read_bytes(path).decode()

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


def serve(stack: contextlib.ExitStack[None], root: Node, tmp_path: Path, *, fuse: bool,
          ) -> NodeFs | OsFs:
    """Serve ``root`` until ``stack`` closes: mounted at ``tmp_path/mnt`` (FUSE) or
    in-process; the in-process one releases what a test left open, as an unmount does."""
    if fuse:
        mnt = tmp_path / "mnt"
        mnt.mkdir(exist_ok=True)
        stack.enter_context(Mount(root, mnt))
        return OsFs(mnt)
    fs = NodeFs(root)
    stack.callback(fs.close_all)
    return fs


@contextlib.contextmanager
def abi_host(tmp_path: Path, procs: list[tuple[str, dict[str, object]]],
             *, rpmsg: bool = True, fuse: bool = False) -> Iterator[Abi]:
    """A host whose processors are ``(name, options)`` with its ABI tree, in-process or
    mounted (``fuse``): options ``state`` (DETACHED preloads an image), ``sim`` (SimPlatform
    keyword arguments), ``vdev`` (an rpmsg vdev in the image), other keys go to
    ``make_rproc``."""
    fwdir = tmp_path / "firmware"
    fwdir.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        host = Host([fwdir], panic_hook=False)
        stack.callback(host.close)
        abi = Abi(INPROC_ROOT, host, fwdir)
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
        abi.fs = serve(stack, tree.root, tmp_path, fuse=fuse)
        if fuse:
            abi.root = tmp_path / "mnt"
        yield abi


@contextlib.contextmanager
def mounted_host(tmp_path: Path, procs: list[tuple[str, dict[str, object]]],
                 *, rpmsg: bool = True) -> Iterator[Abi]:
    """``abi_host`` over a real FUSE mount at ``tmp_path/mnt``."""
    with abi_host(tmp_path, procs, rpmsg=rpmsg, fuse=True) as abi:
        yield abi


@dataclass
class RpmsgAbi:
    """A host whose rpmsg bus talks to a Python remote (``rpmsg_pair.RpmsgPair``, thread mode,
    16 buffers each way), with its ABI tree served in-process or mounted."""

    root: Path
    fs: NodeFs | OsFs
    pair: RpmsgPair
    tree: AbiTree
    host: Host


@contextlib.contextmanager
def rpmsg_host(tmp_path: Path, remote_setup: Callable[[RpmsgRemote], None], *,
               fuse: bool = False, devices: Iterable[str] = ("rpmsg0",)) -> Iterator[RpmsgAbi]:
    """``remote_setup`` creates the remote's endpoints; returns once ``devices`` are in dev/."""
    with contextlib.ExitStack() as stack:
        host = Host([], panic_hook=False)
        stack.callback(host.close)
        tree = AbiTree(host)
        stack.callback(tree.close)
        pair = RpmsgPair(num=16, mode="thread", start=False, remote_setup=remote_setup)
        stack.callback(pair.close)
        pair.start()
        fs = serve(stack, tree.root, tmp_path, fuse=fuse)
        root = tmp_path / "mnt" if fuse else INPROC_ROOT
        want = set(devices)
        wait_until(lambda: want <= set(fs.listdir(root / "dev")), what=f"{sorted(want)} in dev/")
        yield RpmsgAbi(root, fs, pair, tree, host)


def read_bytes(path: Path | str, fs: NodeFs | OsFs | None = None) -> bytes:
    """The whole file, read as ``cat`` does (4 KiB reads until one returns nothing)."""
    fs = fs or OsFs(Path("/"))
    fd = fs.open(path, os.O_RDONLY)
    try:
        out = b""
        while chunk := fs.read(fd, 4096):
            out += chunk
        return out
    finally:
        fs.close(fd)


def write_errno(path: Path | str, data: bytes, flags: int = os.O_WRONLY, *,
                fs: NodeFs | OsFs | None = None) -> int:
    """0 if one ``write()`` of ``data`` took all of it, else the errno (open's or write's)."""
    fs = fs or OsFs(Path("/"))
    try:
        fd = fs.open(path, flags)
    except OSError as exc:
        return exc.errno or -1
    try:
        n = fs.write(fd, data)
        assert n == len(data), (n, len(data))
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        fs.close(fd)


def read_text(path: Path | str) -> str:
    with open(path, "rb", buffering=0) as f:
        out = b""
        while True:
            chunk = f.read(4096)
            if not chunk:
                return out.decode()
            out += chunk


__all__ = ["Abi", "RpmsgAbi", "abi_fixture", "abi_host", "image", "mounted_host", "read_bytes",
           "read_text", "rpmsg_host", "serve", "table", "uses_fuse", "wait_until", "write_errno"]


def abi_fixture(procs: list[tuple[str, dict[str, object]]], *, rpmsg: bool = False,
                fuse: bool | None = None) -> Any:
    """A module's ``abi`` fixture over ``procs`` (``abi = abi_fixture(PROCS)``): in-process
    unless ``fuse`` (or, when ``fuse`` is None, as ``uses_fuse`` says for the test)."""

    @pytest.fixture
    def abi(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Abi]:
        mount = uses_fuse(request) if fuse is None else fuse
        with abi_host(tmp_path, procs, rpmsg=rpmsg, fuse=mount) as a:
            yield a

    return abi


def uses_fuse(request: pytest.FixtureRequest) -> bool:
    """For an ABI fixture: a real mount when parametrized "fuse" (``indirect=True``) or when
    the test is marked ``fuse``; in-process otherwise."""
    mode = getattr(request, "param", None)
    if mode is not None:
        assert mode in ("inproc", "fuse"), mode
        return bool(mode == "fuse")
    return request.node.get_closest_marker("fuse") is not None
