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
from typing import Any

import click

from remoteproc import __version__


def _fail(message: str, status: int = 2) -> None:
    click.echo(f"rproc: {message}", err=True)
    sys.exit(status)


def _load_firmware(path: str) -> Any:
    from remoteproc.errors import RprocError
    from remoteproc.firmware.elf import Firmware

    try:
        return Firmware.from_file(path)
    except RprocError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rproc")
def main() -> None:
    """Drive remote processors the way Linux's remoteproc does.

    \b
    Firmware tools (no board needed):
      rproc fw info FW.elf        what the image holds, as Linux reads it
      rproc fw check FW.elf       what Linux will do with it at boot (exit 0/1/2)
      rproc fw map FW.elf -o m.svg  a picture of its device address space
    """


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
    from remoteproc.firmware.fwmap import build_map, render

    fwimg = _load_firmware(firmware)
    memory_map = build_map(fwimg)
    try:
        render(memory_map, output)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(f"wrote {output}: {len(memory_map.regions)} regions")


if __name__ == "__main__":
    main()
