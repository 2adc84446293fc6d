"""rpmsg: framing and name service (``wire``), endpoints and channels (``endpoint``), the bus
core with its driver table and registry (``core``), the host role over virtio
(``virtio_rpmsg_bus``) and the remote role (``remote``).

Importing this package registers the rpmsg virtio driver with ``remoteproc.virtio.bus``.
"""

from __future__ import annotations

from remoteproc.rpmsg.core import (
    RpmsgDriver,
    RpmsgListener,
    bus_registry,
    register_rpmsg_driver,
    registry,
    unregister_rpmsg_driver,
)
from remoteproc.rpmsg.endpoint import Channel, Endpoint
from remoteproc.rpmsg.virtio_rpmsg_bus import DEFAULT_TX_TIMEOUT, RpmsgBus, virtio_rpmsg_driver
from remoteproc.rpmsg.wire import (
    RPMSG_ADDR_ANY,
    RPMSG_HDR_SIZE,
    RPMSG_MTU,
    RPMSG_NAME_SIZE,
    RPMSG_NS_ADDR,
    RPMSG_RESERVED_ADDRESSES,
)

__all__ = [
    "DEFAULT_TX_TIMEOUT",
    "RPMSG_ADDR_ANY",
    "RPMSG_HDR_SIZE",
    "RPMSG_MTU",
    "RPMSG_NAME_SIZE",
    "RPMSG_NS_ADDR",
    "RPMSG_RESERVED_ADDRESSES",
    "Channel",
    "Endpoint",
    "RpmsgBus",
    "RpmsgDriver",
    "RpmsgListener",
    "bus_registry",
    "register_rpmsg_driver",
    "registry",
    "unregister_rpmsg_driver",
    "virtio_rpmsg_driver",
]
