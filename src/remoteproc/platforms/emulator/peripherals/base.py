"""What every peripheral model is, and the registry that finds a model by the name a machine
file gives it.

Owns ``Peripheral`` (the base class: a window of registers with ``read`` / ``write``, the
interrupt lines it asserts, reset and quiesce), ``PeripheralSpec`` (one ``[[peripheral]]`` table
of a machine file, parsed), ``RegisterNames`` (register names and reset values by offset, from a
register file or an SVD), ``MmioFault`` (an access the ``strict`` policy refuses),
``register_model`` / ``model_names`` / ``create`` (the registry by model name) and
``Context`` (what a model may use from its machine: the scheduler, the core's index, its bus).

Rules:
- A model is a class registered under a name with ``@register_model("name")``; a machine file
  selects it with ``model = "name"`` and passes it ``params = { ... }``. ``from_spec`` checks its
  params and raises ``ValueError`` with a message naming the param; the machine parser adds the
  file, line and field.
- Offsets are relative to the peripheral's base. ``read`` returns an unsigned value of the access
  size; ``write`` gets the value as the core stored it (already of its size).
- A model keeps its own lock if another thread (the host side, a timer) touches its state; it
  never calls its ``sink`` or the bus while holding it (the core's lock order, cores/cpu.py).
- ``lines()`` is a bitmask of NVIC interrupt numbers (bit n = IRQ n = exception 16 + n): the
  core takes the best enabled one.
- An access no model implements goes to ``bus.unknown(...)``: the machine's ``unknown_access``
  policy (``log`` or ``strict``) decides (bus.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from remoteproc.platforms.emulator.peripherals.bus import DeviceBus
    from remoteproc.platforms.emulator.scheduler import Scheduler

__all__ = [
    "Context",
    "MmioFault",
    "Peripheral",
    "PeripheralSpec",
    "RegisterNames",
    "register_model",
    "registered_model",
    "registered_names",
]


class MmioFault(Exception):
    """An access the ``strict`` policy refuses: the core reports an ``mmufault`` crash."""

    def __init__(self, address: int, is_write: bool, what: str) -> None:
        super().__init__(f"{'write to' if is_write else 'read of'} unmodelled {what} at "
                         f"{address:#x}")
        self.address = address
        self.is_write = is_write
        self.what = what


@dataclass(frozen=True)
class PeripheralSpec:
    """One ``[[peripheral]]`` table: where, which model, its params, its register names."""

    name: str
    base: int
    size: int
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    svd: str | None = None  # resolved path of an SVD file supplying register names
    svd_peripheral: str | None = None  # the peripheral's name in the SVD (default: name)
    cores: tuple[str, ...] = ()  # empty: every core gets its own instance
    where: str = ""  # "file:line: peripheral[i]" for messages


@dataclass
class RegisterNames:
    """Register names, reset values and sizes by offset (from a register file or an SVD)."""

    peripheral: str
    names: dict[int, str] = field(default_factory=dict)
    resets: dict[int, int] = field(default_factory=dict)

    def name(self, offset: int) -> str:
        aligned = offset & ~3
        reg = self.names.get(offset) or self.names.get(aligned)
        if reg is None:
            return f"{self.peripheral}+{offset:#x}"
        return f"{self.peripheral}.{reg}"

    def reset(self, offset: int) -> int:
        return self.resets.get(offset & ~3, 0)


@dataclass
class Context:
    """What a model may use from its machine."""

    core_index: int
    core_name: str
    scheduler: Scheduler
    bus: DeviceBus
    machine_dir: str = "."


class Peripheral:
    """A window of registers. Subclasses override ``read``/``write`` and friends."""

    model: ClassVar[str] = ""

    def __init__(self, spec: PeripheralSpec, ctx: Context) -> None:
        self.spec = spec
        self.name = spec.name
        self.base = spec.base
        self.size = spec.size
        self.ctx = ctx
        self.names = RegisterNames(spec.name)

    # ---- params ------------------------------------------------------------------------------

    @classmethod
    def check_params(cls, params: dict[str, Any], size: int = 1 << 32) -> None:
        """Raise ``ValueError("params.NAME: why")`` for a bad param (called at parse time, with
        the peripheral's window size)."""
        allowed = cls.param_names()
        for key in params:
            if key not in allowed:
                raise ValueError(f"params.{key}: unknown param for model {cls.model!r} "
                                 f"(expected one of {', '.join(sorted(allowed)) or 'none'})")

    @classmethod
    def param_names(cls) -> set[str]:
        return set()

    @staticmethod
    def int_param(params: dict[str, Any], key: str, default: int) -> int:
        v = params.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"params.{key}: expected an unsigned integer, not {v!r}")
        return v

    # ---- registers ---------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        return self.ctx.bus.unknown(self, offset, size, False, 0)

    def write(self, offset: int, value: int, size: int) -> None:
        self.ctx.bus.unknown(self, offset, size, True, value)

    def read_changes_state(self, offset: int, value: int) -> bool:
        """Did a read that returned ``value`` change state (a FIFO pop, a read-to-lock)?"""
        return False

    def lines(self) -> int:
        return 0

    def reset(self, *, clear_retained: bool = False) -> None:
        """Power-on state for a (re)started core; retained registers survive unless asked."""

    def quiesce(self) -> None:
        """Stop timers (a halted or crashed core has no running clocks)."""

    def irq_changed(self) -> None:
        """Tell the core a line may have risen (never with this model's lock held)."""
        self.ctx.bus.irq_changed()


_MODELS: dict[str, type[Peripheral]] = {}


def register_model(name: str) -> Callable[[type[Peripheral]], type[Peripheral]]:
    """Class decorator: make a model available to machine files as ``model = name``."""

    def deco(cls: type[Peripheral]) -> type[Peripheral]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"peripheral model {name!r} registered twice")
        cls.model = name
        _MODELS[name] = cls
        return cls

    return deco


def registered_model(name: str) -> type[Peripheral] | None:
    """The class registered under ``name`` so far (``peripherals/models.py`` imports the
    built-in families first)."""
    return _MODELS.get(name)


def registered_names() -> list[str]:
    return sorted(_MODELS)
