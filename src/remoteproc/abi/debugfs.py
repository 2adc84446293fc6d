"""debugfs for remote processors (spec §2.2, ``remoteproc_debugfs.c``).

Owns ``rproc_debug_dir``: ``<debugfs>/remoteproc/remoteprocN/{name, recovery, crash, coredump,
resource_table, carveout_memories, traceN}`` and ``vrings`` and ``power`` (ours, not
the kernel's: the state of each virtqueue, so a ring the remote broke is visible; the power
refcount, so a stop that only decrements it is explained).

Rules:
- Formats are the kernel's, byte for byte; ``%pK`` pointers print as zeros (we never expose a
  host address) and ``%pad`` as a 0x-prefixed 16-digit DMA address.
- ``recovery`` (count 1..10) and ``coredump`` (count 1..20) writes: a trailing newline becomes a
  NUL, then words are matched with ``strncmp(buf, word, count)``, so any prefix of a word is
  that word (first match in the kernel's order) and a prefix followed by a newline is not.
- ``crash`` parses with ``kstrtouint`` (EINVAL / ERANGE) and reports that crash type; it has no
  read (EINVAL). Files are not mode-checked at open (root passes debugfs permissions).
- ``traceN`` files follow the processor's trace list (created while resources are handled,
  gone after cleanup) and read live device memory up to the first NUL.
- Only the core's public methods and attributes are used.
"""

from __future__ import annotations

import errno
import logging

from remoteproc.abi.kstr import kstrtouint, strncmp_eq
from remoteproc.abi.node import Attribute, Dir, Node, Request
from remoteproc.core.coredump import DumpConf
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.firmware.rsc_table import format_resource_table

__all__ = ["format_carveouts", "format_vrings", "rproc_debug_dir"]

log = logging.getLogger("remoteproc.abi")

_PK = "0000000000000000"


def format_carveouts(rproc: Rproc) -> str:
    out: list[str] = []
    for mem in list(rproc.carveouts):
        out.append(
            "Carveout memory entry:\n"
            f"\tName: {mem.name}\n"
            f"\tVirtual address: {_PK}\n"
            f"\tDMA address: 0x{mem.dma:016x}\n"
            f"\tDevice address: 0x{mem.da & 0xFFFFFFFF:x}\n"
            f"\tLength: 0x{mem.len:x} Bytes\n\n"
        )
    return "".join(out)


def format_vrings(rproc: Rproc) -> str:
    """Not a kernel file: one line per virtqueue of the processor's virtio devices, ``ok`` or
    ``broken`` with the reason (the kernel's BAD_RING only logs; here a dead channel shows)."""
    out: list[str] = []
    for rvdev in list(rproc.rvdevs):
        for rvring in list(rvdev.vrings):
            vq = rvring.vq
            head = f"{rvdev.name} vring{rvring.index}: num {rvring.num} notifyid {rvring.notifyid}"
            if vq is None:
                out.append(f"{head}: not in use\n")
            elif vq.broken:
                why = vq.last_error.message if vq.last_error is not None else "broken"
                out.append(f"{head}: broken: {why} (errors {vq.errors})\n")
            else:
                out.append(f"{head}: ok (errors {vq.errors})\n")
    return "".join(out)


def _counted(data: bytes, limit: int) -> bytes:
    """The kernel's ``buf[count]`` copy: count 1..limit, a final newline turned into NUL."""
    if not 1 <= len(data) <= limit:
        raise RprocError(errno.EINVAL, f"write of {len(data)} bytes (1..{limit} accepted)")
    buf = bytearray(data)
    if buf[-1:] == b"\n":
        buf[-1] = 0
    return bytes(buf)


def rproc_debug_dir(rproc: Rproc) -> Dir:
    def name_show() -> bytes:
        return f"{rproc.name[:98]}\n".encode()

    def recovery_show() -> bytes:
        return b"disabled\n" if rproc.recovery_disabled else b"enabled\n"

    def recovery_store(data: bytes, req: Request) -> int:
        buf = _counted(data, 10)
        count = len(data)
        recover = True
        if strncmp_eq(buf, "enabled", count):
            rproc.recovery_disabled = False
        elif strncmp_eq(buf, "disabled", count):
            rproc.recovery_disabled = True
            recover = False
        elif not strncmp_eq(buf, "recover", count):
            raise RprocError(errno.EINVAL, "invalid recovery option")
        if recover:
            try:
                rproc.trigger_recovery(cancel=req.cancel)
            except RprocError as exc:
                log.info("%s: recovery: %s", rproc.dev_name, exc)  # result ignored
        return count

    def crash_store(data: bytes, req: Request) -> int:
        crash_type = kstrtouint(data)
        rproc.report_crash(crash_type)
        return len(data)

    def coredump_show() -> bytes:
        return f"{rproc.dump_conf.value}\n".encode()

    def coredump_store(data: bytes, req: Request) -> int:
        buf = _counted(data, 20)
        count = len(data)
        if rproc.state is State.CRASHED:
            log.error("%s: can't change coredump configuration", rproc.dev_name)
            raise RprocError(errno.EBUSY, "can't change coredump configuration")
        for conf in (DumpConf.DISABLED, DumpConf.ENABLED, DumpConf.INLINE):
            if strncmp_eq(buf, conf.value, count):
                rproc.set_coredump(conf, cancel=req.cancel)
                return count
        log.error("%s: Invalid coredump configuration", rproc.dev_name)
        raise RprocError(errno.EINVAL, "Invalid coredump configuration")

    def resource_table_show() -> bytes:
        return format_resource_table(rproc.table_ptr, rproc.byteorder).encode()

    def carveouts_show() -> bytes:
        return format_carveouts(rproc).encode()

    def power_show() -> bytes:
        return f"{rproc.power}\n".encode()

    def vrings_show() -> bytes:
        return format_vrings(rproc).encode()

    fixed: dict[str, Node] = {
        "name": Attribute(0o400, name_show, None),
        "recovery": Attribute(0o600, recovery_show, recovery_store),
        "crash": Attribute(0o200, None, crash_store),
        "coredump": Attribute(0o600, coredump_show, coredump_store),
        "resource_table": Attribute(0o400, resource_table_show, None),
        "carveout_memories": Attribute(0o400, carveouts_show, None),
        "vrings": Attribute(0o400, vrings_show, None),
        "power": Attribute(0o400, power_show, None),
    }

    def entries() -> dict[str, Node]:
        out = dict(fixed)
        for trace in list(rproc.traces):
            out[trace.name] = Attribute(0o400, trace.read, None)
        return out

    return Dir(entries)
