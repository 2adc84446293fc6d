"""rpmsg from userspace: channels on the bus, ``/dev/rpmsg_ctrlN`` and ``/dev/rpmsgN`` endpoint
devices (spec §9.5, §9.6), with blocking and asyncio I/O.

Owns ``RpmsgChannel`` (a ``sys/bus/rpmsg/devices`` entry), ``EndpointDevice`` (an existing
``rpmsgN`` and its ``name``/``src``/``dst``), ``RpmsgCtrl`` (the control device: create and
release endpoints and channels) and ``Endpoint`` (an open endpoint: send, receive, destroy).

Rules:
- One message per ``read()``: ``recv`` reads up to the MTU (496) and returns exactly one
  message; a message longer than ``size`` is cut by the kernel, the rest is lost (§9.6).
- ``send`` refuses more than 496 bytes before the system call (the kernel would say EMSGSIZE
  too), and an endpoint whose ``dst`` is ANY cannot send: the kernel's EINVAL is explained.
- Endpoint descriptors are opened O_NONBLOCK; blocking calls wait in ``poll()`` with the
  caller's timeout, so a timeout never leaves a thread stuck in ``read()``, and the same
  descriptor serves asyncio (``loop.add_reader``/``add_writer``).
- ``RPMSG_CREATE_EPT_IOCTL`` does not say which ``rpmsgN`` it made: the new device is found as
  userspace does on a board, the ``sys/class/rpmsg/rpmsgN`` that was not there before and whose
  ``name``/``src``/``dst`` match, then its ``/dev`` node (udev may create it a little later).
- Which processor a ctrl or endpoint device belongs to is read from its ``sys/class/rpmsg``
  link (it leads through ``.../remoteprocN/...``); with a single ctrl device that is the one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remoteproc.client.base import FdOwner, explain, owner_rproc
from remoteproc.client.root import AbiRoot
from remoteproc.errors import RprocError
from remoteproc.uapi import (
    RPMSG_ADDR_ANY,
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_DESTROY_EPT_IOCTL,
    RPMSG_MTU,
    RPMSG_RELEASE_DEV_IOCTL,
    EndpointInfo,
)

if TYPE_CHECKING:
    import asyncio

    from remoteproc.client.rproc import RemoteProc

__all__ = [
    "RPMSG_ADDR_ANY",
    "RPMSG_MTU",
    "Endpoint",
    "EndpointDevice",
    "RpmsgChannel",
    "RpmsgCtrl",
    "channel_device",
    "channels",
    "endpoint_devices",
    "format_addr",
    "open_channel",
]

_NO_RPMSG = ("no rpmsg devices: the processor is not running an rpmsg firmware (no vdev in its "
             "resource table), or the kernel lacks CONFIG_RPMSG_VIRTIO / CONFIG_RPMSG_CHAR / "
             "CONFIG_RPMSG_CTRL")


def format_addr(addr: int | None) -> str:
    if addr is None:
        return "?"
    return "ANY" if addr & 0xFFFFFFFF == RPMSG_ADDR_ANY else str(addr)


def _read_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def _read_addr(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0) & 0xFFFFFFFF  # "0x400" on the bus, "%d" (-1 = ANY) on rpmsg_char
    except ValueError:
        return None


@dataclass(frozen=True)
class RpmsgChannel:
    """A device on the rpmsg bus (``sys/bus/rpmsg/devices/virtio0.rpmsg-raw.-1.1024``)."""

    device: str
    name: str
    src: int | None
    dst: int | None
    announce: bool | None
    owner: str | None  # remoteprocN, when the sysfs link says

    def to_dict(self) -> dict[str, object]:
        return {"device": self.device, "name": self.name, "src": self.src, "dst": self.dst,
                "announce": self.announce, "processor": self.owner}


def channels(root: AbiRoot, proc: RemoteProc | None = None) -> list[RpmsgChannel]:
    """Channels on the rpmsg bus, of ``proc`` only when given (and ownership is known)."""
    try:
        names = sorted(os.listdir(root.rpmsg_bus_dir))
    except OSError:
        return []
    found = []
    for dev in names:
        path = root.rpmsg_bus_dir / dev
        owner = owner_rproc(path)
        if proc is not None and owner not in (None, proc.dev_name):
            continue
        announce = _read_text(path / "announce")
        found.append(RpmsgChannel(
            device=dev,
            name=_read_text(path / "name") or dev,
            src=_read_addr(path / "src"),
            dst=_read_addr(path / "dst"),
            announce=None if announce is None else announce == "true",
            owner=owner,
        ))
    return found


@dataclass(frozen=True)
class EndpointDevice:
    """An ``rpmsgN`` endpoint device: ``sys/class/rpmsg/rpmsgN`` and its ``/dev`` node."""

    index: int
    name: str | None
    src: int | None
    dst: int | None
    dev: Path
    owner: str | None

    def open(self, timeout: float = 2.0) -> Endpoint:
        return Endpoint(self, timeout=timeout)

    def to_dict(self) -> dict[str, object]:
        return {"device": self.dev.name, "path": str(self.dev), "name": self.name,
                "src": self.src, "dst": self.dst, "processor": self.owner}


def endpoint_devices(root: AbiRoot, proc: RemoteProc | None = None, *,
                     name: str | None = None) -> list[EndpointDevice]:
    """Every ``rpmsgN`` (from ``sys/class/rpmsg``, or ``/dev`` when that class is absent), of
    ``proc`` only when given (and ownership is known); with ``name``, only the devices sysfs
    names so (the others' addresses are not read: over rprocd's FUSE mount every attribute is
    a dozen round trips, and ``open_channel`` polls this)."""
    numbered = root.numbered(root.rpmsg_class_dir, "rpmsg")
    from_sysfs = bool(numbered)
    if not from_sysfs:
        numbered = root.numbered(root.dev_dir, "rpmsg")
    found = []
    for n, path in numbered:
        owner = owner_rproc(path) if from_sysfs else None
        if proc is not None and owner not in (None, proc.dev_name):
            continue
        dev_name = _read_text(path / "name") if from_sysfs else None
        if name is not None and dev_name != name:
            continue
        found.append(EndpointDevice(
            index=n,
            name=dev_name,
            src=_read_addr(path / "src") if from_sysfs else None,
            dst=_read_addr(path / "dst") if from_sysfs else None,
            dev=root.dev_dir / f"rpmsg{n}",
            owner=owner,
        ))
    return found


def channel_device(proc: RemoteProc, channel: str = "rpmsg-raw") -> EndpointDevice:
    """The ``rpmsgN`` that rpmsg_char made for ``proc``'s announced ``channel``.

    Devices whose processor sysfs does not name count as candidates; if that leaves more than
    one, the choice would be a guess, so ENOTUNIQ asks the caller to name the device."""
    devs = endpoint_devices(proc.root, proc, name=channel)
    mine = [d for d in devs if d.owner == proc.dev_name]
    if mine:
        return mine[0]
    if len(devs) == 1:
        return devs[0]
    if not devs:
        raise RprocError(errno.ENOENT, f"{proc.dev_name} has no rpmsg char device for a "
                         f"channel named {channel!r} (state {proc.state_or_unknown()}; its "
                         "firmware announces no such channel, or the kernel lacks "
                         "CONFIG_RPMSG_CHAR)", file=str(proc.root.dev_dir))
    names = ", ".join(str(d.dev) for d in devs)
    raise RprocError(errno.ENOTUNIQ, f"several {channel!r} devices ({names}) and sysfs does "
                     f"not say which belongs to {proc.dev_name}: name one", file=str(
                         proc.root.rpmsg_class_dir))


def open_channel(proc: RemoteProc, channel: str = "rpmsg-raw", timeout: float = 10.0,
                 interval: float = 0.01) -> Endpoint:
    """Open ``proc``'s announced ``channel`` (its ``/dev/rpmsgN``), waiting up to ``timeout``
    for the firmware to announce it: right after a boot or a recovery the name service message
    is still on its way, and a recovered channel's device is re-created under the caller."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return channel_device(proc, channel).open()
        except RprocError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENETRESET, errno.EBUSY, errno.ENODEV):
                raise
            if time.monotonic() >= deadline:
                raise RprocError(errno.ETIMEDOUT, f"{proc.dev_name} announced no {channel!r} "
                                 f"channel within {timeout:g} s (state "
                                 f"{proc.state_or_unknown()}; does its firmware speak rpmsg?)",
                                 file=str(proc.root.dev_dir)) from None
        time.sleep(interval)


