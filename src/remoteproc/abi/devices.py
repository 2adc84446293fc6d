"""The kernel's device model for rprocd's processors: ``/sys/devices``, the class and bus
directories that link into it, the buses' drivers with ``bind``/``unbind``, and ``soc0``.

Owns ``DeviceModel`` (builds the trees from the host, the rpmsg buses and the char/tty
devices), ``Dev`` (one ``struct device``), ``SocInfo`` and ``PlatformInfo`` (what the machine
description says about the SoC and each processor's platform device), and ``kernfs_link``.

Layout (drivers/base/core.c ``device_add``, v6.x remoteproc and rpmsg)::

    devices/soc0/{machine,family,soc_id,revision}                           bus soc
    devices/virtual/devcoredump/devcdN/{data,failing_device}                 class devcoredump
    devices/platform/soc/<unit>.<node>/                                     bus platform
        remoteproc/remoteprocN/                                             class remoteproc
            rproc-virtio.K.auto/                                            bus platform
                virtioM/                                                    bus virtio
                    virtioM.<name>.<src>.<dst>/                             bus rpmsg
                        rpmsg/rpmsg_ctrlX/rpmsgY   rpmsg/rpmsgZ   tty/ttyRPMSGn

A class device whose parent has no class sits in a "glue" directory named after its class
(``remoteproc/``, ``rpmsg/``, ``tty/``); one whose parent is a class device sits in it directly
(``rpmsg_ctrl0/rpmsg1``). ``class/<c>/<dev>``, ``bus/<b>/devices/<dev>`` and
``bus/<b>/drivers/<drv>/<dev>`` are symbolic links with the relative targets kernfs writes
(``kernfs_link``); so are ``subsystem``, ``driver`` and (class devices) ``device`` inside a
device directory. Every device has ``uevent`` and ``power/``; char devices have ``dev``.

Rules:
- The model is taken for each lookup of a top-level directory (``snapshot``) from the live
  objects, and every directory below is served from that one snapshot, so a walk sees one
  consistent tree while processors, channels and devices come and go. A snapshot is rebuilt
  only when the objects it comes from changed (``_fingerprint``: the live objects themselves,
  compared by identity); attribute files are made when a directory is listed, and a lookup of
  a subdirectory makes none (a FUSE lookup walks the path from the root each time).
- Writable files follow the kernel's stores: ``driver_override`` (``driver_set_override``:
  EINVAL for 4095 bytes or more, empty or "\\n" clears), ``bind``/``unbind``/``drivers_probe``
  (``drivers/base/bus.c``: ENODEV for an unknown or non-matching device, EBUSY for a bound
  one), ``drivers_autoprobe`` (first byte '0' turns it off), ``uevent`` (a kobject action, else
  EINVAL; nothing is sent: there is no netlink here) and ``power/control`` ("auto" or "on").
- Only the rpmsg bus has ``bind``/``unbind``, ``drivers_probe`` and ``drivers_autoprobe``:
  unbinding a platform driver would delete the processor (documented difference).
- Lock: ``_lock`` guards the small per-device state (platform overrides, power control), a leaf.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from remoteproc.abi.kstr import cstring, sysfs_streq
from remoteproc.abi.node import Attribute, Dir, File, Handle, Node, Request, Symlink
from remoteproc.core.rproc import Rproc
from remoteproc.errors import RprocError
from remoteproc.rpmsg.core import RpmsgDriver, registry
from remoteproc.rpmsg.endpoint import Channel, addr_str

if TYPE_CHECKING:
    from remoteproc.abi.rpmsg_char import RpmsgAbi
    from remoteproc.abi.tty import TtyAbi

__all__ = [
    "RPMSG_CHAR_MAJOR",
    "RPMSG_CTRL_MAJOR",
    "RPROC_MAJOR",
    "CharDevice",
    "Dev",
    "DeviceModel",
    "HostDevDir",
    "PlatformInfo",
    "SocInfo",
    "default_platform",
    "kernfs_link",
    "list_dir",
    "set_override",
    "uevent_store",
]

PAGE_SIZE = 4096
# Dynamic majors as alloc_chrdev_region would hand them out (the kernel's numbers are not
# fixed either); shown in ``dev`` and ``uevent``. ttyRPMSGn shows its pty's real numbers.
RPROC_MAJOR = 239
RPMSG_CTRL_MAJOR = 238
RPMSG_CHAR_MAJOR = 237

# kobject_action_type(): the actions a write to ``uevent`` may name.
_KOBJ_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


@dataclass(frozen=True)
class CharDevice:
    """A character device: ``/dev/<name>``, its ``dev`` numbers, and the node that serves it."""

    name: str
    devt: tuple[int, int]
    node: Node


@dataclass(frozen=True)
class SocInfo:
    """``/sys/devices/soc0`` (drivers/base/soc.c): empty fields are not shown."""

    machine: str = "remoteproc virtual SoC"
    family: str = "vsoc"
    soc_id: str = "vsoc"
    revision: str = "1.0"
    serial_number: str = ""


@dataclass(frozen=True)
class PlatformInfo:
    """A processor's platform device. ``of_name`` set: a DT device under ``platform/soc``
    (``<unit>.<node>``), else a plain platform device ``<name>.<id>`` under ``platform``."""

    device: str
    driver: str
    of_name: str | None = None
    of_fullname: str = ""
    compatible: tuple[str, ...] = ()

    @property
    def modalias(self) -> str:
        if self.of_name is not None:
            return f"of:N{self.of_name}T(null)" + "".join(f"C{c}" for c in self.compatible)
        return f"platform:{self.device.split('.', 1)[0]}"


def default_platform(rproc: Rproc) -> PlatformInfo:
    name = rproc.name.replace("/", "!")
    return PlatformInfo(f"{name}-rproc.{max(rproc.index, 0)}", "remoteproc-platform")


def kernfs_link(link_dir: tuple[str, ...], target: tuple[str, ...]) -> str:
    """The target kernfs writes for a link in ``link_dir`` to ``target`` (both from the sysfs
    root): up until a directory that holds the target's parent, then down to the target."""
    tparent = target[:-1]
    base = link_dir
    ups = 0
    while base and tparent[:len(base)] != base:
        ups += 1
        base = base[:-1]
    return "../" * ups + "/".join(target[len(base):])


