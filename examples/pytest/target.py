"""What the example tests run against: which core, which firmware images.

On the emulated machine (the default) these are the bundled virtual SoC's Cortex-M4 ``m4`` and
the example images shipped with the package. On a board, say which core and which images of
your own build speak the same protocol (see README.md):

    RPROC_EXAMPLE_CORE=m4 RPROC_EXAMPLE_FIRMWARE_DIR=build \\
    RPROC_EXAMPLE_ECHO_FW=app.elf RPROC_EXAMPLE_CRASH_FW=app-crash.elf \\
    pytest --rproc-root / examples/pytest
"""

from __future__ import annotations

import os
from pathlib import Path

import remoteproc

_BUNDLED = Path(remoteproc.__file__).resolve().parent / "data" / "firmware"

CORE = os.environ.get("RPROC_EXAMPLE_CORE", "m4")
FIRMWARE_DIR = Path(os.environ.get("RPROC_EXAMPLE_FIRMWARE_DIR") or _BUNDLED)
# rpmsg echo: announces "rpmsg-raw" and echoes every message
ECHO_FW = FIRMWARE_DIR / os.environ.get("RPROC_EXAMPLE_ECHO_FW", "rpmsg-echo-m4.elf")
# the same plus "crash mmu": replies "crashing: mmu", then reads an unmapped address
CRASH_FW = FIRMWARE_DIR / os.environ.get("RPROC_EXAMPLE_CRASH_FW", "crash-m4.elf")
