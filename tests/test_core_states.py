"""The state machine module (spec §1.1, §1.2, §1.11) tested without threads or platforms."""

from __future__ import annotations

import errno

import pytest

from remoteproc.core import states
from remoteproc.core.states import (
    TRANSITIONS,
    Cause,
    CrashType,
    IllegalTransition,
    State,
    crash_type_name,
    state_string,
    transition,
)
from remoteproc.errors import RprocError


def test_enum_values_and_sysfs_strings() -> None:
    expected = ["offline", "suspended", "running", "crashed", "deleted", "attached", "detached"]
    assert [state_string(i) for i in range(7)] == expected
    assert [int(s) for s in State] == list(range(8))
    for value in (7, 8, 100, -1):
        assert state_string(value) == "invalid"
    assert State.LAST.sysfs == "invalid"
    assert State.RUNNING.sysfs == "running"


def test_the_table_is_the_spec_table() -> None:
    S, C = State, Cause
    lifecycle = {k: v for k, v in TRANSITIONS.items() if k[1] is not C.DELETE}
    assert lifecycle == {
        (S.OFFLINE, C.START): S.RUNNING,
        (S.DETACHED, C.ATTACH): S.ATTACHED,
        (S.RUNNING, C.STOP): S.OFFLINE,
        (S.ATTACHED, C.STOP): S.OFFLINE,
        (S.CRASHED, C.STOP): S.OFFLINE,
        (S.ATTACHED, C.DETACH): S.DETACHED,
        (S.CRASHED, C.DETACH): S.DETACHED,
        (S.RUNNING, C.CRASH): S.CRASHED,
        (S.ATTACHED, C.CRASH): S.CRASHED,
        (S.SUSPENDED, C.CRASH): S.CRASHED,
    }
    for s in State:
        if s is not State.LAST:
            assert transition(s, C.DELETE) is S.DELETED
    # Nothing ever enters SUSPENDED.
    assert State.SUSPENDED not in TRANSITIONS.values()


@pytest.mark.parametrize(
    ("state", "cause"),
    [
        (State.RUNNING, Cause.START),
        (State.OFFLINE, Cause.STOP),
        (State.DETACHED, Cause.DETACH),
        (State.RUNNING, Cause.DETACH),
        (State.CRASHED, Cause.CRASH),
        (State.OFFLINE, Cause.CRASH),
        (State.DELETED, Cause.START),
        (State.LAST, Cause.DELETE),
    ],
)
def test_illegal_transitions_raise(state: State, cause: Cause) -> None:
    with pytest.raises(IllegalTransition) as ei:
        transition(state, cause)
    assert ei.value.errno == errno.EINVAL


def test_request_checks_and_errnos() -> None:
    def code(fn: object, *args: object) -> int:
        try:
            fn(*args)  # type: ignore[operator]
        except RprocError as exc:
            return exc.errno
        return 0

    assert code(states.check_boot, State.DELETED, "m4") == errno.ENODEV
    for s in State:
        if s is not State.DELETED:
            assert code(states.check_boot, s, "m4") == 0
    allowed_stop = {State.RUNNING, State.ATTACHED, State.CRASHED}
    for s in State:
        assert code(states.check_shutdown, s) == (0 if s in allowed_stop else errno.EINVAL)
        assert code(states.check_detach, s) == (0 if s is State.ATTACHED else errno.EINVAL)
        assert code(states.check_set_firmware, s) == (0 if s is State.OFFLINE else errno.EBUSY)
        assert code(states.check_coredump_config, s) == (errno.EBUSY if s is State.CRASHED else 0)


def test_crash_handled_only_from_up_states() -> None:
    handled = {s for s in State if states.crash_is_handled(s)}
    assert handled == {State.RUNNING, State.ATTACHED, State.SUSPENDED}


def test_crash_types() -> None:
    assert [crash_type_name(i) for i in range(4)] == [
        "mmufault",
        "watchdog",
        "fatal error",
        "unknown",
    ]
    assert CrashType.parse("fatal error") is CrashType.FATAL_ERROR
    assert CrashType.parse("watchdog") is CrashType.WATCHDOG
    assert CrashType.parse(0) is CrashType.MMUFAULT
    assert CrashType.parse(9) == 9
    with pytest.raises(RprocError):
        CrashType.parse("meltdown")


def test_dispatch_predicates() -> None:
    assert {State.OFFLINE, State.DETACHED} == states.INITIAL_STATES
    assert {s for s in State if states.can_stop(s)} == {
        State.RUNNING,
        State.ATTACHED,
        State.CRASHED,
    }
    assert {s for s in State if states.recovery_applies(s)} == {State.CRASHED}
    assert {s for s in State if states.is_up(s)} == {State.RUNNING, State.ATTACHED}
