"""MemEntry, the DmaPool allocator and the carveout walks (spec §6)."""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remoteproc.core.memory import (
    FW_RSC_ADDR_ANY,
    DmaPool,
    MemEntry,
    check_carveout_da,
    find_by_name,
    walk_da,
    walk_pa,
)
from remoteproc.errors import RprocError


def test_pool_alloc_is_page_aligned_and_views_are_exact() -> None:
    pool = DmaPool(bytearray(0x10000), 0x8000_0000)
    v1, a1 = pool.alloc(10)
    v2, a2 = pool.alloc(0x1001)
    assert len(v1) == 10 and len(v2) == 0x1001
    assert a1 == 0x8000_0000 and a2 == 0x8000_1000
    assert a1 % 4096 == 0 and a2 % 4096 == 0
    v2[:3] = b"abc"
    assert bytes(pool.view[0x1000:0x1003]) == b"abc"
    assert pool.pa_to_va(a2, 3) is not None and bytes(pool.pa_to_va(a2, 3) or b"") == b"abc"
    assert pool.allocations == 2 and pool.allocated == 0x1000 + 0x2000


def test_pool_exhaustion_free_and_coalescing() -> None:
    pool = DmaPool(bytearray(0x4000), 0x1000)
    addrs = [pool.alloc(0x1000)[1] for _ in range(4)]
    with pytest.raises(RprocError) as ei:
        pool.alloc(1)
    assert ei.value.errno == errno.ENOMEM
    assert ei.value.message == "failed to allocate dma memory"
    pool.free(addrs[1])
    pool.free(addrs[2])
    _, a = pool.alloc(0x2000)  # the two freed neighbours merged
    assert a == addrs[1]
    with pytest.raises(RprocError):
        pool.free(0xDEAD000)
    pool.close()
    with pytest.raises(RprocError):
        pool.alloc(1)


def test_pool_alignment_is_of_the_bus_address() -> None:
    pool = DmaPool(bytearray(0x10000), 0x1000)
    _, a = pool.alloc(0x100, align=0x4000)
    assert a % 0x4000 == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 0x3000)), max_size=40))
def test_pool_never_overlaps(ops: list[tuple[bool, int]]) -> None:
    pool = DmaPool(bytearray(0x20000), 0x4000_0000)
    live: dict[int, int] = {}
    rnd = random.Random(1)
    for is_alloc, size in ops:
        if is_alloc or not live:
            try:
                _, a = pool.alloc(size)
            except RprocError:
                continue
            for b, n in live.items():
                assert a + size <= b or b + n <= a
            live[a] = size
        else:
            a = rnd.choice(sorted(live))
            pool.free(a)
            del live[a]
    for a in list(live):
        pool.free(a)
    assert pool.allocations == 0
    _, a = pool.alloc(0x20000)  # fully coalesced again
    assert a == 0x4000_0000


def test_readonly_memory_refused() -> None:
    with pytest.raises(RprocError):
        DmaPool(memoryview(bytes(16)), 0)


def test_mem_entry_name_truncated_and_lookup() -> None:
    long = "x" * 40
    m = MemEntry(long, 0, 16)
    assert m.name == "x" * 31
    assert find_by_name([m], long) is m
    assert find_by_name([m], "") is None
    assert m.rsc_offset == FW_RSC_ADDR_ANY and m.of_resm_idx == -1


def test_walks() -> None:
    a = MemEntry("a", 0x1000, 0x100, va=memoryview(bytearray(0x100)), dma=0x9000)
    b = MemEntry("b", 0x1000, 0x200, va=memoryview(bytearray(0x200)), dma=0xA000)
    unmapped = MemEntry("u", 0x5000, 0x100)
    entries = [unmapped, a, b]
    v = walk_da(entries, 0x1080, 0x80)
    assert v is not None and v.obj is a.va.obj  # list order: first match wins
    v = walk_da(entries, 0x1080, 0x100)
    assert v is not None and v.obj is b.va.obj  # does not fit a, fits b
    assert walk_da(entries, 0x5000, 1) is None  # no va
    assert walk_da(entries, 0xFFF, 2) is None
    assert walk_da(entries, 0x1000, -1) is None
    p = walk_pa(entries, 0xA010, 4)
    assert p is not None and p.obj is b.va.obj


@pytest.mark.parametrize(
    ("mem_da", "mem_len", "da", "length", "ok", "msg"),
    [
        (0x1000, 0x1000, 0x1000, 0x1000, True, None),
        (0x1000, 0x1000, FW_RSC_ADDR_ANY, 0x800, True, None),
        (0x1000, 0x1000, FW_RSC_ADDR_ANY, 0x2000, False, "doesn't fit len request"),
        (FW_RSC_ADDR_ANY, 0x1000, 0x1000, 0x10, False, None),
        (0x1000, 0x1000, 0x800, 0x10, False, "doesn't fit da request"),
        (0x1000, 0x1000, 0x1800, 0x900, False, "doesn't fit len request"),
    ],
)
def test_check_carveout_da(
    mem_da: int, mem_len: int, da: int, length: int, ok: bool, msg: str | None
) -> None:
    mem = MemEntry("m", mem_da, mem_len)
    if ok:
        check_carveout_da("dev", mem, da, length)
        return
    with pytest.raises(RprocError) as ei:
        check_carveout_da("dev", mem, da, length)
    assert ei.value.errno == errno.EINVAL
    if msg:
        assert msg in ei.value.message


def test_da_to_va_falls_back_to_carveouts_when_the_platform_op_has_no_mapping() -> None:
    # §4.3: rproc_da_to_va uses the op's result only when it is non-NULL, else walks carveouts.
    from remoteproc.core.ops import RprocOps
    from remoteproc.core.rproc import Rproc

    own = bytearray(0x100)
    carve = bytearray(0x100)

    def platform_view(rproc: object, da: int, n: int) -> memoryview | None:
        return memoryview(own)[da : da + n] if da + n <= len(own) else None

    rp = Rproc("fallback", RprocOps(start=lambda r: None, da_to_va=platform_view), auto_boot=False)
    rp.add_carveout(MemEntry("carve", 0x1000, len(carve), va=memoryview(carve)))
    rp.da_to_va(0x10, 4)[:] = b"plat"  # type: ignore[index]
    rp.da_to_va(0x1010, 4)[:] = b"walk"  # type: ignore[index]
    assert own[0x10:0x14] == b"plat" and carve[0x10:0x14] == b"walk"
    assert rp.da_to_va(0x5000, 4) is None
