"""A receiver that is about to block runs the emulated core its send just kicked (``Rproc.poll``
→ ``EmulatedProcessor._poll`` → ``Core.borrow``/``run_inline``): end to end through the real
firmware on both cores. The echo arrives without the core's thread or the dispatcher, a
computing firmware is taken back from the borrower after one slice, a flood received with
``recv`` (the path that borrows) loses, duplicates and reorders nothing, and a core stopped
from an inline delivery does not hang.

``RPROC_EMU_INLINE_FLOOD_MESSAGES`` sets the slow flood's total (default 20,000; the full
flood of docs/performance.md is 1,000,000); a bounded one runs in every pass. The behaviour is
on by default (``EmulatorPlatform.inline_kicks``); these tests set it anyway, so that they keep
testing it if the default changes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest
from test_rpmsg_emulated import ARCHES, BENCH_ITERATIONS, SEQ, _body, emulated, pattern

from remoteproc.core.states import State
from remoteproc.errors import RprocError
from remoteproc.rpmsg.endpoint import Endpoint


def test_receivers_run_the_core_by_default() -> None:
    with emulated("m4") as soc:
        assert soc.plat.inline_kicks is True


@pytest.mark.parametrize("arch", ARCHES)
def test_receiver_runs_the_kicked_core_itself(arch: str) -> None:
    with emulated(arch) as soc:
        soc.plat.inline_kicks = True
        core = soc.proc.core
        ept = soc.ept()
        before = core.inline_runs
        for n in range(1, 301):
            ept.send(pattern(n % 496 + 1, salt=n), timeout=5)
            assert ept.recv(5) == pattern(n % 496 + 1, salt=n)
        # Most round trips ran the firmware on this thread (the core's own thread wins the
        # race now and then, when it wakes before our recv borrows the core).
        assert core.inline_runs - before >= 100, core.inline_runs - before
        assert core.state.value == "running" and core.fault is None


@pytest.mark.parametrize("arch", ARCHES)
def test_a_computing_firmware_is_taken_back_from_the_borrower(arch: str) -> None:
    """"bench N" keeps the firmware computing for about a second: the receiver that borrowed
    the core gives it back after one slice and waits like any receiver; the reply still
    comes, once."""
    iterations = BENCH_ITERATIONS // 25  # ~40 ms of the core's time: many slices
    with emulated(arch) as soc:
        soc.plat.inline_kicks = True
        core = soc.proc.core
        ept = soc.ept()
        preempts = core.inline_preempts
        # The core's own thread, woken by the kick, sometimes takes the core before our recv
        # borrows it: repeat until a borrow happened (each try checks its reply anyway).
        for _ in range(30):
            ept.send(f"bench {iterations}".encode(), timeout=5)
            reply = ept.recv(60).decode()
            assert reply.startswith(f"bench {iterations} result 0x"), reply
            assert ept.pending() == 0
            if core.inline_preempts > preempts:
                break
        assert core.inline_preempts > preempts
        assert soc.echo(b"after the bench") == b"after the bench"


def _recv_flood(arch: str, total: int) -> float:
    """``total`` numbered messages sent by one thread, received with ``recv`` by this one."""
    with emulated(arch) as soc:
        soc.plat.inline_kicks = True
        ept = soc.ept()
        errors: list[BaseException] = []

        def sender() -> None:
            try:
                for seq in range(total):
                    ept.send(SEQ.pack(0, seq) + _body(seq), timeout=15)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=sender)
        t0 = time.perf_counter()
        t.start()
        for seq in range(total):
            data = ept.recv(15)
            want = SEQ.pack(0, seq) + _body(seq)
            assert data == want, f"want #{seq}, got {SEQ.unpack_from(data)}"
        t.join(15)
        assert not errors, errors[0]
        rate = total / (time.perf_counter() - t0)
        assert ept.pending() == 0
        time.sleep(0.05)
        assert ept.pending() == 0, "an echo arrived twice"
        assert soc.bus.rx_errors == 0
        return rate


@pytest.mark.parametrize("arch", ARCHES)
def test_recv_flood_bounded(arch: str) -> None:
    _recv_flood(arch, 5000)


@pytest.mark.slow
def test_recv_flood_long() -> None:
    total = int(os.environ.get("RPROC_EMU_INLINE_FLOOD_MESSAGES", "20000"))
    rate = _recv_flood("m4", total)
    print(f"emulated recv flood: {total} messages at {rate:.0f} msgs/s")


def test_stop_from_a_callback_run_inline_does_not_hang() -> None:
    """A host callback that shuts the processor down, run on the receiving thread by an
    inline delivery: the stop completes and the core's thread ends. Repeated (boot again)
    until the callback did run inline, since the core's own thread may win the race."""
    with emulated("m4") as soc:
        soc.plat.inline_kicks = True
        ran_inline = threading.Event()
        for _ in range(10):
            done = threading.Event()

            def on_echo(ept: Endpoint, data: bytes, src: int, done: threading.Event = done) -> None:
                if threading.current_thread() is threading.main_thread():
                    ran_inline.set()
                soc.rproc.shutdown()
                done.set()

            cb_ept = soc.ept(callback=on_echo)
            waiter = soc.ept()
            cb_ept.send(b"stop us", timeout=5)
            # The receiver's poll runs the core, whose reply to cb_ept runs on_echo here.
            with contextlib.suppress(RprocError):  # the bus may be gone before the echo
                waiter.recv(5)
            assert done.wait(20)
            assert soc.rproc.state is State.OFFLINE
            assert soc.proc.core._thread is None
            if ran_inline.is_set():
                break
            soc.rproc.boot()
            soc.wait_channels()
        assert ran_inline.is_set()
