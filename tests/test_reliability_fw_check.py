"""``rproc fw check`` on images whose refusal carries its own location: exit 2 with the reason.

The adversarial run found a KeyError traceback (exit 1, "boots with warnings") whenever the
loader's or codec's error already named the entry, offset, address or what it was about.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from click.testing import CliRunner
from elfbuild import Seg, build_elf, resource_table, rsc_carveout, rsc_vdev

from remoteproc.cli import main


def image(tmp_path: Path, table: bytes, name: str) -> str:
    built = build_elf([Seg(bytes(16), paddr=0x1000)], rsc_table=table)
    path = tmp_path / name
    path.write_bytes(bytes(built.data))
    return str(path)


def entry_offset_past_table() -> bytes:
    table = bytearray(resource_table([rsc_carveout(0x1000, 0x100, "c")]))
    struct.pack_into("<I", table, 16, 0x400)
    return bytes(table)


def truncated_vdev() -> bytes:
    return resource_table([rsc_vdev()[:20]])


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_entry_offset_past_the_table_is_refused_with_exit_2(tmp_path: Path) -> None:
    fw = image(tmp_path, entry_offset_past_table(), "past.elf")
    code, out = run("fw", "check", fw)
    assert code == 2, out
    assert "resource entry 0 at offset 0x400" in out
    assert "truncated [EINVAL]" in out
    code, out = run("fw", "check", "--json", fw)
    assert code == 2
    doc = json.loads(out)
    (finding,) = [f for f in doc["findings"] if f["severity"] == "error"]
    assert finding["code"] == "rsc-truncated"
    assert finding["offset"] == 0x400 and finding["index"] == 0


def test_truncated_vdev_body_is_refused_with_exit_2(tmp_path: Path) -> None:
    fw = image(tmp_path, truncated_vdev(), "vdev.elf")
    code, out = run("fw", "check", fw)
    assert code == 2, out
    assert "vdev rsc is truncated [EINVAL]" in out
    doc = json.loads(run("fw", "check", "--json", fw)[1])
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["vdev-invalid"]
