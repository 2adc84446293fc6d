"""The ``vsoc`` model: the default machine's device block (mailbox, console, timer, watchdog,
system control; vsoc.py) as an ordinary peripheral of a machine file.

Owns ``VsocBlock``: a ``Peripheral`` around one ``CoreIo``. Every offset of the block is
handled by ``CoreIo`` exactly as before (unused offsets read 0 and ignore writes), so no access
to it is ever "unknown".
"""

from __future__ import annotations

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    register_model,
)
from remoteproc.platforms.emulator.peripherals.vsoc import CoreIo, IoSink

__all__ = ["VsocBlock"]


@register_model("vsoc")
class VsocBlock(Peripheral):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self.io = CoreIo(ctx.core_index, ctx.scheduler)

    def set_sink(self, sink: IoSink | None) -> None:
        self.io.sink = sink

    def read(self, offset: int, size: int) -> int:
        return self.io.read(offset)

    def write(self, offset: int, value: int, size: int) -> None:
        self.io.write(offset, value, size)

    def read_changes_state(self, offset: int, value: int) -> bool:
        return CoreIo.read_changes_state(offset, value)

    def lines(self) -> int:
        return self.io.lines()

    def reset(self, *, clear_retained: bool = False) -> None:
        self.io.reset(clear_rsc=clear_retained)

    def quiesce(self) -> None:
        self.io.quiesce()
