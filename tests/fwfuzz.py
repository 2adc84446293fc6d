"""The firmware fuzzing harness shared by tests/test_fuzz_fw.py (a bounded budget in CI) and
tools/fuzz.sh (long runs): image generators, every ``rproc fw`` entry point, and a full boot on
the in-memory platform, with the invariants of issue 13.

Invariants checked per image:
- no exception other than ``RprocError`` from ``fw info``/``check``/``map`` (and their JSON
  forms) and from a boot;
- ``fw check``'s exit status is 0, 1 or 2 as its findings say, and ``fw info`` exits 2 exactly
  when the header is refused;
- ``fw check`` (for a host of the image's byte order) says 2 exactly when a real boot on the
  in-memory platform is refused, and its first error has the boot's errno and contains the
  boot's message (two documented exceptions, see ``compare``);
- the boot only writes through the views the platform's translation handed out (the platform's
  memory is sparse: any device address is backed on first use, up to ``SPARSE_LIMIT`` bytes, so
  the verdict does not depend on one board's memory map).
"""

from __future__ import annotations

import errno
import io
import json
import re
from dataclasses import dataclass, field

from elfbuild import (
    Seg,
    build_elf,
    resource_table,
    rsc_carveout,
    rsc_devmem,
    rsc_entry,
    rsc_trace,
    rsc_vdev,
)
from fuzzkit import cached, pick
from hypothesis import strategies as st

from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.firmware.check import CheckReport, check_firmware
from remoteproc.firmware.elf import Firmware, sanity_check
from remoteproc.firmware.fwmap import build_map, layout, to_svg
from remoteproc.firmware.inspect import describe_firmware, format_info
from remoteproc.platforms.sim import SimPlatform

SPARSE_LIMIT = 64 << 20  # bytes of device memory the fuzzing platform backs in total
RSC_DA = 0x2000_0000


class SparseSim(SimPlatform):
    """An in-memory processor whose every device address is memory (allocated on first use),
    up to ``SPARSE_LIMIT`` bytes: the boot's verdict then depends on the image only."""

    def __init__(self, name: str = "fuzz") -> None:
        super().__init__(name, elf=True, memories=(), dma_size=16 << 20)
        self.spans: list[tuple[int, bytearray]] = []
        self.handed: list[tuple[int, int]] = []
        self.exhausted = False

    def reset_memory(self) -> None:
        self.spans = []
        self.handed = []
        self.exhausted = False

    def translate(self, da: int, n: int) -> memoryview | None:
        if da < 0 or n < 0 or da + n > 1 << 64:
            self.exhausted = True  # wraps past the address space: no board has it either
            return None
        for base, buf in self.spans:
            if base <= da and da + n <= base + len(buf):
                self.handed.append((da, n))
                return memoryview(buf)[da - base : da - base + n]
        lo, hi = da, da + n
        keep: list[tuple[int, bytearray]] = []
        merged: list[tuple[int, bytearray]] = []
        for base, buf in self.spans:
            if (base < hi and lo < base + len(buf)) or base + len(buf) == lo or hi == base:
                merged.append((base, buf))
                lo, hi = min(lo, base), max(hi, base + len(buf))
            else:
                keep.append((base, buf))
        total = sum(len(b) for _, b in keep) + (hi - lo)
        if total > SPARSE_LIMIT:
            self.exhausted = True
            return None
        big = bytearray(hi - lo)
        for base, buf in merged:
            big[base - lo : base - lo + len(buf)] = buf
        keep.append((lo, big))
        self.spans = keep
        self.handed.append((da, n))
        return memoryview(big)[da - lo : da - lo + n]


@dataclass
class Outcome:
    report: CheckReport
    boot_error: RprocError | None
    booted: bool
    platform_limit: bool  # the boot failed on the test platform's memory limit
    notes: list[str] = field(default_factory=list)


