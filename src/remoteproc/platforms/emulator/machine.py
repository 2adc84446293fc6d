"""The machine description: which remote cores a virtual SoC has, and how each one boots.

Owns ``MachineSpec`` / ``CoreSpec`` / ``MemorySpec`` (frozen, validated), ``parse_machine``
(TOML text -> spec) and ``load_machine_spec`` (a file -> spec), plus ``DEFAULT_MACHINE``, the
description that ships with the package.

Format (every number may be written in hex)::

    [machine]
    name = "vsoc"
    model = "..."              # optional, the device model (docs/abi-device-model.md):
    family = "vsoc"            #   /sys/devices/soc0/{machine,family,soc_id,revision}
    soc_id = "vsoc"
    revision = "1.0"
    driver = "vsoc-rproc"      #   the platform driver of every core (e.g. "stm32-rproc")

    [ddr]                      # shared by every core and the host; pa == da
    base = 0x80000000
    size = 0x10000000
    dma_base = 0x88000000      # optional: the host's DMA pool (default: the upper half)
    dma_size = 0x08000000

    [[core]]
    name = "m4"
    cpu = "cortex-m4"          # cortex-m4 (M4F) | cortex-m33 | rv32imac | rv64imac
    clock_hz = 209000000       # optional: the core clock SysTick counts (default: 209 MHz
                               # for cortex-m4, 400 MHz for cortex-m33; one per instruction)
    clock_mode = "instructions"  # optional: SysTick counts emulated instructions (exact), or
                               # "realtime": host time at clock_hz (fast; as QEMU without icount)
    boot = "auto"              # auto (rproc auto-boot) | manual (starts offline) | preloaded
    firmware = "rpmsg-echo-m4.elf"
    recovery = "reload"        # reload | attach (RPROC_FEAT_ATTACH_ON_RECOVERY)
    memory = [ { name = "tcm", da = 0x0, size = 0x80000 },
               { name = "sram", da = 0x20000000, size = 0x40000 } ]
    node = "m4"                # optional: the DT node; the platform device is
    unit_address = 0x10000000  #   "<unit_address>.<node>" under /sys/devices/platform/soc
    compatible = "vsoc,m4"     #   (defaults: the core's name, 0x10000000 + index * 0x100000,
    driver = "..."             #   "vsoc,<cpu>", the machine's driver)

``memory`` is optional (the default is the TCM and SRAM of docs/virtual-soc.md). The mailbox,
console, timer, watchdog and system control windows are at the fixed addresses of that page.

Rules:
- Every error is ``RprocError(EINVAL)`` whose message names the file and the key, e.g.
  ``default.toml: core[1].cpu: unknown cpu 'z80' (expected one of ...)``.
- At most ``MAX_CORES`` (64) processors: the kernel's remoteproc character devices have
  ``NUM_RPROC_DEVICES`` = 64 minors.
- One core's address map has no overlaps: its memory regions (given or default, with distinct
  names), the DDR window, the peripheral block and, on Cortex-M, the SCS.
- Parsing is pure: no emulator, no memory, no threads (the platform builds those).
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remoteproc.errors import RprocError

__all__ = [
    "BOOT_MODES",
    "CPU_TYPES",
    "DEFAULT_MACHINE",
    "MAX_CORES",
    "MMIO_BASE",
    "MMIO_SIZE",
    "CoreSpec",
    "MachineSpec",
    "MemorySpec",
    "load_machine_spec",
    "parse_machine",
]

MACHINES_DIR = Path(__file__).resolve().parent / "machines"
DEFAULT_MACHINE = MACHINES_DIR / "default.toml"

CPU_TYPES = ("cortex-m4", "cortex-m33", "rv32imac", "rv64imac")
BOOT_MODES = ("auto", "manual", "preloaded")
RECOVERY_MODES = ("reload", "attach")
CLOCK_MODES = ("instructions", "realtime")
# The peripheral block (mailbox, console, timer, watchdog, sysctl) and the Cortex-M SCS.
MMIO_BASE = 0x4000_0000
MMIO_SIZE = 0x5000
SCS_BASE = 0xE000_E000
SCS_SIZE = 0x1000
_PAGE = 0x1000
DEFAULT_DRIVER = "vsoc-rproc"
DEFAULT_MODEL = "remoteproc virtual SoC"
_UNIT_BASE = 0x1000_0000  # default unit address of core 0; each next core 1 MiB further
_UNIT_STEP = 0x10_0000
# The kernel's NUM_RPROC_DEVICES: minors of the remoteproc character devices (/dev/remoteprocN).
MAX_CORES = 64


@dataclass(frozen=True)
class MemorySpec:
    name: str
    da: int
    size: int


@dataclass(frozen=True)
class CoreSpec:
    name: str
    cpu: str
    index: int
    boot: str = "manual"
    firmware: str | None = None
    recovery: str = "reload"
    memory: tuple[MemorySpec, ...] = ()
    node: str = ""
    unit_address: int = 0
    compatible: str = ""
    driver: str = DEFAULT_DRIVER

    clock_hz: int | None = None  # the core clock (SysTick); None: the cpu type's default
    clock_mode: str = "instructions"  # SysTick counts instructions, or "realtime" host time

    @property
    def platform_device(self) -> str:
        """The platform device's name: ``of_device_make_bus_id``'s ``"%llx.%pOFn"``."""
        return f"{self.unit_address:x}.{self.node or self.name}"

    @property
    def arch(self) -> str:
        """``"arm"`` or ``"riscv"``: the coredump's register layout."""
        return "arm" if self.cpu.startswith("cortex") else "riscv"

    @property
    def bits(self) -> int:
        return 64 if self.cpu.startswith("rv64") else 32


