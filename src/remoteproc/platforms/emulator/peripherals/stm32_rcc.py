"""STM32 RCC (reset and clock control): a register file with set/clear register pairs, ready
flags that read as set, and the coprocessor's hold-boot and reset bits the host driver uses.

Owns ``Rcc`` (``model = "stm32-rcc"``), a ``RegisterFile`` with one more param:
``pairs = [[SET, CLR], ...]``: writing 1s to ``SET`` sets bits of one state word, writing 1s to
``CLR`` clears them, and both read the state (RCC_MC_AHB3ENSETR / RCC_MC_AHB3ENCLRR, the
RSTSETR / RSTCLRR registers...). Ready flags (PLLxRDY, HSIRDY, MCUDIVRDY...) are register-file
``set`` bits; the machine file lists them (machines/stm32mp157.toml).

The host side: ``host_write(offset, value)`` / ``peek`` (stm32_rproc's hold boot through
``RCC_MP_GCR.BOOT_MCU`` and the MCU reset through ``RCC_MP_GRSTCSETR.MCURST``).
"""

from __future__ import annotations

from typing import Any

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    PeripheralSpec,
    register_model,
)
from remoteproc.platforms.emulator.peripherals.regfile import RegisterFile, extract

__all__ = ["Rcc"]


def _pairs(raw: Any, size: int) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise ValueError("params.pairs: expected an array of [SET, CLR] offsets")
    out = []
    for i, pair in enumerate(raw):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < size
                           and x % 4 == 0 for x in pair)):
            raise ValueError(f"params.pairs[{i}]: expected [SET, CLR], two word offsets inside "
                             "the window")
        out.append((pair[0], pair[1]))
    return out


@register_model("stm32-rcc")
class Rcc(RegisterFile):
    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        self.pairs: dict[int, tuple[int, bool]] = {}  # offset -> (state key, is_clear)
        for s, c in _pairs(spec.params.get("pairs", []), spec.size):
            self.pairs[s] = (s, False)
            self.pairs[c] = (s, True)
        super().__init__(spec, ctx)

    @classmethod
    def param_names(cls) -> set[str]:
        return {"registers", "pairs"}

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        super().check_params(params, size)
        _pairs(params.get("pairs", []), size)

    def reset(self, *, clear_retained: bool = False) -> None:
        super().reset(clear_retained=clear_retained)
        with self._lock:
            for key, _ in self.pairs.values():
                self.values.setdefault(key, 0)

    def read(self, offset: int, size: int) -> int:
        pair = self.pairs.get(offset & ~3)
        if pair is None:
            return super().read(offset, size)
        with self._lock:
            return extract(self.values.get(pair[0], 0), offset, size)

    def write(self, offset: int, value: int, size: int) -> None:
        pair = self.pairs.get(offset & ~3)
        if pair is None:
            super().write(offset, value, size)
            return
        bits = value << (8 * (offset & 3)) if size < 4 else value
        with self._lock:
            key, clear = pair
            old = self.values.get(key, 0)
            self.values[key] = (old & ~bits) if clear else (old | bits)

    def host_write(self, offset: int, value: int) -> None:
        self.write(offset, value, 4)