class Harness:
    """One host and one sparse processor, reused across images (boots are cheap, hosts not)."""

    def __init__(self) -> None:
        self.host = Host([], panic_hook=False)
        self.sim = SparseSim()
        self.rproc: Rproc = self.sim.make_rproc("fuzz", auto_boot=False, host=self.host,
                                                firmware="fuzz.elf")
        self.cases = 0

    def close(self) -> None:
        self.host.close()
        self.sim.close()

    def entry_points(self, data: bytes) -> CheckReport:
        """``fw info`` / ``check`` / ``map`` and their JSON forms, as the CLI calls them."""
        fw = Firmware("fuzz.elf", data)
        info = describe_firmware(fw)
        json.dumps(info)
        format_info(info)
        json.dumps(check_firmware(fw).to_dict())  # the default target: a little-endian host
        # The boot below reads the image in its own byte order (kernel-differences.md), so the
        # verdict to compare is the one for a host of the image's byte order.
        report = check_firmware(fw, host_byteorder=">" if data[5:6] == b"\x02" else "<")
        json.dumps(report.to_dict())
        for f in report.findings:
            str(f)
        assert report.exit_status in (0, 1, 2)
        assert (report.exit_status == 2) == bool(report.errors)
        header_ok = True
        try:
            sanity_check(fw.view, file=fw.name)
        except RprocError:
            header_ok = False
        assert ("error" in info) == (not header_ok), info.get("error")
        if header_ok:
            drawing = layout(build_map(fw))
            io.StringIO(to_svg(drawing))
        return report

    def boot(self, data: bytes) -> tuple[RprocError | None, bool]:
        self.host.add_firmware("fuzz.elf", data)
        self.sim.reset_memory()
        rp = self.rproc
        try:
            rp.boot()
        except RprocError as exc:
            assert rp.state is State.OFFLINE and rp.power == 0, rp
            assert rp.carveouts == [] and rp.rvdevs == [] and rp.traces == []
            return exc, self.sim.exhausted
        finally:
            assert self.sim.dma.allocated == 0 or rp.state is State.RUNNING
        assert rp.state is State.RUNNING
        rp.shutdown()
        assert rp.state is State.OFFLINE and self.sim.dma.allocated == 0
        return None, False

    def run(self, data: bytes) -> Outcome:
        self.cases += 1
        report = self.entry_points(data)
        err, limit = self.boot(data)
        return Outcome(report, err, err is None, limit or _platform_enomem(err))


_BAD_PHDR_DA = re.compile(r"bad phdr da 0x[0-9a-f]+ mem (0x[0-9a-f]+)$")


def _platform_enomem(err: RprocError | None) -> bool:
    # A carveout or vring larger than the platform's DMA pool: a board decision, not the image's.
    if err is not None and err.errno == errno.ENOMEM:
        return True
    # A segment larger than the platform's memory that the loader refuses before asking it (a
    # view longer than sys.maxsize cannot exist): the board's limit too, as SPARSE_LIMIT is.
    m = _BAD_PHDR_DA.match(err.message) if err is not None else None
    return m is not None and int(m.group(1), 16) > SPARSE_LIMIT


def compare(out: Outcome) -> str | None:
    """Why ``fw check`` and the boot disagree, or None. Documented exceptions:
    - ``vendor-last-ignored``: Linux refuses, this project boots it (kernel-differences.md);
    - the boot ran out of the test platform's memory (ENOMEM, or past ``SPARSE_LIMIT``, or a
      segment longer than any view the loader asks for): ``fw check`` cannot know a board's
      memory."""
    errors = [f for f in out.report.errors if f.code != "vendor-last-ignored"]
    if out.platform_limit:
        return None
    if out.booted:
        if not errors:
            return None
        return f"fw check refuses ({errors[0]}) but the boot succeeded"
    assert out.boot_error is not None
    if not errors:
        return f"the boot was refused ({out.boot_error}) but fw check says " \
               f"{out.report.verdict}: {[str(f) for f in out.report.findings]}"
    first = errors[0]
    # fw check explains more than the boot's error says: the boot's words must be in it
    if first.errno != out.boot_error.errno or out.boot_error.message not in first.message:
        return f"different reasons: fw check {first} / boot {out.boot_error}"
    return None


# -- generators ---------------------------------------------------------------------------------


@cached
def edge(bits: int) -> st.SearchStrategy[int]:
    top = (1 << bits) - 1
    vals = [0, 1, 2, 3, 4, 0x10, 0x20, 0x100, 0x1000, 0x7FFF_FFFF, 0xFFFF_FFFF, top, top - 3]
    return st.one_of(pick(sorted({v & top for v in vals})), st.integers(0, top))


