"""The pytest plugin (``remoteproc.pytest_plugin``) tested as its users run it: test files run by
pytester on real emulated machines served over FUSE, a board root played by an rprocd, xdist
with two workers, the failure sections in the terminal and in JUnit XML, and bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from remoteproc.client import AbiRoot
from remoteproc.daemon import Daemon

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
BUNDLED = SRC / "remoteproc" / "data" / "firmware"


def plugin_args() -> list[str]:
    """Installed (``pip install``), pytest loads the plugin through its entry point by itself;
    from a source tree it is named with ``-p``."""
    if any(ep.value == "remoteproc.pytest_plugin" for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "remoteproc.pytest_plugin"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def run_subprocess(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str,
                   timeout: float = 600) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(SRC), os.environ.get("PYTHONPATH", "")]))
    return pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", *args,
                                         timeout=timeout)


def no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text, text
    assert "INTERNALERROR" not in text, text


ECHO_TESTS = """
    import os
    from pathlib import Path
    import pytest
    import remoteproc as remoteproc_pkg
    from remoteproc.client import open_channel

    CWD = os.getcwd()

    def test_echo(remoteproc):
        m4 = remoteproc.processor("m4")
        assert m4.state == "running"
        with open_channel(m4) as ep:
            ep.send(b"ping")
            assert ep.recv(timeout=10) == b"ping"
        m4.stop()
        m4.wait_state("offline")

    def test_fresh_machine_each_test(remoteproc):
        # the previous test stopped m4: this one starts from the machine's initial state
        assert remoteproc.processor("m4").state == "running"
        assert remoteproc.processor("m4-early").state == "attached"
        assert remoteproc.processor("rv").state == "offline"
        # serving the machine in this process leaves the working directory alone
        assert os.getcwd() == CWD

    def test_crash_coredump_and_firmware_install(remoteproc):
        m4 = remoteproc.processor("m4")
        m4.set_coredump_mode("enabled")
        m4.crash("watchdog")
        dump = m4.wait_coredump(30)
        assert dump in m4.coredumps()
        m4.wait_state("running", timeout=30)
        m4.stop()
        bundled = Path(remoteproc_pkg.__file__).parent / "data" / "firmware"
        installed = m4.install_firmware(bundled / "hello-m4.elf", "mine.elf")
        assert installed.parent == remoteproc.firmware_dir and m4.firmware == "mine.elf"
        m4.start()
        m4.expect(r"hello from cortex-m4", timeout=30)

    def test_fails(remoteproc):
        m4 = remoteproc.processor("m4")
        m4.expect(r"rpmsg-echo on (\\S+) core (\\d+)", timeout=30)
        assert 1 + 1 == 3, "deliberate failure"
