"""The bundled machine descriptions (``NAME.toml``, listed by ``rproc machines``, named by
``rprocd --machine NAME``) and the host side of each SoC family: ``host`` (the interface;
``platform.py`` picks the class by ``[machine] platform``), ``host_vsoc`` (the default virtual
SoC), ``host_stm32`` (STM32MP1/MP2 as Linux's ``stm32_rproc`` and ``stm32-ipcc``). A new SoC
gets its machine file here, and a host module when its Linux driver does something the
existing ones do not.
"""
