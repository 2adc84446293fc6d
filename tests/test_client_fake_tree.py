"""The client library on a fake ABI tree (plain files in tmp_path laid out as on a board):
discovery, parsing of the kernel's formats, and the errors that name what is missing. The same
features run against a real rprocd mount in test_client_rprocd.py."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from remoteproc import uapi
from remoteproc.client.base import owner_rproc
from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import channels, endpoint_devices, format_addr
from remoteproc.client.rproc import parse_crash_type
from remoteproc.client.watch import GONE, StateWatcher
from remoteproc.errors import RprocError


def make_proc(root: Path, n: int, name: str, state: str = "offline",
              fw: str | None = None) -> Path:
    d = root / "sys/class/remoteproc" / f"remoteproc{n}"
    d.mkdir(parents=True)
    for attr, value in (("name", name), ("state", state), ("firmware", fw or f"rproc-{name}-fw"),
                        ("recovery", "enabled"), ("coredump", "disabled")):
        (d / attr).write_text(value + "\n")
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_proc(tmp_path, 0, "m4", "running")
    make_proc(tmp_path, 1, "m0", "detached")
    make_proc(tmp_path, 10, "dsp")
    return tmp_path


def test_ioctl_numbers_are_the_uapi_encoding() -> None:
    size = uapi.ENDPOINT_INFO.size
    assert size == 40
    assert uapi.ioc(uapi.IOC_WRITE, 0xB7, 1, 4) == uapi.RPROC_SET_SHUTDOWN_ON_RELEASE
    assert uapi.ioc(uapi.IOC_READ, 0xB7, 2, 4) == uapi.RPROC_GET_SHUTDOWN_ON_RELEASE
    assert uapi.ioc(uapi.IOC_WRITE, 0xB5, 1, size) == uapi.RPMSG_CREATE_EPT_IOCTL
    assert uapi.ioc(uapi.IOC_NONE, 0xB5, 2, 0) == uapi.RPMSG_DESTROY_EPT_IOCTL
    assert uapi.ioc(uapi.IOC_WRITE, 0xB5, 3, size) == uapi.RPMSG_CREATE_DEV_IOCTL
    assert uapi.ioc(uapi.IOC_WRITE, 0xB5, 4, size) == uapi.RPMSG_RELEASE_DEV_IOCTL


def test_uapi_values_agree_with_the_rpmsg_wire() -> None:
    from remoteproc.rpmsg import wire

    assert uapi.RPMSG_ADDR_ANY == wire.RPMSG_ADDR_ANY
    assert uapi.RPMSG_MTU == wire.RPMSG_MTU
    assert uapi.RPMSG_NAME_SIZE == wire.RPMSG_NAME_SIZE


def test_endpoint_info_layout() -> None:
    raw = uapi.EndpointInfo("rpmsg-client-sample", 0x400, uapi.RPMSG_ADDR_ANY).pack()
    assert len(raw) == 40
    assert raw[:19] == b"rpmsg-client-sample" and raw[19:32] == b"\0" * 13
    assert raw[32:36] == (0x400).to_bytes(4, "little" if os.sys.byteorder == "little" else "big")
    assert raw[36:] == b"\xff\xff\xff\xff"
    long = uapi.EndpointInfo("x" * 40).pack()
    assert long[31] == 0  # name[31] is always NUL
    assert uapi.EndpointInfo.unpack(raw) == ("rpmsg-client-sample", 0x400, uapi.RPMSG_ADDR_ANY)


def test_processors_sorted_by_index_and_found_by_any_name(tree: Path) -> None:
    abi = AbiRoot(tree)
    assert [p.dev_name for p in abi.processors()] == ["remoteproc0", "remoteproc1",
                                                     "remoteproc10"]
    assert abi.processor("m0").index == 1
    assert abi.processor("10").name == "dsp"
    assert abi.processor("remoteproc0").state == "running"
    assert abi.processor(1).firmware == "rproc-m0-fw"
    with pytest.raises(RprocError) as e:
        abi.processor("nope")
    assert e.value.errno == errno.ENODEV
    assert "remoteproc0 (m4)" in str(e.value) and "remoteproc10 (dsp)" in str(e.value)
    with pytest.raises(RprocError) as e:
        abi.processor()
    assert "several processors" in str(e.value)


def test_missing_class_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RprocError) as e:
        AbiRoot(tmp_path).processors()
    assert e.value.errno == errno.ENOENT
    assert str(tmp_path / "sys/class/remoteproc") in str(e.value)
    assert "rproc up --mount" in str(e.value)


def test_status_reads_every_attribute_and_survives_missing_debugfs(tree: Path) -> None:
    info = AbiRoot(tree).processor("m4").status()
    assert info == {"index": 0, "device": "remoteproc0", "name": "m4", "state": "running",
                    "firmware": "rproc-m4-fw", "recovery": "enabled", "coredump": "disabled",
                    "traces": None, "coredumps": [], "cdev": None, "power": None}


def test_debugfs_not_mounted_is_explained(tree: Path) -> None:
    (tree / "sys/kernel/debug").mkdir(parents=True)  # the empty mount point of a board
    p = AbiRoot(tree).processor("m4")
    for call in (p.traces, lambda: p.crash("watchdog"), lambda: p.trace(0)):
        with pytest.raises(RprocError) as e:
            call()
        assert e.value.errno == errno.ENOENT
        assert "debugfs is not mounted" in str(e.value)
        assert "mount -t debugfs none /sys/kernel/debug" in str(e.value)


def test_debugfs_without_remoteproc_is_explained(tree: Path) -> None:
    (tree / "sys/kernel/debug/tracing").mkdir(parents=True)
    with pytest.raises(RprocError) as e:
        AbiRoot(tree).processor("m4").traces()
    assert "no remoteproc directory" in str(e.value)


def test_traces_and_crash_in_debugfs(tree: Path) -> None:
    d = tree / "sys/kernel/debug/remoteproc/remoteproc0"
    d.mkdir(parents=True)
    (d / "trace0").write_bytes(b"hello\nworld\n")
    (d / "trace1").write_bytes(b"")
    (d / "crash").write_bytes(b"")
    p = AbiRoot(tree).processor("m4")
    assert p.traces() == [0, 1]
    assert p.trace(0) == "hello\nworld\n"
    p.crash("watchdog")
    assert (d / "crash").read_bytes() == b"1\n"
    p.crash(7)
    assert (d / "crash").read_bytes() == b"7\n"
    with pytest.raises(RprocError) as e:
        p.trace(2)
    assert "no trace2" in str(e.value) and "RSC_TRACE" in str(e.value)


def test_crash_type_names() -> None:
    assert parse_crash_type("mmufault") == 0
    assert parse_crash_type("watchdog") == 1
    assert parse_crash_type("fatal") == 2 == parse_crash_type("fatal error")
    assert parse_crash_type("0x10") == 16
    with pytest.raises(RprocError):
        parse_crash_type("boom")
    with pytest.raises(RprocError):
        parse_crash_type("-1")


def test_follow_trace(tree: Path) -> None:
    d = tree / "sys/kernel/debug/remoteproc/remoteproc0"
    d.mkdir(parents=True)
    trace = d / "trace0"
    trace.write_text("a\n")
    p = AbiRoot(tree).processor("m4")
    it = p.follow_trace(0, interval=0)
    assert next(it) == "a\n"
    trace.write_text("a\nb\n")
    assert next(it) == "b\n"
    trace.unlink()  # stopped: the trace file goes away; following waits for it
    trace.write_text("new run\n")  # a new boot starts the buffer again
    assert next(it) == "new run\n"


def test_set_firmware_and_install(tree: Path, tmp_path: Path) -> None:
    fwdir = tree / "lib/firmware"
    p = AbiRoot(tree).processor("dsp")
    src = tmp_path / "build.elf"
    src.write_bytes(b"\x7fELF...")
    dest = p.install_firmware(src, "dsp/app.elf")
    assert dest == fwdir / "dsp/app.elf" and dest.read_bytes() == b"\x7fELF..."
    assert p.firmware == "dsp/app.elf"
    p.set_firmware("other")
    assert (p.sysfs / "firmware").read_bytes() == b"other"  # one write, no newline
    with pytest.raises(RprocError):
        p.set_firmware("")
    with pytest.raises(RprocError):
        p.install_firmware(src, "../escape")
    with pytest.raises(RprocError) as e:
        p.install_firmware(tmp_path / "missing.elf")
    assert e.value.errno == errno.ENOENT


def test_lifecycle_writes_exact_words(tree: Path) -> None:
    p = AbiRoot(tree).processor("m4")
    p.stop()
    assert (p.sysfs / "state").read_bytes() == b"stop"
    p.set_recovery("disabled")
    assert (p.sysfs / "recovery").read_bytes() == b"disabled"
    p.set_coredump_mode("inline")
    assert p.coredump_mode == "inline"
    with pytest.raises(RprocError):
        p.set_coredump_mode("everything")
    with pytest.raises(RprocError):
        p.set_recovery("sometimes")


def test_permission_denied_says_run_as_root(tree: Path) -> None:
    p = AbiRoot(tree).processor("m4")
    (p.sysfs / "state").chmod(0o444)
    if os.geteuid() == 0:
        # root passes plain file modes; a board's kernfs refuses root too (sysfs_read_only),
        # which rprocd reproduces: test_client_rprocd covers it.
        p.stop()
        return
    with pytest.raises(RprocError) as e:
        p.stop()
    assert e.value.errno == errno.EACCES and "run as root" in str(e.value)


def test_no_cdev_names_the_kernel_option(tree: Path) -> None:
    p = AbiRoot(tree).processor("m4")
    with pytest.raises(RprocError) as e:
        p.session()
    assert e.value.errno == errno.ENOENT
    assert "CONFIG_REMOTEPROC_CDEV" in str(e.value)
    assert str(tree / "dev/remoteproc0") in str(e.value)


def test_coredumps_found_through_failing_device(tree: Path, tmp_path: Path) -> None:
    cd = tree / "sys/class/devcoredump"
    for n, owner in ((1, "remoteproc1"), (3, "remoteproc0"), (4, None)):
        d = cd / f"devcd{n}"
        d.mkdir(parents=True)
        (d / "data").write_bytes(b"\x7fELF" + bytes([n]) * 100_000)
        if owner:
            # as on a board: a link into /sys/devices/.../remoteproc/remoteprocN
            target = f"../../../devices/platform/soc/m4/remoteproc/{owner}"
            (d / "failing_device").symlink_to(target)
    abi = AbiRoot(tree)
    m4 = abi.processor("m4")
    assert [(d.name, d.owner) for d in m4.coredumps()] == [("devcd3", "remoteproc0"),
                                                          ("devcd4", None)]
    assert [d.name for d in abi.processor("m0").coredumps()] == ["devcd1", "devcd4"]
    seen: list[tuple[int, int | None]] = []
    dump = m4.coredumps()[0]
    size = dump.save(tmp_path / "m4.core", lambda done, total: seen.append((done, total)),
                     release=False)
    assert size == 100_004 and (tmp_path / "m4.core").read_bytes()[:5] == b"\x7fELF\x03"
    assert seen[-1] == (100_004, 100_004)
    dump.release()  # devcoredump frees on a write to data
    assert (cd / "devcd3/data").read_bytes() == b"1"
    assert m4.wait_coredump(0.1, after=3).name == "devcd4"
    with pytest.raises(RprocError) as e:
        m4.wait_coredump(0.1, after=4)
    assert e.value.errno == errno.ETIMEDOUT and "coredump mode is disabled" in str(e.value)


def test_owner_from_sysfs_link(tmp_path: Path) -> None:
    link = tmp_path / "rpmsg_ctrl0"
    link.symlink_to("../../devices/platform/remoteproc/remoteproc2/rproc-virtio.0.auto/virtio0/"
                    "virtio0.rpmsg_ctrl.0.0/rpmsg/rpmsg_ctrl0")
    assert owner_rproc(link) == "remoteproc2"
    assert owner_rproc(tmp_path / "nothing") is None
    # an entry that is a directory with a device link (a flat tree, as rprocd served before its
    # device model; a board's class/rpmsg
    # entries have one too, leading to the parent rpmsg device)
    (tmp_path / "sys/class/remoteproc/remoteproc3").mkdir(parents=True)
    entry = tmp_path / "sys/class/rpmsg/rpmsg7"
    entry.mkdir(parents=True)
    (entry / "device").symlink_to("../../remoteproc/remoteproc3")
    assert owner_rproc(entry) == "remoteproc3"
    # a root whose own name looks like a device does not count
    odd = tmp_path / "remoteproc9"
    (odd / "cls").mkdir(parents=True)
    (odd / "dev0").mkdir()
    (odd / "cls/x").symlink_to("../dev0")
    assert owner_rproc(odd / "cls/x") is None


def test_rpmsg_channels_and_endpoint_devices(tree: Path) -> None:
    bus = tree / "sys/bus/rpmsg/devices"
    bus.mkdir(parents=True)
    devices = tree / "sys/devices/remoteproc0/virtio0"
    for dev, name, src, dst in (("virtio0.rpmsg-raw.-1.1024", "rpmsg-raw", "0x400", "0x400"),
                                ("virtio0.rpmsg_ctrl.0.0", "rpmsg_ctrl", "0x0", "0x0")):
        d = devices / dev
        d.mkdir(parents=True)
        for attr, value in (("name", name), ("src", src), ("dst", dst), ("announce", "true")):
            (d / attr).write_text(value + "\n")
        (bus / dev).symlink_to(f"../../../devices/remoteproc0/virtio0/{dev}")
    cls = tree / "sys/class/rpmsg"
    cls.mkdir(parents=True)
    ept = devices / "virtio0.rpmsg-raw.-1.1024/rpmsg/rpmsg0"
    ept.mkdir(parents=True)
    for attr, value in (("name", "rpmsg-raw"), ("src", "1025"), ("dst", "-1")):
        (ept / attr).write_text(value + "\n")
    (cls / "rpmsg0").symlink_to("../../devices/remoteproc0/virtio0/virtio0.rpmsg-raw.-1.1024/"
                                "rpmsg/rpmsg0")
    abi = AbiRoot(tree)
    m4, m0 = abi.processor("m4"), abi.processor("m0")
    chans = channels(abi, m4)
    assert [(c.name, c.src, c.dst, c.announce, c.owner) for c in chans] == [
        ("rpmsg-raw", 1024, 1024, True, "remoteproc0"), ("rpmsg_ctrl", 0, 0, True, "remoteproc0")]
    assert channels(abi, m0) == []
    [dev] = endpoint_devices(abi, m4)
    assert (dev.index, dev.name, dev.src, dev.dst, dev.owner) == (0, "rpmsg-raw", 1025,
                                                                  0xFFFFFFFF, "remoteproc0")
    assert dev.dev == tree / "dev/rpmsg0"
    assert format_addr(dev.dst) == "ANY" and format_addr(dev.src) == "1025"
    assert endpoint_devices(abi, m0) == []


def test_watch_by_reading_when_poll_does_not_wake(tree: Path) -> None:
    abi = AbiRoot(tree)
    m4, m0 = abi.processor("m4"), abi.processor("m0")
    assert not abi.state_change_notifies()  # plain files: like a board
    with StateWatcher([m4, m0], interval=0.02) as w:
        assert "every 0.02 s" in w.mode and "does not notify" in w.mode
        assert w.states() == {"remoteproc0": "running", "remoteproc1": "detached"}
        assert w.changes(0.05) == []
        (m4.sysfs / "state").write_text("crashed\n")
        [c] = w.changes(1.0)
        assert (c.device, c.name, c.old, c.new) == ("remoteproc0", "m4", "running", "crashed")
        threading.Timer(0.1, lambda: (m4.sysfs / "state").write_text("running\n")).start()
        t0 = time.monotonic()
        assert w.wait_for(m4, ("running",), 2.0) == "running"
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(RprocError) as e:
            w.wait_for(m0, ("attached",), 0.05)
        assert e.value.errno == errno.ETIMEDOUT and "still detached" in str(e.value)
        (m0.sysfs / "state").unlink()
        [c] = w.changes(1.0)
        assert (c.device, c.new) == ("remoteproc1", GONE)
        assert w.states() == {"remoteproc0": "running"}


def test_channel_device_refuses_to_guess(tree: Path) -> None:
    from remoteproc.client.rpmsg import channel_device

    cls = tree / "sys/class/rpmsg"
    for n in (0, 1):
        d = cls / f"rpmsg{n}"
        d.mkdir(parents=True)
        for attr, value in (("name", "rpmsg-raw"), ("src", "1025"), ("dst", "1024")):
            (d / attr).write_text(value + "\n")
    abi = AbiRoot(tree)
    m4 = abi.processor("m4")
    with pytest.raises(RprocError) as e:
        channel_device(m4)
    assert e.value.errno == errno.ENOTUNIQ and "name one" in str(e.value)
    # a device link naming the processor settles it (as on a board)
    (cls / "rpmsg1/device").symlink_to("../../remoteproc/remoteproc0")
    assert channel_device(m4).index == 1
    with pytest.raises(RprocError) as e:
        channel_device(m4, "rpmsg-tty")
    assert e.value.errno == errno.ENOENT and "announces no such channel" in str(e.value)


def test_endpoint_info_round_trips_non_utf8_names() -> None:
    raw = b"\xff\xfeep"
    info = uapi.EndpointInfo(raw.decode("utf-8", "surrogateescape"), 1, 2)
    packed = info.pack()
    assert packed[:4] == raw and len(packed) == uapi.ENDPOINT_INFO.size
    assert uapi.EndpointInfo.unpack(packed) == info
