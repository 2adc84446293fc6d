"""Stress: 8 threads issuing boot / shutdown / detach / report_crash / set_firmware /
trigger_recovery at random on 16 processors, with failures injected at random steps.

Checks: no deadlock (every thread finishes), power never negative, states always valid and every
published state change legal in the transition table, and nothing leaked once everything is
stopped (carveouts, tables, notify ids, DMA memory, worker threads).

``RPROC_STRESS_SECONDS`` sets the duration of the slow test (default 30).
"""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import random
import sys
import threading
import time

import pytest
from conftest import wait_until
from test_core_support import image

from remoteproc.core.events import Event, EventKind
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import TRANSITIONS, Feature, State
from remoteproc.errors import RprocError
from remoteproc.platforms.sim import RecordingSubdev, SimPlatform

EXPECTED_ERRNOS = {errno.EINVAL, errno.EBUSY, errno.ENOENT, errno.EIO, errno.EINTR}
VALID_STATES = {s for s in State if s is not State.LAST}
LEGAL_EDGES = {(a.sysfs, b.sysfs) for (a, _), b in TRANSITIONS.items()}
FAILABLE = ["prepare", "start", "stop", "attach", "detach", "load", "A.start", "A.prepare"]


def run_stress(seconds: float, n_rprocs: int = 16, n_threads: int = 8, seed: int = 1) -> dict:
    rnd = random.Random(seed)
    threads_before = threading.active_count()
    host = Host([], panic_hook=False, workers=4)
    img = image()
    host.add_firmware("fw-a", img)
    host.add_firmware("fw-b", img)
    sims: list[SimPlatform] = []
    rprocs: list[Rproc] = []
    problems: list[str] = []
    plock = threading.Lock()

    def problem(text: str) -> None:
        with plock:
            problems.append(text)

    def on_event(ev: Event) -> None:
        if ev.kind is EventKind.STATE and (ev.old, ev.state) not in LEGAL_EDGES:
            problem(f"illegal transition published: {ev}")

    host.subscribe(on_event)
    for i in range(n_rprocs):
        attach_kind = i % 2 == 1
        sim = SimPlatform(f"p{i}", regions=[("shm", None, 0x1000)] if i % 4 == 0 else ())
        features = [Feature.ATTACH_ON_RECOVERY] if i % 4 == 3 else []
        if attach_kind:
            sim.preload(img)
        rp = sim.make_rproc(
            f"p{i}",
            state=State.DETACHED if attach_kind else State.OFFLINE,
            features=features,
            firmware="fw-a",
            auto_boot=(i % 3 == 0),
        )
        rp.add_subdev(RecordingSubdev(sim, "A"))
        host.add(rp)
        sims.append(sim)
        rprocs.append(rp)

    stop = threading.Event()
    counts = {"ops": 0, "errors": 0}
    cancel = threading.Event()  # never set: exercises the polling lock path

    def worker(wseed: int) -> None:
        wr = random.Random(wseed)
        while not stop.is_set():
            i = wr.randrange(n_rprocs)
            rp, sim = rprocs[i], sims[i]
            # Drain the call log now and then so memory stays flat.
            if wr.random() < 0.05:
                sim.take_calls()
            if wr.random() < 0.08:
                sim.fail_at(wr.choice(FAILABLE), errno.EIO)
            op = wr.random()
            try:
                if op < 0.28:
                    rp.boot(cancel=cancel)
                elif op < 0.52:
                    rp.shutdown()
                elif op < 0.62:
                    rp.detach()
                elif op < 0.74:
                    rp.report_crash(wr.randrange(3))
                elif op < 0.84:
                    rp.set_firmware(wr.choice(["fw-a", "fw-b", "missing-fw"]))
                elif op < 0.90:
                    rp.trigger_recovery()
                elif op < 0.95:
                    rp.recovery_disabled = wr.random() < 0.3
                else:
                    rp.set_coredump(wr.choice(["disabled", "enabled"]))
            except RprocError as exc:
                if exc.errno not in EXPECTED_ERRNOS:
                    problem(f"{rp.dev_name}: unexpected {exc!r}")
                with plock:
                    counts["errors"] += 1
            except Exception as exc:
                problem(f"{rp.dev_name}: {type(exc).__name__}: {exc}")
            with plock:
                counts["ops"] += 1

    def checker() -> None:
        while not stop.is_set():
            for rp in rprocs:
                if rp.power < 0:
                    problem(f"{rp.dev_name}: negative power {rp.power}")
                if rp.state not in VALID_STATES:
                    problem(f"{rp.dev_name}: invalid state {rp.state}")
            stop.wait(0.002)  # a sampling period, not a wait for something

    workers = [threading.Thread(target=worker, args=(rnd.random(),)) for _ in range(n_threads)]
    chk = threading.Thread(target=checker)
    for t in [*workers, chk]:
        t.start()
    # The run length is the test's parameter (a bounded observation, not a wait for
    # something); it ends early on the first problem, reported below once threads are joined.
    end = time.monotonic() + seconds
    while not problems and time.monotonic() < end:
        stop.wait(0.01)
    stop.set()
    for t in [*workers, chk]:
        t.join(30)
        if t.is_alive():
            faulthandler.dump_traceback(file=sys.stderr)
            pytest.fail("deadlock: a stress thread did not finish")

    # Let pending crash handling finish, then bring everything down by hand.
    assert host.workqueue.flush(30), "recovery work did not drain"
    for sim in sims:
        sim.clear_failures()
    for rp in rprocs:
        rp.recovery_disabled = True
        # Every boot of a CRASHED processor only took a reference (§1.4), so the count can be
        # large: one shutdown per reference.
        for _ in range(rp.power + 1):
            if rp.state not in (State.RUNNING, State.ATTACHED, State.CRASHED):
                break
            rp.shutdown()
        assert rp.state in (State.OFFLINE, State.DETACHED), rp
        assert rp.power == 0, rp
        assert rp.carveouts == [] and rp.table_ptr is None and rp.cached_table is None, rp
        assert rp.clean_table is None and rp.table_sz == 0, rp
        assert rp.notifyids == {} and rp.rvdevs == [] and rp.traces == [], rp
        assert [type(s).__name__ for s in rp.subdevs] == ["RecordingSubdev"], rp
    for sim in sims:
        assert sim.dma.allocations == len(sim.regions), sim.name
    host.close()
    for sim in sims:
        sim.close()
    wait_until(lambda: threading.active_count() <= threads_before, 5, "worker threads to end")
    assert threading.active_count() <= threads_before, "worker threads leaked"
    assert not problems, problems[:10]
    return {**counts, "crashes": sum(rp.crash_cnt for rp in rprocs)}


@pytest.fixture(autouse=True)
def quiet_logs() -> object:
    """Thousands of crash reports a second: keep the kernel-style log out of the capture."""
    logger = logging.getLogger("remoteproc")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


def test_stress_short() -> None:
    result = run_stress(1.5, seed=7)
    assert result["ops"] > 500
    assert result["crashes"] > 0


@pytest.mark.slow
def test_stress_long() -> None:
    seconds = float(os.environ.get("RPROC_STRESS_SECONDS", "30"))
    result = run_stress(seconds, seed=int(time.time()))
    assert result["ops"] > 1000
