"""One core's device bus: the peripherals of its machine, where each one sits, and what happens
to an access no model implements.

Owns ``DeviceBus``: what ``cores/cpu.py`` maps (``windows()``) and calls (``read``, ``write``,
``read_changes_state``, ``lines``, ``reset``, ``quiesce``, ``sink``), and ``UnknownAccess``.

Rules:
- Windows are whole 4 KiB pages (unicorn maps pages): every page a peripheral touches, plus,
  under the ``log`` policy, the machine's ``peripheral_space`` ranges (so firmware touching a
  block nobody declared is reported, not crashed), minus the core's memory.
- Unknown accesses (an address no peripheral covers, or an offset its model does not implement)
  follow the policy: ``log`` reports each distinct register once, with the pc and the firmware
  function (``describe_pc``), reads return the register's reset value (its SVD reset value when
  the peripheral names an SVD, else 0), writes are dropped; ``strict`` raises ``MmioFault``, which
  the core turns into an ``mmufault`` crash report (today's behaviour for unmapped addresses).
- The bus has no lock of its own for the maps (built before the core starts, read-only after);
  the unknown-access record has a small lock. Models keep their own locks.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remoteproc.platforms.emulator.peripherals.base import MmioFault, Peripheral

__all__ = ["PAGE", "DeviceBus", "UnknownAccess"]

log = logging.getLogger("remoteproc.emulator")

PAGE = 0x1000
POLICIES = ("log", "strict")


@dataclass(frozen=True)
class UnknownAccess:
    what: str  # "USART3.ISR", "RCC+0x9a0", "0x58000000"
    address: int
    is_write: bool
    value: int
    pc: int
    where: str  # the firmware function at pc, or the pc in hex

    def __str__(self) -> str:
        op = f"write {self.value:#x} to" if self.is_write else "read of"
        return f"unmodelled {op} {self.what} ({self.address:#010x}) at pc {self.pc:#x} in " \
               f"{self.where}"


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]
              ) -> list[tuple[int, int]]:
    out = ranges
    for hs, he in holes:
        nxt: list[tuple[int, int]] = []
        for s, e in out:
            if he <= s or e <= hs:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return out


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class DeviceBus:
    """The peripherals one core sees, by address."""

    def __init__(self, core_name: str, *, policy: str = "log",
                 space: tuple[tuple[int, int], ...] = (),
                 exclude: tuple[tuple[int, int], ...] = ()) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown access policy {policy!r}")
        self.core_name = core_name
        self.policy = policy
        self.space = space
        self.exclude = exclude
        self.peripherals: list[Peripheral] = []
        self._bases: list[int] = []
        self._with_lines: list[Peripheral] = []  # models that can assert a line at all
        self._sink: Any = None
        self.pc_reader: Callable[[], int] | None = None
        self.describe_pc: Callable[[int], str] | None = None
        self.svd_lookup: Callable[[int], tuple[str, int] | None] | None = None
        self._unknown_lock = threading.Lock()
        self._seen: set[tuple[str, bool]] = set()
        self.unknown_log: list[UnknownAccess] = []

    # ---- building --------------------------------------------------------------------------

    def add(self, p: Peripheral) -> None:
        i = bisect.bisect(self._bases, p.base)
        self._bases.insert(i, p.base)
        self.peripherals.insert(i, p)
        # The core asks for the lines at every stop: skip models that have none.
        if type(p).lines is not Peripheral.lines:
            self._with_lines.append(p)

    def find(self, name: str) -> Peripheral | None:
        for p in self.peripherals:
            if p.name == name:
                return p
        return None

    def by_model(self, model: str) -> list[Peripheral]:
        return [p for p in self.peripherals if p.model == model]

    def windows(self) -> list[tuple[int, int]]:
        """(base, size) page-aligned windows to map as MMIO, non-overlapping, sorted."""
        ranges = [(p.base & ~(PAGE - 1), (p.base + p.size + PAGE - 1) & ~(PAGE - 1))
                  for p in self.peripherals]
        if self.policy == "log":
            ranges += [(b, b + s) for b, s in self.space]
        holes = [(b, b + s) for b, s in self.exclude]
        merged = _subtract(_merge(ranges), holes)
        return [(s, e - s) for s, e in merged if e > s]

    @property
    def sink(self) -> Any:
        return self._sink

    @sink.setter
    def sink(self, sink: Any) -> None:
        self._sink = sink
        for p in self.peripherals:
            set_sink = getattr(p, "set_sink", None)
            if set_sink is not None:
                set_sink(sink)

    # ---- the core's calls -------------------------------------------------------------------

    def _at(self, addr: int) -> Peripheral | None:
        i = bisect.bisect(self._bases, addr) - 1
        if i >= 0:
            p = self.peripherals[i]
            if addr < p.base + p.size:
                return p
        return None

    def read(self, addr: int, size: int = 4) -> int:
        p = self._at(addr)
        if p is None:
            return self.unknown(None, addr, size, False, 0)
        return p.read(addr - p.base, size)

    def write(self, addr: int, value: int, size: int = 4) -> None:
        p = self._at(addr)
        if p is None:
            self.unknown(None, addr, size, True, value)
            return
        p.write(addr - p.base, value, size)

    def read_changes_state(self, addr: int, value: int) -> bool:
        p = self._at(addr)
        return p is not None and p.read_changes_state(addr - p.base, value)

    def lines(self) -> int:
        lines = 0
        for p in self._with_lines:
            lines |= p.lines()
        return lines

    def reset(self, *, clear_rsc: bool = False) -> None:
        for p in self.peripherals:
            p.reset(clear_retained=clear_rsc)

    def quiesce(self) -> None:
        for p in self.peripherals:
            p.quiesce()

    def irq_changed(self) -> None:
        sink = self._sink
        if sink is not None:
            sink.irq_changed()

    def console_line(self, text: str) -> None:
        sink = self._sink
        if sink is not None:
            sink.console_line(text)

    # ---- unknown accesses -------------------------------------------------------------------

    def unknown(self, p: Peripheral | None, offset: int, size: int, is_write: bool,
                value: int) -> int:
        """An access no model implements; ``offset`` is relative to ``p`` (absolute if None)."""
        if p is not None:
            addr = p.base + offset
            what = p.names.name(offset)
            reset = p.names.reset(offset)
        else:
            addr = offset
            what, reset = f"{addr:#010x}", 0
            if self.svd_lookup is not None:
                found = self.svd_lookup(addr)
                if found is not None:
                    what, reset = found
        if self.policy == "strict":
            raise MmioFault(addr, is_write, what)
        key = (what, is_write)
        with self._unknown_lock:
            new = key not in self._seen
            if new:
                self._seen.add(key)
        if new:
            pc = 0
            if self.pc_reader is not None:
                try:
                    pc = self.pc_reader()
                except Exception:  # a report must not fail because the pc is unreadable
                    pc = 0
            where = self.describe_pc(pc) if self.describe_pc is not None else f"{pc:#x}"
            rec = UnknownAccess(what, addr, is_write, value, pc, where)
            with self._unknown_lock:
                self.unknown_log.append(rec)
            log.warning("%s: %s", self.core_name, rec)
        if is_write:
            return 0
        if size < 4:
            return (reset >> (8 * (addr & 3))) & ((1 << (8 * size)) - 1)
        return reset

    def forget_unknown(self) -> None:
        """A new firmware run: report each register once again."""
        with self._unknown_lock:
            self._seen.clear()
            self.unknown_log.clear()
