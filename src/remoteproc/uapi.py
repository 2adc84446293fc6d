"""The kernel's userspace headers for remoteproc and rpmsg: one declaration for both sides.

rprocd's ABI (``remoteproc.abi``) serves these numbers and layouts and the client
(``remoteproc.client``) sends them, as a program on a board includes the same header.

Owns the ioctl numbers of ``include/uapi/linux/remoteproc_cdev.h`` and ``include/uapi/linux/
rpmsg.h`` (spec §3.2, §9.6) and the one binary layout they carry, ``struct rpmsg_endpoint_info``.

Rules:
- Numbers are the asm-generic ``_IOC`` encoding the spec gives, written out as the spec does;
  the tests rebuild each from ``ioc()`` (direction, magic, number, size), so a typo cannot pass.
- ``struct rpmsg_endpoint_info`` is declared once (``ENDPOINT_INFO``) and used to build and parse.
- Pure: no I/O, nothing imported beyond the standard library (a client must start fast).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# The uapi's own values (include/uapi/linux/rpmsg.h and the bus's MTU, spec Appendix C). They
# equal remoteproc.rpmsg.wire's, written again because importing the rpmsg package loads the
# whole bus (and asyncio): a client on a board needs none of it. A test checks they agree.
RPMSG_ADDR_ANY = 0xFFFFFFFF
RPMSG_NAME_SIZE = 32
RPMSG_MTU = 496

__all__ = [
    "ENDPOINT_INFO",
    "RPMSG_ADDR_ANY",
    "RPMSG_CREATE_DEV_IOCTL",
    "RPMSG_CREATE_EPT_IOCTL",
    "RPMSG_DESTROY_EPT_IOCTL",
    "RPMSG_GET_OUTGOING_FLOWCONTROL",
    "RPMSG_MTU",
    "RPMSG_NAME_SIZE",
    "RPMSG_RELEASE_DEV_IOCTL",
    "RPMSG_SET_INCOMING_FLOWCONTROL",
    "RPROC_GET_SHUTDOWN_ON_RELEASE",
    "RPROC_SET_SHUTDOWN_ON_RELEASE",
    "EndpointInfo",
    "ioc",
]

IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def ioc(direction: int, magic: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (magic << 8) | nr


# struct rpmsg_endpoint_info { char name[32]; __u32 src; __u32 dst; };  (native byte order)
ENDPOINT_INFO = struct.Struct("=32sII")

RPROC_SET_SHUTDOWN_ON_RELEASE = 0x4004B701  # _IOW(0xB7, 1, __s32)
RPROC_GET_SHUTDOWN_ON_RELEASE = 0x8004B702  # _IOR(0xB7, 2, __s32)
RPMSG_CREATE_EPT_IOCTL = 0x4028B501  # _IOW(0xb5, 0x1, struct rpmsg_endpoint_info)
RPMSG_DESTROY_EPT_IOCTL = 0x0000B502  # _IO(0xb5, 0x2)
RPMSG_CREATE_DEV_IOCTL = 0x4028B503  # _IOW(0xb5, 0x3, struct rpmsg_endpoint_info)
RPMSG_RELEASE_DEV_IOCTL = 0x4028B504  # _IOW(0xb5, 0x4, struct rpmsg_endpoint_info)
RPMSG_GET_OUTGOING_FLOWCONTROL = 0x8004B505  # _IOR(0xb5, 0x5, int)
RPMSG_SET_INCOMING_FLOWCONTROL = 0x8004B506  # _IOR(0xb5, 0x6, int): the value is the argument


class EndpointInfo(NamedTuple):
    """``struct rpmsg_endpoint_info``: unused addresses are ``RPMSG_ADDR_ANY``."""

    name: str
    src: int = RPMSG_ADDR_ANY
    dst: int = RPMSG_ADDR_ANY

    def pack(self) -> bytes:
        """The name is cut to 31 bytes (``struct.pack`` pads with NULs), as the kernel forces
        ``name[31] = 0``. Names are bytes to the kernel: text that came from non-UTF-8 bytes
        (decoded with ``surrogateescape``) goes back as those bytes."""
        name = self.name.encode("utf-8", "surrogateescape")[: RPMSG_NAME_SIZE - 1]
        return ENDPOINT_INFO.pack(name, self.src & 0xFFFFFFFF, self.dst & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, raw: bytes) -> EndpointInfo:
        name, src, dst = ENDPOINT_INFO.unpack(raw)
        text = name[: RPMSG_NAME_SIZE - 1].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return cls(text, src, dst)
