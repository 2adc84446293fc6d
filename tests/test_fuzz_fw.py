"""Fuzzing every ``rproc fw`` entry point and a full boot on the in-memory platform (issue 13),
with a bounded budget for CI; ``tools/fuzz.sh`` runs the same harness for as long as asked.

The invariants are ``fwfuzz``'s: only ``RprocError``, exit statuses as documented, ``fw check``
refusing exactly when the boot refuses and for the same reason, writes only through the views the
platform handed out."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fwfuzz import Harness, compare, images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_elf_fuzz import mutated, synthetic

from remoteproc.cli import main

pytestmark = pytest.mark.timeout(600)

BUDGET = settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
ALL_IMAGES = st.one_of(images(), images(), synthetic(), mutated().map(lambda case: case[0]))


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    logging.disable(logging.CRITICAL)  # refusals log by design; thousands of lines help no one
    h = Harness()
    try:
        yield h
    finally:
        h.close()
        logging.disable(logging.NOTSET)


@BUDGET
@given(data=ALL_IMAGES)
def test_fw_check_agrees_with_a_real_boot(harness: Harness, data: bytes) -> None:
    why = compare(harness.run(data))
    assert why is None, why


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=ALL_IMAGES)
def test_cli_entry_points_never_crash(tmp_path_factory: pytest.TempPathFactory,
                                      data: bytes) -> None:
    d = tmp_path_factory.mktemp("fw")
    fw = d / "fuzz.elf"
    fw.write_bytes(data)
    runner = CliRunner()
    statuses = {}
    for args in (["fw", "check", str(fw)], ["fw", "check", "--json", str(fw)],
                 ["fw", "info", str(fw)], ["fw", "info", "--json", str(fw)],
                 ["fw", "map", str(fw), "-o", str(d / "map.svg")]):
        r = runner.invoke(main, args)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        assert "Traceback" not in r.output
        statuses[" ".join(args[:3])] = r.exit_code
        if "--json" in args:
            json.loads(r.output)
    assert statuses["fw check " + str(fw)] in (0, 1, 2)
    assert statuses["fw check " + str(fw)] == statuses["fw check --json"]
    assert statuses["fw info " + str(fw)] in (0, 2)
    assert statuses["fw map " + str(fw)] in (0, 2)


def test_the_issue_reproducers_agree(harness: Harness, tmp_path: Path) -> None:
    """The KeyError images of the adversarial run: refused by fw check (exit 2) and by the
    boot, for the same reason."""
    from test_reliability_fw_check import entry_offset_past_table, image, truncated_vdev

    for name, table in (("past", entry_offset_past_table()), ("vdev", truncated_vdev())):
        data = Path(image(tmp_path, table, f"{name}.elf")).read_bytes()
        out = harness.run(data)
        assert out.report.exit_status == 2 and not out.booted
        assert compare(out) is None



def test_a_segment_longer_than_any_view_is_the_platforms_limit(harness: Harness) -> None:
    """Found by tools/fuzz.sh: a 64-bit segment of memsz 2**64 - 4 at da 0 is refused by the
    loader before the platform is asked (no view that long exists), which is a memory limit
    like SPARSE_LIMIT, not an image error fw check should have seen; it warns of the overlap
    and boots elsewhere."""
    from elfbuild import Seg, build_elf, resource_table
    from fwfuzz import RSC_DA

    for order in "<>":
        built = build_elf([Seg(b"\0" * 7, paddr=0)], elf_class=2, byteorder=order,
                          rsc_table=resource_table([], byteorder=order), rsc_da=RSC_DA,
                          entry=0x1000)
        built.patch_phdr(0, memsz=(1 << 64) - 4)
        out = harness.run(bytes(built.data))
        assert not out.booted and out.boot_error is not None
        assert "bad phdr da 0x0 mem 0xfffffffffffffffc" in out.boot_error.message
        assert out.platform_limit and compare(out) is None
