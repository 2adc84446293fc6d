"""rpmsg framing and name-service messages: the bytes on the wire, nothing else (spec §9.3, §9.4).

This module owns the binary layouts ``struct rpmsg_hdr`` and ``struct rpmsg_ns_msg`` and the
constants both roles share. It is pure: encode and decode over bytes or a memoryview, no state.

Rules:
- Every layout is declared once, as a format named after the kernel struct, and used both to
  build and to parse, in the vdev's byte order (legacy virtio: the remote's native order, §9.1).
- Decoding input from the other side never raises anything but ``RprocError`` with the kernel's
  errno and words ("malformed ns msg (%d)", "inbound msg too big").
- Names are at most 31 bytes plus a NUL on the wire; a longer name is cut as ``strscpy`` would on
  the way out, and the receiver forces ``name[31] = 0`` as ``rpmsg_ns_cb`` does.
"""

from __future__ import annotations

import errno
import struct
from typing import NamedTuple

from remoteproc.errors import RprocError

__all__ = [
    "MAX_RPMSG_BUF_SIZE",
    "MAX_RPMSG_NUM_BUFS",
    "RPMSG_ADDR_ANY",
    "RPMSG_HDR",
    "RPMSG_HDR_SIZE",
    "RPMSG_MTU",
    "RPMSG_NAME_SIZE",
    "RPMSG_NS_ADDR",
    "RPMSG_NS_CREATE",
    "RPMSG_NS_DESTROY",
    "RPMSG_NS_MSG",
    "RPMSG_NS_MSG_SIZE",
    "RPMSG_RESERVED_ADDRESSES",
    "VIRTIO_RPMSG_F_NS",
    "NsMsg",
    "RpmsgHdr",
    "decode_hdr",
    "decode_name",
    "decode_ns_msg",
    "encode_hdr_into",
    "encode_name",
    "encode_ns_msg",
    "hdr_struct",
]

# Appendix C
RPMSG_ADDR_ANY = 0xFFFFFFFF
RPMSG_NS_ADDR = 53
RPMSG_RESERVED_ADDRESSES = 1024
RPMSG_NAME_SIZE = 32
MAX_RPMSG_BUF_SIZE = 512
MAX_RPMSG_NUM_BUFS = 512
VIRTIO_RPMSG_F_NS = 0  # feature bit number

RPMSG_NS_CREATE = 0
RPMSG_NS_DESTROY = 1

# struct rpmsg_hdr { __rpmsg32 src; __rpmsg32 dst; __rpmsg32 reserved; __rpmsg16 len;
#                    __rpmsg16 flags; u8 data[]; } __packed;
RPMSG_HDR = "IIIHH"
# struct rpmsg_ns_msg { char name[RPMSG_NAME_SIZE]; __rpmsg32 addr; __rpmsg32 flags; } __packed;
RPMSG_NS_MSG = "32sII"

_HDR = {bo: struct.Struct(bo + RPMSG_HDR) for bo in "<>"}
_NS = {bo: struct.Struct(bo + RPMSG_NS_MSG) for bo in "<>"}

RPMSG_HDR_SIZE = _HDR["<"].size  # 16
RPMSG_NS_MSG_SIZE = _NS["<"].size  # 40
RPMSG_MTU = MAX_RPMSG_BUF_SIZE - RPMSG_HDR_SIZE  # 496


class RpmsgHdr(NamedTuple):
    src: int
    dst: int
    reserved: int
    len: int
    flags: int


class NsMsg(NamedTuple):
    name: str
    addr: int
    flags: int


def hdr_struct(byteorder: str) -> struct.Struct:
    """The compiled ``rpmsg_hdr`` for one byte order (hot paths pack with it directly)."""
    try:
        return _HDR[byteorder]
    except KeyError:
        raise RprocError(errno.EINVAL, f"bad byte order {byteorder!r}") from None


def encode_hdr_into(
    buf: memoryview | bytearray,
    byteorder: str,
    src: int,
    dst: int,
    length: int,
    flags: int = 0,
    offset: int = 0,
) -> None:
    """Write a header as the kernel sends it: ``reserved = 0``, ``flags = 0`` by default."""
    hdr_struct(byteorder).pack_into(buf, offset, src, dst, 0, length, flags)


def decode_hdr(buf: memoryview | bytes | bytearray, byteorder: str, offset: int = 0) -> RpmsgHdr:
    if len(buf) - offset < RPMSG_HDR_SIZE:
        raise RprocError(errno.EINVAL, f"rpmsg header truncated ({len(buf) - offset} bytes)")
    return RpmsgHdr(*hdr_struct(byteorder).unpack_from(buf, offset))


def encode_name(name: str | bytes) -> bytes:
    """``name`` as the 32-byte NUL-padded field; cut to 31 bytes so a NUL always ends it."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)
    raw = raw.split(b"\0", 1)[0][: RPMSG_NAME_SIZE - 1]
    return raw.ljust(RPMSG_NAME_SIZE, b"\0")


def decode_name(raw: bytes) -> str:
    """The receiver's view of a name field: ``name[31] = 0``, then up to the first NUL."""
    text = bytes(raw[: RPMSG_NAME_SIZE - 1]).split(b"\0", 1)[0]
    return text.decode("utf-8", "backslashreplace")


def encode_ns_msg(name: str | bytes, addr: int, flags: int, byteorder: str) -> bytes:
    try:
        ns = _NS[byteorder]
    except KeyError:
        raise RprocError(errno.EINVAL, f"bad byte order {byteorder!r}") from None
    return ns.pack(encode_name(name), addr, flags)


def decode_ns_msg(data: bytes | memoryview, byteorder: str) -> NsMsg:
    """Parse an announcement exactly as ``rpmsg_ns_cb`` accepts it: 40 bytes or EINVAL."""
    if len(data) != RPMSG_NS_MSG_SIZE:
        raise RprocError(errno.EINVAL, f"malformed ns msg ({len(data)})")
    try:
        ns = _NS[byteorder]
    except KeyError:
        raise RprocError(errno.EINVAL, f"bad byte order {byteorder!r}") from None
    raw_name, addr, flags = ns.unpack_from(data)
    return NsMsg(decode_name(raw_name), addr, flags)
