"""sysfs for remote processors (spec §2.1, ``remoteproc_sysfs.c``) and devcoredump's ``data``.

Owns ``rproc_class_dir`` (``/sys/class/remoteproc/remoteprocN``: coredump, recovery, firmware,
state, name) and ``devcoredump_data`` (``devcdN/data``; the device itself is devices.py's).

Rules:
- Reads render exactly the kernel's text; writes are matched with ``sysfs_streq`` (one trailing
  newline allowed) and return the whole count on success; the errno of a refused write is the
  core's (``RprocError``), which ``fs.py`` hands to the caller's ``write()``.
- ``sysfs_read_only`` makes the four writable attributes 0444, and opening one for writing is
  EACCES even for root (kernfs checks the mode at open).
- A write is seen as a C string (it ends at the first NUL) of at most a page; a longer write
  takes one page (kernfs cuts it), so write() returns at most PAGE_SIZE.
- The ABI calls the core's public methods only; lifecycle calls get the request's ``cancel`` so
  a caller interrupted while waiting for the processor's lock gets EINTR (EINVAL for firmware).
- ``state`` and ``firmware`` carry a ``Notifier`` (owned by ``tree.py``) so poll() wakes when
  they change (sysfs_notify semantics: POLLERR|POLLPRI until the file is read again).
- devcoredump: ``devcdN/data`` reads the host's ``CoredumpStore``; reading to the end releases
  the dump, and any write releases it at once (as devcoredump does).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from remoteproc.abi.kstr import cstring, sysfs_streq
from remoteproc.abi.node import Attribute, Dir, File, Handle, Node, Notifier, Request
from remoteproc.core.coredump import DumpConf
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.errors import RprocError

__all__ = ["PAGE_SIZE", "devcoredump_data", "rproc_class_dir"]

log = logging.getLogger("remoteproc.abi")

PAGE_SIZE = 4096


def _page(data: bytes) -> bytes:
    return cstring(data[:PAGE_SIZE])


def _count(data: bytes) -> int:
    """What a successful store returns: kernfs hands it at most a page, and the caller's
    write() reports that many bytes taken (a longer write goes on with the rest)."""
    return min(len(data), PAGE_SIZE)


def rproc_class_dir(rproc: Rproc, *, state_changes: Notifier | None = None,
                    firmware_changes: Notifier | None = None) -> Dir:
    """The attributes of one processor, in the kernel's order."""
    rw = 0o444 if rproc.sysfs_read_only else 0o644

    def state_show() -> bytes:
        return f"{rproc.state.sysfs}\n".encode()

    def state_store(data: bytes, req: Request) -> int:
        buf = _page(data)
        if sysfs_streq(buf, "start"):
            try:
                rproc.boot(cancel=req.cancel)
            except RprocError as exc:
                log.error("%s: Boot failed: %d", rproc.dev_name, -exc.errno)
                raise
        elif sysfs_streq(buf, "stop"):
            rproc.shutdown(cancel=req.cancel)
        elif sysfs_streq(buf, "detach"):
            rproc.detach(cancel=req.cancel)
        else:
            log.error("%s: Unrecognised option: %s", rproc.dev_name,
                      buf.decode(errors="replace"))
            raise RprocError(errno.EINVAL, "Unrecognised option")
        return _count(data)

    def firmware_show() -> bytes:
        name = "unknown" if rproc.state is State.ATTACHED else rproc.firmware
        # The name is the bytes that were written (firmware_store keeps non-UTF-8 bytes as
        # surrogates): give them back as written, as the kernel's "%s\n" does.
        return f"{name}\n".encode("utf-8", "surrogateescape")

    def firmware_store(data: bytes, req: Request) -> int:
        name = _page(data).decode("utf-8", "surrogateescape")
        rproc.set_firmware(name, cancel=req.cancel)
        return _count(data)

    def recovery_show() -> bytes:
        return b"disabled\n" if rproc.recovery_disabled else b"enabled\n"

    def recovery_store(data: bytes, req: Request) -> int:
        buf = _page(data)
        recover = True
        if sysfs_streq(buf, "enabled"):
            rproc.recovery_disabled = False
        elif sysfs_streq(buf, "disabled"):
            rproc.recovery_disabled = True
            recover = False
        elif not sysfs_streq(buf, "recover"):
            raise RprocError(errno.EINVAL, "invalid recovery option")
        if recover:
            try:
                rproc.trigger_recovery(cancel=req.cancel)
            except RprocError as exc:
                # The kernel ignores the recovery's result and returns the count.
                log.info("%s: recovery: %s", rproc.dev_name, exc)
        return _count(data)

    def coredump_show() -> bytes:
        return f"{rproc.dump_conf.value}\n".encode()

    def coredump_store(data: bytes, req: Request) -> int:
        if rproc.state is State.CRASHED:
            log.error("%s: can't change coredump configuration", rproc.dev_name)
            raise RprocError(errno.EBUSY, "can't change coredump configuration")
        buf = _page(data)
        for conf in DumpConf:
            if sysfs_streq(buf, conf.value):
                rproc.set_coredump(conf, cancel=req.cancel)
                return _count(data)
        log.error("%s: Invalid coredump configuration", rproc.dev_name)
        raise RprocError(errno.EINVAL, "Invalid coredump configuration")

    def name_show() -> bytes:
        return f"{rproc.name}\n".encode()

    entries: dict[str, Node] = {
        "coredump": Attribute(rw, coredump_show, coredump_store, strict_open=True),
        "recovery": Attribute(rw, recovery_show, recovery_store, strict_open=True),
        "firmware": Attribute(rw, firmware_show, firmware_store, strict_open=True,
                              notifier=firmware_changes),
        "state": Attribute(rw, state_show, state_store, strict_open=True,
                           notifier=state_changes),
        "name": Attribute(0o444, name_show, None, strict_open=True),
    }
    return Dir(entries)


class _DumpHandle(Handle):
    def __init__(self, store: Any, n: int) -> None:
        self.store = store
        self.n = n

    def read(self, size: int, offset: int, req: Request) -> bytes:
        data: bytes = self.store.read(self.n, offset, size)
        return data

    def write(self, data: bytes, offset: int, req: Request) -> int:
        self.store.release(self.n)
        return len(data)


def _dump_opener(store: Any, n: int) -> Callable[[int], Handle]:
    return lambda flags: _DumpHandle(store, n)


def devcoredump_data(store: Any, n: int, size: int) -> File:
    """``devcdN/data``: reads the dump; reading to the end or any write releases it."""
    return File(0o600, _dump_opener(store, n), size=size)
