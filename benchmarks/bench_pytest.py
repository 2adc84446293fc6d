"""The pytest plugin's figures: what a test with a fresh emulated machine costs, and what xdist
gains.

pytest_test_overhead_ms: one pytest run (a new process) of 30 tests that each get a fresh
machine through the ``remoteproc`` fixture (the bundled machine: m4 auto-boots the rpmsg echo
firmware, m4-early is attached, rv is offline), then echo one message on m4's ``rpmsg-raw``
and stop m4, interleaved with 30 empty tests. Each test's setup + call + teardown time is taken
from its reports; the figure is the median of the machine tests minus the median of the empty
ones. Target: <= 100 ms. (m4's start is the auto-boot the fixture waits for.)
pytest_test_overhead_cpu_ms: the CPU time of one such machine test (no target: it shows
progress when other tenants of the machine make wall times swing; see its docstring).

pytest_xdist_speedup_2: the same 40 tests (10 each of: echo, a trace expectation, a crash
followed by recovery and an echo, starting the RISC-V core and expecting its banner), run as
``pytest -n 0`` and ``pytest -n 2`` in the same benchmark run; the figure is the wall time of
the first over the second, whole commands (interpreter and worker start-up included), after
one unmeasured ``-n 2`` run of 4 of the tests that writes the bytecode caches. Target: >= 1.6.

Both run pytest as ``pip install remoteproc pytest-xdist`` leaves it (``_pytest``): plugin
autoloading off and exactly this plugin and xdist loaded, and bytecode caches written. In this
project's environment autoloading would also bring hypothesis's plugin, which imports all of
hypothesis (~0.7 s of CPU) at the end of every pytest process, workers included (3 times with
``-n 2``, once with ``-n 0``), and the sandbox sets PYTHONDONTWRITEBYTECODE, so every worker
would compile this project's ~80 modules again (~0.45 s each); neither is the plugin's cost nor
a user's (docs/performance.md has the figure measured both ways). The CPU time of each run is
printed to stderr beside its wall time. ``RPROC_BENCH_PYTEST_AS_IS=1`` measures pytest as the
environment has it instead.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

_RECORDER = """
import json, os
_times = {}
def pytest_runtest_logreport(report):
    _times[report.nodeid] = _times.get(report.nodeid, 0.0) + report.duration
def pytest_sessionfinish(session):
    with open(os.environ["BENCH_TIMES"], "w") as f:
        json.dump(_times, f)
"""

_OVERHEAD_TESTS = """
from remoteproc.client import open_channel

def _machine_test(remoteproc):
    m4 = remoteproc.processor("m4")
    m4.wait_state("running", timeout=30)
    with open_channel(m4, timeout=30) as ep:
        ep.send(b"x")
        assert ep.recv(timeout=30) == b"x"
    m4.stop()

def _empty_test():
    pass

for _i in range(30):
    globals()[f"test_machine_{_i:02d}"] = lambda remoteproc: _machine_test(remoteproc)
    globals()[f"test_empty_{_i:02d}"] = lambda: _empty_test()
"""

_XDIST_TESTS = """
import errno
from remoteproc.client import open_channel
from remoteproc.errors import RprocError
import pytest

def echo(remoteproc):
    m4 = remoteproc.processor("m4")
    with open_channel(m4, timeout=30) as ep:
        for n in range(10):
            ep.send(b"echo %d" % n)
            assert ep.recv(timeout=30) == b"echo %d" % n

def trace(remoteproc):
    m4 = remoteproc.processor("m4")
    m4.expect(r"rpmsg-echo on \\S+ core \\d+", timeout=30)
    m4.expect("announced channel rpmsg-openamp-demo-channel", timeout=30)

@pytest.mark.rproc(firmware={"m4": "crash-m4.elf"})
def crash_recovery(remoteproc):
    m4 = remoteproc.processor("m4")
    m4.expect(r"crash on \\S+ core \\d+", timeout=30)  # this boot's banner
    with open_channel(m4, timeout=30) as ep:
        ep.send(b"crash abort")
        try:  # the recovery may take the endpoint, and the reply queued on it, first
            assert ep.recv(timeout=30) == b"crashing: abort"
        except RprocError as exc:
            assert exc.errno == errno.EPIPE
    m4.expect(r"crash on \\S+ core \\d+", timeout=30)  # the recovered boot's
    with open_channel(m4, timeout=30) as ep:
        ep.send(b"back")
        assert ep.recv(timeout=30) == b"back"

