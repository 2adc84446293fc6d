"""Strategy helpers for the fuzzing harnesses (fwfuzz, machinefuzz, peerfuzz, abifuzz, the
generators of test_elf_fuzz): generation is most of a fuzz case's cost, and hypothesis builds
(and validates) a new strategy for every ``st.sampled_from(...)`` call, even of the same values.

``pick(values)`` is ``st.sampled_from(values)`` made once per distinct values (for hashable
values; others fall back to a fresh one). ``cached`` memoizes a strategy-returning function of
hashable arguments (``edge(bits)``). ``mutate_bytes`` makes cheap byte-level mutants of a
generated case for the long runs."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hypothesis import strategies as st

__all__ = ["cached", "mutate_bytes", "pick"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=4096)
def _sampled(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def pick(values: Iterable[T]) -> st.SearchStrategy[T]:
    seq = tuple(values)
    try:
        hash(seq)
    except TypeError:
        return st.sampled_from(seq)
    return _sampled(seq)


def cached(fn: F) -> F:
    return functools.lru_cache(maxsize=4096)(fn)  # type: ignore[return-value]


_EDGE_WORDS = (0, 1, 2, 4, 0x10, 0x1000, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF,
               0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFC, 2**63, 2**64 - 1)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to three byte-level mutations (AFL's havoc, small): flip a bit, set a byte, write an
    edge value of 1/2/4/8 bytes in either order, cut, delete or repeat a slice. ``tools/fuzz.py``
    runs such mutants of each generated case: a mutant costs a run, not a generation."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        n = len(buf)
        op = rng.randrange(7) if n else 6
        pos = rng.randrange(n) if n else 0
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.randrange(256)
        elif op in (2, 3):
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(_EDGE_WORDS) & ((1 << (8 * width)) - 1)
            raw = value.to_bytes(width, "little" if op == 2 else "big")
            buf[pos : pos + width] = raw[: max(0, n - pos)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            del buf[pos : pos + rng.randint(1, 16)]
        else:
            buf[pos:pos] = bytes(buf[pos : pos + rng.randint(1, 16)]) or b"\0"
    return bytes(buf)
