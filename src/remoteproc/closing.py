"""``Closeable``: the one context-manager shape of every object that owns something to release.

Rules: a subclass implements ``close()`` (idempotent: a second call does nothing); ``with obj:``
closes it on the way out, whatever happened inside. Nothing else lives here, so every layer can
use it (it sits beside ``errors``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Closeable"]


class Closeable:
    """Owns threads, descriptors, mounts or memory; ``close()`` releases them."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
