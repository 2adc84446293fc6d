"""The ``rproc`` command line.

Rules:
- Imports are lazy: a command imports what it needs when it runs, so ``rproc fw info`` starts
  in well under 150 ms (measured by the ``fw_info_cold_ms`` benchmark).
- Every command that prints data has ``--json``; errors go to stderr as one line naming the file,
  the entry and the address, never a traceback, and the exit status says what happened.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

    from remoteproc.client.root import AbiRoot
    from remoteproc.client.rpmsg import Endpoint
    from remoteproc.client.rproc import Coredump, RemoteProc
    from remoteproc.firmware.elf import Firmware

from remoteproc import __version__

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, status: int = 2) -> NoReturn:
    click.echo(f"rproc: {message}", err=True)
    sys.exit(status)


def _load_firmware(path: str) -> Firmware:
    from remoteproc.errors import RprocError
    from remoteproc.firmware.elf import Firmware

    try:
        return Firmware.from_file(path)
    except RprocError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")


class _RprocGroup(click.Group):
    """The top group: an output that cannot be written (a full disk, a closed pipe) ends any
    command with one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # the reader went away (`rproc status | head`): nothing left to tell anyone, and
            # the interpreter's own flush of stdout at exit must not complain either
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else "output: "
            _fail(f"{where}{exc.strerror or exc}", 1)


