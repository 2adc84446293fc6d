"""The peripheral models a machine file can name: every built-in family, registered by name.

Owns ``model_class``, ``model_names`` and ``create``. Importing this module imports each family
module (one per model family), and each registers its models with ``base.register_model`` as it
is imported; ``base`` itself knows no family, so the families import it one way.
"""

from __future__ import annotations

from remoteproc.platforms.emulator.peripherals import (  # noqa: F401 (they register on import)
    regfile,
    stm32_gpio,
    stm32_hsem,
    stm32_ipcc,
    stm32_rcc,
    stm32_usart,
    svd,
    vsoc_model,
)
from remoteproc.platforms.emulator.peripherals.base import (
    Context,
    Peripheral,
    PeripheralSpec,
    registered_model,
    registered_names,
)

__all__ = ["create", "model_class", "model_names"]


def model_names() -> list[str]:
    return registered_names()


def model_class(name: str) -> type[Peripheral] | None:
    return registered_model(name)


def create(spec: PeripheralSpec, ctx: Context) -> Peripheral:
    cls = model_class(spec.model)
    if cls is None:
        raise ValueError(f"unknown model {spec.model!r}")
    return cls(spec, ctx)
