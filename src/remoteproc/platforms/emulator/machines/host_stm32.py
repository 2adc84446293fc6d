"""STM32MP1 / STM32MP2 host side, as Linux's ``drivers/remoteproc/stm32_rproc.c`` and
``drivers/mailbox/stm32-ipcc.c`` do it.

Owns ``Stm32Host``:
- mailboxes: IPCC channel 0 = ``vq0``, 1 = ``vq1`` (vring kicks both ways; notify id == vq id ==
  channel), 2 = ``shutdown`` (sent before the core is stopped; the firmware acknowledges by
  freeing the channel; 500 ms), 3 = ``detach`` (200 ms). A missing acknowledgement is the
  kernel's warning, not an error.
- receive (stm32-ipcc's RX interrupt): acknowledge the channel (C1SCR CHnC), then
  ``vq_interrupt(channel)`` for channels 0 and 1, on the dispatcher thread.
- memory: the processor's ``reserved`` regions (the device tree's ``memory-region``:
  ``vdev0vring0``, ``vdev0vring1``, ``vdev0buffer``...) become carveouts at prepare, their device
  address from the memory map's pa -> da translation (``stm32_rproc_pa_to_da`` over
  ``dma-ranges``), so vrings and rpmsg buffers go exactly where the firmware expects them.
- boot order (rproc_fw_boot): load, resource table, then ``start``: hold boot released through
  ``RCC_MP_GCR.BOOT_MCU`` and set again (stm32_rproc_start); ``stop``: shutdown mailbox, hold
  boot, MCU reset (``RCC_MP_GRSTCSETR.MCURST``), coprocessor state OFF in TAMP.
- attach: the resource table's device address in TAMP_BKP17R (``st,syscfg-rsc-tbl`` =
  <&tamp 0x144>), 1 KiB (RSC_TBL_SIZE).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from remoteproc.core.memory import MemEntry
from remoteproc.core.states import State
from remoteproc.platforms.emulator.machines.host import HostDriver
from remoteproc.platforms.emulator.peripherals.regfile import RegisterFile
from remoteproc.platforms.emulator.peripherals.stm32_ipcc import Ipcc
from remoteproc.platforms.emulator.peripherals.stm32_rcc import Rcc
from remoteproc.platforms.emulator.peripherals.stm32_usart import Usart

if TYPE_CHECKING:
    from remoteproc.core.rproc import Rproc
    from remoteproc.platforms.emulator.platform import EmulatedProcessor

__all__ = ["CH_DETACH", "CH_SHUTDOWN", "CH_VQ0", "CH_VQ1", "RSC_TBL_SIZE", "Stm32Host"]

log = logging.getLogger("remoteproc.emulator")

CH_VQ0, CH_VQ1, CH_SHUTDOWN, CH_DETACH = 0, 1, 2, 3
SHUTDOWN_TIMEOUT_S = 0.5  # stm32_rproc_mbox[].client.tx_tout
DETACH_TIMEOUT_S = 0.2
RSC_TBL_SIZE = 1024
TAMP_RSC_TBL, TAMP_M4_STATE = 0x144, 0x148
M4_STATE_OFF = 0

# (hold-boot register, its BOOT bit; MCU reset register, its bit) in the RCC, per family.
_RCC = {
    "stm32mp1": ((0x10C, 1 << 0), (0x404, 1 << 1)),  # RCC_MP_GCR.BOOT_MCU, MP_GRSTCSETR.MCURST
    # STM32MP2: Linux holds and resets the Cortex-M33 through SCMI (the RCC is the secure
    # world's); the emulated machine has nothing to write.
    "stm32mp2": None,
}


class Stm32Host(HostDriver):
    def __init__(self, proc: EmulatedProcessor, family: str) -> None:
        super().__init__(proc)
        self.family = family
        ipccs = [p for p in self.bus.peripherals if isinstance(p, Ipcc)]
        self.ipcc: Ipcc | None = ipccs[0] if ipccs else None
        rccs = [p for p in self.bus.peripherals if isinstance(p, Rcc)]
        self.rcc: Rcc | None = rccs[0] if rccs else None
        tamp = self.bus.find("TAMP")
        self.tamp = tamp if isinstance(tamp, RegisterFile) else None
        uarts = [p for p in self.bus.peripherals if isinstance(p, Usart) and p.is_console]
        self.uarts = uarts
        self._cv = threading.Condition()
        if self.ipcc is not None:
            self.ipcc.on_host_rx = self._on_rx
            self.ipcc.on_host_tx_free = self._on_tx_free
        self.rx_counts = [0] * 16  # channels the firmware rang, for tests and tools

    # ---- mailbox ----------------------------------------------------------------------------

    def _on_rx(self, ch: int) -> None:  # emulation thread, inside the firmware's SCR write
        self.rx_counts[ch] += 1
        self.proc.platform.dispatcher.post(lambda: self._rx(ch))

    def _rx(self, ch: int) -> None:
        assert self.ipcc is not None
        self.ipcc.host_clear(ch)
        rproc = self.proc.rproc
        if ch in (CH_VQ0, CH_VQ1) and rproc is not None:
            rproc.vq_interrupt(ch)

    def _on_tx_free(self, ch: int) -> None:
        with self._cv:
            self._cv.notify_all()

    def kick(self, notifyid: int) -> bool:
        if self.ipcc is None or notifyid not in (CH_VQ0, CH_VQ1):
            # stm32_rproc_kick: WARN_ON(vqid >= MBOX_NB_VQ)
            log.warning("%s: kick for vq %d: no mailbox for it", self.proc.name, notifyid)
            return True
        self.ipcc.host_set(notifyid)
        return True

    def _send_and_wait(self, ch: int, timeout: float) -> bool:
        if self.ipcc is None:
            return False
        self.ipcc.host_set(ch)
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.ipcc.host_busy(ch):
                left = deadline - time.monotonic()
                if left <= 0 or not self.proc.core.running:
                    return False
                self._cv.wait(left)
        return True

    # ---- lifecycle --------------------------------------------------------------------------

    def _hold_boot(self, hold: bool) -> None:
        regs = _RCC.get(self.family)
        if regs is None or self.rcc is None:
            return
        (gcr, boot), _ = regs
        value = self.rcc.peek(gcr)
        self.rcc.poke(gcr, (value & ~boot) if hold else (value | boot))

    def before_start(self) -> None:
        # stm32_rproc_start: release the hold boot, then hold it again (the core runs).
        self._hold_boot(False)
        self._hold_boot(True)

    def request_stop(self, rproc: Rproc) -> None:
        if rproc.state in (State.OFFLINE, State.CRASHED) or not self.proc.core.running:
            return
        if not self._send_and_wait(CH_SHUTDOWN, SHUTDOWN_TIMEOUT_S):
            log.warning("%s: warning: remote FW shutdown without ack", self.proc.name)

    def after_stop(self) -> None:
        self._hold_boot(True)
        regs = _RCC.get(self.family)
        if regs is not None and self.rcc is not None:
            rst, bit = regs[1]
            self.rcc.host_write(rst, bit)
        if self.tamp is not None:
            self.tamp.poke(TAMP_M4_STATE, M4_STATE_OFF)

    def detach(self) -> None:
        if not self.proc.core.running:
            return
        if not self._send_and_wait(CH_DETACH, DETACH_TIMEOUT_S):
            log.warning("%s: warning: remote FW detach without ack", self.proc.name)
        self._hold_boot(False)  # allow the remote processor to auto-reboot

    def published_rsc_table(self) -> tuple[int, int]:
        if self.tamp is None:
            return 0, 0
        da = self.tamp.peek(TAMP_RSC_TBL)
        return (da, RSC_TBL_SIZE) if da else (0, 0)

    def console(self) -> list[str]:
        out: list[str] = []
        for u in self.uarts:
            out += list(u.console)
        return out

    # ---- memory -----------------------------------------------------------------------------

    def pa_to_da(self, pa: int) -> int | None:
        for m in self.proc.spec.memory:
            if m.bus_addr <= pa < m.bus_addr + m.size:
                return m.da + (pa - m.bus_addr)
        ddr = self.proc.platform.spec
        if ddr.ddr_base <= pa < ddr.ddr_base + ddr.ddr_size:
            return pa
        return None

    def prepare(self, rproc: Rproc) -> None:
        have = {m.name for m in rproc.carveouts}
        for res in self.proc.spec.reserved:
            if res.name in have:
                continue
            da = self.pa_to_da(res.pa)
            view = self.proc.amap.translate(da, res.size) if da is not None else None
            if da is None or view is None:
                log.error("%s: memory region not valid %#x", self.proc.name, res.pa)
                continue
            # The memory they lie in is already in the coredump (platform prepare).
            rproc.add_carveout(MemEntry(name=res.name, da=da, len=res.size, va=view,
                                        dma=res.pa))
