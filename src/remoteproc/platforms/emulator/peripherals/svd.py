"""CMSIS-SVD import: register names and reset values from a vendor's System View Description.

Owns ``load_svd`` (one parsed file per path, cached), ``svd_names`` (a peripheral's registers as
``RegisterNames``) and the ``svd`` model (``SvdPeripheral``): a peripheral known only from its SVD.

Parser: ``cmsis-svd`` from PyPI (the maintained successor of the parser in the CMSIS-SVD
data repository; it resolves ``derivedFrom``, ``dim`` arrays and clusters, and validates against
the schema). See docs/virtual-soc.md "CMSIS-SVD".

Rules:
- Every access to an ``svd`` peripheral is unmodelled: the machine's policy reports it once per
  register by its SVD name (``USART3.ISR``); a read returns the register's SVD reset value, a
  write is dropped. Give the peripheral a coded or register-file model to make it behave.
- Any other model may name an SVD too (``svd = ...``): its unknown accesses are then reported by
  register name.
- A bad path, a file that does not parse or a peripheral the file does not have is a
  ``ValueError`` naming it; the machine parser adds file, line and field.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    RegisterNames,
    register_model,
)

__all__ = ["SvdPeripheral", "load_svd", "svd_names"]

_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


def load_svd(path: str) -> Any:
    """The parsed ``SVDDevice`` of ``path`` (cached; parsing a full SoC file takes a while)."""
    key = str(Path(path).resolve())
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    if not Path(key).is_file():
        raise ValueError(f"SVD file {path} not found")
    try:
        from cmsis_svd.parser import SVDParser

        device = SVDParser.for_xml_file(key).get_device(xml_validation=False)
    except Exception as exc:  # the parser raises many kinds; all mean "not a usable SVD"
        raise ValueError(f"SVD file {path} does not parse: {exc}") from None
    with _cache_lock:
        _cache[key] = device
    return device


def _walk(regs: Any, base: int, prefix: str, out: RegisterNames) -> None:
    for reg in regs or []:
        sub = getattr(reg, "registers", None)
        off = base + int(getattr(reg, "address_offset", 0) or 0)
        if sub is not None and not hasattr(reg, "reset_value"):  # a cluster
            _walk(sub, off, f"{prefix}{reg.name}.", out)
            continue
        out.names[off] = f"{prefix}{reg.name}"
        rv = getattr(reg, "reset_value", None)
        if rv is not None:
            out.resets[off] = int(rv) & 0xFFFF_FFFF


def svd_names(path: str, peripheral: str) -> RegisterNames:
    device = load_svd(path)
    for p in device.peripherals or []:
        if p.name == peripheral:
            out = RegisterNames(peripheral)
            _walk(p.registers, 0, "", out)
            return out
    raise ValueError(f"SVD file {path} has no peripheral {peripheral!r}")


@register_model("svd")
class SvdPeripheral(Peripheral):
    """Registers known from the SVD only: every access reported, reads give the reset value."""

    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        if spec.svd is None:
            raise ValueError("model 'svd' needs svd = PATH")
        self.names = svd_names(spec.svd, spec.svd_peripheral or spec.name)