def _page(data: bytes) -> bytes:
    return cstring(data[:PAGE_SIZE])


def _ro(text: str | Callable[[], str]) -> Attribute:
    if callable(text):
        fn = text
        return Attribute(0o444, lambda: fn().encode("utf-8", "surrogateescape"), None,
                         strict_open=True)
    data = text.encode("utf-8", "surrogateescape")
    return Attribute(0o444, lambda: data, None, strict_open=True)


def _eptdev_attrs(name: str, src: int, dst: int) -> dict[str, Node]:
    return {"name": _ro(f"{name}\n"), "src": _ro(f"{addr_str(src)}\n"),
            "dst": _ro(f"{addr_str(dst)}\n")}


def _wo(store: Callable[[bytes, Request], int]) -> Attribute:
    return Attribute(0o200, None, store, strict_open=True)


def set_override(data: bytes) -> tuple[bool, str | None]:
    """``driver_set_override``: (True, new value) to store, EINVAL when too long."""
    if min(len(data), PAGE_SIZE) >= PAGE_SIZE - 1:
        raise RprocError(errno.EINVAL, "driver_override: at most 4094 bytes")
    s = _page(data)
    if not s:
        return True, None
    line = s.split(b"\n", 1)[0]
    if not line:
        return True, None  # "\n": clear
    return True, line.decode("utf-8", "surrogateescape")


def uevent_store(data: bytes, req: Request) -> int:
    """``uevent_store`` -> ``kobject_synth_uevent``: a known action, optionally with a UUID."""
    s = _page(data).rstrip(b"\n").decode("utf-8", "replace")
    action, _, args = s.partition(" ")
    if action not in _KOBJ_ACTIONS:
        raise RprocError(errno.EINVAL, f"uevent: unknown action {action!r}")
    if args:
        uuid = args.split(" ", 1)[0]
        parts = uuid.split("-")
        if [len(p) for p in parts] != [8, 4, 4, 4, 12] or \
                not all(c in "0123456789abcdefABCDEF" for c in "".join(parts)):
            raise RprocError(errno.EINVAL, f"uevent: invalid UUID {uuid!r}")
    return min(len(data), PAGE_SIZE)


