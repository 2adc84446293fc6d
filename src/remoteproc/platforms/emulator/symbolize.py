"""PC -> "function+offset (file:line)" and the instruction there, for crash reports.

Owns ``Symbolizer`` (built once per firmware image from its ELF symbols and, when present, its
DWARF line table, with pyelftools), ``disassemble`` (one instruction with capstone) and
``find_symbol_file`` (the unstripped twin of a stripped image).

Symbols for stripped images (docs/virtual-soc.md "Symbols"): vendors ship the image stripped
and keep the symbols apart. In this order, the first that exists is used:
1. a symbol file named explicitly (``rprocd --symbols CORE=FILE``, the machine file's
   ``symbols``, or installed by ``rproc firmware --symbols`` as rule 3's name);
2. the image's ``.gnu_debuglink`` file (``objcopy --add-gnu-debuglink``), beside the image or in
   ``.debug/`` beside it (GDB's rule);
3. ``IMAGE.debug`` beside the image (``fw.elf`` -> ``fw.elf.debug``), then ``STEM.debug``
   (``fw.debug``, objcopy's ``--only-keep-debug`` habit);
4. ``.debug/IMAGE`` beside the image (Yocto's split debug packages);
5. ``STEM-unstripped.elf`` / ``STEM.unstripped`` beside the image.
A twin is used only if its symbol table is not empty; the image itself is used when it has one.

Rules:
- Pure and best effort: a stripped image still gives ``0x1234``; a broken DWARF section is
  ignored, never raised (a crash report must not fail because of debug info).
- A ``Symbolizer`` is immutable after construction, so ``symbolizer_for`` shares one per image
  content (keyed by a BLAKE2 digest of the bytes, so a rebuilt file with the same name is parsed
  again) across processors and machines of the process: DWARF parsing takes 40-120 ms, and the
  pytest plugin builds a fresh machine per test (every crash test paid it). The cache holds the
  last ``_CACHE_SIZE`` images; its lock only guards the dict (parsing runs outside it).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import os
import threading
from collections import OrderedDict

__all__ = ["Symbolizer", "disassemble", "symbolizer_for"]

_CACHE_SIZE = 16
_cache: OrderedDict[tuple[bytes, bool], Symbolizer] = OrderedDict()
_cache_lock = threading.Lock()


class Symbolizer:
    def __init__(self, image: bytes, *, lines: bool = True) -> None:
        self._want_lines = lines
        self.functions: list[tuple[int, int, str]] = []  # (start, size, name), sorted
        self.lines: list[tuple[int, str, int]] = []  # (address, file, line), sorted
        self.machine = ""
        with contextlib.suppress(Exception):  # best effort: see the module rules
            self._load(image)
        self._starts = [f[0] for f in self.functions]
        self._line_addrs = [r[0] for r in self.lines]

    def _load(self, image: bytes) -> None:
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        elf = ELFFile(io.BytesIO(image))
        self.machine = str(elf["e_machine"])
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                kind = sym["st_info"]["type"]
                # Functions, and plain code labels of hand-written assembly (not the ARM mapping
                # symbols $t/$d/$a nor local .L labels).
                if not sym.name or sym.name.startswith(("$", ".L")):
                    continue
                if kind == "STT_FUNC" or (kind == "STT_NOTYPE" and sym["st_shndx"] != "SHN_UNDEF"
                                          and sym["st_shndx"] != "SHN_ABS"):
                    start = int(sym["st_value"]) & ~1  # Thumb bit
                    self.functions.append((start, int(sym["st_size"]), sym.name))
        self.functions.sort()
        if not self._want_lines or not elf.has_dwarf_info():
            return
        try:
            dwarf = elf.get_dwarf_info()
            for cu in dwarf.iter_CUs():
                prog = dwarf.line_program_for_CU(cu)
                if prog is None:
                    continue
                header = prog.header
                files = header["file_entry"]
                version = int(header["version"])
                for entry in prog.get_entries():
                    st = entry.state
                    if st is None or st.end_sequence:
                        continue
                    idx = st.file if version >= 5 else st.file - 1
                    name = "?"
                    if 0 <= idx < len(files):
                        raw = files[idx].name
                        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(
                            raw)
                    self.lines.append((int(st.address), os.path.basename(name), int(st.line)))
            self.lines.sort()
        except Exception:
            self.lines = []

    def function(self, pc: int) -> tuple[str, int] | None:
        """``(name, offset)`` of the function holding ``pc``."""
        i = bisect.bisect_right(self._starts, pc) - 1
        if i < 0:
            return None
        start, size, name = self.functions[i]
        if size and pc >= start + size:
            return None
        return name, pc - start

    def line(self, pc: int) -> tuple[str, int] | None:
        """``(file, line)`` of the last line-table row at or before ``pc``."""
        i = bisect.bisect_right(self._line_addrs, pc) - 1
        if i < 0:
            return None
        _, name, line = self.lines[i]
        fn = self.function(pc)
        # Rows past the end of a function belong to something else: only trust rows inside it.
        if fn is not None and self.lines[i][0] < pc - fn[1]:
            return None
        return name, line

    def describe(self, pc: int) -> str:
        """``"vsoc_fatal+0x8 (board.c:151)"``, ``"main+0x4"`` or ``"0x1234"``."""
        fn = self.function(pc)
        text = f"{fn[0]}+{fn[1]:#x}" if fn else f"{pc:#x}"
        ln = self.line(pc)
        if ln:
            text += f" ({ln[0]}:{ln[1]})"
        return text


def symbolizer_for(image: bytes, *, lines: bool = True) -> Symbolizer:
    """The ``Symbolizer`` of ``image``, shared with every earlier caller that asked for the same
    bytes and the same ``lines`` (see the module rules; a names-only one never answers with
    file:line, whatever else was parsed before, so reports do not depend on history)."""
    key = (hashlib.blake2b(image, digest_size=20).digest(), lines)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    sym = Symbolizer(image, lines=lines)
    with _cache_lock:
        _cache[key] = sym
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return sym


def has_symbols(image: bytes) -> bool:
    """Does the ELF image name any function (is it not stripped)?"""
    return bool(symbolizer_for(image, lines=False).functions)


def _debuglink(image: bytes) -> str | None:
    with contextlib.suppress(Exception):
        from elftools.elf.elffile import ELFFile

        sec = ELFFile(io.BytesIO(image)).get_section_by_name(".gnu_debuglink")
        if sec is not None:
            raw = sec.data()
            name = raw[: raw.index(b"\0")].decode("utf-8")
            if name and "/" not in name:
                return name
    return None


def find_symbol_file(image_path: str | None, image: bytes, explicit: str | None = None
                     ) -> str | None:
    """The file to take symbols from for ``image`` (see the module docstring), or None when
    the image has its own symbols and nothing was named."""
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    if image_path is None or has_symbols(image):
        return None
    folder, base = os.path.split(image_path)
    stem = os.path.splitext(base)[0]
    candidates: list[str] = []
    link = _debuglink(image)
    if link:
        candidates += [os.path.join(folder, link), os.path.join(folder, ".debug", link)]
    candidates += [os.path.join(folder, base + ".debug"), os.path.join(folder, stem + ".debug"),
                   os.path.join(folder, ".debug", base),
                   os.path.join(folder, stem + "-unstripped.elf"),
                   os.path.join(folder, stem + ".unstripped")]
    for c in candidates:
        if os.path.isfile(c) and os.path.realpath(c) != os.path.realpath(image_path):
            with contextlib.suppress(OSError), open(c, "rb") as fh:
                if has_symbols(fh.read()):
                    return c
    return None


def disassemble(code: bytes, pc: int, arch: str, bits: int = 32) -> str:
    """The first instruction of ``code`` (at ``pc``) as ``"ldr r0, [r1]"``; ``""`` if unknown."""
    try:
        import capstone

        if arch == "arm":
            md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        else:
            mode = capstone.CS_MODE_RISCV64 if bits == 64 else capstone.CS_MODE_RISCV32
            md = capstone.Cs(capstone.CS_ARCH_RISCV, mode | capstone.CS_MODE_RISCVC)
        for insn in md.disasm(code, pc, 1):
            return f"{insn.mnemonic} {insn.op_str}".strip()
        return f".word {int.from_bytes(code[:4], 'little'):#010x}" if len(code) >= 4 else ""
    except Exception:
        return ""