"""


def test_pass_fail_and_failure_sections(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_echo=ECHO_TESTS)
    junit = pytester.path / "junit.xml"
    result = run(pytester, f"--junitxml={junit}")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    # one section per processor, only for the failing test
    assert out.count("remoteproc remoteproc0 (m4)") == 1, out
    assert "remoteproc remoteproc1 (rv)" in out
    assert "remoteproc remoteproc2 (m4-early)" in out
    m4 = out.split("remoteproc remoteproc0 (m4)")[1].split("remoteproc remoteproc1 (rv)")[0]
    assert "state running, firmware rpmsg-echo-m4.elf" in m4
    assert re.search(r"state history:\n\s+[\d.]+ ms\s+offline -> running", m4), m4
    assert "trace0 (last" in m4 and "rpmsg-echo on cortex-m4 core 0" in m4
    assert "console (last" in m4 and "announced channel rpmsg-raw" in m4
    early = out.split("remoteproc remoteproc2 (m4-early)")[1]
    assert "detached -> attached" in early
    # JUnit: the same sections as properties of the failing test case, none for the others
    tree = ET.parse(junit)
    cases = {c.get("name"): c for c in tree.iter("testcase")}
    props = {p.get("name"): p.get("value") or "" for p in cases["test_fails"].iter("property")}
    assert set(props) == {"remoteproc remoteproc0 (m4)", "remoteproc remoteproc1 (rv)",
                          "remoteproc remoteproc2 (m4-early)"}
    assert "rpmsg-echo on cortex-m4 core 0" in props["remoteproc remoteproc0 (m4)"]
    assert not list(cases["test_echo"].iter("property"))


def test_crash_report_symbolized_and_coredump_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_crash="""
        import errno
        import pytest
        from remoteproc.client import open_channel
        from remoteproc.errors import RprocError

        @pytest.mark.rproc(firmware={"m4": "crash-m4.elf"})
        def test_crash(remoteproc):
            m4 = remoteproc.processor("m4")
            m4.set_coredump_mode("enabled")
            with open_channel(m4) as ep:
                ep.send(b"crash mmu")
                try:  # the recovery may take the endpoint (and the reply) first: EPIPE
                    assert ep.recv(timeout=10) == b"crashing: mmu"
                except RprocError as exc:
                    assert exc.errno == errno.EPIPE
            m4.wait_coredump(30)
            m4.wait_state("running", timeout=30)
            assert False, "look at the crash"
    """)
    basetemp = pytester.path / "bt"
    result = run(pytester, f"--basetemp={basetemp}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    m4 = out.split("remoteproc remoteproc0 (m4)")[1].split("remoteproc remoteproc1 (rv)")[0]
    assert "crash (mmufault)" in m4 and "running -> crashed" in m4 and "recovery_done" in m4
    assert "crash report:" in m4
    assert re.search(r"pc 0x[0-9a-f]+ in crash_mmu_read\+0x[0-9a-f]+ \(main\.c:\d+\)", m4), m4
    assert "firmware crash-m4.elf" in m4
    paths = re.findall(r"coredumps \(kept\):\n\s+(\S+)", m4)
    assert paths, m4
    core = Path(paths[0])
    assert core.is_relative_to(basetemp)
    data = core.read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[16:18], "little") == 4  # ET_CORE


def test_marker_machine_and_firmware(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", solo="""
        [machine]
        name = "solo"
        [ddr]
        base = 0x80000000
        size = 0x10000000
        [[core]]
        name = "dsp"
        cpu = "rv32imac"
        boot = "auto"
        firmware = "hello-rv32.elf"
    """)
    pytester.makepyfile(test_marker="""
        import pytest

        @pytest.mark.rproc(machine="solo.toml")
        def test_machine(remoteproc):
            assert [p.name for p in remoteproc.processors()] == ["dsp"]
            dsp = remoteproc.processor("dsp")
            assert dsp.state == "running"
            dsp.expect("hello", timeout=30)

        @pytest.mark.rproc(firmware={"m4": "hello-m4.elf", "rv": "hello-rv32.elf"})
        def test_firmware(remoteproc):
            m4 = remoteproc.processor("m4")
            assert m4.firmware == "hello-m4.elf"
            m = m4.expect(r"hello from (\\S+)", timeout=30)
            assert m.group(0)
            rv = remoteproc.processor("rv")
            assert rv.state == "offline" and rv.firmware == "hello-rv32.elf"
            rv.start()
            rv.expect("hello", timeout=30)

        @pytest.mark.rproc(machine="default")
        def test_bundled_by_name(remoteproc):
            assert len(remoteproc.processors()) == 3
    """)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3)


def test_options(pytester: pytest.Pytester) -> None:
    fw = pytester.mkdir("build")
    (fw / "app.elf").write_bytes((BUNDLED / "rpmsg-echo-m4.elf").read_bytes())
    pytester.makefile(".toml", two="""
        [machine]
        name = "two"
        [ddr]
        base = 0x80000000
        size = 0x10000000
        [[core]]
        name = "a"
        cpu = "cortex-m4"
        boot = "manual"
        firmware = "app.elf"
        [[core]]
        name = "b"
        cpu = "cortex-m4"
        boot = "manual"
        firmware = "hello-m4.elf"
    """)
    pytester.makepyfile(test_opts="""
        import pytest
        from remoteproc.client import open_channel

        def test_machine_option(remoteproc):
            assert [p.name for p in remoteproc.processors()] == ["a", "b"]
            a = remoteproc.processor("a")
            a.start()           # app.elf comes from --rproc-firmware-dir
            with open_channel(a) as ep:
                ep.send(b"x")
                assert ep.recv(timeout=10) == b"x"

        @pytest.mark.rproc(firmware={"b": "app.elf"})
        def test_relative_firmware(remoteproc):
            b = remoteproc.processor("b")
            assert b.firmware == "app.elf"
            b.start()
            b.expect("rpmsg-echo on", timeout=30)
    """)
    result = run(pytester, "--rproc-machine", "two.toml", "--rproc-firmware-dir", "build")
    result.assert_outcomes(passed=2)
    assert "remoteproc: emulated machine" in result.stdout.str()


def test_board_root_is_put_back_after_each_test(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    """--rproc-root: a root someone else serves (an rprocd here, a board in the field)."""
    # outside the pytester folder, so that collection never walks into the mount
    base = tmp_path_factory.mktemp("board")
    (base / "fw").mkdir()
    with Daemon(base / "mnt", firmware_dir=base / "fw") as daemon:
        assert daemon.host is not None
        daemon.host.workqueue.flush(timeout=60)
        root = AbiRoot(daemon.mountpoint)
        pytester.makepyfile(test_board="""
            import pytest
            from remoteproc.client import open_channel

            def test_a_stops_and_breaks_things(remoteproc):
                m4 = remoteproc.processor("m4")
                m4.stop()
                m4.set_recovery("disabled")
                remoteproc.processor("rv").start()

            def test_b_finds_it_as_it_was(remoteproc):
                assert remoteproc.processor("m4").state == "running"
                assert remoteproc.processor("m4").recovery == "enabled"
                assert remoteproc.processor("rv").state == "offline"

            @pytest.mark.rproc(firmware={"m4": "crash-m4.elf"})
            def test_c_marker_installs_firmware(remoteproc):
                m4 = remoteproc.processor("m4")
                assert m4.firmware == "crash-m4.elf" and m4.state == "running"
                m4.expect("crash on cortex-m4", timeout=30)

            def test_d_console_is_not_in_the_abi(remoteproc):
                remoteproc.processor("m4").expect("x", source="console", timeout=1)
        """)
        result = run(pytester, f"--rproc-root={daemon.mountpoint}", "test_board.py")
        result.assert_outcomes(passed=3, failed=1)
        out = result.stdout.str()
        assert "the kernel's remoteproc ABI has none" in out
        assert "remoteproc: root" in out
        # after the run the processors are as they were found
        assert root.processor("m4").state == "running"
        assert root.processor("m4").firmware == "rpmsg-echo-m4.elf"
        assert root.processor("rv").state == "offline"


def test_xdist_two_workers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    tests = "\n".join(f"""
def test_{i}(remoteproc, worker_id):
    m4 = remoteproc.processor("m4")
    with open_channel(m4) as ep:
        ep.send(b"{i}")
        assert ep.recv(timeout=30) == b"{i}"
    (OUT / "{i}").write_text(worker_id + " " + str(remoteproc.root))
