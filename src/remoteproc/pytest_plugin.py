"""The pytest plugin: firmware tests against emulated remote processors or a real board, with the
same test file, in parallel with pytest-xdist.

Registered through the ``pytest11`` entry point ``remoteproc`` (``pip install`` is all it takes;
from a source tree, ``-p remoteproc.pytest_plugin``). See docs/pytest-plugin.md.

Owns the options (``--rproc-machine``, ``--rproc-firmware-dir``, ``--rproc-root``), the marker
``@pytest.mark.rproc(machine=..., firmware={"m4": "build/app.elf"})``, the fixture ``remoteproc``
(a ``remoteproc.client.AbiRoot``), and the failure sections (per processor: state history, trace
and console tails, symbolized crash reports, coredump paths), added to the terminal report and
to JUnit XML as ``<property>`` entries.

Rules:
- Emulated runs (the default): every test gets a fresh machine served in this process, an
  ``rprocd`` (``Daemon``) mounted under the test's own folder of ``--basetemp``. Chosen by
  measurement (docs/pytest-plugin.md): an in-process daemon starts in ~25 ms and is exact, a
  subprocess rprocd costs ~600 ms, and a reset of a shared machine cannot bring back what a test
  changed (a preloaded core attached, coredumps, endpoints) and is not faster. Nothing is fixed
  and shared: mount points, firmware folders and coredump copies live under the worker's
  basetemp, so ``pytest -n auto`` needs nothing more.
- Board runs (``--rproc-root``): the root is used as it is. The state of every processor
  (state, firmware, recovery, coredump mode) is noted at its first use and put back after each
  test as far as the kernel allows (a core that was attached and got stopped cannot be attached
  again: a warning says so); the marker's firmware is installed into ``ROOT/lib/firmware``.
  A marker's ``machine`` describes an emulated SoC and does not apply to a board.
- Bad input never shows an internal traceback: a bad option is a ``pytest.UsageError``, a bad
  marker or firmware an error of the test at setup whose message names the cause (file, core,
  the kernel's finding). Firmware given in a marker is checked first with ``rproc fw check``'s
  rules: an image Linux would refuse fails the setup naming the finding.
- Imports of the emulator and the FUSE layer happen on first use, so a pytest run that never
  asks for ``remoteproc`` pays nothing for the plugin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from remoteproc.client import AbiRoot, RemoteProc
from remoteproc.errors import RprocError

if TYPE_CHECKING:
    from remoteproc.core.events import Event
    from remoteproc.daemon import Daemon
    from remoteproc.platforms.emulator.machine import MachineSpec

__all__ = ["BoardRun", "EmulatedRun", "Settings", "resolve_machine"]

TAIL_LINES = 20
_BUNDLED_FIRMWARE = Path(__file__).resolve().parent / "data" / "firmware"
_LIVE_STATES = ("running", "attached")


class RprocUsage(Exception):
    """A problem with what the user asked for (an option, a marker, a firmware file)."""


# -- settings ---------------------------------------------------------------------------------


def _machines_dir() -> Path:
    # platforms/emulator/machine.py's MACHINES_DIR, without importing the emulator package
    # (unicorn: ~250 ms) into every pytest run that has the plugin installed
    return Path(__file__).resolve().parent / "platforms" / "emulator" / "machines"


def bundled_machines() -> list[str]:
    return sorted(p.stem for p in _machines_dir().glob("*.toml"))


def resolve_machine(value: str | os.PathLike[str], base: Path) -> Path:
    """``NAME`` (a bundled machine: ``default``) or ``FILE`` (relative to ``base``)."""
    text = os.fspath(value)
    as_file = Path(text).expanduser()
    if not as_file.is_absolute():
        as_file = base / as_file
    if as_file.is_file():
        return as_file
    looks_like_file = "/" in text or text.endswith(".toml")
    bundled = _machines_dir() / f"{text}.toml"
    if not looks_like_file and bundled.is_file():
        return bundled
    known = ", ".join(bundled_machines())
    if looks_like_file:
        raise RprocUsage(f"machine {text!r}: no such file ({as_file}); bundled machines: {known}")
    raise RprocUsage(f"unknown machine {text!r}: not a file and not a bundled machine "
                     f"(bundled: {known})")


_spec_cache: dict[tuple[str, int, int], MachineSpec] = {}


def load_spec(path: Path) -> MachineSpec:
    from remoteproc.platforms.emulator.machine import load_machine_spec

    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise RprocUsage(f"machine {path}: {exc.strerror}") from None
    spec = _spec_cache.get(key)
    if spec is None:
        try:
            spec = load_machine_spec(path)
        except RprocError as exc:
            raise RprocUsage(f"machine {path}: {exc.message}") from None
        _spec_cache[key] = spec
    return spec


_check_cache: dict[tuple[str, int, int], str | None] = {}


def refusal(path: Path) -> str | None:
    """Why Linux would refuse to boot ``path`` (the first error ``rproc fw check`` finds), or
    None when it would boot it."""
    from remoteproc.firmware.check import check_firmware
    from remoteproc.firmware.elf import Firmware

    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _check_cache:
        return _check_cache[key]
    try:
        fw = Firmware.from_file(str(path), path.name)
    except RprocError as exc:
        why: str | None = exc.message
    else:
        report = check_firmware(fw)
        why = "; ".join(str(f) for f in report.errors[:3]) or None
    _check_cache[key] = why
    return why


@dataclasses.dataclass(frozen=True)
class Settings:
    """The plugin's options, validated once per pytest process."""

    machine: Path | None  # None: the bundled default
    firmware_dir: Path | None
    root: Path | None
    invocation_dir: Path

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        base = Path(config.invocation_params.dir)
        machine_opt = config.getoption("rproc_machine")
        fw_opt = config.getoption("rproc_firmware_dir")
        root_opt = config.getoption("rproc_root")
        machine = None
        if machine_opt and root_opt:
            raise pytest.UsageError("--rproc-machine and --rproc-root exclude each other: a "
                                    "root is a board (or a running rprocd) with its own "
                                    "processors")
        if machine_opt:
            try:
                machine = resolve_machine(machine_opt, base)
                load_spec(machine)
            except RprocUsage as exc:
                raise pytest.UsageError(f"--rproc-machine: {exc}") from None
        fw_dir = None
        if fw_opt:
            fw_dir = (base / Path(fw_opt).expanduser()).resolve()
            if not fw_dir.is_dir():
                raise pytest.UsageError(f"--rproc-firmware-dir {fw_opt}: not a directory")
        root = None
        if root_opt:
            root = (base / Path(root_opt).expanduser()).resolve()
            try:
                procs = AbiRoot(root).processors()
            except RprocError as exc:
                raise pytest.UsageError(f"--rproc-root {root_opt}: not a remoteproc ABI root: "
                                        f"{exc.message}") from None
            if not procs:
                raise pytest.UsageError(f"--rproc-root {root_opt}: no remote processor is "
                                        f"registered there ({root}/sys/class/remoteproc is "
                                        "empty)")
        return cls(machine, fw_dir, root, base)


