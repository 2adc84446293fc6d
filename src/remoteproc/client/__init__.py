"""The kernel's remoteproc and rpmsg userspace ABI seen from a program: the same code drives a
board (root ``/``) and ``rprocd`` (root = its mount point).

    from remoteproc.client import AbiRoot
    m4 = AbiRoot("/").processor("m4")
    m4.start(); m4.wait_state("running")
    with m4.session() as s: ...                 # /dev/remoteprocN, stop on exit
    dev = channel_device(m4)                     # /dev/rpmsgN of the "rpmsg-raw" channel
    with open_channel(m4) as ep: ep.send(b"hi")  # waits for the announcement, then opens it
    m4.expect("rpmsg-echo on")                   # wait for trace output (pytest-embedded style)

Modules: ``root`` (paths, attribute I/O, explained errors), ``rproc`` (``RemoteProc``,
``Coredump``), ``watch`` (``StateWatcher``), ``session`` (``Session``), ``rpmsg`` (channels,
``RpmsgCtrl``, ``Endpoint``), ``bench``
(echo round trips), ``launch`` (``rprocd`` in the background), ``demo`` (``rproc demo``). The
ioctl numbers and ``rpmsg_endpoint_info`` come from ``remoteproc.uapi``, shared with rprocd.

One exception: ``events`` (``EventStream``) reads rprocd's ``rprocd/events``, since the kernel
has no way to tell a program that its processor crashed.

Rule for the whole package: only the kernel's paths and semantics, nothing rprocd-only; every
failure is an ``RprocError`` with the system call's errno, the file, and what to do about it.
"""

from __future__ import annotations

from remoteproc.client.events import EventStream, ProcessorEvent
from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import (
    Endpoint,
    RpmsgCtrl,
    channel_device,
    channels,
    open_channel,
)
from remoteproc.client.rproc import Coredump, RemoteProc
from remoteproc.client.session import Session
from remoteproc.client.watch import StateChange, StateWatcher

__all__ = [
    "AbiRoot",
    "Coredump",
    "Endpoint",
    "EventStream",
    "ProcessorEvent",
    "RemoteProc",
    "RpmsgCtrl",
    "Session",
    "StateChange",
    "StateWatcher",
    "channel_device",
    "channels",
    "open_channel",
]
