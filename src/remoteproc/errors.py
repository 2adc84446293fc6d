"""One exception family for the whole project, carrying a kernel errno and a located message.

Rules:
- Every failure the kernel reports with a negative errno is raised here as ``RprocError`` with
  the same errno (``errno.EINVAL``...), and a message in the kernel's words where the kernel has
  words (spec sections cite them), followed by where it happened.
- Location is structured, not baked into the message: ``file``, ``offset`` (byte offset in the
  file or table), ``index`` (resource-table entry or program-header index), ``da`` (device
  address), ``vring``. ``str()`` renders them so users see e.g.
  ``fw.elf: resource entry 2 at offset 0x3c: carveout rsc is truncated [EINVAL]``.
- The ABI layers (FUSE, client) map ``RprocError.errno`` 1:1 onto the system call's errno, so
  never raise a bare ValueError/KeyError across a module boundary for bad input.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field

__all__ = ["ERESTARTSYS", "Finding", "RprocError", "errno_name"]

# Kernel-internal errno that leaks to userspace as EINTR-like; rpmsg's TX wait returns it (§9.3).
ERESTARTSYS = 512


def errno_name(code: int) -> str:
    """``22`` -> ``"EINVAL"``; unknown codes render as ``"E<n>"``."""
    if code == ERESTARTSYS:
        return "ERESTARTSYS"
    return _errno.errorcode.get(code, f"E{code}")


def _location(
    file: str | None,
    index: int | None,
    offset: int | None,
    da: int | None,
    vring: int | None,
    what: str | None,
) -> str:
    """``"fw.elf: resource entry 2 at offset 0x3c da 0x10000000"``; empty when nothing is known."""
    where: list[str] = []
    if index is not None:
        where.append(f"{what or 'entry'} {index}")
    elif what:
        where.append(what)
    if vring is not None:
        where.append(f"vring {vring}")
    if offset is not None:
        where.append(f"at offset {offset:#x}")
    if da is not None:
        where.append(f"da {da:#x}")
    text = " ".join(where)
    if file:
        return f"{file}: {text}" if text else file
    return text


class RprocError(Exception):
    """A failure with a kernel errno and where it happened.

    ``RprocError(errno.EINVAL, "bad phdr da 0x0 mem 0x100", file="fw.elf", index=1)``
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        file: str | None = None,
        offset: int | None = None,
        index: int | None = None,
        da: int | None = None,
        vring: int | None = None,
        what: str | None = None,
    ) -> None:
        super().__init__(message)
        self.errno = code
        self.message = message
        self.file = file
        self.offset = offset
        self.index = index
        self.da = da
        self.vring = vring
        self.what = what

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)

    @property
    def location(self) -> str:
        return _location(self.file, self.index, self.offset, self.da, self.vring, self.what)

    def __str__(self) -> str:
        loc = self.location
        head = f"{loc}: " if loc else ""
        return f"{head}{self.message} [{self.errno_name}]"

    def with_context(self, **kw: object) -> RprocError:
        """Fill location fields that are still unset (inner code knows offsets, outer the file)."""
        for key, value in kw.items():
            if getattr(self, key, None) is None:
                setattr(self, key, value)
        return self


@dataclass(frozen=True)
class Finding:
    """One diagnostic the kernel would log (or one we add): used by ``rproc fw check``.

    ``severity`` is ``"error"`` (Linux refuses the image: boot fails) or ``"warning"`` (Linux
    boots it but logs, or behaves surprisingly), or ``"note"``.
    """

    severity: str
    message: str
    errno: int | None = None
    index: int | None = None
    offset: int | None = None
    da: int | None = None
    what: str | None = None
    spec: str | None = None  # e.g. "§5.3"
    code: str | None = None  # a stable id for scripts and tests, e.g. "vendor-last-ignored"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return _location(None, self.index, self.offset, self.da, None, self.what)

    def __str__(self) -> str:
        loc = self.location
        code = f" [{errno_name(self.errno)}]" if self.errno else ""
        ref = f" ({self.spec})" if self.spec else ""
        return f"{self.severity}: {loc + ': ' if loc else ''}{self.message}{code}{ref}"
