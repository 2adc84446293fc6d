"""The machine description: which remote cores a virtual SoC has, their memory, the peripherals
they see, and how each one boots.

Owns ``MachineSpec`` / ``CoreSpec`` / ``MemorySpec`` / ``ReservedSpec`` (frozen, validated),
``parse_machine`` (TOML text -> spec), ``load_machine_spec`` (a file -> spec),
``bundled_machines`` / ``resolve_machine`` (the machines that ship with the package, by name:
``rproc machines``, ``rprocd --machine NAME``) and ``DEFAULT_MACHINE``.

Format (every number may be written in hex; docs/virtual-soc.md "Describing a new SoC")::

    [machine]
    name = "vsoc"
    model = "..."              # optional, the device model (docs/abi-device-model.md):
    family = "vsoc"            #   /sys/devices/soc0/{machine,family,soc_id,revision}
    soc_id = "vsoc"
    revision = "1.0"
    driver = "vsoc-rproc"      #   the platform driver of every core (e.g. "stm32-rproc")
    description = "..."        # optional, shown by `rproc machines`
    platform = "vsoc"          # the host-side driver: vsoc | stm32mp1 | stm32mp2
    unknown_access = "log"     # log (default): report once, read the reset value | strict: fault
    peripheral_space = [[0x40000000, 0x20000000]]   # optional: reported, not fatal, under log

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
    symbols = "fw.debug"       # optional: function names for a stripped image
    memory = [ { name = "tcm", da = 0x0, size = 0x80000 },          # + aliases = [...], pa = ...
               { name = "sram", da = 0x20000000, size = 0x40000 } ]
    node = "m4"                # optional: the DT node; the platform device is
    unit_address = 0x10000000  #   "<unit_address>.<node>" under /sys/devices/platform/soc
    compatible = "vsoc,m4"     #   (defaults: the core's name, 0x10000000 + index * 0x100000,
    driver = "..."             #   "vsoc,<cpu>", the machine's driver)
    reserved = [ { name = "vdev0vring0", pa = 0x..., size = 0x1000 } ]   # DT memory-region

    [[peripheral]]             # one instance per core (or `cores = [...]`)
    name = "IPCC"
    base = 0x4C001000
    size = 0x400
    model = "stm32-ipcc"       # a registered model (peripherals/base.py)
    params = { channels = 6 }
    svd = "soc.svd"            # optional: register names (relative to the machine file)

``memory`` is optional (the default is the TCM and SRAM of docs/virtual-soc.md). Without any
``[[peripheral]]`` a core gets the default machine's ``vsoc`` block at ``0x4000_0000``.

Rules:
- Every error is ``RprocError(EINVAL)`` whose message names the file and the key, e.g.
  ``default.toml: core[1].cpu: unknown cpu 'z80' (expected one of ...) (line 31)``; the line is
  found in the text (best effort: TOML parsers keep no positions).
- At most ``MAX_CORES`` (64) processors: the kernel's remoteproc character devices have
  ``NUM_RPROC_DEVICES`` = 64 minors.
- One core's address map has no overlaps: its memory regions and their aliases (distinct
  names), the DDR window, its peripherals (whole pages) and, on Cortex-M, the SCS; peripherals
  do not overlap each other. Models check their own ``params`` and SVD files are parsed here, so
  a bad one fails at load, naming the field.
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
from remoteproc.platforms.emulator.peripherals.base import PeripheralSpec
from remoteproc.platforms.emulator.peripherals.models import model_class, model_names

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
UNKNOWN_ACCESS = ("log", "strict")
# The host-side platform drivers (platform.py / machines/*.py): the default virtual SoC's
# mailbox, and the STM32MP1 / STM32MP2 stm32_rproc with IPCC, RCC and TAMP.
PLATFORMS = ("vsoc", "stm32mp1", "stm32mp2")
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
    aliases: tuple[int, ...] = ()  # more device addresses of the same memory
    pa: int | None = None  # the host's (bus) address of it; None: pa == da

    @property
    def bus_addr(self) -> int:
        return self.da if self.pa is None else self.pa


@dataclass(frozen=True)
class ReservedSpec:
    """A reserved-memory region of the device tree (``memory-region``): named, at a host
    physical address, inside one of the core's memories (stm32_rproc_prepare registers them as
    carveouts: ``vdev0vring0``, ``vdev0vring1``, ``vdev0buffer``...)."""

    name: str
    pa: int
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
    symbols: str | None = None  # a symbol file for stripped images (resolved path)
    reserved: tuple[ReservedSpec, ...] = ()
    peripherals: tuple[PeripheralSpec, ...] = ()

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
    unknown_access: str = "log"
    platform: str = "vsoc"
    peripheral_space: tuple[tuple[int, int], ...] = ()
    description: str = ""
    directory: str = "."

    def core(self, name: str) -> CoreSpec:
        for c in self.cores:
            if c.name == name:
                return c
        raise RprocError(errno.ENODEV, f"{self.source}: no core named {name!r}")


DEFAULT_MEMORY = (
    MemorySpec("tcm", 0x0000_0000, 0x8_0000),
    MemorySpec("sram", 0x2000_0000, 0x4_0000),
)


def _locate(text: str, path: str) -> int | None:
    """Best-effort 1-based line of a key path such as ``peripheral[2].model`` or
    ``core[0].memory[1].da`` in the TOML text (tomllib keeps no positions)."""
    import re

    lines = text.splitlines()
    pos = 0
    parts = path.split(".") if path else []
    top = True
    for part in parts:
        m = re.fullmatch(r"([A-Za-z_][\w-]*)(?:\[(\d+)\])?", part)
        if m is None:
            return None
        key, idx = m.group(1), m.group(2)
        if top and idx is not None:
            header = re.compile(rf"^\s*\[\[\s*{re.escape(key)}\s*\]\]")
            hits = [i for i in range(pos, len(lines)) if header.match(lines[i])]
            if len(hits) <= int(idx):
                return None
            pos = hits[int(idx)]
        elif top and any(re.match(rf"^\s*\[\s*{re.escape(key)}\s*\]", ln) for ln in lines):
            pos = next(i for i, ln in enumerate(lines)
                       if re.match(rf"^\s*\[\s*{re.escape(key)}\s*\]", ln))
        else:
            pat = re.compile(rf"(^|[\s{{,.]){re.escape(key)}\s*[=.]")
            hits = [i for i in range(pos, len(lines)) if pat.search(lines[i])]
            n = int(idx) if idx is not None else 0
            if not hits:
                return pos + 1 if pos or top is False else None
            if idx is not None:
                # an inline array of tables: the n-th "{" after the key
                count = -1
                for i in range(hits[0], len(lines)):
                    count += lines[i].count("{")
                    if count >= n:
                        pos = i
                        break
            else:
                pos = hits[0]
        top = False
    return pos + 1


class _Reader:
    """Typed access to one TOML table with error messages naming file, key and line."""

    def __init__(self, source: str, table: dict[str, Any], where: str, text: str = "") -> None:
        self.source = source
        self.table = table
        self.where = where
        self.text = text

    def sub(self, table: dict[str, Any], where: str) -> _Reader:
        return _Reader(self.source, table, where, self.text)

    def fail(self, key: str, message: str) -> RprocError:
        path = f"{self.where}.{key}" if self.where else key
        line = _locate(self.text, path) if self.text else None
        suffix = f" (line {line})" if line else ""
        return RprocError(errno.EINVAL, f"{self.source}: {path}: {message}{suffix}")

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


DEFAULT_PERIPHERALS = (PeripheralSpec("vsoc", MMIO_BASE, MMIO_SIZE, "vsoc"),)


def _parse_peripherals(top: _Reader, doc: dict[str, Any], directory: Path,
                       core_names: set[str]) -> list[PeripheralSpec]:
    raw = doc.get("peripheral")
    if raw is None:
        return list(DEFAULT_PERIPHERALS)
    if not isinstance(raw, list):
        raise top.fail("peripheral", "expected [[peripheral]] tables")
    out: list[PeripheralSpec] = []
    for i, pt in enumerate(raw):
        if not isinstance(pt, dict):
            raise top.fail(f"peripheral[{i}]", "expected a table")
        r = top.sub(pt, f"peripheral[{i}]")
        r.check_keys({"name", "base", "size", "model", "params", "svd", "svd_peripheral",
                      "cores"})
        name = r.req_str("name")
        base = r.int_("base")
        size = r.int_("size")
        if size == 0:
            raise r.fail("size", "must not be 0")
        if base + size > 1 << 32:
            raise r.fail("size", "the window must end below 4 GiB")
        model = r.req_str("model")
        cls = model_class(model)
        if cls is None:

            raise r.fail("model", f"unknown model {model!r} (expected one of "
                         f"{', '.join(model_names())})")
        params = pt.get("params", {})
        if not isinstance(params, dict):
            raise r.fail("params", "expected a table")
        try:
            cls.check_params(params, size)
        except ValueError as exc:
            raise r.fail(str(exc).split(":", 1)[0], str(exc).split(":", 1)[-1].strip()) from None
        svd = r.str_("svd")
        svd_path: str | None = None
        svd_periph = r.str_("svd_peripheral")
        if svd is not None:
            p = Path(svd)
            if not p.is_absolute():
                p = directory / p
            svd_path = str(p)
            from remoteproc.platforms.emulator.peripherals.svd import svd_names

            try:
                svd_names(svd_path, svd_periph or name)
            except ValueError as exc:
                raise r.fail("svd_peripheral" if "has no peripheral" in str(exc) else "svd",
                             str(exc)) from None
        elif model == "svd":
            raise r.fail("svd", "model 'svd' needs svd = PATH")
        cores_raw = pt.get("cores", [])
        if not isinstance(cores_raw, list) or not all(isinstance(c, str) for c in cores_raw):
            raise r.fail("cores", "expected an array of core names")
        for c in cores_raw:
            if c not in core_names:
                raise r.fail("cores", f"no core named {c!r}")
        for j, other in enumerate(out):
            if other.name == name:
                raise r.fail("name", f"duplicate peripheral name {name!r} (also peripheral[{j}])")
            if _overlaps((base, size), (other.base, other.size)) and (
                    not cores_raw or not other.cores or set(cores_raw) & set(other.cores)):
                raise r.fail("base", f"peripheral {name!r} [{base:#x}, {base + size:#x}) "
                             f"overlaps peripheral[{j}] {other.name!r} [{other.base:#x}, "
                             f"{other.base + other.size:#x})")
        out.append(PeripheralSpec(name, base, size, model, dict(params), svd_path, svd_periph,
                                  tuple(cores_raw), f"{top.source}: peripheral[{i}]"))
    return out


def parse_machine(text: str, source: str = "<string>", directory: str | Path = ".") -> MachineSpec:
    """Parse and validate a machine description; errors name ``source``, the key and the line.
    Relative paths in it (SVD and symbol files) are relative to ``directory``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RprocError(errno.EINVAL, f"{source}: not valid TOML: {exc}") from exc
    directory = Path(directory)
    top = _Reader(source, doc, "", text)
    top.check_keys({"machine", "ddr", "core", "peripheral"})
    mt = doc.get("machine", {})
    if not isinstance(mt, dict):
        raise top.fail("machine", "expected a table")
    m = top.sub(mt, "machine")
    m.check_keys({"name", "description", "unknown_access", "platform", "peripheral_space",
                  "model", "family", "soc_id", "revision", "driver"})
    name = m.str_("name", default="vsoc") or "vsoc"
    description = m.str_("description", default="") or ""
    unknown_access = m.str_("unknown_access", choices=UNKNOWN_ACCESS) or "log"
    platform = m.str_("platform", choices=PLATFORMS) or "vsoc"
    space_raw = mt.get("peripheral_space", [])
    space: list[tuple[int, int]] = []
    if not isinstance(space_raw, list):
        raise m.fail("peripheral_space", "expected an array of [base, size]")
    for k, pair in enumerate(space_raw):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                           and x % _PAGE == 0 for x in pair) or pair[0] + pair[1] > 1 << 32):
            raise m.fail(f"peripheral_space[{k}]", "expected [base, size], page aligned, below "
                         "4 GiB")
        space.append((pair[0], pair[1]))
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
    d = top.sub(dt, "ddr")
    d.check_keys({"base", "size", "dma_base", "dma_size"})
    ddr_base = d.int_("base", default=0x8000_0000, page=True)
    ddr_size = d.int_("size", default=0x1000_0000, page=True)
    if ddr_size == 0:
        raise d.fail("size", "must not be 0")
    if ddr_base + ddr_size > 1 << 32:
        raise d.fail("size", "the DDR window must end below 4 GiB")
    ddr_end = ddr_base + ddr_size
    dma_base = d.int_("dma_base", default=ddr_base + ddr_size // 2, page=True)
    # Checked before the default size is derived from it: a base past the window would give
    # a negative size, which passed the range check below (found by tools/fuzz.sh).
    if not ddr_base <= dma_base < ddr_end:
        raise d.fail("dma_base", f"the DMA pool at {dma_base:#x} is outside the DDR window "
                     f"[{ddr_base:#x}, {ddr_end:#x})")
    dma_size = d.int_("dma_size", default=ddr_end - dma_base, page=True)
    if dma_size == 0 or dma_base + dma_size > ddr_end:
        raise d.fail("dma_size", f"the DMA pool [{dma_base:#x}, {dma_base + dma_size:#x}) must "
                     f"be a non-empty part of the DDR window [{ddr_base:#x}, {ddr_end:#x})")

    cores_raw = doc.get("core", [])
    if not isinstance(cores_raw, list) or not cores_raw:
        raise top.fail("core", "expected at least one [[core]] table")
    if len(cores_raw) > MAX_CORES:
        raise top.fail("core", f"{len(cores_raw)} processors, at most {MAX_CORES} "
                       "(NUM_RPROC_DEVICES: the remoteproc character devices have 64 minors)")
    # Only string names: a core's name may be any TOML value here (its own check comes later),
    # and a list or table cannot go into a set.
    names = {c["name"] for c in cores_raw if isinstance(c, dict) and isinstance(c.get("name"), str)}
    periphs = _parse_peripherals(top, doc, directory, names)
    for p in periphs:
        if _overlaps((ddr_base, ddr_size), (p.base, p.size)):
            if doc.get("peripheral") is None:
                raise d.fail("base", f"the DDR window [{ddr_base:#x}, {ddr_base + ddr_size:#x})"
                             f" overlaps the peripheral block at {p.base:#x}")
            i = periphs.index(p)
            raise top.fail(f"peripheral[{i}].base", f"peripheral {p.name!r} at {p.base:#x} "
                           f"overlaps the DDR window [{ddr_base:#x}, {ddr_base + ddr_size:#x})")

    cores: list[CoreSpec] = []
    seen: set[str] = set()
    for i, ct in enumerate(cores_raw):
        if not isinstance(ct, dict):
            raise top.fail(f"core[{i}]", "expected a table")
        c = top.sub(ct, f"core[{i}]")
        c.check_keys({"name", "cpu", "boot", "firmware", "recovery", "memory", "node",
                      "unit_address", "compatible", "driver", "clock_hz", "clock_mode", "symbols",
                      "reserved"})
        cname = c.req_str("name")
        if cname in seen:
            raise c.fail("name", f"duplicate core name {cname!r}")
        seen.add(cname)
        cpu = c.req_str("cpu", choices=CPU_TYPES)
        boot = c.str_("boot", choices=BOOT_MODES) or "manual"
        firmware = c.str_("firmware")
        recovery = c.str_("recovery", choices=RECOVERY_MODES) or "reload"
        symbols = c.str_("symbols")
        if symbols is not None and not Path(symbols).is_absolute():
            symbols = str(directory / symbols)
        if boot in ("auto", "preloaded") and firmware is None:
            raise c.fail("firmware", f"boot = {boot!r} needs a firmware image name")
        mine = [p for p in periphs if not p.cores or cname in p.cores]
        fixed = [("ddr", ddr_base, ddr_size)]
        if cpu.startswith("cortex"):
            if _overlaps((ddr_base, ddr_size), (SCS_BASE, SCS_SIZE)):
                raise c.fail("cpu", f"{cpu}'s system control space at {SCS_BASE:#x} is inside "
                             f"the DDR window [{ddr_base:#x}, {ddr_base + ddr_size:#x})")
            fixed.append(("scs", SCS_BASE, SCS_SIZE))
            for p in mine:
                if _overlaps((p.base, p.size), (SCS_BASE, SCS_SIZE)):
                    k = periphs.index(p)
                    raise top.fail(f"peripheral[{k}].base", f"peripheral {p.name!r} overlaps "
                                   f"{cpu}'s system control space at {SCS_BASE:#x}")
        # Peripherals occupy whole pages on the core's bus (unicorn maps pages).
        fixed += [("mmio" if p.model == "vsoc" else f"peripheral {p.name!r}",
                   p.base & ~(_PAGE - 1),
                   ((p.base + p.size + _PAGE - 1) & ~(_PAGE - 1)) - (p.base & ~(_PAGE - 1)))
                  for p in mine]
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
            taken: list[tuple[str, int, int]] = []
            for j, mt_ in enumerate(mem_raw):
                if not isinstance(mt_, dict):
                    raise c.fail(f"memory[{j}]", "expected a table")
                r = c.sub(mt_, f"core[{i}].memory[{j}]")
                r.check_keys({"name", "da", "size", "aliases", "pa"})
                aliases_raw = mt_.get("aliases", [])
                if not isinstance(aliases_raw, list) or not all(
                        isinstance(a, int) and not isinstance(a, bool) and a >= 0
                        and a % _PAGE == 0 for a in aliases_raw):
                    raise r.fail("aliases", "expected an array of page-aligned addresses")
                pa = mt_.get("pa")
                if pa is not None:
                    pa = r.int_("pa")
                ms = MemorySpec(r.req_str("name"), r.int_("da", page=True),
                                r.int_("size", page=True), tuple(aliases_raw), pa)
                for k, other in enumerate(mems):
                    if other.name == ms.name:
                        raise r.fail("name", f"duplicate region name {ms.name!r} (also "
                                     f"core[{i}].memory[{k}])")
                if ms.size == 0:
                    raise r.fail("size", "must not be 0")
                for key, at in (("da", ms.da), *(("aliases", a) for a in ms.aliases)):
                    if at + ms.size > 1 << 32:
                        raise r.fail("size", "the region must end below 4 GiB")
                    for oname, oda, osize in [*fixed, *taken]:
                        if _overlaps((at, ms.size), (oda, osize)):
                            raise r.fail(key, f"region {ms.name!r} at {at:#x} overlaps {oname}")
                    taken.append((ms.name, at, ms.size))
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
        reserved: list[ReservedSpec] = []
        res_raw = ct.get("reserved", [])
        if not isinstance(res_raw, list):
            raise c.fail("reserved", "expected an array of tables")
        for j, rt in enumerate(res_raw):
            if not isinstance(rt, dict):
                raise c.fail(f"reserved[{j}]", "expected a table")
            r = c.sub(rt, f"core[{i}].reserved[{j}]")
            r.check_keys({"name", "pa", "size"})
            rs = ReservedSpec(r.req_str("name"), r.int_("pa"), r.int_("size"))
            inside = any(m_.bus_addr <= rs.pa and rs.pa + rs.size <= m_.bus_addr + m_.size
                         for m_ in mems) or (ddr_base <= rs.pa
                                             and rs.pa + rs.size <= ddr_base + ddr_size)
            if rs.size == 0 or not inside:
                raise r.fail("pa", f"reserved region {rs.name!r} [{rs.pa:#x}, "
                             f"{rs.pa + rs.size:#x}) is not inside one of the core's memories")
            reserved.append(rs)
        core = CoreSpec(cname, cpu, i, boot, firmware, recovery, tuple(mems), node, unit,
                        compatible, cdriver, clock_hz=clock_hz, clock_mode=clock_mode,
                        symbols=symbols, reserved=tuple(reserved), peripherals=tuple(mine))
        for prev in cores:
            if prev.platform_device == core.platform_device:
                raise c.fail("unit_address", f"platform device {core.platform_device!r} is "
                             f"also core[{prev.index}]'s (give another node or unit_address)")
        cores.append(core)
    return MachineSpec(name, ddr_base, ddr_size, dma_base, dma_size, tuple(cores), source,
                       model, family, soc_id, revision, driver,
                       unknown_access=unknown_access, platform=platform,
                       peripheral_space=tuple(space), description=description,
                       directory=str(directory))


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
    return parse_machine(text, p.name, p.resolve().parent)


def bundled_machines() -> dict[str, Path]:
    """The machines that ship with the package, by name (``rproc machines``)."""
    return {p.stem: p for p in sorted(MACHINES_DIR.glob("*.toml"))}


def resolve_machine(name_or_path: str | Path | None) -> Path:
    """``rprocd --machine``: a bundled machine's name, or a file."""
    if name_or_path is None:
        return DEFAULT_MACHINE
    text = str(name_or_path)
    bundled = bundled_machines()
    if text in bundled and not Path(text).exists():
        return bundled[text]
    p = Path(text)
    if not p.exists() and "/" not in text and not text.endswith(".toml"):
        raise RprocError(errno.ENOENT, f"no bundled machine named {text!r} (bundled: "
                         f"{', '.join(bundled)}) and no file of that name")
    return p
