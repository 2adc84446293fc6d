"""The host registry (spec §1.10): auto-boot, delete, close, and the panic hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from conftest import wait_until
from test_core_support import EventLog, image

from remoteproc.core.events import EventKind
from remoteproc.core.host import Host
from remoteproc.core.states import State
from remoteproc.platforms.sim import SimPlatform

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


def test_auto_boot_offline_boots_asynchronously() -> None:
    with Host([], panic_hook=False) as host:
        host.add_firmware("rproc-m4-fw", image())
        log = EventLog()
        host.subscribe(log)
        sim = SimPlatform("m4")
        rp = sim.make_rproc("m4", host=host)
        log.wait(lambda e: e.kind is EventKind.STATE and e.state == "running")
        assert rp.state is State.RUNNING and rp.power == 1
        assert sim.take_calls().count("start") == 1


def test_delete_stops_whatever_the_power_count() -> None:
    with Host([], panic_hook=False) as host:
        host.add_firmware("rproc-m4-fw", image())
        sim = SimPlatform("m4")
        rp = sim.make_rproc("m4", host=host, auto_boot=False)
        rp.boot()
        rp.boot()
        host.delete(rp)
        assert rp.state is State.DELETED and rp.power == 0
        assert not sim.running and rp.carveouts == [] and rp.table_ptr is None
        assert rp not in host and rp.index == -1
        assert sim.dma.allocations == 0


def test_close_shuts_everything_down_and_joins_workers() -> None:
    before = threading.active_count()
    host = Host([], panic_hook=False, workers=3)
    host.add_firmware("fw", image())
    sims = [SimPlatform(f"c{i}") for i in range(6)]
    rps = [s.make_rproc(f"c{i}", host=host, firmware="fw") for i, s in enumerate(sims)]
    host.workqueue.flush(10)
    assert all(rp.state is State.RUNNING for rp in rps)
    assert host.workqueue.threads <= 3
    rps[0].report_crash()
    with host:
        pass  # __exit__ closes
    assert host.closed and len(host) == 0
    assert all(rp.state is State.DELETED for rp in rps)
    assert all(not s.running for s in sims)
    assert host.workqueue.threads == 0
    wait_until(lambda: threading.active_count() <= before, 5, "the host's threads to end")
    assert threading.active_count() <= before


def test_rproc_close_unregisters() -> None:
    with Host([], panic_hook=False) as host:
        rp = SimPlatform("m4").make_rproc("m4", host=host, auto_boot=False)
        with rp:
            assert rp in host
        assert rp not in host and rp.state is State.DELETED


def test_panic_calls_running_and_attached_only_and_waits_the_longest() -> None:
    with Host([], panic_hook=False) as host:
        host.add_firmware("fw", image())
        running = SimPlatform("a", panic_delay_ms=30)
        idle = SimPlatform("b", panic_delay_ms=500)
        attached = SimPlatform("c", panic_delay_ms=60)
        attached.preload(image())
        running.make_rproc("a", host=host, firmware="fw", auto_boot=False).boot()
        idle.make_rproc("b", host=host, auto_boot=False)
        attached.make_rproc("c", host=host, state=State.DETACHED)
        for s in (running, idle, attached):
            s.take_calls()
        t0 = time.monotonic()
        delay = host.panic()
        elapsed = time.monotonic() - t0
        assert delay == 60
        assert 0.055 <= elapsed < 0.4
        assert running.take_calls() == ["panic"]
        assert attached.take_calls() == ["panic"]
        assert idle.take_calls() == []


def _child(script: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


_SETUP = """
    import sys, time
    from test_core_support import image
    from remoteproc.core.host import Host
    from remoteproc.platforms.sim import SimPlatform

    host = Host([])
    host.install_panic_hook()
    host.add_firmware("fw", image())
    sim = SimPlatform("m4", panic_delay_ms=50)
    orig = sim._panic
    def panic(rp):
        print("panic called", flush=True)
        return orig(rp)
    sim._panic = panic
    rp = sim.make_rproc("m4", host=host, firmware="fw", auto_boot=False)
    rp.boot()
"""


def test_sigterm_runs_the_panic_hook_then_dies_of_sigterm() -> None:
    proc = _child(_SETUP + '\n    print("ready", flush=True)\n    time.sleep(30)\n')
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert "panic called" in out, err
    assert proc.returncode == -signal.SIGTERM


def test_exit_runs_the_panic_hook() -> None:
    proc = _child(_SETUP + '\n    print("exiting", flush=True)\n')
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["exiting", "panic called"]


def test_closed_host_has_no_panic_hook() -> None:
    proc = _child(_SETUP + '\n    host.close()\n    print("closed", flush=True)\n')
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["closed"]


def test_a_host_installs_no_process_wide_handler_unless_asked() -> None:
    # A library must not take SIGTERM or add exit work behind a program's back: without
    # install_panic_hook() the SIGTERM disposition stays the default and exit runs no panic.
    proc = _child(_SETUP.replace("    host.install_panic_hook()\n", "") + """
    import signal
    print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
""")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["True"]


def test_add_twice_is_ebusy() -> None:
    import errno

    import pytest

    from remoteproc.errors import RprocError

    with Host([], panic_hook=False) as host, Host([], panic_hook=False) as other:
        rp = SimPlatform("m4").make_rproc("m4", host=host, auto_boot=False)
        for h in (host, other):
            with pytest.raises(RprocError) as ei:
                h.add(rp)
            assert ei.value.errno == errno.EBUSY
        assert len(host) == 1 and len(other) == 0
