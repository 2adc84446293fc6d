"""rpmsg_hdr and rpmsg_ns_msg byte layouts (spec §9.3, §9.4)."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remoteproc.errors import RprocError
from remoteproc.rpmsg.wire import (
    RPMSG_HDR_SIZE,
    RPMSG_MTU,
    RPMSG_NS_DESTROY,
    RPMSG_NS_MSG_SIZE,
    NsMsg,
    decode_hdr,
    decode_name,
    decode_ns_msg,
    encode_hdr_into,
    encode_name,
    encode_ns_msg,
)


def test_sizes() -> None:
    assert RPMSG_HDR_SIZE == 16
    assert RPMSG_NS_MSG_SIZE == 40
    assert RPMSG_MTU == 496


@pytest.mark.parametrize("bo", ["<", ">"])
def test_hdr_layout(bo: str) -> None:
    buf = bytearray(20)
    encode_hdr_into(buf, bo, src=0x400, dst=0x35, length=4)
    assert bytes(buf[:16]) == struct.pack(bo + "IIIHH", 0x400, 0x35, 0, 4, 0)
    hdr = decode_hdr(buf, bo)
    assert (hdr.src, hdr.dst, hdr.reserved, hdr.len, hdr.flags) == (0x400, 0x35, 0, 4, 0)


def test_hdr_truncated() -> None:
    with pytest.raises(RprocError) as ei:
        decode_hdr(b"\0" * 15, "<")
    assert ei.value.errno == errno.EINVAL


def test_ns_msg_layout_le() -> None:
    raw = encode_ns_msg("rpmsg-client-sample", 0x400, 0, "<")
    assert raw == b"rpmsg-client-sample".ljust(32, b"\0") + b"\x00\x04\x00\x00" + b"\0\0\0\0"
    assert decode_ns_msg(raw, "<") == NsMsg("rpmsg-client-sample", 0x400, 0)


def test_ns_msg_layout_be() -> None:
    raw = encode_ns_msg("x", 1, RPMSG_NS_DESTROY, ">")
    assert raw[32:] == b"\0\0\0\x01\0\0\0\x01"


@pytest.mark.parametrize("length", [0, 39, 41, 496])
def test_ns_msg_wrong_length(length: int) -> None:
    with pytest.raises(RprocError) as ei:
        decode_ns_msg(b"\0" * length, "<")
    assert ei.value.errno == errno.EINVAL
    assert ei.value.message == f"malformed ns msg ({length})"


def test_names_are_cut_and_terminated() -> None:
    assert encode_name("a" * 40) == b"a" * 31 + b"\0"
    # the receiver forces name[31] = 0: an unterminated name reads as 31 bytes
    assert decode_name(b"b" * 32) == "b" * 31
    assert decode_name(b"ab\0cd".ljust(32, b"\0")) == "ab"


@given(st.binary(min_size=40, max_size=40), st.sampled_from(["<", ">"]))
def test_any_40_bytes_decode(raw: bytes, bo: str) -> None:
    msg = decode_ns_msg(raw, bo)
    assert len(msg.name.encode("utf-8", "surrogateescape")) <= 31 * 4
    assert 0 <= msg.addr < 2**32
