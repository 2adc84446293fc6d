"""``rprocd``: register a machine's remote processors and serve the kernel's userspace ABI for
them under a directory, in the foreground, until SIGTERM, SIGINT or SIGHUP.

    rprocd --mount DIR [--machine NAME|FILE] [--symbols CORE=FILE]... [--firmware-dir DIR]
           [--sim NAME]... [-v]
    rprocd [--mount DIR] ... --run -- PROGRAM [ARGS]   (start, run PROGRAM under `rproc run`,
                                                        stop; PROGRAM's exit status)

Owns ``Daemon`` (the host, the machine, the ABI tree, the mount, and their shutdown order) and
``main`` (the console script).

Rules:
- Start order: signal handlers first (so libfuse, which only claims signals still at their
  default, leaves SIGTERM/SIGINT/SIGHUP to us), then the host and its processors, then the ABI
  tree (its rpmsg drivers bind channels as they appear), then the mount. Once mounted and the
  auto-boots are done, a line ``rprocd: serving <N> processors at DIR`` goes to stdout (scripts
  wait for it).
- Stop order, on a signal or an error: every processor is stopped and unregistered
  (``Host.close``: whatever the power count), the machine is closed, then the tree, then the
  mount is unmounted (lazily, aborting the FUSE connection, when files are still open). Exit
  status 0 after a signal.
- ``--machine`` defaults to the bundled virtual SoC
  (``platforms/emulator/machines/default.toml``), built by
  the emulator platform; ``--sim NAME`` (repeatable) adds an in-memory processor instead, with a
  sim firmware image, which needs no emulator (tests, benchmarks, trying the ABI out).
- The firmware search path is ``--firmware-dir`` (``lib/firmware`` in the mount links to it;
  a temporary folder removed at exit by default) followed by the bundled firmware folder.
- Threads: the main thread waits for the stop signal; the mount owns the FUSE thread, the host
  its work queue. Signal handlers only set an event.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from remoteproc.abi.devices import PlatformInfo, SocInfo, default_platform
from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.client.launch import clear_stale_mount
from remoteproc.core.events import Event
from remoteproc.core.host import Host
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import EmulatorPlatform, load_machine
from remoteproc.platforms.emulator.machine import (
    DEFAULT_MACHINE,
    CoreSpec,
    MachineSpec,
    load_machine_spec,
    resolve_machine,
)

if TYPE_CHECKING:
    from remoteproc.platforms.sim import SimPlatform

__all__ = ["DEFAULT_MACHINE", "Daemon", "load_machine", "main", "sim_image"]

log = logging.getLogger("remoteproc.rprocd")

_DATA = Path(__file__).resolve().parent / "data"
BUNDLED_FIRMWARE = _DATA / "firmware"
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def sim_image() -> bytes:
    """A sim firmware image with a carveout and a trace buffer that reads "hello from sim"."""
    from remoteproc.firmware.rsc_table import FW_RSC_ADDR_ANY, TableBuilder
    from remoteproc.platforms.sim import build_image

    tb = TableBuilder()
    tb.add_carveout(FW_RSC_ADDR_ANY, 0, 0x2000, name="heap")
    tb.add_trace(0x2000_0100, 0x100, name="trace0")
    return build_image([(0x0, b"\0" * 256), (0x2000_0100, b"hello from sim\n\0")],
                       rsc_table=tb.build(), rsc_da=0x8000, entry=0x101)


# Kernel file systems a FUSE mount must not go onto (mounting over /proc/self hides a process's
# own view of itself; the kernel refuses most of these anyway, with a confusing errno).
_KERNEL_FS = ("proc", "sysfs", "debugfs", "tracefs", "cgroup", "cgroup2", "securityfs",
              "devpts", "mqueue", "bpf", "pstore", "configfs", "fusectl", "binfmt_misc")


def _fs_type(path: Path) -> str | None:
    """The type of the file system ``path`` lives on (longest mount point prefix)."""
    real = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mnt = fields[4].replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, right.split()[0]
    except OSError:
        return None
    return kind


def _check_mountpoint(path: Path) -> None:
    kind = _fs_type(path)
    if kind in _KERNEL_FS:
        raise RprocError(errno.EINVAL, f"cannot mount there: it is inside {kind}, a kernel file "
                         "system; choose an empty folder such as /tmp/rproc", file=str(path))


def machine_platform(core: CoreSpec) -> PlatformInfo:
    """A core's platform device as the machine description names it (a DT device)."""
    node = core.node or core.name
    return PlatformInfo(core.platform_device, core.driver, of_name=node,
                        of_fullname=f"/soc/{node}@{core.unit_address:x}",
                        compatible=(core.compatible,))


