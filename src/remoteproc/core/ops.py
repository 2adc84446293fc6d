"""The platform-driver interface: the kernel's ``struct rproc_ops`` (spec Appendix A).

Rules:
- A platform fills an ``RprocOps`` table with callables; an op left as ``None`` is absent, exactly
  as a NULL pointer in the kernel, and the core applies the kernel's rule for a missing op
  (``start`` required for OFFLINE, ``attach`` for DETACHED, ``stop`` for shutdown, ``kick`` for
  virtio; ``handle_rsc`` absent means RSC_IGNORED; ``da_to_va`` absent means the carveout walk).
- Ops report failure by raising ``RprocError`` with the kernel's errno; they never return error
  codes (``handle_rsc`` returns RSC_HANDLED / RSC_IGNORED and raises for negative results).
- The core decides when each op runs and holds the processor's lock while it does; an op must not
  call back into the lifecycle methods of the same processor (``report_crash`` and
  ``vq_interrupt`` are the exceptions: they are safe from any thread).
- When ``load`` is ``None`` at registration the core installs the ELF defaults for ``load``,
  ``parse_fw``, ``find_loaded_rsc_table``, ``sanity_check`` and ``get_boot_addr`` (spec §1.10),
  and ``coredump`` defaults to the ELF core writer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remoteproc.core.rproc import Rproc
    from remoteproc.firmware.elf import Firmware

# The core passes its ``Rproc`` instance as the first argument of every op.



@dataclass
class RprocOps:
    """One processor's operations table; every field is optional, as in the kernel."""

    prepare: Callable[[Rproc], None] | None = None
    unprepare: Callable[[Rproc], None] | None = None
    start: Callable[[Rproc], None] | None = None
    stop: Callable[[Rproc], None] | None = None
    attach: Callable[[Rproc], None] | None = None
    detach: Callable[[Rproc], None] | None = None
    kick: Callable[[Rproc, int], None] | None = None
    # (rproc, da, length) -> a writable view of exactly ``length`` bytes, or None if unmapped.
    da_to_va: Callable[[Rproc, int, int], memoryview | None] | None = None
    parse_fw: Callable[[Rproc, Firmware], None] | None = None
    # (rproc, type, body view, offset of body in table, avail) -> RSC_HANDLED / RSC_IGNORED
    handle_rsc: Callable[[Rproc, int, memoryview, int, int], int] | None = None
    find_loaded_rsc_table: Callable[[Rproc, Firmware], memoryview | None] | None = None
    # attach path: the live table in device memory, or None for "no table".
    get_loaded_rsc_table: Callable[[Rproc], memoryview | None] | None = None
    load: Callable[[Rproc, Firmware], None] | None = None
    sanity_check: Callable[[Rproc, Firmware], None] | None = None
    get_boot_addr: Callable[[Rproc, Firmware], int] | None = None
    # returns milliseconds the host should wait before going down
    panic: Callable[[Rproc], int] | None = None
    coredump: Callable[[Rproc], None] | None = None
    # Not in the kernel: a thread about to block for the remote's reply offers to run the
    # remote's pending work itself (an emulated core woken by our kick): one thread hand-off
    # less each way. Called with no lock held; a platform that cannot does nothing.
    poll: Callable[[Rproc], None] | None = None

    def copy(self) -> RprocOps:
        """The core keeps its own copy (the kernel kmemdups the ops)."""
        return replace(self)

    def present(self) -> list[str]:
        """Names of the ops that are set, for diagnostics."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]
