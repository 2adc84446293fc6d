"""The host: the registry of remote processors, the firmware search path, the workers, the
panic hook (the kernel's ``rproc_list``, the index ida, ``request_firmware``,
``rproc_recovery_wq`` and ``rproc_panic_handler``).

Owns ``Host``, ``WorkQueue``, ``request_firmware`` and the process-wide panic hook.

Rules:
- Indexes are the lowest free number (``remoteprocN``), released on delete.
- ``add`` validates as ``rproc_validate`` does (OFFLINE needs ``start``, DETACHED needs
  ``attach`` and no cached table), then auto-boots: a DETACHED processor is attached
  synchronously (an error unwinds the registration), an OFFLINE one is booted on a worker (the
  asynchronous firmware request); its failure is logged and published as BOOT_FAILED.
- Firmware names are relative paths inside the search path: an absolute name or one with a
  ``..`` component is refused with EINVAL before any file is touched; a name found nowhere is
  ENOENT. Images registered with ``add_firmware`` (the kernel's built-in firmware) are searched
  first.
- Threads: the host owns two kinds, both started on demand and joined by ``Host.close()``:
  the ``WorkQueue`` workers (crash handling and auto-boots of all its processors) and the event
  ``Dispatcher`` thread (delivery to subscribers). ``close()`` closes the coredump store (so no
  recovery stays blocked on an inline dump), deletes every processor (stopping what runs),
  joins the workers, then delivers the last events and joins the dispatcher.
- Panic hook: a library installs no process-wide handler on its own. Once a program asks for it
  (``install_panic_hook()``, or ``Host(panic_hook=True)``), and while that host is open,
  interpreter exit (and SIGTERM, when asked and installed from the main thread) call
  ``ops.panic`` of every RUNNING/ATTACHED processor and wait the longest delay they return;
  then the previous SIGTERM disposition runs.
- Lock order: host lock -> nothing. The host lock guards the registry only; lifecycle calls on
  processors are made without it.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from remoteproc.closing import Closeable
from remoteproc.core.events import Dispatcher, EventBus, EventKind
from remoteproc.core.firmware_loader import (
    DEFAULT_FIRMWARE_PATH,
    check_firmware_name,
    request_firmware,
)
from remoteproc.core.states import INITIAL_STATES, State
from remoteproc.core.workqueue import WorkQueue
from remoteproc.errors import RprocError

if TYPE_CHECKING:
    from remoteproc.core.devcoredump import CoredumpStore
    from remoteproc.core.rproc import Rproc
    from remoteproc.firmware.elf import Firmware

__all__ = [
    "DEFAULT_FIRMWARE_PATH",
    "Host",
    "WorkQueue",
    "check_firmware_name",
    "request_firmware",
]

log = logging.getLogger("remoteproc")


# ---- the registry --------------------------------------------------------------------------------


class Host(Closeable):
    """The set of registered processors (``rproc_list``) and what they share.

    ``Host(firmware_path=None, *, panic_hook=False, workers=4, coredump_store=None)``;
    ``firmware_path`` None means ``$RPROC_FIRMWARE_PATH`` or ``/lib/firmware``.
    """

    def __init__(
        self,
        firmware_path: Sequence[str | os.PathLike[str]] | None = None,
        *,
        panic_hook: bool = False,
        workers: int = 4,
        coredump_store: CoredumpStore | None = None,
    ) -> None:
        self.firmware_path: list[Path] = (
            list(DEFAULT_FIRMWARE_PATH)
            if firmware_path is None
            else [Path(p) for p in firmware_path]
        )
        self.builtin_firmware: dict[str, bytes | bytearray] = {}
        self.events = EventBus()
        self.dispatcher = Dispatcher("rproc-events")
        self.workqueue = WorkQueue("rproc_recovery_wq", max_workers=workers)
        self._lock = threading.Lock()
        self._rprocs: dict[int, Rproc] = {}
        # Made now, not on first use: Host.close() must be able to close it while a recovery
        # is about to block on an inline dump in it.
        from remoteproc.core.devcoredump import CoredumpStore

        self._own_store = coredump_store is None
        self._coredump_store = CoredumpStore() if coredump_store is None else coredump_store
        self._closed = False
        self.panic_hook = False
        if panic_hook:
            self.install_panic_hook()

    def install_panic_hook(self, *, sigterm: bool = True) -> None:
        """``rproc_panic_handler``: tell this host's running processors that the host is going
        down, at interpreter exit and (``sigterm``) on SIGTERM, until ``close()``. For programs
        (rprocd, the CLI, a user's main), never done by the library on its own."""
        self.panic_hook = True
        _register_panic_host(self, sigterm=sigterm)

    # -- firmware

    def add_firmware(self, name: str, data: bytes | bytearray) -> None:
        """Make ``name`` resolvable without a file (the kernel's built-in firmware)."""
        check_firmware_name(name)
        self.builtin_firmware[name] = data

    def request_firmware(self, name: str) -> Firmware:
        return request_firmware(self, name)

    @property
    def coredump_store(self) -> CoredumpStore:
        return self._coredump_store

    # -- registry

    def add(self, rproc: Rproc) -> Rproc:
        """``rproc_add``: validate, take the lowest free index, publish, auto-boot."""
        if self._closed:
            raise RprocError(errno.ENODEV, "host is closed")
        self._validate(rproc)
        with self._lock:
            if rproc.host is not None or rproc.index >= 0:
                raise RprocError(errno.EBUSY, f"{rproc.name} is already registered")
            index = 0
            while index in self._rprocs:
                index += 1
            self._rprocs[index] = rproc
            rproc.index = index
            rproc.host = self
        rproc.events.parent = self.events
        log.info("%s: %s is available", rproc.dev_name, rproc.name)
        rproc.publish(EventKind.ADDED, wait=True)
        if rproc.auto_boot:
            try:
                self._trigger_auto_boot(rproc)
            except BaseException:
                self._unregister(rproc)
                raise
        return rproc

    @staticmethod
    def _validate(rproc: Rproc) -> None:
        st = rproc.state
        if st not in INITIAL_STATES:
            raise RprocError(errno.EINVAL, f"invalid initial state {st.sysfs}")
        if st is State.OFFLINE and rproc.ops.start is not None:
            return
        if st is State.DETACHED and rproc.ops.attach is not None and rproc.cached_table is None:
            return
        op = "attach" if st is State.DETACHED else "start"
        raise RprocError(errno.EINVAL, f"invalid initial state {st.sysfs} or missing {op} op")

    def _trigger_auto_boot(self, rproc: Rproc) -> None:
        if rproc.state is State.DETACHED:
            rproc.boot()
            return

        def auto_boot() -> None:
            if rproc.host is not self or rproc.state is State.DELETED:
                return
            try:
                rproc.boot()
            except RprocError as exc:
                rproc.publish(EventKind.BOOT_FAILED, wait=True, error=exc)

        self.workqueue.queue(("auto_boot", id(rproc)), auto_boot)

    def _unregister(self, rproc: Rproc) -> None:
        with self._lock:
            if self._rprocs.get(rproc.index) is rproc:
                del self._rprocs[rproc.index]
        rproc.events.parent = None
        rproc.host = None
        rproc.index = -1

    def delete(self, rproc: Rproc) -> None:
        """``rproc_del``: stop it (whatever its power count), mark DELETED, free the index."""
        with self._lock:
            if self._rprocs.get(rproc.index) is not rproc:
                raise RprocError(errno.ENODEV, f"{rproc.name} is not registered here")
        rproc.unregister()
        rproc.publish(EventKind.DELETED, wait=True)
        self._unregister(rproc)

    def get(self, index: int) -> Rproc:
        with self._lock:
            rproc = self._rprocs.get(index)
        if rproc is None:
            raise RprocError(errno.ENODEV, f"no remoteproc{index}")
        return rproc

    def by_name(self, name: str) -> Rproc | None:
        """The processor named ``name`` (or whose device name is ``name``: "remoteproc3")."""
        for rproc in self:
            if rproc.name == name or rproc.dev_name == name:
                return rproc
        return None

    def __iter__(self) -> Iterator[Rproc]:
        with self._lock:
            items = sorted(self._rprocs.items())
        return iter([r for _, r in items])

    def __len__(self) -> int:
        with self._lock:
            return len(self._rprocs)

    def __contains__(self, rproc: object) -> bool:
        with self._lock:
            return any(r is rproc for r in self._rprocs.values())

    def subscribe(
        self,
        callback: Callable[[Any], None] | None = None,
        *,
        kinds: set[EventKind] | frozenset[EventKind] | None = None,
    ) -> Any:
        """Events of every registered processor (see ``EventBus.subscribe``)."""
        return self.events.subscribe(callback, kinds=kinds)

    # -- panic

    def panic(self, *, sleep: bool = True) -> int:
        """``rproc_panic_handler``: ``ops.panic`` of every RUNNING/ATTACHED processor, then wait
        the longest delay returned (milliseconds). Returns that delay."""
        delay = 0
        for rproc in self:
            delay = max(delay, rproc.panic())
        if sleep and delay:
            time.sleep(delay / 1000.0)
        return delay

    # -- lifetime

    def close(self) -> None:
        """Delete every processor (stopping what runs), join the workers, close the store."""
        if self._closed:
            return
        self._closed = True
        _unregister_panic_host(self)
        # The store first: a recovery blocked on an inline dump (holding its processor's
        # lock) is released, so the deletes below cannot wait for the dump timeout.
        if self._own_store:
            self._coredump_store.close()
        for rproc in reversed(list(self)):
            try:
                self.delete(rproc)
            except RprocError as exc:
                log.error("%s: delete failed: %s", rproc.dev_name, exc)
        # Queued work (auto-boots, crash handling) of deleted processors is dropped.
        self.workqueue.close()
        self.dispatcher.close()  # delivers what is still queued
        self.events.close()

    @property
    def closed(self) -> bool:
        return self._closed



# ---- the process-wide panic hook -----------------------------------------------------------------

_panic_lock = threading.Lock()
_panic_hosts: weakref.WeakSet[Host] = weakref.WeakSet()
_atexit_installed = False
_sigterm_installed = False
_prev_sigterm: Any = None


def _register_panic_host(host: Host, *, sigterm: bool) -> None:
    global _atexit_installed, _sigterm_installed, _prev_sigterm
    with _panic_lock:
        _panic_hosts.add(host)
        if not _atexit_installed:
            _atexit_installed = True
            atexit.register(_run_panic_hooks)
        if (sigterm and not _sigterm_installed
                and threading.current_thread() is threading.main_thread()):
            _sigterm_installed = True
            try:
                _prev_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
            except (ValueError, OSError):
                _prev_sigterm = None


def _unregister_panic_host(host: Host) -> None:
    with _panic_lock:
        _panic_hosts.discard(host)


def _run_panic_hooks() -> int:
    with _panic_lock:
        hosts = list(_panic_hosts)
    delay = 0
    for host in hosts:
        delay = max(delay, host.panic(sleep=False))
    if delay:
        time.sleep(delay / 1000.0)
    return delay


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _run_panic_hooks()
    prev = _prev_sigterm
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        # Default disposition: die of SIGTERM as if we had never been here.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