_SETTINGS = pytest.StashKey[Settings]()
_RUN = pytest.StashKey["EmulatedRun | BoardRun"]()
_live: set[EmulatedRun | BoardRun] = set()


# -- hooks ------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("remoteproc", "remote processors (remoteproc plugin)")
    group.addoption("--rproc-machine", metavar="NAME|FILE", default=None,
                    help="machine description the emulated processors come from: a bundled "
                         "machine's name or a TOML file (default: the bundled 'default')")
    group.addoption("--rproc-firmware-dir", metavar="DIR", default=None,
                    help="where relative firmware paths of @pytest.mark.rproc(firmware=...) "
                         "are looked up first; also on the emulated machines' firmware path")
    group.addoption("--rproc-root", metavar="PATH", default=None,
                    help="use an existing remoteproc ABI root instead of emulating: / on a "
                         "board, or an rprocd mount point")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rproc(machine=None, firmware=None): the emulated machine (a bundled name or a TOML "
        "file) and per-core firmware, e.g. firmware={'m4': 'build/app.elf'} (remoteproc)")
    config.stash[_SETTINGS] = Settings.from_config(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    for run in list(_live):
        run.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None:
        return None
    if settings.root is not None:
        return f"remoteproc: root {settings.root}"
    machine = settings.machine or (_machines_dir() / "default.toml")
    return f"remoteproc: emulated machine {machine}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    run = item.stash.get(_RUN, None)
    if run is not None and report.failed and call.when in ("setup", "call") and run.alive:
        for title, text in run.sections():
            report.sections.append((title, text))
            item.user_properties.append((title, text))
            if report.user_properties is not item.user_properties:
                report.user_properties.append((title, text))
    return report


# -- the fixture --------------------------------------------------------------------------------


@pytest.fixture
def remoteproc(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbiRoot]:
    """The remote processors of this test as ``remoteproc.client.AbiRoot``: a fresh emulated
    machine (every processor in its initial state), or the ``--rproc-root`` board."""
    settings = request.config.stash[_SETTINGS]
    item = request.node
    try:
        machine_arg, firmware = _marker_args(item)
        if settings.root is not None:
            if machine_arg is not None:
                warnings.warn(f"remoteproc: @pytest.mark.rproc(machine={machine_arg!r}) "
                              f"describes an emulated SoC; with --rproc-root the processors "
                              f"are those of {settings.root}", stacklevel=1)
            run: EmulatedRun | BoardRun = BoardRun(settings, item, tmp_path_factory, firmware)
        else:
            run = EmulatedRun(settings, item, tmp_path_factory, machine_arg, firmware)
    except RprocUsage as exc:
        pytest.fail(f"remoteproc: {exc}", pytrace=False)
    item.stash[_RUN] = run
    _live.add(run)
    try:
        root = run.start()
    except (RprocUsage, RprocError, OSError) as exc:
        run.close()
        pytest.fail(f"remoteproc: {exc}", pytrace=False)
    try:
        yield root
    finally:
        run.close()


def _marker_args(item: pytest.Item) -> tuple[str | None, dict[str, Path]]:
    marker = item.get_closest_marker("rproc")
    if marker is None:
        return None, {}
    if marker.args:
        raise RprocUsage("@pytest.mark.rproc takes keyword arguments only: machine=..., "
                         "firmware={core: path}")
    unknown = set(marker.kwargs) - {"machine", "firmware"}
    if unknown:
        raise RprocUsage(f"@pytest.mark.rproc: unknown argument(s) {', '.join(sorted(unknown))} "
                         "(it takes machine= and firmware=)")
    machine = marker.kwargs.get("machine")
    if machine is not None and not isinstance(machine, str | os.PathLike):
        raise RprocUsage(f"@pytest.mark.rproc(machine={machine!r}): a machine is a name or a "
                         "path")
    fw = marker.kwargs.get("firmware") or {}
    if not isinstance(fw, dict) or not all(isinstance(k, str) and isinstance(v, str | os.PathLike)
                                           for k, v in fw.items()):
        raise RprocUsage(f"@pytest.mark.rproc(firmware={fw!r}): firmware is a dict of core name "
                         "-> ELF path, e.g. {'m4': 'build/app.elf'}")
    return (os.fspath(machine) if machine is not None else None,
            {k: Path(os.fspath(v)) for k, v in fw.items()})


def _test_dir(item: pytest.Item) -> Path:
    return Path(str(item.path)).parent


def find_firmware(core: str, path: Path, item: pytest.Item, settings: Settings) -> Path:
    """The file a marker's firmware path names: absolute, or relative to --rproc-firmware-dir,
    the test file's folder, the rootdir or (last) the bundled firmware folder."""
    path = path.expanduser()
    if path.is_absolute():
        places = [path]
    else:
        bases = [settings.firmware_dir, _test_dir(item), Path(str(item.config.rootpath)),
                 _BUNDLED_FIRMWARE]
        places = [b / path for b in bases if b is not None]
    for p in places:
        if p.is_file():
            why = refusal(p)
            if why is not None:
                raise RprocUsage(f"firmware for {core!r}: {p}: Linux would refuse to boot it: "
                                 f"{why}")
            return p
        if p.exists():
            raise RprocUsage(f"firmware for {core!r}: {p} is not a regular file")
    looked = ", ".join(str(p.parent) for p in places)
    raise RprocUsage(f"firmware for {core!r}: {path} not found (looked in {looked})")


# -- what both kinds of run share ---------------------------------------------------------------


class _Run:
    root: AbiRoot
    alive: bool = False

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.t0 = time.monotonic()
        self.history: list[tuple[float, str, str]] = []  # (seconds, dev_name, what)
        self._history_lock = threading.Lock()
        self.coredump_dir: Path | None = None
        self._saved: dict[str, Path] = {}

    def note(self, dev_name: str, what: str, when: float | None = None) -> None:
        at = (when if when is not None else time.monotonic()) - self.t0
        with self._history_lock:
            self.history.append((at, dev_name, what))

    def console(self, proc: RemoteProc) -> list[str] | None:
        return None

    def forget_output(self, dev_name: str) -> None:
        """A processor (re)started: its output is a new boot's (``RemoteProc.forget_output``);
        called from event threads, so only dict pops (atomic) touch the cursors."""
        root = getattr(self, "root", None)
        if root is not None:
            for key in list(root.expect_cursors):
                if key[0] == dev_name:
                    root.expect_cursors.pop(key, None)

    def crash_reports(self, proc: RemoteProc) -> list[str]:
        return []

    def save_coredumps(self) -> list[tuple[str, Path]]:
        """Copy every coredump still held for a processor into the test's folder, without
        releasing it (the test may still want it); returns (dev_name, path) of each copy."""
        out: list[tuple[str, Path]] = []
        if self.coredump_dir is None:
            return out
        with contextlib.suppress(RprocError):
            for proc in self.root.processors():
                for dump in proc.coredumps():
                    key = f"{proc.dev_name}-{dump.name}"
                    if key not in self._saved:
                        dest = self.coredump_dir / f"{key}.core"
                        try:
                            self.coredump_dir.mkdir(parents=True, exist_ok=True)
                            dump.save(dest, release=False)
                        except (RprocError, OSError):
                            continue
                        self._saved[key] = dest
        for key, path in self._saved.items():
            out.append((key.split("-", 1)[0], path))
        return out

    def sections(self) -> list[tuple[str, str]]:
        """One report section per processor (see the module rules)."""
        dumps = self.save_coredumps()
        try:
            procs = self.root.processors()
        except RprocError as exc:
            return [("remoteproc", f"cannot list processors: {exc}")]
        out = []
        for proc in procs:
            lines = []
            status = proc.status()
            name = status.get("name") or "?"
            lines.append(f"state {status.get('state')}, firmware {status.get('firmware')}, "
                         f"recovery {status.get('recovery')}, coredump {status.get('coredump')}")
            with self._history_lock:
                hist = [(t, w) for t, d, w in self.history if d == proc.dev_name]
            lines.append("state history:")
            lines += [f"  {t * 1000:8.1f} ms  {w}" for t, w in hist] or ["  (no change)"]
            for n in status.get("traces") or []:
                try:
                    text = proc.trace(n)
                except RprocError as exc:
                    text = f"(unreadable: {exc})"
                tail = text.rstrip("\n").splitlines()[-TAIL_LINES:]
                lines.append(f"trace{n} (last {len(tail)} lines):")
                lines += [f"  {t}" for t in tail] or ["  (empty)"]
            if not status.get("traces"):
                lines.append("traces: none (the processor is not running, or its firmware "
                             "declares no trace buffer)")
            console = self.console(proc)
            if console is not None:
                tail = console[-TAIL_LINES:]
                lines.append(f"console (last {len(tail)} lines):")
                lines += [f"  {t}" for t in tail] or ["  (empty)"]
            for report in self.crash_reports(proc):
                lines.append("crash report:")
                lines += [f"  {t}" for t in report.splitlines()]
            mine = [p for d, p in dumps if d == proc.dev_name]
            if mine:
                lines.append("coredumps (kept):")
                lines += [f"  {p}" for p in mine]
            out.append((f"remoteproc {proc.dev_name} ({name})", "\n".join(lines)))
        return out

    def start(self) -> AbiRoot:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _safe_name(item: pytest.Item) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)[:40]
    return f"rproc-{name}"


