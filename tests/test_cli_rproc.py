"""The ``rproc`` processor commands as a user runs them, against the ABI served over FUSE (sim
processors, so each command takes milliseconds): tables, JSON, exit statuses, and one-line
errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import wait_until
from test_abi_support import Abi, abi_fixture, image

from remoteproc.cli import main
from remoteproc.client.root import AbiRoot
from remoteproc.core.coredump import ELFCLASS32, add_segment, set_elf_info
from remoteproc.core.states import State

PROCS: list[tuple[str, dict[str, object]]] = [
    ("m4", {}),
    ("early", {"state": State.DETACHED}),
]


abi = abi_fixture(PROCS, fuse=True)  # the CLI makes its own system calls


def run(abi: Abi, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--root", str(abi.root)], catch_exceptions=False)


def test_list_and_status(abi: Abi) -> None:
    r = run(abi, "list")
    assert r.exit_code == 0
    assert r.output.split("\n")[:2] == ["remoteproc0    m4               offline",
                                        "remoteproc1    early            detached"]
    rows = json.loads(run(abi, "list", "--json").output)
    assert rows[1] == {"index": 1, "device": "remoteproc1", "name": "early",
                       "state": "detached"}
    r = run(abi, "status")
    assert r.exit_code == 0
    for word in ("remoteproc0", "rproc-m4-fw", "enabled", "disabled", "detached"):
        assert word in r.output
    [info] = json.loads(run(abi, "status", "m4", "--json").output)
    assert info["state"] == "offline" and info["traces"] == [] and info["rpmsg"] == []


def test_lifecycle_commands(abi: Abi) -> None:
    r = run(abi, "start", "m4")
    assert r.exit_code == 0 and r.output == "remoteproc0 (m4): running\n"
    r = run(abi, "trace", "m4")
    assert r.output == "booted"
    r = run(abi, "firmware", "m4", "other")
    assert r.exit_code == 1
    assert "firmware can only be changed while the processor is offline" in r.output
    assert r.output.startswith("rproc: ") and "Traceback" not in r.output
    assert run(abi, "stop", "m4").output == "remoteproc0 (m4): offline\n"
    r = run(abi, "stop", "m4")
    assert r.exit_code == 1 and "it is offline" in r.output
    assert run(abi, "start", "early").output == "remoteproc1 (early): attached\n"
    assert run(abi, "detach", "early").output == "remoteproc1 (early): detached\n"
    assert run(abi, "start", "1").output == "remoteproc1 (early): attached\n"


def test_firmware_install(abi: Abi, tmp_path: Path) -> None:
    built = tmp_path / "app.fw"
    built.write_bytes(image(trace_text=b"app v3\0"))
    assert run(abi, "firmware", "m4").output == "rproc-m4-fw\n"
    r = run(abi, "firmware", "m4", "--install", str(built))
    assert r.exit_code == 0, r.output
    assert (abi.fwdir / "app.fw").read_bytes() == built.read_bytes()
    assert run(abi, "firmware", "m4").output == "app.fw\n"
    run(abi, "start", "m4")
    assert run(abi, "trace", "m4", "0").output == "app v3"
    run(abi, "stop", "m4")


def test_recovery_crash_and_coredump_fetch(abi: Abi, tmp_path: Path) -> None:
    assert run(abi, "recovery", "m4").output == "enabled\n"
    assert run(abi, "coredump", "m4", "enabled").output == "enabled\n"
    run(abi, "start", "m4")
    set_elf_info(abi.rproc(0), ELFCLASS32, 40)
    add_segment(abi.rproc(0), 0x0, 0x100)
    r = run(abi, "crash", "m4", "watchdog")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("remoteproc0: running")
    assert "coredump devcd" in r.output
    r = run(abi, "coredump", "m4", "--json")
    assert json.loads(r.output)["pending"]
    out = tmp_path / "m4.core"
    r = run(abi, "coredump", "m4", "--fetch", str(out), "--wait", "5")
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x7fELF" and out.stat().st_size == 52 + 32 + 0x100
    r = run(abi, "coredump", "m4", "--fetch", str(out))
    assert r.exit_code == 1 and "no pending coredump" in r.output
    # recovery disabled: the processor stays crashed until told to recover
    assert run(abi, "recovery", "m4", "disabled").output == "disabled\n"
    r = run(abi, "crash", "m4", "mmufault")
    assert r.output.strip() == "remoteproc0: running -> crashed"
    assert run(abi, "recovery", "m4", "recover").output == "disabled\n"
    assert run(abi, "stop", "m4").exit_code == 0


def test_watch_prints_changes(abi: Abi) -> None:
    # (the library, not the CLI, in the timer thread: CliRunner swaps sys.stdout globally)
    threading.Timer(0.5, AbiRoot(abi.root).processor("m4").start).start()
    r = run(abi, "watch", "m4", "--json", "--count", "1", "--timeout", "10")
    assert r.exit_code == 0
    change = json.loads(r.output)
    assert (change["device"], change["old"], change["new"]) == ("remoteproc0", "offline",
                                                                "running")
    r = run(abi, "watch", "--timeout", "0.2")
    assert "event stream" in r.output
    run(abi, "stop", "m4")


def test_session_start_releases_on_exit(abi: Abi) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "remoteproc.cli", "start", "m4", "--session",
                             "--root", str(abi.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "running; holding" in line and "dev/remoteproc0" in line
        proc.terminate()
        proc.wait(10)
        # The kernel sends FUSE's RELEASE for the held file after the process is gone, not
        # before wait() returns: under load the stop lands a moment later.
        wait_until(lambda: abi.rproc(0).state is State.OFFLINE, 10,
                   "the session's processor stopped after the CLI exited")
    finally:
        proc.kill()
        proc.wait()


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "remoteproc.cli", "status", "--root",
                        str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "is rprocd mounted there?" in r.stderr
    r = subprocess.run([sys.executable, "-m", "remoteproc.cli", "trace", "m4", "--root",
                        str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_unknown_processor_lists_the_choices(abi: Abi) -> None:
    r = run(abi, "start", "dsp")
    assert r.exit_code == 1
    assert "no processor 'dsp': choose one of remoteproc0 (m4), remoteproc1 (early)" in r.output


def test_help_teaches_with_examples() -> None:
    for cmd in (["start"], ["coredump"], ["crash"], ["watch"], ["rpmsg", "send"],
                ["firmware"], ["trace"]):
        r = CliRunner().invoke(main, [*cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.output, cmd


def test_stop_after_a_double_start_explains_the_power_count(abi: Abi) -> None:
    assert run(abi, "start", "m4").exit_code == 0
    assert run(abi, "start", "m4").exit_code == 0  # power 2, as the kernel counts it
    r = run(abi, "stop", "m4", "--timeout", "0.5")
    assert r.exit_code == 1
    assert "started more than once" in r.output and "Traceback" not in r.output
    assert run(abi, "stop", "m4").output == "remoteproc0 (m4): offline\n"
