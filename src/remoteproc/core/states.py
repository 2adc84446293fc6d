"""The remote processor state machine: states, their sysfs strings, and the transition table.

Rules (h11 style: everything that decides whether a state change is legal lives here):
- ``State`` mirrors ``enum rproc_state`` (spec §1.1) value for value; ``state_string`` renders any
  integer the way sysfs does (anything above RPROC_LAST reads ``invalid``).
- A state changes only through ``transition(state, cause)``, which looks the pair up in
  ``TRANSITIONS`` and raises ``IllegalTransition`` for anything not in the table. ``rproc.py``
  never assigns a state on its own authority.
- Which lifecycle *requests* a state accepts (boot, shutdown, detach, set_firmware, coredump
  configuration, crash reports) is also decided here (``check_*`` helpers), so the errno a user
  sees for a request in the wrong state is written down once, next to the table.
- Deliberate differences from the kernel are marked ``DIFF`` and listed in
  ``docs/kernel-differences.md``: a CRASHED processor can be shut down; crash reports against a
  DETACHED or DELETED processor are ignored (the kernel would mark them CRASHED and then try to
  recover something it never started).

This module is pure: no locks, no threads, no I/O.
"""

from __future__ import annotations

import enum
import errno
from types import MappingProxyType

from remoteproc.errors import RprocError

__all__ = [
    "INITIAL_STATES",
    "TRANSITIONS",
    "Cause",
    "CrashType",
    "Feature",
    "IllegalTransition",
    "State",
    "can_stop",
    "check_boot",
    "check_coredump_config",
    "check_detach",
    "check_set_firmware",
    "check_shutdown",
    "crash_is_handled",
    "crash_type_name",
    "is_up",
    "recovery_applies",
    "state_string",
    "transition",
]


class State(enum.IntEnum):
    """``enum rproc_state``: the values are the kernel's."""

    OFFLINE = 0
    SUSPENDED = 1  # exists in the enum; nothing ever enters it (as in the kernel)
    RUNNING = 2
    CRASHED = 3
    DELETED = 4
    ATTACHED = 5
    DETACHED = 6
    LAST = 7  # sysfs shows "invalid"

    @property
    def sysfs(self) -> str:
        return state_string(int(self))


_STRINGS = ("offline", "suspended", "running", "crashed", "deleted", "attached", "detached")


def state_string(value: int) -> str:
    """The sysfs ``state`` text (without the newline) for any integer value."""
    if 0 <= value < len(_STRINGS):
        return _STRINGS[value]
    return "invalid"


class Cause(enum.Enum):
    """What makes a state change: one member per kernel code path that assigns ``rproc->state``."""

    START = "start"  # rproc_start() finished (boot or the second half of boot recovery)
    ATTACH = "attach"  # __rproc_attach() finished
    STOP = "stop"  # rproc_stop() finished (shutdown, or the first half of boot recovery)
    DETACH = "detach"  # __rproc_detach() finished (detach, or the first half of attach recovery)
    CRASH = "crash"  # the crash handler accepted a crash report
    DELETE = "delete"  # rproc_del()


_S = State
_C = Cause

# (from, cause) -> to. Read it as the spec's §1.2 table.
TRANSITIONS: MappingProxyType[tuple[State, Cause], State] = MappingProxyType(
    {
        (_S.OFFLINE, _C.START): _S.RUNNING,
        (_S.DETACHED, _C.ATTACH): _S.ATTACHED,
        (_S.RUNNING, _C.STOP): _S.OFFLINE,
        (_S.ATTACHED, _C.STOP): _S.OFFLINE,  # an attached core that is stopped is OFFLINE
        (_S.CRASHED, _C.STOP): _S.OFFLINE,  # boot recovery step 1, and (DIFF) user shutdown
        (_S.ATTACHED, _C.DETACH): _S.DETACHED,
        (_S.CRASHED, _C.DETACH): _S.DETACHED,  # attach recovery step 1
        (_S.RUNNING, _C.CRASH): _S.CRASHED,
        (_S.ATTACHED, _C.CRASH): _S.CRASHED,
        (_S.SUSPENDED, _C.CRASH): _S.CRASHED,
        **{(s, _C.DELETE): _S.DELETED for s in State if s is not _S.LAST},
    }
)


