"""The whole ABI tree of one host: what ``rprocd`` mounts (independent of FUSE).

Owns ``AbiTree``: the root ``Dir`` with

- ``sys/devices/...`` (the device model, devices.py: ``platform/soc/<unit>.<node>/remoteproc/
  remoteprocN/rproc-virtio.K.auto/virtioM/<rpmsg devices>/...`` and ``soc0``), with
  ``sys/class/{remoteproc,rpmsg,tty}/`` and ``sys/bus/{platform,virtio,rpmsg,soc}/`` linking
  into it; a processor's attributes are sysfs.py's; ``sys/class/devcoredump/devcdN`` links to
  ``sys/devices/virtual/devcoredump/devcdN/{data,failing_device}``,
- ``sys/kernel/debug/remoteproc/remoteprocN/`` (debugfs.py),
- ``dev/remoteprocN`` (cdev.py), ``dev/rpmsg_ctrlN``, ``dev/rpmsgN`` (rpmsg_char.py),
  ``dev/ttyRPMSGn`` (tty.py),
- ``rprocd/devfs/``: what ``rproc run`` mounts at /dev: the ``dev`` entries plus, for every
  name in the host's /dev that they do not use, its link or an empty placeholder of its kind
  on which ``rproc run`` binds the host's entry. ``rprocd/mnt/`` is an empty directory
  ``rproc run`` mounts on (in its own namespace) while it builds the namespace,
- ``lib/firmware`` (a link to the host's first firmware folder, so ``cp`` lands in the search
  path),
- ``rprocd/events``: not a kernel file; each open file receives every event the host's core
  publishes from the open on (state changes with their cause, crash reports with their type,
  recovery start/done/failed, coredumps, attach, detach, boot failures, vrings broken by the
  remote), one JSON line per ``read()`` with its ``seq`` and wall-clock ``time``; a read blocks
  until one comes (EAGAIN with O_NONBLOCK) and poll says POLLIN. ``client/events.py`` reads it.

Rules:
- Directories are computed at lookup, so processors, traces, dumps and rpmsg devices appear and
  vanish as the core and the rpmsg bus change; per-processor directories are cached while the
  processor stays registered.
- Events: one host subscription (a callback on the publishing thread, which runs outside the
  processors' locks) bumps the ``state``/``firmware`` notifiers, so ``poll()`` on those files
  wakes (sysfs_notify semantics), and feeds the ``rprocd/events`` readers.
- ``close()`` unsubscribes, closes every events reader and the rpmsg/tty servers. It does not
  stop processors (the host's owner does).
- Lock: ``_lock`` guards the caches and the reader list (a leaf).
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from remoteproc.abi.cdev import rproc_cdev
from remoteproc.abi.debugfs import rproc_debug_dir
from remoteproc.abi.devices import (
    CharDevice,
    DeviceModel,
    HostDevDir,
    PlatformInfo,
    SocInfo,
)
from remoteproc.abi.node import (
    POLLIN,
    POLLRDNORM,
    Dir,
    File,
    Handle,
    Node,
    Notifier,
    Request,
    Symlink,
    Waiters,
)
from remoteproc.abi.rpmsg_char import RpmsgAbi
from remoteproc.abi.sysfs import devcoredump_data, rproc_class_dir
from remoteproc.abi.tty import TtyAbi
from remoteproc.closing import Closeable
from remoteproc.core.events import Event, EventKind
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.errors import RprocError
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

__all__ = ["AbiTree", "event_json"]

_STATE_KINDS = frozenset({
    EventKind.STATE, EventKind.CRASH, EventKind.CRASH_HANDLED, EventKind.RECOVERY_START,
    EventKind.RECOVERY_DONE, EventKind.RECOVERY_FAILED, EventKind.ATTACHED, EventKind.DETACHED,
    EventKind.DELETED, EventKind.ADDED, EventKind.RECOVERY_STOPPED,
})
_EVENT_BACKLOG = 1024  # events kept per slow reader before the oldest are dropped


def event_json(ev: Event) -> bytes:
    # Event.time is monotonic; readers in other processes want the wall clock
    wall = time.time() - (time.monotonic() - ev.time)
    d: dict[str, Any] = {"seq": ev.seq, "time": round(wall, 6), "rproc": ev.rproc,
                         "name": ev.name, "kind": ev.kind.value, "state": ev.state}
    if ev.old is not None:
        d["old"] = ev.old
    if ev.detail is not None:
        d["detail"] = ev.detail
    if ev.count is not None:
        d["count"] = ev.count
    if ev.error is not None:
        d["error"] = str(ev.error)
        d["errno"] = getattr(ev.error, "errno", None)
    return (json.dumps(d) + "\n").encode()


class _PerRproc:
    def __init__(self, rproc: Rproc) -> None:
        self.rproc = rproc
        self.state = Notifier()
        self.firmware = Notifier()
        self.sysfs = rproc_class_dir(rproc, state_changes=self.state,
                                     firmware_changes=self.firmware)
        self.debugfs = rproc_debug_dir(rproc)
        self.cdev = rproc_cdev(rproc)


class EventsHandle(Handle):
    nonseekable = True

    def __init__(self, tree: AbiTree) -> None:
        self.tree = tree
        self.cond = threading.Condition()
        self.queue: deque[bytes] = deque(maxlen=_EVENT_BACKLOG)
        self.waiters = Waiters()
        self.closed = False
        tree._add_reader(self)

    def push(self, line: bytes) -> None:
        with self.cond:
            self.queue.append(line)
            self.cond.notify_all()
        self.waiters.wake()

    def read(self, size: int, offset: int, req: Request) -> bytes:
        with self.cond:
            if not self.queue and req.nonblock:
                raise RprocError(errno.EAGAIN, "no event")
            req.wait(self.cond, lambda: bool(self.queue) or self.closed)
            if not self.queue:
                return b""
            return self.queue.popleft()[:size]

    def poll(self, notify: Callable[[], None] | None) -> int:
        if notify is not None:
            self.waiters.add(notify)
        with self.cond:
            return POLLIN | POLLRDNORM if self.queue or self.closed else 0

    def release(self) -> None:
        self.close()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.waiters.wake()
        self.tree._remove_reader(self)


class AbiTree(Closeable):
    """The mountable tree for ``host``. ``rpmsg=False`` leaves the rpmsg/tty devices out;
    ``soc`` and ``platform_of`` describe the SoC and each processor's platform device (the
    machine description's; defaults otherwise)."""

    def __init__(self, host: Host, *, rpmsg: bool = True, soc: SocInfo | None = None,
                 platform_of: Callable[[Rproc], PlatformInfo] | None = None) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._per: dict[int, _PerRproc] = {}
        self._readers: list[EventsHandle] = []
        self._dump_nodes: dict[int, Node] = {}
        self.rpmsg: RpmsgAbi | None = None
        self.tty: TtyAbi | None = None
        if rpmsg:
            self.rpmsg = RpmsgAbi(self._owns_bus)
            self.tty = TtyAbi(self._owns_bus)
        self._sub = host.subscribe(self._on_event)
        self.model = DeviceModel(
            lambda: [(p.rproc, p.sysfs.entries()) for p in self._rprocs().values()],
            rpmsg=self.rpmsg, tty=self.tty, soc=soc, platform_of=platform_of, dumps=self._dumps)
        self.root = self._build()
        self._closed = False

    # -- ownership and per-processor state

    def _owns_bus(self, bus: RpmsgBus) -> bool:
        rproc = getattr(bus, "rproc", None)
        return rproc is None or getattr(rproc, "host", None) is self.host

    def _rprocs(self) -> dict[str, _PerRproc]:
        live = list(self.host)
        with self._lock:
            ids = {id(r) for r in live}
            for key in [k for k in self._per if k not in ids]:
                del self._per[key]
            out: dict[str, _PerRproc] = {}
            for r in live:
                per = self._per.get(id(r))
                if per is None or per.rproc is not r:
                    per = self._per[id(r)] = _PerRproc(r)
                out[r.dev_name] = per
        return out

    def _dumps(self) -> list[tuple[int, str, Node]]:
        """Pending dumps: (N of devcdN, the failing processor's remoteprocN, the data file).
        The data nodes are cached per dump, so the snapshot sees the same objects."""
        store = self.host.coredump_store
        out: list[tuple[int, str, Node]] = []
        live: set[int] = set()
        for n in store.list():
            try:
                info = store.info(n)
            except RprocError:
                continue
            live.add(n)
            r = self.host.by_name(info.rproc_name)
            with self._lock:
                data = self._dump_nodes.get(n)
                if data is None:
                    data = self._dump_nodes[n] = devcoredump_data(store, n, info.size)
            out.append((n, r.dev_name if r is not None else "", data))
        with self._lock:
            for n in [k for k in self._dump_nodes if k not in live]:
                del self._dump_nodes[n]
        return out

    def notifiers(self, rproc: Rproc) -> _PerRproc | None:
        with self._lock:
            return self._per.get(id(rproc))

    # -- events

    def _on_event(self, ev: Event) -> None:
        with self._lock:
            pers = [p for p in self._per.values() if p.rproc.dev_name == ev.rproc
                    or p.rproc.name == ev.name]
            readers = list(self._readers)
        for per in pers:
            if ev.kind in _STATE_KINDS:
                per.state.bump()
            if ev.kind is EventKind.FIRMWARE:
                per.firmware.bump()
        if readers:
            line = event_json(ev)
            for r in readers:
                r.push(line)

    def _add_reader(self, reader: EventsHandle) -> None:
        with self._lock:
            self._readers.append(reader)

    def _remove_reader(self, reader: EventsHandle) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)

    # -- the tree

    def _build(self) -> Dir:
        model = self.model

        def debug_remoteproc() -> dict[str, Node]:
            return {name: per.debugfs for name, per in self._rprocs().items()}

        def dev() -> dict[str, Node]:
            out: dict[str, Node] = {name: per.cdev for name, per in self._rprocs().items()}
            if self.rpmsg is not None:
                out.update(self.rpmsg.dev_entries())
            if self.tty is not None:
                out.update(self.tty.dev_entries())
            return out

        sys_class: dict[str, Node] = {
            "remoteproc": model.class_dir("remoteproc"),
            "devcoredump": model.class_dir("devcoredump"),
        }
        sys_bus: dict[str, Node] = {b: model.bus_dir(b) for b in ("platform", "soc", "virtio")}
        if self.rpmsg is not None:
            sys_class["rpmsg"] = model.class_dir("rpmsg")
            sys_class["tty"] = model.class_dir("tty")
            sys_bus["rpmsg"] = model.bus_dir("rpmsg")
        sys_dir = Dir({
            "bus": Dir(sys_bus),
            "class": Dir(sys_class),
            "devices": model.devices_dir(),
            "kernel": Dir({"debug": Dir({"remoteproc": Dir(debug_remoteproc)})}),
        })

        def lib() -> dict[str, Node]:
            path = self.host.firmware_path
            return {"firmware": Symlink(str(path[0]))} if path else {}

        return Dir({
            "sys": sys_dir,
            "dev": Dir(dev),
            "lib": Dir(lib),
            "rprocd": Dir({"events": File(0o444, lambda flags: EventsHandle(self), size=0),
                           "devfs": HostDevDir(dev), "mnt": Dir({})}),
        })

    # -- character devices (what a CUSE back end would register)

    def char_devices(self) -> list[CharDevice]:
        """Every character device now: its name, the ``dev`` numbers sysfs shows and the node
        serving it. ``fs.py`` serves these as files under ``dev/``; a CUSE back end (where the
        kernel has CUSE) would register one device per entry with these numbers and serve the
        same ``Handle`` objects (open/read/write/ioctl/poll/release map one to one)."""
        nodes = self.root.entries()["dev"]
        assert isinstance(nodes, Dir)
        files = nodes.entries()
        out = []
        for d in self.model.snapshot().devs:
            node = files.get(d.name)
            if d.devt is not None and node is not None:
                out.append(CharDevice(d.name, d.devt, node))
        return out

    # -- lifetime

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sub.close()
        with self._lock:
            readers = list(self._readers)
        for r in readers:
            r.close()
        if self.tty is not None:
            self.tty.close()
        if self.rpmsg is not None:
            self.rpmsg.close()

