"""The device block of the bundled virtual SoC (docs/virtual-soc.md): the peripheral set of the
``default`` machine.

Owns:
- ``CoreIo``: one core's mailbox, console, timer, watchdog and system control registers, with
  the MMIO read/write entry points the CPU wrappers map at ``0x4000_0000``.

Rules:
- ``CoreIo`` has one leaf lock; it never calls out while holding it. It reports to its
  ``IoSink`` (the core) after releasing the lock: ``irq_changed()`` when a line may have risen,
  ``fatal(code)`` for a FATAL write, ``watchdog_expired()`` from the scheduler thread.
- Host-bound events (``TX_DATA``, ``CTRL_TX``, console lines) go to the sink's
  ``to_host_*`` methods, which post them to the ``Dispatcher``.
- Lines are level-triggered: line 0 while ``RX_COUNT > 0`` (IRQ_ENABLE bit 0) or a control word
  is pending (bit 1); line 1 while the timer's ``STATUS`` bit 0 is set.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Protocol

from remoteproc.platforms.emulator.scheduler import Call, Scheduler

__all__ = [
    "CONSOLE",
    "LINE_MAILBOX",
    "LINE_TIMER",
    "MAILBOX",
    "MIN_TIMER_PERIOD_US",
    "SYSCTL",
    "TIMER",
    "WATCHDOG",
    "CoreIo",
    "IoSink",
]

log = logging.getLogger("remoteproc.emulator")

MAILBOX, CONSOLE, TIMER, WATCHDOG, SYSCTL = 0x0000, 0x1000, 0x2000, 0x3000, 0x4000
LINE_MAILBOX, LINE_TIMER = 1 << 0, 1 << 1
FIFO_DEPTH = 64
EMPTY = 0xFFFF_FFFF
# A period shorter than this would make the scheduler thread, not the firmware, the bottleneck.
MIN_TIMER_PERIOD_US = 100
CONSOLE_KEEP = 200  # lines of console output kept per core for tests and `rproc` tools


class IoSink(Protocol):
    """What a ``CoreIo`` reports to (the core wrapper)."""

    def irq_changed(self) -> None: ...
    def fatal(self, code: int) -> None: ...
    def watchdog_expired(self, timeout_ms: int) -> None: ...
    def to_host_notify(self, notifyid: int) -> None: ...
    def to_host_ctrl(self, word: int) -> None: ...
    def console_line(self, text: str) -> None: ...


class CoreIo:
    """Mailbox, console, timer, watchdog and sysctl of one core."""

    def __init__(self, index: int, scheduler: Scheduler, sink: IoSink | None = None) -> None:
        self.index = index
        self.scheduler = scheduler
        self.sink = sink
        self.lock = threading.Lock()
        # mailbox
        self.fifo: collections.deque[int] = collections.deque()
        self.ctrl_rx = 0
        self.irq_enable = 0
        self.ctrl_tx_log: list[int] = []  # control words the firmware sent
        self.ctrl_rx_log: list[int] = []  # control words the host posted
        # console
        self._line = bytearray()
        self.console: collections.deque[str] = collections.deque(maxlen=CONSOLE_KEEP)
        # timer
        self._t0 = time.monotonic_ns()
        self.period_us = 0
        self.timer_status = 0
        self._tick: Call | None = None
        self._next_tick = 0.0
        # watchdog
        self.wdog_timeout_ms = 0
        self._wdog_kick = 0.0
        self._wdog_check: Call | None = None
        # sysctl (RSC_TABLE_* survive resets: they are the TAMP-like backup registers)
        self.rsc_table_da = 0
        self.rsc_table_size = 0
        self.fatal_code: int | None = None
        # counters, for tests and tools
        self.kicks_to_host = 0

    # ---- state -------------------------------------------------------------------------------

    def lines(self) -> int:
        with self.lock:
            return self._lines()

    def _lines(self) -> int:
        lines = 0
        if (self.fifo and self.irq_enable & 1) or (self.ctrl_rx and self.irq_enable & 2):
            lines |= LINE_MAILBOX
        if self.timer_status & 1:
            lines |= LINE_TIMER
        return lines

    def reset(self, *, clear_rsc: bool = False) -> None:
        """Power-on state for a (re)started core; the backup registers survive unless asked."""
        with self.lock:
            self.fifo.clear()
            self.ctrl_rx = 0
            self.irq_enable = 0
            self._line.clear()
            self._t0 = time.monotonic_ns()
            self.period_us = 0
            self.timer_status = 0
            if self._tick:
                self._tick.cancel()
                self._tick = None
            self.wdog_timeout_ms = 0
            if self._wdog_check:
                self._wdog_check.cancel()
                self._wdog_check = None
            self.fatal_code = None
            if clear_rsc:
                self.rsc_table_da = 0
                self.rsc_table_size = 0

    def quiesce(self) -> None:
        """Stop the timer and the watchdog (a halted or crashed core has no running clocks)."""
        with self.lock:
            if self._tick:
                self._tick.cancel()
                self._tick = None
            if self._wdog_check:
                self._wdog_check.cancel()
                self._wdog_check = None

    def now_us(self) -> int:
        return (time.monotonic_ns() - self._t0) // 1000

    # ---- host side ---------------------------------------------------------------------------

    def host_kick(self, notifyid: int) -> bool:
        """The host kicks ``notifyid``; False when the FIFO is full (the id is dropped)."""
        with self.lock:
            if len(self.fifo) >= FIFO_DEPTH:
                return False
            self.fifo.append(notifyid & 0xFFFF_FFFF)
        self._changed()
        return True

    def host_ctrl(self, word: int) -> None:
        with self.lock:
            self.ctrl_rx = word & 0xFFFF_FFFF
            self.ctrl_rx_log.append(self.ctrl_rx)
        self._changed()

    def _changed(self) -> None:
        if self.sink is not None:
            self.sink.irq_changed()

    # ---- MMIO (called on the core's emulation thread) ----------------------------------------

    @staticmethod
    def read_changes_state(offset: int, value: int) -> bool:
        """Did a read of ``offset`` that returned ``value`` change anything (a FIFO pop, the
        read-to-clear CTRL_RX)? The core must then not let it happen twice (cpu.py)."""
        if offset == MAILBOX + 0x00:
            return value != EMPTY
        if offset == MAILBOX + 0x10:
            return value != 0
        return False

    def read(self, offset: int) -> int:
        block, reg = offset & ~0xFFF, offset & 0xFFF
        with self.lock:
            if block == MAILBOX:
                if reg == 0x00:
                    return self.fifo.popleft() if self.fifo else EMPTY
                if reg == 0x04:
                    return len(self.fifo)
                if reg == 0x0C:
                    return self.irq_enable
                if reg == 0x10:
                    word, self.ctrl_rx = self.ctrl_rx, 0
                    return word
                if reg == 0x14:
                    return (1 if self.fifo else 0) | (2 if self.ctrl_rx else 0)
                return 0
            if block == TIMER:
                if reg in (0x00, 0x04):
                    now = self.now_us()
                    return now & 0xFFFF_FFFF if reg == 0 else (now >> 32) & 0xFFFF_FFFF
                if reg == 0x08:
                    return self.period_us
                if reg == 0x0C:
                    return self.timer_status
                return 0
            if block == WATCHDOG:
                return self.wdog_timeout_ms if reg == 0 else 0
            if block == SYSCTL:
                if reg == 0x04:
                    return self.index
                if reg == 0x08:
                    return self.rsc_table_da
                if reg == 0x0C:
                    return self.rsc_table_size
                if reg == 0x10:
                    return self._lines()
                return 0
            return 0

    def write(self, offset: int, value: int, size: int = 4) -> None:
        block, reg = offset & ~0xFFF, offset & 0xFFF
        changed = False
        notify: int | None = None
        ctrl: int | None = None
        line: str | None = None
        fatal: int | None = None
        with self.lock:
            if block == MAILBOX:
                if reg == 0x08:
                    notify = value
                    self.kicks_to_host += 1
                elif reg == 0x0C:
                    self.irq_enable = value & 3
                    changed = True
                elif reg == 0x18:
                    ctrl = value
                    self.ctrl_tx_log.append(value)
            elif block == CONSOLE:
                if reg == 0x00:
                    ch = value & 0xFF
                    if ch == 0x0A:
                        line = self._line.decode("utf-8", "replace")
                        self._line.clear()
                        self.console.append(line)
                    elif ch != 0x0D and len(self._line) < 4096:
                        self._line.append(ch)
            elif block == TIMER:
                if reg == 0x08:
                    self._set_period(value)
                elif reg == 0x0C and value & 1:
                    self.timer_status &= ~1
            elif block == WATCHDOG:
                if reg == 0x00:
                    self.wdog_timeout_ms = value
                    self._wdog_kick = time.monotonic()
                    if self._wdog_check:
                        self._wdog_check.cancel()
                        self._wdog_check = None
                    if value:
                        self._wdog_check = self.scheduler.call_at(
                            self._wdog_kick + value / 1000, self._wdog_fire)
                elif reg == 0x04:
                    self._wdog_kick = time.monotonic()
            elif block == SYSCTL:
                if reg == 0x00:
                    self.fatal_code = value
                    fatal = value
                elif reg == 0x08:
                    self.rsc_table_da = value
                elif reg == 0x0C:
                    self.rsc_table_size = value
        sink = self.sink
        if sink is None:
            return
        if notify is not None:
            sink.to_host_notify(notify)
        if ctrl is not None:
            sink.to_host_ctrl(ctrl)
        if line is not None:
            sink.console_line(line)
        if fatal is not None:
            sink.fatal(fatal)
        if changed:
            sink.irq_changed()

    # ---- timer and watchdog (scheduler thread) -----------------------------------------------

    def _set_period(self, value: int) -> None:
        # lock held
        self.period_us = value
        if self._tick:
            self._tick.cancel()
            self._tick = None
        if value:
            period = max(value, MIN_TIMER_PERIOD_US) / 1e6
            self._next_tick = time.monotonic() + period
            self._tick = self.scheduler.call_at(self._next_tick, self._timer_fire)

    def _timer_fire(self) -> None:
        with self.lock:
            if not self.period_us or self._tick is None:
                return
            self.timer_status |= 1
            period = max(self.period_us, MIN_TIMER_PERIOD_US) / 1e6
            now = time.monotonic()
            self._next_tick += period
            if self._next_tick < now:  # we fell behind: skip the missed periods, no burst
                self._next_tick = now + period
            self._tick = self.scheduler.call_at(self._next_tick, self._timer_fire)
        self._changed()

    def _wdog_fire(self) -> None:
        with self.lock:
            timeout = self.wdog_timeout_ms
            if not timeout or self._wdog_check is None:
                return
            deadline = self._wdog_kick + timeout / 1000
            if time.monotonic() < deadline:
                self._wdog_check = self.scheduler.call_at(deadline, self._wdog_fire)
                return
            self._wdog_check = None
            self.wdog_timeout_ms = 0
        if self.sink is not None:
            self.sink.watchdog_expired(timeout)
