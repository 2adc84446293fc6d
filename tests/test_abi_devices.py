"""The device model's writable files, errno by errno, through rprocd's mount on the bundled
virtual SoC: ``driver_override`` (rpmsg and platform), the rpmsg drivers' ``bind``/``unbind``,
``drivers_probe``, ``drivers_autoprobe``, ``uevent`` and ``power/control`` (drivers/base/bus.c,
core.c, power/sysfs.c, rpmsg_core.c); plus the machine description's device-model keys."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_abi_run import start_vsoc
from test_abi_support import read_text, wait_until, write_errno
from test_rprocd import Rprocd

from remoteproc.abi.devices import kernfs_link
from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import DEFAULT_MACHINE, load_machine_spec, parse_machine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="rprocd mounts as root")


@pytest.fixture(scope="module")
def vsoc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rprocd]:
    d = start_vsoc(tmp_path_factory.mktemp("devices"))
    try:
        yield d
    finally:
        d.kill()


def rpmsg(d: Rprocd) -> Path:
    return d.root / "sys/bus/rpmsg"


def m4_virtio(d: Rprocd) -> str:
    """The m4's (remoteproc0's) virtio device: virtio0 or virtio1, as the boots raced."""
    rp = d.root / "sys/class/remoteproc/remoteproc0"
    (vp,) = [n for n in os.listdir(rp) if n.startswith("rproc-virtio.")]
    (v,) = [n for n in os.listdir(rp / vp) if n.startswith("virtio")]
    return v


def channel(d: Rprocd, name: str, virtio: str | None = None) -> str:
    """The device name of channel ``name`` of the m4 (the auto-booted core)."""
    found: list[str] = []

    def look() -> bool:
        try:
            v = virtio or m4_virtio(d)
        except ValueError:
            return False  # the processor is between stop and start
        found[:] = [n for n in os.listdir(rpmsg(d) / "devices") if n.startswith(f"{v}.{name}.")]
        return bool(found)

    # after a restart the remote announces its channels one after the other
    assert wait_until(look, 30), f"no {name} channel"
    return found[0]


def driver_of(d: Rprocd, dev: str) -> str | None:
    link = rpmsg(d) / "devices" / dev / "driver"
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def test_kernfs_link_targets() -> None:
    assert kernfs_link(("sys", "class", "rpmsg"), ("sys", "devices", "a", "b")) == \
        "../../devices/a/b"
    # a class device's `device` link: up to the directory holding the parent, then down
    assert kernfs_link(("sys", "devices", "p", "soc", "x", "remoteproc", "remoteproc0"),
                       ("sys", "devices", "p", "soc", "x")) == "../../../x"
    assert kernfs_link(("sys", "devices", "a", "b"), ("sys", "bus", "rpmsg")) == \
        "../../../bus/rpmsg"


def test_rpmsg_driver_override(vsoc: Rprocd) -> None:
    dev = channel(vsoc, "rpmsg-openamp-demo-channel")
    f = rpmsg(vsoc) / "devices" / dev / "driver_override"
    assert os.stat(f).st_mode & 0o777 == 0o644
    try:
        assert read_text(f) == "(null)\n"
        assert write_errno(f, b"rpmsg_chrdev") == 0
        assert read_text(f) == "rpmsg_chrdev\n"
        assert write_errno(f, b"first\nsecond") == 0  # up to the first newline
        assert read_text(f) == "first\n"
        assert write_errno(f, b"\n") == 0  # "\n" clears
        assert read_text(f) == "(null)\n"
        assert write_errno(f, b"x") == 0
        assert write_errno(f, b"\0junk") == 0  # strlen 0: cleared
        assert read_text(f) == "(null)\n"
        assert write_errno(f, b"y" * 4094) == 0
        assert read_text(f) == "y" * 4094 + "\n"
        assert write_errno(f, b"z" * 4095) == errno.EINVAL  # len >= PAGE_SIZE - 1
        assert write_errno(f, b"z" * 9000) == errno.EINVAL
        assert read_text(f) == "y" * 4094 + "\n"  # a refused write changes nothing
    finally:
        write_errno(f, b"\n")


def test_platform_driver_override(vsoc: Rprocd) -> None:
    f = vsoc.root / "sys/bus/platform/devices/10100000.rv/driver_override"
    try:
        assert read_text(f) == "(null)\n"
        assert write_errno(f, b"vsoc-rproc\n") == 0
        assert read_text(f) == "vsoc-rproc\n"
        assert write_errno(f, b"q" * 4095) == errno.EINVAL
        assert write_errno(f, b"\n") == 0
        assert read_text(f) == "(null)\n"
    finally:
        write_errno(f, b"\n")


def test_bind_unbind_errnos(vsoc: Rprocd) -> None:
    drivers = rpmsg(vsoc) / "drivers"
    assert sorted(os.listdir(drivers)) == ["rpmsg_chrdev", "rpmsg_ctrl", "rpmsg_ns", "rpmsg_tty"]
    chrdev = drivers / "rpmsg_chrdev"
    assert {n: os.stat(chrdev / n).st_mode & 0o777 for n in ("bind", "unbind", "uevent")} == \
        {"bind": 0o200, "unbind": 0o200, "uevent": 0o200}
    assert write_errno(chrdev / "bind", b"x", os.O_RDONLY) == errno.EACCES  # write-only
    raw = channel(vsoc, "rpmsg-raw")
    demo = channel(vsoc, "rpmsg-openamp-demo-channel")
    assert driver_of(vsoc, raw) == "rpmsg_chrdev" and driver_of(vsoc, demo) is None
    assert os.readlink(chrdev / raw).startswith("../../../../devices/platform/soc/10000000.m4/")
    assert write_errno(chrdev / "bind", b"virtio7.none.-1.1") == errno.ENODEV  # unknown
    assert write_errno(chrdev / "bind", raw.encode()) == errno.EBUSY  # already bound
    assert write_errno(chrdev / "bind", demo.encode()) == errno.ENODEV  # does not match
    assert write_errno(drivers / "rpmsg_ctrl/bind", demo.encode()) == errno.ENODEV
    assert write_errno(drivers / "rpmsg_tty/unbind", raw.encode()) == errno.ENODEV  # not its
    assert write_errno(chrdev / "unbind", b"virtio7.none.-1.1") == errno.ENODEV
    assert write_errno(chrdev / "unbind", demo.encode()) == errno.ENODEV  # not bound
    # a bound device is EBUSY for any driver, even one its override names
    override = rpmsg(vsoc) / "devices" / raw / "driver_override"
    try:
        assert write_errno(override, b"rpmsg_tty") == 0
        assert write_errno(drivers / "rpmsg_tty/bind", raw.encode()) == errno.EBUSY
    finally:
        write_errno(override, b"\n")
    # unbind then bind again (with the newline echo adds): the char device goes and comes
    devs_before = set(os.listdir(vsoc.root / "dev"))
    assert write_errno(chrdev / "unbind", f"{raw}\n".encode()) == 0
    assert driver_of(vsoc, raw) is None and not (chrdev / raw).exists()
    assert len(set(os.listdir(vsoc.root / "dev"))) == len(devs_before) - 1
    assert write_errno(chrdev / "bind", f"{raw}\n".encode()) == 0
    assert driver_of(vsoc, raw) == "rpmsg_chrdev"
    assert set(os.listdir(vsoc.root / "dev")) == devs_before


def test_drivers_probe_and_autoprobe(vsoc: Rprocd) -> None:
    bus = rpmsg(vsoc)
    assert os.stat(bus / "drivers_probe").st_mode & 0o777 == 0o200
    assert os.stat(bus / "drivers_autoprobe").st_mode & 0o777 == 0o644
    assert write_errno(bus / "drivers_probe", b"virtio7.none.-1.1") == errno.ENODEV
    raw = channel(vsoc, "rpmsg-raw")
    demo = channel(vsoc, "rpmsg-openamp-demo-channel")
    assert write_errno(bus / "drivers/rpmsg_chrdev/unbind", raw.encode()) == 0
    assert write_errno(bus / "drivers_probe", raw.encode()) == 0  # the id table matches
    assert driver_of(vsoc, raw) == "rpmsg_chrdev"
    assert write_errno(bus / "drivers_probe", demo.encode()) == 0  # nothing matches: fine
    assert driver_of(vsoc, demo) is None
    # autoprobe off: after a restart the bus's own devices stay unbound (rpmsg_ns too, so no
    # announcement is heard: the kernel's behaviour), until drivers_probe binds one
    state = vsoc.root / "sys/class/remoteproc/remoteproc0/state"
    ctrl = f"{m4_virtio(vsoc)}.rpmsg_ctrl.0.0"
    assert read_text(bus / "drivers_autoprobe") == "1\n"
    try:
        assert write_errno(bus / "drivers_autoprobe", b"0\n") == 0
        assert read_text(bus / "drivers_autoprobe") == "0\n"
        assert write_errno(state, b"stop") == 0
        assert write_errno(state, b"start") == 0
        assert wait_until(lambda: ctrl in os.listdir(bus / "devices"), 30)
        assert driver_of(vsoc, ctrl) is None
        assert driver_of(vsoc, f"{m4_virtio(vsoc)}.rpmsg_ns.53.53") is None
        assert not (bus / "devices" / ctrl / "rpmsg").exists()
        assert write_errno(bus / "drivers_probe", ctrl.encode()) == 0
        assert driver_of(vsoc, ctrl) == "rpmsg_ctrl"
        assert [n for n in os.listdir(bus / "devices" / ctrl / "rpmsg")
                if n.startswith("rpmsg_ctrl")]
    finally:
        write_errno(bus / "drivers_autoprobe", b"1")
        write_errno(state, b"stop")
        write_errno(state, b"start")
    assert driver_of(vsoc, channel(vsoc, "rpmsg-raw")) == "rpmsg_chrdev"
    assert read_text(bus / "drivers_autoprobe") == "1\n"
    assert write_errno(bus / "drivers_autoprobe", b"yes") == 0  # anything but '0' is on
    assert read_text(bus / "drivers_autoprobe") == "1\n"


def test_uevent_and_power_control(vsoc: Rprocd) -> None:
    dev = vsoc.root / "sys/class/remoteproc/remoteproc1"
    for f in (dev / "uevent", rpmsg(vsoc) / "uevent", rpmsg(vsoc) / "drivers/rpmsg_ns/uevent"):
        assert write_errno(f, b"add") == 0
        assert write_errno(f, b"change\n") == 0
        assert write_errno(f, b"change 12345678-1234-1234-1234-123456789abc") == 0
        assert write_errno(f, b"bogus") == errno.EINVAL
        assert write_errno(f, b"change not-a-uuid") == errno.EINVAL
    assert read_text(dev / "uevent").startswith("MAJOR=239\nMINOR=1\nDEVNAME=remoteproc1\n")
    control = dev / "power/control"
    try:
        assert read_text(control) == "auto\n"
        assert write_errno(control, b"on\n") == 0
        assert read_text(control) == "on\n"
        assert write_errno(control, b"off") == errno.EINVAL
        assert read_text(control) == "on\n"
    finally:
        write_errno(control, b"auto")
    assert read_text(control) == "auto\n"
    assert read_text(dev / "power/runtime_status") == "unsupported\n"


def test_read_only_files_refuse_writers(vsoc: Rprocd) -> None:
    raw = rpmsg(vsoc) / "devices" / channel(vsoc, "rpmsg-raw")
    for f in (raw / "name", raw / "src", raw / "modalias", vsoc.root / "sys/devices/soc0/family",
              vsoc.root / "sys/class/remoteproc/remoteproc0/dev",
              vsoc.root / f"sys/bus/virtio/devices/{m4_virtio(vsoc)}/status"):
        assert write_errno(f, b"x") == errno.EACCES, f


def test_machine_description_device_model_keys() -> None:
    spec = load_machine_spec(DEFAULT_MACHINE)
    assert (spec.model, spec.family, spec.soc_id, spec.revision, spec.driver) == \
        ("remoteproc virtual SoC", "vsoc", "vsoc", "1.0", "vsoc-rproc")
    assert [c.platform_device for c in spec.cores] == \
        ["10000000.m4", "10100000.rv", "10200000.m4-early"]
    text = '''
[machine]
family = "AM62X"
driver = "k3-r5-rproc"
[[core]]
name = "main-r5f0"
cpu = "cortex-m4"
node = "r5f"
unit_address = 0x78000000
[[core]]
name = "dsp"
cpu = "rv32imac"
driver = "k3-dsp-rproc"
'''
    spec = parse_machine(text, "ti.toml")
    assert spec.family == "AM62X"
    assert [(c.platform_device, c.driver, c.compatible) for c in spec.cores] == [
        ("78000000.r5f", "k3-r5-rproc", "vsoc,cortex-m4"),
        ("10100000.dsp", "k3-dsp-rproc", "vsoc,rv32imac")]
    with pytest.raises(RprocError) as ei:
        parse_machine(text.replace('node = "r5f"', 'node = "a/b"'), "ti.toml")
    assert ei.value.errno == errno.EINVAL and "ti.toml: core[0].node: 'a/b'" in str(ei.value)
    dup = text.replace('name = "dsp"', 'name = "dsp"\nnode = "r5f"\nunit_address = 0x78000000')
    with pytest.raises(RprocError) as ei:
        parse_machine(dup, "ti.toml")
    assert "core[1].unit_address: platform device '78000000.r5f' is also core[0]'s" in \
        str(ei.value)
    with pytest.raises(RprocError) as ei:
        parse_machine(text.replace('family = "AM62X"', 'family = "a\\nb"'), "ti.toml")
    assert "machine.family" in str(ei.value)


def test_char_devices_for_a_cuse_back_end() -> None:
    """What a CUSE back end would register: every /dev entry with the numbers sysfs shows."""
    from remoteproc.abi.node import File
    from remoteproc.abi.tree import AbiTree
    from remoteproc.core.host import Host
    from remoteproc.daemon import sim_image
    from remoteproc.platforms.sim import SimPlatform

    host = Host([], panic_hook=False)
    sim = SimPlatform("m4")
    try:
        host.add_firmware("rproc-m4-fw", sim_image())
        sim.make_rproc("m4", host=host, auto_boot=False)
        with AbiTree(host, rpmsg=False) as tree:
            devs = tree.char_devices()
            assert [(d.name, d.devt) for d in devs] == [("remoteproc0", (239, 0))]
            assert isinstance(devs[0].node, File)
            uevent = tree.root.entries()["sys"]
            assert uevent is not None
    finally:
        host.close()
        sim.close()


def test_hostile_writes(vsoc: Rprocd) -> None:
    """Bytes that are not UTF-8, NULs and page-sized names: the kernel's answers, no EIO."""
    drivers = rpmsg(vsoc) / "drivers"
    f = rpmsg(vsoc) / "devices" / channel(vsoc, "rpmsg-openamp-demo-channel") / \
        "driver_override"
    try:
        assert write_errno(f, b"\xff\xfeodd\n") == 0
        with open(f, "rb") as fh:
            assert fh.read() == b"\xff\xfeodd\n"  # shown as written
    finally:
        write_errno(f, b"\n")
    assert write_errno(drivers / "rpmsg_chrdev/bind", b"\xff\xfe") == errno.ENODEV
    assert write_errno(drivers / "rpmsg_chrdev/bind", b"v" * 4096) == errno.ENODEV
    assert write_errno(drivers / "rpmsg_chrdev/unbind", b"\0") == errno.ENODEV
    assert write_errno(rpmsg(vsoc) / "drivers_probe", b"x" * 10000) == errno.ENODEV
    assert write_errno(rpmsg(vsoc) / "uevent", b"\xff") == errno.EINVAL
