"""The two service threads of an emulated machine.

Owns:
- ``Scheduler``: one thread per machine that runs deadline callbacks (timer periods, watchdog
  checks, interrupt re-delivery). An idle machine has no deadlines and its thread sleeps on a
  condition variable: no host CPU.
- ``Dispatcher``: one thread per machine that runs host-side interrupt work (``vq_interrupt``,
  crash reports, control words) so an emulation thread never runs host code that could call
  back into the lifecycle (a shutdown from an rpmsg callback would join the very thread that
  delivered it).

Rules: ``Scheduler.close()`` and ``Dispatcher.close()`` stop and join their threads; the platform
that created them calls them (after stopping every core). Callbacks must be short.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

from remoteproc.closing import Closeable

__all__ = ["Call", "Dispatcher", "Scheduler"]

log = logging.getLogger("remoteproc.emulator")


class Call:
    __slots__ = ("cancelled", "deadline", "fn")

    def __init__(self, deadline: float, fn: Callable[[], None]) -> None:
        self.deadline = deadline
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler(Closeable):
    """Deadline callbacks on one thread (``time.monotonic`` clock). Callbacks must be short."""

    def __init__(self, name: str = "vsoc-sched") -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Call]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, deadline: float, fn: Callable[[], None]) -> Call:
        call = Call(deadline, fn)
        with self._cv:
            if self._closed:
                call.cancelled = True
                return call
            heapq.heappush(self._heap, (deadline, next(self._seq), call))
            if self._heap[0][2] is call:
                self._cv.notify()
        return call

    def call_later(self, delay: float, fn: Callable[[], None]) -> Call:
        return self.call_at(time.monotonic() + delay, fn)

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._closed:
                        return
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cv.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        call = heapq.heappop(self._heap)[2]
                        break
                    self._cv.wait(delay)
            if call.cancelled:
                continue
            try:
                call.fn()
            except Exception:  # a device model bug must not kill every core's timers
                log.exception("scheduler callback failed")

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()



class Dispatcher(Closeable):
    """Runs posted host-side work in order on one thread (the platform's "interrupt thread")."""

    def __init__(self, name: str = "vsoc-irq") -> None:
        self._q: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, fn: Callable[[], None]) -> None:
        with self._idle:
            if self._closed:
                return
            self._pending += 1
        self._q.put(fn)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything posted so far ran (tests, orderly shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            fn = self._q.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:
                log.exception("host interrupt work failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def close(self) -> None:
        with self._idle:
            if self._closed:
                return
            self._closed = True
        self._q.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

