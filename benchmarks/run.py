"""Run the project's benchmarks and print the named figures as JSON.

    python benchmarks/run.py                 # every benchmark, JSON on stdout
    python benchmarks/run.py --json OUT.json # also write them to a file
    python benchmarks/run.py --only fw_load_ratio --only emu_mips
    python benchmarks/run.py --list

Each ``benchmarks/bench_*.py`` module defines ``BENCHMARKS: dict[str, Callable[[], float]]``.
Every figure is measured in a fresh Python process, so one benchmark's imports, threads and
memory never colour another's (``rprocs_256_rss_mb`` measures resident memory growth, for one).
Figures that are ratios are measured inside one process run, against a baseline taken in the
same run: this machine is shared and noisy, so absolute times are reported but ratios are what
the targets are set on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses and pickling look their module up in sys.modules while it executes
    sys.modules[spec.name] = module
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec.loader.exec_module(module)
    return module


def discover() -> dict[str, Path]:
    """name -> module path, for every figure every bench module declares."""
    found: dict[str, Path] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        module = _load(path)
        table: dict[str, Callable[[], float]] = getattr(module, "BENCHMARKS", {})
        for name in table:
            if name in found:
                raise SystemExit(f"benchmark {name!r} declared twice ({found[name]}, {path})")
            found[name] = path
    return found


def _child(path: Path, name: str) -> None:
    module = _load(path)
    from bench_support import NotMeasured

    try:
        value = module.BENCHMARKS[name]()
    except NotMeasured as exc:
        print(json.dumps({"value": None, "not_measured": str(exc)}))
        return
    print(json.dumps({"value": value}))


def run_one(name: str, path: Path, timeout: float) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(path), name],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": "\n".join(tail), "seconds": round(elapsed, 1)}
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if "not_measured" in last:
        return {"not_measured": last["not_measured"], "seconds": round(elapsed, 1)}
    return {"value": last["value"], "seconds": round(elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this file")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only these figures")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per figure")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        _child(Path(args.child[0]), args.child[1])
        return 0

    table = discover()
    if args.list:
        for name, path in table.items():
            print(f"{name}\t{path.name}")
        return 0
    names = args.only or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2

    figures: dict[str, object] = {}
    details: dict[str, object] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = run_one(name, table[name], args.timeout)
        details[name] = result
        if "not_measured" in result:
            figures[name] = "not measured"
        else:
            figures[name] = result.get("value")
        shown = result.get("value", result.get("error", result.get("not_measured")))
        print(f"  {name} = {shown}  ({result['seconds']} s)", file=sys.stderr, flush=True)

    report = {
        "figures": figures,
        "details": details,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if all(v is not None for v in figures.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
