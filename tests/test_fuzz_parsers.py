"""Fuzzing the parsers that read what others write (issue 13), with a bounded budget for CI;
``tools/fuzz.sh`` runs the same harnesses for as long as asked:

- machine files (``machinefuzz``): mutated bundled machines, their SVD, random bytes, through
  ``load_machine_spec`` and a real ``EmulatorPlatform`` for every spec it accepts;
- the process platform's peer-written resource table (``peerfuzz``): a hostile remote's table,
  attached to by a real ``ProcessPlatform``;
- sysfs/debugfs/cdev writes and rpmsg/remoteproc ioctl payloads (``abifuzz``), through the
  in-process FUSE operations.

The invariants are the harnesses' own (see their docstrings): only the project's error type
with a kernel errno and a message naming the file, nothing written outside its memory, no
unexpected exception turned into EIO, every call returns."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

import pytest
from abifuzz import CALLS, AbiHarness
from hypothesis import HealthCheck, given, settings
from machinefuzz import MACHINES, SEEDS, MachineHarness, dump_toml
from peerfuzz import SEED, PeerTableHarness, expected_errno, tables

from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import MACHINES_DIR, parse_machine

pytestmark = pytest.mark.timeout(300)


def budget(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def quiet() -> Iterator[None]:
    # Refusals log by design; thousands of lines help no one. The root logger's level, not
    # logging.disable: the ABI harness keeps the FUSE layer's "unexpected error" records.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    yield
    root.setLevel(level)


# -- machine files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machines(quiet: None) -> Iterator[MachineHarness]:
    h = MachineHarness()
    yield h
    h.close()


@budget(150)
@given(case=MACHINES)
def test_machine_files_load_or_refuse_with_einval(machines: MachineHarness,
                                                  case: tuple[bytes, str | None]) -> None:
    machines.run(*case)


def test_the_bundled_machines_round_trip_through_the_fuzzer_writer(machines: MachineHarness,
                                                                   ) -> None:
    """The mutations start from valid files: each bundled machine, re-written, still loads."""
    import tomllib

    for name, text in SEEDS.items():
        assert machines.run(dump_toml(tomllib.loads(text)).encode(), None) is not None, name


@pytest.mark.parametrize("name", [["m4"], {"x": 1}, 7, True])
def test_a_core_name_that_is_not_a_string_is_refused(name: object) -> None:
    """Found by the fuzzer: a core whose name is a list (or table) crashed the parser with a
    TypeError (unhashable) while it collected the names peripherals may refer to."""
    text = dump_toml({"core": [{"name": name, "cpu": "cortex-m4"}]})
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml")
    assert info.value.errno == errno.EINVAL
    assert "m.toml: core[0].name: expected a non-empty string" in str(info.value)


@pytest.mark.parametrize("irq", ["[]", "[1, 2]", "240", "-1", "1e3"])
def test_hsem_irq_is_checked_when_the_machine_is_parsed(irq: str) -> None:
    """Found by tools/fuzz.sh: the HSEM's ``irq`` went unchecked by the parser, so a machine
    that loaded failed later, when the platform built the model (a list), or gave the NVIC a
    line it does not have (240)."""
    text = (SEEDS["stm32mp157.toml"]
            .replace("params = { core_id = 2, semaphores = 32, irq = 125 }",
                     f"params = {{ core_id = 2, semaphores = 32, irq = {irq} }}"))
    assert text != SEEDS["stm32mp157.toml"]
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml", MACHINES_DIR)
    assert info.value.errno == errno.EINVAL
    assert "m.toml: peripheral[0].params.irq: " in str(info.value)


@pytest.mark.parametrize(("ddr", "key", "why"), [
    ("size = 0x1000\ndma_base = 0x88000000", "dma_base", "outside the DDR window"),
    ("size = 0x1000\ndma_base = 0x80000000\ndma_size = 0x2000", "dma_size", "non-empty part"),
    ("size = 0x2000\ndma_base = 0x80001000\ndma_size = 0", "dma_size", "non-empty part"),
])
def test_a_dma_pool_outside_the_ddr_window_is_refused(ddr: str, key: str, why: str) -> None:
    """Found by tools/fuzz.sh: a DMA pool base past the end of the DDR window gave its
    default size a negative value, which passed the parser's range check; the platform then
    refused it."""
    text = SEEDS["default.toml"]
    start = text.index("[ddr]")
    end = text.index("[[core]]", start)
    text = text[:start] + f"[ddr]\nbase = 0x80000000\n{ddr}\n\n" + text[end:]
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml", MACHINES_DIR)
    assert info.value.errno == errno.EINVAL
    assert f"m.toml: ddr.{key}: the DMA pool" in str(info.value) and why in str(info.value)


# -- the process platform's peer-written resource table -----------------------------------------


@pytest.fixture(scope="module")
def peer(quiet: None) -> Iterator[PeerTableHarness]:
    h = PeerTableHarness()
    yield h
    h.close()


@budget(200)
@given(table=tables())
def test_peer_written_tables_attach_or_refuse_cleanly(peer: PeerTableHarness,
                                                      table: bytes) -> None:
    err = peer.run(table)
    assert expected_errno(err), err


def test_openamps_own_table_attaches(peer: PeerTableHarness) -> None:
    assert peer.run(SEED) is None


# -- sysfs/debugfs/cdev writes and ioctl payloads -----------------------------------------------


@pytest.fixture(scope="module")
def abi(quiet: None) -> Iterator[AbiHarness]:
    h = AbiHarness()
    yield h
    h.close()


@budget(400)
@given(call=CALLS)
def test_abi_writes_and_ioctls_give_a_kernel_errno(abi: AbiHarness,
                                                    call: tuple[object, ...]) -> None:
    abi.run(call)


def test_the_abi_fuzzer_catches_an_unexpected_exception(abi: AbiHarness,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant can fail: a parser raising ValueError (EIO and a traceback through FUSE)
    is caught by the harness."""
    from remoteproc.abi.node import AttributeHandle

    def broken(*args: object) -> int:
        raise ValueError("a parser bug")

    monkeypatch.setattr(AttributeHandle, "write", broken)
    target = next(i for i, p in enumerate(abi.writable) if p.endswith("remoteproc0/state"))
    with pytest.raises(AssertionError, match="unexpected exception in a handler"):
        abi.run(("write", target, b"start\n"))


def test_the_abi_fuzzer_reaches_every_parser(abi: AbiHarness) -> None:
    """The targets the write cases pick from: each parser the issue names is among them."""
    names = {p.rsplit("/", 1)[-1] for p in abi.writable}
    assert {"state", "firmware", "recovery", "coredump", "crash", "driver_override", "bind",
            "unbind", "drivers_probe"} <= names, names
