"""The devcoredump analogue: dumps waiting for userspace in ``/sys/class/devcoredump/devcdN``.

Owns ``CoredumpStore`` and ``CoredumpInfo`` (the kernel's drivers/base/devcoredump.c, as far as
remoteproc uses it); ``core/coredump.py`` writes the ELF core and hands it here.

Rules (differences from devcoredump are listed in docs/kernel-differences.md):
- Numbering follows devcoredump (``devcd1``, ``devcd2``... never reused) and a processor with an
  unreleased dump gets no second one (the new dump is dropped).
- A dump is released when a reader reads at its end (the zero-length read that reports EOF),
  on ``release(n)`` (a write to ``data``), after the timeout, or at ``close()``;
  ``CoredumpStore(release_on_eof=False)`` keeps devcoredump's rule (no release at EOF).
- Expiry needs no timer thread: the timeout is applied whenever the store is used and by the
  waiter of an inline dump, which is the only party that must wake at the deadline.
- Thread-safe; the store's lock is never held while calling out (read, free, subscribers).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError

__all__ = ["DEVCD_TIMEOUT", "CoredumpInfo", "CoredumpStore", "ReadFn"]

log = logging.getLogger("remoteproc")

DEVCD_TIMEOUT = 300.0  # devcoredump frees an unclaimed dump after 5 minutes


ReadFn = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes


@dataclass(frozen=True)
class CoredumpInfo:
    """What ``/sys/class/devcoredump/devcdN`` shows besides ``data``."""

    n: int
    rproc_name: str  # the ``failing_device``
    size: int
    inline: bool


@dataclass
class _Entry:
    info: CoredumpInfo
    data: bytes | bytearray | None
    read_fn: ReadFn | None
    free_fn: Callable[[], None] | None
    deadline: float
    readers: int = 0
    released: bool = False
    freeing: bool = False


_Entries = list[_Entry]  # named once: the store's ``list`` method shadows the builtin


class CoredumpStore(Closeable):
    """Dumps waiting for userspace, shared by every processor of a host (devcoredump).

    An entry ``n`` (``devcdN``) lives until a reader reads at its end (``release_on_eof``), until
    ``release(n)`` (a write to devcoredump's ``data``), until ``timeout`` seconds after it was
    added, or until ``close()``. Releasing an inline entry calls its ``free_fn`` once no read is in
    progress. Thread-safe; ``on_added`` subscribers and ``free_fn`` run outside the lock.
    Lock order: the store's lock is never held while calling out (read, free, subscribers).
    """

    def __init__(self, timeout: float = DEVCD_TIMEOUT, *, release_on_eof: bool = True) -> None:
        self.timeout = timeout
        self.release_on_eof = release_on_eof
        self.on_added: list[Callable[[int, str], None]] = []
        self._cond = threading.Condition()
        self._entries: dict[int, _Entry] = {}  # visible: list() and read() see them
        self._draining: dict[int, _Entry] = {}  # released, waiting for in-flight reads
        self._last = 0
        self._closed = False


    # -- producers

    def add(self, rproc_name: str, data: bytes | bytearray) -> int | None:
        """``dev_coredumpv``: the store takes ``data``; returns N, or None if it was dropped."""
        return self._add(rproc_name, len(data), data, None, None)

    def add_inline(
        self, rproc_name: str, size: int, read_fn: ReadFn, free_fn: Callable[[], None]
    ) -> int | None:
        """``dev_coredumpm``: bytes come from ``read_fn``; ``free_fn`` runs on release.

        When the dump is dropped (closed store, or this processor already has a dump that has
        not been released) ``free_fn`` runs at once and None is returned.
        """
        return self._add(rproc_name, size, None, read_fn, free_fn)

    def _add(
        self,
        rproc_name: str,
        size: int,
        data: bytes | bytearray | None,
        read_fn: ReadFn | None,
        free_fn: Callable[[], None] | None,
    ) -> int | None:
        with self._cond:
            expired = self._expire_locked()
            busy = any(e.info.rproc_name == rproc_name for e in self._entries.values())
            n: int | None = None
            if not self._closed and not busy:
                self._last += 1
                n = self._last
                info = CoredumpInfo(n, rproc_name, size, read_fn is not None)
                deadline = time.monotonic() + self.timeout
                self._entries[n] = _Entry(info, data, read_fn, free_fn, deadline)
                self._cond.notify_all()  # a waiter may need an earlier wake-up
            subscribers = list(self.on_added)
        self._free(expired)
        if n is None:
            log.info("%s: coredump dropped: a previous one is still pending", rproc_name)
            if free_fn is not None:
                free_fn()
            return None
        for hook in subscribers:
            try:
                hook(n, rproc_name)
            except Exception:
                log.exception("coredump subscriber failed for devcd%d", n)
        return n

    # -- consumers

    def list(self) -> list[int]:
        """Indexes of the dumps userspace can read, ascending."""
        with self._cond:
            expired = self._expire_locked()
            result = sorted(self._entries)
        self._free(expired)
        return result

    def info(self, n: int) -> CoredumpInfo:
        with self._cond:
            expired = self._expire_locked()
            entry = self._entries.get(n)
        self._free(expired)
        if entry is None:
            raise RprocError(errno.ENOENT, f"no coredump devcd{n}")
        return entry.info

    def read(self, n: int, offset: int, size: int) -> bytes:
        """At most ``size`` bytes of dump ``n`` from ``offset``; ``b""`` at EOF.

        A read at or past the end means the reader has seen EOF: the dump is released when
        ``release_on_eof`` is set.
        """
        if offset < 0 or size < 0:
            raise RprocError(errno.EINVAL, "invalid coredump read")
        with self._cond:
            expired = self._expire_locked()
            entry = self._entries.get(n)
            if entry is not None:
                entry.readers += 1
        self._free(expired)
        if entry is None:
            raise RprocError(errno.ENOENT, f"no coredump devcd{n}")
        try:
            if entry.read_fn is not None:
                out = entry.read_fn(offset, size)
            else:
                assert entry.data is not None
                out = bytes(entry.data[offset : offset + size])
        finally:
            at_eof = offset >= entry.info.size
            with self._cond:
                entry.readers -= 1
                if at_eof and self.release_on_eof:
                    self._release_locked(n)
                to_free = self._drained_locked(entry)
            self._free(to_free)
        return out

    def release(self, n: int) -> None:
        """Drop dump ``n`` now (a write to devcoredump's ``data``); unknown ``n`` is ENOENT."""
        with self._cond:
            if n not in self._entries:
                raise RprocError(errno.ENOENT, f"no coredump devcd{n}")
            entry = self._release_locked(n)
            to_free = self._drained_locked(entry) if entry else []
        self._free(to_free)

    def wait_released(self, n: int, timeout: float | None = None) -> bool:
        """Block until dump ``n`` is gone and freed (or never existed); False if ``timeout``.

        While waiting, the entry's own deadline is applied, so an inline dump nobody reads
        unblocks its producer after the store's timeout.
        """
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                expired = self._expire_locked()
                if not expired:
                    entry = self._entries.get(n) or self._draining.get(n)
                    if entry is None:
                        return True
                    now = time.monotonic()
                    wake = entry.deadline if entry.info.n in self._entries else None
                    if until is not None:
                        if now >= until:
                            return False
                        wake = until if wake is None else min(wake, until)
                    self._cond.wait(None if wake is None else max(0.0, wake - now))
                    continue
            self._free(expired)

    def close(self) -> None:
        """Release every dump and refuse new ones; wakes any producer blocked on a dump."""
        with self._cond:
            self._closed = True
            to_free: _Entries = []
            for n in list(self._entries):
                entry = self._release_locked(n)
                if entry is not None:
                    to_free.extend(self._drained_locked(entry))
        self._free(to_free)

    # -- internals (called with the lock held, except _free)

    def _release_locked(self, n: int) -> _Entry | None:
        entry = self._entries.pop(n, None)
        if entry is not None:
            entry.released = True
            entry.data = None
            self._draining[n] = entry
            self._cond.notify_all()
        return entry

    def _drained_locked(self, entry: _Entry) -> _Entries:
        """The entry, if it is released and no read is in progress: the caller frees it."""
        if entry.released and entry.readers == 0 and not entry.freeing:
            entry.freeing = True
            return [entry]
        return []

    def _expire_locked(self) -> _Entries:
        now = time.monotonic()
        freed: _Entries = []
        for n, entry in list(self._entries.items()):
            if now >= entry.deadline:
                log.info("devcd%d: coredump of %s expired unread", n, entry.info.rproc_name)
                self._release_locked(n)
                freed.extend(self._drained_locked(entry))
        return freed

    def _free(self, entries: _Entries) -> None:
        """Run the free callbacks outside the lock; the entry is gone once its callback ran."""
        for entry in entries:
            try:
                if entry.free_fn is not None:
                    entry.free_fn()
            finally:
                with self._cond:
                    self._draining.pop(entry.info.n, None)
                    self._cond.notify_all()
