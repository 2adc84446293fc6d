"""The emulator platform driver: builds a virtual SoC from a machine description and registers
its processors with the remoteproc core.

Owns ``EmulatorPlatform`` (the machine: shared DDR and its DMA pool, the scheduler and
dispatcher threads, the boot loader, one ``EmulatedProcessor`` per core), ``EmulatedProcessor``
(one core's platform driver: the ``RprocOps`` table and the core's crash reports), ``CrashReport``
and ``load_machine(path, host)`` (the entry point ``rprocd`` uses).

Rules:
- Like every platform, this only fills ``RprocOps`` and calls ``report_crash`` /
  ``vq_interrupt`` (architecture.md); both are called on the dispatcher thread, never on an
  emulation thread, so host code reacting to them may stop the core.
- Ops mapping: prepare checks the memory map is in place (memory is mapped for the whole life
  of the platform, so the host can load before start); start resets the core to the boot
  address and runs it on its thread; stop halts and joins it; attach adopts a running core (or,
  on attach-recovery of a crashed core, has the boot loader restart its image); detach posts the
  DETACH control word and leaves the core running; kick pushes the notify id into the mailbox;
  da_to_va is the core's own address view except the host's DMA pool (reached only through the
  processor's own carveouts, as the kernel's walk does); panic posts SHUTDOWN;
  get_loaded_rsc_table reads the sysctl RSC_TABLE_* registers the firmware published.
- Ownership: ``close()`` stops every core (joining its thread), then the scheduler and the
  dispatcher (joining theirs), then releases memory. Unregistering processors from a ``Host`` is
  the host's business (``Host.close``); close the host first.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remoteproc.closing import Closeable
from remoteproc.core import coredump
from remoteproc.core.ops import RprocOps
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import CrashType, Feature, State
from remoteproc.errors import RprocError
from remoteproc.firmware import elf_loader as elf_ops
from remoteproc.platforms.emulator.bootloader import BootLoader
from remoteproc.platforms.emulator.cores.cortexm import CortexM4, CortexM33
from remoteproc.platforms.emulator.cores.cpu import Core, Fault, HostLink
from remoteproc.platforms.emulator.cores.riscv import RiscV
from remoteproc.platforms.emulator.machine import (
    DEFAULT_MACHINE,
    CoreSpec,
    MachineSpec,
    load_machine_spec,
    resolve_machine,
)
from remoteproc.platforms.emulator.machines.host import HostDriver
from remoteproc.platforms.emulator.machines.host_stm32 import Stm32Host
from remoteproc.platforms.emulator.machines.host_vsoc import VsocHost
from remoteproc.platforms.emulator.memory import AddressMap, HostMemory, Region, SharedDdr
from remoteproc.platforms.emulator.peripherals.base import Context
from remoteproc.platforms.emulator.peripherals.bus import DeviceBus
from remoteproc.platforms.emulator.peripherals.models import create
from remoteproc.platforms.emulator.peripherals.svd import svd_names
from remoteproc.platforms.emulator.peripherals.vsoc import CoreIo
from remoteproc.platforms.emulator.scheduler import Dispatcher, Scheduler
from remoteproc.platforms.emulator.symbolize import (
    Symbolizer,
    disassemble,
    find_symbol_file,
    symbolizer_for,
)

if TYPE_CHECKING:
    from remoteproc.core.host import Host
    from remoteproc.firmware.elf import Firmware

__all__ = [
    "CTRL_DETACH",
    "CTRL_SHUTDOWN",
    "CrashReport",
    "EmulatedProcessor",
    "EmulatorPlatform",
    "load_machine",
]

log = logging.getLogger("remoteproc.emulator")

CTRL_DETACH, CTRL_SHUTDOWN = 1, 2
CTRL_DETACH_ACK = 1
DETACH_ACK_TIMEOUT_S = 0.5
RSC_PUBLISH_TIMEOUT_S = 2.0
PANIC_DELAY_MS = 10
EM_ARM, EM_RISCV = 40, 243


@dataclass
class CrashReport:
    """What the platform says about a crash: kind, reason, where, and the registers."""

    core: str
    crash_type: CrashType
    reason: str
    pc: int
    where: str  # "func+0x12 (file.c:34)" or "0x1234"
    instruction: str
    caller: str | None  # the return address's function (lr / ra)
    regs: dict[str, object] = field(default_factory=dict)
    firmware: str | None = None

    def __str__(self) -> str:
        text = (f"{self.core}: {self.crash_type.label}: {self.reason}\n"
                f"  pc {self.pc:#010x} in {self.where}")
        if self.instruction:
            text += f": {self.instruction}"
        if self.caller:
            text += f"\n  called from {self.caller}"
        if self.firmware:
            text += f"\n  firmware {self.firmware}"
        regs = [f"{k}={v:#x}" for k, v in self.regs.items() if isinstance(v, int)]
        for i in range(0, len(regs), 6):
            text += "\n  " + " ".join(regs[i : i + 6])
        return text


class EmulatedProcessor(Closeable):
    """One core of the machine and its platform driver (the ops)."""

    def __init__(self, platform: EmulatorPlatform, spec: CoreSpec) -> None:
        self.platform = platform
        self.spec = spec
        self.name = spec.name
        self._memories: list[HostMemory] = []
        amap = AddressMap()
        for m in spec.memory:
            mem = HostMemory(m.size, name=f"{spec.name}.{m.name}")
            self._memories.append(mem)
            amap.add(Region(m.name, m.da, m.size, mem.view, mem.address))
            for alias in m.aliases:  # the same memory at another address (no copy)
                amap.add(Region(f"{m.name}@{alias:#x}", alias, m.size, mem.view, mem.address,
                                shared=True))
        amap.add(platform.ddr.region)
        self.amap = amap
        self.bus = self._build_bus(platform, spec)
        cls: type[Core] = {"cortex-m4": CortexM4, "cortex-m33": CortexM33}.get(spec.cpu, RiscV)
        # Host-bound mailbox traffic comes back here (dispatcher thread).
        self.core: Core = cls(spec, amap, self.bus, platform.scheduler, on_fault=self._on_fault,
                              host=HostLink(self._to_host_notify, self._to_host_ctrl,
                                            self._console_line))
        self.bus.pc_reader = self.core.pc
        self.bus.describe_pc = self._describe_pc
        self.host: HostDriver = _host_driver(self)
        # The default machine's device block, for tests and tools (None on other SoCs).
        self.io: CoreIo | None = getattr(self.host, "io", None)
        self.rproc: Rproc | None = None
        self.firmware_name: str | None = None
        self._image: bytes | None = None
        self._image_path: str | None = None
        self._preloaded_path: str | None = None  # where the boot loader read its image
        self._symbolizer: Symbolizer | None = None
        self._quick: Symbolizer | None = None
        # A symbol file for stripped images: rprocd --symbols, else the machine file's.
        self.symbol_file: str | None = spec.symbols
        self.symbols_from: str | None = None  # the file the symbols came from (None: image)
        self.crashes: list[CrashReport] = []
        self.ctrl_from_remote: list[int] = []
        self._ctrl_cv = threading.Condition()
        # Per kicking thread: the inline run in progress (see _kick).
        self._inline = threading.local()

    @staticmethod
    def _build_bus(platform: EmulatorPlatform, spec: CoreSpec) -> DeviceBus:
        mspec = platform.spec
        exclude = [(m.da, m.size) for m in spec.memory]
        exclude += [(a, m.size) for m in spec.memory for a in m.aliases]
        exclude.append((mspec.ddr_base, mspec.ddr_size))
        if spec.arch == "arm":
            exclude.append((0xE000_0000, 0x10_0000))  # the Cortex-M private peripheral bus
        bus = DeviceBus(spec.name, policy=mspec.unknown_access, space=mspec.peripheral_space,
                        exclude=tuple(exclude))
        ctx = Context(spec.index, spec.name, platform.scheduler, bus, mspec.directory)
        for ps in spec.peripherals:
            try:
                p = create(ps, ctx)
                if ps.svd is not None:
                    named = svd_names(ps.svd, ps.svd_peripheral or ps.name)
                    named.names.update(p.names.names)  # the model's own names win
                    named.resets.update(p.names.resets)
                    named.peripheral = ps.name
                    p.names = named
            except ValueError as exc:
                raise RprocError(errno.EINVAL, f"{ps.where}: {exc}") from None
            bus.add(p)
        return bus

    def _describe_pc(self, pc: int) -> str:
        sym = self._quick_symbols()
        return sym.describe(pc) if sym is not None else f"{pc:#x}"

    def _quick_symbols(self) -> Symbolizer | None:
        # Function names only (no DWARF): this runs on the emulation thread, inside an access.
        if self._quick is None and self._image is not None:
            self._quick = symbolizer_for(self._symbol_image(), lines=False)
        return self._quick

    def _set_image(self, image: bytes, path: str | None = None) -> None:
        # Symbols are parsed on the first crash, not at boot (DWARF parsing takes 40-120 ms);
        # symbolizer_for shares the parse with every machine that ran the same image.
        self._image = image
        self._image_path = path
        self._symbolizer = None
        self._quick = None
        self.symbols_from = None

    def _symbol_image(self) -> bytes:
        """The image's bytes, or its symbol file's when it is stripped (symbolize.py)."""
        assert self._image is not None
        found = find_symbol_file(self._image_path, self._image, self.symbol_file)
        if found is not None:
            try:
                with open(found, "rb") as fh:
                    data = fh.read()
                self.symbols_from = found
                return data
            except OSError as exc:
                log.warning("%s: symbol file %s: %s", self.name, found, exc.strerror)
        elif self.symbol_file:
            log.warning("%s: symbol file %s not found", self.name, self.symbol_file)
        return self._image

    @property
    def symbolizer(self) -> Symbolizer | None:
        if self._symbolizer is None and self._image is not None:
            self._symbolizer = symbolizer_for(self._symbol_image())
        return self._symbolizer

    # ---- host-side views -----------------------------------------------------------------------

    @property
    def console(self) -> list[str]:
        return self.host.console()

    @property
    def unknown_accesses(self) -> list[Any]:
        """Unmodelled register accesses the firmware made since it started (bus.py)."""
        return list(self.bus.unknown_log)

    @property
    def last_crash(self) -> CrashReport | None:
        return self.crashes[-1] if self.crashes else None

    def translate(self, da: int, n: int) -> memoryview | None:
        return self.amap.translate(da, n)

    # ---- the ops table ---------------------------------------------------------------------------

    def ops(self) -> RprocOps:
        return RprocOps(
            prepare=self._prepare,
            unprepare=self._unprepare,
            start=self._start,
            stop=self._stop,
            attach=self._attach,
            detach=self._detach,
            kick=self._kick,
            poll=self._poll,
            da_to_va=self._da_to_va,
            get_loaded_rsc_table=self._get_loaded_rsc_table,
            panic=self._panic,
            coredump=self._coredump,
            # The ELF defaults, with load wrapped to remember the image for crash reports.
            load=self._load,
            parse_fw=elf_ops.rproc_elf_load_rsc_table,
            find_loaded_rsc_table=elf_ops.rproc_elf_find_loaded_rsc_table,
            sanity_check=elf_ops.rproc_elf_sanity_check,
            get_boot_addr=elf_ops.rproc_elf_get_boot_addr,
        )

    def _prepare(self, rproc: Rproc) -> None:
        if self.platform.closed:
            raise RprocError(errno.ENODEV, f"{self.name}: the machine is closed")
        # Memory is mapped for the platform's whole life; what prepare adds is the coredump
        # description of the core's private memory (the kernel drivers' add_segment calls).
        coredump.set_elf_info(rproc, coredump.ELFCLASS64 if self.spec.bits == 64 else
                              coredump.ELFCLASS32, EM_ARM if self.spec.arch == "arm" else EM_RISCV)
        have = {seg.da for seg in rproc.dump_segments}
        for region in self.amap:
            if not region.shared and region.da not in have:
                coredump.add_segment(rproc, region.da, region.size)
        self.host.prepare(rproc)

    def _unprepare(self, rproc: Rproc) -> None:
        """Nothing to undo: memory stays mapped for the platform's life, and the core's
        resource cleanup already dropped the coredump segments ``prepare`` added."""

    def _load(self, rproc: Rproc, fw: Firmware) -> None:
        self.core.stop()  # a recovery reload must not write under a running core
        elf_ops.rproc_elf_load_segments(rproc, fw)
        self.firmware_name = fw.name
        self._set_image(bytes(fw.data), fw.path)

    def _start(self, rproc: Rproc) -> None:
        self.bus.reset(clear_rsc=True)
        self.bus.forget_unknown()
        self.host.before_start()
        self.core.start(rproc.bootaddr)

    def _stop(self, rproc: Rproc) -> None:
        self.host.request_stop(rproc)
        self.core.stop()
        self.bus.reset(clear_rsc=True)
        self.host.after_stop()

    def _coredump(self, rproc: Rproc) -> None:
        """The default ELF core, with registers even for a crash the host asked for (debugfs
        ``crash``): a fault brings its own registers; otherwise recovery has halted the core by
        now and its registers are where it was when the host stopped it."""
        if rproc.crash_regs is None and self.core.uc is not None:
            rproc.crash_regs = {"arch": self.spec.arch, **self.core.read_regs()}
        coredump.rproc_coredump(rproc)

    def _attach(self, rproc: Rproc) -> None:
        if self.core.running:
            return
        # Attach-on-recovery of a crashed core: the remote side (its boot loader) restarts the
        # image it booted, as an autonomous recovery would; the host loads nothing. The
        # resource table is kept across that restart (as in retained RAM): the restarted
        # firmware finds the vring addresses and notify ids the host assigned, which the
        # host, re-attaching without re-parsing the table, keeps using.
        da, size = self.host.published_rsc_table()
        table = self.amap.translate(da, size) if da else None
        keep = bytes(table) if table is not None else None
        if keep is not None and rproc.table_ptr is not None and len(rproc.table_ptr) == size:
            keep = bytes(rproc.table_ptr)
        self.reboot_from_loader(keep_table=(da, keep) if keep is not None else None)

    def _detach(self, rproc: Rproc) -> None:
        if not self.core.running:
            return  # a crashed core (attach-recovery) has nobody to tell
        if self.io is None:
            self.host.detach()
            return
        with self._ctrl_cv:
            seen = len(self.ctrl_from_remote)
        self.host.host_ctrl(CTRL_DETACH)  # type: ignore[attr-defined]
        with self._ctrl_cv:
            acked = self._ctrl_cv.wait_for(
                lambda: CTRL_DETACH_ACK in self.ctrl_from_remote[seen:], DETACH_ACK_TIMEOUT_S)
        if not acked:
            log.warning("%s: no DETACH acknowledgement from the firmware", self.name)

    def _kick(self, rproc: Rproc, notifyid: int) -> None:
        self._push_kick(notifyid)

    def _poll(self, rproc: Rproc) -> None:
        """``RprocOps.poll``: a host thread is about to wait for the firmware's reply. If the
        core sleeps in wfi with an interrupt pending (our kick, its thread not yet awake), run
        it here until it sleeps again and deliver what it sent the host here too, instead of
        two thread hand-offs (the core's thread, then the dispatcher)."""
        tl = self._inline
        if (not self.platform.inline_kicks or getattr(tl, "active", False)
                or rproc.state not in (State.RUNNING, State.ATTACHED)):
            return
        core = self.core
        token = core.borrow(pending_only=True)
        if not token:
            return  # busy, stopped or idle: its own thread does the work
        tl.active = True
        notes: list[int] = []
        tl.notes = notes
        try:
            core.run_inline(token)
        finally:
            tl.notes = None
        try:
            # Kicks the delivery makes (buffers re-posted) go to the core's thread as usual.
            for nid in dict.fromkeys(notes):  # one pass per ring drains all it holds
                try:
                    rproc.vq_interrupt(nid)
                except Exception:
                    log.exception("%s: interrupt delivery failed", self.name)
        finally:
            tl.active = False

    def _push_kick(self, notifyid: int) -> None:
        if not self.host.kick(notifyid):
            log.warning("%s: mailbox full, kick %d dropped", self.name, notifyid)

    def _da_to_va(self, rproc: Rproc, da: int, n: int) -> memoryview | None:
        pool = self.platform.ddr.dma
        if da < pool.base + pool.size and pool.base < da + n:
            # The DMA pool is the host's: every processor's carveouts, vrings and rpmsg buffers
            # live there. This processor reaches its own share through its carveouts (the core
            # walks them when this returns None), never another's (a segment loaded there
            # would overwrite them).
            return None
        return self.amap.translate(da, n)

    def _get_loaded_rsc_table(self, rproc: Rproc) -> memoryview | None:
        # A core restarted just now publishes its table within its first instructions.
        deadline = time.monotonic() + RSC_PUBLISH_TIMEOUT_S
        while True:
            da, size = self.host.published_rsc_table()
            if da or not self.core.running or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if not da:
            return None
        view = self._da_to_va(rproc, da, size)  # never in the host's DMA pool
        if view is None:
            # stm32_rproc's "Unexpected resource table address": said, not only returned.
            log.error("%s: published resource table at %#x (%#x bytes) is outside the core's "
                      "memory", self.name, da, size)
            raise RprocError(errno.EINVAL, f"{self.name}: published resource table is outside "
                             "the core's memory", da=da)
        return view

    def _panic(self, rproc: Rproc) -> int:
        if self.io is None:
            return self.host.panic()
        self.io.host_ctrl(CTRL_SHUTDOWN)
        return PANIC_DELAY_MS

    # ---- the boot loader -------------------------------------------------------------------------

    def boot_preloaded(self, name: str, image: bytes, path: str | None = None) -> None:
        """What a boot loader does before the host runs: load ``image`` and start the core;
        ``path`` (where the image was read) is where its symbol twin is looked for."""
        self.core.stop()
        self.bus.reset(clear_rsc=True)
        entry = self.platform.bootloader.boot(self.name, name, image, self.amap.translate)
        self.firmware_name = name
        self._set_image(image, path)
        self._preloaded_path = path
        self.core.start(entry)

    def reboot_from_loader(self, keep_table: tuple[int, bytes] | None = None) -> None:
        """The boot loader restarts its image; ``keep_table`` = (da, bytes) survives it."""
        self.core.stop()
        self.bus.reset(clear_rsc=True)
        try:
            entry = self.platform.bootloader.reload(self.name, self.amap.translate)
        except RprocError as exc:
            raise self.platform.machine_error(self.spec, exc) from None
        if keep_table is not None:
            da, data = keep_table
            view = self.amap.translate(da, len(data))
            if view is not None:
                view[:] = data
        name, image = self.platform.bootloader.images[self.name]
        self.firmware_name = name
        self._set_image(image, self._preloaded_path)
        self.core.start(entry)

    # ---- events from the core (emulation / scheduler threads) ----------------------------------

    def _to_host_notify(self, notifyid: int) -> None:
        notes = getattr(self._inline, "notes", None)
        if notes is not None:  # the core runs inline in a kicking thread, which delivers
            notes.append(notifyid)
            return
        rproc = self.rproc
        if rproc is not None:
            self.platform.dispatcher.post(lambda: self._deliver_notify(rproc, notifyid))

    @staticmethod
    def _deliver_notify(rproc: Rproc, notifyid: int) -> None:
        rproc.vq_interrupt(notifyid)

    def _to_host_ctrl(self, word: int) -> None:
        with self._ctrl_cv:
            self.ctrl_from_remote.append(word)
            self._ctrl_cv.notify_all()

    def _console_line(self, text: str) -> None:
        log.info("%s: %s", self.name, text)

    def _on_fault(self, core: Core, fault: Fault) -> None:
        report = self.make_report(fault)
        self.crashes.append(report)
        log.error("%s", report)
        rproc = self.rproc
        if rproc is not None:
            regs = fault.crash_regs()
            self.platform.dispatcher.post(
                lambda: rproc.report_crash(fault.crash_type, regs=regs))

    def make_report(self, fault: Fault) -> CrashReport:
        sym = self.symbolizer
        where = sym.describe(fault.pc) if sym else f"{fault.pc:#x}"
        code = self.amap.translate(fault.pc, 4) or self.amap.translate(fault.pc, 2)
        insn = disassemble(bytes(code), fault.pc, fault.arch, self.spec.bits) if code else ""
        ret = fault.regs.get("r14" if fault.arch == "arm" else "x1")
        caller = None
        if sym is not None and ret is not None and ret < 0xE000_0000:
            caller = sym.describe((ret & ~1) - (2 if fault.arch == "arm" else 4))
        regs: dict[str, object] = dict(fault.regs)
        fw = self.firmware_name
        if fw is not None and self.symbols_from is not None:
            fw += f" (symbols from {self.symbols_from})"
        return CrashReport(self.name, fault.crash_type, fault.reason, fault.pc, where, insn,
                           caller, regs, fw)

    # ---- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        self.core.close()
        self.bus.quiesce()
        for mem in self._memories:
            mem.close()



def _host_driver(proc: EmulatedProcessor) -> HostDriver:
    """The host side of the machine's SoC (``[machine] platform``): Linux's stm32_rproc for the
    STM32MP1/MP2 machines, the virtual SoC's mailbox driver otherwise."""
    kind = proc.platform.spec.platform
    if kind in ("stm32mp1", "stm32mp2"):
        return Stm32Host(proc, kind)
    return VsocHost(proc)


class EmulatorPlatform(Closeable):
    """A virtual SoC: ``EmulatorPlatform(spec)``, ``register(host)``, ``close()``."""

    def __init__(self, spec: MachineSpec, *, firmware_dirs: list[Path] | None = None) -> None:
        self.spec = spec
        self.closed = False
        self.firmware_dirs = list(firmware_dirs or [])
        self.ddr = SharedDdr(spec.ddr_base, spec.ddr_size, dma_base=spec.dma_base,
                             dma_size=spec.dma_size)
        # A receiver about to block runs the core its kick woke (EmulatedProcessor._poll):
        # no wake-up of the core's thread and none of the dispatcher for the reply. False
        # keeps every run on the core's thread (the hand-off path). The 1,000,000-message
        # recv flood that once stalled with it on was rpmsg's lost TX-buffer wake-up
        # (virtio_rpmsg_bus._wait_tx_buf), since fixed. See docs/virtual-soc.md.
        self.inline_kicks = True
        self.scheduler = Scheduler(f"{spec.name}-sched")
        self.dispatcher = Dispatcher(f"{spec.name}-irq")
        # The boot loader never writes into the host's DMA pool (bootloader.py).
        self.bootloader = BootLoader(reserved=[("the host's DMA pool", spec.dma_base,
                                                spec.dma_size)])
        self.processors: dict[str, EmulatedProcessor] = {}
        try:
            for c in spec.cores:
                self.processors[c.name] = EmulatedProcessor(self, c)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_toml(cls, path: str | Path | None = None) -> EmulatorPlatform:
        return cls(load_machine_spec(path or DEFAULT_MACHINE))

    def __getitem__(self, name: str) -> EmulatedProcessor:
        return self.processors[name]

    def __iter__(self) -> Iterator[EmulatedProcessor]:
        return iter(self.processors.values())

    @property
    def dma(self) -> Any:
        return self.ddr.dma

    def make_rproc(self, name: str, *, host: Host | None = None,
                   firmware: str | None = None, auto_boot: bool | None = None,
                   state: State | None = None) -> Rproc:
        """Build the ``Rproc`` of core ``name`` (registered with ``host`` when given)."""
        proc = self.processors[name]
        spec = proc.spec
        features = [Feature.ATTACH_ON_RECOVERY] if spec.recovery == "attach" else []
        if state is None:
            state = State.DETACHED if proc.core.running else State.OFFLINE
        if auto_boot is None:
            auto_boot = spec.boot in ("auto", "preloaded")
        rproc = Rproc(name, proc.ops(), firmware=firmware or spec.firmware, host=None,
                      auto_boot=auto_boot, state=state, dma=self.ddr.dma, features=features,
                      priv=proc)
        proc.rproc = rproc
        if host is not None:
            host.add(rproc)
        return rproc

    def preload(self, host: Host | None = None) -> None:
        """Run the simulated boot loader for every ``boot = "preloaded"`` core."""
        for proc in self.processors.values():
            if proc.spec.boot != "preloaded" or proc.core.running:
                continue
            assert proc.spec.firmware is not None
            try:
                image, path = self._read_image(proc.spec.firmware, host)
                proc.boot_preloaded(proc.spec.firmware, image, path)
            except RprocError as exc:
                raise self.machine_error(proc.spec, exc) from None

    def machine_error(self, core: CoreSpec, exc: RprocError) -> RprocError:
        """``exc`` about a core's boot-loader image, naming the machine file and its key."""
        why = f"{exc.location}: {exc.message}" if exc.location else exc.message
        return RprocError(exc.errno, f"{self.spec.source}: core[{core.index}].firmware: {why}")

    def _read_image(self, name: str, host: Host | None) -> tuple[bytes, str | None]:
        """(bytes, path) of a boot-loader image. The boot loader reads its own storage: the
        host's firmware path, then the bundled images (a real one would read flash)."""
        if host is not None:
            try:
                fw = host.request_firmware(name)
                return bytes(fw.data), fw.path
            except RprocError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        from remoteproc.firmware.elf import Firmware

        dirs = [*self.firmware_dirs, Path(__file__).resolve().parents[2] / "data" / "firmware"]
        for d in dirs:
            p = Path(d) / name
            if p.is_file():
                return bytes(Firmware.from_file(str(p), name).data), str(p)
        raise RprocError(errno.ENOENT, f"firmware {name} not found for the boot loader")

    def register(self, host: Host) -> list[Rproc]:
        """Boot loader first, then every processor registered with ``host`` (auto-boots)."""
        self.preload(host)
        return [self.make_rproc(name, host=host) for name in self.processors]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc in self.processors.values():
            proc.core.stop()
        self.scheduler.close()
        self.dispatcher.close()
        for proc in self.processors.values():
            proc.close()
        self.ddr.close()



def load_machine(path: str | Path | None, host: Host,
                 symbols: dict[str, str] | None = None) -> EmulatorPlatform:
    """``rprocd``'s entry point: build the machine ``path`` (a file or a bundled machine's
    name) and register it with ``host``; ``symbols`` maps core names to symbol files."""
    platform = EmulatorPlatform.from_toml(resolve_machine(path))
    for core, sym in (symbols or {}).items():
        if core not in platform.processors:
            platform.close()
            raise RprocError(errno.EINVAL, f"--symbols {core}={sym}: no core named {core!r} in "
                             f"{platform.spec.source}")
        platform.processors[core].symbol_file = sym
    try:
        platform.register(host)
    except BaseException:
        platform.close()
        raise
    return platform

