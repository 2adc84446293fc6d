"""Fast register access to a unicorn CPU: ``RegAccess``.

Owns the calls that read and write a core's registers on the hot paths (exception entry and
return, the pc after every run, the mask registers at every interrupt decision).

Why not ``Uc.reg_read``/``reg_write``: unicorn 2.1.4's Python binding spends most of each call
in Python (it picks a ctypes class for the register through a generator, builds a fresh value
object and a ``byref`` per call), and its ``reg_read_batch`` builds its arrays on every call,
which made it slower still. Every one of those calls is also a ctypes call that gives up the
GIL, a point where another thread can take the interpreter for up to its switch interval. A
Cortex-M exception entry and return made ~50 such calls per rpmsg echo. Here the C functions
are called directly with ctypes arrays made once per register list, so a batch of registers
costs one foreign call and a write of a pc or a mask costs one call with a buffer made once.

Values are masked to the core's register width (``bits``: 32 for Cortex-M core, special and
single-precision FP registers and RV32, 64 for RV64); the C side writes at most 8 bytes into
each value slot. If the binding's internals are not
what this module expects (another unicorn version), ``RegAccess`` falls back to the binding's
own calls, with the same results.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["RegAccess"]

def _uclib() -> Any:
    try:
        from unicorn.unicorn_py3 import unicorn as binding
    except ImportError:  # pragma: no cover - another binding layout
        return None
    return getattr(binding, "uclib", None)


class _Batch:
    """ctypes arrays for one register list: ids, value slots, and pointers to the slots."""

    __slots__ = ("ids", "n", "ptrs", "vals")

    def __init__(self, n: int) -> None:
        self.n = n
        self.ids = (ctypes.c_int * n)()
        # 64-bit slots: as wide as any register read or written here (little-endian host:
        # a 32-bit register uses the low half).
        self.vals = (ctypes.c_uint64 * n)()
        self.ptrs = (ctypes.c_void_p * n)(
            *(ctypes.addressof(self.vals) + 8 * i for i in range(n)))


class RegAccess:
    """Register reads and writes of one ``Uc`` through unicorn's C API."""

    MAX_WRITES = 64

    def __init__(self, uc: Any, bits: int = 32) -> None:
        self.uc = uc
        self.mask = (1 << bits) - 1
        lib = _uclib()
        uch = getattr(uc, "_uch", None)
        self.fast = lib is not None and uch is not None and hasattr(lib, "uc_reg_read_batch")
        if not self.fast:
            return
        self._uch = uch
        self._read_batch = lib.uc_reg_read_batch
        self._write_batch = lib.uc_reg_write_batch
        self._read1 = lib.uc_reg_read
        self._write1 = lib.uc_reg_write
        self._one = ctypes.c_uint64()
        self._one_ref = ctypes.byref(self._one)
        self._reads: dict[tuple[int, ...], _Batch] = {}
        self._w = _Batch(self.MAX_WRITES)
        # The buffers are reused: a thread other than the core's (a crash report, a borrower
        # running the core inline) must not refill them while a call is using them.
        self._lock = threading.Lock()

    @staticmethod
    def _error(status: int) -> Exception:
        import unicorn

        error: type[Exception] = getattr(unicorn, "UcError")  # noqa: B009 - untyped
        return error(status)

    def read(self, reg: int) -> int:
        """One register."""
        if not self.fast:
            return int(self.uc.reg_read(reg)) & self.mask
        with self._lock:
            self._one.value = 0
            status = self._read1(self._uch, reg, self._one_ref)
            value = self._one.value
        if status:
            raise self._error(status)
        return value & self.mask

    def reads(self, regs: tuple[int, ...]) -> tuple[int, ...]:
        """Several registers in one call, in order."""
        if not self.fast:
            return tuple(int(self.uc.reg_read(r)) & self.mask for r in regs)
        mask = self.mask
        with self._lock:
            b = self._reads.get(regs)
            if b is None:
                b = _Batch(len(regs))
                for i, r in enumerate(regs):
                    b.ids[i] = r
                self._reads[regs] = b
            status = self._read_batch(self._uch, b.ids, b.ptrs, b.n)
            values = tuple(v & mask for v in b.vals)
        if status:
            raise self._error(status)
        return values

    def write(self, reg: int, value: int) -> None:
        """One register."""
        if not self.fast:
            self.uc.reg_write(reg, value & self.mask)
            return
        with self._lock:
            self._one.value = value & self.mask
            status = self._write1(self._uch, reg, self._one_ref)
        if status:
            raise self._error(status)

    def writes(self, writes: Iterable[tuple[int, int]]) -> None:
        """Several registers, in the given order (order matters: mode switches), one call per
        ``MAX_WRITES``."""
        if not self.fast:
            for reg, value in writes:
                self.uc.reg_write(reg, value & self.mask)
            return
        w = self._w
        ids, vals, mask = w.ids, w.vals, self.mask
        n = 0
        with self._lock:
            for reg, value in writes:
                if n == self.MAX_WRITES:
                    self._flush(n)
                    n = 0
                ids[n] = reg
                vals[n] = value & mask
                n += 1
            if n:
                self._flush(n)

    def _flush(self, n: int) -> None:
        status = self._write_batch(self._uch, self._w.ids, self._w.ptrs, n)
        if status:
            raise self._error(status)