@dataclass(frozen=True)
class MachineSpec:
    name: str
    ddr_base: int
    ddr_size: int
    dma_base: int
    dma_size: int
    cores: tuple[CoreSpec, ...]
    source: str = "<string>"
    model: str = DEFAULT_MODEL
    family: str = "vsoc"
    soc_id: str = "vsoc"
    revision: str = "1.0"
    driver: str = DEFAULT_DRIVER

    def core(self, name: str) -> CoreSpec:
        for c in self.cores:
            if c.name == name:
                return c
        raise RprocError(errno.ENODEV, f"{self.source}: no core named {name!r}")


DEFAULT_MEMORY = (
    MemorySpec("tcm", 0x0000_0000, 0x8_0000),
    MemorySpec("sram", 0x2000_0000, 0x4_0000),
)


class _Reader:
    """Typed access to one TOML table with error messages naming file and key."""

    def __init__(self, source: str, table: dict[str, Any], where: str) -> None:
        self.source = source
        self.table = table
        self.where = where

    def fail(self, key: str, message: str) -> RprocError:
        path = f"{self.where}.{key}" if self.where else key
        return RprocError(errno.EINVAL, f"{self.source}: {path}: {message}")

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing")
            return None
        return self.table[key]

    def str_(self, key: str, *, default: str | None = None, choices: tuple[str, ...] = ()
             ) -> str | None:
        """An optional string (``default`` when absent), one of ``choices`` if given."""
        v = self._get(key, False)
        if v is None:
            return default
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"expected a non-empty string, not {v!r}")
        if choices and v not in choices:
            raise self.fail(key, f"unknown {key} {v!r} (expected one of {', '.join(choices)})")
        return v

    def req_str(self, key: str, *, choices: tuple[str, ...] = ()) -> str:
        v = self._get(key, True)
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"expected a non-empty string, not {v!r}")
        if choices and v not in choices:
            raise self.fail(key, f"unknown {key} {v!r} (expected one of {', '.join(choices)})")
        return v

    def int_(self, key: str, *, default: int | None = None, page: bool = False) -> int:
        v = self._get(key, default is None)
        if v is None:
            assert default is not None
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 64:
            raise self.fail(key, f"expected an unsigned integer, not {v!r}")
        if page and v % _PAGE:
            raise self.fail(key, f"{v:#x} is not a multiple of 4 KiB")
        return v

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def parse_machine(text: str, source: str = "<string>") -> MachineSpec:
    """Parse and validate a machine description; errors name ``source`` and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RprocError(errno.EINVAL, f"{source}: not valid TOML: {exc}") from exc
    top = _Reader(source, doc, "")
    top.check_keys({"machine", "ddr", "core"})
    mt = doc.get("machine", {})
    if not isinstance(mt, dict):
        raise top.fail("machine", "expected a table")
    m = _Reader(source, mt, "machine")
    m.check_keys({"name", "model", "family", "soc_id", "revision", "driver"})
    name = m.str_("name", default="vsoc") or "vsoc"
    model = m.str_("model", default=DEFAULT_MODEL) or DEFAULT_MODEL
    family = m.str_("family", default="vsoc") or "vsoc"
    soc_id = m.str_("soc_id", default="vsoc") or "vsoc"
    revision = m.str_("revision", default="1.0") or "1.0"
    driver = _sysfs_name(m, "driver", m.str_("driver", default=DEFAULT_DRIVER) or DEFAULT_DRIVER)
    for key, val in (("model", model), ("family", family), ("soc_id", soc_id),
                     ("revision", revision)):
        if "\n" in val or "\0" in val or len(val) > 256:
            raise m.fail(key, "expected one line of at most 256 characters")

    dt = doc.get("ddr", {})
    if not isinstance(dt, dict):
        raise top.fail("ddr", "expected a table")
    d = _Reader(source, dt, "ddr")
    d.check_keys({"base", "size", "dma_base", "dma_size"})
    ddr_base = d.int_("base", default=0x8000_0000, page=True)
    ddr_size = d.int_("size", default=0x1000_0000, page=True)
    if ddr_size == 0:
        raise d.fail("size", "must not be 0")
    if ddr_base + ddr_size > 1 << 32:
        raise d.fail("size", "the DDR window must end below 4 GiB")
    dma_base = d.int_("dma_base", default=ddr_base + ddr_size // 2, page=True)
    dma_size = d.int_("dma_size", default=ddr_base + ddr_size - dma_base, page=True)
    if dma_base < ddr_base or dma_base + dma_size > ddr_base + ddr_size or dma_size == 0:
        raise d.fail("dma_base", "the DMA pool must be a non-empty part of the DDR window")

    if _overlaps((ddr_base, ddr_size), (MMIO_BASE, MMIO_SIZE)):
        raise d.fail("base", f"the DDR window [{ddr_base:#x}, {ddr_base + ddr_size:#x}) "
                     f"overlaps the peripheral block at {MMIO_BASE:#x}")

    cores_raw = doc.get("core", [])
    if not isinstance(cores_raw, list) or not cores_raw:
        raise top.fail("core", "expected at least one [[core]] table")
    if len(cores_raw) > MAX_CORES:
        raise top.fail("core", f"{len(cores_raw)} processors, at most {MAX_CORES} "
                       "(NUM_RPROC_DEVICES: the remoteproc character devices have 64 minors)")
    cores: list[CoreSpec] = []
    seen: set[str] = set()
    for i, ct in enumerate(cores_raw):
        if not isinstance(ct, dict):
            raise top.fail(f"core[{i}]", "expected a table")
        c = _Reader(source, ct, f"core[{i}]")
        c.check_keys({"name", "cpu", "boot", "firmware", "recovery", "memory", "node",
                      "unit_address", "compatible", "driver", "clock_hz", "clock_mode"})
        cname = c.req_str("name")
        if cname in seen:
            raise c.fail("name", f"duplicate core name {cname!r}")
        seen.add(cname)
        cpu = c.req_str("cpu", choices=CPU_TYPES)
        boot = c.str_("boot", choices=BOOT_MODES) or "manual"
        firmware = c.str_("firmware")
        recovery = c.str_("recovery", choices=RECOVERY_MODES) or "reload"
        if boot in ("auto", "preloaded") and firmware is None:
            raise c.fail("firmware", f"boot = {boot!r} needs a firmware image name")
        fixed = [("mmio", MMIO_BASE, MMIO_SIZE), ("ddr", ddr_base, ddr_size)]
        if cpu.startswith("cortex"):
            if _overlaps((ddr_base, ddr_size), (SCS_BASE, SCS_SIZE)):
                raise c.fail("cpu", f"{cpu}'s system control space at {SCS_BASE:#x} is inside "
                             f"the DDR window [{ddr_base:#x}, {ddr_base + ddr_size:#x})")
            fixed.append(("scs", SCS_BASE, SCS_SIZE))
        mem_raw = ct.get("memory")
        mems: list[MemorySpec] = []
        if mem_raw is None:
            for ms in DEFAULT_MEMORY:
                for oname, oda, osize in fixed:
                    if _overlaps((ms.da, ms.size), (oda, osize)):
                        raise c.fail("memory", f"the default region {ms.name!r} at "
                                     f"{ms.da:#x} overlaps {oname}: give the core's memory")
            mems = list(DEFAULT_MEMORY)
        else:
            if not isinstance(mem_raw, list) or not mem_raw:
                raise c.fail("memory", "expected a non-empty array of tables")
            for j, mt_ in enumerate(mem_raw):
                if not isinstance(mt_, dict):
                    raise c.fail(f"memory[{j}]", "expected a table")
                r = _Reader(source, mt_, f"core[{i}].memory[{j}]")
                r.check_keys({"name", "da", "size"})
                ms = MemorySpec(r.req_str("name"), r.int_("da", page=True),
                                r.int_("size", page=True))
                for k, other in enumerate(mems):
                    if other.name == ms.name:
                        raise r.fail("name", f"duplicate region name {ms.name!r} (also "
                                     f"core[{i}].memory[{k}])")
                if ms.size == 0:
                    raise r.fail("size", "must not be 0")
                if ms.da + ms.size > 1 << 32:
                    raise r.fail("size", "the region must end below 4 GiB")
                for oname, oda, osize in [*fixed, *((o.name, o.da, o.size) for o in mems)]:
                    if _overlaps((ms.da, ms.size), (oda, osize)):
                        raise r.fail("da", f"region {ms.name!r} at {ms.da:#x} overlaps {oname}")
                mems.append(ms)
        node = _sysfs_name(c, "node", c.str_("node", default=cname) or cname)
        unit = c.int_("unit_address", default=_UNIT_BASE + i * _UNIT_STEP)
        compatible = c.str_("compatible", default=f"vsoc,{cpu}") or f"vsoc,{cpu}"
        if any(ch.isspace() or ch == "\0" for ch in compatible):
            raise c.fail("compatible", f"{compatible!r} has white space")
        cdriver = _sysfs_name(c, "driver", c.str_("driver", default=driver) or driver)
        clock_hz: int | None = None
        if "clock_hz" in ct:
            clock_hz = c.int_("clock_hz")
            if not 1_000 <= clock_hz <= 10_000_000_000:
                raise c.fail("clock_hz", f"{clock_hz} Hz is not a core clock "
                             "(1 kHz .. 10 GHz)")
        clock_mode = c.str_("clock_mode", choices=CLOCK_MODES) or "instructions"
        core = CoreSpec(cname, cpu, i, boot, firmware, recovery, tuple(mems), node, unit,
                        compatible, cdriver, clock_hz=clock_hz, clock_mode=clock_mode)
        for prev in cores:
            if prev.platform_device == core.platform_device:
                raise c.fail("unit_address", f"platform device {core.platform_device!r} is "
                             f"also core[{prev.index}]'s (give another node or unit_address)")
        cores.append(core)
    return MachineSpec(name, ddr_base, ddr_size, dma_base, dma_size, tuple(cores), source,
                       model, family, soc_id, revision, driver)


def _sysfs_name(r: _Reader, key: str, value: str) -> str:
    """A name that becomes a sysfs directory: no '/', no white space, at most 64 bytes."""
    if "/" in value or any(ch.isspace() or ch == "\0" for ch in value) or len(value) > 64:
        raise r.fail(key, f"{value!r} cannot name a sysfs entry (no '/', no white space, "
                     "at most 64 characters)")
    return value


def load_machine_spec(path: str | Path) -> MachineSpec:
    """Read and validate a machine description file."""
    p = Path(path)
    try:
        # O_NONBLOCK so a FIFO cannot hold the open; only a regular file is read (/dev/zero
        # would fill memory, a FIFO might never end).
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RprocError(errno.EINVAL, f"{p}: not a regular file")
            raw = fh.read()
    except FileNotFoundError as exc:
        raise RprocError(errno.ENOENT, f"{p}: machine description not found") from exc
    except OSError as exc:
        raise RprocError(exc.errno or errno.EIO, f"{p}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RprocError(
            errno.EINVAL, f"{p.name}: not valid TOML: not UTF-8 text (byte {exc.start})"
        ) from None
    return parse_machine(text, p.name)