""" for i in range(6))
    out_dir = pytester.mkdir("out")
    pytester.makepyfile(test_par=f"from pathlib import Path\n"
                        f"from remoteproc.client import open_channel\n"
                        f"OUT = Path({str(out_dir)!r})\n{tests}")
    result = run_subprocess(pytester, monkeypatch, "-n", "2")
    result.assert_outcomes(passed=6)
    seen = [p.read_text().split() for p in out_dir.iterdir()]
    workers = {w for w, _ in seen}
    roots = {r for _, r in seen}
    assert workers == {"gw0", "gw1"}, seen
    assert len(roots) == 6  # every test its own mount point, each worker its own basetemp
    assert all(f"popen-{w}" in r for w, r in seen), seen


BAD_MARKERS = {
    'machine="nope"': "unknown machine 'nope': not a file and not a bundled machine",
    'machine="nope.toml"': "machine 'nope.toml': no such file",
    'firmware={"m4": "build/missing.elf"}': "firmware for 'm4': build/missing.elf not found",
    'firmware={"zz": "hello-m4.elf"}': "has no core named 'zz' (cores: m4, rv, m4-early)",
    'firmware={"m4": "garbage.elf"}': "garbage.elf: Linux would refuse to boot it",
    'firmware={"m4": "nort.elf"}': "nort.elf: Linux would refuse to boot it",
    'firmware="m4.elf"': "firmware is a dict of core name -> ELF path",
    'firmwares={}': "unknown argument(s) firmwares",
    'machine="bad.toml"': "bad.toml: core[0].cpu: unknown cpu 'z80'",
}


def test_bad_markers_are_test_errors_naming_the_cause(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("garbage.elf").write_bytes(b"this is not an ELF file at all" * 4)
    # an ELF Linux refuses: the rpmsg echo image with its ELF class byte broken
    elf = bytearray((BUNDLED / "rpmsg-echo-m4.elf").read_bytes())
    elf[4] = 9
    pytester.path.joinpath("nort.elf").write_bytes(bytes(elf))
    pytester.makefile(".toml", bad="""
        [machine]
        name = "bad"
        [[core]]
        name = "x"
        cpu = "z80"
    """)
    body = "import pytest\n" + "".join(
        f"\n@pytest.mark.rproc({arg})\ndef test_{i}(remoteproc):\n    pass\n"
        for i, arg in enumerate(BAD_MARKERS))
    pytester.makepyfile(test_bad=body)
    result = run(pytester)
    result.assert_outcomes(errors=len(BAD_MARKERS))
    out = result.stdout.str()
    for i, why in enumerate(BAD_MARKERS.values()):
        section = out.split(f"ERROR at setup of test_{i} ")[1].split("ERROR at setup")[0]
        section = section.split("short test summary")[0]
        assert why in section, (why, section)
        assert "Traceback" not in section and "def remoteproc(" not in section, section
    no_traceback(result)


@pytest.mark.parametrize(("args", "why"), [
    (["--rproc-machine", "nope"], "--rproc-machine: unknown machine 'nope'"),
    (["--rproc-machine", "x/none.toml"], "--rproc-machine: machine 'x/none.toml': no such file"),
    (["--rproc-root", "."], "--rproc-root .: not a remoteproc ABI root: no remote processors"),
    (["--rproc-firmware-dir", "nothere"], "--rproc-firmware-dir nothere: not a directory"),
    (["--rproc-machine", "default", "--rproc-root", "/"], "exclude each other"),
])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str],
                                      why: str) -> None:
    pytester.makepyfile(test_x="def test_x(remoteproc):\n    pass\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert why in result.stderr.str(), result.stderr.str()
    no_traceback(result)


def test_expect_timeout_names_pattern_and_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_t="""
        def test_t(remoteproc):
            m4 = remoteproc.processor("m4")
            m4.expect("rpmsg-echo on", timeout=30)
            m4.expect("rpmsg-echo on", timeout=0.5)   # consumed already: not there again
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "'rpmsg-echo on' did not appear in trace0 within 0.5 s" in out
    assert "announced channel rpmsg-raw" in out


