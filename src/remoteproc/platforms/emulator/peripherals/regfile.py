"""The register-file model: a peripheral described in data, no code.

Owns ``RegisterFile`` (``model = "regfile"``) and ``RegisterDef``; ``SvdRegisters`` in svd.py
builds on it.

A machine file describes each register::

    [[peripheral]]
    name = "PWR"
    base = 0x50001000
    size = 0x400
    model = "regfile"
    params.registers = [
      { name = "CR2", offset = 0x08, reset = 0x0, set = 0x30000 },  # BRRDY, RRRDY read as 1
      { name = "CSR1", offset = 0x04, ro = 0xFFFFFFFF },
    ]

Rules:
- ``reset``: the value after reset. ``ro``: bits writes do not change. ``w1c``: bits a write of 1
  clears (0 leaves them). ``set``: bits that always read as 1 (the "ready" flags firmware
  polls). A register is 32 bits; byte and halfword accesses read or merge into it.
- An offset no register describes is an unknown access (the machine's policy, bus.py).
- State lives in one dict under the model's lock; no side effects beyond the stored value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    register_model,
)

__all__ = ["RegisterDef", "RegisterFile", "parse_registers"]

_MASK32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class RegisterDef:
    name: str
    offset: int
    reset: int = 0
    ro: int = 0
    w1c: int = 0
    set: int = 0


def _u32(entry: dict[str, Any], key: str, where: str, default: int = 0) -> int:
    v = entry.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MASK32:
        raise ValueError(f"{where}.{key}: expected a 32-bit unsigned integer, not {v!r}")
    return v


def parse_registers(raw: Any, size: int, where: str = "params.registers") -> list[RegisterDef]:
    """Validate ``params.registers``; ``ValueError`` names the entry and the field."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected an array of tables")
    out: list[RegisterDef] = []
    seen: dict[int, str] = {}
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: expected a table")
        for key in entry:
            if key not in ("name", "offset", "reset", "ro", "w1c", "set"):
                raise ValueError(f"{at}.{key}: unknown field (expected name, offset, reset, ro, "
                                 "w1c, set)")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{at}.name: expected a non-empty string")
        offset = _u32(entry, "offset", at, -1) if "offset" in entry else -1
        if offset < 0:
            raise ValueError(f"{at}.offset: missing")
        if offset % 4 or offset + 4 > size:
            raise ValueError(f"{at}.offset: {offset:#x} is not a word inside the "
                             f"{size:#x}-byte window")
        if offset in seen:
            raise ValueError(f"{at}.offset: {offset:#x} is also register {seen[offset]!r}")
        seen[offset] = name
        out.append(RegisterDef(name, offset, _u32(entry, "reset", at), _u32(entry, "ro", at),
                               _u32(entry, "w1c", at), _u32(entry, "set", at)))
    return out


def merge(old: int, value: int, offset: int, size: int) -> int:
    """A ``size``-byte store of ``value`` at byte ``offset`` into the 32-bit word ``old``."""
    if size >= 4:
        return value & _MASK32
    shift = 8 * (offset & 3)
    mask = ((1 << (8 * size)) - 1) << shift
    return (old & ~mask) | ((value << shift) & mask)


def extract(word: int, offset: int, size: int) -> int:
    if size >= 4:
        return word & _MASK32
    return (word >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)


@register_model("regfile")
class RegisterFile(Peripheral):
    """Registers with reset values, read-only, write-1-to-clear and read-as-set bits."""

    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self._lock = threading.Lock()
        self.defs: dict[int, RegisterDef] = {
            r.offset: r for r in parse_registers(spec.params.get("registers", []), spec.size)}
        for r in self.defs.values():
            self.names.names[r.offset] = r.name
            self.names.resets[r.offset] = r.reset
        self.values: dict[int, int] = {}
        self.reset(clear_retained=True)

    @classmethod
    def param_names(cls) -> set[str]:
        return {"registers"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        parse_registers(params.get("registers", []), size)

    def reset(self, *, clear_retained: bool = False) -> None:
        with self._lock:
            self.values = {off: r.reset for off, r in self.defs.items()}

    def read(self, offset: int, size: int) -> int:
        reg = self.defs.get(offset & ~3)
        if reg is None:
            return super().read(offset, size)
        with self._lock:
            word = self.values[reg.offset] | reg.set
        return extract(word, offset, size)

    def write(self, offset: int, value: int, size: int) -> None:
        reg = self.defs.get(offset & ~3)
        if reg is None:
            super().write(offset, value, size)
            return
        with self._lock:
            old = self.values[reg.offset]
            new = merge(old, value, offset, size)
            cleared = new & reg.w1c  # ones written to W1C bits clear them
            if size < 4:  # bytes not written are not "written with 1"
                cleared &= ((1 << (8 * size)) - 1) << (8 * (offset & 3))
            keep = reg.ro | reg.w1c
            self.values[reg.offset] = ((old & keep) | (new & ~keep)) & ~cleared & _MASK32

    def poke(self, offset: int, value: int) -> None:
        """Host or device side: set a register's stored value, ignoring its write rules."""
        with self._lock:
            if offset in self.values:
                self.values[offset] = value & _MASK32

    def peek(self, offset: int) -> int:
        reg = self.defs.get(offset)
        with self._lock:
            return (self.values.get(offset, 0) | (reg.set if reg else 0)) & _MASK32