@click.group(cls=_RprocGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rproc")
@click.option(
    "--root",
    "group_root",
    default=None,
    type=click.Path(file_okay=False),
    help="Where the ABI lives for every command (/ on a board, rprocd's mount point); "
    "the same as each command's --root or RPROC_ROOT.",
)
def main(group_root: str | None) -> None:
    """Drive remote processors the way Linux's remoteproc does.

    \b
    Firmware tools (no board needed):
      rproc fw info FW.elf        what the image holds, as Linux reads it
      rproc fw check FW.elf       what Linux will do with it at boot (exit 0/1/2)
      rproc fw map FW.elf -o m.svg  a picture of its device address space

    \b
    Processors, through the kernel's files under --root (/ on a board):
      rproc demo                  the whole lifecycle on the emulated default machine
      rproc up                    rprocd in the background (then --root /tmp/rproc)
      rproc machines              the bundled machines (rprocd --machine NAME)
      rproc status                every processor: state, firmware, traces, dumps
      rproc start|stop|detach P   lifecycle (P: index, remoteprocN or name)
      rproc firmware P [NAME] [--install FILE]
      rproc recovery P [enabled|disabled|recover]
      rproc coredump P [MODE] [--fetch FILE]
      rproc trace P [-f]          rproc crash P TYPE        rproc watch
      rproc rpmsg send|listen|bench|list
      rproc run -- PROGRAM        a board program, unchanged, against rprocd
    """
    if group_root is not None:
        # Each command reads its root from --root, then RPROC_ROOT: `rproc --root X cmd` feeds
        # the second, so a --root given after the command still wins.
        import os

        os.environ["RPROC_ROOT"] = group_root


@main.group()
def fw() -> None:
    """Inspect and check firmware images before they reach a board.

    Linux loads each PT_LOAD segment at its physical address (p_paddr), copies the
    .resource_table section, and refuses images it cannot parse. These commands tell you
    what it will do, with the kernel's own messages.
    """


@fw.command("info")
@click.argument("firmware", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the same information as JSON.")
def fw_info(firmware: str, as_json: bool) -> None:
    """Show the ELF header, segments, entry point and resource table of FIRMWARE.

    The resource table is printed in the format of the kernel's debugfs
    resource_table file (/sys/kernel/debug/remoteproc/remoteprocN/resource_table).
    """
    from remoteproc.firmware.inspect import describe_firmware, format_info

    info = describe_firmware(_load_firmware(firmware))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(format_info(info), nl=False)
    if "error" in info:
        sys.exit(2)


@fw.command("check")
@click.argument("firmware", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--iommu", is_flag=True, help="The processor sits behind an IOMMU (devmem allowed).")
@click.option(
    "--host-endian",
    type=click.Choice(["little", "big"]),
    default="little",
    show_default=True,
    help="Byte order of the Linux CPU that will load the image.",
)
def fw_check(firmware: str, as_json: bool, iommu: bool, host_endian: str) -> None:
    """Report every error and warning Linux would produce when booting FIRMWARE.

    \b
    Exit status: 0 = fine, 1 = boots with warnings, 2 = Linux would refuse it.
    Each finding names the resource entry, its offset in the table and the
    device address concerned, and cites the section of docs/ that explains it.
    """
    from remoteproc.firmware.check import check_firmware

    report = check_firmware(
        _load_firmware(firmware),
        host_byteorder="<" if host_endian == "little" else ">",
        has_iommu=iommu,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for finding in report.findings:
            click.echo(str(finding))
        click.echo(f"{report.file}: {report.verdict}")
    sys.exit(report.exit_status)


@fw.command("map")
@click.argument("firmware", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Picture to write: .svg or .png.",
)
def fw_map(firmware: str, output: str) -> None:
    """Draw FIRMWARE's device address space: segments, resource table, trace
    buffers, fixed carveouts and vrings, to scale where it fits, labelled."""
    from remoteproc.errors import RprocError
    from remoteproc.firmware.elf import sanity_check
    from remoteproc.firmware.fwmap import build_map, render

    fwimg = _load_firmware(firmware)
    try:
        sanity_check(fwimg.view, file=fwimg.name)
    except RprocError as exc:
        _fail(str(exc))  # nothing to draw: Linux cannot even parse it
    memory_map = build_map(fwimg)
    try:
        render(memory_map, output)
    except ValueError as exc:
        _fail(str(exc))
    except OSError as exc:  # a folder that does not exist, no permission, a full disk
        _fail(f"{output}: {exc.strerror or exc}", 1)
    click.echo(f"wrote {output}: {len(memory_map.regions)} regions")


# ---- remote processors: the kernel's ABI under --root ------------------------------------------

_ROOT_HELP = ("Where the ABI lives: / on a board (the default), rprocd's mount point otherwise "
              "(env RPROC_ROOT).")


def _root_option(fn: F) -> F:
    return click.option("--root", "root", default="/", envvar="RPROC_ROOT", show_default=True,
                        type=click.Path(file_okay=False), help=_ROOT_HELP)(fn)


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def _client_errors(fn: F) -> F:
    """Run ``fn``; an ``RprocError`` (or Ctrl-C) ends the command with one line, no traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from remoteproc.errors import RprocError

        try:
            return fn(*args, **kwargs)
        except RprocError as exc:
            _fail(str(exc), 1)
        except BrokenPipeError:
            sys.exit(0)
        except OSError as exc:
            # the library explains what it expects; this is the rest (e.g. ENOTCONN when a
            # FUSE server dies under us): still one line
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 1)
        except KeyboardInterrupt:
            click.echo("", err=True)
            sys.exit(130)

    return cast(F, wrapper)


def _abi(root: str, firmware_dir: str | None = None) -> AbiRoot:
    from remoteproc.client.root import AbiRoot

    return AbiRoot(root, firmware_dir=firmware_dir)


def _proc(root: str, which: str | None) -> RemoteProc:
    return _abi(root).processor(which)


_PROC_ARG = click.argument("proc", required=False, metavar="[PROC]")
_PROC_REQUIRED = click.argument("proc", metavar="PROC")


def _console() -> Console:
    from rich.console import Console

    # A pipe or a file gets whole lines (rich would wrap tables at 80 columns).
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@main.command("list")
@_root_option
@_json_option
@_client_errors
def list_cmd(root: str, as_json: bool) -> None:
    """List the remote processors (sys/class/remoteproc).

    \b
    Examples:
      rproc list
      rproc list --root /tmp/rproc --json
    """
    rows = [{"index": p.index, "device": p.dev_name, "name": p.name, "state": p.state}
            for p in _abi(root).processors()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['device']:<14} {row['name']:<16} {row['state']}")


@main.command("machines")
@_json_option
def machines_cmd(as_json: bool) -> None:
    """List the bundled machines: what `rprocd --machine NAME` and `rproc up --machine NAME`
    accept (a machine description file works too; docs/virtual-soc.md says how to write one).

    \b
    Examples:
      rproc machines
      rprocd --machine stm32mp157 --mount /tmp/rproc --firmware-dir fw/
    """
    from remoteproc.platforms.emulator.machine import bundled_machines, load_machine_spec

    rows: list[dict[str, Any]] = []
    for name, path in bundled_machines().items():
        spec = load_machine_spec(path)
        rows.append({"name": name, "description": spec.description or spec.name,
                     "platform": spec.platform, "file": str(path),
                     "cores": [{"name": c.name, "cpu": c.cpu, "firmware": c.firmware}
                               for c in spec.cores]})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        cores = ", ".join(f"{c['name']} ({c['cpu']})" for c in row["cores"])
        click.echo(f"{row['name']:<12} {cores}")
        click.echo(f"{'':<12} {row['description']}")


@main.command("status")
@_PROC_ARG
@_root_option
@_json_option
@_client_errors
def status_cmd(proc: str | None, root: str, as_json: bool) -> None:
    """Show every processor (or PROC): state, firmware, recovery, coredump mode, traces,
    pending coredumps, rpmsg channels.

    PROC is an index (0), a device name (remoteproc0) or the processor's name (m4).

    \b
    Examples:
      rproc status
      rproc status m4 --json
    """
    from remoteproc.client.rpmsg import channels

    abi = _abi(root)
    procs = [abi.processor(proc)] if proc is not None else abi.processors()
    infos = []
    for p in procs:
        info = p.status()
        info["rpmsg"] = [c.to_dict() for c in channels(abi, p)]
        infos.append(info)
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"remote processors under {abi.root}"))
    for col in ("device", "name", "state", "power", "firmware", "recovery", "coredump",
                "traces", "dumps", "rpmsg"):
        table.add_column(col)
    for info in infos:
        traces = info["traces"]
        # Every value comes from files a user or the remote wrote (a firmware name, a channel
        # name): text, never rich markup ("fw[/x].elf" must neither vanish nor raise).
        table.add_row(
            escape(info["device"]), escape(info["name"] or "?"), _state_markup(info["state"]),
            "n/a" if info["power"] is None else str(info["power"]),
            escape(info["firmware"] or "?"), escape(info["recovery"] or "?"),
            escape(info["coredump"] or "?"),
            "n/a" if traces is None else " ".join(f"trace{n}" for n in traces) or "-",
            escape(" ".join(info["coredumps"]) or "-"),
            escape(" ".join(c["name"] for c in info["rpmsg"]) or "-"),
        )
    _console().print(table)
    if any(info["traces"] is None for info in infos):
        click.echo("(traces: n/a = debugfs not readable under "
                   f"{abi.debugfs}; mount it or run as root)", err=True)


def _state_markup(state: str | None) -> str:
    colour = {"running": "green", "attached": "green", "crashed": "bold red",
              "offline": "dim", "detached": "yellow"}.get(state or "", "")
    if colour:
        return f"[{colour}]{state}[/]"
    from rich.markup import escape

    return escape(state or "?")


def _lifecycle(root: str, proc: str, verb: str, wait: bool, timeout: float,
               want: tuple[str, ...]) -> None:
    import errno

    from remoteproc.errors import RprocError

    p = _proc(root, proc)
    getattr(p, verb)()
    if wait:
        try:
            state = p.wait_state(want, timeout)
        except RprocError as exc:
            if verb == "stop" and exc.errno == errno.ETIMEDOUT:
                # The write succeeded, so Linux only dropped the power count (spec §1.3): the
                # processor was started more than once and needs as many stops.
                raise RprocError(
                    errno.ETIMEDOUT,
                    f"{exc.message}; the stop was accepted but {p.name} keeps running: it was "
                    "started more than once (each start raises the power count, and Linux "
                    "stops it when the count returns to 0), so stop it again or use --force",
                    file=exc.file,
                ) from exc
            raise
        click.echo(f"{p.dev_name} ({p.name}): {state}")


@main.command("start")
@_PROC_REQUIRED
@_root_option
@click.option("--session", is_flag=True,
              help="Start through /dev/remoteprocN and hold it: the processor stops when this "
                   "command ends, even if it is killed (shutdown-on-release).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for it to run.")
@_client_errors
def start_cmd(proc: str, root: str, session: bool, timeout: float) -> None:
    """Boot PROC with its firmware, or attach to it if a boot loader already started it
    (state detached). Waits until it is running or attached.

    \b
    Examples:
      rproc start m4                 # echo start > /sys/class/remoteproc/remoteprocN/state
      rproc start 0 --session        # runs while this command runs (Ctrl-C stops it)
    """
    if not session:
        _lifecycle(root, proc, "start", True, timeout, ("running", "attached"))
        return
    p = _proc(root, proc)
    with p.session(shutdown_on_release=True) as s:
        s.start()
        state = p.wait_state(("running", "attached"), timeout)
        click.echo(f"{p.dev_name} ({p.name}): {state}; holding {s.path} "
                   "(Ctrl-C stops the processor)")
        import signal

        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
    click.echo(f"{p.dev_name}: released {p.cdev}; state {p.state_or_unknown()}")


@main.command("stop")
@_PROC_REQUIRED
@_root_option
@click.option("--timeout", default=10.0, show_default=True)
@click.option("--force", is_flag=True,
              help="Stop it whatever its power count: write stop until it reads offline (a "
                   "processor started N times needs N stops).")
@_client_errors
def stop_cmd(proc: str, root: str, timeout: float, force: bool) -> None:
    """Stop PROC (running or attached); it ends offline.

    Linux counts starts (the power refcount, shown by `rproc status` under rprocd): a
    processor started twice keeps running after one stop. --force stops it regardless.

    \b
    Examples:
      rproc stop m4
      rproc stop m4 --force
    """
    if force:
        p = _proc(root, proc)
        writes = p.stop_force(timeout)
        click.echo(f"{p.dev_name} ({p.name}): {p.state_or_unknown()}"
                   + (f" ({writes} stop writes)" if writes > 1 else ""))
        return
    _lifecycle(root, proc, "stop", True, timeout, ("offline",))


@main.command("detach")
@_PROC_REQUIRED
@_root_option
@click.option("--timeout", default=10.0, show_default=True)
@_client_errors
def detach_cmd(proc: str, root: str, timeout: float) -> None:
    """Let an attached PROC run on without Linux (state detached); `rproc start` attaches
    again without loading firmware.

    \b
    Example:
      rproc detach m0 && rproc start m0
    """
    _lifecycle(root, proc, "detach", True, timeout, ("detached",))


@main.command("firmware")
@_PROC_REQUIRED
@click.argument("name", required=False)
@click.option("--install", "install", type=click.Path(dir_okay=False, exists=True),
              help="Copy FILE into the firmware directory (as NAME, default its file name) "
                   "first.")
@click.option("--symbols", "symbols", type=click.Path(dir_okay=False, exists=True),
              help="With --install: the stripped image's unstripped twin, installed beside it "
                   "as NAME.debug so crash reports and logs name functions.")
@click.option("--firmware-dir", type=click.Path(file_okay=False),
              help="Where the kernel looks for images (default ROOT/lib/firmware).")
@_root_option
@_client_errors
def firmware_cmd(proc: str, name: str | None, install: str | None, symbols: str | None,
                 firmware_dir: str | None, root: str) -> None:
    """Show or choose the firmware PROC boots next (sysfs firmware; the processor must be
    offline to change it). NAME is relative to the firmware directory.

    \b
    Examples:
      rproc firmware m4                                 # show
      rproc firmware m4 rproc-m4-fw                     # choose
      rproc firmware m4 echo.elf --install build/echo.elf
      rproc firmware m4 echo.elf --install out/echo.stripped --symbols out/echo.elf
    """
    p = _abi(root, firmware_dir).processor(proc)
    if symbols is not None and install is None:
        raise click.UsageError("--symbols goes with --install")
    if install is not None:
        dest = p.install_firmware(install, name, symbols=symbols)
        click.echo(f"installed {dest}; {p.dev_name} will boot {p.firmware}")
    elif name is not None:
        p.set_firmware(name)
        click.echo(f"{p.dev_name} will boot {p.firmware}")
    else:
        click.echo(p.firmware)


@main.command("recovery")
@_PROC_REQUIRED
@click.argument("word", required=False, type=click.Choice(["enabled", "disabled", "recover"]))
@_root_option
@_client_errors
def recovery_cmd(proc: str, word: str | None, root: str) -> None:
    """Show or set crash recovery: enabled (restart after a crash), disabled (stay crashed for
    inspection), recover (recover a crashed processor now).

    \b
    Examples:
      rproc recovery m4 disabled
      rproc recovery m4 recover
    """
    p = _proc(root, proc)
    if word is not None:
        p.set_recovery(word)
    click.echo(p.recovery)


@main.command("coredump")
@_PROC_REQUIRED
@click.argument("mode", required=False, type=click.Choice(["disabled", "enabled", "inline"]))
@click.option("-o", "--fetch", "fetch", type=click.Path(dir_okay=False),
              help="Save the processor's pending coredump to this file (then release it).")
@click.option("--wait", "wait", default=0.0, show_default=True,
              help="With --fetch: seconds to wait for a dump to appear.")
@_root_option
@_json_option
@_client_errors
def coredump_cmd(proc: str, mode: str | None, fetch: str | None, wait: float, root: str,
                 as_json: bool) -> None:
    """Show or set what a crash dumps (disabled, enabled: a copy, inline: read from device
    memory while recovery waits), and fetch a dump (/sys/class/devcoredump/devcdN/data).

    \b
    Examples:
      rproc coredump m4 enabled
      rproc crash m4 watchdog && rproc coredump m4 --fetch m4.core --wait 5
      gdb-multiarch fw.elf m4.core
    """
    p = _proc(root, proc)
    if mode is not None:
        p.set_coredump_mode(mode)
    if fetch is None:
        dumps = [d.name for d in p.coredumps()]
        if as_json:
            click.echo(json.dumps({"mode": p.coredump_mode, "pending": dumps}))
        else:
            click.echo(p.coredump_mode + (f" (pending: {' '.join(dumps)})" if dumps else ""))
        return
    dump = p.wait_coredump(wait) if wait > 0 else next(iter(p.coredumps()), None)
    if dump is None:
        import errno

        from remoteproc.errors import RprocError

        raise RprocError(errno.ENOENT, f"{p.dev_name} has no pending coredump (mode "
                         f"{p.coredump_mode}); use --wait SECONDS after a crash",
                         file=str(p.root.devcoredump_dir))
    size = _fetch_with_progress(dump, fetch)
    if as_json:
        click.echo(json.dumps({"file": fetch, "bytes": size, "devcd": dump.name}))
    else:
        click.echo(f"saved {dump.name} to {fetch} ({size} bytes)")


def _fetch_with_progress(dump: Coredump, dest: str) -> int:
    if not sys.stdout.isatty():
        return int(dump.save(dest))
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(*Progress.get_default_columns()[:1], DownloadColumn(), TransferSpeedColumn(),
                  transient=True, console=_console()) as progress:
        task = progress.add_task(f"{dump.name}", total=None)

        def step(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        return int(dump.save(dest, step))


@main.command("trace")
@_PROC_REQUIRED
@click.argument("n", default=0, required=False, type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the firmware adds.")
@click.option("--interval", default=0.2, show_default=True, help="Seconds between reads.")
@_root_option
@_client_errors
def trace_cmd(proc: str, n: int, follow: bool, interval: float, root: str) -> None:
    """Print trace buffer N of PROC (debugfs remoteproc/remoteprocN/traceN).

    \b
    Examples:
      rproc trace m4
      rproc trace m4 0 --follow
    """
    p = _proc(root, proc)
    if not follow:
        click.echo(p.trace(n), nl=False)
        return
    p.trace(n)  # fail now, with the reason, if there is no such trace
    for text in p.follow_trace(n, interval):
        click.echo(text, nl=False)


@main.command("crash")
@_PROC_REQUIRED
@click.argument("kind", metavar="TYPE", default="fatal")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the crash to be handled (crashed, then running after recovery).")
@click.option("--timeout", default=15.0, show_default=True)
@_root_option
@_client_errors
def crash_cmd(proc: str, kind: str, wait: bool, timeout: float, root: str) -> None:
    """Make PROC crash (debugfs crash): TYPE is mmufault, watchdog, fatal or a number.

    The platform reports the crash like a real fault; with recovery enabled the processor
    is stopped, dumped (if coredump is enabled) and started again.

    \b
    Examples:
      rproc crash m4 watchdog
      rproc recovery m4 disabled && rproc crash m4 mmufault   # stays crashed
    """
    import time

    from remoteproc.client.watch import StateWatcher

    p = _proc(root, proc)
    recovery = p.recovery
    last_dump = max((d.index for d in p.coredumps()), default=-1)
    with StateWatcher([p]) as watcher:
        seen = [watcher.states()[p.dev_name]]
        p.crash(kind)
        if not wait:
            click.echo(f"{p.dev_name}: crash reported")
            return
        t0 = time.monotonic()
        dumps: list[Coredump] = []
        while time.monotonic() - t0 < timeout:
            seen += [c.new for c in watcher.changes(0.2)]
            dumps = [d for d in p.coredumps() if d.index > last_dump]
            up = seen[-1] in ("running", "attached")
            if "crashed" in seen[1:] and (up or recovery == "disabled"):
                break
            # recovery can finish between two reads of state: a new dump proves the crash
            if dumps and up:
                break
            if up and recovery == "enabled" and time.monotonic() - t0 > 1.0:
                break
        click.echo(f"{p.dev_name}: " + " -> ".join(seen))
        for d in dumps:
            click.echo(f"coredump {d.name}: fetch it with `rproc coredump {proc} --fetch FILE`")
        if len(seen) == 1 and not dumps:
            click.echo(f"(the state never left {seen[0]}: recovered faster than it could be "
                       "read, or the processor was not running)", err=True)


@main.command("watch")
@click.argument("procs", nargs=-1, metavar="[PROC]...")
@click.option("--interval", default=0.2, show_default=True,
              help="Seconds between reads where the state file does not notify changes.")
@click.option("--count", default=0, help="Stop after this many changes (0: never).")
@click.option("--timeout", default=0.0, help="Stop after this many seconds (0: never).")
@_root_option
@_json_option
@_client_errors
def watch_cmd(procs: tuple[str, ...], interval: float, count: int, timeout: float, root: str,
              as_json: bool) -> None:
    """Print what happens to every processor (or to PROC...) as it happens.

    Under rprocd it reads the event stream (MOUNT/rprocd/events): every state change (a crash
    that recovers shows as running -> crashed -> offline -> running), crash reports with their
    type, recovery start/done/failed, coredumps, boot failures and vrings broken by the remote.
    On a board the kernel reports none of that: only the sysfs state files are watched, by poll()
    where that wakes, else read every --interval seconds.

    \b
    Examples:
      rproc watch
      rproc watch m4 --json --count 2
    """
    abi = _abi(root)
    targets = [abi.processor(w) for w in procs] if procs else abi.processors()
    if (abi.root / "rprocd" / "events").exists():
        _watch_events(abi, targets, count, timeout, as_json)
        return
    _watch_states(targets, interval, count, timeout, as_json)


def _watch_states(targets: list[Any], interval: float, count: int, timeout: float,
                  as_json: bool) -> None:
    import time

    from remoteproc.client.watch import StateWatcher

    with StateWatcher(targets, interval=interval) as watcher:
        if not as_json:
            now = ", ".join(f"{d}={s}" for d, s in watcher.states().items())
            click.echo(f"watching {now}; {watcher.mode}", err=True)
        seen = 0
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while watcher.states():  # until every watched processor is gone
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            changes = watcher.changes(left)
            for c in changes:
                if as_json:
                    click.echo(json.dumps({"time": c.time, "device": c.device, "name": c.name,
                                           "old": c.old, "new": c.new}))
                else:
                    stamp = time.strftime("%H:%M:%S", time.localtime(c.time))
                    click.echo(f"{stamp} {c.device} ({c.name}): {c.old} -> {c.new}")
                seen += 1
                if count and seen >= count:
                    return
            sys.stdout.flush()


def _watch_events(abi: Any, targets: list[Any], count: int, timeout: float,
                  as_json: bool) -> None:
    import time

    from remoteproc.client.events import EventStream

    # The stream first, then the states: nothing that happens in between is missed.
    with EventStream(abi.root) as stream:
        last = {p.dev_name: p.state_or_unknown() for p in targets}
        names = {p.dev_name: p.name for p in targets}
        if not as_json:
            now = ", ".join(f"{d}={st}" for d, st in last.items())
            click.echo(f"watching {now}; rprocd's event stream (states, crashes, recoveries, "
                       "coredumps, failures)", err=True)
        seen = 0
        deadline = time.monotonic() + timeout if timeout > 0 else None

        def emit(device: str, name: str, when: float, text: str, doc: dict[str, object]) -> bool:
            nonlocal seen
            if as_json:
                click.echo(json.dumps(doc))
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(when))
                click.echo(f"{stamp} {device} ({name}): {text}")
            sys.stdout.flush()
            seen += 1
            return bool(count) and seen >= count

        while last:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            ev = stream.next(left)
            if ev is None:
                if not stream.ended:
                    continue
                # rprocd went away: every processor is gone with it
                for device, state in list(last.items()):
                    if emit(device, names[device], time.time(), f"{state} -> gone",
                            {"time": time.time(), "device": device, "name": names[device],
                             "kind": "state", "old": state, "new": "gone"}):
                        return
                return
            if ev.device not in last:
                continue
            doc = ev.to_dict()
            if ev.kind == "state":
                if ev.state == "deleted":
                    continue  # the "deleted" event that follows reports the processor gone
                doc.update(old=ev.old, new=ev.state, cause=ev.detail)
                last[ev.device] = ev.state
            elif ev.kind == "deleted":
                doc.update(kind="state", old=last[ev.device], new="gone")
                done = emit(ev.device, ev.name, ev.time, f"{last.pop(ev.device)} -> gone", doc)
                if done:
                    return
                continue
            elif ev.kind == "crash":
                doc["type"] = ev.detail
            if emit(ev.device, ev.name, ev.time, ev.describe(), doc):
                return


# ---- rprocd in the background -------------------------------------------------------------------

_DEFAULT_MOUNT = "/tmp/rproc"


@main.command("run", context_settings={"ignore_unknown_options": True,
                                      "allow_interspersed_args": False})
@_root_option
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED,
                metavar="-- PROGRAM [ARGS]")
def run_cmd(root: str, argv: tuple[str, ...]) -> None:
    """Run PROGRAM unmodified with rprocd's trees at the kernel's paths.

    In a private mount namespace (a user namespace too when not root), /sys holds the
    device model (/sys/class/remoteproc, /sys/bus/rpmsg, /sys/devices/platform/..., soc0)
    beside the host's other sysfs entries, /sys/kernel/debug the debugfs files, /dev the
    devices (remoteprocN, rpmsgN, rpmsg_ctrlN, ttyRPMSGn) beside the host's /dev/null, /dev/tty
    and the rest, and /lib/firmware rprocd's firmware folder. The exit status is PROGRAM's.
    With --root / (a board) PROGRAM runs as it is.

    \b
    Examples:
      rproc run --root /tmp/rp -- sh -c 'cat /sys/class/remoteproc/remoteproc*/state'
      rproc run --root /tmp/rp -- ./board-script.sh
    """
    from remoteproc.client.run import run
    from remoteproc.errors import RprocError

    try:
        status = run(root, argv)
    except RprocError as exc:
        _fail(f"run: {exc.message}", 1)
    sys.exit(status)


@main.command("up")
@click.option("--mount", "mount", default=_DEFAULT_MOUNT, show_default=True,
              type=click.Path(file_okay=False), help="Where rprocd mounts the ABI tree.")
@click.option("--machine", metavar="NAME|FILE",
              help="A bundled machine (rproc machines) or a machine description file "
                   "(default: the bundled virtual SoC).")
@click.option("--firmware-dir", type=click.Path(file_okay=False),
              help="Firmware folder, seen as MOUNT/lib/firmware (default: a temporary one).")
@click.option("--sim", "sims", multiple=True, metavar="NAME",
              help="In-memory processors instead of the machine (repeatable; no emulator).")
@click.option("--timeout", default=60.0, show_default=True)
@_client_errors
def up_cmd(mount: str, machine: str | None, firmware_dir: str | None, sims: tuple[str, ...],
           timeout: float) -> None:
    """Start rprocd in the background on the default machine (emulated cores running the
    bundled firmware), serving the kernel's ABI under MOUNT.

    \b
    Examples:
      rproc up && export RPROC_ROOT=/tmp/rproc
      rproc status                                 # uses $RPROC_ROOT
      cat /tmp/rproc/sys/class/remoteproc/remoteproc0/state
      rproc down
    """
    from remoteproc.client.launch import start_rprocd

    with _console().status(f"starting rprocd at {mount}..."):
        daemon = start_rprocd(mount, machine=machine, firmware_dir=firmware_dir, sims=sims,
                              timeout=timeout)
    procs = daemon.root.processors()
    click.echo(f"rprocd (pid {daemon.pid}) serves {len(procs)} processors at {daemon.mount}; "
               f"log: {daemon.log}")
    for p in procs:
        click.echo(f"  {p.dev_name:<14} {p.name:<16} {p.state}")
    click.echo(f"use --root {daemon.mount} (or export RPROC_ROOT={daemon.mount}); "
               f"stop it with `rproc down --mount {daemon.mount}`")


@main.command("down")
@click.option("--mount", "mount", default=_DEFAULT_MOUNT, show_default=True,
              type=click.Path(file_okay=False))
@_client_errors
def down_cmd(mount: str) -> None:
    """Stop the rprocd that `rproc up` started at MOUNT (its processors stop, it unmounts)."""
    from remoteproc.client.launch import clear_stale_mount, find_rprocd

    daemon = find_rprocd(mount)
    if daemon is None:
        stale = clear_stale_mount(mount)
        if stale is not None:
            click.echo(stale)
            return
        _fail(f"{mount}: no rprocd started by `rproc up` serves it", 1)
        return
    with _console().status(f"stopping rprocd (pid {daemon.pid})..."):
        daemon.stop()
    click.echo(f"rprocd stopped; {daemon.mount} unmounted")


@main.command("demo")
@click.option("--root", "root", default=None, type=click.Path(file_okay=False),
              help="Run on this tree (a board's / or a running rprocd) instead of starting "
                   "rprocd on the default machine.")
@click.option("--mount", "mount", default=None, type=click.Path(file_okay=False),
              help="Where to mount the demo's own rprocd (default: a temporary folder).")
@click.option("--sim", "sims", multiple=True, metavar="NAME",
              help="Use in-memory processors instead of the default machine.")
@click.option("--keep", is_flag=True, help="Leave the demo's rprocd running at the end.")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds allowed per wait.")
@click.option("-o", "--output", "workdir", default=None, type=click.Path(file_okay=False),
              help="Folder for the coredump (default: the current folder).")
@_client_errors
def demo_cmd(root: str | None, mount: str | None, sims: tuple[str, ...], keep: bool,
             timeout: float, workdir: str | None) -> None:
    """Show the whole remoteproc lifecycle on the default machine: boot with resource
    handling, rpmsg echo, trace, a crash with its coredump and recovery, stop, and detach /
    re-attach of the core the boot loader started.

    Starts rprocd on the default machine in a temporary mount (always unmounted at the end),
    unless --root names a tree that already has processors.

    \b
    Examples:
      rproc demo
      rproc demo --root /tmp/rproc        # on `rproc up`'s daemon
      sudo rproc demo --root /            # on a board (needs debugfs and rpmsg_char)
    """
    import tempfile
    from pathlib import Path

    from remoteproc.client.demo import Demo
    from remoteproc.client.launch import start_rprocd
    from remoteproc.client.root import AbiRoot

    console = _console()
    out = Path(workdir or ".").resolve()
    out.mkdir(parents=True, exist_ok=True)
    daemon = None
    tmp = None
    try:
        if root is None:
            if mount is None:
                tmp = tempfile.mkdtemp(prefix="rproc-demo-")
                mount = str(Path(tmp) / "root")
            with console.status("starting rprocd on the "
                                f"{'sim processors' if sims else 'default machine'}..."):
                t0 = _now()
                daemon = start_rprocd(mount, sims=sims, timeout=max(timeout, 60.0))
            console.print(f"[green]✓[/] [bold]rprocd[/] ({_now() - t0:.1f} s): pid "
                          f"{daemon.pid} serves the kernel ABI at {daemon.mount}",
                          highlight=False)
            abi = daemon.root
        else:
            abi = AbiRoot(root)
        demo = Demo(abi, console, out, timeout=timeout)
        steps = demo.run()
    finally:
        if daemon is not None and not keep:
            with console.status("stopping rprocd and unmounting..."):
                daemon.stop()
        if tmp is not None and not keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    from rich.table import Table

    table = Table(title="rproc demo")
    for col in ("step", "result", "seconds"):
        table.add_column(col)
    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for st in steps:
        table.add_row(st.title, f"[{colour[st.status]}]{st.status}[/]", f"{st.seconds:.1f}")
    console.print(table)
    if daemon is not None and keep:
        console.print(f"rprocd still serves {daemon.mount}: `rproc down --mount {daemon.mount}`")
    if not demo.ok:
        sys.exit(1)


def _now() -> float:
    import time

    return time.monotonic()


# ---- rpmsg ---------------------------------------------------------------------------------------


@main.group()
def rpmsg() -> None:
    """Talk to a remote processor over rpmsg (/dev/rpmsg_ctrlN, /dev/rpmsgN).

    By default messages go through the char device of the channel the firmware announced
    as "rpmsg-raw"; --dst ADDR instead creates an endpoint of your own through
    /dev/rpmsg_ctrlN that sends to remote address ADDR.
    """


def _endpoint(p: RemoteProc, opts: dict[str, Any]) -> Endpoint:
    """An open endpoint: a new one to ``--dst`` through the ctrl device (``--ctrl N`` or the
    processor's), the device named by ``--dev``, or the char device of the announced
    ``--channel``."""
    from remoteproc.client.rpmsg import EndpointDevice, RpmsgCtrl, channel_device

    if opts["dst"] is not None:
        ctrl = RpmsgCtrl(p.root, opts["ctrl"]) if opts["ctrl"] is not None else (
            RpmsgCtrl.for_processor(p))
        with ctrl:
            return ctrl.create_endpoint(opts["name"], dst=opts["dst"])
    if opts["dev"] is not None:
        from pathlib import Path

        path = Path(opts["dev"])
        return EndpointDevice(-1, None, None, None, path, None).open()
    return channel_device(p, opts["channel"]).open()


def _rpmsg_options(fn: F) -> F:
    """--channel/--dev/--dst/--name/--ctrl, gathered into one ``opts`` dict argument."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["opts"] = {k: kwargs.pop(k) for k in ("channel", "dev", "dst", "name", "ctrl")}
        return fn(*args, **kwargs)

    wrapper = click.option("--channel", default="rpmsg-raw", show_default=True,
                           help="Announced channel whose /dev/rpmsgN to use.")(wrapper)
    wrapper = click.option("--dev", type=click.Path(dir_okay=False), default=None,
                           help="Use this endpoint device (/dev/rpmsgN) directly.")(wrapper)
    wrapper = click.option("--dst", type=int, default=None,
                           help="Create an endpoint sending to this remote address instead.")(
                               wrapper)
    wrapper = click.option("--name", default="rproc-cli", show_default=True,
                           help="Name of the endpoint created with --dst.")(wrapper)
    wrapper = click.option("--ctrl", type=int, default=None, metavar="N",
                           help="With --dst: use /dev/rpmsg_ctrlN.")(wrapper)
    return cast(F, wrapper)


@rpmsg.command("list")
@_PROC_ARG
@_root_option
@_json_option
@_client_errors
def rpmsg_list(proc: str | None, root: str, as_json: bool) -> None:
    """List rpmsg channels (sys/bus/rpmsg/devices) and endpoint devices (/dev/rpmsgN)."""
    from remoteproc.client.rpmsg import channels, endpoint_devices, format_addr

    abi = _abi(root)
    p = abi.processor(proc) if proc is not None else None
    chans = channels(abi, p)
    epts = endpoint_devices(abi, p)
    if as_json:
        click.echo(json.dumps({"channels": [c.to_dict() for c in chans],
                               "endpoints": [e.to_dict() for e in epts]}, indent=2))
        return
    for c in chans:
        click.echo(f"channel  {c.name:<28} src {format_addr(c.src):>5} dst "
                   f"{format_addr(c.dst):>5}  {c.owner or ''} {c.device}")
    for e in epts:
        click.echo(f"endpoint {e.name or '?':<28} src {format_addr(e.src):>5} dst "
                   f"{format_addr(e.dst):>5}  {e.owner or ''} {e.dev}")
    if not chans and not epts:
        click.echo("no rpmsg channels or endpoints", err=True)


@rpmsg.command("send")
@_PROC_REQUIRED
@click.argument("message")
@_rpmsg_options
@click.option("--reply/--no-reply", default=True, show_default=True,
              help="Wait for one message back and print it.")
@click.option("--timeout", default=5.0, show_default=True)
@_root_option
@_client_errors
def rpmsg_send(proc: str, message: str, opts: dict[str, Any], reply: bool, timeout: float,
               root: str) -> None:
    """Send MESSAGE (at most 496 bytes) to PROC and print the reply.

    \b
    Examples:
      rproc rpmsg send m4 hello                 # via the rpmsg-raw channel
      rproc rpmsg send m4 hello --dst 1026      # own endpoint to address 1026
    """
    p = _proc(root, proc)
    with _endpoint(p, opts) as ept:
        ept.drain()
        ept.send(message.encode())
        if reply:
            click.echo(ept.recv(timeout).decode("utf-8", "backslashreplace"))


@rpmsg.command("listen")
@_PROC_REQUIRED
@_rpmsg_options
@click.option("--count", default=0, help="Stop after this many messages (0: never).")
@click.option("--timeout", default=0.0, help="Give up after this many quiet seconds (0: never).")
@_root_option
@_client_errors
def rpmsg_listen(proc: str, opts: dict[str, Any], count: int, timeout: float,
                 root: str) -> None:
    """Print every message PROC sends to the endpoint, one per line.

    \b
    Example:
      rproc rpmsg listen m4 --count 10
    """
    p = _proc(root, proc)
    with _endpoint(p, opts) as ept:
        n = 0
        while not count or n < count:
            data = ept.recv(timeout or None)
            click.echo(data.decode("utf-8", "backslashreplace"))
            sys.stdout.flush()
            n += 1


@rpmsg.command("bench")
@_PROC_REQUIRED
@_rpmsg_options
@click.option("--count", default=1000, show_default=True, help="Round trips.")
@click.option("--size", default=64, show_default=True, help="Payload bytes (1..496).")
@click.option("--timeout", default=5.0, show_default=True, help="Per round trip.")
@click.option("--window", default=1, show_default=True,
              help="Messages in flight: 1 measures latency; more streams with "
                   "send_many/recv_many and measures throughput.")
@_root_option
@_json_option
@_client_errors
def rpmsg_bench(proc: str, opts: dict[str, Any], count: int, size: int, timeout: float,
                window: int, root: str, as_json: bool) -> None:
    """Measure echo round trips to PROC: latency percentiles and throughput.

    The firmware must echo (the bundled rpmsg-echo and crash firmware do).

    \b
    Example:
      rproc rpmsg bench m4 --count 2000 --size 256 --json
      rproc rpmsg bench m4 --count 20000 --window 16
    """
    from remoteproc.client.bench import echo_bench

    p = _proc(root, proc)
    with _endpoint(p, opts) as ept:
        result = echo_bench(ept, count=count, size=size, timeout=timeout, window=window)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{result['count']} round trips of {result['size']} bytes in "
                   f"{result['seconds']:.3f} s: {result['round_trips_per_s']:.0f}/s, "
                   f"{result['mb_per_s']:.3f} MB/s each way; latency p50 "
                   f"{result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us, max "
                   f"{result['max_us']:.0f} us")


if __name__ == "__main__":
    main()
