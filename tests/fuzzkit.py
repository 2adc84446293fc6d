"""Strategy helpers for the fuzzing harnesses (fwfuzz, machinefuzz, peerfuzz, abifuzz, the
generators of test_elf_fuzz): generation is most of a fuzz case's cost, and hypothesis builds
(and validates) a new strategy for every ``st.sampled_from(...)`` call, even of the same values.

``pick(values)`` is ``st.sampled_from(values)`` made once per distinct values (for hashable
values; others fall back to a fresh one). ``cached`` memoizes a strategy-returning function of
hashable arguments (``edge(bits)``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hypothesis import strategies as st

__all__ = ["cached", "pick"]

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
