"""The virtio boundary between a transport (the rproc vdev) and a driver (rpmsg).

Rules:
- ``remoteproc.core.virtio`` implements ``VirtioDevice`` over a ``fw_rsc_vdev`` entry in
  the live resource table; ``remoteproc.rpmsg`` implements ``VirtioDriver`` for VIRTIO_ID_RPMSG.
  Neither imports the other: drivers register here and are found by device id; a driver's
  module is imported on first need through the ``remoteproc.virtio_drivers`` entry points, as
  the kernel loads a module by its modalias.
- The status byte, features and config space live in the resource table (device memory); the
  transport reads and writes them there, so the remote sees every change in place.
- Device indexes (``virtioN``) come from ``virtio_index_ida``: the lowest free number, taken at
  registration and given back at unregistration (the kernel's ``virtio_index_ida``), so a
  processor that restarts gets its ``virtio0`` back.
- Feature bits above 31 cannot be offered by a remoteproc vdev (``dfeatures`` is 32 bits), so
  devices are always legacy: native byte order for rings and rpmsg (spec §9.1).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from remoteproc.virtio.vring import DriverQueue

# virtio status bits (include/uapi/linux/virtio_config.h)
VIRTIO_CONFIG_S_ACKNOWLEDGE = 1
VIRTIO_CONFIG_S_DRIVER = 2
VIRTIO_CONFIG_S_DRIVER_OK = 4
VIRTIO_CONFIG_S_FEATURES_OK = 8
VIRTIO_CONFIG_S_FAILED = 0x80

# transport feature bits kept by vring_transport_features
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_RING_PACKED = 34

VIRTIO_ID_RPMSG = 7

# Entry-point group that maps a modalias (``virtio:d%08X``) to the module of its driver.
DRIVER_ENTRY_POINTS = "remoteproc.virtio_drivers"

VqCallback = Callable[[DriverQueue], None]


class VirtioDevice(Protocol):
    """What a virtio driver may use of its device (the kernel's virtio_config_ops + a few)."""

    id: int  # virtio device id (7 = rpmsg)
    index: int  # N of "virtioN", unique in the process
    name: str  # "virtio0"
    @property
    def rproc(self) -> object: ...  # the owning remote processor: identity, for naming
    byteorder: str  # "<" or ">": the remote's order, used for rings and rpmsg headers

    def get_features(self) -> int: ...
    def finalize_features(self, driver_features: int) -> int: ...  # returns negotiated bits
    def get_status(self) -> int: ...
    def set_status(self, status: int) -> None: ...
    def reset(self) -> None: ...
    def config_get(self, offset: int, length: int) -> bytes | None: ...
    def config_set(self, offset: int, data: bytes) -> None: ...

    def find_vqs(
        self, names: Sequence[str | None], callbacks: Sequence[VqCallback | None]
    ) -> list[DriverQueue | None]:
        """Create the host-role virtqueues (``remoteproc.virtio.vring.DriverQueue``)."""
        ...

    def del_vqs(self) -> None: ...

    def dma_alloc(self, size: int) -> tuple[memoryview, int]:
        """Shared memory for buffers: (host view, physical address the remote sees)."""
        ...

    def dma_free(self, pa: int) -> None: ...


class VirtioDriver(Protocol):
    """A driver bound to devices by id; ``probe`` returns the driver's per-device state."""

    name: str
    device_ids: tuple[int, ...]
    features: int  # bitmask of the feature bits the driver understands

    def probe(self, vdev: VirtioDevice) -> object: ...
    def remove(self, vdev: VirtioDevice, state: object) -> None: ...


class Ida:
    """The kernel's ``struct ida``: ``alloc()`` takes the lowest free number, ``free(n)`` gives
    it back. Thread-safe (a leaf lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()

    def alloc(self) -> int:
        with self._lock:
            n = 0
            while n in self._used:
                n += 1
            self._used.add(n)
            return n

    def free(self, n: int) -> None:
        with self._lock:
            self._used.discard(n)


virtio_index_ida = Ida()

_lock = threading.Lock()
_drivers: list[VirtioDriver] = []


def register_driver(driver: VirtioDriver) -> None:
    with _lock:
        if driver not in _drivers:
            _drivers.append(driver)


def unregister_driver(driver: VirtioDriver) -> None:
    with _lock:
        if driver in _drivers:
            _drivers.remove(driver)


def driver_for(device_id: int) -> VirtioDriver | None:
    """The first registered driver for ``device_id``, loading its module on first need.

    The kernel's ``request_module("virtio:d%08Xv*")``: drivers are found by device id among the
    installed package's ``remoteproc.virtio_drivers`` entry points (the modalias table), and
    register themselves with ``register_driver`` when imported. The bus names no driver."""
    drv = _registered(device_id)
    if drv is None and _autoload(device_id):
        drv = _registered(device_id)
    return drv


def _registered(device_id: int) -> VirtioDriver | None:
    with _lock:
        for drv in _drivers:
            if device_id in drv.device_ids:
                return drv
    return None


_loaded: set[int] = set()


def _autoload(device_id: int) -> bool:
    """Import the driver modules declared for ``device_id`` (once per id); True if any was."""
    with _lock:
        if device_id in _loaded:
            return False
        _loaded.add(device_id)
    found = False
    for ep in importlib.metadata.entry_points(group=DRIVER_ENTRY_POINTS):
        if ep.name == f"virtio:d{device_id:08X}":
            importlib.import_module(ep.value)
            found = True
    return found
