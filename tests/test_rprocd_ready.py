"""rprocd announces "serving" only once its processors have settled: a script that starts
right after the line sees the auto-booted core running, not a boot still in flight."""

from __future__ import annotations

from pathlib import Path

from test_abi_support import read_text
from test_rprocd import Rprocd


def test_auto_boot_is_done_when_serving_is_printed(tmp_path: Path) -> None:
    d = Rprocd(tmp_path / "root", "--firmware-dir", str(tmp_path / "fw"))
    try:
        base = d.root / "sys/class/remoteproc"
        states = {
            read_text(base / n / "name").strip(): read_text(base / n / "state")
            for n in sorted(p.name for p in base.iterdir())
        }
        assert states == {"m4": "running\n", "rv": "offline\n", "m4-early": "attached\n"}
    finally:
        d.kill()
