"""Notifications about remote processors, delivered to subscribers (seed 003's open question).

Owns ``Event``, ``EventKind`` and ``EventBus``: every state change, crash report, recovery,
attach/detach, coredump, registration and deletion becomes one ``Event``.

Rules:
- Subscribers are never called with a processor's lock held. Processors post their events to a
  ``Dispatcher`` (one thread per host) that delivers them in order as they happen, even while a
  long locked section (a recovery waiting on an inline coredump) is still running. A lifecycle
  call (``boot``, ``shutdown``...) waits, after unlocking, until its own events are delivered,
  so when it returns every subscriber has seen them; a subscriber may call back into the
  processor (read its state, even shut it down) without deadlocking. The one thing a subscriber
  must not do is wait for a lock that its own application holds around lifecycle calls (that
  caller waits for the subscriber): keep subscriber-side locks as leaves.
- A subscriber that raises is logged and kept; it never breaks the publisher or other subscribers.
- Subscriptions are resources: ``Subscription.close()`` / context manager. A blocking
  subscription (``bus.subscribe()`` with no callback) buffers events in an unbounded queue and is
  iterated with ``for ev in sub`` or ``sub.get(timeout)``; ``async for ev in sub`` works from
  asyncio (events are handed to the loop with ``call_soon_threadsafe``). Closing a subscription
  ends its iteration.
- Lock order: the bus's and the dispatcher's locks are leaves (held only to copy the subscriber
  list or to move a queue item); nothing is called while holding them.
- Threads: the dispatcher's thread starts with its first event and is joined by ``close()``
  (which delivers what is queued first); its owner is the host (or a standalone processor).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from remoteproc.closing import Closeable

__all__ = ["Dispatcher", "Event", "EventBus", "EventKind", "Subscription"]

log = logging.getLogger("remoteproc")


class EventKind(enum.Enum):
    STATE = "state"  # state changed: ``old`` -> ``state``
    CRASH = "crash"  # a crash was reported (``detail`` = crash type name), before it is handled
    CRASH_HANDLED = "crash_handled"  # the handler accepted it (``count`` = crash number)
    RECOVERY_START = "recovery_start"
    RECOVERY_DONE = "recovery_done"
    RECOVERY_FAILED = "recovery_failed"  # ``error`` holds the RprocError
    # DIFF: crash-loop back-off: too many crashes too fast, the processor stays crashed
    # (``count`` = crashes within the window, ``detail`` = why)
    RECOVERY_STOPPED = "recovery_stopped"
    ATTACHED = "attached"
    DETACHED = "detached"
    COREDUMP = "coredump"  # ``detail`` = where the dump went (store key) or why none
    BOOT_FAILED = "boot_failed"  # an automatic boot (auto-boot) failed: ``error``
    ADDED = "added"
    DELETED = "deleted"
    FIRMWARE = "firmware"  # firmware name changed (``detail`` = new name)
    # a virtio ring the remote corrupted (the kernel's BAD_RING): ``detail`` names the device and
    # ring, ``error`` says what was wrong; its channels are dead until a restart or re-attach
    VRING_BROKEN = "vring_broken"
    # DIFF: an element of a virtio ring (or the rpmsg message in it) that the remote wrote and
    # the host refused (the kernel only logs it): ``detail`` names the device and ring, ``error``
    # says what was wrong, ``count`` how many refusals the event stands for (at most one event
    # per ring per ``REFUSED_EVENT_INTERVAL``); the channel keeps working
    VRING_REFUSED = "vring_refused"


# A hostile remote can make every element it returns bad: refusals of one ring are published at
# most this often (seconds), each event counting the ones it stands for, so subscribers and the
# event file are not flooded and the receive pass never waits on them.
REFUSED_EVENT_INTERVAL = 1.0

_seq = itertools.count(1)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    rproc: str  # "remoteproc0" (the device name) or the rproc name if not registered
    name: str  # the processor's name ("m4")
    state: str  # the sysfs state string after the event
    old: str | None = None
    detail: str | None = None
    count: int | None = None
    error: BaseException | None = None
    seq: int = field(default_factory=lambda: next(_seq))
    time: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        extra = f" {self.old}->{self.state}" if self.old is not None else f" [{self.state}]"
        det = f" ({self.detail})" if self.detail else ""
        return f"{self.rproc}: {self.kind.value}{extra}{det}"


Callback = Callable[[Event], None]
_CLOSED: Any = object()


class Subscription(Closeable):
    """One subscriber. With a callback: events are passed to it on the publishing thread.
    Without: they queue up for ``get`` / iteration / async iteration."""

    def __init__(
        self,
        bus: EventBus,
        callback: Callback | None,
        kinds: frozenset[EventKind] | None,
    ) -> None:
        self._bus = bus
        self._callback = callback
        self._kinds = kinds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._async: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = []
        self._lock = threading.Lock()
        self.closed = False

    def wants(self, ev: Event) -> bool:
        return self._kinds is None or ev.kind in self._kinds

    def _deliver(self, ev: Event) -> None:
        if self.closed or not self.wants(ev):
            return
        if self._callback is not None:
            self._callback(ev)
            return
        self._queue.put(ev)
        with self._lock:
            targets = list(self._async)
        for loop, aq in targets:
            # A closed loop means that async reader is gone.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(aq.put_nowait, ev)

    def get(self, timeout: float | None = None) -> Event | None:
        """Next event, or None on timeout / after close."""
        try:
            ev = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev is _CLOSED:
            self._queue.put(_CLOSED)  # keep later readers unblocked too
            return None
        assert isinstance(ev, Event)
        return ev

    def drain(self) -> list[Event]:
        """Everything queued so far, without blocking."""
        out: list[Event] = []
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                return out
            if ev is _CLOSED:
                self._queue.put(_CLOSED)
                return out
            out.append(ev)

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float | None = None
    ) -> Event | None:
        """Block until an event matching ``predicate`` arrives (others are consumed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ev = self.get(left)
            if ev is None:
                return None
            if predicate(ev):
                return ev

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.get()
            if ev is None:
                return
            yield ev

    async def _aiter(self) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        aq: asyncio.Queue[Any] = asyncio.Queue()
        # Events already queued for blocking readers are handed over first.
        for ev in self.drain():
            aq.put_nowait(ev)
        with self._lock:
            self._async.append((loop, aq))
        if self.closed:
            aq.put_nowait(_CLOSED)
        try:
            while True:
                item = await aq.get()
                if item is _CLOSED:
                    return
                yield item
        finally:
            with self._lock:
                self._async = [(lp, q) for lp, q in self._async if q is not aq]

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._aiter()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        self._queue.put(_CLOSED)
        with self._lock:
            targets = list(self._async)
        for loop, aq in targets:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(aq.put_nowait, _CLOSED)



class EventBus:
    """Fan-out of events to subscriptions; optionally forwards to a parent bus (the host's)."""

    def __init__(self, parent: EventBus | None = None) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self.parent = parent

    def subscribe(
        self,
        callback: Callback | None = None,
        *,
        kinds: set[EventKind] | frozenset[EventKind] | None = None,
    ) -> Subscription:
        sub = Subscription(self, callback, frozenset(kinds) if kinds is not None else None)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, ev: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub._deliver(ev)
            except Exception:
                log.exception("%s: event subscriber failed on %s", ev.rproc, ev.kind.value)
        if self.parent is not None:
            self.parent.publish(ev)

    def close(self) -> None:
        """Close every subscription (ends blocking and async iterations)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()


class Dispatcher(Closeable):
    """Delivers posted events in order on one thread, outside every processor lock.

    ``post(bus, ev)`` returns a ticket; ``wait(ticket)`` blocks until that event was delivered
    (at once when called on the dispatcher's own thread, which is where subscribers run).
    After ``close()`` events are delivered in the posting thread.
    """

    def __init__(self, name: str = "rproc-events") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[int, EventBus, Event]] = collections.deque()
        self._posted = 0
        self._delivered = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def post(self, bus: EventBus, ev: Event) -> int:
        with self._cond:
            if not self._closed:
                self._posted += 1
                ticket = self._posted
                self._queue.append((ticket, bus, ev))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return ticket
        bus.publish(ev)
        return 0

    def in_dispatcher(self) -> bool:
        return threading.current_thread() is self._thread

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        if ticket <= 0 or self.in_dispatcher():
            return True
        with self._cond:
            return self._cond.wait_for(
                lambda: self._delivered >= ticket or self._thread is None, timeout
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything posted so far has been delivered."""
        with self._cond:
            ticket = self._posted
        return self.wait(ticket, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                ticket, bus, ev = self._queue.popleft()
            try:
                bus.publish(ev)
            finally:
                with self._cond:
                    self._delivered = ticket
                    self._cond.notify_all()

    def close(self) -> None:
        """Deliver what is queued, then stop and join the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            self._thread = None
            self._cond.notify_all()

