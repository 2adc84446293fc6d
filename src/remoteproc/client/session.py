"""A process that owns a remote processor: ``/dev/remoteprocN`` held open (spec §3).

Owns ``Session``: the open character device, its commands and the shutdown-on-release flag.

Rules:
- Commands are written with exactly their own length and no newline (``start``, ``stop``,
  ``detach``): the cdev compares ``len`` bytes, so ``start\\n`` would be EINVAL (§3.1).
- ``shutdown_on_release`` is set with RPROC_SET_SHUTDOWN_ON_RELEASE right after open (the
  default), so when this process exits for any reason, SIGKILL included, the kernel's release
  stops a processor the core booted or detaches one it attached (§3.3). The flag belongs to the
  processor, not to this descriptor: it stays set for every opener until someone clears it.
- Without CONFIG_REMOTEPROC_CDEV there is no ``/dev/remoteprocN``; opening says so and points to
  the sysfs ``state`` file, which does the same without the lifetime binding.
- One descriptor per ``Session``; ``close()`` is idempotent and the context manager closes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from remoteproc.client.base import FdOwner, ProcessorFiles, explain
from remoteproc.errors import RprocError
from remoteproc.uapi import RPROC_GET_SHUTDOWN_ON_RELEASE, RPROC_SET_SHUTDOWN_ON_RELEASE

__all__ = ["Session"]

_S32 = struct.Struct("=i")


class Session(FdOwner):
    """``/dev/remoteprocN`` open for this process.

    ``with proc.session() as s: s.start(); ...`` boots the processor and stops it again when
    the block ends or the process dies. ``shutdown_on_release``: True sets the flag at open,
    False clears it, None leaves it as the processor has it (it is per processor).
    """

    def __init__(self, proc: ProcessorFiles, *, shutdown_on_release: bool | None = True) -> None:
        self.proc = proc
        self.path = proc.cdev
        hint = (f"{self.path} does not exist: this kernel was built without "
                "CONFIG_REMOTEPROC_CDEV (or udev did not create the node); use the sysfs "
                f"state file {proc.sysfs / 'state'} instead (rproc start/stop without "
                "--session)")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise explain(exc, self.path, "open", hint) from None
        try:
            if shutdown_on_release is not None:
                self.shutdown_on_release = shutdown_on_release
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        if self._fd < 0:
            raise RprocError(errno.EBADF, "session is closed", file=str(self.path))
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def _command(self, word: str) -> None:
        data = word.encode()
        try:
            os.write(self.fileno(), data)
        except OSError as exc:
            code = exc.errno or errno.EIO
            state = self.proc.state_or_unknown()
            raise RprocError(code, f"{word} refused: {os.strerror(code)} (the processor is "
                             f"{state})", file=str(self.path)) from None

    def start(self) -> None:
        self._command("start")

    def stop(self) -> None:
        self._command("stop")

    def detach(self) -> None:
        self._command("detach")

    @property
    def shutdown_on_release(self) -> bool:
        buf = bytearray(_S32.size)
        try:
            fcntl.ioctl(self.fileno(), RPROC_GET_SHUTDOWN_ON_RELEASE, buf, True)
        except OSError as exc:
            raise explain(exc, self.path, "read shutdown-on-release from") from None
        return bool(_S32.unpack(buf)[0])

    @shutdown_on_release.setter
    def shutdown_on_release(self, value: bool) -> None:
        try:
            fcntl.ioctl(self.fileno(), RPROC_SET_SHUTDOWN_ON_RELEASE, _S32.pack(int(value)))
        except OSError as exc:
            raise explain(exc, self.path, "set shutdown-on-release on") from None

    def close(self) -> None:
        """Close the descriptor: with the flag set, the kernel stops (or detaches) the
        processor now."""
        super().close()
