"""One remote processor seen from userspace, through its sysfs, debugfs, cdev and devcoredump
files (spec §2, §3, §7): ``RemoteProc``, its coredumps (``Coredump``) and state waiting.

Rules:
- Every operation is one read or one write of the kernel's file, in the kernel's words: the
  lifecycle goes through sysfs ``state`` (``start``/``stop``/``detach``), recovery and coredump
  modes through their sysfs attributes, crash injection and traces through debugfs, and a
  processor whose lifetime should follow this process through ``session()`` (the cdev).
- When the kernel refuses a request, the ``RprocError`` keeps its errno and says why in terms of
  what the user can see (the current state, the firmware search path), never a bare EINVAL.
- Coredumps are found as the kernel publishes them, ``sys/class/devcoredump/devcdN`` whose
  ``failing_device`` link leads to this processor; fetching reads ``data`` to EOF, then
  releases the dump by writing to ``data`` (devcoredump's rule; an inline dump holds up recovery
  until then, §7.3).
- Waiting for a state uses ``StateWatcher`` (``watch.py``): poll() where the state file notifies,
  short reads otherwise.
- ``expect`` reads output the way a user would on a board: debugfs ``traceN`` re-read until the
  pattern shows up in the text not yet consumed (a cursor per processor and source, kept by the
  ``AbiRoot`` so every ``processor("m4")`` object shares it); a buffer rewritten from the start
  (restart, ring wrap) counts as new text, and so does everything after the buffer was seen
  absent or ``forget_output`` was called (a restart that prints the same text). ``console`` is
  not part of the kernel's ABI: it is available only when the root was given a console reader
  (the pytest plugin gives one for emulated machines).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from remoteproc.client.base import (
    explain,
    owner_rproc,
    read_attr,
    read_bytes,
    write_attr,
)
from remoteproc.client.session import Session
from remoteproc.client.watch import StateWatcher
from remoteproc.errors import RprocError

if TYPE_CHECKING:
    from remoteproc.client.root import AbiRoot

__all__ = ["COREDUMP_MODES", "CRASH_TYPES", "RECOVERY_WORDS", "Coredump", "RemoteProc",
           "parse_crash_type"]

COREDUMP_MODES = ("disabled", "enabled", "inline")
RECOVERY_WORDS = ("enabled", "disabled", "recover")
# enum rproc_crash_type (§1.9): what debugfs ``crash`` takes, by the kernel's names
CRASH_TYPES = {"mmufault": 0, "watchdog": 1, "fatal": 2, "fatal-error": 2, "fatal error": 2}

Progress = Callable[[int, "int | None"], None]


def parse_crash_type(value: str | int) -> int:
    """``"watchdog"``/``"1"``/``1`` -> 1; the kernel accepts any unsigned number (§2.2)."""
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    if text in CRASH_TYPES:
        return CRASH_TYPES[text]
    try:
        number = int(text, 0)
    except ValueError:
        raise RprocError(errno.EINVAL, f"unknown crash type {value!r}: use mmufault, watchdog, "
                         "fatal or a number") from None
    if number < 0:
        raise RprocError(errno.EINVAL, f"crash type {value!r} must not be negative")
    return number


@dataclass(frozen=True)
class Coredump:
    """``sys/class/devcoredump/devcdN``: one dump the kernel holds for userspace."""

    index: int
    path: Path
    owner: str | None  # "remoteprocN" from failing_device, None if the link is absent

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data_path(self) -> Path:
        return self.path / "data"

    def read_into(self, out: BinaryIO, progress: Progress | None = None,
                  chunk: int = 1 << 16) -> int:
        """Copy ``data`` to ``out`` with ``read()`` calls until EOF; returns the byte count.

        ``progress(done, total)`` is called after each chunk (``total`` when the file reports a
        size; devcoredump reports none)."""
        try:
            fd = os.open(self.data_path, os.O_RDONLY)
        except OSError as exc:
            raise explain(exc, self.data_path, "read the coredump from",
                          "the coredump is gone (it was already read and released, or it "
                          "expired: devcoredump keeps a dump 5 minutes)") from None
        done = 0
        try:
            size = os.fstat(fd).st_size or None
            while True:
                data = os.read(fd, chunk)
                if not data:
                    break
                out.write(data)
                done += len(data)
                if progress is not None:
                    progress(done, size)
        except OSError as exc:
            raise explain(exc, self.data_path, "read the coredump from") from None
        finally:
            os.close(fd)
        return done

    def save(self, dest: str | os.PathLike[str], progress: Progress | None = None, *,
             release: bool = True) -> int:
        """Write the dump to ``dest`` and (by default) release it, as devcoredump expects."""
        with open(dest, "wb") as out:
            size = self.read_into(out, progress)
        if release:
            self.release()
        return size

    def release(self) -> None:
        """Free the dump (devcoredump frees it on any write to ``data``). A dump already gone
        is fine: some servers release it at the end of the first full read."""
        try:
            write_attr(self.data_path, b"1")
        except RprocError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise


class RemoteProc:
    """``remoteprocN`` under an ``AbiRoot``. Properties read the kernel's files each time."""

    def __init__(self, root: AbiRoot, index: int) -> None:
        self.root = root
        self.index = index
        self.dev_name = f"remoteproc{index}"
        self.sysfs = root.class_dir / self.dev_name
        self.debugfs = root.debugfs_dir / self.dev_name
        self.cdev = root.dev_dir / self.dev_name

    def __repr__(self) -> str:
        return f"RemoteProc({self.root.root}, {self.dev_name})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RemoteProc) and other.index == self.index
                and other.root.root == self.root.root)

    def __hash__(self) -> int:
        return hash((str(self.root.root), self.index))

    # -- sysfs

    def _sysfs(self, attr: str) -> str:
        return read_attr(self.sysfs / attr, hint=f"{self.dev_name} has no {attr} attribute "
                         "(was the processor removed?)")

    @property
    def name(self) -> str:
        return self._sysfs("name")

    @property
    def state(self) -> str:
        return self._sysfs("state")

    @property
    def firmware(self) -> str:
        return self._sysfs("firmware")

    @property
    def recovery(self) -> str:
        return self._sysfs("recovery")

    @property
    def coredump_mode(self) -> str:
        return self._sysfs("coredump")

    def _attr_or(self, attr: str, default: str = "unknown") -> str:
        """An attribute for a message: the message must not fail because the file did."""
        try:
            return self._sysfs(attr)
        except RprocError:
            return default

    def state_or_unknown(self) -> str:
        return self._attr_or("state")

    def _request(self, command: str) -> None:
        def why(code: int) -> str | None:
            state = self.state_or_unknown()
            if command == "start":
                if code == errno.ENOENT:
                    fw = self._attr_or("firmware", "?")
                    return (f"firmware {fw!r} was not found in the firmware search path "
                            f"({self.root.firmware_dir}); install it with `rproc firmware "
                            f"{fw} --install FILE`")
                if code == errno.ENODEV:
                    return f"{self.dev_name} is being deleted"
                return (f"boot failed ({os.strerror(code)}); the kernel log says why (dmesg, or "
                        f"rprocd's log); the state is now {state}")
            if command == "stop" and code == errno.EINVAL:
                return f"only a running or attached processor can be stopped; it is {state}"
            if command == "detach" and code == errno.EINVAL:
                return (f"only an attached processor whose driver can detach can be detached; "
                        f"it is {state}")
            return None

        write_attr(self.sysfs / "state", command.encode(), why=why)

    def start(self) -> None:
        """``echo start > state``: boot (load the firmware) or attach a DETACHED processor."""
        self._request("start")

    def stop(self) -> None:
        self._request("stop")

    def detach(self) -> None:
        self._request("detach")

    def set_firmware(self, name: str) -> None:
        """Choose the image the next ``start`` loads (a name relative to the firmware path)."""
        if not name or "\n" in name:
            raise RprocError(errno.EINVAL, "a firmware name is one non-empty line")

        def why(code: int) -> str | None:
            if code == errno.EBUSY:
                return ("the firmware can only be changed while the processor is offline; it "
                        f"is {self.state_or_unknown()} (stop it first)")
            return None

        write_attr(self.sysfs / "firmware", name.encode(), why=why)

    def install_firmware(self, source: str | os.PathLike[str], name: str | None = None, *,
                         symbols: str | os.PathLike[str] | None = None) -> Path:
        """Copy ``source`` into the firmware directory as ``name`` (default: its file name) and
        select it; ``symbols`` (a stripped image's unstripped twin) goes beside it as
        ``NAME.debug``, where rprocd looks for it. Returns where the image was installed."""
        src = Path(source)
        target_name = name or src.name
        if Path(target_name).is_absolute() or ".." in Path(target_name).parts:
            raise RprocError(errno.EINVAL, f"{target_name!r}: a firmware name cannot leave the "
                             "firmware directory")
        dest = self.root.firmware_dir / target_name
        if not src.is_file():
            raise RprocError(errno.ENOENT, "no such firmware file to install", file=str(src))
        if symbols is not None and not Path(symbols).is_file():
            raise RprocError(errno.ENOENT, "no such symbol file to install", file=str(symbols))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            copies = [(src, dest)]
            if symbols is not None:
                copies.append((Path(symbols), dest.with_name(dest.name + ".debug")))
            for from_, to in copies:
                tmp = to.with_name(f".{to.name}.tmp")
                shutil.copyfile(from_, tmp)
                os.replace(tmp, to)
        except OSError as exc:
            raise explain(exc, dest, "install the firmware as",
                          f"the firmware directory {self.root.firmware_dir} does not exist "
                          "(pass --firmware-dir)") from None
        self.set_firmware(target_name)
        return dest

    def set_recovery(self, word: str) -> None:
        """``enabled``, ``disabled`` or ``recover`` (recover now if crashed), §2.1."""
        if word not in RECOVERY_WORDS:
            raise RprocError(errno.EINVAL, f"recovery takes one of {', '.join(RECOVERY_WORDS)}")
        write_attr(self.sysfs / "recovery", word.encode())

    def recover(self) -> None:
        self.set_recovery("recover")

    def set_coredump_mode(self, mode: str) -> None:
        if mode not in COREDUMP_MODES:
            raise RprocError(errno.EINVAL, f"coredump mode is one of {', '.join(COREDUMP_MODES)}")

        def why(code: int) -> str | None:
            if code == errno.EBUSY:
                return "the coredump mode cannot change while the processor is crashed"
            return None

        write_attr(self.sysfs / "coredump", mode.encode(), why=why)

    # -- debugfs

    def _debugfs_file(self, name: str) -> Path:
        base = self.root.require_debugfs()
        return base / self.dev_name / name

    def crash(self, kind: str | int = "fatal") -> None:
        """Make the platform report a crash of type ``kind`` (debugfs ``crash``, §2.2)."""
        number = parse_crash_type(kind)
        path = self._debugfs_file("crash")
        write_attr(path, f"{number}\n".encode(),
                   hint=f"debugfs has no crash file for {self.dev_name}")

    def power(self) -> int | None:
        """The power refcount (how many stops it takes to stop it): rprocd's debugfs ``power``;
        None where it is not shown (the kernel keeps it internal)."""
        try:
            path = self._debugfs_file("power")
        except RprocError:
            return None
        try:
            return int(read_attr(path))
        except (RprocError, ValueError):
            return None

    def stop_force(self, timeout: float = 10.0) -> int:
        """Stop whatever the power count: write ``stop`` until the state reads ``offline``
        (each write drops the count by one, as Linux's ``rproc_shutdown``). Returns how many
        writes it took; ETIMEDOUT if it is still not offline after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        writes = 0
        # the write is synchronous (state_store -> rproc_shutdown): the state after it is final
        while (state := self.state_or_unknown()) in ("running", "attached"):
            if time.monotonic() > deadline:
                raise RprocError(errno.ETIMEDOUT, f"{self.dev_name} is still {state} after "
                                 f"{writes} stop writes", file=str(self.sysfs / "state"))
            self.stop()
            writes += 1
        return writes

    def traces(self) -> list[int]:
        """The trace buffers the running firmware declared (``traceN`` in debugfs)."""
        base = self._debugfs_file("")
        return [n for n, _ in self.root.numbered(base, "trace")]

    def trace(self, n: int = 0) -> str:
        """The text of trace buffer ``n`` (up to its first NUL, as the kernel returns it)."""
        path = self._debugfs_file(f"trace{n}")
        hint = (f"{self.dev_name} has no trace{n}: the firmware declares no such RSC_TRACE "
                f"entry or the processor is not running (state {self.state_or_unknown()})")
        return read_bytes(path, hint=hint).decode("utf-8", "replace")

    def follow_trace(self, n: int = 0, interval: float = 0.2,
                     stop: Callable[[], bool] | None = None) -> Iterator[str]:
        """Yield new trace text as it appears; survives the buffer vanishing and coming back
        (stop/start) and a firmware that rewrites it from the start (yielded whole again)."""
        seen = ""
        while stop is None or not stop():
            try:
                text = self.trace(n)
            except RprocError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
                text = None
            if text is not None and text != seen:
                yield text[len(seen):] if text.startswith(seen) else text
                seen = text
            time.sleep(interval)

    def output(self, source: str = "trace0") -> str:
        """The whole text of ``source``: ``"traceN"`` (debugfs) or ``"console"`` (only where
        the root has a console reader: the pytest plugin's emulated machines)."""
        if source == "console":
            reader = self.root.console_reader
            if reader is None:
                raise RprocError(errno.ENOENT, f"{self.dev_name} has no console here: the "
                                 "kernel's remoteproc ABI has none (read a trace buffer, "
                                 "source='trace0', or the board's serial port)",
                                 file=str(self.sysfs))
            return reader(self)
        m = re.fullmatch(r"trace(\d+)", source)
        if not m:
            raise RprocError(errno.EINVAL, f"unknown output {source!r}: use 'traceN' or "
                             "'console'")
        return self.trace(int(m.group(1)))

    def forget_output(self, source: str | None = None) -> None:
        """Make ``expect`` treat all of ``source``'s output (every source when None) as new:
        call it when the processor restarted and may print the same text again (the pytest
        plugin does it whenever a processor enters ``running``)."""
        for key in list(self.root.expect_cursors):
            if key[0] == self.dev_name and (source is None or key[1] == source):
                self.root.expect_cursors.pop(key, None)

    def expect(self, pattern: str | bytes | re.Pattern[str], timeout: float = 10.0, *,
               source: str = "trace0", interval: float = 0.02) -> re.Match[str]:
        """Wait until ``pattern`` (a regular expression) appears in ``source``'s output after
        what earlier ``expect`` calls consumed; returns the match and consumes the text up to
        its end (as pytest-embedded's ``dut.expect``). ETIMEDOUT quotes the unconsumed tail.

        A trace buffer that is absent (processor stopped, not booted yet) is waited for; once
        seen absent, whatever appears next is a new boot's output."""
        if isinstance(pattern, bytes):
            pattern = pattern.decode()
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        key = (self.dev_name, source)
        cursors = self.root.expect_cursors
        deadline = time.monotonic() + timeout
        text: str | None = None
        start = 0
        while True:
            try:
                text = self.output(source)
            except RprocError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENODEV) or source == "console":
                    raise
                text = None
                cursors.pop(key, None)  # gone: what comes back is a new boot's output
            if text is not None:
                consumed = cursors.get(key, "")
                # the buffer was rewritten (restart, ring wrap): all of it is new
                start = len(consumed) if text.startswith(consumed) else 0
                m = regex.search(text, start)
                if m is not None:
                    cursors[key] = text[: m.end()]
                    return m
            if time.monotonic() >= deadline:
                if text is None:
                    seen = f"{source} never appeared (state {self.state_or_unknown()})"
                else:
                    rest = text[start:]
                    tail = rest[-600:] if rest else "(nothing new)"
                    seen = f"new {source} output was:\n{tail}"
                raise RprocError(errno.ETIMEDOUT, f"{self.dev_name}: {regex.pattern!r} did not "
                                 f"appear in {source} within {timeout:g} s; {seen}",
                                 file=str(self.debugfs if source != "console" else self.sysfs))
            time.sleep(interval)

    def resource_table(self) -> str:
        return read_bytes(self._debugfs_file("resource_table")).decode("utf-8", "replace")

    def carveout_memories(self) -> str:
        return read_bytes(self._debugfs_file("carveout_memories")).decode("utf-8", "replace")

    # -- devcoredump

    def coredumps(self) -> list[Coredump]:
        """Dumps of this processor held by devcoredump, oldest first. A dump whose
        ``failing_device`` link is absent is included (its owner is unknown)."""
        dumps = []
        for n, path in self.root.numbered(self.root.devcoredump_dir, "devcd"):
            owner = owner_rproc(path / "failing_device")
            if owner in (None, self.dev_name):
                dumps.append(Coredump(n, path, owner))
        return dumps

    def wait_coredump(self, timeout: float = 10.0, *, after: int = -1,
                      interval: float = 0.05) -> Coredump:
        """The first dump of this processor numbered above ``after``, waiting up to
        ``timeout`` seconds for the kernel to publish it."""
        deadline = time.monotonic() + timeout
        while True:
            for dump in self.coredumps():
                if dump.index > after:
                    return dump
            if time.monotonic() >= deadline:
                mode = self._attr_or("coredump")
                raise RprocError(errno.ETIMEDOUT, f"no coredump of {self.dev_name} appeared "
                                 f"within {timeout:g} s (coredump mode is {mode}; it must be "
                                 "enabled or inline before the crash)",
                                 file=str(self.root.devcoredump_dir))
            time.sleep(interval)

    # -- cdev

    def session(self, *, shutdown_on_release: bool | None = True) -> Session:
        """Open ``/dev/remoteprocN``: see ``Session``."""
        return Session(self, shutdown_on_release=shutdown_on_release)

    # -- waiting

    def wait_state(self, want: str | tuple[str, ...], timeout: float = 10.0) -> str:
        """Wait until the state is one of ``want``; ETIMEDOUT names the state it stayed in."""
        wanted = (want,) if isinstance(want, str) else want
        with StateWatcher([self], names=False) as watcher:
            return watcher.wait_for(self, wanted, timeout)

    # -- summary

    def status(self) -> dict[str, Any]:
        """Everything sysfs says plus the trace and coredump counts; unreadable values are
        None (e.g. debugfs not mounted)."""
        info: dict[str, Any] = {"index": self.index, "device": self.dev_name}
        for attr in ("name", "state", "firmware", "recovery", "coredump"):
            try:
                info[attr] = self._sysfs(attr)
            except RprocError:
                info[attr] = None
        try:
            info["traces"] = self.traces()
        except RprocError:
            info["traces"] = None
        info["coredumps"] = [d.name for d in self.coredumps()]
        info["power"] = self.power()
        info["cdev"] = str(self.cdev) if self.cdev.exists() else None
        return info
