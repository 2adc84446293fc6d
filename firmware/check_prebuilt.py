#!/usr/bin/env python3
"""Rebuild the firmware and check that the committed images still match their sources.

The ELF images under firmware/prebuilt/ (fixtures) and src/remoteproc/data/firmware/ (examples)
are committed so that tests and users need no cross compiler. This script rebuilds everything
into firmware/out/ with `make`, then compares, for each pair of folders

    firmware/out/fixtures/   <->  firmware/prebuilt/
    firmware/out/examples/   <->  src/remoteproc/data/firmware/   (when examples were built)

- the set of *.elf images (one missing on either side is a mismatch), and
- the bytes of each image's `.resource_table` section (absent on both sides is a match).

The rest of an image (code, symbols) may differ between compiler builds; the resource table is
what the loader, the host and `rproc fw check` act on, and it must not drift from the source.

Exit status: 0 all match, 1 a mismatch (a diff is printed), 2 the build failed.

    python3 firmware/check_prebuilt.py              # make, then compare
    python3 firmware/check_prebuilt.py --no-build   # compare what firmware/out/ has
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

FIRMWARE = Path(__file__).resolve().parent
REPO = FIRMWARE.parent
RSC_SECTION = ".resource_table"


@dataclass(frozen=True)
class Pair:
    label: str
    built: Path
    committed: Path
    source: Path | None = None  # the folder whose Makefile builds `built`


def default_pairs(firmware: Path = FIRMWARE) -> list[Pair]:
    out = firmware / "out"
    return [
        Pair("fixtures", out / "fixtures", firmware / "prebuilt", firmware / "fixtures"),
        Pair(
            "examples",
            out / "examples",
            firmware.parent / "src/remoteproc/data/firmware",
            firmware / "examples",
        ),
    ]


def rsc_table_bytes(path: Path) -> bytes | None:
    """The `.resource_table` section's file bytes, or None when the image has no such section."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(RSC_SECTION)
        if section is None:
            return None
        return bytes(section.data())


def _hexlines(data: bytes) -> list[str]:
    return [data[i : i + 16].hex(" ") for i in range(0, len(data), 16)]


def table_diff(built: bytes | None, committed: bytes | None) -> list[str]:
    """Human-readable differences between two tables; empty when they are equal."""
    if built == committed:
        return []
    if built is None or committed is None:
        which = "rebuilt image" if built is None else "committed image"
        return [f"  {RSC_SECTION} missing in the {which}"]
    lines = []
    if len(built) != len(committed):
        lines.append(f"  size: rebuilt {len(built):#x}, committed {len(committed):#x}")
    new, old = _hexlines(built), _hexlines(committed)
    for i in range(max(len(new), len(old))):
        a = new[i] if i < len(new) else ""
        b = old[i] if i < len(old) else ""
        if a != b:
            lines.append(f"  +{i * 16:#06x} committed: {b}")
            lines.append(f"  +{i * 16:#06x} rebuilt:   {a}")
    return lines


def compare_dirs(built: Path, committed: Path) -> list[str]:
    """Every mismatch between a build folder and a committed folder, as printable lines."""
    new = {p.name: p for p in sorted(built.glob("*.elf"))}
    old = {p.name: p for p in sorted(committed.glob("*.elf"))} if committed.is_dir() else {}
    problems: list[str] = []
    for name in sorted(new.keys() - old.keys()):
        problems.append(f"{name}: built but not committed in {committed} (run make install)")
    for name in sorted(old.keys() - new.keys()):
        problems.append(f"{name}: committed in {committed} but no longer built")
    for name in sorted(new.keys() & old.keys()):
        diff = table_diff(rsc_table_bytes(new[name]), rsc_table_bytes(old[name]))
        if diff:
            problems.append(f"{name}: {RSC_SECTION} differs from the committed image")
            problems.extend(diff)
    return problems


def build(firmware: Path = FIRMWARE) -> bool:
    result = subprocess.run(["make", "-C", str(firmware), "all"], check=False)
    return result.returncode == 0


def check(pairs: list[Pair]) -> int:
    failed = False
    for pair in pairs:
        if pair.source is not None and not (pair.source / "Makefile").is_file():
            # `make` skips a folder without a Makefile; a leftover out/ folder would be stale.
            print(f"{pair.label}: {pair.source} has no Makefile, skipped")
            continue
        if not pair.built.is_dir():
            print(f"{pair.label}: {pair.built} was not built, skipped")
            continue
        problems = compare_dirs(pair.built, pair.committed)
        count = len(list(pair.built.glob("*.elf")))
        if problems:
            failed = True
            print(f"{pair.label}: MISMATCH between {pair.built} and {pair.committed}")
            for line in problems:
                print(f"  {line}")
        else:
            print(f"{pair.label}: {count} images match {pair.committed}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="compare without running make")
    args = parser.parse_args(argv)
    if not args.no_build and not build():
        print("firmware build failed", file=sys.stderr)
        return 2
    return check(default_pairs())


if __name__ == "__main__":
    sys.exit(main())
