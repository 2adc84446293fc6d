"""``Rproc``: one remote processor and its lifecycle (spec §1, ``remoteproc_core.c``).

Owns boot / shutdown / attach / detach / crash / recovery orderings with the kernel's error
unwinding, the power refcount, the resource lists the handlers fill, and the processor's lock.

Rules:
- One lock per processor (``_RprocLock``). Every lifecycle method takes it for its whole run, as
  the kernel's ``rproc->lock``; platform ops, resource handlers and subdevice hooks run under it.
- Lock order: processor lock -> (DmaPool lock | event-bus lock | work-queue lock). Nothing here
  takes two processor locks, and no leaf lock is held while calling out.
- Interruptible waits: the kernel's ``mutex_lock_interruptible`` returns -EINTR when a signal
  arrives. Here a caller passes ``cancel=`` (a ``threading.Event``; the ABI layer sets it when a
  userspace request is interrupted); waiting for the lock polls it and raises
  ``RprocError(EINTR)``. ``set_firmware`` maps that to EINVAL, as the kernel does. A thread that
  already holds the lock and calls a lifecycle method again (an op calling back) gets EDEADLK
  instead of a silent deadlock.
- Callbacks run outside the lock: events go to the host's ``Dispatcher`` thread as they happen;
  a lifecycle call waits for its own events to be delivered after it unlocks (events.py).
- The state changes only through ``states.transition``; this module never decides legality.
- ``report_crash`` and ``vq_interrupt`` never take the lock: they are safe from any thread,
  including a platform's emulation thread while it is inside an op. Crash handling runs on the
  host's recovery work queue (``rproc_recovery_wq``), one pending item per processor.
- Deliberate differences from the kernel (docs/kernel-differences.md): CRASHED can be shut down;
  a failed recovery ends OFFLINE (or DETACHED) with power 0 and all resources released;
  recovering a processor we attached to never requests firmware; attach recovery re-binds the
  device's live table; deleting a processor stops it whatever its power count; ``table_sz`` is
  cleared on stop (the v6.15 fix); the v6.16 attach-unwind fixes are applied.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from remoteproc.closing import Closeable
from remoteproc.core import states
from remoteproc.core.events import (
    REFUSED_EVENT_INTERVAL,
    Dispatcher,
    Event,
    EventBus,
    EventKind,
    Subscription,
)
from remoteproc.core.firmware_loader import check_firmware_name, request_firmware
from remoteproc.core.memory import DmaPool, Mapping, MemEntry, find_by_name, walk_da, walk_pa
from remoteproc.core.ops import RprocOps
from remoteproc.core.resources import (
    TraceBuffer,
    alloc_registered_carveouts,
    handle_resources,
    resource_cleanup,
)
from remoteproc.core.states import Cause, CrashType, Feature, State
from remoteproc.core.subdev import (
    Subdev,
    prepare_subdevices,
    start_subdevices,
    stop_subdevices,
    unprepare_subdevices,
)
from remoteproc.core.workqueue import WorkQueue
from remoteproc.errors import RprocError

if TYPE_CHECKING:
    from remoteproc.core.coredump import DumpConf, DumpSegment
    from remoteproc.core.devcoredump import CoredumpStore
    from remoteproc.core.host import Host
    from remoteproc.core.virtio import RprocVdev, RprocVring
    from remoteproc.firmware.elf import Firmware

__all__ = ["CRASH_LOOP_MAX", "CRASH_LOOP_WINDOW_S", "Rproc"]

# Crash-loop back-off defaults (DIFF, docs/kernel-differences.md): 10 crashes within 5 s. A
# firmware that crashes at boot reaches that in well under a second (one was seen going round
# 584 times in a few seconds); one that crashes now and then, or a test that crashes it a few
# times on purpose, is recovered every time, as in the kernel.
CRASH_LOOP_MAX = 10
CRASH_LOOP_WINDOW_S = 5.0

log = logging.getLogger("remoteproc")

_LOCK_POLL = 0.05  # seconds between checks of a cancel flag while waiting for the lock


class _RprocLock:
    """A mutex whose waits can be interrupted (``mutex_lock_interruptible``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def acquire(self, cancel: threading.Event | None) -> None:
        me = threading.get_ident()
        if self.owner == me:
            raise RprocError(errno.EDEADLK, "rproc lock already held by this thread")
        if cancel is None:
            self._lock.acquire()
        else:
            while not self._lock.acquire(timeout=_LOCK_POLL):
                if cancel.is_set():
                    raise RprocError(errno.EINTR, "interrupted while waiting for the rproc lock")
        self.owner = me

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def held(self) -> bool:
        return self.owner == threading.get_ident()


def _code(exc: BaseException) -> int:
    """The errno a failure reports (a platform bug that is not an RprocError counts as EIO)."""
    return exc.errno if isinstance(exc, RprocError) else errno.EIO


def _norm_byteorder(value: object) -> str | None:
    if value in ("<", "little"):
        return "<"
    if value in (">", "big"):
        return ">"
    return None


class Rproc(Closeable):
    """A remote processor (``struct rproc``).

    ``Rproc(name, ops, *, firmware=None, host=None, auto_boot=True, state=State.OFFLINE,
    dma=None, features=(), has_iommu=False, sysfs_read_only=False, byteorder="<", priv=None)``

    - ``ops`` is copied; when ``ops.load`` is None the ELF defaults are installed, and
      ``ops.coredump`` defaults to the ELF core writer (§1.10).
    - ``state`` is OFFLINE, or DETACHED for a core a boot loader already started.
    - ``dma`` is the coherent pool carveouts and vdev buffers come from (None: ENOMEM on use).
    - ``host``: when given, the processor is registered there at once (``host.add(self)``),
      which may auto-boot it. Otherwise call ``host.add(rproc)`` later, or use it standalone.
    """

    def __init__(
        self,
        name: str,
        ops: RprocOps,
        *,
        firmware: str | None = None,
        host: Host | None = None,
        auto_boot: bool = True,
        state: State = State.OFFLINE,
        dma: DmaPool | None = None,
        features: Iterable[Feature | int] = (),
        has_iommu: bool = False,
        sysfs_read_only: bool = False,
        byteorder: str = "<",
        priv: object = None,
    ) -> None:
        if not name or ops is None:
            raise RprocError(errno.EINVAL, "invalid rproc name or ops")
        self.name = name
        self.ops = self._install_defaults(ops.copy())
        self.firmware: str = firmware if firmware else f"rproc-{name}-fw"
        self.auto_boot = auto_boot
        self._state = State(state)
        self.power = 0
        self.index = -1
        self.host: Host | None = None
        self.dma = dma
        self.has_iommu = has_iommu
        self.sysfs_read_only = sysfs_read_only
        self.cdev_put_on_release = False
        self.recovery_disabled = False
        self.crash_cnt = 0
        # DIFF: crash-loop back-off (docs/kernel-differences.md): after ``crash_loop_max``
        # crashes within ``crash_loop_window_s`` seconds, automatic recovery stops and the
        # processor stays CRASHED. 0 for either turns the limit off (the kernel's behaviour).
        self.crash_loop_max = CRASH_LOOP_MAX
        self.crash_loop_window_s = CRASH_LOOP_WINDOW_S
        self._crash_times: collections.deque[float] = collections.deque()
        self.priv = priv
        o = _norm_byteorder(byteorder)
        if o is None:
            raise RprocError(errno.EINVAL, f"byteorder must be '<' or '>', not {byteorder!r}")
        self.byteorder = o
        self._features: set[int] = set()
        for f in features:
            self.set_feature(f)

        # Resource table state (§1.5, §1.7): cached copy, live pointer, pristine copy.
        # vring_refused events per ring: (when the last was published, refusals since)
        self._refused: dict[str, tuple[float, int]] = {}
        self.refused_interval = REFUSED_EVENT_INTERVAL  # seconds between two such events
        self._refused_lock = threading.Lock()
        self.cached_table: bytearray | None = None
        self.table_ptr: memoryview | None = None
        self.clean_table: bytes | None = None
        self.table_sz = 0
        self.bootaddr = 0
        self.carveouts: list[MemEntry] = []
        self.mappings: list[Mapping] = []
        self.traces: list[TraceBuffer] = []
        self.rvdevs: list[RprocVdev] = []
        self.subdevs: list[Subdev] = []
        self.notifyids: dict[int, RprocVring] = {}
        self.max_notifyid = -1
        self.nb_vdev = 0

        # Coredump (§7): the coredump module reads and fills these.
        from remoteproc.core.coredump import ELFCLASSNONE, DumpConf

        self.dump_segments: list[DumpSegment] = []
        self.dump_conf: DumpConf = DumpConf.DISABLED
        self.elf_class = ELFCLASSNONE
        self.elf_machine = 0
        self.crash_regs: dict[str, object] | None = None
        self._own_coredump_store: CoredumpStore | None = None
        self._store_lock = threading.Lock()  # leaf: guards the lazy creation above

        self.iommu_enabled = False
        self._preloaded = False  # running an image we did not load (attached)
        self._lock = _RprocLock()
        self._pending: tuple[Dispatcher, int] | None = None  # last event of a locked section
        self.events = EventBus()
        self._own_dispatcher: Dispatcher | None = None
        self._own_wq: WorkQueue | None = None
        self._closed = False

        if host is not None:
            host.add(self)

    # ---- ops defaults -------------------------------------------------------------------------

    @staticmethod
    def _install_defaults(ops: RprocOps) -> RprocOps:
        if ops.coredump is None:
            from remoteproc.core.coredump import rproc_coredump

            ops.coredump = rproc_coredump
        if ops.load is None:
            from remoteproc.firmware import elf_loader as elf

            ops.load = elf.rproc_elf_load_segments
            ops.parse_fw = elf.rproc_elf_load_rsc_table
            ops.find_loaded_rsc_table = elf.rproc_elf_find_loaded_rsc_table
            ops.sanity_check = elf.rproc_elf_sanity_check
            ops.get_boot_addr = elf.rproc_elf_get_boot_addr
        return ops

    # ---- identity and simple properties -------------------------------------------------------

    @property
    def dev_name(self) -> str:
        """``remoteprocN`` once registered; the processor's name before that."""
        return f"remoteproc{self.index}" if self.index >= 0 else self.name

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        """A platform may mark a core DETACHED (or back OFFLINE) before registering it, as a
        kernel driver sets ``rproc->state`` before ``rproc_add``; afterwards only the state
        machine changes it (EBUSY)."""
        if self.host is not None or self.power or self._state not in states.INITIAL_STATES:
            raise RprocError(errno.EBUSY, "state can only be set before registration")
        if value not in states.INITIAL_STATES:
            raise RprocError(errno.EINVAL, "initial state must be offline or detached")
        self._state = State(value)

    def has_feature(self, feature: Feature | int) -> bool:
        return int(feature) in self._features

    def set_feature(self, feature: Feature | int) -> None:
        """``rproc_set_feature``: EINVAL for a feature number the kernel does not define."""
        if not 0 <= int(feature) < len(Feature):
            raise RprocError(errno.EINVAL, f"unknown rproc feature {int(feature)}")
        self._features.add(int(feature))

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset(Feature(f) for f in self._features)

    @property
    def coredump_store(self) -> CoredumpStore:
        """The host's store; a standalone processor has its own (closed with it)."""
        host = self.host
        if host is not None:
            return host.coredump_store
        with self._store_lock:
            if self._own_coredump_store is None:
                from remoteproc.core.devcoredump import CoredumpStore

                self._own_coredump_store = CoredumpStore()
                if self._closed:
                    self._own_coredump_store.close()  # dumps after close are dropped
            return self._own_coredump_store

    def __repr__(self) -> str:
        return f"<Rproc {self.dev_name} {self.name!r} {self._state.sysfs} power={self.power}>"

    # ---- locking and events ---------------------------------------------------------------------

    @contextmanager
    def _locked(self, cancel: threading.Event | None = None) -> Iterator[None]:
        self._lock.acquire(cancel)
        try:
            yield
        finally:
            self._unlock()

    def _unlock(self) -> None:
        pending, self._pending = self._pending, None
        self._lock.release()
        if pending is not None:
            # The caller returns only once subscribers have seen what it did.
            pending[0].wait(pending[1])

    def _dispatcher(self) -> Dispatcher:
        if self.host is not None:
            return self.host.dispatcher
        if self._own_dispatcher is None:
            self._own_dispatcher = Dispatcher(f"{self.name}-events")
        return self._own_dispatcher

    def _event(self, kind: EventKind, **kw: Any) -> Event:
        return Event(kind, self.dev_name, self.name, self._state.sysfs, **kw)

    def publish(self, kind: EventKind, *, wait: bool = False, **kw: Any) -> None:
        """The events seam for the registry (``Host``): post ``kind`` for this processor, as its
        own transitions do (``ADDED``, ``BOOT_FAILED`` and ``DELETED`` come from the host)."""
        self._emit(kind, wait=wait, **kw)

    def poll(self) -> None:
        """Let the platform run the remote's pending work on this thread (``RprocOps.poll``),
        before the caller blocks for a reply. Never from a lifecycle operation."""
        poll = self.ops.poll
        if poll is not None and not self._lock.held():
            poll(self)

    def lock_held(self) -> bool:
        """Whether the calling thread is inside one of this processor's lifecycle operations
        (holds its lock): a platform must not run host reactions on such a thread."""
        return self._lock.held()

    def _emit(self, kind: EventKind, *, wait: bool = False, **kw: Any) -> None:
        """Post an event for delivery now (outside the lock, on the dispatcher's thread).

        Inside a locked section the unlock waits for it; outside, ``wait`` decides."""
        dispatcher = self._dispatcher()
        ticket = dispatcher.post(self.events, self._event(kind, **kw))
        if self._lock.held():
            self._pending = (dispatcher, ticket)
        elif wait:
            dispatcher.wait(ticket)

    def _set_state(self, cause: Cause) -> None:
        old = self._state
        self._state = states.transition(old, cause)
        self._emit(EventKind.STATE, old=old.sysfs, detail=cause.value)

    def subscribe(
        self,
        callback: Callable[[Event], None] | None = None,
        *,
        kinds: set[EventKind] | frozenset[EventKind] | None = None,
    ) -> Subscription:
        """Events of this processor: ``callback`` on the publishing thread, or (no callback) a
        subscription to iterate (``for ev in sub``, ``async for ev in sub``, ``sub.get()``)."""
        return self.events.subscribe(callback, kinds=kinds)

    # ---- memory ---------------------------------------------------------------------------------

    def da_to_va(self, da: int, n: int) -> memoryview | None:
        """``rproc_da_to_va``: the platform's translation when it has one for ``da``, else the
        carveouts (the kernel falls back to the walk when the op returns NULL, §4.3)."""
        if self.ops.da_to_va is not None:
            view = self.ops.da_to_va(self, da, n)
            if view is not None:
                return view
        return walk_da(list(self.carveouts), da, n)

    def pa_to_va(self, pa: int, n: int) -> memoryview | None:
        """Bus address -> host view: the DMA pool, then the carveouts (rpmsg buffers, rings)."""
        if self.dma is not None:
            view = self.dma.pa_to_va(pa, n)
            if view is not None:
                return view
        return walk_pa(list(self.carveouts), pa, n)

    def add_carveout(self, mem: MemEntry) -> None:
        """``rproc_add_carveout``: append (order matters for the da walk and allocation)."""
        self.carveouts.append(mem)

    def find_carveout_by_name(self, name: str) -> MemEntry | None:
        return find_by_name(list(self.carveouts), name)

    def add_subdev(self, subdev: Subdev) -> None:
        self.subdevs.append(subdev)

    def remove_subdev(self, subdev: Subdev) -> None:
        if subdev in self.subdevs:
            self.subdevs.remove(subdev)

    def coredump_cleanup(self) -> None:
        from remoteproc.core.coredump import cleanup

        cleanup(self)

    # ---- virtio -------------------------------------------------------------------------------

    def vq_interrupt(self, notifyid: int) -> bool:
        """``rproc_vq_interrupt``: the remote kicked ``notifyid``. False is IRQ_NONE (no such
        ring, no queue, or nothing new in its used ring). Safe from any thread."""
        rvring = self.notifyids.get(notifyid)
        if rvring is None:
            return False
        vq = rvring.vq
        if vq is None:
            return False
        return bool(vq.interrupt())

    # ---- firmware -------------------------------------------------------------------------------

    def request_firmware(self, name: str | None = None) -> Firmware:

        return request_firmware(self.host, name if name is not None else self.firmware)

    def set_firmware(self, name: str | None, *, cancel: threading.Event | None = None) -> None:
        """``rproc_set_firmware``: OFFLINE only (EBUSY), cut at the first newline, not empty."""
        if name is None:
            raise RprocError(errno.EINVAL, "invalid firmware name")
        try:
            self._lock.acquire(cancel)
        except RprocError as exc:
            if exc.errno == errno.EINTR:
                raise RprocError(
                    errno.EINVAL, "interrupted while waiting for the rproc lock"
                ) from None
            raise
        try:
            try:
                states.check_set_firmware(self._state)
            except RprocError:
                log.error("%s: can't change firmware while running", self.dev_name)
                raise
            text = name.split("\n", 1)[0]
            if not text:
                log.error("%s: can't provide empty string for firmware name", self.dev_name)
                raise RprocError(errno.EINVAL, "can't provide empty string for firmware name")

            check_firmware_name(text)
            self.firmware = text
            self._emit(EventKind.FIRMWARE, detail=text)
        finally:
            self._unlock()

    def set_coredump(self, conf: DumpConf | str, *, cancel: threading.Event | None = None) -> None:
        """sysfs/debugfs ``coredump`` write: EBUSY while CRASHED; ``conf`` is a DumpConf or its
        string ("disabled", "enabled", "inline")."""
        from remoteproc.core.coredump import DumpConf

        value = conf if isinstance(conf, DumpConf) else DumpConf.parse(str(conf))
        with self._locked(cancel):
            states.check_coredump_config(self._state)
            self.dump_conf = value

    # ---- iommu and device prepare (no-ops unless the platform needs them) ----------------------

    def _enable_iommu(self) -> None:
        if self.has_iommu:
            self.iommu_enabled = True

    def _disable_iommu(self) -> None:
        if self.iommu_enabled:
            self.mappings.clear()
            self.iommu_enabled = False

    def _prepare_device(self) -> None:
        if self.ops.prepare is not None:
            self.ops.prepare(self)

    def _unprepare_device(self) -> None:
        if self.ops.unprepare is not None:
            try:
                self.ops.unprepare(self)
            except RprocError as exc:
                # The kernel ignores unprepare's result on every unwind path.
                log.warning("%s: unprepare failed: %d", self.dev_name, -exc.errno)

    def _drop_tables(self) -> None:
        self.cached_table = None
        self.table_ptr = None
        self.clean_table = None
        self.table_sz = 0  # v6.15: a stale size must not survive the table

    # ---- boot (§1.4, §1.5) -----------------------------------------------------------------------

    def boot(self, *, cancel: threading.Event | None = None) -> None:
        """``rproc_boot``: power up (load firmware and start, or attach). Refcounted."""
        self._crash_times.clear()
        with self._locked(cancel):
            try:
                states.check_boot(self._state, self.name)
            except RprocError as exc:
                log.error("%s: %s", self.dev_name, exc.message)
                raise
            self.power += 1
            if self.power > 1:
                return
            try:
                if self._state is State.DETACHED:
                    log.info("%s: attaching to %s", self.dev_name, self.name)
                    self._attach()
                else:
                    log.info("%s: powering up %s", self.dev_name, self.name)
                    try:
                        fw = self.request_firmware()
                    except RprocError as exc:
                        log.error("%s: request_firmware failed: %d", self.dev_name, -exc.errno)
                        raise
                    self._fw_boot(fw)
            except BaseException:
                self.power -= 1
                raise

    def _fw_boot(self, fw: Firmware) -> None:
        dev = self.dev_name
        if self.ops.sanity_check is not None:
            self.ops.sanity_check(self, fw)
        log.info("%s: Booting fw image %s, size %d", dev, fw.name, fw.size)
        self._preloaded = False
        self.crash_regs = None
        byteorder = self._firmware_byteorder(fw)
        if byteorder is not None:
            self.byteorder = byteorder
        self._enable_iommu()
        try:
            self._prepare_device()
        except BaseException as exc:
            log.error("%s: can't prepare rproc %s: %d", dev, self.name, -_code(exc))
            self._disable_iommu()
            raise
        try:
            self.bootaddr = (
                self.ops.get_boot_addr(self, fw) if self.ops.get_boot_addr is not None else 0
            )
            if self.ops.parse_fw is not None:
                self.ops.parse_fw(self, fw)
        except BaseException:
            # The kernel does not free a half-made table here; we do, so nothing outlives it.
            self._drop_tables()
            self._unprepare_device()
            self._disable_iommu()
            raise
        self.max_notifyid = -1
        self.nb_vdev = 0
        try:
            try:
                handle_resources(self)
            except RprocError as exc:
                log.error("%s: Failed to process resources: %d", dev, -exc.errno)
                raise
            try:
                alloc_registered_carveouts(self)
            except RprocError as exc:
                log.error("%s: Failed to allocate associated carveouts: %d", dev, -exc.errno)
                raise
            self._start(fw)
        except BaseException:
            resource_cleanup(self)
            self._drop_tables()
            self._unprepare_device()
            self._disable_iommu()
            raise

    @staticmethod
    def _firmware_byteorder(fw: Firmware) -> str | None:
        try:
            return _norm_byteorder(fw.elf.byteorder)
        except Exception:
            return None  # not an ELF image: the platform's parse_fw knows its format

    def _start(self, fw: Firmware | None) -> None:
        """``rproc_start``: load, point at the loaded table, subdevices, start. ``fw`` None
        restarts an image already in memory (recovery of a processor we attached to)."""
        dev = self.dev_name
        loaded: memoryview | None = None
        if fw is not None:
            if self.ops.load is None:
                log.error("%s: Failed to load program segments: %d", dev, -errno.EINVAL)
                raise RprocError(errno.EINVAL, "no load op")
            try:
                self.ops.load(self, fw)
            except RprocError as exc:
                log.error("%s: Failed to load program segments: %d", dev, -exc.errno)
                raise
            if self.ops.find_loaded_rsc_table is not None:
                loaded = self.ops.find_loaded_rsc_table(self, fw)
        elif self.ops.get_loaded_rsc_table is not None:
            loaded = self.ops.get_loaded_rsc_table(self)
        if loaded is not None and self.cached_table is not None and self.table_sz:
            # From here on every table write-back lands in device memory (§1.5 step 10b).
            if len(loaded) < self.table_sz:
                raise RprocError(errno.EINVAL, "loaded resource table smaller than the cached one")
            loaded[: self.table_sz] = self.cached_table[: self.table_sz]
            self.table_ptr = loaded[: self.table_sz]
        try:
            prepare_subdevices(self.subdevs)
        except BaseException as exc:
            log.error("%s: failed to prepare subdevices for %s: %d", dev, self.name, -_code(exc))
            self._table_back_to_cache()
            raise
        if self.ops.start is None:
            unprepare_subdevices(self.subdevs)
            self._table_back_to_cache()
            raise RprocError(errno.EINVAL, "no start op")
        try:
            self.ops.start(self)
        except BaseException as exc:
            log.error("%s: can't start rproc %s: %d", dev, self.name, -_code(exc))
            unprepare_subdevices(self.subdevs)
            self._table_back_to_cache()
            raise
        try:
            start_subdevices(self.subdevs)
        except BaseException as exc:
            log.error("%s: failed to probe subdevices for %s: %d", dev, self.name, -_code(exc))
            self._call_stop_quietly()
            unprepare_subdevices(self.subdevs)
            self._table_back_to_cache()
            raise
        self._set_state(Cause.START)
        log.info("%s: remote processor %s is now up", dev, self.name)

    def _table_back_to_cache(self) -> None:
        if self.cached_table is not None:
            self.table_ptr = memoryview(self.cached_table)

    def _call_stop_quietly(self) -> None:
        if self.ops.stop is None:
            return
        try:
            self.ops.stop(self)
        except RprocError as exc:
            log.error("%s: can't stop rproc: %d", self.dev_name, -exc.errno)

    # ---- attach (§1.7) ---------------------------------------------------------------------------

    def _attach(self) -> None:
        dev = self.dev_name
        self.crash_regs = None
        self._enable_iommu()
        try:
            self._prepare_device()
        except BaseException as exc:
            log.error("%s: can't prepare rproc %s: %d", dev, self.name, -_code(exc))
            self._disable_iommu()
            raise
        try:
            self._set_rsc_table()
            self.max_notifyid = -1
            self.nb_vdev = 0
            try:
                handle_resources(self)
            except RprocError as exc:
                log.error("%s: Failed to process resources: %d", dev, -exc.errno)
                raise
            try:
                alloc_registered_carveouts(self)
            except RprocError as exc:
                log.error("%s: Failed to allocate associated carveouts: %d", dev, -exc.errno)
                raise
            self._attach_core()
        except BaseException:
            # v6.16: resources and the clean table are released on every failure path.
            resource_cleanup(self)
            self._drop_tables()
            self._unprepare_device()
            self._disable_iommu()
            raise
        self._preloaded = True

    def _set_rsc_table(self) -> None:
        """``rproc_set_rsc_table``: use the live table in device memory."""
        table: memoryview | None = None
        if self.ops.get_loaded_rsc_table is not None:
            try:
                table = self.ops.get_loaded_rsc_table(self)
            except RprocError as exc:
                log.error("%s: can't load resource table: %d", self.dev_name, -exc.errno)
                raise
        if table is None:
            return
        # A pristine copy lets a later detach give the remote its table back untouched.
        self.clean_table = bytes(table) if self.ops.detach is not None else None
        self.cached_table = None
        self.table_ptr = table
        self.table_sz = len(table)

    def _attach_core(self) -> None:
        """``__rproc_attach``."""
        dev = self.dev_name
        try:
            prepare_subdevices(self.subdevs)
        except BaseException as exc:
            log.error("%s: failed to prepare subdevices for %s: %d", dev, self.name, -_code(exc))
            raise
        if self.ops.attach is not None:
            try:
                self.ops.attach(self)
            except BaseException as exc:
                log.error("%s: can't attach to rproc %s: %d", dev, self.name, -_code(exc))
                unprepare_subdevices(self.subdevs)
                raise
        try:
            start_subdevices(self.subdevs)
        except BaseException as exc:
            log.error("%s: failed to probe subdevices for %s: %d", dev, self.name, -_code(exc))
            self._call_stop_quietly()
            unprepare_subdevices(self.subdevs)
            raise
        self._set_state(Cause.ATTACH)
        self._emit(EventKind.ATTACHED)
        log.info("%s: remote processor %s is now attached", dev, self.name)

    # ---- shutdown (§1.6) -------------------------------------------------------------------------

    def shutdown(self, *, cancel: threading.Event | None = None) -> None:
        """``rproc_shutdown``: drop one power reference; the last one stops the processor.
        Allowed from RUNNING, ATTACHED and (our fix) CRASHED."""
        self._crash_times.clear()
        with self._locked(cancel):
            states.check_shutdown(self._state)
            if self.power > 1:
                self.power -= 1
                return
            self._stop(crashed=self._state is State.CRASHED)
            self.power = 0
            self._cleanup_after_stop()

    def _stop(self, crashed: bool) -> None:
        """``rproc_stop``."""
        dev = self.dev_name
        if self.ops.stop is None:
            raise RprocError(errno.EINVAL, "no stop op")
        stop_subdevices(self.subdevs, crashed)
        self._reset_rsc_table_on_stop()
        try:
            self.ops.stop(self)
        except RprocError as exc:
            log.error("%s: can't stop rproc: %d", dev, -exc.errno)
            raise
        unprepare_subdevices(self.subdevs)
        self._set_state(Cause.STOP)
        log.info("%s: stopped remote processor %s", dev, self.name)

    def _reset_rsc_table_on_stop(self) -> None:
        if self.table_ptr is None:
            return
        if self.cached_table is not None:
            self.table_ptr = memoryview(self.cached_table)
            return
        # Attached: keep a copy of the live table (host write-backs included) for what follows.
        self.cached_table = bytearray(self.table_ptr[: self.table_sz])
        self.clean_table = None
        self.table_ptr = memoryview(self.cached_table)

    def _cleanup_after_stop(self) -> None:
        resource_cleanup(self)
        self._unprepare_device()
        self._disable_iommu()
        self._drop_tables()
        self._preloaded = False

    # ---- detach (§1.8) ---------------------------------------------------------------------------

    def detach(self, *, cancel: threading.Event | None = None) -> None:
        """``rproc_detach``: leave an ATTACHED processor running on its own."""
        with self._locked(cancel):
            states.check_detach(self._state)
            if self.power > 1:
                self.power -= 1
                return
            self._detach_core()
            self.power = 0
            self._cleanup_after_stop()

    def _detach_core(self) -> None:
        """``__rproc_detach``."""
        dev = self.dev_name
        if self.ops.detach is None:
            raise RprocError(errno.EINVAL, "no detach op")
        stop_subdevices(self.subdevs, False)
        self._reset_rsc_table_on_detach()
        try:
            self.ops.detach(self)
        except RprocError as exc:
            log.error("%s: can't detach rproc: %d", dev, -exc.errno)
            raise
        unprepare_subdevices(self.subdevs)
        self._set_state(Cause.DETACH)
        self._emit(EventKind.DETACHED)
        log.info("%s: detached remote processor %s", dev, self.name)

    def _reset_rsc_table_on_detach(self) -> None:
        if self.table_ptr is None:
            return
        if self.clean_table is None:
            raise RprocError(errno.EINVAL, "no clean resource table to restore")
        device_table = self.table_ptr
        self.cached_table = bytearray(device_table[: self.table_sz])
        self.table_ptr = memoryview(self.cached_table)
        device_table[: self.table_sz] = self.clean_table[: self.table_sz]
        self.clean_table = None

    # ---- crash and recovery (§1.9) -------------------------------------------------------------

    def report_crash(
        self,
        crash_type: CrashType | int | str = CrashType.FATAL_ERROR,
        *,
        regs: dict[str, object] | None = None,
    ) -> None:
        """``rproc_report_crash``: safe from any thread; handling happens on a worker.

        ``regs`` (optional) are the remote's registers at the crash, kept in ``crash_regs`` for
        the coredump of this crash's recovery."""
        ct = CrashType.parse(crash_type)
        if regs is not None:
            self.crash_regs = regs
        label = states.crash_type_name(int(ct))
        log.error("%s: crash detected in %s: type %s", self.dev_name, self.name, label)
        # Not waited for: a platform's emulation thread must not block on subscribers.
        self._emit(EventKind.CRASH, detail=label)
        self._workqueue().queue(("crash", id(self)), self._crash_handler_work)

    def report_vring_refused(self, where: str, error: RprocError) -> None:
        """An element of a ring (or the message in it) the remote wrote was refused; the ring
        already logged it. Publish a ``vring_refused`` event, at most one per ring per
        ``refused_interval`` (``count``: the refusals it stands for), so a remote that
        refuses to stop cannot flood subscribers. Safe from any thread; never waits."""
        now = time.monotonic()
        with self._refused_lock:
            last, pending = self._refused.get(where, (now - self.refused_interval - 1, 0))
            pending += 1
            if now - last < self.refused_interval:
                self._refused[where] = (last, pending)
                return
            self._refused[where] = (now, 0)
        self._emit(EventKind.VRING_REFUSED, detail=where, error=error, count=pending)

    def report_vring_broken(self, where: str, error: RprocError) -> None:
        """A virtio ring of this processor was broken by the remote (the kernel's ``BAD_RING``,
        which Linux only logs): publish it, so the dead channel is visible (``rproc watch``,
        the events file). Safe from any thread; never waits for subscribers."""
        log.error("%s: %s is broken, its channels are dead until the processor restarts: %s",
                  self.dev_name, where, error)
        self._emit(EventKind.VRING_BROKEN, detail=where, error=error)

    def _workqueue(self) -> WorkQueue:
        if self.host is not None:
            return self.host.workqueue
        if self._own_wq is None:

            self._own_wq = WorkQueue(f"{self.name}-recovery", max_workers=1)
        return self._own_wq

    def _crash_handler_work(self) -> None:
        """``rproc_crash_handler_work``."""
        with self._locked():
            if not states.crash_is_handled(self._state):
                # Already CRASHED: only the first crash is handled. OFFLINE (or DETACHED,
                # DELETED): nothing of ours runs, nothing to recover.
                return
            self._set_state(Cause.CRASH)
            self.crash_cnt += 1
            log.error("%s: handling crash #%d in %s", self.dev_name, self.crash_cnt, self.name)
            self._emit(EventKind.CRASH_HANDLED, count=self.crash_cnt)
            recover = not self.recovery_disabled
            if recover and self._crash_loop():
                recover = False
        if recover:
            # A failure is logged and published by trigger_recovery itself.
            with contextlib.suppress(RprocError):
                self._trigger_recovery()

    def _crash_loop(self) -> bool:
        """Record this crash; True when it completes a crash loop (lock held).

        The window is short on purpose: ``CRASH_LOOP_MAX`` crashes must come faster than
        one every ``CRASH_LOOP_WINDOW_S / CRASH_LOOP_MAX`` seconds on average.

        DIFF: the kernel recovers every crash. A firmware that crashes at boot would then go
        round crash/recovery hundreds of times a second; after ``crash_loop_max`` crashes
        within ``crash_loop_window_s`` the processor is left CRASHED, the reason logged and a
        ``recovery_stopped`` event emitted. A recovery asked for by hand (debugfs ``recover``,
        ``trigger_recovery``), a boot or a shutdown starts the count afresh.
        """
        limit, window = self.crash_loop_max, self.crash_loop_window_s
        if limit <= 0 or window <= 0:
            return False
        now = time.monotonic()
        times = self._crash_times
        times.append(now)
        while times and now - times[0] > window:
            times.popleft()
        if len(times) < limit:
            return False
        why = (f"{len(times)} crashes within {window:g} s: crash loop, not recovering "
               f"(recover by hand, or shut down and start again)")
        log.error("%s: %s: %s", self.dev_name, self.name, why)
        self._emit(EventKind.RECOVERY_STOPPED, count=len(times), detail=why)
        times.clear()
        return True

    def trigger_recovery(self, *, cancel: threading.Event | None = None) -> None:
        """``rproc_trigger_recovery``: recover if CRASHED, else do nothing."""
        self._crash_times.clear()  # by hand: the crash-loop count starts afresh
        self._trigger_recovery(cancel=cancel)

    def _trigger_recovery(self, *, cancel: threading.Event | None = None) -> None:
        with self._locked(cancel):
            if not states.recovery_applies(self._state):
                return
            dev = self.dev_name
            log.info("%s: recovering %s", dev, self.name)
            self._emit(EventKind.RECOVERY_START)
            try:
                # DIFF: detach/attach only recovers an image we attached to. One we loaded
                # from a file is reloaded (the kernel tries a detach and fails on the missing
                # clean table, leaving the processor CRASHED).
                if self.has_feature(Feature.ATTACH_ON_RECOVERY) and self._preloaded:
                    self._attach_recovery()
                else:
                    self._boot_recovery()
            except Exception as exc:
                # A platform bug (not an RprocError) must not leave a stuck state either.
                err = (
                    exc
                    if isinstance(exc, RprocError)
                    else RprocError(errno.EIO, f"{type(exc).__name__}: {exc}")
                )
                log.error("%s: Failed to recover %s: %d", dev, self.name, -err.errno)
                self._recovery_failed()
                self._emit(EventKind.RECOVERY_FAILED, error=err)
                if err is exc:
                    raise
                raise err from exc
            self._emit(EventKind.RECOVERY_DONE)

    def _boot_recovery(self) -> None:
        """``rproc_boot_recovery``: stop (crashed), coredump, reload, start. Power unchanged."""
        preloaded = self._preloaded
        self._stop(crashed=True)
        self._coredump()
        if preloaded:
            # DIFF (seed 000): the image we attached to is not ours to reload from disk; restart
            # what is in memory.
            self._start(None)
            return
        try:
            fw = self.request_firmware()
        except RprocError as exc:
            log.error("%s: request_firmware failed: %d", self.dev_name, -exc.errno)
            raise
        self._start(fw)

    def _coredump(self) -> None:
        if self.ops.coredump is None:
            return
        try:
            self.ops.coredump(self)
        except Exception as exc:
            log.error("%s: coredump failed: %s", self.dev_name, exc)
            self._emit(EventKind.COREDUMP, detail=f"failed: {exc}")
            return
        finally:
            # The registers belong to this crash; a later crash must not reuse them.
            self.crash_regs = None
        self._emit(EventKind.COREDUMP, detail=self.dump_conf.value)

    def _attach_recovery(self) -> None:
        """``rproc_attach_recovery``: detach then attach; no coredump, no firmware."""
        self._detach_core()
        # DIFF: re-bind the device's live table (the kernel keeps writing to its private copy
        # and loses the clean table, so a later detach fails).
        if self.ops.get_loaded_rsc_table is not None and self.cached_table is not None:
            table = self.ops.get_loaded_rsc_table(self)
            if table is not None:
                self.clean_table = bytes(table) if self.ops.detach is not None else None
                n = min(len(table), self.table_sz)
                table[:n] = self.cached_table[:n]
                self.table_ptr = table[: self.table_sz]
                self.cached_table = None
        self._attach_core()
        self._preloaded = True

    def _recovery_failed(self) -> None:
        """DIFF (§10.3, seed 000): no stuck state. Whatever the recovery had stopped is released
        and the power count is reset, so the user can set a firmware and start again."""
        if self._state is State.CRASHED:
            # The stop itself failed: the processor may still run. Stay CRASHED; the user can
            # retry "stop" (allowed from CRASHED here) or "recover".
            return
        resource_cleanup(self)
        self._unprepare_device()
        self._disable_iommu()
        self._drop_tables()
        self._preloaded = False
        self.power = 0

    # ---- deletion and close ----------------------------------------------------------------------

    def unregister(self) -> None:
        """``rproc_del``, for the registry (``Host.delete``): stop whatever runs (DIFF: whatever
        the power count), mark DELETED."""
        with self._locked():
            if states.can_stop(self._state):
                try:
                    self._stop(crashed=self._state is State.CRASHED)
                except RprocError as exc:
                    log.error("%s: stop on delete failed: %d", self.dev_name, -exc.errno)
                self._cleanup_after_stop()
            elif self._state is State.OFFLINE and (self.carveouts or self.table_ptr is not None):
                self._cleanup_after_stop()
            self.power = 0
            if self._state is not State.DELETED:
                self._set_state(Cause.DELETE)

    def close(self) -> None:
        """Unregister (if registered) or delete, then stop this processor's own worker."""
        with self._store_lock:
            if self._closed:
                return
            self._closed = True
            store = self._own_coredump_store
        # The store first, so a recovery blocked on an inline dump lets go of the lock.
        if store is not None:
            store.close()
        if self.host is not None:
            self.host.delete(self)
        else:
            self.unregister()
        if self._own_wq is not None:
            self._own_wq.close()
        if self._own_dispatcher is not None:
            self._own_dispatcher.close()


    # ---- panic -------------------------------------------------------------------------------

    def panic(self) -> int:
        """``ops.panic`` if the processor is up: milliseconds the host should wait (0 if none).
        No lock: the kernel calls it from an atomic panic notifier."""
        if self.ops.panic is None or not states.is_up(self._state):
            return 0
        try:
            return max(0, int(self.ops.panic(self)))
        except Exception:
            log.exception("%s: panic op failed", self.dev_name)
            return 0
