"""Long fuzzing runs (``tools/fuzz.sh``): the CI harnesses of tests/test_fuzz_fw.py and
tests/test_fuzz_parsers.py for as long as asked, in several worker processes, reporting cases per
second, uncaught exceptions and ``fw check``/boot disagreements.

    PYTHONPATH=src python tools/fuzz.py --minutes 10 [--workers N] [--targets fw,machine,...]
                                        [--json]

Targets (each worker runs all it is given, in turns of about ``--slice`` seconds):
- ``fw``: ``fw info``/``check``/``map`` (and their JSON forms) and a full boot of a fuzzed image
  on the in-memory platform; ``fw check`` must agree with the boot (tests/fwfuzz.py);
- ``machine``: mutated machine files and SVDs through ``load_machine_spec`` and a real
  ``EmulatorPlatform`` (tests/machinefuzz.py);
- ``peer``: a hostile remote's resource table attached to by a real ``ProcessPlatform``
  (tests/peerfuzz.py);
- ``abi``: sysfs/debugfs/cdev writes and rpmsg/remoteproc ioctls through the in-process FUSE
  operations (tests/abifuzz.py).

Each case hypothesis generates is followed by ``--mutants`` (default 3) cheap byte-level mutants
of it (tests/fuzzkit.py ``mutate_bytes``; numbers replaced in machine files), each run and
counted as a case of its own: generation costs as much as a run, a mutant only the run.

A case that raises anything the harness does not allow (or a disagreement) is counted by its
first line; the first input of each kind is kept under ``--keep`` (default fuzz-failures/) for
reproduction. A case that runs longer than ``HANG`` seconds is reported as hung (its threads'
stacks are printed when the limit passes). Workers are separate processes (one per core by
default): the harnesses hold the GIL, so threads would not add cases. Exit status 1 if anything
was found.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import logging
import multiprocessing
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

TARGETS = ("fw", "machine", "peer", "abi")
BATCH = 50  # examples per hypothesis run: small, so the deadline is never overrun by much
HANG = 10.0  # seconds: a case (or a worker's start) taking longer is reported as hanging


Mutator = Callable[[Any, random.Random], Any]


def _target(name: str) -> tuple[Any, Callable[[Any], str | None], Mutator, Callable[[], None]]:
    """(strategy, run one case -> disagreement or None, mutant maker, close) of a target,
    built in the worker (each has its own files, sockets, host)."""
    from fuzzkit import mutate_bytes

    if name == "fw":
        from fwfuzz import Harness, compare, images
        from hypothesis import strategies as st
        from test_elf_fuzz import mutated, synthetic

        fw = Harness()
        strategy = st.one_of(images(), images(), synthetic(), mutated().map(lambda c: c[0]))
        return strategy, lambda data: compare(fw.run(data)), mutate_bytes, fw.close
    if name == "machine":
        from machinefuzz import MACHINES, MachineHarness
        from machinefuzz import mutate as mutate_machine

        mh = MachineHarness()

        def machine(case: tuple[bytes, str | None]) -> None:
            mh.run(*case)

        return MACHINES, machine, mutate_machine, mh.close
    if name == "peer":
        from peerfuzz import LAY, PeerTableHarness, expected_errno, tables

        ph = PeerTableHarness()

        def peer(table: bytes) -> str | None:
            err = ph.run(table)
            return None if expected_errno(err) else f"unexpected errno: {err}"

        def mutate_table(table: bytes, rng: random.Random) -> bytes:
            return mutate_bytes(table, rng)[: LAY.rsc_max]

        return tables(), peer, mutate_table, ph.close
    if name == "abi":
        from abifuzz import CALLS, AbiHarness
        from abifuzz import mutate as mutate_call

        ah = AbiHarness()

        def abi(call: tuple[object, ...]) -> None:
            ah.run(call)

        return CALLS, abi, mutate_call, ah.close
    raise SystemExit(f"unknown target {name!r} (expected {', '.join(TARGETS)})")


def _keep(keep: Path, target: str, kind: str, key: str, case: Any) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    stem = keep / f"{target}-{kind}-{abs(hash(key)) % 10**8}"
    if isinstance(case, bytes):
        stem.with_suffix(".bin").write_bytes(case)
    else:
        stem.with_suffix(".txt").write_text(repr(case) + "\n")


def worker(index: int, targets: list[str], seconds: float, slice_s: float, mutants: int,
           keep: Path, out: Any) -> None:
    """One process: build the targets' harnesses, run them in turns until the deadline, send
    the counts back as a dict."""
    from hypothesis import HealthCheck, Phase, given, settings

    # Forked workers share the parent's random state, which seeds hypothesis's runs: give
    # each its own, so the workers do not repeat each other's cases.
    random.seed(os.urandom(16))

    # Refusals log by design; the root level silences them (not logging.disable: the ABI
    # harness keeps its own logger's "unexpected error" records, its invariant).
    logging.getLogger().setLevel(logging.CRITICAL)
    deadline = time.monotonic() + seconds
    cases: collections.Counter[str] = collections.Counter()
    crashes: collections.Counter[str] = collections.Counter()
    disagreements: collections.Counter[str] = collections.Counter()
    slow: collections.Counter[str] = collections.Counter()
    faulthandler.dump_traceback_later(HANG, exit=False)
    built = {t: _target(t) for t in targets}
    faulthandler.cancel_dump_traceback_later()
    runners = {}
    rng = random.Random(os.urandom(16))

    def check(target: str, run: Callable[[Any], str | None], case: Any) -> None:
        cases[target] += 1
        started = time.monotonic()
        # A case that hangs is a finding too: its threads' stacks go to stderr after HANG s.
        faulthandler.dump_traceback_later(HANG, exit=False)
        try:
            why = run(case)
        except Exception as exc:  # the point: count anything that escapes
            key = f"{target}: {type(exc).__name__}: {exc}".splitlines()[0][:200]
            if not crashes[key]:
                _keep(keep, target, "crash", key, case)
                print(f"[worker {index}] uncaught: {key}\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
            crashes[key] += 1
            return
        finally:
            faulthandler.cancel_dump_traceback_later()
            took = time.monotonic() - started
            if took > HANG:
                key = f"{target}: a case took {took:.0f} s"
                if not slow[key]:
                    _keep(keep, target, "slow", key, case)
                slow[key] += 1
        if why is not None:
            key = f"{target}: {why}"[:200]
            if not disagreements[key]:
                _keep(keep, target, "disagree", key, case)
                print(f"[worker {index}] {key}", file=sys.stderr, flush=True)
            disagreements[key] += 1

    for target, (strategy, run, mutate, _c) in built.items():

        def make(target: str, strategy: Any, run: Callable[[Any], str | None],
                 mutate: Mutator) -> Any:
            @settings(max_examples=BATCH, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def one(case: Any) -> None:
                for k in range(mutants + 1):
                    if time.monotonic() > deadline:
                        return
                    check(target, run, case if k == 0 else mutate(case, rng))

            return one

        runners[target] = make(target, strategy, run, mutate)
    start = time.monotonic()
    try:
        while time.monotonic() < deadline:
            for target in targets:
                turn_end = min(deadline, time.monotonic() + slice_s)
                while time.monotonic() < turn_end:
                    runners[target]()
    finally:
        for _s, _r, _h, close in built.values():
            close()
    out.put({"worker": index, "seconds": time.monotonic() - start, "cases": dict(cases),
             "crashes": dict(crashes), "disagreements": dict(disagreements),
             "slow": dict(slow)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, from {', '.join(TARGETS)}")
    ap.add_argument("--slice", type=float, default=5.0,
                    help="seconds each target runs before the next one's turn")
    ap.add_argument("--mutants", type=int, default=3,
                    help="byte-level mutants run after each generated case (0: none)")
    ap.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r} (expected {', '.join(TARGETS)})")
    # fork: the workers start at once with the modules already imported here (none heavy).
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    seconds = args.minutes * 60
    start = time.monotonic()
    procs = [ctx.Process(target=worker, args=(i, targets, seconds, args.slice, args.mutants,
                                                  args.keep, out),
                         name=f"fuzz-{i}") for i in range(max(1, args.workers))]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        # Every worker reports once; a worker that died (a crash of the interpreter itself) is
        # reported as such instead of hanging the run.
        while True:
            try:
                results.append(out.get(timeout=5.0))
                break
            except Exception:
                if not any(q.is_alive() for q in procs) and out.empty():
                    break
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    died = [p.name for p in procs if p.exitcode != 0]
    cases: collections.Counter[str] = collections.Counter()
    crashes: collections.Counter[str] = collections.Counter()
    disagreements: collections.Counter[str] = collections.Counter()
    slow: collections.Counter[str] = collections.Counter()
    for r in results:
        cases.update(r["cases"])
        crashes.update(r["crashes"])
        disagreements.update(r["disagreements"])
        slow.update(r["slow"])
    total = sum(cases.values())
    summary = {
        "cases": total,
        "seconds": round(elapsed, 1),
        "workers": len(procs),
        "cases_per_second": round(total / elapsed, 1) if elapsed else 0.0,
        "per_target": {t: {"cases": cases[t], "cases_per_second": round(cases[t] / elapsed, 1)}
                       for t in targets},
        "uncaught_exceptions": sum(crashes.values()),
        "disagreements": sum(disagreements.values()),
        "hung_cases": sum(slow.values()),
        "workers_died": died,
        "distinct": {"uncaught": dict(crashes), "disagreements": dict(disagreements),
                     "hung": dict(slow)},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        per = ", ".join(f"{t} {cases[t]} ({cases[t] / elapsed:.0f}/s)" for t in targets)
        print(f"{total} cases in {summary['seconds']} s with {len(procs)} workers "
              f"({summary['cases_per_second']} cases/s; {per}): "
              f"{summary['uncaught_exceptions']} uncaught exceptions, "
              f"{summary['disagreements']} disagreements, {summary['hung_cases']} cases over "
              f"{HANG:g} s" + (f", workers died: {', '.join(died)}" if died else ""))
    return 1 if crashes or disagreements or slow or died else 0


if __name__ == "__main__":
    sys.exit(main())
