"""CPU cores of the emulated machines: the common runner (``cpu``: one unicorn instance on its
own thread, faults, stops, exactly-once MMIO) and one module per architecture with its exception
and interrupt model (``cortexm``, ``riscv``). A new architecture gets a module here.
"""