class Daemon:
    """One rprocd run. ``start()`` then ``wait()`` / ``stop()``; a context manager."""

    def __init__(self, mount: Path, *, machine: Path | str | None = None,
                 firmware_dir: Path | None = None, sims: Sequence[str] = (),
                 symbols: dict[str, str] | None = None, spec: MachineSpec | None = None,
                 search: Sequence[Path] = (),
                 subscriber: Callable[[Event], None] | None = None) -> None:
        """``spec`` replaces ``machine`` by an already parsed description (the pytest plugin
        changes a core's firmware in it); ``search`` adds firmware folders after
        ``firmware_dir`` and before the bundled one; ``subscriber`` gets every host event from
        before the first processor registers (so auto-boots are seen too)."""
        self.subscriber = subscriber
        self.mountpoint = mount
        self.machine_path = machine
        self.symbols = dict(symbols or {})
        self.spec = spec
        self.search = list(search)
        self.sims = list(sims)
        self._tmp_fw: Path | None = None
        if firmware_dir is None:
            self._tmp_fw = Path(tempfile.mkdtemp(prefix="rprocd-firmware-"))
            firmware_dir = self._tmp_fw
        self.firmware_dir = firmware_dir
        self.stop_event = threading.Event()
        self.host: Host | None = None
        self.machine: EmulatorPlatform | None = None
        self.tree: AbiTree | None = None
        self.mount: Mount | None = None
        self._sim_platforms: list[SimPlatform] = []
        self._stopped = False

    def start(self) -> Daemon:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.firmware_dir.exists() and not self.firmware_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(self.firmware_dir))
        if not self.firmware_dir.exists():
            # Never created behind the user's back (as root, a typo would make a folder).
            raise RprocError(errno.ENOENT, "firmware folder does not exist: create it or name "
                             "another one", file=str(self.firmware_dir))
        stale = clear_stale_mount(self.mountpoint)
        if stale is not None:
            log.warning("%s", stale)
        _check_mountpoint(self.mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        host = self.host = Host([self.firmware_dir, *self.search, BUNDLED_FIRMWARE])
        # rprocd stops every processor itself on SIGTERM/SIGINT/SIGHUP; the panic hook covers an
        # exit that does not go through that path.
        host.install_panic_hook(sigterm=False)
        if self.subscriber is not None:
            host.subscribe(self.subscriber)
        # The tree first: its rpmsg drivers must be registered before channels appear.
        self.tree = AbiTree(host)
        if self.sims:
            from remoteproc.platforms.sim import SimPlatform

            img = sim_image()
            pdevs: dict[str, PlatformInfo] = {}
            for i, name in enumerate(self.sims):
                sim = SimPlatform(name)
                self._sim_platforms.append(sim)
                host.add_firmware(f"rproc-{name}-fw", img)
                pdevs[name] = PlatformInfo(f"sim-rproc.{i}", "sim-rproc")
                self.tree.model.platform_of = (
                    lambda r: pdevs.get(r.name) or default_platform(r))
                sim.make_rproc(name, host=host, auto_boot=False)
        elif self.spec is not None:
            self._describe(self.spec)
            platform = EmulatorPlatform(self.spec, firmware_dirs=[self.firmware_dir,
                                                                  *self.search])
            self.machine = platform
            platform.register(host)
        else:
            self._describe(load_machine_spec(resolve_machine(self.machine_path
                                                             or DEFAULT_MACHINE)))
            self.machine = load_machine(self.machine_path or DEFAULT_MACHINE, host,
                                        symbols=self.symbols)
        self.mount = Mount(self.tree.root, self.mountpoint).start()

    def _describe(self, spec: MachineSpec) -> None:
        """The SoC device and each core's platform device, from the machine description, set
        before any processor registers (so the device model names them from the start)."""
        assert self.tree is not None
        self.tree.model.soc = SocInfo(spec.model, spec.family, spec.soc_id, spec.revision)
        by_name = {c.name: machine_platform(c) for c in spec.cores}
        self.tree.model.platform_of = lambda r: by_name.get(r.name) or default_platform(r)

    def wait(self) -> None:
        # A timed wait keeps the main thread responsive to signals.
        while not self.stop_event.wait(0.5):
            pass

    def stop(self) -> None:
        """Stop every processor, then unmount. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self.host is not None:
            for rproc in list(self.host):
                log.info("%s: stopping (%s)", rproc.dev_name, rproc.state.sysfs)
            self.host.close()
        if self.machine is not None:
            close = getattr(self.machine, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing the machine failed")
        for sim in self._sim_platforms:
            sim.close()
        if self.tree is not None:
            self.tree.close()
        if self.mount is not None:
            self.mount.close()
        if self._tmp_fw is not None:
            shutil.rmtree(self._tmp_fw, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rprocd",
        description="Run remote processors and serve the Linux remoteproc/rpmsg userspace ABI "
                    "(sysfs, debugfs, /dev/remoteprocN, /dev/rpmsg*, /dev/ttyRPMSG*) under "
                    "a FUSE mount, in the foreground, until SIGTERM, SIGINT or SIGHUP.")
    p.add_argument("--mount", type=Path, metavar="DIR",
                   help="where to mount the tree (created if missing; with --run, a "
                        "temporary folder by default)")
    p.add_argument("--machine", metavar="NAME|FILE",
                   help="a bundled machine's name (`rproc machines` lists them: default, "
                        "stm32mp157, stm32mp257, stm32mp215) or a machine description file "
                        f"(default: the bundled virtual SoC, {DEFAULT_MACHINE.name})")
    p.add_argument("--symbols", action="append", default=[], metavar="CORE=FILE",
                   help="take CORE's function names from FILE (a stripped image's unstripped "
                        "twin; without it, the twin is looked for beside the image; repeatable)")
    p.add_argument("--firmware-dir", type=Path, metavar="DIR",
                   help="firmware search folder, linked as lib/firmware "
                        "(default: a temporary folder removed at exit)")
    p.add_argument("--sim", action="append", default=[], metavar="NAME",
                   help="add an in-memory processor NAME instead of a machine (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--run", action="store_true",
                   help="-- PROGRAM [ARGS]: once serving, run PROGRAM with the trees at /sys, "
                        "/dev and /lib/firmware (`rproc run`), then stop; the exit status is "
                        "PROGRAM's")
    return p


def _run_program(mount: Path, argv: list[str], stop: threading.Event) -> int:
    """``rproc run --root MOUNT -- argv`` in a fresh process (namespaces need one thread).
    A stop signal to rprocd (``stop`` set) is passed on to the program as SIGTERM; rprocd
    stops once the program has exited."""
    cmd = [sys.executable, "-m", "remoteproc.cli", "run", "--root", str(mount), "--", *argv]
    # The same package as ours, wherever the working directory went (libfuse moves it to /).
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, env=env)
    forwarded = False
    while True:
        try:
            status = proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if stop.is_set() and not forwarded:
                proc.send_signal(signal.SIGTERM)
                forwarded = True
    return 128 - status if status < 0 else status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_argv: list[str] | None = None
    if "--run" in argv:
        # everything after --run (and an optional --) is the program's, untouched
        at = argv.index("--run")
        argv, run_argv = argv[:at + 1], argv[at + 1:]
        if run_argv[:1] == ["--"]:
            run_argv = run_argv[1:]
    args = _parser().parse_args(argv)
    if run_argv is not None:
        if not run_argv:
            print("rprocd: --run needs a program (rprocd --run -- PROGRAM [ARGS])",
                  file=sys.stderr)
            return 2
    elif args.mount is None:
        print("rprocd: --mount DIR is required (or --run -- PROGRAM)", file=sys.stderr)
        return 2
    tmp_mount: Path | None = None
    if args.mount is None:
        tmp_mount = Path(tempfile.mkdtemp(prefix="rprocd-mount-"))
        args.mount = tmp_mount
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="rprocd: %(name)s: %(message)s")
    symbols: dict[str, str] = {}
    for item in args.symbols:
        core, sep, path = item.partition("=")
        if not sep or not core or not path:
            print(f"rprocd: --symbols {item}: expected CORE=FILE", file=sys.stderr)
            return 2
        symbols[core] = path
    daemon = Daemon(args.mount, machine=args.machine, firmware_dir=args.firmware_dir,
                    sims=args.sim, symbols=symbols)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop_event.set()

    previous = {s: signal.signal(s, on_signal) for s in _SIGNALS}
    try:
        try:
            daemon.start()
        except RprocError as exc:
            print(f"rprocd: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # e.g. --mount or --firmware-dir naming a file
            where = f"{exc.filename}: " if exc.filename is not None else ""
            why = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
            print(f"rprocd: {where}{why or exc}", file=sys.stderr)
            return 1
        assert daemon.host is not None
        # Auto-boots run on the host's work queue; announce readiness only once they are done,
        # so a script's first `echo start` meets a settled state instead of racing the boot
        # (a start during an auto-boot would only raise the power count).
        daemon.host.workqueue.flush(timeout=30)
        # With --run, stdout is the program's alone.
        print(f"rprocd: serving {len(daemon.host)} processors at {daemon.mountpoint}",
              flush=True, file=sys.stderr if run_argv is not None else sys.stdout)
        if run_argv is not None:
            return _run_program(daemon.mountpoint, run_argv, daemon.stop_event)
        daemon.wait()
        return 0
    finally:
        daemon.stop()
        for s, h in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)
        if tmp_mount is not None:
            with contextlib.suppress(OSError):
                tmp_mount.rmdir()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