class Endpoint(FdOwner):
    """An open ``/dev/rpmsgN``: one endpoint of this process.

    ``send(b"hi")``; ``recv(timeout=1.0)`` returns one message (or raises ETIMEDOUT);
    ``await arecv()`` / ``await asend()`` do the same under asyncio. ``close()`` destroys an
    endpoint the ctrl device created (release does, §9.6); ``destroy()`` also removes its
    device node.
    """

    def __init__(self, device: EndpointDevice, *, timeout: float = 2.0) -> None:
        self.device = device
        self.path = device.dev
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except FileNotFoundError as exc:
                if time.monotonic() >= deadline:  # udev may still be creating the node
                    raise explain(exc, self.path, "open",
                                  f"{self.path} does not exist (udev did not create it)"
                                  ) from None
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise RprocError(errno.EBUSY, "the endpoint is already open (rpmsg_char "
                                     "allows one opener)", file=str(self.path)) from None
                if exc.errno == errno.ENETRESET:
                    raise RprocError(errno.ENETRESET, "the channel is gone (the remote "
                                     "processor stopped or crashed)", file=str(self.path)
                                     ) from None
                raise explain(exc, self.path, "open") from None

    @property
    def name(self) -> str | None:
        return self.device.name

    @property
    def src(self) -> int | None:
        return self.device.src

    @property
    def dst(self) -> int | None:
        return self.device.dst

    def fileno(self) -> int:
        if self._fd < 0:
            raise RprocError(errno.EBADF, "endpoint is closed", file=str(self.path))
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __repr__(self) -> str:
        return (f"Endpoint({self.path}, name={self.name!r}, src={format_addr(self.src)}, "
                f"dst={format_addr(self.dst)})")

    # -- errors

    def _error(self, exc: OSError, doing: str) -> RprocError:
        code = exc.errno or errno.EIO
        if code == errno.EPIPE:
            text = "the endpoint is gone (the remote processor stopped or crashed)"
        elif code == errno.EIO:
            text = (f"cannot {doing}: the rpmsg channel is dead, the remote broke a vring "
                    "(see `rproc watch` or debugfs remoteprocN/vrings); restart or re-attach "
                    "the processor to get it back")
        elif code == errno.EMSGSIZE:
            text = f"message too long: rpmsg carries at most {RPMSG_MTU} bytes"
        elif code == errno.EINVAL and doing == "send":
            text = (f"send refused (EINVAL): an endpoint created with dst ANY cannot send "
                    f"(dst is {format_addr(self.dst)}); create it with a destination")
        else:
            return explain(exc, self.path, doing)
        return RprocError(code, text, file=str(self.path))

    def _wait(self, events: int, deadline: float | None, what: str) -> None:
        """poll() for ``events`` until ready or ``deadline`` (monotonic); ETIMEDOUT names
        ``what`` did not happen. Slices of at most a second keep a missed wake-up harmless."""
        poller = select.poll()
        poller.register(self.fileno(), events | select.POLLERR | select.POLLHUP)
        while True:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise RprocError(errno.ETIMEDOUT, what, file=str(self.path))
            if poller.poll(int(min(left, 1.0) * 1000) or 1):
                return

    # -- blocking I/O

    def send(self, data: bytes, timeout: float | None = 15.0) -> None:
        """Send one message to the endpoint's ``dst`` (at most 496 bytes), waiting up to
        ``timeout`` seconds for a free TX buffer."""
        if len(data) > RPMSG_MTU:
            raise RprocError(errno.EMSGSIZE, f"message of {len(data)} bytes: rpmsg carries at "
                             f"most {RPMSG_MTU}", file=str(self.path))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                os.write(self.fileno(), data)
                return
            except BlockingIOError:
                # no free TX buffer (trysend's ENOMEM): POLLOUT says when one is back
                self._wait(select.POLLOUT, deadline, f"no free rpmsg buffer within {timeout} s")
            except OSError as exc:
                raise self._error(exc, "send") from None

    def recv(self, timeout: float | None = None, size: int = RPMSG_MTU) -> bytes:
        """The next message (one ``read()``); ETIMEDOUT after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return os.read(self.fileno(), size)
            except BlockingIOError:
                self._wait(select.POLLIN, deadline, f"no message within {timeout:g} s"
                           if timeout is not None else "no message")
            except OSError as exc:
                raise self._error(exc, "receive") from None

    def send_many(self, msgs: list[bytes], timeout: float | None = 15.0) -> int:
        """Send ``msgs`` in order (each waiting up to ``timeout`` for a TX buffer); how many
        were sent. Sizes are checked first, so an oversized one sends nothing."""
        for data in msgs:
            if len(data) > RPMSG_MTU:
                raise RprocError(errno.EMSGSIZE, f"message of {len(data)} bytes: rpmsg "
                                 f"carries at most {RPMSG_MTU}", file=str(self.path))
        for data in msgs:
            self.send(data, timeout)
        return len(msgs)

    def recv_many(self, max_msgs: int = 64, timeout: float | None = None,
                  size: int = RPMSG_MTU) -> list[bytes]:
        """Wait like ``recv`` for the first message, then take every one already queued (up
        to ``max_msgs``) without waiting: what a streaming reader wants."""
        if max_msgs < 1:
            raise RprocError(errno.EINVAL, f"max_msgs must be positive, not {max_msgs}")
        out = [self.recv(timeout, size)]
        while len(out) < max_msgs:
            try:
                out.append(os.read(self.fileno(), size))
            except BlockingIOError:
                break
            except OSError as exc:
                raise self._error(exc, "receive") from None
        return out

    def drain(self) -> int:
        """Drop queued messages; returns how many."""
        n = 0
        while True:
            try:
                os.read(self.fileno(), RPMSG_MTU)
                n += 1
            except BlockingIOError:
                return n
            except OSError as exc:
                raise self._error(exc, "receive") from None

    # -- asyncio

    async def arecv(self, size: int = RPMSG_MTU) -> bytes:
        """The next message, awaiting readability on the event loop (no thread)."""
        import asyncio  # here: the blocking API and the CLI do without its import time

        loop = asyncio.get_running_loop()
        fd = self.fileno()
        while True:
            try:
                return os.read(fd, size)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "receive") from None
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _set_done, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    async def asend(self, data: bytes) -> None:
        """Send without blocking the event loop (waits for a free buffer if needed)."""
        if len(data) > RPMSG_MTU:
            raise RprocError(errno.EMSGSIZE, f"message of {len(data)} bytes: rpmsg carries at "
                             f"most {RPMSG_MTU}", file=str(self.path))
        import asyncio

        loop = asyncio.get_running_loop()
        fd = self.fileno()
        while True:
            try:
                os.write(fd, data)
                return
            except BlockingIOError:
                pass  # no free TX buffer yet: wait for POLLOUT (see send)
            except OSError as exc:
                raise self._error(exc, "send") from None
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _set_done, ready)
            try:
                # bounded, so a wake-up the transport never sends cannot hang the task
                await asyncio.wait_for(asyncio.shield(ready), 0.05)
            except TimeoutError:
                pass
            finally:
                loop.remove_writer(fd)

    # -- lifetime

    def destroy(self) -> None:
        """RPMSG_DESTROY_EPT_IOCTL: remove this endpoint and its device (not for the default
        endpoint of an announced channel: EINVAL)."""
        try:
            fcntl.ioctl(self.fileno(), RPMSG_DESTROY_EPT_IOCTL)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RprocError(errno.EINVAL, "this endpoint belongs to a channel the remote "
                                 "announced and cannot be destroyed", file=str(self.path)
                                 ) from None
            raise explain(exc, self.path, "destroy") from None
        finally:
            self.close()



def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class RpmsgCtrl(FdOwner):
    """``/dev/rpmsg_ctrlN``: creates endpoints (``rpmsgN``) and channels on one rpmsg bus."""

    def __init__(self, root: AbiRoot, index: int) -> None:
        self.root = root
        self.index = index
        self.path = root.dev_dir / f"rpmsg_ctrl{index}"
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise explain(exc, self.path, "open", f"{self.path} does not exist: {_NO_RPMSG}"
                          ) from None

    @staticmethod
    def available(root: AbiRoot) -> list[tuple[int, str | None]]:
        """``(N, owner remoteprocN or None)`` for every ``rpmsg_ctrlN``."""
        devs = root.numbered(root.dev_dir, "rpmsg_ctrl")
        return [(n, owner_rproc(root.rpmsg_class_dir / f"rpmsg_ctrl{n}")) for n, _ in devs]

    @classmethod
    def for_processor(cls, proc: RemoteProc) -> RpmsgCtrl:
        """The ctrl device of ``proc``'s rpmsg bus."""
        ctrls = cls.available(proc.root)
        mine = [n for n, owner in ctrls if owner == proc.dev_name]
        if not mine and len(ctrls) == 1 and ctrls[0][1] is None:
            mine = [ctrls[0][0]]
        if not mine:
            where = proc.root.dev_dir / "rpmsg_ctrl*"
            state = proc.state_or_unknown()
            if not ctrls:
                raise RprocError(errno.ENOENT, f"{proc.dev_name} has no rpmsg control device "
                                 f"({where} is absent; the processor is {state}): "
                                 + _NO_RPMSG, file=str(proc.root.dev_dir))
            raise RprocError(errno.ENOTUNIQ, f"several rpmsg control devices and sysfs does "
                             f"not say which belongs to {proc.dev_name} (its state is "
                             f"{state}): name one", file=str(where))
        return cls(proc.root, mine[0])

    def fileno(self) -> int:
        if self._fd < 0:
            raise RprocError(errno.EBADF, "ctrl device is closed", file=str(self.path))
        return self._fd

    def _ioctl(self, cmd: int, info: EndpointInfo, doing: str) -> None:
        try:
            fcntl.ioctl(self.fileno(), cmd, info.pack())
        except OSError as exc:
            raise explain(exc, self.path, doing) from None

    def create_endpoint(self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY,
                        *, timeout: float = 2.0) -> Endpoint:
        """RPMSG_CREATE_EPT_IOCTL, then open the new ``rpmsgN``: the endpoint exists once open.

        ``dst`` is where ``send`` goes (a remote address such as 1024); ``src`` ANY lets the
        bus choose this side's address."""
        before = {d.index for d in endpoint_devices(self.root)}
        self._ioctl(RPMSG_CREATE_EPT_IOCTL, EndpointInfo(name, src, dst),
                    f"create endpoint {name!r} with")
        want_src, want_dst = src & 0xFFFFFFFF, dst & 0xFFFFFFFF
        deadline = time.monotonic() + timeout
        while True:
            for dev in endpoint_devices(self.root):
                if dev.index in before:
                    continue
                if dev.name not in (None, name[:31]):
                    continue
                if dev.src not in (None, want_src) or dev.dst not in (None, want_dst):
                    continue
                return dev.open(timeout=max(0.1, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                raise RprocError(errno.ETIMEDOUT, f"endpoint {name!r} was created but no new "
                                 f"rpmsgN device appeared within {timeout:g} s",
                                 file=str(self.root.rpmsg_class_dir))
            time.sleep(0.01)

    def create_channel(self, name: str, src: int = RPMSG_ADDR_ANY,
                       dst: int = RPMSG_ADDR_ANY) -> None:
        """RPMSG_CREATE_DEV_IOCTL: a channel device on the bus (announced when src != ANY)."""
        self._ioctl(RPMSG_CREATE_DEV_IOCTL, EndpointInfo(name, src, dst),
                    f"create channel {name!r} with")

    def release_channel(self, name: str, src: int = RPMSG_ADDR_ANY,
                        dst: int = RPMSG_ADDR_ANY) -> None:
        """RPMSG_RELEASE_DEV_IOCTL (EINVAL: no such channel)."""
        self._ioctl(RPMSG_RELEASE_DEV_IOCTL, EndpointInfo(name, src, dst),
                    f"release channel {name!r} with")

