"""``rproc fw info``: what a firmware image contains, as Linux's remoteproc sees it.

Rules:
- One description (``describe_firmware``) feeds both the text and the ``--json`` output, so the
  two never disagree.
- The resource table is printed in the kernel's debugfs ``resource_table`` format (spec §2.2), as
  a user would see it on the board after boot, but from the image (before the host's write-backs).
- Bad images are described as far as they can be and the first error is reported in the
  description; nothing here raises for bad input.
"""

from __future__ import annotations

from typing import Any

from remoteproc.errors import RprocError, errno_name
from remoteproc.firmware import elf, elf_layout
from remoteproc.firmware import rsc_table as rt

PT_NAMES = {0: "NULL", 1: "LOAD", 2: "DYNAMIC", 3: "INTERP", 4: "NOTE", 6: "PHDR", 7: "TLS"}
ET_NAMES = {0: "NONE", 1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}


def _flags(p_flags: int) -> str:
    return "".join(c if p_flags & bit else "-" for c, bit in (("R", 4), ("W", 2), ("X", 1)))


def describe_firmware(fw: elf.Firmware) -> dict[str, Any]:
    """A JSON-friendly description: header, segments, entry point, resource table."""
    out: dict[str, Any] = {"file": fw.path or fw.name, "size": fw.size}
    try:
        image = elf.sanity_check(fw.data, file=fw.name)
    except RprocError as exc:
        out["error"] = {"errno": errno_name(exc.errno), "message": str(exc)}
        return out
    out["elf"] = {
        "class": f"ELF{32 if image.elf_class == 1 else 64}",
        "byteorder": "little" if image.byteorder == "<" else "big",
        "machine": image.machine,
        "machine_name": elf_layout.machine_name(image.machine),
        "type": ET_NAMES.get(image.type, str(image.type)),
        "entry": image.entry,
        "flags": image.flags,
    }
    out["segments"] = [
        {
            "index": s.index,
            "type": PT_NAMES.get(s.type, f"{s.type:#x}"),
            "device_address": s.paddr,
            "vaddr": s.vaddr,
            "offset": s.offset,
            "filesz": s.filesz,
            "memsz": s.memsz,
            "flags": _flags(s.flags),
        }
        for s in image.segments
    ]
    section = next((s for s in image.sections if s.name == ".resource_table"), None)
    if section is None:
        out["resource_table"] = None
        return out
    table: dict[str, Any] = {
        "section_index": section.index,
        "file_offset": section.offset,
        "device_address": section.addr,
        "size": section.size,
    }
    end = section.offset + section.size
    if end > fw.size:
        table["error"] = "resource table truncated"
    else:
        view = memoryview(bytes(fw.data[section.offset : end]))
        table.update(rt.describe_table(view, image.byteorder))
        table["debugfs"] = rt.format_resource_table(view, image.byteorder)
    out["resource_table"] = table
    return out


def format_info(info: dict[str, Any]) -> str:
    """The human view of ``describe_firmware``'s result."""
    lines = [f"File:          {info['file']} ({info['size']} bytes)"]
    if "error" in info:
        lines.append(f"Error:         {info['error']['message']}")
        return "\n".join(lines) + "\n"
    e = info["elf"]
    lines.append(
        f"ELF:           {e['class']}, {e['byteorder']}-endian, {e['machine_name']} "
        f"(e_machine {e['machine']}), {e['type']}"
    )
    lines.append(f"Entry point:   {e['entry']:#010x}  (the boot address)")
    lines.append("Segments (loaded at the device address = p_paddr):")
    lines.append("  #  type  device addr  vaddr       offset      file size   mem size    flags")
    for s in info["segments"]:
        lines.append(
            f"  {s['index']:<2} {s['type']:<5} {s['device_address']:#010x}   {s['vaddr']:#010x}  "
            f"{s['offset']:#010x}  {s['filesz']:#010x}  {s['memsz']:#010x}  {s['flags']}"
        )
    table = info["resource_table"]
    if table is None:
        lines.append("Resource table: none (no .resource_table section)")
        return "\n".join(lines) + "\n"
    lines.append(
        f"Resource table: section {table['section_index']} at file offset "
        f"{table['file_offset']:#x}, device address {table['device_address']:#x}, "
        f"{table['size']:#x} bytes"
    )
    if "error" in table and "debugfs" not in table:
        lines.append(f"  {table['error']}")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append(table["debugfs"].rstrip("\n"))
    return "\n".join(lines) + "\n"