def test_example_directory_passes() -> None:
    """examples/pytest, run as a user runs it (CI installs gdb-multiarch: nothing skips)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider", "-q",
         "-rs", str(ROOT / "examples" / "pytest")],
        cwd=ROOT / "examples" / "pytest", env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b4 passed\b", proc.stdout), proc.stdout
    assert "skipped" not in proc.stdout, proc.stdout


def test_plugin_registered_as_pytest11_entry_point() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split('[project.entry-points.pytest11]')[1].split("[")[0]
    assert 'remoteproc = "remoteproc.pytest_plugin"' in textwrap.dedent(section)


def test_plugin_knows_the_bundled_machines_without_importing_the_emulator() -> None:
    from remoteproc import pytest_plugin
    from remoteproc.platforms.emulator.machine import DEFAULT_MACHINE, MACHINES_DIR

    assert pytest_plugin._machines_dir() == MACHINES_DIR
    assert pytest_plugin.resolve_machine("default", ROOT) == DEFAULT_MACHINE
    code = ("import sys, remoteproc.pytest_plugin as p; p.bundled_machines(); "
            "assert 'unicorn' not in sys.modules, 'imported unicorn'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(SRC)})


def test_non_utf8_firmware_name_leaves_reports_valid_text(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A firmware name written to sysfs with bytes that are not UTF-8 used to reach the log
    record and the error as lone surrogates, and xdist could not send the test's report to the
    controller (the whole run stopped with an INTERNALERROR)."""
    from types import SimpleNamespace

    from remoteproc.core.firmware_loader import request_firmware
    from remoteproc.errors import RprocError

    name = b"\xff\xfe-fw.elf".decode("utf-8", "surrogateescape")
    host = SimpleNamespace(builtin_firmware={}, firmware_path=[tmp_path])
    with pytest.raises(RprocError) as info:
        request_firmware(host, name)
    assert "\\xff\\xfe-fw.elf" in str(info.value)
    str(info.value).encode("utf-8")
    messages = [r.getMessage() for r in caplog.records]
    assert any("\\xff\\xfe-fw.elf" in m for m in messages), messages
    for m in messages:
        m.encode("utf-8")
