"""`rproc --root DIR CMD` and `rproc CMD --root DIR` name the same tree; the later one wins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _tree(base: Path, name: str) -> Path:
    proc = base / "sys" / "class" / "remoteproc" / "remoteproc0"
    proc.mkdir(parents=True)
    (proc / "name").write_text(f"{name}\n")
    (proc / "state").write_text("offline\n")
    (proc / "firmware").write_text(f"rproc-{name}-fw\n")
    return base


def _list(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "remoteproc.cli", *args],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_group_root_and_command_root(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", "alpha")
    b = _tree(tmp_path / "b", "beta")
    assert [p["name"] for p in _list("--root", str(a), "list", "--json")] == ["alpha"]
    assert [p["name"] for p in _list("list", "--json", "--root", str(b))] == ["beta"]
    both = _list("--root", str(a), "list", "--json", "--root", str(b))
    assert [p["name"] for p in both] == ["beta"]
