"""What every client module shares: attribute I/O the way the kernel expects it, ``explain`` (an
``OSError`` on an ABI file turned into an ``RprocError`` that says what is missing), the owner
of one open descriptor (``FdOwner``) and what a processor offers to the modules that watch or
open it (``ProcessorFiles``).

Rules:
- Beneath every other client module; imports nothing of the client, so the client's modules
  import one way (base <- root, rproc, session, watch, rpmsg).
- An attribute is read with plain ``read()`` calls until EOF and written as the shell's
  ``echo -n word > file`` does: open with O_TRUNC (ignored by sysfs), exactly one ``write()`` of
  exactly the bytes given (the cdev compares the write's length, §3.1; sysfs takes one ``store``
  per write).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError

__all__ = [
    "FdOwner",
    "ProcessorFiles",
    "RootInfo",
    "explain",
    "numbered",
    "owner_rproc",
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


def numbered(directory: Path, prefix: str) -> list[tuple[int, Path]]:
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


def _link_target(link: str) -> str | None:
    """Where the symbolic link ``link`` points, resolved against the folder it is in, as text;
    None when ``link`` is not a link. One readlink: sysfs links are relative and lead straight
    to a device directory (no link in their way), so ``..`` can be folded textually. A full
    ``realpath`` would lstat every prefix of every hop, and under a FUSE-served tree (rprocd)
    each lstat is one round trip per path component: ~50 for one rpmsg device."""
    try:
        text = os.readlink(link)
    except OSError:  # EINVAL: not a link; ENOENT: absent
        return None
    return os.path.normpath(os.path.join(os.path.dirname(link), text))


def _owner_below(real: str, base: str) -> str | None:
    rel = os.path.relpath(real, os.path.commonpath([real, base]))
    return _innermost_rproc(Path(rel).parts)


def owner_rproc(entry: Path) -> str | None:
    """The ``remoteprocN`` a sysfs device belongs to, or None when sysfs does not say.

    On a board a class entry (``/sys/class/rpmsg/rpmsg0``) or a bus entry is a link into
    ``/sys/devices/.../remoteprocN/...``, and a ``device`` link inside an entry
    (devcoredump's ``failing_device`` is such a link itself) leads there too. Both are
    followed to their target; only the part below the entry's own directory counts, so a
    root that happens to contain "remoteproc0" in its name cannot fool it. The links are
    read as text first (``_link_target``); only when that names no owner are they resolved
    with ``realpath`` (a tree whose folders are themselves links)."""
    parent = os.path.abspath(entry.parent)
    # devcoredump's failing_device sits in a class entry that is itself a link
    parent = _link_target(parent) or parent
    entry_real = _link_target(os.path.join(parent, entry.name))
    for target in (entry_real, _link_target(os.path.join(entry_real or str(entry), "device"))):
        if target is not None:
            owner = _owner_below(target, parent)
            if owner is not None:
                return owner
    base = os.path.realpath(entry.parent)
    for candidate in (entry, entry / "device"):
        if not os.path.islink(candidate):
            continue
        owner = _owner_below(os.path.realpath(candidate), base)
        if owner is not None:
            return owner
        # a relative link whose target is outside this tree (a fake tree, a moved copy):
        # the link text itself still names the device path
        owner = _innermost_rproc(Path(os.readlink(candidate)).parts)
        if owner is not None:
            return owner
    return None


class FdOwner(Closeable):
    """An object that owns one open file descriptor of the ABI (``/dev/remoteprocN``,
    ``/dev/rpmsg_ctrlN``, ``/dev/rpmsgN``): ``close()`` closes it once, the object is a context
    manager, and a forgotten one is closed when collected (the kernel's release runs then)."""

    _fd: int = -1

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


class RootInfo(Protocol):
    """What a processor's modules ask of its root (an ``AbiRoot``)."""

    def state_change_notifies(self) -> bool: ...


class ProcessorFiles(Protocol):
    """What ``StateWatcher`` and ``Session`` use of a processor (a ``RemoteProc``)."""

    @property
    def root(self) -> RootInfo: ...
    @property
    def name(self) -> str: ...
    @property
    def dev_name(self) -> str: ...
    @property
    def sysfs(self) -> Path: ...
    @property
    def cdev(self) -> Path: ...
    def state_or_unknown(self) -> str: ...