# -- emulated machines --------------------------------------------------------------------------


class EmulatedRun(_Run):
    """A fresh machine for one test, served in this process under the test's folder."""

    def __init__(self, settings: Settings, item: pytest.Item,
                 factory: pytest.TempPathFactory, machine: str | None,
                 firmware: dict[str, Path]) -> None:
        super().__init__(item)
        if machine is not None:
            path = resolve_machine(machine, _test_dir(item))
        else:
            path = settings.machine or (_machines_dir() / "default.toml")
        spec = load_spec(path)
        names = [c.name for c in spec.cores]
        for core in firmware:
            if core not in names:
                raise RprocUsage(f"firmware for {core!r}: machine {path.name} has no core "
                                 f"named {core!r} (cores: {', '.join(names)})")
        self.files = {core: find_firmware(core, p, item, settings) for core, p in firmware.items()}
        self.settings = settings
        self.spec = spec
        self.machine_path = path
        self.dir = factory.mktemp(_safe_name(item))
        self.coredump_dir = self.dir / "coredumps"
        self.daemon: Daemon | None = None
        self._platform_procs: dict[str, Any] = {}

    def _on_event(self, ev: Event) -> None:
        from remoteproc.core.events import EventKind

        if ev.kind is EventKind.STATE:
            what = f"{ev.old} -> {ev.state}"
            if ev.state == "running":
                self.forget_output(ev.rproc)
        elif ev.kind in (EventKind.ADDED, EventKind.DELETED):
            return
        else:
            what = f"{ev.kind.value}" + (f" ({ev.detail})" if ev.detail else "")
            if ev.error is not None:
                what += f": {ev.error}"
        self.note(ev.rproc, what, ev.time)

    def start(self) -> AbiRoot:
        from remoteproc.daemon import Daemon

        fw_dir = self.dir / "firmware"
        fw_dir.mkdir()
        cores = []
        used: dict[str, Path] = {}
        for core in self.spec.cores:
            src = self.files.get(core.name)
            if src is None:
                cores.append(core)
                continue
            name = src.name
            if name in used and used[name] != src:
                name = f"{core.name}-{name}"  # two different files of the same name
            used[name] = src
            shutil.copyfile(src, fw_dir / name)
            cores.append(dataclasses.replace(core, firmware=name))
        spec = dataclasses.replace(self.spec, cores=tuple(cores))
        search = [self.settings.firmware_dir] if self.settings.firmware_dir else []
        self.daemon = Daemon(self.dir / "mnt", firmware_dir=fw_dir, spec=spec, search=search,
                             subscriber=self._on_event)
        self.alive = True
        try:
            self.daemon.start()
        except RprocError as exc:
            raise RprocUsage(f"machine {self.machine_path}: {exc}") from None
        host = self.daemon.host
        assert host is not None
        # the auto-boots run on the work queue: the test starts once they are done
        host.workqueue.flush(timeout=60)
        self._platform_procs = {r.dev_name: r.priv for r in host}
        failed = [(t, d, w) for t, d, w in self.history if w.startswith("boot_failed")]
        if failed:
            raise RprocUsage("auto-boot failed: " + "; ".join(f"{d}: {w}" for _, d, w in failed))
        self.root = AbiRoot(self.daemon.mountpoint, firmware_dir=fw_dir,
                            console_reader=self._console_text)
        return self.root

    def _console_text(self, proc: RemoteProc) -> str:
        lines = self.console(proc)
        if lines is None:
            raise RprocError(errno.ENODEV, f"{proc.dev_name} has no console",
                             file=str(proc.sysfs))
        return "".join(line + "\n" for line in lines)

    def console(self, proc: RemoteProc) -> list[str] | None:
        p = self._platform_procs.get(proc.dev_name)
        return list(p.console) if p is not None else None

    def crash_reports(self, proc: RemoteProc) -> list[str]:
        p = self._platform_procs.get(proc.dev_name)
        return [str(r) for r in getattr(p, "crashes", [])]

    def close(self) -> None:
        _live.discard(self)
        if not self.alive:
            return
        self.alive = False
        if self.daemon is not None:
            with contextlib.suppress(RprocError, OSError):
                self.save_coredumps()
            self.daemon.stop()