def riscv(remoteproc):
    rv = remoteproc.processor("rv")
    rv.start()
    rv.expect(r"hello from \\S+", timeout=30)
    rv.stop()

for _i in range(10):
    for _f in (echo, trace, crash_recovery, riscv):
        globals()[f"test_{_f.__name__}_{_i}"] = _f
"""


# RPROC_BENCH_PYTEST_AS_IS=1: pytest as this environment has it (every installed plugin
# autoloaded, PYTHONDONTWRITEBYTECODE as set), to show what that costs (docs/performance.md)
_AS_IS = os.environ.get("RPROC_BENCH_PYTEST_AS_IS") == "1"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if not _AS_IS:  # see the module docstring
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pytest(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run pytest in ``tmp``; (wall seconds, CPU seconds of the whole process tree)."""
    plugins = [] if _AS_IS else ["-p", "remoteproc.pytest_plugin", "-p", "xdist.plugin"]
    cmd = [sys.executable, "-m", "pytest", *plugins, "-p", "no:cacheprovider", "-q", *args]
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env or _env(), capture_output=True, text=True,
                          timeout=900)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pytest failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu0


def pytest_test_overhead_ms() -> float:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "conftest.py").write_text(_RECORDER)
        (tmp / "test_overhead.py").write_text(_OVERHEAD_TESTS)
        times_file = tmp / "times.json"
        _pytest(tmp, "test_overhead.py", f"--basetemp={tmp / 'bt'}",
                env=_env({"BENCH_TIMES": str(times_file)}))
        times = json.loads(times_file.read_text())
    machine = [t for k, t in times.items() if "test_machine_" in k]
    empty = [t for k, t in times.items() if "test_empty_" in k]
    assert len(machine) == 30 and len(empty) == 30, times
    return round((statistics.median(machine) - statistics.median(empty)) * 1000, 1)


def pytest_test_overhead_cpu_ms() -> float:
    """CPU time (all threads of the pytest process: the test, the emulated cores, the FUSE
    server) of one test of pytest_test_overhead_ms's kind, for a figure the other tenants of a
    shared machine do not inflate as much as wall time: the same file run whole (30 machine
    tests) and with only its first machine test, the difference over the 29 others. It
    includes pytest's own per-test work (an empty test: ~1 ms)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "test_overhead.py").write_text(_OVERHEAD_TESTS)
        one = ("-k", "test_machine_00 or test_empty")
        _pytest(tmp, "test_overhead.py", f"--basetemp={tmp / 'btw'}", *one)  # bytecode caches
        _, base_cpu = _pytest(tmp, "test_overhead.py", f"--basetemp={tmp / 'bt1'}", *one)
        _, all_cpu = _pytest(tmp, "test_overhead.py", f"--basetemp={tmp / 'bt30'}")
    return round((all_cpu - base_cpu) / 29 * 1000, 1)


def pytest_xdist_speedup_2() -> float:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "test_forty.py").write_text(_XDIST_TESTS)
        # unmeasured: writes the bytecode caches of the controller's and the workers' imports
        _pytest(tmp, "test_forty.py", "-n", "2", f"--basetemp={tmp / 'btw'}", "-k",
                "test_echo_0 or test_trace_0 or test_crash_recovery_0 or test_riscv_0")
        serial, serial_cpu = _pytest(tmp, "test_forty.py", "-n", "0", f"--basetemp={tmp / 'bt0'}")
        parallel, parallel_cpu = _pytest(tmp, "test_forty.py", "-n", "2",
                                         f"--basetemp={tmp / 'bt2'}")
    print(f"pytest_xdist_speedup_2: -n 0 {serial:.2f} s (CPU {serial_cpu:.2f} s), -n 2 "
          f"{parallel:.2f} s (CPU {parallel_cpu:.2f} s)", file=sys.stderr)
    return round(serial / parallel, 2)


BENCHMARKS = {
    "pytest_test_overhead_ms": pytest_test_overhead_ms,
    "pytest_test_overhead_cpu_ms": pytest_test_overhead_cpu_ms,
    "pytest_xdist_speedup_2": pytest_xdist_speedup_2,
}
