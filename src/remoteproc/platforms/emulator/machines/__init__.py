"""The bundled machine descriptions (``NAME.toml``, listed by ``rproc machines``) and any per-SoC
glue they need. A new SoC gets its machine file here.
"""
