"""Shared helpers for the core tests (no tests here): images, tables, a host with one sim rproc."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remoteproc.core.events import Event, EventKind
from remoteproc.core.host import Host
from remoteproc.core.rproc import Rproc
from remoteproc.core.states import State
from remoteproc.firmware.rsc_table import FW_RSC_ADDR_ANY, TableBuilder
from remoteproc.platforms.sim import SimPlatform, build_image

ANY = FW_RSC_ADDR_ANY
TABLE_DA = 0x0000_8000  # where the sim images load their resource table (in the TCM)
TRACE_DA = 0x2000_0100


def standard_table(
    *,
    carveout: bool = True,
    trace: bool = True,
    vdev: bool = True,
    config: bytes = b"\x11\x22\x33\x44",
    dfeatures: int = 1,
) -> bytearray:
    tb = TableBuilder()
    if carveout:
        tb.add_carveout(ANY, 0, 0x2000, name="heap")
    if trace:
        tb.add_trace(TRACE_DA, 0x100, name="trace0")
    if vdev:
        tb.add_vdev(7, 0, dfeatures, config=config, vrings=[(ANY, 16, 16, 0, 0)] * 2)
    return tb.build()


def image(
    table: bytes | bytearray | None = None, *, loaded: bool = True, entry: int = 0x101
) -> bytes:
    tbl = standard_table() if table is None else table
    return build_image(
        [(0x0, b"\xaa" * 256), (TRACE_DA, b"booted\0garbage")],
        rsc_table=tbl,
        rsc_da=TABLE_DA if loaded else None,
        entry=entry,
    )


@dataclass
class Rig:
    host: Host
    sim: SimPlatform
    rproc: Rproc

    def close(self) -> None:
        self.host.close()
        self.sim.close()


def rig(
    img: bytes | None = None,
    *,
    name: str = "m4",
    state: State = State.OFFLINE,
    preload: bytes | None = None,
    sim_kw: dict[str, Any] | None = None,
    **kw: Any,
) -> Rig:
    """A host with ``img`` as built-in firmware and one registered sim rproc (no auto-boot)."""
    host = Host([], panic_hook=False)
    sim = SimPlatform(name, **(sim_kw or {}))
    host.add_firmware(f"rproc-{name}-fw", image() if img is None else img)
    if preload is not None:
        sim.preload(preload)
    kw.setdefault("auto_boot", False)
    rproc = sim.make_rproc(name, state=state, host=host, **kw)
    sim.take_calls()
    return Rig(host, sim, rproc)


class EventLog:
    """Collects events from a callback subscription, with a condition to wait on."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, ev: Event) -> None:
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()

    def wait(self, pred: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(pred(e) for e in self.events), timeout)
            assert ok, f"no matching event in {[str(e) for e in self.events]}"
            return next(e for e in self.events if pred(e))

    def kinds(self) -> list[EventKind]:
        with self._cond:
            return [e.kind for e in self.events]

    def states(self) -> list[tuple[str | None, str]]:
        with self._cond:
            return [(e.old, e.state) for e in self.events if e.kind is EventKind.STATE]


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def assert_clean(r: Rig) -> None:
    """Everything a failed boot or a stop must have released."""
    rp = r.rproc
    assert rp.power == 0
    assert rp.carveouts == []
    assert rp.table_ptr is None
    assert rp.cached_table is None
    assert rp.clean_table is None
    assert rp.table_sz == 0
    assert rp.traces == []
    assert rp.rvdevs == []
    assert rp.notifyids == {}
    assert [s for s in rp.subdevs if type(s).__name__ == "RprocVdev"] == []
    assert rp.dump_segments == []
    assert r.sim.dma.allocations == len(r.sim.regions)
