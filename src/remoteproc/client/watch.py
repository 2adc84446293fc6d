"""Watching the ``state`` files of remote processors: ``StateWatcher`` and ``StateChange``.

Rules:
- Each watched processor keeps its sysfs ``state`` file open; a change is seen by ``poll()``
  for POLLPRI|POLLERR, then ``lseek(0)`` + ``read()`` (the ``sysfs_notify`` protocol). rprocd
  wakes such pollers on every state change.
- The kernel's remoteproc never calls ``sysfs_notify`` on ``state``, so on a board poll() does
  not wake: ``notifies`` is False there and the watcher re-reads every ``interval`` seconds
  (``AbiRoot.state_change_notifies`` decides; callers say which mode is in force). Every state
  is re-read on each wake-up or timeout either way, so nothing depends on the wake-up alone.
- A processor whose files disappear (deleted, driver unbound) reports the state ``gone`` once
  and is no longer watched.
- The watcher owns its descriptors: ``close()`` (or the context manager) closes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from remoteproc.client.base import ProcessorFiles, explain
from remoteproc.closing import Closeable
from remoteproc.errors import RprocError

__all__ = ["GONE", "StateChange", "StateWatcher"]

GONE = "gone"
_EVENTS = select.POLLPRI | select.POLLERR


@dataclass(frozen=True)
class StateChange:
    device: str  # remoteprocN
    name: str
    old: str
    new: str
    time: float = field(default_factory=time.time)  # wall clock, for display


class _Watched:
    def __init__(self, proc: ProcessorFiles, names: bool = True) -> None:
        self.proc = proc
        self.path = proc.sysfs / "state"
        self._name: str | None = None
        if names:  # now, while the files are there: a change to "gone" still names it
            _ = self.name
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise explain(exc, self.path, "watch") from None
        self.state = ""
        self.state = self.read()

    @property
    def name(self) -> str:
        """The processor's name (read at most once: each sysfs read is a dozen FUSE round trips
        under rprocd, and ``wait_state`` never needs it)."""
        if self._name is None:
            try:
                self._name = self.proc.name
            except RprocError:
                self._name = self.proc.dev_name
        return self._name

    def read(self) -> str:
        # the open descriptor may still read a removed file; os.path.exists is False also
        # when the file system itself went away (ENOTCONN: the FUSE server died)
        if not os.path.exists(self.path):
            return GONE
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            data = b""
            while True:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return GONE
        # an empty read is no state (a file being rewritten): keep the last one
        return data.decode("utf-8", "replace").strip() or self.state

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):  # ENOTCONN once the server is gone
                os.close(fd)


class StateWatcher(Closeable):
    """Watch ``procs``; ``changes(timeout)`` returns what changed since the last call.

    ``notifies``: does poll() wake on a change? None asks the root (True under rprocd).
    ``interval``: how often states are re-read when it does not (and at most how long a missed
    wake-up can delay a report when it does). ``names=False``: the processors' names are read
    only if a change is reported (for a caller that waits for a state and reports none).
    """

    def __init__(self, procs: Sequence[ProcessorFiles], *, interval: float = 0.2,
                 notifies: bool | None = None, names: bool = True) -> None:
        if not procs:
            raise RprocError(errno.ENODEV, "nothing to watch: no remote processor")
        self.notifies = (procs[0].root.state_change_notifies() if notifies is None
                         else notifies)
        self.interval = interval
        self._poll = select.poll()
        self._watched: dict[int, _Watched] = {}
        try:
            for proc in procs:
                w = _Watched(proc, names)
                self._watched[w.fd] = w
                self._poll.register(w.fd, _EVENTS)
        except BaseException:
            self.close()
            raise

    @property
    def mode(self) -> str:
        """A sentence for users: how changes are detected."""
        if self.notifies:
            return "poll() on the state files (the server notifies changes)"
        return (f"reading the state files every {self.interval:g} s (the kernel does not "
                "notify state changes, so poll() would not wake)")

    def states(self) -> dict[str, str]:
        return {w.proc.dev_name: w.state for w in self._watched.values()}

    def _rescan(self) -> list[StateChange]:
        found = []
        for fd, w in list(self._watched.items()):
            new = w.read()
            if new != w.state:
                found.append(StateChange(w.proc.dev_name, w.name, w.state, new))
                w.state = new
            if new == GONE:
                self._poll.unregister(fd)
                w.close()
                del self._watched[fd]
        return found

    def changes(self, timeout: float | None = None) -> list[StateChange]:
        """Block until at least one state changed (or ``timeout`` passed: then ``[]``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._watched:
            step = self.interval if not self.notifies else max(self.interval, 1.0)
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            self._poll.poll(int(step * 1000))
            found = self._rescan()
            if found:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                return []
        return []

    def __iter__(self) -> Iterator[StateChange]:
        """Every change, forever (until no processor is left)."""
        while self._watched:
            yield from self.changes()

    def wait_for(self, proc: ProcessorFiles, wanted: tuple[str, ...], timeout: float) -> str:
        """Wait until ``proc``'s state is in ``wanted``; returns it, or raises ETIMEDOUT."""
        deadline = time.monotonic() + timeout
        current = self._state_of(proc)
        while current not in wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RprocError(errno.ETIMEDOUT, f"{proc.dev_name} is still {current} after "
                                 f"{timeout:g} s (waiting for {' or '.join(wanted)})",
                                 file=str(proc.sysfs / "state"))
            self.changes(left)
            current = self._state_of(proc)
        return current

    def _state_of(self, proc: ProcessorFiles) -> str:
        for w in self._watched.values():
            if w.proc == proc:
                return w.state
        return GONE

    def close(self) -> None:
        for w in self._watched.values():
            w.close()
        self._watched.clear()

