"""ELF loader figures.

- ``fw_load_ratio``: load a 64 MiB image generated at run time (four 16 MiB PT_LOAD segments and a
  small .bss) into memory regions through a carveout-style translation, parse included; its MB/s
  over the file bytes, divided by the MB/s of a plain copy of the same bytes into a bytearray
  (one memoryview slice assignment, pages pre-touched on both sides), in the same run. Best of
  several interleaved rounds for both. Target >= 0.8.
- ``elf_parse_cold_ms``: a new Python process that imports the loader, reads a 3 MB ELF and
  parses it (headers, sections, resource table): the loader's share of ``rproc fw info``'s
  ``fw_info_cold_ms`` budget (150 ms, interpreter start included).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from remoteproc.firmware.elf import (
    PT_LOAD,
    SHT_PROGBITS,
    Firmware,
    layout,
)
from remoteproc.firmware.elf_layout import (
    SHT_STRTAB,
)

MiB = 1 << 20


def make_image(seg_sizes: list[int], bss: int, *, table: bool = True) -> bytes:
    """An ELF32 LE image: one PT_LOAD per size (file bytes), the last with ``bss`` extra memsz,
    plus a ``.resource_table`` section in the first segment."""
    lay = layout(1, "<")
    phnum = len(seg_sizes)
    data_off = lay.ehdr.size + phnum * lay.phdr.size
    data_off = (data_off + 15) & ~15
    body = bytearray()
    phdrs = b""
    da = 0x1000_0000
    offs = []
    pattern = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    for i, size in enumerate(seg_sizes):
        off = data_off + len(body)
        offs.append(off)
        chunk = bytearray(pattern * (size // len(pattern)) + pattern[: size % len(pattern)])
        chunk[0:4] = i.to_bytes(4, "little")
        body += chunk
        memsz = size + (bss if i == phnum - 1 else 0)
        phdrs += lay.phdr.pack(PT_LOAD, off, da, da, size, memsz, 7, 16)
        da += memsz + MiB
    if table:
        body[0:16] = struct.pack("<IIII", 1, 0, 0, 0)
    names = b"\0.resource_table\0.shstrtab\0"
    str_off = data_off + len(body)
    body += names
    shoff = (data_off + len(body) + 7) & ~7
    body += bytes(shoff - data_off - len(body))
    body += lay.shdr.pack(*(0,) * 10)
    body += lay.shdr.pack(1, SHT_PROGBITS, 3, 0x1000_0000, offs[0], 16, 0, 0, 4, 0)
    body += lay.shdr.pack(17, SHT_STRTAB, 0, 0, str_off, len(names), 0, 0, 1, 0)
    ehdr = lay.ehdr.pack(
        b"\x7fELF\x01\x01\x01" + bytes(9), 2, 40, 1, 0x1000_0001, lay.ehdr.size, shoff, 0,
        lay.ehdr.size, lay.phdr.size, phnum, lay.shdr.size, 3, 2,
    )  # fmt: skip
    head = ehdr + phdrs
    return bytes(head + bytes(data_off - len(head)) + body)


class Carveouts:
    """The kernel's carveout walk over a few bytearrays."""

    def __init__(self, regions: list[tuple[int, int]]) -> None:
        self.regions = [(da, memoryview(bytearray(size))) for da, size in regions]

    def da_to_va(self, da: int, n: int) -> memoryview | None:
        for base, mem in self.regions:
            off = da - base
            if off >= 0 and off + n <= len(mem):
                return mem[off : off + n]
        return None


def fw_load_ratio(rounds: int = 11) -> float:
    seg = 16 * MiB
    bss = 64 * 1024
    data = make_image([seg] * 4, bss)
    fw0 = Firmware("bench.elf", data)
    regions = [(s.paddr, s.memsz) for s in fw0.elf.load_segments()]
    mem = Carveouts(regions)
    file_bytes = sum(s.filesz for s in fw0.elf.load_segments())

    src = memoryview(data)
    start = fw0.elf.load_segments()[0].offset
    # The baseline is the fastest plain copy Python has: one memcpy through a memoryview into a
    # bytearray whose pages are already touched (``ba[:] = x`` goes through a temporary and
    # runs several times slower, which would flatter the ratio).
    dst = memoryview(bytearray(file_bytes))
    dst[:] = src[start : start + file_bytes]
    from remoteproc.firmware.elf_loader import load_segments

    load_segments(fw0, mem.da_to_va)

    best_load = best_copy = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        dst[:] = src[start : start + file_bytes]
        t1 = time.perf_counter()
        load_segments(Firmware("bench.elf", data), mem.da_to_va)  # a fresh parse each round
        t2 = time.perf_counter()
        best_copy = min(best_copy, t1 - t0)
        best_load = min(best_load, t2 - t1)
    load_mbs = file_bytes / MiB / best_load
    copy_mbs = file_bytes / MiB / best_copy
    print(
        f"load {load_mbs:.0f} MB/s, bytearray copy {copy_mbs:.0f} MB/s", file=sys.stderr, flush=True
    )
    return round(load_mbs / copy_mbs, 3)


def elf_parse_cold_ms(rounds: int = 5) -> float:
    image = make_image([MiB, 2 * MiB - 4096], 4096)
    code = (
        "import sys\n"
        "from remoteproc.firmware.elf import Firmware, find_rsc_table\n"
        "fw = Firmware.from_file(sys.argv[1])\n"
        "img = fw.elf\n"
        "assert find_rsc_table(fw) is not None and img.segments and img.sections\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fw3m.elf")
        with open(path, "wb") as fh:
            fh.write(image)
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, path], check=True)
            best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


BENCHMARKS: dict[str, Callable[[], float]] = {
    "fw_load_ratio": fw_load_ratio,
    "elf_parse_cold_ms": elf_parse_cold_ms,
}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(name, fn())
