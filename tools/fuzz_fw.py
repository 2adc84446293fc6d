"""Long firmware fuzzing runs (``tools/fuzz.sh``): the CI harness of tests/test_fuzz_fw.py for
as long as asked, reporting cases per second, uncaught exceptions and disagreements between
``fw check`` and a real boot on the in-memory platform.

    PYTHONPATH=src python tools/fuzz_fw.py --minutes 10 [--json]

Every case runs ``fw info``/``check``/``map`` (and their JSON forms) and a full boot; a case that
raises anything but RprocError, or where ``fw check`` and the boot disagree, is counted and its
first image is kept under --keep (default: fuzz-failures/) for reproduction."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from fwfuzz import Harness, compare, images  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_elf_fuzz import mutated, synthetic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    harness = Harness()
    crashes: collections.Counter[str] = collections.Counter()
    disagreements: collections.Counter[str] = collections.Counter()
    strategy = st.one_of(images(), images(), synthetic(), mutated().map(lambda c: c[0]))
    deadline = time.monotonic() + args.minutes * 60

    def keep(kind: str, key: str, data: bytes) -> None:
        args.keep.mkdir(parents=True, exist_ok=True)
        path = args.keep / f"{kind}-{abs(hash(key)) % 10**8}.elf"
        if not path.exists():
            path.write_bytes(data)

    @settings(max_examples=2000, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=strategy)
    def one(data: bytes) -> None:
        if time.monotonic() > deadline:
            return
        try:
            why = compare(harness.run(data))
        except Exception as exc:  # the point: count anything that escapes
            key = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            if not crashes[key]:
                keep("crash", key, data)
                print(f"uncaught: {key}\n{traceback.format_exc()}", file=sys.stderr)
            crashes[key] += 1
            return
        if why is not None:
            key = why[:160]
            if not disagreements[key]:
                keep("disagree", key, data)
                print(f"disagreement: {why}", file=sys.stderr)
            disagreements[key] += 1

    start = time.monotonic()
    while time.monotonic() < deadline:
        one()
    elapsed = time.monotonic() - start
    summary = {
        "cases": harness.cases,
        "seconds": round(elapsed, 1),
        "cases_per_second": round(harness.cases / elapsed, 1),
        "uncaught_exceptions": sum(crashes.values()),
        "disagreements": sum(disagreements.values()),
        "distinct": {"uncaught": dict(crashes), "disagreements": dict(disagreements)},
    }
    harness.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['cases']} cases in {summary['seconds']} s "
              f"({summary['cases_per_second']} cases/s): {summary['uncaught_exceptions']} "
              f"uncaught exceptions, {summary['disagreements']} fw check/boot disagreements")
    return 1 if crashes or disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
