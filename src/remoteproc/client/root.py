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
from types import TracebackType
from typing import TYPE_CHECKING, Self

from remoteproc.errors import RprocError

if TYPE_CHECKING:
    from remoteproc.client.rproc import RemoteProc

__all__ = [
    "AbiRoot",
    "explain",
    "read_attr",
    "read_bytes",
    "write_attr",
]

_RPROC_RE = re.compile(r"remoteproc(\d+)$")


def explain(exc: OSError, path: Path, doing: str, hint: str | None = None) -> RprocError:
    """``exc`` from ``doing`` (``"read"``, ``"write 'start' to"``...) on ``path`` as an
    ``RprocError`` a user can act on; ``hint`` replaces the generic advice for ENOENT."""
    code = exc.errno or errno.EIO
    reason = os.strerror(code)
    if code in (errno.EACCES, errno.EPERM):
        if os.geteuid() != 0:
            advice = "permission denied: run as root (sudo)"
        else:
            advice = ("permission denied even for root: the platform driver made this file "
                      "read-only (sysfs_read_only)")
        return RprocError(code, f"cannot {doing} it: {advice}", file=str(path))
    if code == errno.ENOENT:
        return RprocError(code, hint or f"cannot {doing} it: it does not exist", file=str(path))
    return RprocError(code, f"cannot {doing} it: {reason}", file=str(path))


def read_bytes(path: Path, doing: str = "read", hint: str | None = None) -> bytes:
    """The whole file, read with ``read()`` calls until EOF (sysfs and debugfs report no size)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise explain(exc, path, doing, hint) from None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise explain(exc, path, doing, hint) from None
    finally:
        os.close(fd)


def read_attr(path: Path, hint: str | None = None) -> str:
    """A sysfs/debugfs text attribute without its trailing newline."""
    return read_bytes(path, "read", hint).decode("utf-8", "replace").rstrip("\n")


def write_attr(path: Path, data: bytes, hint: str | None = None,
               why: Callable[[int], str | None] | None = None) -> None:
    """One ``write()`` of exactly ``data``; the kernel's errno comes back as ``RprocError``.

    ``why(errno)`` may explain an error of the write itself (the kernel refusing the request,
    as opposed to the file being absent or forbidden); its text becomes the message."""
    doing = f"write {data.decode('utf-8', 'replace').rstrip()!r} to"
    try:
        # O_TRUNC as the shell's `echo word > file`: sysfs and debugfs ignore it
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        raise explain(exc, path, doing, hint) from None
    try:
        written = os.write(fd, data)
    except OSError as exc:
        text = why(exc.errno) if why is not None and exc.errno else None
        if text:
            raise RprocError(exc.errno or errno.EIO, text, file=str(path)) from None
        raise explain(exc, path, doing, hint) from None
    finally:
        os.close(fd)
    if written != len(data):
        raise RprocError(errno.EIO, f"short write: {written} of {len(data)} bytes", file=str(path))


def _numbered(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """``prefixN`` entries of ``directory`` sorted by N (``remoteproc10`` after ``remoteproc9``)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), directory / name))
    return sorted(found)


def _innermost_rproc(parts: tuple[str, ...]) -> str | None:
    owner = None
    for part in parts:
        if _RPROC_RE.match(part):
            owner = part  # the innermost remoteprocN on the path
    return owner


def owner_rproc(entry: Path) -> str | None:
    """The ``remoteprocN`` a sysfs device belongs to, or None when sysfs does not say.

    On a board a class entry (``/sys/class/rpmsg/rpmsg0``) or a bus entry is a link into
    ``/sys/devices/.../remoteprocN/...``, and a ``device`` link inside an entry
    (devcoredump's ``failing_device`` is such a link itself) leads there too. Both are
    followed to their real path; only the part below the entry's own directory counts, so a
    root that happens to contain "remoteproc0" in its name cannot fool it."""
    base = os.path.realpath(entry.parent)
    for candidate in (entry, entry / "device"):
        if not os.path.islink(candidate):
            continue
        real = os.path.realpath(candidate)
        rel = os.path.relpath(real, os.path.commonpath([real, base]))
        owner = _innermost_rproc(Path(rel).parts)
        if owner is not None:
            return owner
        # a relative link whose target is outside this tree (a fake tree, a moved copy):
        # the link text itself still names the device path
        owner = _innermost_rproc(Path(os.readlink(candidate)).parts)
        if owner is not None:
            return owner
    return None


class FdOwner:
    """An object that owns one open file descriptor of the ABI (``/dev/remoteprocN``,
    ``/dev/rpmsg_ctrlN``, ``/dev/rpmsgN``): ``close()`` closes it once, the object is a context
    manager, and a forgotten one is closed when collected (the kernel's release runs then)."""

    _fd: int = -1

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


class AbiRoot:
    """The remoteproc ABI under ``root`` (``/`` on a board, rprocd's mount point otherwise).

    ``AbiRoot("/mnt/rproc").processors()`` lists ``RemoteProc`` objects;
    ``processor("m4")`` finds one by index, device name or firmware-independent ``name``.
    ``firmware_dir`` defaults to ``ROOT/lib/firmware``, where the kernel looks for images.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *,
                 firmware_dir: str | os.PathLike[str] | None = None) -> None:
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
        from remoteproc.client.rproc import RemoteProc

        if not self.class_dir.is_dir():
            raise RprocError(errno.ENOENT, self._no_class_hint(), file=str(self.class_dir))
        return [RemoteProc(self, n) for n, _ in _numbered(self.class_dir, "remoteproc")]

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
        return _numbered(directory, prefix)

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