class IllegalTransition(RprocError):
    """A transition the table does not allow: always a bug in the caller, never user input."""

    def __init__(self, state: State, cause: Cause) -> None:
        super().__init__(
            errno.EINVAL, f"illegal transition: {state_string(state)} --{cause.value}-->"
        )
        self.state = state
        self.cause = cause


def transition(state: State, cause: Cause) -> State:
    """The state after ``cause`` happens in ``state``; raises ``IllegalTransition`` if none."""
    try:
        return TRANSITIONS[(state, cause)]
    except KeyError:
        raise IllegalTransition(state, cause) from None


# What a platform may register a processor in (``rproc_validate``; DETACHED: started by a boot
# loader).
INITIAL_STATES = frozenset({State.OFFLINE, State.DETACHED})

# States holding resources that a shutdown (or a delete) must stop. DIFF: CRASHED included.
_STOPPABLE = frozenset({State.RUNNING, State.ATTACHED, State.CRASHED})


def can_stop(state: State) -> bool:
    """Whether the processor holds a running (or crashed) image that ``shutdown`` stops."""
    return state in _STOPPABLE


def recovery_applies(state: State) -> bool:
    """``rproc_trigger_recovery`` acts only on a CRASHED processor (else a silent no-op)."""
    return state is State.CRASHED


def is_up(state: State) -> bool:
    """States in which the processor runs code we are responsible for (panic hook, coredump)."""
    return state in (State.RUNNING, State.ATTACHED)


# ---- which requests each state accepts (spec §1.11) --------------------------------------------


def check_boot(state: State, name: str) -> None:
    """``rproc_boot`` step 3: a deleted processor cannot boot (ENODEV)."""
    if state is State.DELETED:
        raise RprocError(errno.ENODEV, f"can't boot deleted rproc {name}")


def check_shutdown(state: State) -> None:
    """``rproc_shutdown`` step 2: only RUNNING/ATTACHED, plus CRASHED (DIFF: the kernel refuses
    a crashed processor, which leaves it stuck when recovery is disabled)."""
    if not can_stop(state):
        raise RprocError(errno.EINVAL, f"can't stop rproc in state {state_string(state)}")


def check_detach(state: State) -> None:
    """``rproc_detach`` step 1: only an ATTACHED processor can be detached."""
    if state is not State.ATTACHED:
        raise RprocError(errno.EINVAL, f"can't detach rproc in state {state_string(state)}")


def check_set_firmware(state: State) -> None:
    """``rproc_set_firmware``: the name can only change while OFFLINE."""
    if state is not State.OFFLINE:
        raise RprocError(errno.EBUSY, "can't change firmware while running")


def check_coredump_config(state: State) -> None:
    """sysfs/debugfs ``coredump`` writes are refused while a crash is being handled."""
    if state is State.CRASHED:
        raise RprocError(errno.EBUSY, "can't change coredump configuration while crashed")


def crash_is_handled(state: State) -> bool:
    """Whether the crash handler acts on a report arriving in ``state``.

    Kernel: everything except CRASHED (only the first crash is handled) and OFFLINE (a stopped
    processor is not recovered). DIFF: DETACHED and DELETED are ignored too.
    """
    return (state, Cause.CRASH) in TRANSITIONS


class CrashType(enum.IntEnum):
    """``enum rproc_crash_type`` with the kernel's names (``rproc_crash_names``)."""

    MMUFAULT = 0
    WATCHDOG = 1
    FATAL_ERROR = 2

    @property
    def label(self) -> str:
        return crash_type_name(int(self))

    @classmethod
    def parse(cls, value: CrashType | int | str) -> CrashType | int:
        """Accept the enum, its integer, or its kernel name ("fatal error"); unknown ints pass."""
        if isinstance(value, CrashType):
            return value
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                return value
        for member in cls:
            if member.label == value or member.name.lower() == value.lower():
                return member
        raise RprocError(errno.EINVAL, f"unknown crash type {value!r}")


_CRASH_NAMES = ("mmufault", "watchdog", "fatal error")


def crash_type_name(value: int) -> str:
    if 0 <= value < len(_CRASH_NAMES):
        return _CRASH_NAMES[value]
    return "unknown"


class Feature(enum.IntEnum):
    """``enum rproc_features``."""

    ATTACH_ON_RECOVERY = 0
