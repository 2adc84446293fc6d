"""The rpmsg bus core (the kernel's ``rpmsg_core.c``): rpmsg drivers, their matching to
channels, and the process-wide registry of live buses and channels with its subscribers.

Rules:
- An ``RpmsgDriver`` is the kernel's ``struct rpmsg_driver``: a name, an ``id_table`` of channel
  names, ``probe``/``remove`` and an optional ``callback`` (which gives each bound channel a
  default endpoint). Matching is the kernel's: ``driver_override`` against the driver's name,
  else the channel name against ``id_table`` (32 bytes compared). Registering a driver binds it
  to every unbound matching channel already present; unregistering unbinds it.
- ``registry`` (also exported as ``bus_registry``) lists the live ``RpmsgBus`` objects (one per
  probed rpmsg virtio device) and their channels, and tells subscribers (``RpmsgListener``)
  when buses and channels come and go. That is how applications learn that channels were torn
  down on stop, crash or detach and recreated after recovery or re-attach.
- Listener methods run in the thread that caused the event (the receive thread for name-service
  announcements, the lifecycle thread for teardown), with no rpmsg lock held; an exception in a
  listener is logged and swallowed so it cannot break the bus.
- ``drivers_autoprobe`` (the bus's sysfs file): while False, new channels and new drivers are
  not bound automatically; ``bind``/``drivers_probe`` still bind on request.
- Binding on request follows ``drivers/base/bus.c``: an unknown or unregistered device, or a
  driver that does not match, is ENODEV; a bound device is EBUSY; a failed probe gives the
  probe's errno. Unbinding a device not bound to that driver is ENODEV.
- The registry lock is a leaf: it is never held while calling out (probe, remove, listeners).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remoteproc.errors import RprocError
from remoteproc.rpmsg.endpoint import Channel, RxCallback
from remoteproc.rpmsg.wire import RPMSG_NAME_SIZE

if TYPE_CHECKING:
    from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

__all__ = [
    "RpmsgDriver",
    "RpmsgListener",
    "RpmsgRegistry",
    "bus_registry",
    "register_rpmsg_driver",
    "registry",
    "rpmsg_match",
    "unregister_rpmsg_driver",
]

log = logging.getLogger("remoteproc.rpmsg")


@dataclass(eq=False)
class RpmsgDriver:
    """``struct rpmsg_driver``. ``probe(channel)`` returns per-channel driver data."""

    name: str
    id_table: tuple[str, ...] = ()
    probe: Callable[[Channel], object] | None = None
    remove: Callable[[Channel], None] | None = None
    callback: RxCallback | None = None


def rpmsg_match(channel: Channel, driver: RpmsgDriver) -> bool:
    """``rpmsg_dev_match``: the override wins; otherwise the id table (``strncmp`` 32)."""
    if channel.driver_override is not None:
        return channel.driver_override == driver.name
    name = channel.name[:RPMSG_NAME_SIZE]
    return any(entry[:RPMSG_NAME_SIZE] == name for entry in driver.id_table)


class RpmsgListener:
    """Subclass and override what you need; ``registry.subscribe(listener)``."""

    def on_bus_added(self, bus: RpmsgBus) -> None:
        pass

    def on_bus_removed(self, bus: RpmsgBus) -> None:
        pass

    def on_channel_added(self, channel: Channel) -> None:
        pass

    def on_channel_removed(self, channel: Channel) -> None:
        pass


class RpmsgRegistry:
    """Live buses, rpmsg drivers and subscribers, process-wide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buses: list[RpmsgBus] = []
        self._drivers: list[RpmsgDriver] = []
        self._listeners: list[RpmsgListener] = []
        self.drivers_autoprobe = True

    # -- queries -----------------------------------------------------------------------------
    def buses(self) -> list[RpmsgBus]:
        with self._lock:
            return list(self._buses)

    def find_bus(self, name: str) -> RpmsgBus | None:
        """By virtio device name, e.g. ``"virtio0"``."""
        with self._lock:
            return next((b for b in self._buses if b.name == name), None)

    def channels(self) -> list[Channel]:
        """Every registered channel of every live bus, in creation order per bus."""
        return [ch for bus in self.buses() for ch in bus.channels()]

    def drivers(self) -> list[RpmsgDriver]:
        with self._lock:
            return list(self._drivers)

    # -- drivers -----------------------------------------------------------------------------
    def register_driver(self, driver: RpmsgDriver) -> None:
        """Add a driver and bind it to every unbound channel it matches."""
        with self._lock:
            if driver in self._drivers:
                return
            self._drivers.append(driver)
            buses = list(self._buses)
            autoprobe = self.drivers_autoprobe
        if autoprobe:
            for bus in buses:
                bus.bind_unbound(driver)

    def unregister_driver(self, driver: RpmsgDriver) -> None:
        with self._lock:
            if driver not in self._drivers:
                return
            self._drivers.remove(driver)
            buses = list(self._buses)
        for bus in buses:
            bus.unbind_driver(driver)

    def find_driver(self, name: str) -> RpmsgDriver | None:
        with self._lock:
            return next((d for d in self._drivers if d.name == name), None)

    def bind(self, channel: Channel, driver: RpmsgDriver) -> None:
        """``bind_store``: bind ``channel`` to ``driver`` on request (errnos: module rules)."""
        if not channel.registered or driver not in self.drivers():
            raise RprocError(errno.ENODEV, f"{channel.device_name}: no such device")
        if not rpmsg_match(channel, driver):
            raise RprocError(errno.ENODEV,
                             f"{channel.device_name}: driver {driver.name} does not match")
        channel.bus.bind(channel, driver)

    def unbind(self, channel: Channel, driver: RpmsgDriver) -> None:
        """``unbind_store``: ENODEV unless ``channel`` is bound to ``driver``."""
        if not channel.registered or channel.driver is not driver:
            raise RprocError(errno.ENODEV,
                             f"{channel.device_name}: not bound to {driver.name}")
        channel.bus.unbind(channel, driver)

    def probe_channel(self, channel: Channel) -> None:
        """``drivers_probe``: bind an unbound channel to the first driver that matches (none
        is fine, as is a failed probe: ``device_attach`` ignores both)."""
        if not channel.registered:
            raise RprocError(errno.ENODEV, f"{channel.device_name}: no such device")
        if channel.driver is not None:
            return
        for drv in self.drivers():
            if rpmsg_match(channel, drv):
                try:
                    channel.bus.bind(channel, drv)
                    return
                except RprocError as exc:
                    if exc.errno == errno.EBUSY:
                        return

    def driver_for(self, channel: Channel) -> RpmsgDriver | None:
        with self._lock:
            drivers = list(self._drivers)
        return next((d for d in drivers if rpmsg_match(channel, d)), None)

    # -- subscribers -------------------------------------------------------------------------
    def subscribe(self, listener: RpmsgListener) -> Callable[[], None]:
        """Start telling ``listener`` about buses and channels; returns the unsubscribe call."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, method: str, arg: object) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                getattr(listener, method)(arg)
            except Exception:
                log.exception("rpmsg listener %r failed in %s", listener, method)

    # -- called by buses ---------------------------------------------------------------------
    def add_bus(self, bus: RpmsgBus) -> None:
        with self._lock:
            self._buses.append(bus)
        self._emit("on_bus_added", bus)

    def remove_bus(self, bus: RpmsgBus) -> None:
        with self._lock:
            if bus not in self._buses:
                return
            self._buses.remove(bus)
        self._emit("on_bus_removed", bus)

    def channel_added(self, channel: Channel) -> None:
        self._emit("on_channel_added", channel)

    def channel_removed(self, channel: Channel) -> None:
        self._emit("on_channel_removed", channel)


registry = RpmsgRegistry()
bus_registry = registry
register_rpmsg_driver = registry.register_driver
unregister_rpmsg_driver = registry.unregister_driver
