"""Model test: random single-threaded sequences of lifecycle requests against a small reference
model of spec §1 (plus our documented fixes). After every request the processor's state, power
count, crash count and errno must be what the model predicts, and a processor that is down must
hold no resources."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from test_core_support import image, rig

from remoteproc.core.states import Feature, State
from remoteproc.errors import RprocError

IMG = image()
OPS = [
    "boot",
    "shutdown",
    "detach",
    "crash",
    "recover",
    "fw_ok",
    "fw_missing",
    "rm_file",
    "add_file",
    "disable",
    "enable",
]


@dataclass
class Model:
    state: State
    power: int = 0
    crashes: int = 0
    name_ok: bool = True  # the firmware name is one that exists in the host's images
    file_present: bool = True  # ... and the image is currently there
    recovery_disabled: bool = False
    attached_boot: bool = False  # the running image is one we attached to
    attach_on_recovery: bool = False

    @property
    def firmware_ok(self) -> bool:
        return self.name_ok and self.file_present

    def recover(self) -> int:
        """Recover a CRASHED processor; the errno ``rproc_trigger_recovery`` returns (the crash
        worker and the sysfs/debugfs writers ignore it, a direct caller sees it)."""
        if self.attach_on_recovery and self.attached_boot:
            self.state = State.ATTACHED
        elif self.attached_boot or self.firmware_ok:
            self.state = State.RUNNING
        else:  # recovery fails: our fix leaves it OFFLINE with power 0
            self.state, self.power, self.attached_boot = State.OFFLINE, 0, False
            return errno.ENOENT
        return 0

    def apply(self, op: str) -> int:
        """Predict ``op``; returns the expected errno (0 for success)."""
        s = self.state
        if op == "boot":
            self.power += 1
            if self.power > 1:
                return 0
            if s is State.DETACHED:
                self.state, self.attached_boot = State.ATTACHED, True
                return 0
            if not self.firmware_ok:
                self.power -= 1
                return errno.ENOENT
            self.state, self.attached_boot = State.RUNNING, False
            return 0
        if op == "shutdown":
            if s not in (State.RUNNING, State.ATTACHED, State.CRASHED):
                return errno.EINVAL
            if self.power > 1:
                self.power -= 1
                return 0
            self.state, self.power, self.attached_boot = State.OFFLINE, 0, False
            return 0
        if op == "detach":
            if s is not State.ATTACHED:
                return errno.EINVAL
            if self.power > 1:
                self.power -= 1
                return 0
            self.state, self.power, self.attached_boot = State.DETACHED, 0, False
            return 0
        if op == "crash":
            if s in (State.RUNNING, State.ATTACHED):
                self.state = State.CRASHED
                self.crashes += 1
                if not self.recovery_disabled:
                    self.recover()
            return 0
        if op == "recover":
            return self.recover() if s is State.CRASHED else 0
        if op in ("fw_ok", "fw_missing"):
            if s is not State.OFFLINE:
                return errno.EBUSY
            self.name_ok = op == "fw_ok"
            return 0
        if op in ("rm_file", "add_file"):
            self.file_present = op == "add_file"
            return 0
        if op in ("disable", "enable"):
            self.recovery_disabled = op == "disable"
            return 0
        raise AssertionError(op)


def run(ops: list[str], start_detached: bool, attach_on_recovery: bool) -> None:
    features = [Feature.ATTACH_ON_RECOVERY] if attach_on_recovery else []
    r = rig(
        IMG,
        state=State.DETACHED if start_detached else State.OFFLINE,
        preload=IMG if start_detached else None,
        features=features,
    )
    model = Model(
        State.DETACHED if start_detached else State.OFFLINE,
        attach_on_recovery=attach_on_recovery,
    )
    rp = r.rproc
    try:
        for step, op in enumerate(ops):
            expected = model.apply(op)
            got = 0
            try:
                if op == "boot":
                    rp.boot()
                elif op == "shutdown":
                    rp.shutdown()
                elif op == "detach":
                    rp.detach()
                elif op == "crash":
                    rp.report_crash()
                    assert r.host.workqueue.flush(10)
                elif op == "recover":
                    rp.trigger_recovery()
                elif op == "fw_ok":
                    rp.set_firmware("rproc-m4-fw")
                elif op == "fw_missing":
                    rp.set_firmware("no-such-fw")
                elif op == "rm_file":
                    r.host.builtin_firmware.pop("rproc-m4-fw", None)
                elif op == "add_file":
                    r.host.add_firmware("rproc-m4-fw", IMG)
                elif op == "disable":
                    rp.recovery_disabled = True
                elif op == "enable":
                    rp.recovery_disabled = False
            except RprocError as exc:
                got = exc.errno
            where = f"step {step} {op} in {ops[: step + 1]}"
            assert got == expected, where
            assert (rp.state, rp.power, rp.crash_cnt) == (
                model.state,
                model.power,
                model.crashes,
            ), where
            if rp.state in (State.OFFLINE, State.DETACHED):
                assert rp.carveouts == [] and rp.table_ptr is None and rp.notifyids == {}, where
                assert r.sim.dma.allocations == 0, where
            else:
                assert rp.table_ptr is not None and rp.notifyids, where
    finally:
        r.close()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(OPS), max_size=30),
    st.booleans(),
    st.booleans(),
)
def test_lifecycle_matches_the_model(ops: list[str], detached: bool, aor: bool) -> None:
    run(ops, detached, aor)


def test_model_known_sequences() -> None:
    # Seed 000: a preloaded core crashes, recovery must not need a file.
    run(["fw_missing", "boot", "crash", "shutdown", "boot"], True, False)
    # Stuck-state fix: failed recovery, then new firmware and a fresh start.
    run(
        ["boot", "shutdown", "fw_missing", "fw_ok", "boot", "disable", "crash", "shutdown"],
        False,
        False,
    )


FAIL_STEPS = [
    "prepare",
    "parse_fw",
    "load",
    "find_loaded_rsc_table",
    "start",
    "stop",
    "attach",
    "detach",
    "get_loaded_rsc_table",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(OPS), st.sampled_from(FAIL_STEPS).map(lambda s: "fail:" + s)),
        max_size=30,
    ),
    st.booleans(),
    st.booleans(),
)
def test_invariants_hold_with_failures_anywhere(ops: list[str], detached: bool, aor: bool) -> None:
    """With failures injected at any op, the model cannot predict everything, but these hold:
    power is 0 exactly when nothing runs, a down processor holds nothing, every failure is an
    RprocError with a kernel errno, and the processor can always be brought down and up again."""
    features = [Feature.ATTACH_ON_RECOVERY] if aor else []
    r = rig(
        IMG,
        state=State.DETACHED if detached else State.OFFLINE,
        preload=IMG if detached else None,
        features=features,
    )
    rp = r.rproc
    down = (State.OFFLINE, State.DETACHED)
    try:
        for op in ops:
            try:
                if op.startswith("fail:"):
                    r.sim.fail_at(op[5:], errno.EIO)
                elif op == "boot":
                    rp.boot()
                elif op == "shutdown":
                    rp.shutdown()
                elif op == "detach":
                    rp.detach()
                elif op == "crash":
                    rp.report_crash()
                    assert r.host.workqueue.flush(10)
                elif op == "recover":
                    rp.trigger_recovery()
                elif op in ("fw_ok", "fw_missing"):
                    rp.set_firmware("rproc-m4-fw" if op == "fw_ok" else "nope")
                elif op == "rm_file":
                    r.host.builtin_firmware.pop("rproc-m4-fw", None)
                elif op == "add_file":
                    r.host.add_firmware("rproc-m4-fw", IMG)
                elif op in ("disable", "enable"):
                    rp.recovery_disabled = op == "disable"
            except RprocError as exc:
                assert exc.errno in (errno.EINVAL, errno.EBUSY, errno.ENOENT, errno.EIO), exc
            assert (rp.power == 0) == (rp.state in down), (op, rp)
            if rp.state in down:
                assert rp.carveouts == [] and rp.table_ptr is None and rp.notifyids == {}
                assert r.sim.dma.allocations == 0
        # Whatever happened, the processor can be brought down and started again.
        r.sim.clear_failures()
        for _ in range(rp.power):
            rp.shutdown()
        assert rp.state in down and rp.power == 0
        r.host.add_firmware("rproc-m4-fw", IMG)
        if rp.state is State.OFFLINE:
            rp.set_firmware("rproc-m4-fw")
        rp.boot()
        assert rp.state in (State.RUNNING, State.ATTACHED)
    finally:
        r.close()
