"""The remoteproc character device ``/dev/remoteprocN`` (spec §3, ``remoteproc_cdev.c``).

Owns ``RprocCdevHandle`` and ``rproc_cdev``.

Rules:
- write: 1..10 bytes, else EINVAL; the command is matched with ``strncmp(cmd, word, len)`` in
  the order start, stop, detach, so prefixes work ("sta" starts) and a trailing newline does not
  (``echo start > /dev/remoteproc0`` is EINVAL; ``echo -n start`` works). No state checks here:
  the core's errno is returned.
- ioctl: RPROC_SET_SHUTDOWN_ON_RELEASE (``_IOW(0xB7, 1, s32)``) and
  RPROC_GET_SHUTDOWN_ON_RELEASE (``_IOR(0xB7, 2, s32)``); anything else EINVAL. The flag lives
  in the processor (``cdev_put_on_release``), not in the open file, as in mainline.
- release (last close of a description, including a killed holder's): when the flag is set,
  shut down a RUNNING processor or detach an ATTACHED one; errors are logged (the caller's
  close() has already returned).
- No read (EINVAL).
"""

from __future__ import annotations

import errno
import logging
import struct

from remoteproc.abi.kstr import strncmp_eq
from remoteproc.abi.node import File, Handle, Request
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.uapi import RPROC_GET_SHUTDOWN_ON_RELEASE, RPROC_SET_SHUTDOWN_ON_RELEASE

__all__ = [
    "RPROC_GET_SHUTDOWN_ON_RELEASE",
    "RPROC_SET_SHUTDOWN_ON_RELEASE",
    "RprocCdevHandle",
    "rproc_cdev",
]

log = logging.getLogger("remoteproc.abi")

_S32 = struct.Struct("<i")


class RprocCdevHandle(Handle):
    def __init__(self, rproc: Rproc) -> None:
        self.rproc = rproc

    def write(self, data: bytes, offset: int, req: Request) -> int:
        n = len(data)
        if not 1 <= n <= 10:
            raise RprocError(errno.EINVAL, f"command of {n} bytes (1..10 accepted)")
        rproc = self.rproc
        if strncmp_eq(data, "start", n):
            rproc.boot(cancel=req.cancel)
        elif strncmp_eq(data, "stop", n):
            rproc.shutdown(cancel=req.cancel)
        elif strncmp_eq(data, "detach", n):
            rproc.detach(cancel=req.cancel)
        else:
            log.error("%s: Unrecognized option", rproc.dev_name)
            raise RprocError(errno.EINVAL, "Unrecognized option")
        return n

    def ioctl(self, cmd: int, arg: int, data: bytes, req: Request) -> tuple[int, bytes]:
        if cmd == RPROC_SET_SHUTDOWN_ON_RELEASE:
            if len(data) < _S32.size:
                raise RprocError(errno.EFAULT, "short ioctl argument")
            (param,) = _S32.unpack_from(data)
            self.rproc.cdev_put_on_release = bool(param)
            return 0, b""
        if cmd == RPROC_GET_SHUTDOWN_ON_RELEASE:
            return 0, _S32.pack(int(self.rproc.cdev_put_on_release))
        log.error("%s: Unsupported ioctl", self.rproc.dev_name)
        raise RprocError(errno.EINVAL, "Unsupported ioctl")

    def release(self) -> None:
        rproc = self.rproc
        if not rproc.cdev_put_on_release:
            return
        try:
            if rproc.state is State.RUNNING:
                rproc.shutdown()
            elif rproc.state is State.ATTACHED:
                rproc.detach()
        except RprocError as exc:
            log.warning("%s: release of the cdev: %s", rproc.dev_name, exc)


def rproc_cdev(rproc: Rproc) -> File:
    """``/dev/remoteprocN`` (0600 as udev creates it)."""
    return File(0o600, lambda flags: RprocCdevHandle(rproc), size=0)
