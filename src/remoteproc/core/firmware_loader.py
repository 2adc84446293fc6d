"""Firmware requests: the kernel's ``request_firmware`` (drivers/base/firmware_loader).

Owns the search path and ``request_firmware``. Rules: names are relative paths inside the search
path; an absolute name or one with a ``..`` component is refused with EINVAL before any file is
touched; a name found nowhere is ENOENT. Images registered as built-in firmware are searched
first.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from remoteproc.errors import RprocError
from remoteproc.firmware.elf import Firmware

__all__ = ["DEFAULT_FIRMWARE_PATH", "FirmwareSource", "check_firmware_name", "printable_name",
           "request_firmware"]

log = logging.getLogger("remoteproc")


def _default_path() -> list[Path]:
    env = os.environ.get("RPROC_FIRMWARE_PATH")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path("/lib/firmware")]


DEFAULT_FIRMWARE_PATH: list[Path] = _default_path()


class FirmwareSource(Protocol):
    """Where a processor's firmware is looked up (a ``Host``): built-in images, then folders."""

    @property
    def builtin_firmware(self) -> Mapping[str, bytes | bytearray]: ...
    @property
    def firmware_path(self) -> Sequence[Path]: ...


def check_firmware_name(name: str) -> None:
    """Refuse a name that is empty, absolute, or climbs out of the search path (EINVAL)."""
    if not name or "\0" in name:
        raise RprocError(errno.EINVAL, f"invalid firmware name {name!r}")
    pure = PurePosixPath(name)
    if (
        pure.is_absolute()
        or name.startswith("\\")
        or ".." in pure.parts
        or ".." in name.split("\\")
    ):
        raise RprocError(errno.EINVAL, f"firmware name {name!r} escapes the firmware path")


def request_firmware(host: FirmwareSource | None, name: str) -> Firmware:
    """``request_firmware``: built-in images first, then each folder of the search path."""
    check_firmware_name(name)
    if host is not None:
        data = host.builtin_firmware.get(name)
        if data is not None:
            return Firmware(name, data)
        path = host.firmware_path
    else:
        path = DEFAULT_FIRMWARE_PATH
    for folder in path:
        candidate = Path(folder) / name
        if candidate.is_file():
            return Firmware.from_file(str(candidate), name)
    # A name written to sysfs may hold bytes that are not UTF-8 (surrogate escapes here): print
    # them escaped, so a log record or error message stays valid text (pytest-xdist, JSON and
    # terminals refuse lone surrogates).
    shown = printable_name(name)
    log.warning("Direct firmware load for %s failed with error %d", shown, -errno.ENOENT)
    raise RprocError(errno.ENOENT, f"firmware {shown} not found in the firmware path",
                     file=shown)


def printable_name(name: str) -> str:
    """``name`` with bytes that are not UTF-8 written as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
