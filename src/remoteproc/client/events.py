"""rprocd's event stream seen from a program: ``EventStream`` and ``ProcessorEvent``.

The one part of the client that is not a kernel ABI: the kernel has no way to tell userspace
that a remote processor crashed (``docs/kernel-differences.md``), so rprocd serves
``ROOT/rprocd/events``: every event its core publishes (state changes with their cause, crash
reports with their type, recovery start/done/failed, coredumps, attach/detach, boot failures, a
vring broken by the remote), one JSON line per ``read()``, each with a sequence number and the
time it happened. A read blocks until an event comes; ``poll()`` says POLLIN when one is queued.

Rules:
- Each open of the file is one subscriber from that moment on: open the stream before doing what
  you want to watch. A reader slower than the daemon's backlog (1024 events) loses the oldest;
  the gap shows in ``seq``.
- Every failure is an ``RprocError`` naming the file: ENOENT becomes "no event stream here (a
  board, or not rprocd)". The end of the stream (rprocd unmounted or killed) ends iteration.
- The stream owns its descriptor: ``close()`` or the context manager.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remoteproc.closing import Closeable
from remoteproc.errors import RprocError

__all__ = ["EVENTS_FILE", "EventStream", "ProcessorEvent"]

EVENTS_FILE = "rprocd/events"
_READ_SIZE = 65536


# errnos of a read whose rprocd is gone (the end of the stream, not an error)
_SERVER_GONE = frozenset({errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV, errno.EIO})


@dataclass(frozen=True)
class ProcessorEvent:
    """One event of rprocd's core. ``kind``: ``state``, ``crash`` (``detail`` = the crash type),
    ``crash_handled``, ``recovery_start``, ``recovery_done``, ``recovery_failed``, ``coredump``,
    ``attached``, ``detached``, ``boot_failed``, ``added``, ``deleted``, ``firmware``,
    ``vring_broken``, ``vring_refused``."""

    seq: int
    time: float  # wall clock (time.time()) when the core published it
    device: str  # remoteprocN
    name: str
    kind: str
    state: str  # the sysfs state right after the event
    old: str | None = None
    detail: str | None = None
    count: int | None = None
    error: str | None = None
    errno: int | None = None

    @classmethod
    def from_json(cls, line: bytes | str) -> ProcessorEvent:
        try:
            d: dict[str, Any] = json.loads(line)
            return cls(
                seq=int(d["seq"]), time=float(d.get("time", 0.0)), device=str(d["rproc"]),
                name=str(d["name"]), kind=str(d["kind"]), state=str(d["state"]),
                old=d.get("old"), detail=d.get("detail"), count=d.get("count"),
                error=d.get("error"), errno=d.get("errno"),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise RprocError(errno.EPROTO, f"bad event line {line!r}: {exc}") from None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"seq": self.seq, "time": self.time, "device": self.device,
                                  "name": self.name, "kind": self.kind, "state": self.state}
        for key in ("old", "detail", "count", "error", "errno"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def describe(self) -> str:
        """A line for people: ``running -> crashed``, ``crashed: watchdog``..."""
        k = self.kind
        if k == "state":
            return f"{self.old} -> {self.state}"
        if k == "crash":
            return f"crash reported: {self.detail}"
        if k == "crash_handled":
            return f"crash #{self.count} handled, now {self.state}"
        if k == "recovery_start":
            return "recovery started"
        if k == "recovery_done":
            return f"recovered, now {self.state}"
        if k == "recovery_failed":
            return f"recovery FAILED: {self.error}"
        if k == "coredump":
            return f"coredump: {self.detail}"
        if k == "boot_failed":
            return f"boot FAILED: {self.error}"
        if k == "vring_broken":
            return f"{self.detail} BROKEN by the remote, its channels are dead: {self.error}"
        if k == "vring_refused":
            many = f" ({self.count} refusals)" if self.count and self.count > 1 else ""
            return f"{self.detail}: refused what the remote wrote{many}: {self.error}"
        if k == "firmware":
            return f"firmware set to {self.detail}"
        return k


class EventStream(Closeable):
    """``ROOT/rprocd/events``, opened now: ``next(timeout)``, iteration, ``fileno()``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / EVENTS_FILE
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            code = exc.errno or errno.EIO
            if code == errno.ENOENT:
                raise RprocError(code, "no event stream here: only rprocd has one (the kernel "
                                 "does not report crashes to userspace)", file=str(self.path)
                                 ) from None
            raise RprocError(code, f"cannot open the event stream: {os.strerror(code)}",
                             file=str(self.path)) from None
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        self.ended = False

    def fileno(self) -> int:
        return self._fd

    def next(self, timeout: float | None = None) -> ProcessorEvent | None:
        """The next event; None after ``timeout`` seconds or once the stream ended (see
        ``ended``: rprocd went away)."""
        if self.ended or self._fd < 0:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # slices of a second: a missed wake-up costs at most that
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return None
            try:
                ready = self._poll.poll(int(left * 1000) or 1)
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                line = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                # rprocd went away: its FUSE connection is gone (ENOTCONN once unmounted,
                # ECONNABORTED for a read the kernel aborted as it tore the connection down).
                if exc.errno in _SERVER_GONE:
                    self.ended = True
                    return None
                raise RprocError(exc.errno or errno.EIO, f"cannot read the event stream: "
                                 f"{os.strerror(exc.errno or errno.EIO)}",
                                 file=str(self.path)) from None
            if not line:
                self.ended = True
                return None
            return ProcessorEvent.from_json(line)

    def __iter__(self) -> Iterator[ProcessorEvent]:
        while (ev := self.next()) is not None:
            yield ev

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):  # ENOTCONN once the server is gone
                os.close(fd)