@dataclass(eq=False)
class Dev:
    """One ``struct device`` in the snapshot."""

    name: str
    parent: Dev | None
    cls: str | None = None
    bus: str | None = None
    attrs: Callable[[], Mapping[str, Node]] | Mapping[str, Node] = field(default_factory=dict)
    devt: tuple[int, int] | None = None
    devtype: str | None = None
    driver: str | None = None
    uevent_extra: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    children: list[Dev] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.parent is None and self.cls is not None:
            base: tuple[str, ...] = ("devices", "virtual", self.cls)  # virtual_device_parent
        elif self.parent is None:
            base = ("devices",)
        elif self.cls is not None and self.parent.cls is None:
            base = (*self.parent.path, self.cls)  # the class "glue" directory
        else:
            base = self.parent.path
        self.path = (*base, self.name)
        if self.parent is not None:
            self.parent.children.append(self)

    def uevent(self) -> str:
        lines = []
        if self.devt is not None:
            lines += [f"MAJOR={self.devt[0]}", f"MINOR={self.devt[1]}", f"DEVNAME={self.name}"]
        if self.devtype:
            lines.append(f"DEVTYPE={self.devtype}")
        if self.driver:
            lines.append(f"DRIVER={self.driver}")
        lines += self.uevent_extra
        return "".join(f"{line}\n" for line in lines)


class _SnapDir(Dir):
    """A directory of the snapshot; a lookup of a subdirectory builds no files."""

    def __init__(self, snap: Snapshot, path: tuple[str, ...]) -> None:
        super().__init__(lambda: snap.entries(path))
        self._snap = snap
        self._path = path

    def get(self, name: str) -> Node | None:
        if name in self._snap.dirs.get(self._path, ()):
            return self._snap.node((*self._path, name))
        return super().get(name)