# -- a board (or an rprocd someone else runs) ---------------------------------------------------


@dataclasses.dataclass
class _Baseline:
    state: str
    firmware: str | None
    recovery: str | None
    coredump: str | None


_baselines: dict[tuple[str, str], _Baseline] = {}


class BoardRun(_Run):
    """Tests on ``--rproc-root``: processors put back to how they were found after each test."""

    def __init__(self, settings: Settings, item: pytest.Item,
                 factory: pytest.TempPathFactory, firmware: dict[str, Path]) -> None:
        super().__init__(item)
        assert settings.root is not None
        self.settings = settings
        self.files = {core: find_firmware(core, p, item, settings) for core, p in firmware.items()}
        self.coredump_dir = factory.mktemp(_safe_name(item)) / "coredumps"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _baseline(self, proc: RemoteProc) -> _Baseline:
        key = (str(self.root.root), proc.dev_name)
        if key not in _baselines:
            st = proc.status()
            _baselines[key] = _Baseline(st["state"], st["firmware"], st["recovery"],
                                        st["coredump"])
        return _baselines[key]

    def start(self) -> AbiRoot:
        assert self.settings.root is not None
        self.root = AbiRoot(self.settings.root)
        procs = self.root.processors()
        for proc in procs:
            self._baseline(proc)
        self.alive = True
        for core, src in self.files.items():
            try:
                proc = self.root.processor(core)
            except RprocError as exc:
                raise RprocUsage(f"firmware for {core!r}: {exc.message}") from None
            base = self._baseline(proc)
            _settle_offline(proc)
            proc.install_firmware(src)
            if base.state in _LIVE_STATES:
                proc.start()
                proc.wait_state("running", timeout=30)
        self._watcher = threading.Thread(target=self._watch, args=(procs,), daemon=True,
                                         name="rproc-pytest-watch")
        self._watcher.start()
        return self.root

    def _watch(self, procs: list[RemoteProc]) -> None:
        from remoteproc.client import StateWatcher

        try:
            with StateWatcher(procs, interval=0.05) as watcher:
                for proc in procs:
                    self.note(proc.dev_name, f"at setup: {watcher.states().get(proc.dev_name)}")
                while not self._stop.is_set():
                    for ch in watcher.changes(timeout=0.1):
                        self.note(ch.device, f"{ch.old} -> {ch.new}")
                        if ch.new == "running":
                            self.forget_output(ch.device)
        except RprocError as exc:
            self.note("remoteproc", f"state watch ended: {exc}")

    def close(self) -> None:
        _live.discard(self)
        if not self.alive:
            return
        self.alive = False
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        with contextlib.suppress(RprocError, OSError):
            self.save_coredumps()
        try:
            procs = self.root.processors()
        except RprocError:
            return
        for proc in procs:
            try:
                self._restore(proc)
            except RprocError as exc:
                warnings.warn(f"remoteproc: could not put {proc.dev_name} back as it was: "
                              f"{exc}", stacklevel=1)

    def _restore(self, proc: RemoteProc) -> None:
        base = self._baseline(proc)
        now = proc.status()
        if (now["state"], now["firmware"]) == (base.state, base.firmware) or (
                now["state"] == "running" and base.state == "attached"
                and now["firmware"] == base.firmware):
            pass
        else:
            _settle_offline(proc)
            if base.firmware and proc.firmware != base.firmware:
                proc.set_firmware(base.firmware)
            if base.state in _LIVE_STATES:
                proc.start()
                proc.wait_state("running", timeout=30)
                if base.state == "attached":
                    warnings.warn(f"remoteproc: {proc.dev_name} was attached (started by the "
                                  "boot loader) and was stopped by the test; it was started "
                                  "again from Linux", stacklevel=1)
        if base.recovery and proc.status().get("recovery") != base.recovery:
            proc.set_recovery(base.recovery)
        if base.coredump and proc.status().get("coredump") != base.coredump:
            proc.set_coredump_mode(base.coredump)


def _settle_offline(proc: RemoteProc, timeout: float = 30.0) -> None:
    """Bring ``proc`` to offline: recover a crashed one first (the kernel stops only a
    running or attached processor)."""
    state = proc.state
    if state == "crashed":
        proc.recover()
        state = proc.wait_state(("running", "attached", "offline"), timeout)
    if state in _LIVE_STATES:
        proc.stop()
        proc.wait_state("offline", timeout)
