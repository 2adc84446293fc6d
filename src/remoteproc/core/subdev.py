"""Subdevices: things whose lifetime follows the remote processor's (spec Appendix B).

Owns the ``Subdev`` base class (``struct rproc_subdev``) and the four ordered walks the core runs.

Rules:
- Subdevices live in a list in registration order: platform subdevices added at probe come first,
  vdev subdevices are appended during each boot's resource handling.
- ``prepare`` and ``start`` run in list order; ``stop`` and ``unprepare`` in reverse.
- A failed ``prepare`` unprepares the already-prepared ones in reverse; a failed ``start`` stops
  the already-started ones in reverse with ``crashed=True`` (as the kernel does).
- ``stop(crashed)`` tells a subdevice whether the remote died (recovery, start unwind) or is being
  stopped cleanly (shutdown, detach).
- The walks run with the processor's lock held; a subdevice must not call lifecycle methods of
  its processor.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Subdev",
    "prepare_subdevices",
    "start_subdevices",
    "stop_subdevices",
    "unprepare_subdevices",
]


class Subdev:
    """Override what you need; every hook defaults to a no-op (a NULL pointer in the kernel)."""

    name = "subdev"

    def prepare(self) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self, crashed: bool) -> None:
        return None

    def unprepare(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def prepare_subdevices(subdevs: Sequence[Subdev]) -> None:
    done: list[Subdev] = []
    try:
        for sd in subdevs:
            sd.prepare()
            done.append(sd)
    except BaseException:
        for sd in reversed(done):
            sd.unprepare()
        raise


def start_subdevices(subdevs: Sequence[Subdev]) -> None:
    done: list[Subdev] = []
    try:
        for sd in subdevs:
            sd.start()
            done.append(sd)
    except BaseException:
        for sd in reversed(done):
            sd.stop(True)
        raise


def stop_subdevices(subdevs: Sequence[Subdev], crashed: bool) -> None:
    for sd in reversed(list(subdevs)):
        sd.stop(crashed)


def unprepare_subdevices(subdevs: Sequence[Subdev]) -> None:
    for sd in reversed(list(subdevs)):
        sd.unprepare()
