"""The work queue: the kernel's unbound ``rproc_recovery_wq`` (crash handling, auto-boot).

Owns ``WorkQueue``. Rules: work with the same key is queued once while pending; threads start on
demand, up to ``max_workers``; ``close()`` drops pending work, lets running work finish and joins
every thread it started.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from remoteproc.closing import Closeable

__all__ = ["WorkQueue"]

log = logging.getLogger("remoteproc")


class WorkQueue(Closeable):
    """An unbound work queue: up to ``max_workers`` threads, started on demand.

    ``queue(key, fn)`` is ``queue_work``: if work with the same key is pending (not yet
    running) it is not queued twice and False is returned. ``flush()`` waits until idle;
    ``close()`` drops pending work, lets running work finish, and joins every thread.
    """

    def __init__(self, name: str, max_workers: int = 4) -> None:
        self.name = name
        self.max_workers = max(1, max_workers)
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[object, Callable[[], None]]] = collections.deque()
        self._pending: set[object] = set()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._running = 0
        self._closed = False

    def queue(self, key: object, fn: Callable[[], None]) -> bool:
        with self._cond:
            if self._closed:
                return False
            if key in self._pending:
                return False
            self._pending.add(key)
            self._items.append((key, fn))
            if self._idle == 0 and len(self._threads) < self.max_workers:
                t = threading.Thread(
                    target=self._worker,
                    name=f"{self.name}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()
            else:
                self._cond.notify()
            return True

    def _worker(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._items and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if self._closed:
                    return
                key, fn = self._items.popleft()
                self._pending.discard(key)
                self._running += 1
            try:
                fn()
            except BaseException:
                log.exception("%s: work item failed", self.name)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._items or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @property
    def threads(self) -> int:
        return sum(1 for t in self._threads if t.is_alive())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._pending.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join()

