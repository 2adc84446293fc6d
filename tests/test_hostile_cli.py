"""Garbage handed to the command lines (``rproc fw``, ``rprocd``) and to the readers behind them:
one clear line on stderr naming the file, a non-zero exit status, no traceback, no hang, no
memory blow-up, and no mount left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import DEFAULT_MACHINE, load_machine_spec

ROOT = Path(__file__).resolve().parents[1]
PREBUILT = ROOT / "firmware" / "prebuilt"


# ``python -m MODULE ARGS`` with a 2 GiB address-space limit (reading /dev/zero must fail here,
# not OOM the machine). The child sets the limit on itself: a ``preexec_fn`` would run Python
# between fork and exec in a parent that has threads (FUSE, workers, xdist's execnet), which
# the subprocess documentation calls unsafe (the child can deadlock before exec) -- the likely
# cause of a one-off failure of an rprocd case here in a full run.
_LIMITED_MAIN = (
    "import resource, runpy, sys\n"
    "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _LIMITED_MAIN, *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fw.fifo"
    os.mkfifo(path)
    return path


# BUG (fixed in firmware/elf.py Firmware.from_file): /dev/zero was read until memory ran out,
# and a FIFO blocked open() forever; `rproc fw info /dev/zero` never returned. (Subprocesses with
# a memory limit and a timeout, so a regression fails instead of hanging or OOM-killing.)
@pytest.mark.parametrize("cmd", ["info", "check", "map"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_rproc_fw_on_a_non_regular_file(cmd: str, kind: str, fifo: Path, tmp_path: Path) -> None:
    path = "/dev/zero" if kind == "dev-zero" else str(fifo)
    extra = ["-o", str(tmp_path / "map.svg")] if cmd == "map" else []
    res = run("remoteproc.cli", "fw", cmd, path, *extra)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert line.startswith("rproc: ") and "not a regular file" in line
    assert not (tmp_path / "map.svg").exists()


@pytest.mark.parametrize("cut", [0, 3, 52, 100, 2000])
def test_rproc_fw_on_truncated_fixtures(cut: int, tmp_path: Path) -> None:
    bad = tmp_path / "cut.elf"
    bad.write_bytes((PREBUILT / "stm32mp1-like-m4.elf").read_bytes()[:cut])
    for cmd in ("info", "check"):
        res = run("remoteproc.cli", "fw", cmd, str(bad))
        assert res.returncode == 2, (cmd, res.stdout, res.stderr)
        assert "Traceback" not in res.stdout + res.stderr
    # BUG (fixed in cli.py fw_map): map wrote an empty picture and exited 0, saying nothing.
    svg = tmp_path / "map.svg"
    res = run("remoteproc.cli", "fw", "map", str(bad), "-o", str(svg))
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert line.startswith("rproc: cut.elf: ") and line.endswith("[EINVAL]")
    assert not svg.exists()


# BUG (fixed in platforms/emulator/machine.py load_machine_spec): a machine description that is
# not UTF-8 raised UnicodeDecodeError (a traceback from rprocd); one that is a FIFO hung rprocd
# in open() where even SIGTERM could not stop it; /dev/zero ate all memory (OOM-killed).
def test_machine_description_not_utf8_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(DEFAULT_MACHINE.read_bytes().replace(b'"rv"', b'"r\xffv"'))
    with pytest.raises(RprocError) as ei:
        load_machine_spec(bad)
    assert ei.value.errno == errno.EINVAL
    assert "bad.toml" in str(ei.value) and "UTF-8" in str(ei.value)


def _rprocd(*args: str) -> subprocess.CompletedProcess[str]:
    return run("remoteproc.daemon", *args, timeout=30)


@pytest.mark.parametrize("kind", ["not-utf8", "fifo", "dev-zero"])
def test_rprocd_bad_machine_file_one_line_and_no_mount(kind: str, tmp_path: Path,
                                                       fifo: Path) -> None:
    if kind == "not-utf8":
        machine = tmp_path / "bad.toml"
        machine.write_bytes(b"\xff\xfe[machine]\n")
        shown = "bad.toml"
    else:
        machine = Path("/dev/zero") if kind == "dev-zero" else fifo
        shown = str(machine)
    mnt = tmp_path / "mnt"
    res = _rprocd("--mount", str(mnt), "--machine", str(machine))
    assert res.returncode == 1, res.stderr
    line = one_line(res.stderr)
    assert line.startswith("rprocd: ") and shown in line
    assert not os.path.ismount(mnt)


# BUG (fixed in daemon.py main): --mount or --firmware-dir naming an existing file gave a
# FileExistsError traceback.
@pytest.mark.parametrize("option", ["--mount", "--firmware-dir"])
def test_rprocd_directory_option_naming_a_file(option: str, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = ["--mount", str(tmp_path / "mnt"), "--sim", "s0"]
    if option == "--mount":
        args[1] = str(afile)
    else:
        args += ["--firmware-dir", str(afile)]
    res = _rprocd(*args)
    assert res.returncode == 1
    line = one_line(res.stderr)
    assert line == f"rprocd: {afile}: not a directory"
    assert not os.path.ismount(tmp_path / "mnt")


# BUG (fixed in platforms/emulator/platform.py preload): a preloaded core whose image is missing
# or refused by the boot loader failed rprocd with a message naming neither the machine file nor
# the key ("rprocd: firmware missing.elf not found for the boot loader").
@pytest.mark.parametrize("image", ["missing.elf", "junk.elf", "../../etc/passwd"])
def test_rprocd_preloaded_image_errors_name_file_and_key(image: str, tmp_path: Path) -> None:
    fwdir = tmp_path / "fw"
    fwdir.mkdir()
    (fwdir / "junk.elf").write_bytes(b"\x7fELF" + b"\xff" * 100)
    machine = tmp_path / "pre.toml"
    machine.write_text(f'[[core]]\nname = "a"\ncpu = "cortex-m4"\nboot = "preloaded"\n'
                       f'firmware = "{image}"\n')
    mnt = tmp_path / "mnt"
    res = _rprocd("--mount", str(mnt), "--machine", str(machine), "--firmware-dir", str(fwdir))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("rprocd: pre.toml: core[0].firmware: "), last
    assert not os.path.ismount(mnt)


# BUG (fixed in cli.py fw_map): an output path in a folder that does not exist gave a
# FileNotFoundError traceback.
@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_rproc_fw_map_output_that_cannot_be_written(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / f"map{suffix}"
    res = run("remoteproc.cli", "fw", "map", str(PREBUILT / "stm32mp1-like-m4.elf"),
              "-o", str(out))
    assert res.returncode == 1
    assert one_line(res.stderr) == f"rproc: {out}: No such file or directory"


# BUG (fixed in cli.py status_cmd): values read from sysfs went into a rich table as markup: a
# firmware name "fw[/red].elf" (any user can choose it) made `rproc status` die with a
# MarkupError traceback, and "fw[bold].elf" was shown as "fw.elf". Channel names come from the
# remote, so a hostile firmware could break it too.
def test_rproc_status_shows_names_as_text(tmp_path: Path) -> None:
    from test_abi_support import mounted_host, write_errno

    with mounted_host(tmp_path, [("m4", {}), ("dsp[x]", {})], rpmsg=False) as abi:
        assert write_errno(abi.sys(0, "firmware"), b"fw[/red].elf") == 0
        assert write_errno(abi.sys(1, "firmware"), b"fw[bold].elf") == 0
        res = run("remoteproc.cli", "--root", str(abi.root), "status")
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
        assert "fw[/red].elf" in res.stdout and "fw[bold].elf" in res.stdout
        assert "dsp[x]" in res.stdout


def test_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    # `rproc fw info FW > /dev/full`: ENOSPC on stdout ends the command with one line, exit 1
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [sys.executable, "-m", "remoteproc.cli", "fw", "info",
             str(PREBUILT / "stm32mp1-like-m4.elf")],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
        )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "No space left on device" in res.stderr
