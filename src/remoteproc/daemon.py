"""``rprocd``: register a machine's remote processors and serve the kernel's userspace ABI for
them under a directory, in the foreground, until SIGTERM, SIGINT or SIGHUP.

    rprocd --mount DIR [--machine FILE] [--firmware-dir DIR] [--sim NAME]... [-v]

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
import logging
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from remoteproc.abi.fs import Mount
from remoteproc.abi.tree import AbiTree
from remoteproc.core.events import Event
from remoteproc.core.host import Host
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator import EmulatorPlatform, load_machine
from remoteproc.platforms.emulator.machine import DEFAULT_MACHINE, MachineSpec

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


class Daemon:
    """One rprocd run. ``start()`` then ``wait()`` / ``stop()``; a context manager."""

    def __init__(self, mount: Path, *, machine: Path | None = None,
                 firmware_dir: Path | None = None, sims: Sequence[str] = (),
                 spec: MachineSpec | None = None, search: Sequence[Path] = (),
                 subscriber: Callable[[Event], None] | None = None) -> None:
        """``spec`` replaces ``machine`` by an already parsed description (the pytest plugin
        changes a core's firmware in it); ``search`` adds firmware folders after
        ``firmware_dir`` and before the bundled one; ``subscriber`` gets every host event from
        before the first processor registers (so auto-boots are seen too)."""
        self.subscriber = subscriber
        self.mountpoint = mount
        self.machine_path = machine
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
        self.firmware_dir.mkdir(parents=True, exist_ok=True)
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
            for name in self.sims:
                sim = SimPlatform(name)
                self._sim_platforms.append(sim)
                host.add_firmware(f"rproc-{name}-fw", img)
                sim.make_rproc(name, host=host, auto_boot=False)
        elif self.spec is not None:
            platform = EmulatorPlatform(self.spec, firmware_dirs=[self.firmware_dir,
                                                                  *self.search])
            self.machine = platform
            platform.register(host)
        else:
            self.machine = load_machine(self.machine_path or DEFAULT_MACHINE, host)
        self.mount = Mount(self.tree.root, self.mountpoint).start()

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
    p.add_argument("--mount", required=True, type=Path, metavar="DIR",
                   help="where to mount the tree (created if missing)")
    p.add_argument("--machine", type=Path, metavar="FILE",
                   help=f"machine description (default: the bundled virtual SoC, "
                        f"{DEFAULT_MACHINE.name})")
    p.add_argument("--firmware-dir", type=Path, metavar="DIR",
                   help="firmware search folder, linked as lib/firmware "
                        "(default: a temporary folder removed at exit)")
    p.add_argument("--sim", action="append", default=[], metavar="NAME",
                   help="add an in-memory processor NAME instead of a machine (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="rprocd: %(name)s: %(message)s")
    daemon = Daemon(args.mount, machine=args.machine, firmware_dir=args.firmware_dir,
                    sims=args.sim)

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
        print(f"rprocd: serving {len(daemon.host)} processors at {daemon.mountpoint}",
              flush=True)
        daemon.wait()
        return 0
    finally:
        daemon.stop()
        for s, h in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
