"""The default virtual SoC's host side: the mailbox FIFO and control channel, and the sysctl
RSC_TABLE_* registers (docs/virtual-soc.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from remoteproc.platforms.emulator.machines.host import HostDriver
from remoteproc.platforms.emulator.peripherals.vsoc import CoreIo

if TYPE_CHECKING:
    from remoteproc.platforms.emulator.platform import EmulatedProcessor

__all__ = ["VsocHost"]

log = logging.getLogger("remoteproc.emulator")


class VsocHost(HostDriver):
    def __init__(self, proc: EmulatedProcessor) -> None:
        super().__init__(proc)
        from remoteproc.platforms.emulator.peripherals.vsoc_model import VsocBlock

        blocks = [p for p in self.bus.peripherals if isinstance(p, VsocBlock)]
        self.io: CoreIo | None = blocks[0].io if blocks else None

    def console(self) -> list[str]:
        if self.io is None:
            return []
        with self.io.lock:
            return list(self.io.console)

    def kick(self, notifyid: int) -> bool:
        return self.io is not None and self.io.host_kick(notifyid)

    def host_ctrl(self, word: int) -> None:
        if self.io is not None:
            self.io.host_ctrl(word)

    def published_rsc_table(self) -> tuple[int, int]:
        if self.io is None:
            return 0, 0
        with self.io.lock:
            return self.io.rsc_table_da, self.io.rsc_table_size