class Snapshot:
    """The devices at one instant, indexed by path, class, bus and driver."""

    def __init__(self, model: DeviceModel, devs: Iterable[Dev]) -> None:
        self.model = model
        self.devs = list(devs)
        self.by_path = {d.path: d for d in self.devs}
        self.dirs: dict[tuple[str, ...], set[str]] = {}
        for d in self.devs:
            for i in range(1, len(d.path)):
                self.dirs.setdefault(d.path[:i], set()).add(d.path[i])

    def members(self, *, cls: str | None = None, bus: str | None = None,
                driver: str | None = None) -> dict[str, Dev]:
        out: dict[str, Dev] = {}
        for d in self.devs:
            if cls is not None and d.cls != cls:
                continue
            if bus is not None and d.bus != bus:
                continue
            if driver is not None and d.driver != driver:
                continue
            out[d.name] = d
        return out

    # -- directories
    def node(self, path: tuple[str, ...]) -> Dir:
        return _SnapDir(self, path)

    def entries(self, path: tuple[str, ...]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        dev = self.by_path.get(path)
        if dev is not None:
            out.update(self.model.device_files(dev, ("sys", *path)))
        for name in sorted(self.dirs.get(path, ())):
            out[name] = self.node((*path, name))
        return out

    def links(self, link_dir: tuple[str, ...], devs: Mapping[str, Dev]) -> dict[str, Node]:
        return {name: Symlink(kernfs_link(link_dir, ("sys", *d.path)))
                for name, d in sorted(devs.items())}


class _TopDir(Dir):
    """``sys/devices``: each lookup takes the current snapshot."""

    def __init__(self, model: DeviceModel) -> None:
        super().__init__(lambda: model.snapshot().entries(("devices",)))
        self._model = model

    def get(self, name: str) -> Node | None:
        return self._model.snapshot().node(("devices",)).get(name)


class DeviceModel:
    """The device trees of one ``AbiTree``: ``devices_dir``, ``class_dir(c)``, ``bus_dir(b)``."""

    def __init__(self, rprocs: Callable[[], list[tuple[Rproc, Mapping[str, Node]]]], *,
                 rpmsg: RpmsgAbi | None = None, tty: TtyAbi | None = None,
                 soc: SocInfo | None = None,
                 platform_of: Callable[[Rproc], PlatformInfo] | None = None,
                 dumps: Callable[[], list[tuple[int, str, Node]]] | None = None) -> None:
        self._rprocs = rprocs
        self._dumps = dumps or (lambda: [])
        self.rpmsg = rpmsg
        self.tty = tty
        self.soc = soc or SocInfo()
        self.platform_of = platform_of or default_platform
        self._lock = threading.Lock()
        self._pdev_override: dict[str, str | None] = {}
        self._power_on: set[tuple[str, ...]] = set()
        self._cached: tuple[tuple[object, ...], Snapshot] | None = None

    # -- the snapshot
    def _fingerprint(self) -> tuple[object, ...]:
        """Everything the device list depends on, as the live objects themselves (compared by
        identity, and kept alive by the cache, so no id is reused while it is cached)."""
        fp: list[object] = [self.platform_of, self.soc]
        for rproc, class_attrs in self._rprocs():
            fp += [rproc, rproc.index, class_attrs]
            for rvdev in list(getattr(rproc, "rvdevs", ())):
                v = rvdev.virtio
                fp += [rvdev, rvdev.pdev_id, v, getattr(v, "index", None),
                       getattr(v, "driver", None)]
        if self.rpmsg is not None:
            for bus in self.rpmsg.buses():
                fp.append(bus)
                for ch in bus.channels():
                    fp += [ch, ch.driver]
            ctrls, epts = self.rpmsg.devices()
            for c in ctrls:
                fp += [c, c.channel]
            for e in epts:
                fp += [e, e.parent, e.channel]
        if self.tty is not None:
            fp += self.tty.port_list()
        for n, owner, data in self._dumps():
            fp += [n, owner, data]
        return tuple(fp)

    def snapshot(self) -> Snapshot:
        """The devices now: rebuilt only when the objects they come from changed."""
        fp = self._fingerprint()
        with self._lock:
            cached = self._cached
        # tuple == compares item by item, identity first (as ``a is b or a == b``), in C:
        # this runs for every FUSE lookup under /sys, several per path component
        if cached is not None and cached[0] == fp:
            return cached[1]
        snap = self._build()
        with self._lock:
            self._cached = (fp, snap)
        return snap

    def _build(self) -> Snapshot:
        devs: list[Dev] = []
        soc0 = Dev("soc0", None, bus="soc", attrs=self._soc_attrs)
        devs.append(soc0)
        platform = Dev("platform", None)
        devs.append(platform)
        socbus: Dev | None = None

        def soc_bus() -> Dev:
            nonlocal socbus
            if socbus is None:
                socbus = Dev("soc", platform, bus="platform",
                             attrs=lambda: self._pdev_attrs("soc", "of:NsocT(null)Csimple-bus"),
                             uevent_extra=("OF_NAME=soc", "OF_FULLNAME=/soc",
                                           "OF_COMPATIBLE_0=simple-bus", "OF_COMPATIBLE_N=1",
                                           "MODALIAS=of:NsocT(null)Csimple-bus"))
                devs.append(socbus)
            return socbus

        vdev_parent: dict[int, Dev] = {}
        for rproc, class_attrs in self._rprocs():
            info = self.platform_of(rproc)
            extra: tuple[str, ...]
            if info.of_name is not None:
                parent = soc_bus()
                extra = (f"OF_NAME={info.of_name}", f"OF_FULLNAME={info.of_fullname}",
                         *(f"OF_COMPATIBLE_{i}={c}" for i, c in enumerate(info.compatible)),
                         f"OF_COMPATIBLE_N={len(info.compatible)}", f"MODALIAS={info.modalias}")
            else:
                parent = platform
                extra = (f"MODALIAS={info.modalias}",)
            pdev = Dev(info.device, parent, bus="platform", driver=info.driver,
                       attrs=partial(self._pdev_attrs, info.device, info.modalias),
                       uevent_extra=extra)
            rdev = Dev(rproc.dev_name, pdev, cls="remoteproc", devtype="remoteproc",
                       devt=(RPROC_MAJOR, max(rproc.index, 0)), attrs=class_attrs)
            devs += [pdev, rdev]
            for rvdev in list(getattr(rproc, "rvdevs", ())):
                if rvdev.pdev_id < 0:
                    continue
                vp = Dev(rvdev.pdev_name, rdev, bus="platform", driver="rproc-virtio",
                         attrs=partial(self._pdev_attrs, rvdev.pdev_name,
                                       "platform:rproc-virtio"),
                         uevent_extra=("MODALIAS=platform:rproc-virtio",))
                devs.append(vp)
                virtio = rvdev.virtio
                if virtio is not None and virtio.index >= 0:
                    vdev_parent[id(virtio)] = vp
                    devs.append(self._virtio_dev(virtio, vp))
        # rpmsg buses, their channels and char/tty devices
        chan_dev: dict[int, Dev] = {}
        if self.rpmsg is not None:
            vdevs = {d.name: d for d in devs if d.bus == "virtio"}
            for bus in self.rpmsg.buses():
                vd = vdevs.get(bus.name)
                if vd is None:
                    if getattr(bus, "rproc", None) is not None:
                        continue  # its processor is not (or no longer) in this snapshot
                    vd = self._virtio_dev(bus.vdev, None)  # a bus with no processor
                    devs.append(vd)
                for ch in bus.channels():
                    cd = Dev(ch.device_name, vd, bus="rpmsg",
                             driver=ch.driver.name if ch.driver is not None else None,
                             attrs=partial(self._channel_attrs, ch),
                             uevent_extra=(f"MODALIAS={ch.modalias}",))
                    chan_dev[id(ch)] = cd
                    devs.append(cd)
            ctrls, epts = self.rpmsg.devices()
            ctrl_dev: dict[int, Dev] = {}
            for c in ctrls:
                parent_dev = chan_dev.get(id(c.channel))
                if parent_dev is None:
                    continue
                cdv = Dev(c.dev_name, parent_dev, cls="rpmsg",
                          devt=(RPMSG_CTRL_MAJOR, c.minor))
                ctrl_dev[id(c)] = cdv
                devs.append(cdv)
            for e in epts:
                if e.parent is not None:
                    parent_dev = ctrl_dev.get(id(e.parent))
                else:
                    parent_dev = chan_dev.get(id(e.channel))
                if parent_dev is None:
                    continue
                devs.append(Dev(e.dev_name, parent_dev, cls="rpmsg",
                                devt=(RPMSG_CHAR_MAJOR, e.minor),
                                attrs=partial(_eptdev_attrs, e.name, e.src, e.dst)))
        rproc_devs = {d.name: d for d in devs if d.cls == "remoteproc"}
        for n, owner, data in self._dumps():
            failing = rproc_devs.get(owner)
            dev = Dev(f"devcd{n}", None, cls="devcoredump")
            files: dict[str, Node] = {"data": data}
            if failing is not None:
                files["failing_device"] = Symlink(kernfs_link(("sys", *dev.path),
                                                              ("sys", *failing.path)))
            dev.attrs = files
            devs.append(dev)
        if self.tty is not None:
            for port in self.tty.port_list():
                parent_dev = chan_dev.get(id(port.channel))
                if parent_dev is None:
                    continue
                devs.append(Dev(port.name, parent_dev, cls="tty", devt=port.devt))
        return Snapshot(self, devs)

    def _virtio_dev(self, v: object, parent: Dev | None) -> Dev:
        vid = int(getattr(v, "id", 0))
        drv = getattr(v, "driver", None)
        name = str(getattr(v, "name", "virtio"))

        def status() -> str:
            try:
                return f"0x{int(v.get_status()):08x}\n"  # type: ignore[attr-defined]
            except RprocError:
                return "0x00000000\n"

        def features() -> str:
            bits = int(getattr(v, "features", 0))
            return "".join("1" if bits >> i & 1 else "0" for i in range(64)) + "\n"

        alias = f"virtio:d{vid:08X}v{0:08X}"
        return Dev(name, parent, bus="virtio", driver=getattr(drv, "name", None),
                   attrs=lambda: {
                       "device": _ro(f"0x{vid:04x}\n"),
                       "vendor": _ro("0x0000\n"),
                       "status": _ro(status),
                       "features": _ro(features),
                       "modalias": _ro(f"{alias}\n"),
                   }, uevent_extra=(f"MODALIAS={alias}",))

    # -- attributes
    def _soc_attrs(self) -> dict[str, Node]:
        s = self.soc
        out: dict[str, Node] = {}
        for key, val in (("machine", s.machine), ("family", s.family),
                         ("serial_number", s.serial_number), ("soc_id", s.soc_id),
                         ("revision", s.revision)):
            if val:
                out[key] = _ro(f"{val}\n")
        return out

    def _pdev_attrs(self, name: str, modalias: str) -> dict[str, Node]:
        def show() -> bytes:
            with self._lock:
                v = self._pdev_override.get(name)
            return f"{v if v is not None else '(null)'}\n".encode("utf-8", "surrogateescape")

        def store(data: bytes, req: Request) -> int:
            _, value = set_override(data)
            with self._lock:
                self._pdev_override[name] = value
            return min(len(data), PAGE_SIZE)

        return {"driver_override": Attribute(0o644, show, store, strict_open=True),
                "modalias": _ro(f"{modalias}\n")}

    def _channel_attrs(self, ch: Channel) -> dict[str, Node]:
        def override_show() -> bytes:
            v = ch.driver_override
            return f"{v if v is not None else '(null)'}\n".encode("utf-8", "surrogateescape")

        def override_store(data: bytes, req: Request) -> int:
            _, value = set_override(data)
            ch.driver_override = value
            return min(len(data), PAGE_SIZE)

        return {
            "name": _ro(f"{ch.name}\n"),
            "src": _ro(lambda: f"0x{ch.src:x}\n"),
            "dst": _ro(f"0x{ch.dst:x}\n"),
            "announce": _ro("true\n" if ch.announce else "false\n"),
            "modalias": _ro(f"{ch.modalias}\n"),
            "driver_override": Attribute(0o644, override_show, override_store,
                                         strict_open=True),
        }

    def device_files(self, dev: Dev, where: tuple[str, ...]) -> dict[str, Node]:
        """The files the driver core gives every device, plus the device's attributes."""
        out: dict[str, Node] = dict(dev.attrs() if callable(dev.attrs) else dev.attrs)
        if dev.devt is not None:
            out["dev"] = _ro(f"{dev.devt[0]}:{dev.devt[1]}\n")
        text = dev.uevent()
        out["uevent"] = Attribute(0o644, lambda: text.encode("utf-8", "surrogateescape"),
                                  uevent_store, strict_open=True)
        out["power"] = self._power_dir(where)
        if dev.cls is not None:
            out["subsystem"] = Symlink(kernfs_link(where, ("sys", "class", dev.cls)))
            if dev.parent is not None:
                out["device"] = Symlink(kernfs_link(where, ("sys", *dev.parent.path)))
        elif dev.bus is not None:
            out["subsystem"] = Symlink(kernfs_link(where, ("sys", "bus", dev.bus)))
            if dev.driver is not None:
                out["driver"] = Symlink(kernfs_link(
                    where, ("sys", "bus", dev.bus, "drivers", dev.driver)))
        return out

    def _power_dir(self, where: tuple[str, ...]) -> Dir:
        def control_show() -> bytes:
            with self._lock:
                on = where in self._power_on
            return b"on\n" if on else b"auto\n"

        def control_store(data: bytes, req: Request) -> int:
            buf = _page(data)
            with self._lock:
                if sysfs_streq(buf, "auto"):
                    self._power_on.discard(where)
                elif sysfs_streq(buf, "on"):
                    self._power_on.add(where)
                else:
                    raise RprocError(errno.EINVAL, "power/control: expected auto or on")
            return min(len(data), PAGE_SIZE)

        return Dir({
            "control": Attribute(0o644, control_show, control_store, strict_open=True),
            "runtime_status": _ro("unsupported\n"),
            "runtime_active_time": _ro("0\n"),
            "runtime_suspended_time": _ro("0\n"),
        })

    # -- top-level directories
    def devices_dir(self) -> Dir:
        return _TopDir(self)

    def class_dir(self, cls: str) -> Dir:
        where = ("sys", "class", cls)
        return Dir(lambda: (lambda s: s.links(where, s.members(cls=cls)))(self.snapshot()))

    def bus_dir(self, bus: str) -> Dir:
        base = ("sys", "bus", bus)

        def entries() -> dict[str, Node]:
            snap = self.snapshot()
            out: dict[str, Node] = {
                "devices": Dir(snap.links((*base, "devices"), snap.members(bus=bus))),
                "drivers": Dir(self._drivers(snap, bus)),
            }
            if bus == "rpmsg":
                out.update(self._rpmsg_bus_files())
            return out

        return Dir(entries)

    def _driver_names(self, snap: Snapshot, bus: str) -> list[str]:
        if bus == "rpmsg":
            return [d.name for d in registry.drivers()]
        names = {d.driver for d in snap.members(bus=bus).values() if d.driver is not None}
        return sorted(names)

    def _drivers(self, snap: Snapshot, bus: str) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for name in self._driver_names(snap, bus):
            where = ("sys", "bus", bus, "drivers", name)
            entries: dict[str, Node] = snap.links(where, snap.members(bus=bus, driver=name))
            entries["uevent"] = _wo(uevent_store)
            if bus == "rpmsg":
                entries["bind"] = _wo(self._rpmsg_bind_store(name, bind=True))
                entries["unbind"] = _wo(self._rpmsg_bind_store(name, bind=False))
            out[name] = Dir(entries)
        return out

    # -- the rpmsg bus's writable files
    def _find_channel(self, buf: bytes) -> Channel | None:
        """``bus_find_device_by_name``: the device whose name ``buf`` is (``sysfs_streq``)."""
        if self.rpmsg is None:
            return None
        want = cstring(buf)
        want = want[:-1] if want.endswith(b"\n") else want
        for bus in self.rpmsg.buses():
            for ch in bus.channels():
                # a remote may announce a name that is not UTF-8 (kept as surrogates)
                if ch.device_name.encode("utf-8", "surrogateescape") == want:
                    return ch
        return None

    def _rpmsg_bind_store(self, driver: str, *, bind: bool) -> Callable[[bytes, Request], int]:
        def store(data: bytes, req: Request) -> int:
            drv: RpmsgDriver | None = registry.find_driver(driver)
            ch = self._find_channel(_page(data))
            if drv is None or ch is None:
                raise RprocError(errno.ENODEV, "no such device")
            if bind:
                registry.bind(ch, drv)
            else:
                registry.unbind(ch, drv)
            return min(len(data), PAGE_SIZE)

        return store

    def _rpmsg_bus_files(self) -> dict[str, Node]:
        def probe_store(data: bytes, req: Request) -> int:
            ch = self._find_channel(_page(data))
            if ch is None:
                raise RprocError(errno.ENODEV, "no such device")
            registry.probe_channel(ch)
            return min(len(data), PAGE_SIZE)

        def autoprobe_show() -> bytes:
            return b"1\n" if registry.drivers_autoprobe else b"0\n"

        def autoprobe_store(data: bytes, req: Request) -> int:
            registry.drivers_autoprobe = not data.startswith(b"0")
            return min(len(data), PAGE_SIZE)

        return {
            "drivers_autoprobe": Attribute(0o644, autoprobe_show, autoprobe_store,
                                           strict_open=True),
            "drivers_probe": _wo(probe_store),
            "uevent": _wo(uevent_store),
        }


def _placeholder_open(flags: int) -> Handle:
    raise RprocError(errno.ENODEV, "a host device placeholder: `rproc run` binds the device here")


def _placeholder(host_dev: str, name: str) -> Node | None:
    if name == "ptmx":
        # A ptmx node finds its devpts in its own directory, which a node bound alone does
        # not have: point at the devpts's own (as containers do); /dev/pts is the host's.
        return Symlink("pts/ptmx")
    path = os.path.join(host_dev, name)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return Symlink(os.readlink(path))
    except OSError:
        return None  # not there (or gone meanwhile)
    if stat.S_ISDIR(st.st_mode):
        return Dir({}, mode=stat.S_IMODE(st.st_mode))
    return File(stat.S_IMODE(st.st_mode), _placeholder_open, size=0)


class HostDevDir(Dir):
    """``own`` entries, plus for every other entry of the host's ``host_dev`` its link as it
    is, or an empty directory or file of its kind for ``rproc run`` to bind the host's entry
    on (so ``/dev/null`` is the real node, ``/dev/pts`` the real devpts). A lookup of one name
    looks at that name only."""

    def __init__(self, own: Callable[[], Mapping[str, Node]], host_dev: str = "/dev") -> None:
        super().__init__(self._all)
        self._own = own
        self._host = host_dev

    def _all(self) -> dict[str, Node]:
        own = self._own()
        out = dict(own)
        for name in list_dir(self._host):
            if name not in own and "/" not in name:
                node = _placeholder(self._host, name)
                if node is not None:
                    out[name] = node
        return out

    def get(self, name: str) -> Node | None:
        node = self._own().get(name)
        if node is None and name not in (".", "..") and "/" not in name:
            node = _placeholder(self._host, name)
        return node


def list_dir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []

