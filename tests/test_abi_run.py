"""End to end: board programs, unchanged, through ``rproc run`` against ``rprocd`` on the bundled
virtual SoC (emulated cores running the example firmware). Shell scripts and C programs compiled
here use the kernel's paths only: /sys/class, /sys/bus, /sys/devices, /dev/rpmsgN."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_abi_support import wait_until
from test_rprocd import Rprocd

BOARD = Path(__file__).resolve().parent / "board"
SRC = str(Path(__file__).resolve().parent.parent / "src")
# rprocd and rproc as subprocesses run this checkout's package, whatever the working directory
# (a relative PYTHONPATH=src stops working once a test or libfuse changed it).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (SRC, os.environ.get("PYTHONPATH")) if p and p != "src")
ENV = dict(os.environ)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="rproc run tests mount as root")


def rproc_run(root: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remoteproc.cli", "run", "--root", str(root),
                           "--", *argv], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def start_vsoc(tmp: Path) -> Rprocd:
    d = Rprocd(tmp / "root", "--firmware-dir", str(tmp / "fw"))
    # the auto-booted m4 has announced its channels once its rpmsg char device exists
    if not wait_until(lambda: "rpmsg0" in os.listdir(d.root / "dev"), 30):
        d.kill()
        raise AssertionError("no rpmsg0")
    return d


@pytest.fixture(scope="module")
def vsoc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rprocd]:
    d = start_vsoc(tmp_path_factory.mktemp("vsoc"))
    try:
        yield d
    finally:
        d.kill()


def build(tmp: Path, name: str) -> Path:
    """A board program from tests/board, built with the host's gcc and uapi headers."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the board programs (tools/test.sh installs it)")
    out = tmp / name
    subprocess.run(["gcc", "-Wall", "-Wno-format-truncation", "-Werror", "-O1", "-o", str(out),
                    str(BOARD / f"{name}.c")], check=True)
    return out


@pytest.fixture(scope="module")
def bind_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("board"), "rpmsg_bind_echo")


def test_list_follow_links_stop_start_every_processor(tmp_path: Path) -> None:
    """The lifecycle script: ``find ... -maxdepth 1`` lists processors (links, not their files),
    each link leads into /sys/devices; every processor, the preloaded one included, stops and
    starts, and keeps its virtio number (the kernel's lowest-free ida)."""
    d = start_vsoc(tmp_path)
    try:
        r = rproc_run(d.root, str(BOARD / "lifecycle.sh"))
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        # m4 and m4-early boot concurrently: which one takes virtio0 varies
        v_m4, v_early = lines[0].split()[-1], lines[2].split()[-1]
        assert {v_m4, v_early} == {"virtio0", "virtio1"}
        assert lines[:3] == [
            f"remoteproc0 m4 running 10000000.m4 vsoc-rproc {v_m4}",
            "remoteproc1 rv offline 10100000.rv vsoc-rproc -",
            f"remoteproc2 m4-early attached 10200000.m4-early vsoc-rproc {v_early}",
        ]
        assert lines[3:] == [  # each restarted processor gets its number back
            f"remoteproc0 running {v_m4} -> {v_m4}",
            "remoteproc1 offline - -> -",
            f"remoteproc2 running {v_early} -> {v_early}",
        ]
    finally:
        d.kill()


def test_bind_channel_open_dev_rpmsg_poll_echo(vsoc: Rprocd, bind_echo: Path) -> None:
    r = rproc_run(vsoc.root, str(bind_echo), "rpmsg-openamp-demo-channel")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("channel virtio") and \
        out[0].endswith(".rpmsg-openamp-demo-channel.-1.1026")
    assert out[1:5] == [
        "driver_override rpmsg_chrdev",
        "bind to rpmsg_ctrl: No such device",  # the override names another driver
        "bind again: Device or resource busy",
        "bind unknown: No such device",
    ]
    assert out[5].startswith("device rpmsg") and " dev 237:" in out[5]
    assert out[6:] == [
        "empty read: Resource temporarily unavailable",
        "poll echo: ok",
        "epoll echo: epoll",
        "select echo: select",
        "unbind from another driver: No such device",
        f"after unbind /dev/{out[5].split()[1]}: No such file or directory",
        "driver_override (null)",
    ]


SOC_SCRIPT = r"""
set -eu
for f in machine family soc_id revision; do echo "$f=$(cat /sys/devices/soc0/$f)"; done
echo "soc0 link $(readlink /sys/bus/soc/devices/soc0)"
echo "soc0 subsystem $(readlink /sys/devices/soc0/subsystem)"
p=/sys/bus/platform/devices/10000000.m4
echo "platform link $(readlink $p)"
echo "driver $(readlink $p/driver)"
echo "modalias $(cat $p/modalias)"
cat $p/uevent
ls /sys/bus/platform/drivers/vsoc-rproc
echo "remoteproc $(ls $p/remoteproc)"
cat /sys/class/remoteproc/remoteproc0/uevent
echo "dev $(cat /sys/class/remoteproc/remoteproc0/dev)"
echo "device $(readlink /sys/class/remoteproc/remoteproc0/device)"
vn=$(basename $(ls -d /sys/class/remoteproc/remoteproc0/rproc-virtio.*.auto/virtio*))
v=$(readlink -f /sys/bus/virtio/devices/$vn)
echo "virtio $(cat $v/device) $(cat $v/vendor) $(cat $v/modalias) $(cat $v/status)"
echo "features $(cut -c1-8 $v/features) $(tr -d '\n' < $v/features | wc -c)"
echo "virtio parent $(basename $(dirname $v))"
c=/sys/bus/rpmsg/devices/$vn.rpmsg-raw.-1.1024
echo "rpmsg $(cat $c/name) $(cat $c/src) $(cat $c/dst) $(cat $c/announce) $(cat $c/modalias)"
echo "rpmsg driver $(basename $(readlink $c/driver))"
cat $c/uevent
cat $c/rpmsg/rpmsg*/uevent
echo "tty $(ls /sys/class/tty/ | grep RPMSG | tr '\n' ' ')"
[ -c /dev/null ] && [ ! -L /dev/null ] && echo "dev/null is a char device"
[ "$(readlink /dev/ttyRPMSG0)" = "$(tty < /dev/ttyRPMSG0)" ] || echo "ttyname differs"
python3 -c 'import os; m, s = os.openpty(); print("openpty", os.ttyname(s)[:9])'
echo "debugfs $(ls /sys/kernel/debug/remoteproc | tr '\n' ' ')"
echo "host sysfs $(cat /sys/devices/system/cpu/online >/dev/null && echo kept)"
"""


def test_soc0_platform_virtio_and_rpmsg_device_files(vsoc: Rprocd) -> None:
    r = rproc_run(vsoc.root, "sh", "-c", SOC_SCRIPT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    pdev = "../../../devices/platform/soc/10000000.m4"
    expect = [
        "machine=remoteproc virtual SoC", "family=vsoc", "soc_id=vsoc", "revision=1.0",
        "soc0 link ../../../devices/soc0",
        "soc0 subsystem ../../bus/soc",
        f"platform link {pdev}",
        "driver ../../../../bus/platform/drivers/vsoc-rproc",
        "modalias of:Nm4T(null)Cvsoc,cortex-m4",
        "DRIVER=vsoc-rproc", "OF_NAME=m4", "OF_FULLNAME=/soc/m4@10000000",
        "OF_COMPATIBLE_0=vsoc,cortex-m4", "OF_COMPATIBLE_N=1",
        "MODALIAS=of:Nm4T(null)Cvsoc,cortex-m4",
        "10000000.m4", "10100000.rv", "10200000.m4-early", "uevent",
        "remoteproc remoteproc0",
        "MAJOR=239", "MINOR=0", "DEVNAME=remoteproc0", "DEVTYPE=remoteproc",
        "dev 239:0",
        "device ../../../10000000.m4",
        # a legacy device: ACKNOWLEDGE, DRIVER, DRIVER_OK (no FEATURES_OK)
        "virtio 0x0007 0x0000 virtio:d00000007v00000000 0x00000007",
        "features 10000000 64",  # VIRTIO_RPMSG_F_NS, the only bit negotiated
        "virtio parent rproc-virtio.N.auto",
        "rpmsg rpmsg-raw 0x400 0x400 false rpmsg:rpmsg-raw",
        "rpmsg driver rpmsg_chrdev",
        "DRIVER=rpmsg_chrdev", "MODALIAS=rpmsg:rpmsg-raw",
    ]
    out = [re.sub(r"rproc-virtio\.\d+\.auto", "rproc-virtio.N.auto", line) for line in out]
    assert out[:len(expect)] == expect
    rest = out[len(expect):]
    assert rest[0] == "MAJOR=237" and rest[1].startswith("MINOR=")
    assert rest[2] == f"DEVNAME=rpmsg{rest[1].removeprefix('MINOR=')}"
    assert rest[3].startswith("tty ttyRPMSG")
    assert rest[4:] == ["dev/null is a char device", "openpty /dev/pts/",
                        "debugfs remoteproc0 remoteproc1 remoteproc2 ", "host sysfs kept"]


def test_run_status_and_errors(vsoc: Rprocd, tmp_path: Path) -> None:
    assert rproc_run(vsoc.root, "sh", "-c", "exit 7").returncode == 7
    # /lib/firmware is rprocd's firmware folder: what a board script copies there is found
    fw = Path(os.readlink(vsoc.root / "lib/firmware"))
    (fw / "probe-fw.elf").write_bytes(b"x")
    try:
        assert rproc_run(vsoc.root, "test", "-f", "/lib/firmware/probe-fw.elf").returncode == 0
    finally:
        (fw / "probe-fw.elf").unlink()
    r = rproc_run(vsoc.root, "no-such-program-here")
    assert r.returncode == 127 and "no-such-program-here: command not found" in r.stderr
    r = rproc_run(tmp_path, "true")
    assert r.returncode == 1
    assert f"{tmp_path}: not an rprocd mount" in r.stderr and "Traceback" not in r.stderr
    # on a board (--root /) the program runs as it is
    assert rproc_run(Path("/"), "sh", "-c", "test -d /sys/class && exit 4").returncode == 4
    # nothing leaked into this namespace
    mounts = Path("/proc/self/mounts").read_text()
    assert " /sys/class/remoteproc " not in mounts and " /dev fuse" not in mounts


def test_rprocd_run_starts_runs_stops(tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    r = subprocess.run([sys.executable, "-m", "remoteproc.daemon", "--mount", str(mnt), "--sim",
                        "dsp", "--run", "--", "sh", "-c",
                        "cat /sys/class/remoteproc/remoteproc0/name; "
                        "readlink /sys/class/remoteproc/remoteproc0; exit 3"],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == [
        "dsp", "../../devices/platform/sim-rproc.0/remoteproc/remoteproc0"]
    assert not os.path.ismount(mnt)


USERNS_PROGRAM = r"""
import sys
from remoteproc.client.run import run
from remoteproc.errors import RprocError
try:
    sys.exit(run(sys.argv[1], ["sh", "-c", sys.argv[2]]))
except RprocError as exc:
    print(f"rproc run: {exc.message}", file=sys.stderr)
    sys.exit(1)
"""


def test_run_without_root_through_a_user_namespace(tmp_path: Path) -> None:
    """As an unprivileged user, ``rproc run`` builds the namespace in a user namespace (the
    rprocd tree here is a plain folder with rprocd's layout: a root rprocd's FUSE mount is
    the root user's alone), or says clearly that the kernel refuses."""
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if setpriv is None or not os.access(python, os.X_OK):
        pytest.skip("needs setpriv and /usr/bin/python3 to run as another user")
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="rproc-userns-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        link = top / "sys/class/remoteproc/remoteproc0"
        dev = top / "sys/devices/platform/soc/10000000.m4/remoteproc/remoteproc0"
        dev.mkdir(parents=True)
        (dev / "name").write_text("m4\n")
        link.parent.mkdir(parents=True)
        link.symlink_to("../../devices/platform/soc/10000000.m4/remoteproc/remoteproc0")
        (top / "rprocd/devfs").mkdir(parents=True)
        (top / "rprocd/mnt").mkdir()
        (top / "dev").mkdir()
        for d in (top / "rprocd/devfs", top / "dev"):
            (d / "rpmsg0").write_text("")
        (top / "rprocd/devfs/null").write_text("")  # the placeholder the host's node goes on
        for p in [top, *top.rglob("*")]:
            os.lchown(p, 65534, 65534)
        script = ("id -u; cat /sys/class/remoteproc/remoteproc0/name; test -e /dev/rpmsg0; "
                  "echo x > /dev/null; test -d /sys/devices/system; exit 5")
        r = subprocess.run([setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            python, "-c", USERNS_PROGRAM, str(top), script],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC})
        if r.returncode == 1 and "cannot create a mount namespace" in r.stderr:
            assert "unprivileged user namespaces" in r.stderr  # the kernel refused: said so
            return
        assert r.returncode == 5, r.stderr
        assert r.stdout.splitlines() == ["0", "m4"]  # root inside the user namespace
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_rprocd_run_usage_errors() -> None:
    daemon = [sys.executable, "-m", "remoteproc.daemon"]
    r = subprocess.run([*daemon, "--sim", "x", "--run"], capture_output=True, text=True,
                       timeout=60, env=ENV)
    assert r.returncode == 2 and "--run needs a program" in r.stderr
    r = subprocess.run([*daemon, "--sim", "x"], capture_output=True, text=True, timeout=60,
                       env=ENV)
    assert r.returncode == 2 and "--mount DIR is required" in r.stderr


def test_tty_rpmsg_by_path(vsoc: Rprocd) -> None:
    """ttyRPMSGn is a real terminal at its /dev path: a shell pipes through it (the echo waits
    in the terminal's input queue until the reader comes, whichever runs first)."""
    script = ("t=$(ls /dev | grep ttyRPMSG | head -n 1); test -t 0 < /dev/$t || exit 3; "
              "got=$(mktemp); timeout 20 head -c 5 < /dev/$t > $got & "
              "printf hello > /dev/$t; wait; cat $got; rm $got; "
              "cat /sys/class/tty/$t/uevent | head -n 3 | cut -d= -f1 | tr '\\n' ' '")
    r = rproc_run(vsoc.root, "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "helloMAJOR MINOR DEVNAME "


def test_remoteproc_and_rpmsg_ctrl_devices_by_path(vsoc: Rprocd, tmp_path: Path) -> None:
    """/dev/remoteprocN: start by write, shutdown-on-release, stop by close; /dev/rpmsg_ctrlN:
    CREATE_EPT, the new rpmsgM found below /sys/class/rpmsg/rpmsg_ctrlN, echo, DESTROY_EPT."""
    prog = build(tmp_path, "cdev_ctrl")
    r = rproc_run(vsoc.root, str(prog), "rv")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[:2] == ["remoteproc1 running, shutdown on release 1",
                       "remoteproc1 offline after close"]
    assert out[2].startswith("rpmsg_ctrl") and out[2].endswith(" echo ping")
    assert out[3] == "after DESTROY_EPT: No such file or directory"


def test_rprocd_run_passes_sigterm_on(tmp_path: Path) -> None:
    """SIGTERM to ``rprocd --run`` reaches the program; rprocd stops after it and unmounts."""
    import signal

    mnt = tmp_path / "m"
    d = subprocess.Popen([sys.executable, "-m", "remoteproc.daemon", "--mount", str(mnt),
                          "--sim", "dsp", "--run", "--", "sh", "-c",
                          "trap 'echo got TERM; exit 9' TERM; echo ready; "
                          "while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert d.stdout is not None and d.stdout.readline() == "ready\n"
        d.send_signal(signal.SIGTERM)
        out, _ = d.communicate(timeout=60)
        assert out == "got TERM\n" and d.returncode == 9
        assert not os.path.ismount(mnt)
    finally:
        if d.poll() is None:
            d.kill()
            d.communicate()


def test_namespaces_refused_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel refuses a namespace (a container without CAP_SYS_ADMIN, user
    namespaces switched off), one clear line and the errno, nothing mounted."""
    import errno as errno_mod

    from remoteproc.client import run as run_mod

    for d in ("sys", "rprocd/devfs", "rprocd/mnt"):
        (tmp_path / d).mkdir(parents=True)
    monkeypatch.setattr(run_mod, "_unshare", lambda flags: errno_mod.EPERM)
    with pytest.raises(run_mod.NamespaceError) as ei:
        run_mod.prepare_namespace(str(tmp_path))
    assert ei.value.errno == errno_mod.EPERM
    assert "cannot create a mount namespace: Operation not permitted" in str(ei.value)
    assert "CAP_SYS_ADMIN" in str(ei.value)  # what a root user can do about it
