"""The kernel's remoteproc ABI as a directory tree: where each file lives under a root, how to
read and write it the way the kernel expects, and what to tell the user when it is missing.

Owns ``AbiRoot`` (a root directory: ``/`` on a board, the mount point of ``rprocd`` otherwise),
the attribute I/O helpers and ``explain`` (an ``OSError`` on an ABI file turned into an
``RprocError`` that says what is missing and what to do).

Rules:
- Only the kernel's own paths, relative to the root: ``sys/class/remoteproc/remoteprocN``,
  ``sys/kernel/debug/remoteproc/remoteprocN`` (debugfs), ``dev/remoteprocN`` (the cdev),
  ``sys/class/devcoredump/devcdN``, ``sys/bus/rpmsg/devices``, ``sys/class/rpmsg``,
  ``dev/rpmsg_ctrlN``, ``dev/rpmsgN`` and ``lib/firmware``. Nothing here knows about rprocd,
  so the same code runs unchanged on a board.
- An attribute is read with plain ``read()`` calls until EOF and written as the shell's
  ``echo -n word > file`` does: open with O_TRUNC (ignored by sysfs), exactly one ``write()`` of
  exactly the bytes given (the cdev compares the write's length, §3.1; sysfs takes
  one ``store`` per write).
- Every failure leaves this package as ``RprocError`` whose ``file`` is the path the user can
  look at and whose message names what is missing (no driver, no debugfs, no
  CONFIG_REMOTEPROC_CDEV, not root); the errno is the system call's.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

from remoteproc.client.base import explain, numbered
from remoteproc.client.rproc import RemoteProc
from remoteproc.errors import RprocError

__all__ = ["AbiRoot"]

class AbiRoot:
    """The remoteproc ABI under ``root`` (``/`` on a board, rprocd's mount point otherwise).

    ``AbiRoot("/mnt/rproc").processors()`` lists ``RemoteProc`` objects;
    ``processor("m4")`` finds one by index, device name or firmware-independent ``name``.
    ``firmware_dir`` defaults to ``ROOT/lib/firmware``, where the kernel looks for images.
    ``console_reader(proc)``, when given, returns a processor's console output (the kernel's
    ABI has no console; an emulated machine does): ``RemoteProc.expect(source="console")``.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *,
                 firmware_dir: str | os.PathLike[str] | None = None,
                 console_reader: Callable[[RemoteProc], str] | None = None) -> None:
        self.root = Path(root)
        self.class_dir = self.root / "sys/class/remoteproc"
        self.debugfs = self.root / "sys/kernel/debug"
        self.debugfs_dir = self.debugfs / "remoteproc"
        self.dev_dir = self.root / "dev"
        self.devcoredump_dir = self.root / "sys/class/devcoredump"
        self.rpmsg_bus_dir = self.root / "sys/bus/rpmsg/devices"
        self.rpmsg_class_dir = self.root / "sys/class/rpmsg"
        self.firmware_dir = (Path(firmware_dir) if firmware_dir is not None
                             else self.root / "lib/firmware")
        self.console_reader = console_reader
        # (dev_name, source) -> the output ``RemoteProc.expect`` has consumed
        self.expect_cursors: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"AbiRoot({str(self.root)!r})"

    # -- what is there

    def _no_class_hint(self) -> str:
        if self.root == Path("/"):
            return ("no remote processors: /sys/class/remoteproc does not exist (no remoteproc "
                    "platform driver is loaded on this kernel; to try without a board run "
                    "`rproc up` and pass --root MOUNTPOINT)")
        return (f"no remote processors under {self.root}: is rprocd mounted there? "
                f"(start it with `rproc up --mount {self.root}`)")

    def processors(self) -> list[RemoteProc]:
        """Every ``remoteprocN`` in index order; RprocError(ENOENT) without the class."""
        if not self.class_dir.is_dir():
            raise RprocError(errno.ENOENT, self._no_class_hint(), file=str(self.class_dir))
        return [RemoteProc(self, n) for n, _ in numbered(self.class_dir, "remoteproc")]

    def processor(self, which: str | int | None = None) -> RemoteProc:
        """``0``, ``"0"``, ``"remoteproc0"`` or a processor ``name``; None means "the only one"."""
        procs = self.processors()
        if not procs:
            raise RprocError(errno.ENODEV, "no remote processor is registered",
                             file=str(self.class_dir))
        if which is None:
            if len(procs) == 1:
                return procs[0]
            raise RprocError(errno.EINVAL, "several processors: name one of "
                             + self._choices(procs), file=str(self.class_dir))
        text = str(which)
        m = re.fullmatch(r"(?:remoteproc)?(\d+)", text)
        if m:
            for p in procs:
                if p.index == int(m.group(1)):
                    return p
        for p in procs:
            try:
                if p.name == text:
                    return p
            except RprocError:
                continue
        raise RprocError(errno.ENODEV, f"no processor {text!r}: choose one of "
                         + self._choices(procs), file=str(self.class_dir))

    @staticmethod
    def _choices(procs: list[RemoteProc]) -> str:
        names = []
        for p in procs:
            try:
                names.append(f"{p.dev_name} ({p.name})")
            except RprocError:
                names.append(p.dev_name)
        return ", ".join(names)

    def require_debugfs(self) -> Path:
        """``ROOT/sys/kernel/debug/remoteproc``, or an error saying why it is not there."""
        try:
            if self.debugfs_dir.is_dir():
                return self.debugfs_dir
            os.listdir(self.debugfs)  # EACCES for non-root: debugfs is 0700
        except PermissionError as exc:
            raise explain(exc, self.debugfs, "open") from None
        except FileNotFoundError:
            pass
        mounted = self.debugfs.is_dir() and any(True for _ in os.scandir(self.debugfs))
        if not mounted:
            raise RprocError(errno.ENOENT,
                             "debugfs is not mounted there (crash injection, traces and the "
                             "resource table live in debugfs): mount -t debugfs none "
                             "/sys/kernel/debug", file=str(self.debugfs))
        raise RprocError(errno.ENOENT, "debugfs is mounted but has no remoteproc directory "
                         "(the remoteproc core is not loaded)", file=str(self.debugfs_dir))

    def numbered(self, directory: Path, prefix: str) -> list[tuple[int, Path]]:
        return numbered(directory, prefix)

    def mount_type(self) -> str | None:
        """The filesystem type mounted exactly at the root (``fuse.rprocd``...), from
        ``/proc/self/mountinfo``; None when the root is not a mount point of its own."""
        want = os.path.realpath(self.root)
        found = None
        try:
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                for line in f:
                    left, _, right = line.partition(" - ")
                    fields = left.split()
                    if len(fields) > 4 and _unescape(fields[4]) == want:
                        found = right.split()[0] if right else None
        except OSError:
            return None
        return found

    def state_change_notifies(self) -> bool:
        """Does ``poll()`` on a ``state`` file wake when the state changes? rprocd notifies as
        ``sysfs_notify`` would; the kernel's remoteproc never calls sysfs_notify on ``state``."""
        kind = self.mount_type()
        return kind is not None and kind.startswith("fuse") and kind.endswith("rprocd")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal ``\\040``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
