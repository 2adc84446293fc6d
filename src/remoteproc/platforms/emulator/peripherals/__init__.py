"""Peripheral models of the emulated machines, one module per model family, registered by the
name a machine file's ``model = "..."`` gives (docs/virtual-soc.md "Describing a new SoC").

``base`` (the model interface, the registry, ``MmioFault``), ``bus`` (one core's device bus and
the ``log`` / ``strict`` policy for unmodelled registers), ``regfile`` (register files described
in data), ``svd`` (CMSIS-SVD import), ``vsoc`` / ``vsoc_model`` (the default machine's device
block), ``stm32_ipcc``, ``stm32_hsem``, ``stm32_rcc``, ``stm32_usart``, ``stm32_gpio``.
"""