@st.composite
def entries(draw: st.DrawFn, order: str) -> list[bytes]:
    """Resource entries of every type, with edge values in their fields."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(pick(["carveout", "trace", "vdev", "devmem", "vendor", "unknown",
                                     "carveout", "trace", "vdev"]))
        name = draw(pick(["", "mem", "ddr%d", "trace0", "x" * 40]))
        if kind == "carveout":
            da = draw(pick([0xFFFF_FFFF, 0x3000_0000, 0x1000])) if draw(
                st.booleans()) else draw(edge(32))
            out.append(rsc_carveout(da, draw(pick([0x1000, 0x10, 0])) if draw(
                st.booleans()) else draw(edge(32)), name, byteorder=order))
        elif kind == "trace":
            out.append(rsc_trace(draw(pick([RSC_DA + 0x100, 0x4000_0000])),
                                 draw(pick([0x100, 0, 0x10_0000])), name,
                                 byteorder=order))
        elif kind == "vdev":
            rings = []
            for _ in range(draw(st.integers(0, 3))):
                rings.append((draw(pick([0xFFFF_FFFF, 0, RSC_DA + 0x1000])),
                              draw(pick([16, 4096, 0, 3])),
                              draw(pick([8, 16, 256, 0, 5, 0x8000]))))
            out.append(rsc_vdev(rings, id=draw(pick([7, 7, 0, 42])),
                                config=draw(pick([b"", b"\0" * 8])),
                                byteorder=order))
        elif kind == "devmem":
            out.append(rsc_devmem(0x5000_0000, 0x5000_0000, 0x1000, name, byteorder=order))
        elif kind == "vendor":
            out.append(rsc_entry(draw(st.integers(128, 512)), bytes(8), order))
        else:
            out.append(rsc_entry(draw(pick([4, 100, 513, 0xFFFF_FFFF])), b"",
                                 order))
    return out


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """A plausible image (code segment + writable table segment), then field mutations of its
    ELF header, program headers, section header and resource table bytes."""
    order = draw(pick("<<>"))
    elf_class = draw(pick([1, 1, 2]))
    table = bytearray(resource_table(draw(entries(order)), byteorder=order,
                                     ver=draw(pick([1, 1, 1, 2])),
                                     pad=draw(pick([0, 0, 16]))))
    for _ in range(draw(st.integers(0, 3))):  # table byte mutations
        if table:
            pos = draw(st.integers(0, len(table) - 1))
            op = draw(pick(["flip", "word", "cut"]))
            if op == "flip":
                table[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "word":
                table[pos : pos + 4] = draw(edge(32)).to_bytes(4, "little" if order == "<"
                                                                else "big")
            else:
                del table[pos:]
    code = draw(st.binary(min_size=4, max_size=64))
    segs = [Seg(code, paddr=draw(pick([0x0, 0x1000, 0x1000_0000])),
                memsz=len(code) + draw(pick([0, 0x100, 0x1_0000])))]
    built = build_elf(segs, elf_class=elf_class, byteorder=order,
                      rsc_table=bytes(table) if draw(st.integers(0, 9)) else None,
                      rsc_da=RSC_DA, entry=0x1000)
    bits = 32 if elf_class == 1 else 64
    for _ in range(draw(st.integers(0, 2))):
        target = draw(pick(["ehdr", "phdr", "shdr"]))
        if target == "ehdr":
            name = draw(pick(["phoff", "shoff", "phnum", "shnum", "shstrndx",
                                         "phentsize", "machine", "type"]))
            width = bits if name in ("phoff", "shoff") else 16
            built.patch_ehdr(**{name: draw(edge(width))})
        elif target == "phdr" and built.phoff:
            name = draw(pick(["offset", "filesz", "memsz", "paddr", "type", "flags"]))
            built.patch_phdr(draw(st.integers(0, len(built.seg_offsets) - 1)),
                             **{name: draw(edge(32 if name in ("type", "flags") else bits))})
        elif target == "shdr" and ".resource_table" in built.sec_index:
            name = draw(pick(["offset", "size", "addr", "type", "flags"]))
            built.patch_shdr(".resource_table",
                             **{name: draw(edge(32 if name in ("type",) else bits))})
    data = bytes(built.data)
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data
